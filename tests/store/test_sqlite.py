"""The SQLite store: migrations, group commit, reopening, and the errors at start."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ircutil import child_env
from relaychat.config import StoreConfig
from relaychat.protocol.storage import (
    AccountRecord,
    ScramCredentials,
    ServerBanRecord,
    StoreError,
)
from relaychat.store.base import open_store
from relaychat.store.sqlite import MIGRATIONS, SQLiteStore


def record(name: str, pw: str = "scrypt$hash") -> AccountRecord:
    scram = ScramCredentials(b"salt", 4096, b"s" * 32, b"k" * 32)
    return AccountRecord(name, name.lower(), pw, scram, 1_700_000_000.0, None)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "relaychat.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(str(db))
    yield s
    s.close()


def test_a_new_file_is_created_in_wal_mode_at_the_latest_schema(
    store: SQLiteStore, db: Path
) -> None:
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
    assert store.version == len(MIGRATIONS)


def test_accounts_round_trip(store: SQLiteStore) -> None:
    assert store.get_account("alice") is None
    assert store.create_account(record("Alice"))
    assert not store.create_account(record("ALICE".capitalize()))  # folded name taken
    got = store.get_account("alice")
    assert got is not None and got.name == "Alice" and got.scram is not None
    assert got.scram.iterations == 4096 and got.scram.stored_key == b"s" * 32
    assert store.set_password("alice", "scrypt$other", None)
    got = store.get_account("alice")
    assert got is not None and got.password_hash == "scrypt$other" and got.scram is None
    assert not store.set_password("nobody", "x", None)
    assert store.drop_account("alice") and not store.drop_account("alice")
    assert store.get_account("alice") is None


def test_reopen_after_close_keeps_what_was_committed(db: Path) -> None:
    s = SQLiteStore(str(db))
    assert s.create_account(record("Bob"))
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.get_account("bob")
    with pytest.raises(StoreError, match="closed"):
        s.create_account(record("Carol"))
    again = SQLiteStore(str(db))
    try:
        got = again.get_account("bob")
        assert got is not None and got.name == "Bob"
    finally:
        again.close()


def test_migrations_apply_only_what_the_file_lacks(db: Path) -> None:
    SQLiteStore(str(db)).close()
    extra = [*MIGRATIONS, "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (7)"]
    s = SQLiteStore(str(db), migrations=extra)
    s.close()
    s = SQLiteStore(str(db), migrations=extra)  # nothing applied twice
    s.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(extra),)]
        assert conn.execute("SELECT x FROM extra").fetchall() == [(7,)]


def test_a_file_from_a_newer_relaychat_is_refused(db: Path) -> None:
    extra = [*MIGRATIONS, "CREATE TABLE extra (x INTEGER)"]
    SQLiteStore(str(db), migrations=extra).close()
    with pytest.raises(StoreError, match="newer") as err:
        SQLiteStore(str(db))
    assert str(db) in str(err.value)


def test_a_failed_migration_leaves_the_file_at_its_version(db: Path) -> None:
    SQLiteStore(str(db)).close()
    bad = [*MIGRATIONS, "CREATE TABLE ok (x INTEGER); THIS IS NOT SQL"]
    with pytest.raises(StoreError):
        SQLiteStore(str(db), migrations=bad)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'ok'").fetchall()


def test_group_commit_takes_n_rows_in_one_transaction(db: Path) -> None:
    s = SQLiteStore(str(db), commit_rows=10, commit_ms=5000.0)
    try:
        go = threading.Barrier(50)
        results: list[bool] = []

        def register(i: int) -> None:
            go.wait()
            results.append(s.create_account(record(f"user{i}")))

        threads = [threading.Thread(target=register, args=(i,)) for i in range(50)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # 50 changes, 10 per group: every group was full long before 5 s
        assert results == [True] * 50
        assert (s.commits, s.rows) == (5, 50)
        assert time.monotonic() - start < 5.0
    finally:
        s.close()


def test_group_commit_waits_at_most_t_ms_for_more_rows(db: Path) -> None:
    s = SQLiteStore(str(db), commit_rows=1000, commit_ms=100.0)
    try:
        start = time.monotonic()
        assert s.create_account(record("Lonely"))
        elapsed = time.monotonic() - start
        assert 0.09 <= elapsed < 5.0
        assert (s.commits, s.rows) == (1, 1)
    finally:
        s.close()


def test_one_failing_change_fails_alone_in_its_group(db: Path) -> None:
    s = SQLiteStore(str(db), commit_rows=3, commit_ms=5000.0)
    try:
        out: dict[str, object] = {}

        def write(name: str, fn: object) -> None:
            try:
                out[name] = s._write(fn)  # type: ignore[arg-type]
            except StoreError as exc:
                out[name] = exc

        def bad(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        threads = [
            threading.Thread(target=lambda: out.update(a=s.create_account(record("A")))),
            threading.Thread(target=write, args=("bad", bad)),
            threading.Thread(target=lambda: out.update(b=s.create_account(record("B")))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert out["a"] is True and out["b"] is True
        assert isinstance(out["bad"], StoreError) and str(db) in str(out["bad"])
        assert s.commits == 1
        assert s.get_account("a") is not None and s.get_account("b") is not None
    finally:
        s.close()


def test_reads_see_committed_writes_from_other_threads(store: SQLiteStore) -> None:
    assert store.create_account(record("Dave"))
    seen: list[object] = []
    t = threading.Thread(target=lambda: seen.append(store.get_account("dave")))
    t.start()
    t.join(10)
    assert isinstance(seen[0], AccountRecord)


def test_memory_store_is_private_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    a = SQLiteStore(":memory:")
    b = SQLiteStore(":memory:")
    try:
        assert a.create_account(record("Eve"))
        assert a.get_account("eve") is not None
        assert b.get_account("eve") is None
        t = threading.Thread(target=lambda: a.get_account("eve"))
        t.start()
        t.join(10)
    finally:
        a.close()
        b.close()
    assert list(tmp_path.iterdir()) == []


def test_synchronous_full_is_applied(db: Path) -> None:
    s = SQLiteStore(str(db), synchronous="full")
    try:
        assert s._writer_conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        s.close()
    s = open_store(StoreConfig(path=str(db)))
    try:
        assert isinstance(s, SQLiteStore) and s.synchronous == "normal"
    finally:
        s.close()


def test_a_corrupt_file_is_an_error_naming_it(db: Path) -> None:
    db.write_bytes(b"this is not a database, " * 200)
    with pytest.raises(StoreError) as err:
        SQLiteStore(str(db))
    assert str(db) in str(err.value) and "not a database" in str(err.value)


def test_a_file_locked_by_another_process_is_an_error_naming_it(db: Path) -> None:
    SQLiteStore(str(db)).close()
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("PRAGMA locking_mode=EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("INSERT INTO schema_version VALUES (0)")
        with pytest.raises(StoreError) as err:
            SQLiteStore(str(db), busy_timeout=0.2)
        assert str(db) in str(err.value) and "locked" in str(err.value)
    finally:
        other.close()


def test_a_file_in_a_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir.db"
    with pytest.raises(StoreError) as err:
        SQLiteStore(str(path))
    assert str(path) in str(err.value)


def test_serve_exits_non_zero_naming_a_corrupt_file(tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    db.write_bytes(b"garbage " * 500)
    conf = tmp_path / "relaychat.toml"
    conf.write_text(f'[store]\npath = "{db}"\n\n[[listen]]\naddress = "127.0.0.1"\nport = 0\n')
    for engine in ("loop", "threads"):
        result = subprocess.run(
            [sys.executable, "-m", "relaychat", "serve", "--config", str(conf), "--engine", engine],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=tmp_path,
            timeout=30,
        )
        assert result.returncode == 1, result.stderr
        assert str(db) in result.stderr and "not a database" in result.stderr
        assert "Traceback" not in result.stderr


def test_close_while_other_threads_read_fails_their_reads_cleanly(db: Path) -> None:
    """close() from one thread while others are reading: each read finishes or
    raises StoreError (a connection is never closed under a running query)."""
    s = SQLiteStore(str(db))
    assert s.create_account(record("Reader"))
    started = threading.Barrier(5)
    outcomes: list[str] = []

    def read() -> None:
        started.wait()
        try:
            while True:
                assert s.get_account("reader") is not None
        except StoreError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    s.close()
    for t in threads:
        t.join(10)
    assert len(outcomes) == 4 and all(str(db) in o for o in outcomes)


def test_describe_names_the_file_and_a_migration(db: Path) -> None:
    s = SQLiteStore(str(db))
    try:
        assert s.describe() == (
            f"SQLite {db}, schema version {len(MIGRATIONS)}, synchronous=normal"
            " (migrated from version 0)"
        )
    finally:
        s.close()
    s = SQLiteStore(str(db))
    try:
        assert "migrated" not in s.describe()
    finally:
        s.close()


# ------------------------------------------------------------ server bans
T0 = 1_700_000_000.0


def ban(kind: str, mask: str, expires: float | None = None, set_at: float = T0) -> ServerBanRecord:
    return ServerBanRecord(kind, mask, "go away", "oper!o@h", set_at, expires)


def test_a_version_1_file_is_migrated_keeping_its_accounts(db: Path) -> None:
    old = SQLiteStore(str(db), migrations=MIGRATIONS[:1])
    assert old.version == 1
    assert old.create_account(record("Alice"))
    old.close()
    s = SQLiteStore(str(db))
    try:
        assert s.version == len(MIGRATIONS) and s.migrated_from == 1
        assert s.get_account("alice") is not None
        assert s.server_bans(T0) == []
        s.add_server_ban(ban("D", "192.0.2.0/24"))
        assert [b.mask for b in s.server_bans(T0)] == ["192.0.2.0/24"]
    finally:
        s.close()


def test_server_bans_add_replace_remove_and_reload(db: Path) -> None:
    s = SQLiteStore(str(db))
    s.add_server_ban(ban("K", "*@bad.example", set_at=T0 + 1))
    s.add_server_ban(ban("D", "192.0.2.7", expires=T0 + 3600))
    s.add_server_ban(ban("K", "*@other.example", set_at=T0 + 2))
    s.add_server_ban(
        ServerBanRecord("K", "*@bad.example", "new reason", "o2!o@h", T0 + 3, None)
    )  # same kind and mask: replaced
    s.add_server_ban(ban("D", "*@bad.example"))  # another kind: another row
    assert s.remove_server_ban("D", "*@bad.example")
    assert not s.remove_server_ban("D", "*@bad.example")
    assert s.remove_server_ban("K", "*@other.example")
    s.close()
    s = SQLiteStore(str(db))
    try:
        assert s.server_bans(T0 + 10) == [
            ServerBanRecord("D", "192.0.2.7", "go away", "oper!o@h", T0, T0 + 3600),
            ServerBanRecord("K", "*@bad.example", "new reason", "o2!o@h", T0 + 3, None),
        ]
    finally:
        s.close()


def test_expired_server_bans_are_not_loaded_and_are_deleted(db: Path) -> None:
    s = SQLiteStore(str(db))
    s.add_server_ban(ban("D", "192.0.2.1", expires=T0 + 60))
    s.add_server_ban(ban("D", "192.0.2.2", expires=T0 + 120))
    s.add_server_ban(ban("K", "*@perm"))
    try:
        assert [b.mask for b in s.server_bans(T0 + 60)] == ["192.0.2.2", "*@perm"]
    finally:
        s.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT mask FROM server_bans ORDER BY mask").fetchall()
    assert rows == [("*@perm",), ("192.0.2.2",)]  # the expired row is gone from the file
