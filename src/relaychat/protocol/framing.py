"""Framing: a TCP byte stream in, whole lines out, with limits.

Theory of operation: :class:`LineBuffer` is fed whatever ``recv`` returned (any
split, any size) and yields complete lines, split on LF with an optional CR
before it, never trusting one ``recv`` to be one message. Limits follow the
Modern IRC document and IRCv3 message-tags: the part of a line after its tags
may be at most ``line_length`` bytes (CRLF included), the tags part at most
``tags_length`` bytes. A line over the limit becomes a :class:`TooLong` item, and
bytes still without a newline past the combined limit are discarded up to the
next newline, so a peer cannot grow the buffer without bound.

A pure class: no sockets, no clock; one owner at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LineBuffer", "TooLong", "Frame"]


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line that broke a length limit; ``tags`` says which part."""

    tags: bool


Frame = bytes | TooLong


class LineBuffer:
    __slots__ = ("_buf", "_line_length", "_tags_length", "_discarding")

    def __init__(self, line_length: int = 512, tags_length: int = 8191) -> None:
        self._buf = b""
        self._line_length = line_length
        self._tags_length = tags_length
        self._discarding = False

    @property
    def max_total(self) -> int:
        # tags + the space after them + the rest of the line
        return self._line_length + self._tags_length + 1

    def pending(self) -> int:
        """Bytes held that do not yet form a line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the complete lines (without CR/LF) and TooLong markers."""
        buf = self._buf + data if self._buf else data
        out: list[Frame] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl == -1:
                break
            if self._discarding:
                self._discarding = False
                start = nl + 1
                continue
            end = nl
            if end > start and buf[end - 1] == 13:  # CR
                end -= 1
            out.append(self._check(buf[start:end]))
            start = nl + 1
        rest = buf[start:]
        if len(rest) > self.max_total:
            if not self._discarding:
                out.append(TooLong(tags=rest[:1] == b"@"))
            self._discarding = True
            rest = b""
        self._buf = rest
        return out

    def _check(self, line: bytes) -> Frame:
        if line[:1] == b"@":
            sp = line.find(b" ")
            if sp == -1:
                tags_len = len(line)
                rest_len = 0
            else:
                tags_len = sp
                rest_len = len(line) - sp - 1
            if tags_len > self._tags_length:
                return TooLong(tags=True)
            if rest_len + 2 > self._line_length:
                return TooLong(tags=False)
            return line
        if len(line) + 2 > self._line_length:
            return TooLong(tags=False)
        return line
