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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from relaychat.protocol.storage import (
    AccessEntry,
    AccountRecord,
    AlwaysOnRecord,
    Bound,
    ChannelListEntry,
    ChannelRecord,
    HistoryRow,
    PendingVerification,
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
    # 3: history (CHATHISTORY): rows ordered per target by seq (appended at the
    # rowid's end: a commit dirties few pages whatever the number of targets; a
    # time is found by a binary search on seq, not an index); peers list each
    # party's private conversations
    """
    CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        seq INTEGER NOT NULL,
        msgid TEXT NOT NULL,
        time INTEGER NOT NULL,
        event INTEGER NOT NULL,
        line TEXT NOT NULL,
        account TEXT,
        bot INTEGER NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '',
        UNIQUE (target, seq)
    );
    CREATE INDEX history_msgid ON history (msgid);
    CREATE TABLE history_peers (
        owner TEXT NOT NULL,
        target TEXT NOT NULL,
        name TEXT NOT NULL,
        peer TEXT NOT NULL,
        time INTEGER NOT NULL,
        PRIMARY KEY (owner, target)
    ) WITHOUT ROWID;
    CREATE INDEX history_peers_peer ON history_peers (owner, peer);
    """,
    # 4: registered channels (ChanServ): their kept state, list modes and access lists
    """
    CREATE TABLE registered_channels (
        folded TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        founder TEXT NOT NULL,
        registered_at REAL NOT NULL,
        topic TEXT NOT NULL DEFAULT '',
        topic_setter TEXT NOT NULL DEFAULT '',
        topic_time REAL NOT NULL DEFAULT 0,
        modes TEXT NOT NULL DEFAULT '',
        chan_key TEXT,
        chan_limit INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE channel_lists (
        channel TEXT NOT NULL REFERENCES registered_channels (folded) ON DELETE CASCADE,
        letter TEXT NOT NULL,
        mask TEXT NOT NULL,
        setter TEXT NOT NULL,
        set_at REAL NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (channel, letter, position)
    ) WITHOUT ROWID;
    CREATE TABLE channel_access (
        channel TEXT NOT NULL REFERENCES registered_channels (folded) ON DELETE CASCADE,
        account_folded TEXT NOT NULL,
        account TEXT NOT NULL,
        level TEXT NOT NULL,
        PRIMARY KEY (channel, account_folded)
    ) WITHOUT ROWID;
    """,
    # 5: email verification codes pending (hash only), one per unverified account
    """
    CREATE TABLE account_verifications (
        folded TEXT PRIMARY KEY REFERENCES accounts(folded) ON DELETE CASCADE,
        code_hash BLOB NOT NULL,
        expires REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    """,
    # 6: always-on accounts: the account's choice (NULL: the server's default) and
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
    # 7: read markers (draft/read-marker): per account (folded) and target (the
    # folded channel or nick as the user names it), the read time in ms
    """
    CREATE TABLE read_markers (
        account TEXT NOT NULL,
        target TEXT NOT NULL,
        time INTEGER NOT NULL,
        PRIMARY KEY (account, target)
    ) WITHOUT ROWID;
    """,
    # 8: client certificate fingerprints (SASL EXTERNAL, NickServ CERT): SHA-256 in
    # lowercase hex, each on one account's list at most; added orders a list
    """
    CREATE TABLE account_certfps (
        certfp TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts(folded) ON DELETE CASCADE,
        added INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX account_certfps_account ON account_certfps (account, added);
    """,
]

WRITE_TIMEOUT = 30.0  # seconds a caller waits for its commit before giving up
_memory_names = itertools.count(1)


class _Write:
    __slots__ = ("fn", "urgent", "done", "result", "error")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], urgent: bool = False) -> None:
        self.fn = fn
        self.urgent = urgent  # already a group (history): commit without waiting for more
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()


_HISTORY_COLUMNS = "target, seq, msgid, time, event, line, account, bot, tags"


_INSERT_HISTORY = f"INSERT OR REPLACE INTO history ({_HISTORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
_UPSERT_PEERS = (
    "INSERT OR REPLACE INTO history_peers (owner, target, name, peer, time) VALUES (?,?,?,?,?)"
)


_ACCOUNT_COLUMNS = (
    "name, folded, password_hash, scram_salt, scram_iterations, scram_stored_key,"
    " scram_server_key, created, email, verified"
)


def _account_row(row: tuple[Any, ...]) -> AccountRecord:
    name, fold, pw_hash, salt, iterations, stored, server, created, email, verified = row
    scram = None
    if salt is not None:
        scram = ScramCredentials(bytes(salt), int(iterations), bytes(stored), bytes(server))
    return AccountRecord(name, fold, pw_hash, scram, float(created), email, bool(verified))


def _history_row(row: tuple[Any, ...]) -> HistoryRow:
    target, seq, msgid, when, event, line, account, bot, tags = row
    return HistoryRow(target, seq, msgid, when, bool(event), line, account, bool(bot), tags)


class _HistoryMixin:
    """The history half of :class:`SQLiteStore` (kept apart for reading)."""

    path: str
    _read: Callable[..., list[Any]]
    _write: Callable[..., Any]

    def history_heads(self) -> dict[str, int]:
        rows = self._read("SELECT target, max(seq) FROM history GROUP BY target")
        return {str(t): int(seq) for t, seq in rows}

    def append_history(self, rows: Sequence[HistoryRow]) -> None:
        if not rows:
            return
        values = [r[:9] for r in rows]  # the columns, in _HISTORY_COLUMNS' order
        peers = [
            (owner, r.target, name, fold, r.time) for r in rows for owner, name, fold in r.peers
        ]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_HISTORY, values)
            if peers:
                conn.executemany(_UPSERT_PEERS, peers)

        self._write(insert, urgent=True)

    def history_locate(self, target: str, msgid: str) -> tuple[int, int] | None:
        rows = self._read(
            "SELECT seq, time FROM history WHERE msgid = ? AND target = ?", (msgid, target)
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def _seq_bound(self, target: str, bound: Bound, lower: bool) -> int | None:
        """A bound as an inclusive seq: the first (lower) or last (upper) seq it
        lets through; None if no row of the target passes it."""
        kind, value, inclusive = bound
        if kind == "seq":
            if inclusive:
                return value
            return value + 1 if lower else value - 1
        # min and max in separate queries: each is one index probe (together, a scan)
        low = self._read("SELECT min(seq) FROM history WHERE target = ?", (target,))
        if not low or low[0][0] is None:
            return None
        high = self._read("SELECT max(seq) FROM history WHERE target = ?", (target,))
        first, last = int(low[0][0]), int(high[0][0])
        if lower:  # the first row past the time (time > value, or >= if inclusive)
            return self._first_past(target, first, last, value, strict=not inclusive)
        # upper: every row before the first that is past the time
        past = self._first_past(target, first, last, value, strict=inclusive)
        if past is None:
            return last
        return past - 1 if past > first else None

    def _first_past(self, target: str, lo: int, hi: int, when: int, strict: bool) -> int | None:
        """The smallest seq in [lo, hi] whose time is > ``when`` (``strict``) or >=;
        a binary search on seq, about log2(rows) index probes (times grow with seq:
        a wall clock stepped back only blurs a bound by the step)."""
        found: int | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            rows = self._read(
                "SELECT seq, time FROM history WHERE target = ? AND seq >= ? AND seq <= ?"
                " ORDER BY seq LIMIT 1",
                (target, mid, hi),
            )
            if not rows:  # a gap (pruned rows) up to hi
                hi = mid - 1
                continue
            seq, t = int(rows[0][0]), int(rows[0][1])
            if t > when if strict else t >= when:
                found = seq
                hi = mid - 1
            else:
                lo = seq + 1
        return found

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
        if limit <= 0:
            return []
        where = ["target = ?"]
        args: list[Any] = [target]
        bounds = [(lower, True), (upper, False)]
        if since is not None:
            bounds.append((("time", since, True), True))
        for bound, is_lower in bounds:
            if bound is None:
                continue
            seq = self._seq_bound(target, bound, is_lower)
            if seq is None:
                return []
            where.append("seq >= ?" if is_lower else "seq <= ?")
            args.append(seq)
        if not events:
            where.append("event = 0")
        order = "DESC" if newest else "ASC"
        rows = self._read(
            f"SELECT {_HISTORY_COLUMNS} FROM history WHERE {' AND '.join(where)}"
            f" ORDER BY seq {order} LIMIT ?",
            (*args, limit),
        )
        if newest:
            rows.reverse()
        return [_history_row(r) for r in rows]

    def history_conversation(self, owner: str, peer: str) -> str | None:
        rows = self._read(
            "SELECT target FROM history_peers WHERE owner = ? AND peer = ? ORDER BY time DESC"
            " LIMIT 1",
            (owner, peer),
        )
        return str(rows[0][0]) if rows else None

    def history_targets(
        self, channels: Sequence[str], owner: str | None, after: int, before: int, limit: int
    ) -> list[tuple[str, str, int]]:
        found: list[tuple[str, str, int]] = []
        named = [(key, key) for key in channels]
        if owner is not None:
            named += [
                (str(t), str(n))
                for t, n in self._read(
                    "SELECT target, name FROM history_peers WHERE owner = ?", (owner,)
                )
            ]
        for key, name in named:
            last = self._seq_bound(key, ("time", before, False), lower=False)
            if last is None:
                continue
            rows = self._read(
                "SELECT time FROM history WHERE target = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
                (key, last),
            )
            if rows and int(rows[0][0]) > after:
                found.append((key, name, int(rows[0][0])))
        found.sort(key=lambda item: (item[2], item[0]))
        return found[:limit]

    def delete_history(self, target: str, msgid: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM history WHERE target = ? AND msgid = ?", (target, msgid)
            )
            return cur.rowcount > 0

        return bool(self._write(delete))

    def read_markers(self, account: str) -> dict[str, int]:
        rows = self._read("SELECT target, time FROM read_markers WHERE account = ?", (account,))
        return {str(t): int(when) for t, when in rows}

    def read_marker(self, account: str, target: str) -> int | None:
        rows = self._read(
            "SELECT time FROM read_markers WHERE account = ? AND target = ?", (account, target)
        )
        return int(rows[0][0]) if rows else None

    def set_read_marker(self, account: str, target: str, when: int, keep: int) -> tuple[int, bool]:
        def upsert(conn: sqlite3.Connection) -> tuple[int, bool]:
            moved = conn.execute(
                "INSERT INTO read_markers (account, target, time) VALUES (?, ?, ?)"
                " ON CONFLICT (account, target) DO UPDATE SET time = excluded.time"
                " WHERE excluded.time > read_markers.time",
                (account, target, when),
            ).rowcount
            stored = int(
                conn.execute(
                    "SELECT time FROM read_markers WHERE account = ? AND target = ?",
                    (account, target),
                ).fetchone()[0]
            )
            if moved:
                # over ``keep`` markers: the ones read longest ago go
                conn.execute(
                    "DELETE FROM read_markers WHERE account = ? AND target IN (SELECT target"
                    " FROM read_markers WHERE account = ? ORDER BY time DESC, target"
                    " LIMIT -1 OFFSET ?)",
                    (account, account, max(1, keep)),
                )
            return stored, moved > 0

        result: tuple[int, bool] = self._write(upsert)
        return result

    def prune_history(self, before: int | None, max_lines: int) -> int:
        heads = self.history_heads()
        # per target, the last seq to delete: older than ``before``, or past max_lines
        cut: dict[str, int] = {}
        for target, head in heads.items():
            upto = head - max_lines if max_lines > 0 else 0
            if before is not None:
                old = self._seq_bound(target, ("time", before, False), lower=False)
                upto = max(upto, old or 0)
            if upto > 0:
                cut[target] = upto
        targets = sorted(cut)
        deleted = 0
        for start in range(0, len(targets), 200):  # short transactions: messages keep flowing
            chunk = [(t, cut[t]) for t in targets[start : start + 200]]

            def prune(conn: sqlite3.Connection, chunk: list[tuple[str, int]] = chunk) -> int:
                count = 0
                for target, upto in chunk:
                    count += conn.execute(
                        "DELETE FROM history WHERE target = ? AND seq <= ?", (target, upto)
                    ).rowcount
                return count

            deleted += int(self._write(prune))
        return deleted


class SQLiteStore(_HistoryMixin):
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
    def _write(self, fn: Callable[[sqlite3.Connection], T], urgent: bool = False) -> T:
        """Queue ``fn(conn)`` for the writer; return its result once committed.
        ``urgent``: the change is a group already; the writer commits it with
        what is queued now instead of waiting ``commit_ms`` for more."""
        if self._closed:
            raise StoreClosed(f"{self.path}: the store is closed")
        item = _Write(fn, urgent)
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
            deadline = time.monotonic() + (0.0 if first.urgent else self.commit_seconds)
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

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Rows of one query on this thread's reader connection."""
        conn, lock = self._reader()
        try:
            with lock:
                return conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            if self._closed:  # closed under us (ProgrammingError)
                raise StoreClosed(f"{self.path}: the store is closed") from None
            raise StoreError(f"{self.path}: read failed: {exc}") from None

    # --------------------------------------------------------------- accounts
    def get_account(self, folded: str) -> AccountRecord | None:
        rows = self._read(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE folded = ?", (folded,))
        return _account_row(rows[0]) if rows else None

    def account_certfps(self, folded: str) -> list[str]:
        rows = self._read(
            "SELECT certfp FROM account_certfps WHERE account = ? ORDER BY added, certfp",
            (folded,),
        )
        return [str(row[0]) for row in rows]

    def add_certfp(self, folded: str, certfp: str, limit: int) -> str:
        def insert(conn: sqlite3.Connection) -> str:
            owner = conn.execute(
                "SELECT account FROM account_certfps WHERE certfp = ?", (certfp,)
            ).fetchone()
            if owner is not None:
                return "exists" if owner[0] == folded else "taken"
            if (
                conn.execute("SELECT 1 FROM accounts WHERE folded = ?", (folded,)).fetchone()
                is None
            ):
                return "no_account"
            count, last = conn.execute(
                "SELECT count(*), max(added) FROM account_certfps WHERE account = ?", (folded,)
            ).fetchone()
            if int(count) >= limit:
                return "full"
            conn.execute(
                "INSERT INTO account_certfps (certfp, account, added) VALUES (?, ?, ?)",
                (certfp, folded, int(last or 0) + 1),
            )
            return "added"

        return self._write(insert)

    def remove_certfp(self, folded: str, certfp: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM account_certfps WHERE account = ? AND certfp = ?", (folded, certfp)
            )
            return cur.rowcount == 1

        return self._write(delete)

    def account_by_certfp(self, certfp: str) -> AccountRecord | None:
        rows = self._read(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE folded ="
            " (SELECT account FROM account_certfps WHERE certfp = ?)",
            (certfp,),
        )
        return _account_row(rows[0]) if rows else None

    def create_account(
        self, record: AccountRecord, pending: PendingVerification | None = None
    ) -> bool:
        scram = record.scram

        def insert(conn: sqlite3.Connection) -> bool:
            if pending is not None:
                # an unverified account whose code is gone or ended frees its name
                conn.execute(
                    "DELETE FROM accounts WHERE folded = ? AND verified = 0 AND NOT EXISTS"
                    " (SELECT 1 FROM account_verifications v WHERE v.folded = accounts.folded"
                    " AND v.expires > ?)",
                    (record.folded, record.created),
                )
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
            if cur.rowcount != 1:
                return False
            if pending is not None:
                conn.execute(
                    "INSERT INTO account_verifications (folded, code_hash, expires, attempts)"
                    " VALUES (?, ?, ?, ?)",
                    (record.folded, pending.code_hash, pending.expires, pending.attempts),
                )
            return True

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
            conn.execute("DELETE FROM account_verifications WHERE folded = ?", (folded,))
            cur = conn.execute("UPDATE accounts SET verified = 1 WHERE folded = ?", (folded,))
            return cur.rowcount == 1

        return self._write(update)

    def verification_attempt(self, folded: str) -> PendingVerification | None:
        def count(conn: sqlite3.Connection) -> PendingVerification | None:
            rows = conn.execute(
                "UPDATE account_verifications SET attempts = attempts + 1 WHERE folded = ?"
                " RETURNING code_hash, expires, attempts",
                (folded,),
            ).fetchall()
            if not rows:
                return None
            row = rows[0]
            return PendingVerification(bytes(row[0]), float(row[1]), int(row[2]))

        return self._write(count)

    def drop_verification(self, folded: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM account_verifications WHERE folded = ?", (folded,))

        self._write(delete)

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
            conn.execute("DELETE FROM read_markers WHERE account = ?", (folded,))
            conn.execute("DELETE FROM account_certfps WHERE account = ?", (folded,))
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

    # ---------------------------------------------------- registered channels
    def registered_channels(self) -> list[ChannelRecord]:
        conn, lock = self._reader()
        try:
            with lock:
                rows = conn.execute(
                    "SELECT folded, name, founder, registered_at, topic, topic_setter,"
                    " topic_time, modes, chan_key, chan_limit FROM registered_channels"
                    " ORDER BY registered_at, folded"
                ).fetchall()
                lists = conn.execute(
                    "SELECT channel, letter, mask, setter, set_at FROM channel_lists"
                    " ORDER BY channel, letter, position"
                ).fetchall()
                access = conn.execute(
                    "SELECT channel, account, account_folded, level FROM channel_access"
                    " ORDER BY channel, account_folded"
                ).fetchall()
        except sqlite3.Error as exc:
            if self._closed:
                raise StoreClosed(f"{self.path}: the store is closed") from None
            raise StoreError(f"{self.path}: {exc}") from None
        masks: dict[str, list[ChannelListEntry]] = {}
        for channel, letter, mask, setter, set_at in lists:
            masks.setdefault(channel, []).append(
                ChannelListEntry(str(letter), str(mask), str(setter), float(set_at))
            )
        entries: dict[str, list[AccessEntry]] = {}
        for channel, account, account_folded, level in access:
            entries.setdefault(channel, []).append(
                AccessEntry(str(account), str(account_folded), str(level))
            )
        return [
            ChannelRecord(
                str(name),
                str(folded),
                str(founder),
                float(registered_at),
                str(topic),
                str(topic_setter),
                float(topic_time),
                str(modes),
                None if key is None else str(key),
                None if limit is None else int(limit),
                tuple(masks.get(folded, ())),
                tuple(entries.get(folded, ())),
            )
            for (
                folded,
                name,
                founder,
                registered_at,
                topic,
                topic_setter,
                topic_time,
                modes,
                key,
                limit,
            ) in rows
        ]

    def register_channel(self, record: ChannelRecord) -> bool:
        def insert(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO registered_channels (folded, name, founder, registered_at)"
                " VALUES (?, ?, ?, ?)",
                (record.folded, record.name, record.founder, record.registered_at),
            )
            if cur.rowcount != 1:
                return False
            _write_state(conn, record)
            conn.executemany(
                "INSERT OR REPLACE INTO channel_access (channel, account_folded, account, level)"
                " VALUES (?, ?, ?, ?)",
                [(record.folded, a.folded, a.account, a.level) for a in record.access],
            )
            return True

        return self._write(insert)

    def save_channel_state(self, record: ChannelRecord) -> bool:
        return self._write(lambda conn: _write_state(conn, record))

    def drop_channel(self, folded: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM channel_lists WHERE channel = ?", (folded,))
            conn.execute("DELETE FROM channel_access WHERE channel = ?", (folded,))
            cur = conn.execute("DELETE FROM registered_channels WHERE folded = ?", (folded,))
            return cur.rowcount == 1

        return self._write(delete)

    def set_channel_access(self, folded: str, entry: AccessEntry) -> bool:
        def upsert(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR REPLACE INTO channel_access (channel, account_folded, account, level)"
                " SELECT folded, ?, ?, ? FROM registered_channels WHERE folded = ?",
                (entry.folded, entry.account, entry.level, folded),
            )
            return cur.rowcount == 1

        return self._write(upsert)

    def remove_channel_access(self, folded: str, account_folded: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM channel_access WHERE channel = ? AND account_folded = ?",
                (folded, account_folded),
            )
            return cur.rowcount == 1

        return self._write(delete)

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


def _write_state(conn: sqlite3.Connection, record: ChannelRecord) -> bool:
    """Replace a registered channel's kept state (inside a write); False if the
    channel is not registered (dropped meanwhile: nothing is written)."""
    cur = conn.execute(
        "UPDATE registered_channels SET topic = ?, topic_setter = ?, topic_time = ?,"
        " modes = ?, chan_key = ?, chan_limit = ? WHERE folded = ?",
        (
            record.topic,
            record.topic_setter,
            record.topic_time,
            record.modes,
            record.key,
            record.limit,
            record.folded,
        ),
    )
    if cur.rowcount != 1:
        return False
    conn.execute("DELETE FROM channel_lists WHERE channel = ?", (record.folded,))
    conn.executemany(
        "INSERT INTO channel_lists (channel, letter, mask, setter, set_at, position)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (record.folded, e.letter, e.mask, e.setter, e.set_at, i)
            for i, e in enumerate(record.lists)
        ],
    )
    return True


def get_nowait(q: queue.SimpleQueue[Any]) -> Any:
    return q.get_nowait()


def _statements(script: str) -> list[str]:
    """The statements of a migration (no statement of ours holds a ';' in a literal)."""
    return [s.strip() for s in script.split(";") if s.strip()]
