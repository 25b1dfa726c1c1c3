"""The SQLite backend (stdlib ``sqlite3``): one file, created where ``[store] path`` says.

Theory of operation
-------------------
* **Start-up** (``SQLiteStore(path)``, on the caller's thread): open the file,
  switch it to WAL, apply the migrations it lacks (``schema_version`` holds the
  number applied), all before the server listens. A file that cannot be opened,
  is locked by another process, is not a database, or was written by a newer
  relaychat raises :class:`StoreError` naming the file.
* **Writes** go through one writer thread, which owns the writer connection.
  A caller queues a change and blocks until it is *committed*: the writer takes
  what is queued and commits it as one transaction (group commit) once it has
  ``commit_rows`` changes or ``commit_ms`` milliseconds have passed since the
  first, whichever comes first. Each change runs in its own savepoint, so one
  that fails (a name already taken) fails alone.
* **Reads** run on the calling thread, on a connection of its own (one per
  thread, opened on first use); in WAL mode they never wait for the writer and
  see the last commit.
* ``synchronous``: ``normal`` (default) survives a crash of the process (a
  commit is in the WAL before the caller hears of it); ``full`` also survives
  a power loss, at the cost of an fsync per group.
* ``":memory:"`` is a private in-memory database (the test double): a
  shared-cache database named per store, kept alive by the writer connection;
  its readers read uncommitted data (shared-cache readers would otherwise fail
  with "table is locked" while a group is being written).

Callers are worker threads (the core's Ops), never the core's thread. Messages
of errors name the file and never carry a password or a hash.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from relaychat.protocol.storage import (
    AccountRecord,
    AlwaysOnRecord,
    ScramCredentials,
    ServerBanRecord,
    StoreClosed,
    StoreError,
)

__all__ = ["MIGRATIONS", "SQLiteStore"]

log = logging.getLogger("relaychat.store")

T = TypeVar("T")

# Migration n (1-based) takes a database from version n-1 to n. Append only:
# a released migration is never edited.
MIGRATIONS: list[str] = [
    # 1: accounts
    """
    CREATE TABLE accounts (
        folded TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        scram_salt BLOB,
        scram_iterations INTEGER,
        scram_stored_key BLOB,
        scram_server_key BLOB,
        created REAL NOT NULL,
        email TEXT,
        verified INTEGER NOT NULL DEFAULT 1
    ) WITHOUT ROWID;
    """,
    # 2: server bans (K-lines, D-lines); times are wall times, expires NULL: permanent
    """
    CREATE TABLE server_bans (
        kind TEXT NOT NULL,
        mask TEXT NOT NULL,
        reason TEXT NOT NULL,
        setter TEXT NOT NULL,
        set_at REAL NOT NULL,
        expires REAL,
        PRIMARY KEY (kind, mask)
    );
    """,
    # always-on accounts: the account's choice (NULL: the server's default) and
    # its user's state while it is always-on (nick NULL: none saved); channels
    # is JSON [[name, status], ...]; last_seen a wall time
    """
    CREATE TABLE always_on (
        folded TEXT PRIMARY KEY,
        choice INTEGER,
        account TEXT,
        nick TEXT,
        ident TEXT,
        host TEXT,
        ip TEXT,
        realname TEXT,
        channels TEXT,
        last_seen REAL
    ) WITHOUT ROWID;
    """,
]

WRITE_TIMEOUT = 30.0  # seconds a caller waits for its commit before giving up
_memory_names = itertools.count(1)


class _Write:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()


class SQLiteStore:
    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "normal",
        commit_rows: int = 100,
        commit_ms: float = 2.0,
        busy_timeout: float = 5.0,
        migrations: list[str] | None = None,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        self.path = path
        self.synchronous = synchronous
        self.commit_rows = max(1, commit_rows)
        self.commit_seconds = max(0.0, commit_ms / 1000.0)
        self.busy_timeout = busy_timeout
        self.memory = path == ":memory:"
        if self.memory:
            self._target = f"file:relaychat-memory-{id(self)}-{next(_memory_names)}"
            self._target += "?mode=memory&cache=shared"
        else:
            self._target = path
        self.migrated_from: int | None = None  # the version migrated from at start, if any
        self.commits = 0  # transactions committed by the writer (for tests and benches)
        self.rows = 0  # changes committed
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._local = threading.local()
        # every reader connection with its lock: held while it is used, so that
        # close() (from another thread) never closes a connection in use
        self._readers: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._close_lock = threading.Lock()
        try:
            self._writer_conn = self._connect()
            if not self.memory:
                mode = self._writer_conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot switch to WAL (journal mode {mode})")
            self._writer_conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.version = self._migrate(self._writer_conn, migrations or MIGRATIONS)
        except sqlite3.Error as exc:
            conn = getattr(self, "_writer_conn", None)
            if conn is not None:
                conn.close()
            raise StoreError(f"{path}: cannot open the database: {exc}") from None
        self._thread = threading.Thread(
            target=self._write_loop, name="relaychat-store-writer", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._target,
            uri=self.memory,
            timeout=self.busy_timeout,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # close() may come from another thread
        )
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _reader(self) -> tuple[sqlite3.Connection, threading.Lock]:
        """This thread's reader connection and its lock (take the lock to use it)."""
        if self._closed:
            raise StoreClosed(f"{self.path}: the store is closed")
        reader: tuple[sqlite3.Connection, threading.Lock] | None = getattr(
            self._local, "reader", None
        )
        if reader is None:
            try:
                conn = self._connect()
                if self.memory:
                    conn.execute("PRAGMA read_uncommitted=1")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot open a reader: {exc}") from None
            reader = (conn, threading.Lock())
            self._local.reader = reader
            with self._readers_lock:
                if self.closed:  # close() ran meanwhile
                    conn.close()
                    raise StoreClosed(f"{self.path}: the store is closed")
                self._readers.append(reader)
        return reader

    def _migrate(self, conn: sqlite3.Connection, migrations: list[str]) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        version = int(row[0] or 0)
        if version > len(migrations):
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this relaychat knows "
                f"({len(migrations)}); use a newer relaychat"
            )
        for number in range(version + 1, len(migrations) + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(migrations[number - 1]):
                    conn.execute(statement)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.migrated_from = version if version < len(migrations) else None
        return len(migrations)

    # ----------------------------------------------------------------- writer
    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Queue ``fn(conn)`` for the writer; return its result once committed."""
        if self._closed:
            raise StoreClosed(f"{self.path}: the store is closed")
        item = _Write(fn)
        self._queue.put(item)
        if not item.done.wait(WRITE_TIMEOUT):
            raise StoreError(f"{self.path}: no commit within {WRITE_TIMEOUT:g} s")
        if item.error is not None:
            if isinstance(item.error, StoreError):
                raise item.error
            raise StoreError(f"{self.path}: write failed: {item.error}") from None
        result: T = item.result
        return result

    def _write_loop(self) -> None:
        get = self._queue.get
        stopping = False
        while not stopping:
            first = get()
            if first is _STOP:
                break
            batch: list[_Write] = [first]
            deadline = time.monotonic() + self.commit_seconds
            while len(batch) < self.commit_rows:
                left = deadline - time.monotonic()
                try:
                    nxt = get(timeout=left) if left > 0 else get_nowait(self._queue)
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            self._commit(batch)
        # close(): what was queued before the stop is committed too
        rest: list[_Write] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                rest.append(item)
        if rest:
            self._commit(rest)
        self._writer_conn.close()

    def _commit(self, batch: list[_Write]) -> None:
        conn = self._writer_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                conn.execute("SAVEPOINT one")
                try:
                    item.result = item.fn(conn)
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO one")
                    item.error = exc
                conn.execute("RELEASE one")
            conn.execute("COMMIT")
            self.commits += 1
            self.rows += len(batch)
        except sqlite3.Error as exc:
            log.error("%s: commit of %d changes failed: %s", self.path, len(batch), exc)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("%s: rollback failed", self.path)
            error = StoreError(f"{self.path}: commit failed: {exc}")
            for item in batch:
                item.error = error
        except BaseException as exc:  # a bug in a change: every waiter hears of it
            log.exception("%s: a change raised", self.path)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for item in batch:
                item.error = StoreError(f"{self.path}: internal error ({type(exc).__name__})")
        finally:
            for item in batch:
                item.done.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def describe(self) -> str:
        where = "in memory" if self.memory else self.path
        text = f"SQLite {where}, schema version {self.version}, synchronous={self.synchronous}"
        if self.migrated_from is not None:
            text += f" (migrated from version {self.migrated_from})"
        return text

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join(WRITE_TIMEOUT)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn, lock in readers:
            with lock:  # a read in progress on another thread finishes first
                conn.close()

    # --------------------------------------------------------------- accounts
    def get_account(self, folded: str) -> AccountRecord | None:
        conn, lock = self._reader()
        try:
            with lock:
                row = conn.execute(
                    "SELECT name, folded, password_hash, scram_salt, scram_iterations,"
                    " scram_stored_key, scram_server_key, created, email, verified"
                    " FROM accounts WHERE folded = ?",
                    (folded,),
                ).fetchone()
        except sqlite3.Error as exc:
            if self._closed:  # closed under us (ProgrammingError)
                raise StoreClosed(f"{self.path}: the store is closed") from None
            raise StoreError(f"{self.path}: read failed: {exc}") from None
        if row is None:
            return None
        name, fold, pw_hash, salt, iterations, stored, server, created, email, verified = row
        scram = None
        if salt is not None:
            scram = ScramCredentials(bytes(salt), int(iterations), bytes(stored), bytes(server))
        return AccountRecord(name, fold, pw_hash, scram, float(created), email, bool(verified))

    def create_account(self, record: AccountRecord) -> bool:
        scram = record.scram

        def insert(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO accounts (folded, name, password_hash, scram_salt,"
                " scram_iterations, scram_stored_key, scram_server_key, created, email, verified)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.folded,
                    record.name,
                    record.password_hash,
                    scram.salt if scram else None,
                    scram.iterations if scram else None,
                    scram.stored_key if scram else None,
                    scram.server_key if scram else None,
                    record.created,
                    record.email,
                    int(record.verified),
                ),
            )
            return cur.rowcount == 1

        return self._write(insert)

    def set_password(self, folded: str, password_hash: str, scram: ScramCredentials | None) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE accounts SET password_hash = ?, scram_salt = ?, scram_iterations = ?,"
                " scram_stored_key = ?, scram_server_key = ? WHERE folded = ?",
                (
                    password_hash,
                    scram.salt if scram else None,
                    scram.iterations if scram else None,
                    scram.stored_key if scram else None,
                    scram.server_key if scram else None,
                    folded,
                ),
            )
            return cur.rowcount == 1

        return self._write(update)

    def set_verified(self, folded: str) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE accounts SET verified = 1 WHERE folded = ?", (folded,))
            return cur.rowcount == 1

        return self._write(update)

    def account_names(self) -> list[str]:
        conn, lock = self._reader()
        try:
            with lock:
                rows = conn.execute("SELECT folded FROM accounts").fetchall()
        except sqlite3.Error as exc:
            if self._closed:
                raise StoreClosed(f"{self.path}: the store is closed") from None
            raise StoreError(f"{self.path}: {exc}") from None
        return [row[0] for row in rows]

    def drop_account(self, folded: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM always_on WHERE folded = ?", (folded,))
            return conn.execute("DELETE FROM accounts WHERE folded = ?", (folded,)).rowcount == 1

        return self._write(delete)

    # ------------------------------------------------------------ server bans
    def server_bans(self, now: float) -> list[ServerBanRecord]:
        def drop_expired(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM server_bans WHERE expires IS NOT NULL AND expires <= ?", (now,)
            )
            return cur.rowcount

        dropped = self._write(drop_expired)
        if dropped:
            log.info("%s: %d expired server ban(s) deleted", self.path, dropped)
        conn, lock = self._reader()
        try:
            with lock:
                rows = conn.execute(
                    "SELECT kind, mask, reason, setter, set_at, expires FROM server_bans"
                    " WHERE expires IS NULL OR expires > ? ORDER BY set_at, rowid",
                    (now,),
                ).fetchall()
        except sqlite3.Error as exc:
            if self._closed:
                raise StoreClosed(f"{self.path}: the store is closed") from None
            raise StoreError(f"{self.path}: {exc}") from None
        return [
            ServerBanRecord(
                str(kind),
                str(mask),
                str(reason),
                str(setter),
                float(set_at),
                None if expires is None else float(expires),
            )
            for kind, mask, reason, setter, set_at, expires in rows
        ]

    def add_server_ban(self, record: ServerBanRecord) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO server_bans (kind, mask, reason, setter, set_at, expires)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.kind,
                    record.mask,
                    record.reason,
                    record.setter,
                    record.set_at,
                    record.expires,
                ),
            )

        self._write(upsert)

    def remove_server_ban(self, kind: str, mask: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM server_bans WHERE kind = ? AND mask = ?", (kind, mask))
            return cur.rowcount == 1

        return self._write(delete)

    # -------------------------------------------------------------- always-on
    def _read(self, sql: str) -> list[Any]:
        conn, lock = self._reader()
        try:
            with lock:
                return conn.execute(sql).fetchall()
        except sqlite3.Error as exc:
            if self._closed:
                raise StoreClosed(f"{self.path}: the store is closed") from None
            raise StoreError(f"{self.path}: {exc}") from None

    def always_on_choices(self) -> dict[str, bool]:
        rows = self._read("SELECT folded, choice FROM always_on WHERE choice IS NOT NULL")
        return {str(folded): bool(choice) for folded, choice in rows}

    def set_always_on_choice(self, folded: str, choice: bool | None) -> None:
        value = None if choice is None else int(choice)

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO always_on (folded, choice) VALUES (?, ?)"
                " ON CONFLICT (folded) DO UPDATE SET choice = excluded.choice",
                (folded, value),
            )
            conn.execute(
                "DELETE FROM always_on WHERE folded = ? AND choice IS NULL AND nick IS NULL",
                (folded,),
            )

        self._write(upsert)

    def always_on_users(self) -> list[AlwaysOnRecord]:
        rows = self._read(
            "SELECT folded, account, nick, ident, host, ip, realname, channels, last_seen"
            " FROM always_on WHERE nick IS NOT NULL ORDER BY folded"
        )
        out = []
        for folded, account, nick, ident, host, ip, realname, channels, last_seen in rows:
            try:
                pairs = tuple(
                    (str(name), str(status)) for name, status in json.loads(channels or "[]")
                )
            except (ValueError, TypeError):
                log.warning("%s: unreadable channel list of always-on %r", self.path, folded)
                pairs = ()
            out.append(
                AlwaysOnRecord(
                    str(folded),
                    str(account),
                    str(nick),
                    str(ident),
                    str(host),
                    str(ip),
                    str(realname),
                    pairs,
                    None if last_seen is None else float(last_seen),
                )
            )
        return out

    def save_always_on(self, record: AlwaysOnRecord) -> None:
        channels = json.dumps([list(pair) for pair in record.channels])

        def upsert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO always_on (folded, account, nick, ident, host, ip, realname,"
                " channels, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (folded) DO UPDATE SET account = excluded.account,"
                " nick = excluded.nick, ident = excluded.ident, host = excluded.host,"
                " ip = excluded.ip, realname = excluded.realname,"
                " channels = excluded.channels, last_seen = excluded.last_seen",
                (
                    record.folded,
                    record.account,
                    record.nick,
                    record.ident,
                    record.host,
                    record.ip,
                    record.realname,
                    channels,
                    record.last_seen,
                ),
            )

        self._write(upsert)

    def forget_always_on(self, folded: str) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE always_on SET account = NULL, nick = NULL, ident = NULL, host = NULL,"
                " ip = NULL, realname = NULL, channels = NULL, last_seen = NULL"
                " WHERE folded = ?",
                (folded,),
            )
            conn.execute("DELETE FROM always_on WHERE folded = ? AND choice IS NULL", (folded,))

        self._write(clear)


def get_nowait(q: queue.SimpleQueue[Any]) -> Any:
    return q.get_nowait()


def _statements(script: str) -> list[str]:
    """The statements of a migration (no statement of ours holds a ';' in a literal)."""
    return [s.strip() for s in script.split(";") if s.strip()]
