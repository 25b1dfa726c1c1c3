"""IRC messages: parse one line into a :class:`Message`, serialize a message back.

Theory of operation: a pure module, no I/O. A *line* is one message without its
CRLF; framing (splitting a byte stream into lines, enforcing lengths) lives in
:mod:`relaychat.protocol.framing`. The parser follows the Modern IRC document and
IRCv3 message-tags: ``[@tags] [:source] COMMAND [params...] [:trailing]``, with
one or more spaces between atoms (as RFC 1459 allows and the parser test vectors
expect). Tag values are unescaped on parse and escaped on serialize.

Both the server and the client library use these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Message",
    "MessageParseError",
    "parse_message",
    "split_source",
    "escape_tag_value",
    "unescape_tag_value",
    "truncate_utf8",
    "MessageSerializeError",
    "valid_middle",
    "valid_trailing",
]


class MessageParseError(ValueError):
    """The peer sent a line that is not an IRC message (empty, or no command)."""


_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_ESCAPE = str.maketrans({";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"})


def unescape_tag_value(value: str) -> str:
    """Undo IRCv3 tag escaping; an unknown escape keeps the character, a lone
    trailing backslash is dropped (as the message-tags spec says)."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "\\":
            i += 1
            if i < n:
                nxt = value[i]
                out.append(_TAG_UNESCAPE.get(nxt, nxt))
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def escape_tag_value(value: str) -> str:
    return value.translate(_TAG_ESCAPE)


def _parse_tags(raw: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not key:
            continue
        tags[key] = unescape_tag_value(value) if sep else ""
    return tags


@dataclass(slots=True)
class Message:
    """One IRC message.

    ``params`` holds every parameter, the trailing one included, unprefixed.
    ``source`` has no leading colon; ``tags`` maps names to unescaped values
    (``""`` for a tag without a value).
    """

    command: str
    params: list[str] = field(default_factory=list)
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, line: str) -> Message:
        return parse_message(line)

    def serialize(self) -> str:
        """The line without CRLF. The last parameter gets a ``:`` when it needs one
        (empty, has a space, or starts with ``:``)."""
        parts: list[str] = []
        if self.tags:
            parts.append(
                "@"
                + ";".join(
                    k if v == "" else f"{k}={escape_tag_value(v)}" for k, v in self.tags.items()
                )
            )
        if self.source:
            parts.append(":" + self.source)
        parts.append(self.command)
        params = self.params
        if params:
            parts.extend(params[:-1])
            last = params[-1]
            if not last or " " in last or last[0] == ":":
                parts.append(":" + last)
            else:
                parts.append(last)
        return " ".join(parts)

    def to_bytes(self) -> bytes:
        """The line encoded as UTF-8 with CRLF, ready for a socket."""
        return (self.serialize() + "\r\n").encode("utf-8", "replace")

    def __str__(self) -> str:
        return self.serialize()


def parse_message(line: str) -> Message:
    """Parse one line (CR/LF already stripped; a stray trailing CR/LF is dropped).

    Raises :class:`MessageParseError` when there is no command.
    """
    line = line.rstrip("\r\n")
    pos = 0
    n = len(line)
    tags: dict[str, str] = {}
    source: str | None = None
    # skip leading spaces
    while pos < n and line[pos] == " ":
        pos += 1
    if pos < n and line[pos] == "@":
        end = line.find(" ", pos)
        if end == -1:
            raise MessageParseError("message has tags but no command")
        tags = _parse_tags(line[pos + 1 : end])
        pos = end
        while pos < n and line[pos] == " ":
            pos += 1
    if pos < n and line[pos] == ":":
        end = line.find(" ", pos)
        if end == -1:
            raise MessageParseError("message has a source but no command")
        source = line[pos + 1 : end]
        pos = end
        while pos < n and line[pos] == " ":
            pos += 1
    if pos >= n:
        raise MessageParseError("empty message")
    trailing: str | None = None
    colon = line.find(" :", pos)
    if colon != -1:
        trailing = line[colon + 2 :]
        head = line[pos:colon]
    else:
        head = line[pos:]
    words = head.split()
    if not words:
        raise MessageParseError("empty message")
    command = words[0]
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return Message(command=command, params=params, source=source, tags=tags)


def truncate_utf8(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def split_source(source: str) -> tuple[str, str | None, str | None]:
    """Split ``nick!user@host`` into its parts; missing parts are ``None``."""
    nick, _, rest = source.partition("!")
    if _:
        user, at, host = rest.partition("@")
        return nick, user, (host if at else None)
    nick, at, host = source.partition("@")
    return nick, None, (host if at else None)


class MessageSerializeError(ValueError):
    """We were about to emit a line that is not a well-formed message (a local bug)."""


def valid_trailing(param: str) -> bool:
    """A last parameter: anything but CR, LF and NUL."""
    return not ("\r" in param or "\n" in param or "\x00" in param)


def valid_middle(param: str) -> bool:
    """A middle parameter: non-empty, no space, no leading ':', no CR/LF/NUL."""
    return bool(param) and param[0] != ":" and " " not in param and valid_trailing(param)
