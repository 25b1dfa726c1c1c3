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

from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "AccountRecord",
    "AccountStore",
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


class AccountStore(Protocol):
    def get_account(self, folded: str) -> AccountRecord | None:
        """The account whose folded name is ``folded``, or None."""
        ...

    def create_account(self, record: AccountRecord) -> bool:
        """Insert ``record``; False (and nothing written) if the folded name is taken."""
        ...

    def set_password(self, folded: str, password_hash: str, scram: ScramCredentials | None) -> bool:
        """Replace an account's credentials; False if there is no such account."""
        ...

    def set_verified(self, folded: str) -> bool:
        """Mark an account's email as verified; False if there is no such account."""
        ...

    def drop_account(self, folded: str) -> bool:
        """Delete an account; False if there was none."""
        ...

    def account_names(self) -> list[str]:
        """Every account's folded name: read once at start, so that nick
        protection checks a nick in memory instead of asking the store."""
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


class Store(AccountStore, ServerBanStore, AlwaysOnStore, Protocol):
    """Everything the core may ask of storage."""

    def describe(self) -> str:
        """One line for the start-up log: backend, where, schema version."""
        ...

    def close(self) -> None:
        """Commit what is queued and release the backend; later calls raise
        :class:`StoreError`. Idempotent."""
        ...
