"""Framing: a TCP byte stream in, whole lines out, with limits.

Theory of operation: :class:`LineBuffer` is fed whatever ``recv`` returned (any
split, any size) and yields complete lines, never trusting one ``recv`` to be one
message.

Line ends. CR, LF and CRLF all end a line. RFC 1459/2812 (section 2.3.1)
"designate two characters, CR and LF, as message separators" and silently ignore
empty messages, "which permits use of the sequence CR-LF between messages"; the
Modern IRC document also describes the stream as messages separated by CR and LF
(while senders must end each one with CRLF). ircu-style servers split this way.
So a lone CR cannot hide a second message inside one line: in
``PRIVMSG #c :hi<CR>:root!root@server PRIVMSG #c :forged`` the part after the CR
is a line of its own from the same peer (whose source the server ignores), never
text relayed to clients that split on CR. Empty lines carry nothing and are never
yielded (nor is anything for the LF of a CRLF, even when a read ends between the
two). The lines yielded never contain CR or LF, and the result does not depend on
how the stream was split into reads.

Limits follow the Modern IRC document and IRCv3 message-tags. A line that starts
with ``@`` has *tag data*: the bytes between the ``@`` and the first space. It may
hold at most ``tags_length`` bytes (4094: what a client may send); more is
``TooLong(tags=True)``, answered with 417 ERR_INPUTTOOLONG. The rest of the line
(after that space, or the whole line without tags) may be at most
``line_length`` bytes counting the CRLF (512), whether or not the peer actually
ended it with CRLF; more is ``TooLong(tags=False)``.

Memory is bounded: as soon as the unterminated tail of the stream is certain to
be too long (those checks only get worse as bytes are added), the framer yields
its ``TooLong`` right away and discards bytes up to the next CR or LF. So
``pending()`` never exceeds ``max_total`` whatever the peer sends.

A pure class: no sockets, no clock; one owner at a time. ``feed`` works on whole
chunks with ``bytes.replace`` / ``bytes.split`` (no per-byte Python loop): it is on
the hot path.
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
    """Split a byte stream into lines (see the module docstring for the rules).

    ``line_length``: most bytes of a line after its tags, CRLF included.
    ``tags_length``: most bytes of tag data (between ``@`` and the space).
    """

    __slots__ = ("_buf", "_line_length", "_tags_length", "_short", "_discarding", "blank")

    def __init__(self, line_length: int = 512, tags_length: int = 4094) -> None:
        if line_length < 3 or tags_length < 0:
            raise ValueError("line_length must be at least 3 and tags_length at least 0")
        self._buf = b""
        self._line_length = line_length
        self._tags_length = tags_length
        # A line this short passes both limits whatever its shape (fast path).
        self._short = min(line_length - 2, tags_length)
        self._discarding = False
        # empty lines in the last feed (not yielded; a server still charges them)
        self.blank = 0

    @property
    def max_total(self) -> int:
        """The longest acceptable line, CRLF included (tags, space, rest); an upper
        bound on :meth:`pending`."""
        return self._line_length + self._tags_length + 1

    def pending(self) -> int:
        """Bytes held that do not yet form a line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the complete lines (without CR/LF, never empty) and
        :class:`TooLong` markers, in stream order."""
        self.blank = 0
        ends = data.count(b"\n")
        if b"\r" in data:
            # every CR ends a line; the empty line a CRLF then makes is skipped below
            ends += data.count(b"\r") - data.count(b"\r\n")
            data = data.replace(b"\r", b"\n")
        if self._discarding:
            # the rest of an over-long line, up to the next line end, is dropped
            nl = data.find(b"\n")
            if nl == -1:
                return []
            self._discarding = False
            data = data[nl + 1 :]
        short = self._short
        out: list[Frame]
        if b"\n" not in data:  # no line ends: just hold the bytes (cheap for tiny reads)
            rest = self._buf + data
            out = []
        else:
            lines = (self._buf + data if self._buf else data).split(b"\n")
            rest = lines.pop()
            if max(map(len, lines)) <= short:
                out = list(filter(None, lines))
            else:
                out = [line if len(line) <= short else self._check(line) for line in lines if line]
        if len(rest) > short:
            verdict = self._check(rest)
            if isinstance(verdict, TooLong):
                # certain already: more bytes cannot make this line acceptable
                out.append(verdict)
                self._discarding = True
                rest = b""
        self._buf = rest
        if ends > len(out):
            # line ends that ended no line: empty lines (approximately: a CRLF split
            # between two reads, or the end of a discarded line, counts one too)
            self.blank = ends - len(out)
        return out

    def check(self, line: bytes) -> Frame:
        """One whole line from a transport that frames lines itself (a WebSocket
        message, without CR or LF): the line, or the limit it breaks."""
        return line if len(line) <= self._short else self._check(line)

    def _check(self, line: bytes) -> Frame:
        """``line`` itself, or the limit it breaks. Also right for the unterminated
        start of a line: a verdict of TooLong cannot change as bytes are added."""
        if line[:1] == b"@":
            sp = line.find(b" ")
            if sp == -1:
                tag_data = len(line) - 1
                rest_len = 0
            else:
                tag_data = sp - 1
                rest_len = len(line) - sp - 1
            if tag_data > self._tags_length:
                return TooLong(tags=True)
            if rest_len + 2 > self._line_length:
                return TooLong(tags=False)
            return line
        if len(line) + 2 > self._line_length:
            return TooLong(tags=False)
        return line
