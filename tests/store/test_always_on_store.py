"""The SQLite store's always-on table: choices and saved users, across a reopen."""

from __future__ import annotations

from pathlib import Path

from relaychat.protocol.storage import AccountRecord, AlwaysOnRecord
from relaychat.store.sqlite import SQLiteStore


def test_choices_and_saved_users_survive_a_reopen_and_forget_keeps_the_choice(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "rc.db")
    s = SQLiteStore(path)
    try:
        assert s.always_on_choices() == {} and s.always_on_users() == []
        s.set_always_on_choice("alice", True)
        s.set_always_on_choice("bob", False)
        rec = AlwaysOnRecord(
            "alice",
            "Alice",
            "Alice",
            "~a",
            "host",
            "1.2.3.4",
            "Real",
            (("#c", "o"), ("#d", "")),
            5.0,
        )
        s.save_always_on(rec)
        s.save_always_on(AlwaysOnRecord("carol", "carol", "carol", "~c", "h", "ip", "r"))
    finally:
        s.close()
    s = SQLiteStore(path)
    try:
        assert s.always_on_choices() == {"alice": True, "bob": False}
        assert s.always_on_users()[0] == rec
        assert [r.folded for r in s.always_on_users()] == ["alice", "carol"]
        s.forget_always_on("alice")
        s.forget_always_on("carol")
        assert s.always_on_users() == []
        assert s.always_on_choices() == {"alice": True, "bob": False}
        s.set_always_on_choice("bob", None)
        assert s.always_on_choices() == {"alice": True}
    finally:
        s.close()


def test_dropping_an_account_deletes_its_always_on_row(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "rc.db"))
    try:
        assert s.create_account(AccountRecord("dave", "dave", "scrypt$x"))
        s.set_always_on_choice("dave", True)
        s.save_always_on(AlwaysOnRecord("dave", "dave", "dave", "~d", "h", "ip", "r"))
        assert s.drop_account("dave")
        assert s.always_on_users() == [] and s.always_on_choices() == {}
    finally:
        s.close()
