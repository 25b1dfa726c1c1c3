"""The data the server core keeps: sessions (connections) and channels.

Plain classes with ``__slots__`` (there may be tens of thousands of sessions, so
every byte per session counts). No behaviour beyond small accessors: the rules
live in the handlers, the bookkeeping in :mod:`relaychat.protocol.server`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from relaychat.protocol.framing import LineBuffer

__all__ = ["Session", "Channel", "ListEntry", "WhowasEntry", "CAP_SERVER_TIME", "CAP_MESSAGE_TAGS"]

# bits of Session.variant: the capabilities that change how a relayed message is
# serialised; a message is serialised once per variant in use, not once per member.
CAP_SERVER_TIME = 1
CAP_MESSAGE_TAGS = 2


class Session:
    """One client connection, from accept to close."""

    __slots__ = (
        "conn_id",
        "handle",
        "ip",
        "host",
        "nick",
        "nick_folded",
        "user",
        "realname",
        "registered",
        "got_user",
        "password_ok",
        "cap_negotiating",
        "cap_version",
        "caps",
        "variant",
        "modes",
        "away",
        "oper_name",
        "channels",
        "out",
        "closing",
        "connected_at",
        "last_active",
        "idle_since",
        "ping_sent",
        "framer",
        "tokens",
        "tokens_at",
        "inq",
        "inq_bytes",
        "busy",
        "invited",
        "__weakref__",
    )

    def __init__(self, conn_id: int, ip: str, now: float, framer: LineBuffer) -> None:
        self.conn_id = conn_id
        self.handle: Any = None  # the transport's object for this connection; opaque here
        self.ip = ip
        # a host that starts with ':' (IPv6 "::1") would break the message grammar
        self.host = "0" + ip if ip.startswith(":") else ip
        self.nick: str | None = None
        self.nick_folded: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.registered = False
        self.got_user = False
        self.password_ok = False
        self.cap_negotiating = False
        self.cap_version = 0
        self.caps: frozenset[str] = frozenset()
        self.variant = 0
        self.modes: str = ""  # user modes, e.g. "iw"
        self.away: str | None = None
        self.oper_name: str | None = None
        self.channels: dict[str, Channel] = {}  # folded name -> channel
        # pending output: bytes, or slices of a channel's batch for this turn;
        # non-empty means "in the dirty list"
        self.out: list[Any] = []
        self.closing: str | None = None
        self.connected_at = now
        self.last_active = now
        self.idle_since = now
        self.ping_sent: float | None = None
        self.framer = framer
        self.tokens = 0.0
        self.tokens_at = now
        self.inq: deque[bytes] | None = None  # lines waiting for flood tokens or a job
        self.inq_bytes = 0
        self.busy = False  # a blocking job (e.g. password check) is running for it
        self.invited: set[str] | None = None  # folded channel names

    @property
    def name(self) -> str:
        """The nick for numerics, ``*`` before one is set."""
        return self.nick or "*"

    @property
    def prefix(self) -> str:
        return f"{self.nick}!{self.user}@{self.host}"

    def __repr__(self) -> str:
        return f"<Session {self.conn_id} {self.nick or '*'}>"


class ListEntry:
    __slots__ = ("mask", "setter", "set_at")

    def __init__(self, mask: str, setter: str, set_at: float) -> None:
        self.mask = mask
        self.setter = setter
        self.set_at = set_at


class Channel:
    __slots__ = (
        "name",
        "folded",
        "members",
        "created",
        "topic",
        "topic_setter",
        "topic_time",
        "modes",
        "key",
        "limit",
        "lists",
        "batch",
    )

    def __init__(self, name: str, folded: str, now: float) -> None:
        self.name = name
        self.folded = folded
        # member -> status letters it holds, in rank order ("o", "v", "ov" or "")
        self.members: dict[Session, str] = {}
        self.created = now
        self.topic = ""
        self.topic_setter = ""
        self.topic_time = 0.0
        self.modes: set[str] = {"n", "t"}
        self.key: str | None = None
        self.limit: int | None = None
        # list modes: "b" bans, "e" ban exceptions, "I" invite exceptions
        self.lists: dict[str, list[ListEntry]] = {"b": [], "e": [], "I": []}
        self.batch: Any = None  # this turn's ChannelBatch (relaychat.protocol.server)

    def is_op(self, sess: Session) -> bool:
        return "o" in self.members.get(sess, "")


class WhowasEntry:
    __slots__ = ("nick", "user", "host", "realname", "server", "when")

    def __init__(
        self, nick: str, user: str, host: str, realname: str, server: str, when: float
    ) -> None:
        self.nick = nick
        self.user = user
        self.host = host
        self.realname = realname
        self.server = server
        self.when = when
