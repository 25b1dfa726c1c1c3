"""Multiline messages (IRCv3 ``draft/multiline``) as events: one message of
several lines, serialised once per variant like any :class:`Event`.

A :class:`MultilineEvent` is an :class:`~relaychat.protocol.events.Event` whose
bytes for a variant are the whole message, so local delivery (channel batches,
STATUSMSG filters, echo-message, labeled-response) treats it like any other event
and needs no branch of its own. The multiline bit of a session's variant
(:data:`~relaychat.protocol.state.CAP_MULTILINE`: ``draft/multiline`` and ``batch``)
chooses the form:

* with it, one batch: ``@time;msgid;bot;account;+client :n!u@h BATCH +ref
  draft/multiline <target>``, the lines tagged ``batch=ref`` (and
  ``draft/multiline-concat`` where the client sent it), then ``:server BATCH -ref``;
* without it, the fallback the specification asks for: each non-blank line as its
  own PRIVMSG or NOTICE, the first with every tag the batch start would carry,
  the later ones without ``msgid`` and client-only tags; blank lines are not sent.

The lines are the client's own composition (the specification asks servers to
keep it), except that a line too long to relay in 512 bytes is split, the parts
after the first marked as concatenated, so nothing is cut. The reference tag is
``Output.batch_ref()``: unique on this server for its lifetime, so one reference
serves every recipient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from relaychat.protocol.events import ECHO_CAP, MAX_RELAY_LINE, Event
from relaychat.protocol.state import CAP_MULTILINE, TAG_VARIANTS, VARIANTS

if TYPE_CHECKING:
    from relaychat.protocol.state import Channel, Session, User

__all__ = ["CONCAT", "MultilineEvent", "combined_text", "relay_room", "split_for_relay"]

CONCAT = "draft/multiline-concat"  # the tag: this line continues the previous one directly


def combined_text(lines: Sequence[tuple[str, bool]]) -> str:
    """The message value of a batch: the lines joined by LF, except that a line
    marked concatenated joins the previous one directly."""
    parts: list[str] = []
    for i, (text, concat) in enumerate(lines):
        if i and not concat:
            parts.append("\n")
        parts.append(text)
    return "".join(parts)


def split_for_relay(text: str, concat: bool, room: int) -> list[tuple[str, bool]]:
    """``text`` as one or more lines of at most ``room`` UTF-8 bytes: cut after a
    space in the second half of the room when there is one, never inside a
    character; the parts after the first are concatenated to it."""
    data = text.encode("utf-8")
    if len(data) <= room:
        return [(text, concat)]
    room = max(room, 4)  # a character is at most 4 bytes
    out: list[tuple[str, bool]] = []
    while len(data) > room:
        cut = data.rfind(b" ", room // 2, room) + 1 or room
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: back to the character's start
            cut -= 1
        out.append((data[:cut].decode("utf-8"), concat if not out else True))
        data = data[cut:]
    out.append((data.decode("utf-8"), True))
    return out


class MultilineEvent(Event):
    """A multiline PRIVMSG or NOTICE. ``params`` are the target as shown and the
    combined text (for consumers other than local delivery); ``lines`` the lines
    as relayed, each ``(text, concatenated)``, every one fitting in 512 bytes."""

    __slots__ = ("lines", "ref", "server_name")

    def __init__(
        self,
        command: str,
        source: str,
        shown: str,
        lines: list[tuple[str, bool]],
        ref: str,
        server_name: str,
        time: float,
        msgid: str,
        audience: int,
        actor: User,
        origin: Session,
        channel: Channel | None,
        target: User | None,
        tags: dict[str, str] | None,
        status: str,
        echo: int = ECHO_CAP,
    ) -> None:
        start = f":{source} BATCH +{ref} draft/multiline {shown}"
        super().__init__(
            command,
            source,
            [shown, combined_text(lines)],
            start,
            time,
            msgid,
            audience,
            actor,
            origin,
            channel,
            target,
            tags,
            status,
            None,
            echo,
        )
        self.lines = lines
        self.ref = ref
        self.server_name = server_name

    def for_variant(self, variant: int) -> bytes:
        variants = self._variants
        if variants is None:
            variants = self._variants = [None] * VARIANTS
        data = variants[variant]
        if data is None:
            if variant & CAP_MULTILINE:
                data = self._as_batch(variant & TAG_VARIANTS)
            else:
                data = self._as_lines(variant)
            variants[variant] = data
        return data

    def _head(self) -> str:
        return f":{self.source} {self.command} {self.params[0]} :"

    def _as_batch(self, variant: int) -> bytes:
        tags = self.tag_list(variant)
        ref = self.ref
        out = ["@" + ";".join(tags) + " " + self.line if tags else self.line]
        plain = f"@batch={ref} " + self._head()
        joined = f"@batch={ref};{CONCAT} " + self._head()
        out.extend((joined if concat else plain) + text for text, concat in self.lines)
        out.append(f":{self.server_name} BATCH -{ref}")
        out.append("")
        return "\r\n".join(out).encode("utf-8", "replace")

    def _as_lines(self, variant: int) -> bytes:
        head = self._head()
        first = self.tag_list(variant)
        later = self.tag_list(variant, first=False)
        out: list[str] = []
        for text, _ in self.lines:
            if not text:
                continue  # never a blank line to a client without multiline
            tags = later if out else first
            out.append(("@" + ";".join(tags) + " " if tags else "") + head + text)
        out.append("")
        return "\r\n".join(out).encode("utf-8", "replace")


def relay_room(source: str, command: str, shown: str) -> int:
    """Bytes of text that fit in one relayed line of this message."""
    head = f":{source} {command} {shown} :"
    return MAX_RELAY_LINE - 2 - len(head.encode("utf-8"))
