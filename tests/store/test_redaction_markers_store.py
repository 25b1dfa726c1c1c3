"""The SQLite store's read markers and history deletion (REDACT): forward only,
bounded per account, dropped with the account, kept across a reopen."""

from __future__ import annotations

from pathlib import Path

from relaychat.protocol.storage import AccountRecord, HistoryRow
from relaychat.store.sqlite import MIGRATIONS, SQLiteStore


def test_a_marker_moves_forward_only_and_says_what_it_holds(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "m.db"), commit_ms=0.0)
    try:
        assert store.read_marker("alice", "#c") is None
        assert store.set_read_marker("alice", "#c", 2000, 10) == (2000, True)
        assert store.set_read_marker("alice", "#c", 1000, 10) == (2000, False)
        assert store.set_read_marker("alice", "#c", 2000, 10) == (2000, False)
        assert store.set_read_marker("alice", "#c", 3000, 10) == (3000, True)
        assert store.set_read_marker("bob", "#c", 5, 10) == (5, True)
        assert store.read_markers("alice") == {"#c": 3000}
        assert store.read_marker("bob", "#c") == 5
    finally:
        store.close()
    again = SQLiteStore(str(tmp_path / "m.db"))
    try:
        assert again.version == len(MIGRATIONS)
        assert again.read_markers("alice") == {"#c": 3000}
    finally:
        again.close()


def test_markers_past_the_bound_lose_the_oldest(tmp_path: Path) -> None:
    store = SQLiteStore(":memory:", commit_ms=0.0)
    try:
        for i in range(8):
            store.set_read_marker("alice", f"#c{i}", 1000 + i, 5)
        assert sorted(store.read_markers("alice")) == ["#c3", "#c4", "#c5", "#c6", "#c7"]
        store.set_read_marker("bob", "#x", 1, 5)  # another account keeps its own
        assert store.read_markers("bob") == {"#x": 1}
    finally:
        store.close()


def test_dropping_an_account_drops_its_markers(tmp_path: Path) -> None:
    store = SQLiteStore(":memory:", commit_ms=0.0)
    try:
        store.create_account(AccountRecord("alice", "alice", "scrypt$x", None, 1.0))
        store.set_read_marker("alice", "#c", 1000, 5)
        assert store.drop_account("alice")
        assert store.read_markers("alice") == {}
    finally:
        store.close()


def test_delete_history_removes_one_row_of_one_target(tmp_path: Path) -> None:
    store = SQLiteStore(":memory:", commit_ms=0.0)
    try:
        rows = [
            HistoryRow("#c", 1, "m1", 10, False, ":a!u@h PRIVMSG #c :one"),
            HistoryRow("#c", 2, "m2", 20, False, ":a!u@h PRIVMSG #c :two"),
            HistoryRow("#d", 1, "m3", 30, False, ":a!u@h PRIVMSG #d :three"),
        ]
        store.append_history(rows)
        assert not store.delete_history("#c", "m3")  # another target's msgid
        assert store.delete_history("#c", "m1")
        assert not store.delete_history("#c", "m1")
        left = store.history_window("#c", None, None, 10, True, True)
        assert [r.msgid for r in left] == ["m2"]
        assert store.history_locate("#d", "m3") == (1, 30)
        assert store.history_heads() == {"#c": 2, "#d": 1}  # seq numbering goes on
    finally:
        store.close()
