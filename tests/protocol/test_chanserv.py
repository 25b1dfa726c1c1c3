"""ChanServ in the core: channel registration, access lists, auto-modes, and the
registered channels' state kept in the store (a real in-memory SQLite database)
and brought back by a new core on the same store (a restart)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from coreharness import OPER_HASH, Clock, Peer, new_core, only, oper_up, user
from relaychat.config import AccountsConfig, Config, OperConfig
from relaychat.protocol.commands import build_core
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message
from relaychat.protocol.storage import AccessEntry, ChannelListEntry, ChannelRecord, StoreError
from relaychat.store.sqlite import SQLiteStore

CS = "ChanServ!ChanServ@services."
PW = "correct-horse-battery"
CONFIG = Config(opers={"admin": OperConfig(OPER_HASH)}, accounts=AccountsConfig(register_limit=0))


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    return make_core(CONFIG, flood_rate=0.0, max_connections_per_ip=0)


def cs(msgs: list[Message]) -> list[str]:
    """ChanServ's notices, checking where they come from."""
    out = []
    for m in msgs:
        if m.command == "NOTICE" and m.source == CS:
            out.append(m.params[1])
    return out


def modes(msgs: list[Message]) -> list[tuple[str | None, list[str]]]:
    return [(m.source, m.params) for m in only(msgs, "MODE")]


def logged_in(core: ServerCore, clock: Clock, nick: str) -> Peer:
    """A registered peer logged in to a new account named like its nick."""
    p = user(core, clock, nick)
    p.send(f"REGISTER * * :{PW}")
    got = p.take()
    assert any(m.command == "900" for m in got), got
    return p


def say(p: Peer, text: str) -> list[str]:
    p.send(f"PRIVMSG ChanServ :{text}")
    return cs(p.take())


def founded(core: ServerCore, clock: Clock, nick: str = "alice", chan: str = "#c") -> Peer:
    """``nick`` logged in, on ``chan`` (created, so op) and its founder."""
    p = logged_in(core, clock, nick)
    p.send(f"JOIN {chan}")
    p.take()
    assert say(p, f"REGISTER {chan}") == [f"{chan} is now registered to {nick}"]
    return p


# ------------------------------------------------------------------ REGISTER
def test_register_makes_the_caller_s_account_the_founder(core: ServerCore, clock: Clock) -> None:
    alice = founded(core, clock)
    chan = core.find_channel("#c")
    assert chan is not None and chan.registration.founder == "alice"
    rec = core.store.registered_channels()  # type: ignore[union-attr]
    assert [(r.name, r.founder) for r in rec] == [("#c", "alice")]
    info = say(alice, "INFO #C")
    assert info[:2] == ["Information on #c:", "Founder: alice"]
    assert info[2].startswith("Registered: ")


def test_register_needs_a_login(core: ServerCore, clock: Clock) -> None:
    bob = user(core, clock, "bob")
    bob.send("JOIN #c")
    bob.take()
    assert say(bob, "REGISTER #c") == ["You must be logged in to an account to register a channel"]
    assert core.find_channel("#c").registration is None  # type: ignore[union-attr]


def test_register_needs_membership_and_channel_operator_status(
    core: ServerCore, clock: Clock
) -> None:
    op = user(core, clock, "op")
    op.send("JOIN #c")
    carol = logged_in(core, clock, "carol")
    assert say(carol, "REGISTER #c") == ["You are not on #c"]
    assert say(carol, "REGISTER #nowhere") == ["You are not on #nowhere"]
    carol.send("JOIN #c")
    carol.take()
    assert say(carol, "REGISTER #c") == ["You must be a channel operator on #c to register it"]
    assert core.find_channel("#c").registration is None  # type: ignore[union-attr]
    assert core.store.registered_channels() == []  # type: ignore[union-attr]


def test_register_of_a_registered_channel_is_refused(core: ServerCore, clock: Clock) -> None:
    founded(core, clock)
    dave = logged_in(core, clock, "dave")
    dave.send("JOIN #c")
    dave.take()
    alice_chan = core.find_channel("#c")
    assert alice_chan is not None
    core.registry.set_status(alice_chan, dave.user, "o", True)
    assert say(dave, "REGISTER #c") == ["#c is already registered"]
    assert alice_chan.registration.founder == "alice"


@pytest.mark.parametrize(
    "line",
    ["REGISTER", "REGISTER #c #d", "INFO", "DROP", "OP", "OP #c a b", "ACCESS #c", "ACCESS #c X"],
)
def test_bad_arguments_get_a_syntax_notice(core: ServerCore, clock: Clock, line: str) -> None:
    alice = founded(core, clock)
    got = say(alice, line)
    assert len(got) == 1 and got[0].startswith("Syntax: "), got


def test_unknown_channels_and_commands(core: ServerCore, clock: Clock) -> None:
    p = logged_in(core, clock, "erin")
    p.send("JOIN #unreg")
    p.take()
    for line in ("INFO #unreg", "DROP #nope", "OP #nope", "ACCESS #unreg LIST", "INFO nochan"):
        name = line.split()[1]
        assert say(p, line) == [f"{name} is not a registered channel"]
    assert say(p, "FROB #c") == ["Unknown command FROB. /msg ChanServ HELP"]
    assert say(p, " ")[0].startswith("Commands: HELP, REGISTER")
    help_text = say(p, "help")
    assert any(line.startswith("ACCESS <#channel> ADD") for line in help_text)


def test_a_core_without_a_store_says_chanserv_is_unavailable(clock: Clock) -> None:
    core = build_core(CONFIG, clock.now)
    p = Peer(core, clock)
    p.register("nostore")
    assert say(p, "INFO #c") == ["Channel registration is not available on this server"]


def test_chanserv_is_a_reserved_nick(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("NICK ChanServ")
    assert [m.command for m in p.take()] == ["432"]


# ------------------------------------------------------------- persistence
def test_a_registered_channel_stays_when_its_last_member_leaves(
    core: ServerCore, clock: Clock
) -> None:
    alice = founded(core, clock)
    alice.send("TOPIC #c :kept")
    alice.send("PART #c")
    alice.take()
    chan = core.find_channel("#c")
    assert chan is not None and not chan.members and chan.topic == "kept"


def test_first_joiner_of_an_empty_registered_channel_gets_no_ops(
    core: ServerCore, clock: Clock
) -> None:
    alice = founded(core, clock)
    alice.send("PART #c")
    bob = user(core, clock, "bob")
    bob.send("JOIN #c")
    got = bob.take()
    assert modes(got) == []
    names = only(got, "353")[0].params[-1]
    assert names == "bob"
    assert not core.find_channel("#c").is_op(bob.user)  # type: ignore[union-attr]


def test_founder_gets_op_from_chanserv_on_join_and_everyone_sees_it(
    core: ServerCore, clock: Clock
) -> None:
    alice = founded(core, clock)
    alice.send("PART #c")
    bob = user(core, clock, "bob")
    bob.send("JOIN #c")
    bob.take()
    alice.send("JOIN #c")
    assert modes(alice.take()) == [(CS, ["#c", "+o", "alice"])]
    assert modes(bob.take()) == [(CS, ["#c", "+o", "alice"])]
    assert core.find_channel("#c").is_op(alice.user)  # type: ignore[union-attr]


def test_logging_in_while_in_the_channel_gives_the_auto_mode(
    core: ServerCore, clock: Clock
) -> None:
    alice = founded(core, clock)
    alice.send("PART #c")
    alice.send("QUIT")
    p = user(core, clock, "alice")
    p.send("JOIN #c")
    assert modes(p.take()) == []
    p.send(f"PRIVMSG NickServ :IDENTIFY {PW}")
    assert modes(p.take()) == [(CS, ["#c", "+o", "alice"])]


def test_state_changes_are_written_through_and_a_restart_brings_them_back(
    clock: Clock,
) -> None:
    store = SQLiteStore(":memory:", commit_ms=0.0)
    try:
        core = new_core(CONFIG, clock, store=store)
        alice = founded(core, clock)
        alice.send("TOPIC #c :the topic")
        alice.send("MODE #c +mkl-t key 25")
        alice.send("MODE #c +b *!*@bad.example")
        alice.send("MODE #c +e *!*@good.example")
        alice.take()
        [rec] = store.registered_channels()
        assert (rec.topic, rec.modes, rec.key, rec.limit) == ("the topic", "mn", "key", 25)
        assert [(e.letter, e.mask) for e in rec.lists] == [
            ("b", "*!*@bad.example"),
            ("e", "*!*@good.example"),
        ]
        # a second core on the same store: the restart
        restarted = new_core(CONFIG, clock, store=store)
        chan = restarted.find_channel("#C")
        assert chan is not None and not chan.members
        assert (chan.topic, chan.topic_setter) == ("the topic", "alice!~u@127.0.0.1")
        assert chan.modes == {"m", "n"} and (chan.key, chan.limit) == ("key", 25)
        assert [e.mask for e in chan.lists["b"]] == ["*!*@bad.example"]
        assert chan.registration.founder == "alice"
        # the founder logs in, joins with the key, and gets +o
        restarted_alice = user(restarted, clock, "alice")
        restarted_alice.send(f"PRIVMSG NickServ :IDENTIFY {PW}")
        restarted_alice.take()
        restarted_alice.send("JOIN #c key")
        got = restarted_alice.take()
        assert modes(got) == [(CS, ["#c", "+o", "alice"])]
        assert only(got, "332")[0].params[-1] == "the topic"
    finally:
        store.close()


def test_a_failed_state_write_is_logged_loudly_and_the_change_stays(
    core: ServerCore,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = founded(core, clock)

    def broken(*args: object) -> bool:
        raise StoreError("relaychat.db: disk I/O error")

    monkeypatch.setattr(core.store, "save_channel_state", broken)
    with caplog.at_level(logging.ERROR):
        alice.send("TOPIC #c :not saved")
    assert core.find_channel("#c").topic == "not saved"  # type: ignore[union-attr]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("saving the state of registered channel #c failed" in e for e in errors), errors


def test_unregistered_channels_are_not_written(core: ServerCore, clock: Clock) -> None:
    p = user(core, clock, "frank")
    p.send("JOIN #free")
    p.send("TOPIC #free :nothing stored")
    p.take()
    assert core.store.registered_channels() == []  # type: ignore[union-attr]
    p.send("PART #free")
    assert core.find_channel("#free") is None


# ----------------------------------------------------------------------- DROP
def test_drop_by_the_founder_forgets_the_channel(core: ServerCore, clock: Clock) -> None:
    alice = founded(core, clock)
    alice.send("PART #c")
    alice.take()
    assert say(alice, "DROP #c") == ["#c is no longer registered"]
    assert core.find_channel("#c") is None  # empty: gone with its registration
    assert core.store.registered_channels() == []  # type: ignore[union-attr]


def test_drop_by_others_is_denied_but_an_irc_operator_may(core: ServerCore, clock: Clock) -> None:
    founded(core, clock)
    bob = logged_in(core, clock, "bob")
    bob.send("JOIN #c")
    bob.take()
    assert say(bob, "DROP #c") == ["Access denied: only the founder of #c may drop it"]
    anon = user(core, clock, "anon")
    assert say(anon, "DROP #c") == ["Access denied: only the founder of #c may drop it"]
    assert core.find_channel("#c").registration is not None  # type: ignore[union-attr]
    oper = user(core, clock, "oper")
    oper_up(oper)
    assert say(oper, "DROP #c") == ["#c is no longer registered"]
    chan = core.find_channel("#c")
    assert chan is not None and chan.registration is None  # members remain: still there


def test_store_failures_are_a_notice_and_change_nothing(
    core: ServerCore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = founded(core, clock, chan="#kept")
    alice.send("JOIN #new")
    alice.take()

    def broken(*args: object) -> bool:
        raise StoreError("relaychat.db: disk I/O error")

    store = core.store
    for name in ("register_channel", "drop_channel", "set_channel_access", "get_account"):
        monkeypatch.setattr(store, name, broken)
    unavailable = ["Channel registration is temporarily unavailable; try again later"]
    assert say(alice, "REGISTER #new") == unavailable
    assert core.find_channel("#new").registration is None  # type: ignore[union-attr]
    assert say(alice, "DROP #kept") == unavailable
    assert say(alice, "ACCESS #kept ADD bob op") == unavailable
    kept = core.find_channel("#kept")
    assert kept is not None and kept.registration is not None and not kept.registration.access


# ------------------------------------------------------------- OP and DEOP
def test_op_and_deop_need_op_access(core: ServerCore, clock: Clock) -> None:
    alice = founded(core, clock)
    bob = user(core, clock, "bob")
    bob.send("JOIN #c")
    bob.take()
    assert say(bob, "OP #c") == ["Access denied: you have no op access on #c"]
    alice.take()
    alice.send("PRIVMSG ChanServ :OP #c bob")
    assert modes(alice.take()) == [(CS, ["#c", "+o", "bob"])]  # no notice: the MODE says it
    assert modes(bob.take()) == [(CS, ["#c", "+o", "bob"])]
    alice.send("PRIVMSG ChanServ :DEOP #c bob")
    assert modes(alice.take()) == [(CS, ["#c", "-o", "bob"])]
    assert say(alice, "OP #c nobody") == ["nobody is not on #c"]
    alice.send("MODE #c -o alice")
    alice.take()
    assert say(alice, "OP #c") == []  # without a nick: the caller
    assert core.find_channel("#c").is_op(alice.user)  # type: ignore[union-attr]


# ----------------------------------------------------------------- ACCESS
def test_access_list_add_list_del_and_the_auto_modes_it_gives(
    core: ServerCore, clock: Clock
) -> None:
    alice = founded(core, clock)
    bob = logged_in(core, clock, "bob")
    vic = logged_in(core, clock, "vic")
    assert say(alice, "ACCESS #c ADD Bob op") == ["bob now has op access on #c"]
    assert say(alice, "ACCESS #c ADD vic VOICE") == ["vic now has voice access on #c"]
    assert say(alice, "ACCESS #c LIST") == [
        "Access list of #c (2 entries):",
        "1. bob op",
        "2. vic voice",
        "End of the access list",
    ]
    bob.send("JOIN #c")
    assert modes(bob.take()) == [(CS, ["#c", "+o", "bob"])]
    vic.send("JOIN #c")
    assert modes(vic.take()) == [(CS, ["#c", "+v", "vic"])]
    assert say(bob, "ACCESS #c LIST")[0] == "Access list of #c (2 entries):"
    assert say(bob, "OP #c vic") == []  # op access may OP
    assert say(vic, "OP #c") == ["Access denied: you have no op access on #c"]
    assert say(alice, "ACCESS #c DEL vic") == ["vic was removed from the access list of #c"]
    assert say(alice, "ACCESS #c DEL vic") == ["vic is not on the access list of #c"]
    [rec] = core.store.registered_channels()  # type: ignore[union-attr]
    assert [(a.account, a.level) for a in rec.access] == [("bob", "op")]


def test_access_changes_are_for_the_founder_and_checked(core: ServerCore, clock: Clock) -> None:
    alice = founded(core, clock)
    bob = logged_in(core, clock, "bob")
    assert say(alice, "ACCESS #c ADD bob op") == ["bob now has op access on #c"]
    denied = ["Access denied: only the founder of #c may change its access"]
    assert say(bob, "ACCESS #c ADD bob voice") == denied
    assert say(bob, "ACCESS #c DEL bob") == denied
    assert say(alice, "ACCESS #c ADD nosuch op") == ["nosuch is not a registered account"]
    assert say(alice, "ACCESS #c ADD bob owner") == ["The level is op or voice"]
    assert say(alice, "ACCESS #c ADD alice voice") == ["alice is the founder of #c"]
    assert say(alice, "ACCESS #c ADD b@d op") == ["b@d is not a valid account name"]
    stranger = user(core, clock, "stranger")
    assert say(stranger, "ACCESS #c LIST") == ["Access denied: you have no access on #c"]
    info = say(stranger, "INFO #c")
    assert not any("Access list" in line for line in info)
    assert any("Access list" in line for line in say(bob, "INFO #c"))


# ------------------------------------------------------------------ hostile
def test_hostile_input_gets_bounded_notices_and_a_bystander_sees_nothing(
    core: ServerCore, clock: Clock
) -> None:
    alice = founded(core, clock)
    bystander = user(core, clock, "bystander")
    bystander.send("JOIN #c")
    bystander.take()
    alice.take()
    mallory = logged_in(core, clock, "mallory")
    mallory.send("JOIN #c")
    mallory.take()
    bystander.take()
    alice.take()
    huge = "#" + "x" * 400
    lines = [
        f"REGISTER {huge}",
        f"INFO {huge}",
        f"DROP {huge}",
        f"OP #c {'n' * 400}",
        f"ACCESS #c ADD {'a' * 400} op",
        "ACCESS #c ADD bob " + "o" * 400,
        "x" * 450,
        "REGISTER #c\x01\x02",
        "OP #c alice\x1b[31m",
        "ACCESS #c\x7f LIST",
        "DEOP #c alice",
        "DROP #c",
        "  \t ",
    ]
    for line in lines:
        mallory.send(f"PRIVMSG ChanServ :{line}".encode()[:510] + b"\r\n")
    got = mallory.take()
    for m in got:
        assert m.command == "NOTICE" and m.source == CS, m
        assert len(m.params[1]) < 200, m
    texts = [m.params[1] for m in got]
    assert len(texts) >= len(lines) - 1  # one reply each (a blank line: the command list)
    assert "Access denied: you have no op access on #c" in texts
    assert bystander.take() == []
    assert alice.take() == []
    chan = core.find_channel("#c")
    assert chan is not None and chan.registration.founder == "alice"
    assert chan.is_op(alice.user) and not chan.is_op(mallory.user)
    assert not mallory.closed


def test_dropping_an_account_drops_its_channels_and_access_entries(
    core: ServerCore, clock: Clock
) -> None:
    """Whoever registers a dropped account's name next inherits nothing."""
    alice = founded(core, clock)
    founded(core, clock, "bob", "#bobs")
    bob_chan = core.find_channel("#bobs")
    assert bob_chan is not None
    say(alice, "ACCESS #c ADD bob op")
    alice.send("PART #c")
    alice.send(f"PRIVMSG NickServ :DROP {PW}")
    alice.take()
    assert core.find_channel("#c") is None
    assert bob_chan.registration is not None
    bob = core.find_user("bob")
    assert bob is not None
    assert [r.name for r in core.store.registered_channels()] == ["#bobs"]  # type: ignore[union-attr]
    bob_session = bob.sessions[0]
    bob_peer: Peer = bob_session.handle
    bob_peer.send("PART #bobs")
    bob_peer.send(f"PRIVMSG NickServ :DROP {PW}")
    assert core.find_channel("#bobs") is None
    assert core.store.registered_channels() == []  # type: ignore[union-attr]
    # a new account of the same name is founder of nothing
    alice.send(f"REGISTER * * :{PW}")
    assert any(m.command == "900" for m in alice.take())
    assert say(alice, "INFO #c") == ["#c is not a registered channel"]


def test_a_dropped_account_leaves_the_access_lists(core: ServerCore, clock: Clock) -> None:
    alice = founded(core, clock)
    bob = logged_in(core, clock, "bob")
    say(alice, "ACCESS #c ADD bob op")
    bob.send(f"PRIVMSG NickServ :DROP {PW}")
    bob.take()
    chan = core.find_channel("#c")
    assert chan is not None and chan.registration.access == {}
    [rec] = core.store.registered_channels()  # type: ignore[union-attr]
    assert rec.access == ()


def test_loading_checks_what_the_store_holds(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(":memory:", commit_ms=0.0)
    try:
        bad = ChannelRecord("no-hash", "no-hash", "x", 1.0)
        odd = ChannelRecord(
            "#Odd",
            "#odd",
            "Founder",
            1.0,
            topic="t" * 5000,
            modes="ntzQ",
            limit=0,
            lists=tuple(ChannelListEntry("b", f"*!*@h{i}", "s", 1.0) for i in range(150)),
            access=(AccessEntry("a", "a", "owner"), AccessEntry("b", "b", "voice")),
        )
        assert store.register_channel(bad) and store.register_channel(odd)
        with caplog.at_level(logging.WARNING):
            core = new_core(CONFIG, clock, store=store)
        assert any("skipped registered channel 'no-hash'" in r.getMessage() for r in caplog.records)
        assert core.find_channel("no-hash") is None
        chan = core.find_channel("#ODD")
        assert chan is not None and chan.modes == {"n", "t"} and chan.limit is None
        assert len(chan.topic.encode()) == core.limits.topiclen
        assert len(chan.lists["b"]) == core.limits.max_list_entries
        assert list(chan.registration.access) == ["b"]
    finally:
        store.close()
