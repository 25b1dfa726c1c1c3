"""The storage interface the core sees: typing Protocols and plain records.

The core never imports a storage backend (``relaychat.store``): the driver opens
one and hands it to the core (``build_core(..., store=...)``, then
``core.store``). Every method here may block (disk, a lock, a network): handlers
call them only inside an :class:`~relaychat.protocol.ops.Op`'s ``run``, on a
worker thread, never on the core's thread.

A write method returns once its change is committed (so a reply sent from the
op's ``then`` never claims what a crash could undo). Failures of the backend
raise :class:`StoreError`; an op that raises comes back as ``op.error`` and the
session gets an error reply (see ``ServerCore.op_done``).

Kept narrow on purpose: a PostgreSQL backend for several nodes implements the
same few calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

__all__ = [
    "AccessEntry",
    "AccountRecord",
    "AccountStore",
    "Bound",
    "ChannelListEntry",
    "ChannelRecord",
    "ChannelStore",
    "HistoryRow",
    "HistoryStore",
    "PendingVerification",
    "AlwaysOnRecord",
    "AlwaysOnStore",
    "ScramCredentials",
    "ServerBanRecord",
    "ServerBanStore",
    "Store",
    "StoreClosed",
    "StoreError",
]


class StoreError(Exception):
    """The backend failed (I/O error, locked or corrupt file, closed store).
    Messages name the database file and never carry a password or a hash."""


class StoreClosed(StoreError):
    """The store was closed (the server is stopping): expected, not logged loudly."""


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What SCRAM-SHA-256 needs to check a client without the password
    (RFC 5802 section 3): StoredKey = H(ClientKey), ServerKey."""

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """One account. ``folded`` is the name case-folded by the server's casemapping
    (unique); ``name`` keeps the spelling it was registered with."""

    name: str
    folded: str
    password_hash: str = field(repr=False)  # scrypt, see relaychat.passwords
    scram: ScramCredentials | None = field(default=None, repr=False)
    created: float = 0.0  # wall time, seconds since the epoch
    email: str | None = None
    verified: bool = True


@dataclass(frozen=True, slots=True)
class PendingVerification:
    """The email verification an unverified account waits for: the code's hash
    (never the code), when it ends (wall time), and the wrong tries so far."""

    code_hash: bytes = field(repr=False)
    expires: float
    attempts: int = 0


class AccountStore(Protocol):
    def get_account(self, folded: str) -> AccountRecord | None:
        """The account whose folded name is ``folded``, or None."""
        ...

    def create_account(
        self, record: AccountRecord, pending: PendingVerification | None = None
    ) -> bool:
        """Insert ``record``; False (and nothing written) if the folded name is
        taken. With ``pending`` (an unverified account), its verification is
        inserted in the same transaction, and an unverified account of that name
        whose verification is gone or ended by ``record.created`` is replaced."""
        ...

    def set_password(self, folded: str, password_hash: str, scram: ScramCredentials | None) -> bool:
        """Replace an account's credentials; False if there is no such account."""
        ...

    def set_verified(self, folded: str) -> bool:
        """Mark an account's email as verified and delete its pending
        verification; False if there is no such account."""
        ...

    def verification_attempt(self, folded: str) -> PendingVerification | None:
        """Count one try at account ``folded``'s code and return its pending
        verification as counted (``attempts`` includes this one), in one
        transaction so that concurrent tries each count; None if none is pending."""
        ...

    def drop_verification(self, folded: str) -> None:
        """Delete account ``folded``'s pending verification (expired, too many
        tries): the account stays unverified until registered again."""
        ...

    def drop_account(self, folded: str) -> bool:
        """Delete an account; False if there was none."""
        ...

    def account_names(self) -> list[str]:
        """Every account's folded name: read once at start, so that nick
        protection checks a nick in memory instead of asking the store."""
        ...

    def account_certfps(self, folded: str) -> list[str]:
        """The client certificate fingerprints of account ``folded`` (SHA-256,
        lowercase hex), in the order they were added."""
        ...

    def add_certfp(self, folded: str, certfp: str, limit: int) -> str:
        """Add ``certfp`` to account ``folded``'s list, in one transaction:
        "added", "exists" (already on its list), "taken" (on another account's:
        a fingerprint logs in one account only), "full" (``limit`` reached) or
        "no_account"."""
        ...

    def remove_certfp(self, folded: str, certfp: str) -> bool:
        """Take ``certfp`` off account ``folded``'s list; False if it was not on it."""
        ...

    def account_by_certfp(self, certfp: str) -> AccountRecord | None:
        """The account whose list holds ``certfp`` (SASL EXTERNAL), or None.
        ``drop_account`` deletes an account's fingerprints."""
        ...


@dataclass(frozen=True, slots=True)
class ServerBanRecord:
    """One persisted K-line or D-line. ``kind`` is ``"K"`` or ``"D"``; ``mask`` is
    as the operator's ban shows it (canonical); times are wall times, seconds
    since the epoch; ``expires`` is None for a permanent ban."""

    kind: str
    mask: str
    reason: str
    setter: str
    set_at: float
    expires: float | None


class ServerBanStore(Protocol):
    def server_bans(self, now: float) -> list[ServerBanRecord]:
        """Every ban still in force at wall time ``now``, oldest first: read once
        at start. Rows that ended by ``now`` are deleted, not returned."""
        ...

    def add_server_ban(self, record: ServerBanRecord) -> None:
        """Insert a ban, replacing the one of the same kind and mask."""
        ...

    def remove_server_ban(self, kind: str, mask: str) -> bool:
        """Delete a ban; False if there was none."""
        ...


class HistoryRow(NamedTuple):
    """One stored message or event. ``target`` is the history key (a folded
    channel name, or a conversation key for private messages, see
    :mod:`relaychat.protocol.history`); ``seq`` orders a target's rows (1, 2, ...,
    given by the core, so equal times keep their order); ``time`` is wall time in
    milliseconds (what server-time shows); ``event`` is True for a
    JOIN/PART/KICK/QUIT/NICK/TOPIC/MODE/TAGMSG (sent only with event-playback);
    ``line`` is the relayed line without tags or CRLF; ``tags`` the client-only
    tags as on the wire (``+a=1;+b``), ``""`` for none. ``peers`` (private
    messages only, not a column): (owner, the other party's name as shown, that
    name folded) for each party, so that CHATHISTORY finds a conversation by the
    other party's nick and TARGETS lists a user's conversations.

    A tuple: one is made per relayed message, on the core's thread, and a batch of
    them serialises to JSON in one call (the SQLite backend inserts a whole
    batch with one statement)."""

    target: str
    seq: int
    msgid: str
    time: int
    event: bool
    line: str
    account: str | None = None
    bot: bool = False
    tags: str = ""
    peers: tuple[tuple[str, str, str], ...] = ()


# a query bound: ("seq" or "time", value, inclusive)
Bound = tuple[str, int, bool]


class HistoryStore(Protocol):
    def history_heads(self) -> dict[str, int]:
        """Each target's last ``seq``: read once at start (the core numbers on)."""
        ...

    def append_history(self, rows: Sequence[HistoryRow]) -> None:
        """Insert ``rows`` in one transaction; returns once they are committed."""
        ...

    def history_locate(self, target: str, msgid: str) -> tuple[int, int] | None:
        """(seq, time) of the row of ``target`` with ``msgid``, or None."""
        ...

    def history_window(
        self,
        target: str,
        lower: Bound | None,
        upper: Bound | None,
        limit: int,
        newest: bool,
        events: bool,
        since: int | None = None,
    ) -> list[HistoryRow]:
        """At most ``limit`` rows of ``target`` between the bounds, oldest first:
        the newest ones if ``newest``, else the oldest. ``events`` False: messages
        only. ``since``: no row older than this time (ms)."""
        ...

    def history_conversation(self, owner: str, peer: str) -> str | None:
        """The key of ``owner``'s latest conversation with the party whose folded
        name was ``peer``, or None."""
        ...

    def history_targets(
        self, channels: Sequence[str], owner: str | None, after: int, before: int, limit: int
    ) -> list[tuple[str, str, int]]:
        """CHATHISTORY TARGETS: (key, name shown, time of the latest row) for each of
        ``channels`` (keys) and each conversation of ``owner`` with a row strictly
        between ``after`` and ``before`` (ms), by that time, at most ``limit``."""
        ...

    def prune_history(self, before: int | None, max_lines: int) -> int:
        """Delete rows older than ``before`` (ms; None: no age limit) and all but
        the last ``max_lines`` of each target (0: no limit); the count deleted."""
        ...

    def delete_history(self, target: str, msgid: str) -> bool:
        """Delete the row of ``target`` with ``msgid`` (a redacted message);
        False if there was none."""
        ...

    def read_markers(self, account: str) -> dict[str, int]:
        """Every read marker of ``account`` (folded): target key -> time (ms)."""
        ...

    def read_marker(self, account: str, target: str) -> int | None:
        """``account``'s read marker of ``target`` (ms), or None."""
        ...

    def set_read_marker(self, account: str, target: str, when: int, keep: int) -> tuple[int, bool]:
        """Move ``account``'s read marker of ``target`` forward to ``when`` (ms;
        an older or equal time changes nothing), in one transaction; returns
        (the stored time, whether it moved). Past ``keep`` markers for the
        account, those read longest ago are deleted. ``drop_account`` deletes
        an account's markers."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelListEntry:
    """One mask of a registered channel's ``+b``/``+e``/``+I`` list (``letter``)."""

    letter: str
    mask: str
    setter: str
    set_at: float  # wall time


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One account on a registered channel's access list: ``level`` is ``"op"``
    or ``"voice"``; ``folded`` is the account name case-folded (the key)."""

    account: str
    folded: str
    level: str


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A registered channel and the state it keeps across restarts. ``modes``
    holds the flag letters (``"nt"``); times are wall times. ``access`` is only
    read by :meth:`ChannelStore.registered_channels` and written by
    :meth:`ChannelStore.register_channel`; state saves leave it alone."""

    name: str
    folded: str
    founder: str
    registered_at: float
    topic: str = ""
    topic_setter: str = ""
    topic_time: float = 0.0
    modes: str = "nt"
    key: str | None = None
    limit: int | None = None
    lists: tuple[ChannelListEntry, ...] = ()
    access: tuple[AccessEntry, ...] = ()


class ChannelStore(Protocol):
    def registered_channels(self) -> list[ChannelRecord]:
        """Every registered channel with its lists and access list: read once at start."""
        ...

    def register_channel(self, record: ChannelRecord) -> bool:
        """Insert a channel with its state; False (nothing written) if it is registered."""
        ...

    def save_channel_state(self, record: ChannelRecord) -> bool:
        """Replace a registered channel's topic, modes, key, limit and lists (not
        its founder or access list); False (nothing written) if it is not registered."""
        ...

    def drop_channel(self, folded: str) -> bool:
        """Delete a registered channel, its lists and access list; False if there was none."""
        ...

    def set_channel_access(self, folded: str, entry: AccessEntry) -> bool:
        """Add or replace an access entry; False if the channel is not registered."""
        ...

    def remove_channel_access(self, folded: str, account_folded: str) -> bool:
        """Delete an access entry; False if there was none."""
        ...


@dataclass(frozen=True, slots=True)
class AlwaysOnRecord:
    """An always-on user, as it comes back after a restart: the account (folded
    and as spelled), who it was, the channels it was in with its status letters
    there (``"o"``, ``"v"``, ``"ov"`` or ``""``), and the wall time its last
    session left (None: it had one when this was written)."""

    folded: str
    account: str
    nick: str
    ident: str
    host: str
    ip: str
    realname: str
    channels: tuple[tuple[str, str], ...] = ()
    last_seen: float | None = None


class AlwaysOnStore(Protocol):
    def always_on_choices(self) -> dict[str, bool]:
        """Each account's own always-on choice (NickServ SET ALWAYS-ON), by folded
        name; an account that made none is absent. Read once at start."""
        ...

    def set_always_on_choice(self, folded: str, choice: bool | None) -> None:
        """Record an account's choice (None: back to the server's default)."""
        ...

    def always_on_users(self) -> list[AlwaysOnRecord]:
        """Every always-on user saved with :meth:`save_always_on`: read once at start."""
        ...

    def save_always_on(self, record: AlwaysOnRecord) -> None:
        """Insert or replace the saved state of ``record.folded``'s user."""
        ...

    def forget_always_on(self, folded: str) -> None:
        """Delete the saved state of the account's user (its choice stays)."""
        ...


class Store(AccountStore, ServerBanStore, ChannelStore, HistoryStore, AlwaysOnStore, Protocol):
    """Everything the core may ask of storage."""

    def describe(self) -> str:
        """One line for the start-up log: backend, where, schema version."""
        ...

    def close(self) -> None:
        """Commit what is queued and release the backend; later calls raise
        :class:`StoreError`. Idempotent."""
        ...
