"""The data the core keeps: users, their connections (sessions) and channels.

Plain classes with ``__slots__`` (there may be tens of thousands of sessions, so
every byte per session counts) and no rules: the rules live in the handlers,
ownership (who may change what) in :mod:`relaychat.protocol.registry`, delivery in
:mod:`relaychat.protocol.output`.

A :class:`User` is a person on the network: nick, ident, host, modes, channels.
A :class:`Session` is one connection: capabilities, queues, flood bucket,
timers. A user logged in to an account may have several sessions
(multiclient: one account, several devices), and an always-on user may have
none at all while it stays in its channels (see
:mod:`relaychat.protocol.multiclient`); a user on another node would have none
either. Channel membership is keyed by :class:`User`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.masks import Mask
    from relaychat.protocol.message import Message
    from relaychat.protocol.sasl import SaslState
    from relaychat.protocol.timebase import Now

__all__ = [
    "CAP_ACCOUNT_TAG",
    "CAP_MESSAGE_TAGS",
    "CAP_MULTILINE",
    "CAP_SERVER_TIME",
    "TAG_VARIANTS",
    "VARIANTS",
    "Channel",
    "ClientBatch",
    "Invite",
    "ListEntry",
    "MetadataState",
    "Session",
    "User",
    "WhowasEntry",
]

# bits of Session.variant: the capabilities that change how a relayed message is
# serialised; a message is serialised once per variant in use, not once per member.
CAP_SERVER_TIME = 1
CAP_MESSAGE_TAGS = 2  # msgid, bot and client-only tags
CAP_ACCOUNT_TAG = 4
TAG_VARIANTS = 7  # the bits above: they choose the tags of a one-line message
CAP_MULTILINE = 8  # draft/multiline and batch: a multiline message comes as a batch
VARIANTS = 16  # every combination of the bits above


NO_CAPS: frozenset[str] = frozenset()  # shared: an empty frozenset per session costs 216 bytes
# shared and read-only: a user in no channel holds no dict (the registry gives it one)
NO_CHANNELS: Mapping[str, Channel] = MappingProxyType({})


class ClientBatch(Protocol):
    """A batch the client opened (IRCv3 client-initiated batches; the one kind is
    ``draft/multiline``, in :mod:`relaychat.protocol.handlers.multiline`). While a
    session has one, ``ServerCore.dispatch`` hands it every line first."""

    held: int  # bytes it buffers: they count toward the session's recvq

    def take(self, core: ServerCore, sess: Session, msg: Message, now: Now) -> bool:
        """Whether the line was the batch's (kept, or dropped with a FAIL); False:
        the command table runs it as usual."""
        ...

    def abandon(self, core: ServerCore, sess: Session, reason: str) -> None:
        """A line of the session could not be read (too long, not UTF-8): the
        batch cannot be trusted to be whole, so it fails."""
        ...


class User:
    """A person on the network, apart from the connection(s) they use."""

    __slots__ = (
        "uid",
        "nick",
        "nick_folded",
        "ident",
        "host",
        "ip",
        "realname",
        "modes",
        "away",
        "oper_name",
        "channels",
        "sessions",
        "invites",
        "registered",
        "signon",
        "idle_since",
        "account",
        "metadata",
        "silence",
        "always_on",
        "last_seen",
        "auto_away",
        "read_markers",
        "_source",
        "__weakref__",
    )

    def __init__(self, uid: int, ip: str, host: str) -> None:
        self.uid = uid
        self.nick: str | None = None
        self.nick_folded: str | None = None
        self.ident: str | None = None
        self.host = host  # what others see: the address, or its cloak
        self.ip = ip  # the real address: for the user, opers and server bans only
        self.realname = ""
        self.modes = ""  # user modes, sorted letters, e.g. "iw"
        self.away: str | None = None
        self.oper_name: str | None = None
        self.channels: Mapping[str, Channel] = NO_CHANNELS  # folded name -> channel
        self.sessions: tuple[Session, ...] = ()  # local connections (none: a remote user)
        self.invites: dict[int, Invite] | None = None  # channel instance id -> invite
        self.registered = False
        self.signon = 0.0  # wall time of registration
        self.idle_since = 0.0  # monotonic time of the last message (WHOIS idle)
        self.account: str | None = None
        self.metadata: dict[str, str] | None = None  # IRCv3 metadata; None until a key is set
        # SILENCE: (mask as shown, compiled folded mask); None until the first one
        self.silence: list[tuple[str, Mask]] | None = None
        # always-on (relaychat.protocol.multiclient): stays when its last session goes
        self.always_on = False
        # wall time its last session left (None: it has one): where the history
        # store's "what you missed" replay starts when a session attaches again
        self.last_seen: float | None = None
        self.auto_away = False  # ``away`` was set because no session is left
        # draft/read-marker (relaychat.protocol.readmarkers): target key -> read
        # time (ms); the store's markers of its account (None: not loaded), or
        # the only copy for a user not logged in (None: none yet)
        self.read_markers: dict[str, int] | None = None
        self._source: str | None = None  # prefix, cached while the user relays messages

    @property
    def name(self) -> str:
        """The nick for numerics, ``*`` before one is set."""
        return self.nick or "*"

    @property
    def prefix(self) -> str:
        """``nick!ident@host``, made afresh."""
        return f"{self.nick or '*'}!{self.ident or '*'}@{self.host}"

    @property
    def source(self) -> str:
        """``nick!ident@host`` for the messages this user sends, cached (an idle
        user does not pay for it; a talking one pays once)."""
        src = self._source
        if src is None:
            src = self._source = f"{self.nick or '*'}!{self.ident or '*'}@{self.host}"
        return src

    def update_prefix(self) -> None:
        """Nick, ident or host changed: drop the cached source."""
        self._source = None

    def __repr__(self) -> str:
        return f"<User {self.uid} {self.nick or '*'}>"


class Session:
    """One client connection, from accept to close."""

    __slots__ = (
        "conn_id",
        "handle",
        "ip",
        "user",
        "got_user",
        "password_ok",
        "cap_negotiating",
        "cap_version",
        "caps",
        "variant",
        "out",
        "queued",
        "backlog",
        "closing",
        "connected_at",
        "last_active",
        "ping_sent",
        "tokens",
        "tokens_at",
        "inq",
        "inq_bytes",
        "busy",
        "drain_at",
        "timer_at",
        "held_response",
        "metadata",
        "sent_bytes",
        "sent_lines",
        "recv_bytes",
        "recv_lines",
        "client_batch",
        "sasl",
        "secure",
        "certfp",
        "__weakref__",
    )

    def __init__(self, conn_id: int, ip: str, user: User, now_mono: float) -> None:
        self.conn_id = conn_id
        self.handle: Any = None  # the transport's object for this connection; opaque here
        self.ip = ip
        self.user = user
        self.got_user = False
        self.password_ok = False
        self.cap_negotiating = False
        self.cap_version = 0
        self.caps: frozenset[str] = NO_CAPS
        self.variant = 0
        # pending output: bytes, or slices of a channel's batch for this turn;
        # non-empty means "in the dirty list"
        self.out: list[Any] | None = None
        self.queued = 0  # bytes in ``out`` (slices of shared batches not counted)
        self.backlog = 0  # bytes the transport holds unsent, as it last told us
        self.closing: str | None = None
        self.connected_at = now_mono
        self.last_active = now_mono
        self.ping_sent: float | None = None
        self.tokens = 0.0
        self.tokens_at = now_mono
        self.inq: deque[bytes | None] | None = None  # lines waiting for flood tokens or an op
        self.inq_bytes = 0
        self.busy = False  # an ordered operation (e.g. a password check) is running
        self.drain_at: float | None = None  # when its queued lines may go on
        self.timer_at: float | None = None  # its pending check (relaychat.protocol.timers)
        # a command's response (lines, label) kept while its ordered operation runs
        self.held_response: tuple[list[bytes], str | None] | None = None
        self.metadata: MetadataState | None = None  # made by its first METADATA command
        # traffic for STATS l: lines received are counted by the core, the rest by the driver
        self.sent_bytes = 0
        self.sent_lines = 0
        self.recv_bytes = 0
        self.recv_lines = 0
        self.client_batch: ClientBatch | None = None  # a batch it has open (draft/multiline)
        self.sasl: SaslState | None = None  # an AUTHENTICATE exchange in progress
        self.secure = False  # over TLS (the transport says so at connect)
        self.certfp: str | None = None  # its client certificate's SHA-256, lowercase hex

    @property
    def registered(self) -> bool:
        return self.user.registered

    @property
    def nick(self) -> str | None:
        return self.user.nick

    @property
    def name(self) -> str:
        return self.user.nick or "*"

    def __repr__(self) -> str:
        return f"<Session {self.conn_id} {self.user.nick or '*'}>"


class MetadataState:
    """One connection's part in IRCv3 metadata: the keys it subscribed to and its
    two budgets (SETs, and lines of synchronisation), token buckets refilled with
    monotonic time. Made on first use: a connection that never sends METADATA
    holds none."""

    __slots__ = ("subs", "change_tokens", "change_at", "sync_tokens", "sync_at")

    def __init__(self, change_tokens: float, sync_tokens: float, now_mono: float) -> None:
        self.subs: set[str] | None = None  # None: subscribed to nothing
        self.change_tokens = change_tokens
        self.change_at = now_mono
        self.sync_tokens = sync_tokens
        self.sync_at = now_mono


class ListEntry:
    __slots__ = ("mask", "folded", "setter", "set_at")

    def __init__(self, mask: str, folded: str, setter: str, set_at: float) -> None:
        self.mask = mask
        self.folded = folded
        self.setter = setter
        self.set_at = set_at


class Invite:
    """An invitation to one channel *instance*: single use, expiring."""

    __slots__ = ("channel_id", "channel_name", "inviter", "expires")

    def __init__(self, channel_id: int, channel_name: str, inviter: str, expires: float) -> None:
        self.channel_id = channel_id
        self.channel_name = channel_name
        self.inviter = inviter
        self.expires = expires  # monotonic


class Channel:
    __slots__ = (
        "cid",
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
        "metadata",
        "batch",
        "registration",
    )

    def __init__(self, cid: int, name: str, folded: str, created: float) -> None:
        self.cid = cid  # unique per channel instance: a re-created channel gets a new one
        self.name = name
        self.folded = folded
        # member -> status letters it holds, in rank order ("o", "v", "ov" or "")
        self.members: dict[User, str] = {}
        self.created = created  # wall
        self.topic = ""
        self.topic_setter = ""
        self.topic_time = 0.0
        self.modes: set[str] = {"n", "t"}
        self.key: str | None = None
        self.limit: int | None = None
        # list modes: "b" bans, "e" ban exceptions, "I" invite exceptions
        self.lists: dict[str, list[ListEntry]] = {"b": [], "e": [], "I": []}
        self.metadata: dict[str, str] | None = None  # IRCv3 metadata; None until a key is set
        self.batch: Any = None  # this turn's ChannelBatch (relaychat.protocol.output)
        # a registered channel's founder and access list (relaychat.protocol.chanreg);
        # such a channel stays when its last member leaves
        self.registration: Any = None

    def is_op(self, user: User) -> bool:
        return "o" in self.members.get(user, "")

    def __repr__(self) -> str:
        return f"<Channel {self.cid} {self.name}>"


class WhowasEntry:
    __slots__ = ("nick", "folded", "ident", "host", "realname", "server", "when")

    def __init__(
        self, nick: str, folded: str, ident: str, host: str, realname: str, server: str, when: float
    ) -> None:
        self.nick = nick
        self.folded = folded
        self.ident = ident
        self.host = host
        self.realname = realname
        self.server = server
        self.when = when
