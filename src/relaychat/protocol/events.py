"""Domain events: what happened, as data, before it becomes bytes.

Handlers do not write relayed lines into queues; they build an :class:`Event`
(source, command, parameters, client tags, wall time, a unique ``msgid``) with
an *audience* that says who should see it, and hand it to ``core.emit``. Every
registered consumer gets it: local delivery (``relaychat.protocol.output``) is one;
a history writer or a publisher to other nodes are others, and none of them
needs to touch a handler.

An event serialises lazily, once per capability *variant* (server-time,
message-tags, account-tag), and every local recipient of that variant shares the
same ``bytes``. The variant's multiline bit changes only a multiline message
(:mod:`relaychat.protocol.multiline`): a one-line event gives both halves the same
``bytes``. The server's tags come from the event: ``time`` (server-time),
``msgid`` and ``bot`` (message-tags: every event has a msgid, unique across
restarts), ``account`` (account-tag, when the actor is logged in), then the
client-only tags (message-tags). The wire line is checked when it is first built: a parameter with
CR, LF or NUL, or a middle parameter that is empty, has a space or starts with
``:``, is a programming error (:class:`MessageSerializeError`), never bytes on
the wire. Text parameters are cut so that the relayed line fits in 512 bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from relaychat.protocol.message import (
    MessageSerializeError,
    escape_tag_value,
    truncate_utf8,
    valid_middle,
    valid_trailing,
)
from relaychat.protocol.state import (
    CAP_ACCOUNT_TAG,
    CAP_MESSAGE_TAGS,
    CAP_SERVER_TIME,
    TAG_VARIANTS,
    VARIANTS,
)
from relaychat.protocol.timebase import server_time

if TYPE_CHECKING:
    from relaychat.protocol.state import Channel, Session, User

__all__ = [
    "build_event",
    "fit_text",
    "CHANNEL",
    "ECHO_ALWAYS",
    "ECHO_CAP",
    "ECHO_NEVER",
    "Event",
    "msgid_source",
    "OPERWALL",
    "PEERS",
    "SELF",
    "USER",
    "MAX_RELAY_LINE",
]

# audiences: who sees an event
CHANNEL = 1  # the members of ``channel`` (``status`` and ``cap`` filter them)
USER = 2  # the sessions of ``target``
PEERS = 3  # everyone who shares a channel with ``actor``
SELF = 4  # the actor only (a user mode change)
OPERWALL = 5  # every user with user mode +w (WALLOPS)

# does the origin session see its own event?
ECHO_NEVER = 0
ECHO_ALWAYS = 1
ECHO_CAP = 2  # only with echo-message

MAX_RELAY_LINE = 512  # bytes, CRLF included, tags excluded: what every client accepts


def msgid_source(prefix: str) -> Callable[[], str]:
    """Unique message ids: a random per-process prefix (unique across restarts and,
    later, nodes), then a counter in hex. The prefix is given by the transport
    (the core reads no entropy source or clock). Returns a C-level callable: it
    runs once per relayed message."""
    return map(f"{prefix}{{:x}}".format, itertools.count(1)).__next__


class Event:
    """One thing that happened. Build it with :func:`build_event` (checked, fitted)
    or, on the hot path, with an already-checked ``line``."""

    __slots__ = (
        "command",
        "source",
        "params",
        "line",
        "time",
        "msgid",
        "audience",
        "actor",
        "origin",
        "channel",
        "target",
        "tags",
        "status",
        "cap",
        "nocap",
        "echo",
        "_variants",
    )

    def __init__(
        self,
        command: str,
        source: str,
        params: list[str],
        line: str,
        time: float,
        msgid: str,
        audience: int,
        actor: User | None = None,
        origin: Session | None = None,
        channel: Channel | None = None,
        target: User | None = None,
        tags: dict[str, str] | None = None,
        status: str = "",
        cap: str | None = None,
        echo: int = ECHO_NEVER,
        nocap: tuple[str, ...] = (),
    ) -> None:
        self.command = command
        self.source = source
        self.params = params
        self.line = line  # without tags or CRLF
        self.time = time  # wall
        self.msgid = msgid
        self.audience = audience
        self.actor = actor
        self.origin = origin
        self.channel = channel
        self.target = target
        self.tags = tags  # client-only (+) tags, relayed to message-tags sessions
        self.status = status  # STATUSMSG: lowest member status that receives it ("o", "v")
        self.cap = cap  # only sessions with this capability receive it
        self.echo = echo
        self.nocap = nocap  # sessions with any of these capabilities do not receive it
        self._variants: list[bytes | None] | None = None

    def for_variant(self, variant: int) -> bytes:
        variants = self._variants
        if variants is None:
            variants = self._variants = [None] * VARIANTS
        data = variants[variant]
        if data is None:
            # only the tag bits change a one-line message: a session whose
            # variant differs in the multiline bit alone shares the same bytes
            tagged = variant & TAG_VARIANTS
            data = variants[tagged]
            if data is None:
                if tagged:
                    tags = self.tag_list(tagged)
                    line = "@" + ";".join(tags) + " " + self.line if tags else self.line
                else:
                    line = self.line  # no tags at all (the usual client): nothing to build
                data = variants[tagged] = (line + "\r\n").encode("utf-8", "replace")
            variants[variant] = data
        return data

    def tag_list(self, variant: int, first: bool = True) -> list[str]:
        """The tags this event carries for ``variant``: ``time``, ``msgid``, ``bot``,
        ``account``, then the client-only tags. ``first=False``: the tags of a
        multiline message's later lines (no ``msgid``, no client-only tags)."""
        tags: list[str] = []
        if variant & CAP_SERVER_TIME:
            tags.append("time=" + server_time(self.time))
        if variant & CAP_MESSAGE_TAGS:
            if first:
                tags.append("msgid=" + self.msgid)
            actor = self.actor
            if actor is not None and "B" in actor.modes:
                tags.append("bot")
        if variant & CAP_ACCOUNT_TAG:
            actor = self.actor
            if actor is not None and actor.account is not None:
                tags.append("account=" + escape_tag_value(actor.account))
        if first and variant & CAP_MESSAGE_TAGS and self.tags:
            tags.extend(
                k if v == "" else f"{k}={escape_tag_value(v)}" for k, v in self.tags.items()
            )
        return tags

    def __repr__(self) -> str:
        return f"<Event {self.msgid} {self.line!r}>"


def build_event(
    command: str,
    source: str,
    params: Sequence[str],
    *,
    time: float,
    msgid: str,
    audience: int,
    trailing: bool = False,
    actor: User | None = None,
    origin: Session | None = None,
    channel: Channel | None = None,
    target: User | None = None,
    tags: dict[str, str] | None = None,
    status: str = "",
    cap: str | None = None,
    echo: int = ECHO_NEVER,
    nocap: tuple[str, ...] = (),
) -> Event:
    """An event whose line is checked (:class:`MessageSerializeError` on a bad
    parameter) and whose ``trailing`` text is cut to fit :data:`MAX_RELAY_LINE`."""
    line, fitted = _build_line(source, command, params, trailing)
    return Event(
        command,
        source,
        fitted,
        line,
        time,
        msgid,
        audience,
        actor,
        origin,
        channel,
        target,
        tags,
        status,
        cap,
        echo,
        nocap,
    )


def fit_text(head: str, text: str) -> str:
    """``text`` cut so that ``head + text`` plus CRLF fits :data:`MAX_RELAY_LINE` bytes
    (``head`` ends with `` :``); cheap when it obviously fits."""
    if (len(head) + len(text)) * 4 <= MAX_RELAY_LINE - 2:
        return text
    room = MAX_RELAY_LINE - 2 - len(head.encode("utf-8"))
    if len(text.encode("utf-8")) <= room:
        return text
    return truncate_utf8(text, max(room, 0))


def _build_line(
    source: str, command: str, params: Sequence[str], trailing: bool
) -> tuple[str, list[str]]:
    """``:source COMMAND middle... [:last]``, checked; the last parameter of a
    ``trailing`` event is cut so the line fits in :data:`MAX_RELAY_LINE`."""
    if not valid_middle(source) or not valid_middle(command):
        raise MessageSerializeError(f"bad source or command: {source!r} {command!r}")
    if not params:
        return f":{source} {command}", []
    params = list(params)
    *middle, last = params
    for p in middle:
        if not valid_middle(p):
            raise MessageSerializeError(f"bad middle parameter {p!r} in {command}")
    head = f":{source} {command} " + "".join(p + " " for p in middle)
    if trailing or not valid_middle(last):
        if not valid_trailing(last):
            raise MessageSerializeError(f"bad trailing parameter in {command}")
        head += ":"
        fitted = fit_text(head, last)
        if fitted is not last:
            params[-1] = fitted
        return head + fitted, params
    return head + last, params
