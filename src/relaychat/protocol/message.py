"""IRC messages: parse one line into a :class:`Message`, serialize a message back.

Theory of operation: a pure module, no I/O. A *line* is one message without its
CRLF; framing (splitting a byte stream into lines, enforcing lengths) lives in
:mod:`relaychat.protocol.framing`. The parser follows the Modern IRC document and
IRCv3 message-tags: ``[@tags] [:source] COMMAND [params...] [:trailing]``, with
one or more spaces between atoms (as RFC 1459 allows and the parser test vectors
expect). Tag values are unescaped on parse and escaped on serialize.

Validation at the boundary, both ways (as h11 does for HTTP headers and Ergo's
irc-go parser for IRC lines):

* :func:`parse_message` refuses a line that still holds CR, LF or NUL once a
  stray trailing CR/LF is dropped, and drops tags whose key is not a valid
  IRCv3 key. Whatever it returns can be serialized again.
* :meth:`Message.serialize` refuses (:class:`MessageSerializeError`) a message
  that cannot be written as one line that parses back to the same message: CR,
  LF or NUL anywhere, a space in the command or source, a middle parameter that
  is empty, holds a space or starts with ``:``, an invalid tag key. That is a
  local programming error, not the peer's; text taken from a peer and relayed
  goes through :func:`sanitize_text` (or is checked with :func:`valid_middle` /
  :func:`valid_trailing`) first.

Both the server and the client library use these types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "Message",
    "MessageParseError",
    "MessageSerializeError",
    "parse_message",
    "split_source",
    "escape_tag_value",
    "unescape_tag_value",
    "truncate_utf8",
    "pack",
    "valid_middle",
    "valid_trailing",
    "valid_tag_key",
    "sanitize_text",
]


class MessageParseError(ValueError):
    """The peer sent a line that is not an IRC message (empty, no command, or
    CR, LF or NUL inside)."""


class MessageSerializeError(ValueError):
    """This side tried to send a message that cannot be written faithfully as one
    line (see :meth:`Message.serialize`): a local programming or protocol error,
    never the peer's fault."""


def valid_trailing(p: str) -> bool:
    """True when ``p`` may be the last parameter: it holds no CR, LF or NUL.
    (Empty, spaces and a leading ``:`` are fine: serialize adds the ``:``.)"""
    return "\r" not in p and "\n" not in p and "\0" not in p


def valid_middle(p: str) -> bool:
    """True when ``p`` may be a parameter other than the last: non-empty, no
    space, no leading ``:``, no CR, LF or NUL."""
    return bool(p) and p[0] != ":" and " " not in p and valid_trailing(p)


# IRCv3 message-tags: <key> ::= ['+'] [<vendor> '/'] <letters, digits, hyphens>
_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+")


# Keys seen valid, so that the usual few (time, msgid, +draft/reply...) skip the
# regex; capped so that a peer cannot grow it.
_valid_keys: set[str] = set()


def valid_tag_key(key: str) -> bool:
    """True for an IRCv3 tag key: an optional ``+``, an optional ``vendor/`` (a
    host name: ASCII letters, digits, ``.``, ``-``), then ASCII letters, digits
    and hyphens."""
    if key in _valid_keys:
        return True
    if _TAG_KEY.fullmatch(key) is None:
        return False
    if len(_valid_keys) < 256:
        _valid_keys.add(key)
    return True


_SANITIZE = str.maketrans("\r\n\0", "   ")


def sanitize_text(s: str) -> str:
    """``s`` with every CR, LF and NUL replaced by a space, for peer text the
    server relays. Returns ``s`` itself when there is nothing to replace."""
    if "\r" in s or "\n" in s or "\0" in s:
        return s.translate(_SANITIZE)
    return s


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
        if not valid_tag_key(key):
            continue  # an empty or malformed key: drop that tag, keep the message
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

    @property
    def msgid(self) -> str | None:
        """The IRCv3 ``msgid`` tag (message-ids): the server's unique id of this
        message, or None when it has none (no ``message-tags``, or a reply)."""
        return self.tags.get("msgid") or None

    def serialize(self) -> str:
        """The line without CRLF. The last parameter gets a ``:`` when it needs one
        (empty, has a space, or starts with ``:``); an empty ``source`` counts as
        none; tag values are escaped.

        Raises :class:`MessageSerializeError` unless the line would parse back to
        this very message: the command must be non-empty, without space, CR, LF or
        NUL and not start with ``:`` or ``@``; the source without space, CR, LF or
        NUL; every parameter but the last :func:`valid_middle`, the last
        :func:`valid_trailing`; every tag key :func:`valid_tag_key` and no tag
        value may hold NUL.
        """
        parts: list[str] = []
        if self.tags:
            items: list[str] = []
            for k, v in self.tags.items():
                if not valid_tag_key(k):
                    raise MessageSerializeError(f"invalid tag key {k!r}")
                items.append(k if v == "" else f"{k}={escape_tag_value(v)}")
            parts.append("@" + ";".join(items))
        source = self.source
        if source:
            if " " in source:
                raise MessageSerializeError(f"source has a space: {source!r}")
            parts.append(":" + source)
        command = self.command
        if not command or " " in command or command[0] in ":@":
            raise MessageSerializeError(f"invalid command {command!r}")
        parts.append(command)
        params = self.params
        if params:
            last = params[-1]
            if len(params) > 1:
                middle = params[:-1]
                for p in middle:
                    if not p or " " in p or p[0] == ":":
                        raise MessageSerializeError(
                            f"parameter {middle.index(p)} of {len(params)} is not the last, "
                            f"so it may not be empty, hold a space or start with ':': {p!r}"
                        )
                parts += middle
            parts.append(":" + last if not last or " " in last or last[0] == ":" else last)
        line = " ".join(parts)
        # CR and LF in tag values are escaped; any CR, LF or NUL left is an error
        if "\r" in line or "\n" in line or "\0" in line:
            raise MessageSerializeError(self._bad_character())
        return line

    def _bad_character(self) -> str:
        """Say which part of this message holds a CR, LF or NUL."""
        if self.source and not valid_trailing(self.source):
            return f"source has a CR, LF or NUL: {self.source!r}"
        if not valid_trailing(self.command):
            return f"invalid command {self.command!r}"
        for i, p in enumerate(self.params):
            if not valid_trailing(p):
                return f"parameter {i} has a CR, LF or NUL: {p!r}"
        for k, v in self.tags.items():
            if "\0" in v:
                return f"tag {k!r} has a NUL in its value"
        return "message has a CR, LF or NUL"  # not reached: every part was checked

    def to_bytes(self) -> bytes:
        """The line encoded as UTF-8 with CRLF, ready for a socket (a lone
        surrogate becomes ``?``). Raises :class:`MessageSerializeError` as
        :meth:`serialize` does."""
        return (self.serialize() + "\r\n").encode("utf-8", "replace")

    def __str__(self) -> str:
        return self.serialize()


def parse_message(line: str) -> Message:
    """Parse one line (CR/LF already stripped; a stray trailing CR/LF is dropped).

    Atoms are separated by one or more spaces (only U+0020: a tab is part of a
    parameter). A tag with a malformed key is dropped; an empty source (``": "``)
    counts as none.

    Raises :class:`MessageParseError` when there is no command, the command
    starts with ``:`` or ``@``, or CR, LF or NUL remain in the line.
    """
    line = line.rstrip("\r\n")
    if "\r" in line or "\n" in line or "\0" in line:
        raise MessageParseError("line contains CR, LF or NUL")
    rest = line
    if line[:1] == "@":  # client tags (a label, +typing): the rest may be the common shape
        space = line.find(" ")
        rest = line[space + 1 :] if space != -1 else ""
    if rest and rest[0] not in "@: " and "  " not in rest:
        # the common shape, no source, single spaces: split at C speed
        first, sep, last = rest.partition(" :")
        words = first.split(" ")
        if words[0] and words[-1]:
            if sep:
                words.append(last)
            raw_tags = line[1 : len(line) - len(rest) - 1] if rest is not line else ""
            return Message(words[0], words[1:], None, _parse_tags(raw_tags) if raw_tags else {})
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
        source = line[pos + 1 : end] or None
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
    words = head.split(" ")
    if "" in words:  # runs of spaces, or a space at the end
        words = [w for w in words if w]
    if not words:
        raise MessageParseError("empty message")
    command = words[0]
    if command[0] in ":@":  # ":src :x" or "@tags @x"
        raise MessageParseError(f"command starts with {command[0]!r}")
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return Message(command=command, params=params, source=source, tags=tags)


def pack(items: Iterable[str], room: int, sep: str = " ") -> Iterator[str]:
    """``items`` joined by ``sep`` into as few chunks as keep each within ``room``
    bytes (an item longer than ``room`` gets a chunk of its own): the lists of
    names, nicks, keys or capabilities that replies spread over several lines. A
    generator, so a caller whose client is gone (SendQ) stops it early."""
    chunk: list[str] = []
    size = 0
    width = len(sep.encode("utf-8"))
    for item in items:
        n = len(item.encode("utf-8"))
        if chunk and size + width + n > room:
            yield sep.join(chunk)
            chunk, size = [], 0
        size += n + (width if chunk else 0)
        chunk.append(item)
    if chunk:
        yield sep.join(chunk)


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
