"""Multiclient and always-on accounts in the core: several connections logged in
to one account share one user; an always-on user stays with no connection."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from coreharness import OPER_HASH, Clock, Peer, new_core, one, only, oper_up, pump
from relaychat.config import AccountsConfig, Config, HistoryConfig, LimitsConfig, OperConfig
from relaychat.protocol.core import ServerCore
from relaychat.store.sqlite import SQLiteStore

PW = "multiclient-pw-1"


def config(**accounts: object) -> Config:
    return Config(
        limits=LimitsConfig(flood_rate=0.0),
        accounts=AccountsConfig(**accounts),  # type: ignore[arg-type]
        opers={"admin": OperConfig(password=OPER_HASH)},
    )


def make_account(core: ServerCore, clock: Clock, name: str) -> None:
    """Register ``name`` from a connection using that nick (under always-on, it
    stays as the account's user)."""
    p = Peer(core, clock)
    p.register(name)
    p.send(f"REGISTER {name} * :{PW}")
    assert one(p.take(), "REGISTER").params[0] == "SUCCESS"
    p.send("QUIT")


def login(core: ServerCore, clock: Clock, account: str, nick: str, caps: str = "") -> Peer:
    """A connection that logs in to ``account`` with SASL PLAIN during registration."""
    p = Peer(core, clock)
    p.send("CAP LS 302")
    p.send("CAP REQ :" + " ".join(["sasl", *caps.split()]))
    p.send(f"NICK {nick}")
    p.send(f"USER {nick} 0 * :Real {nick}")
    p.send("AUTHENTICATE PLAIN")
    p.send("AUTHENTICATE " + base64.b64encode(f"\0{account}\0{PW}".encode()).decode())
    p.send("CAP END")
    return p


def plain(core: ServerCore, clock: Clock, nick: str) -> Peer:
    p = Peer(core, clock)
    p.register(nick)
    return p


@pytest.fixture
def core(clock: Clock) -> ServerCore:
    c = new_core(config(), clock)
    make_account(c, clock, "alice")
    return c


def _welcomed(p: Peer) -> list:  # type: ignore[type-arg]
    got = p.take()
    assert "001" in [m.command for m in got], got
    return got


def test_second_login_attaches_shares_nick_and_channels_and_others_see_nothing(
    core: ServerCore, clock: Clock
) -> None:
    s1 = login(core, clock, "alice", "alice")
    _welcomed(s1)
    bob = plain(core, clock, "bob")
    s1.send("JOIN #c")
    s1.send("TOPIC #c :hello")
    s1.send("MODE alice +i")
    bob.send("JOIN #c")
    s1.take()
    bob.take()
    s2 = login(core, clock, "alice", "othernick")
    got = _welcomed(s2)
    assert one(got, "001").params[0] == "alice"  # the shared nick, not the one asked for
    join = one(got, "JOIN")
    assert join.params == ["#c"] and join.source is not None and join.source.startswith("alice!")
    assert one(got, "332").params[-1] == "hello"
    assert "bob" in one(got, "353").params[-1]
    assert one(got, "MODE").params[1] == "+i"
    assert s2.session.user is s1.session.user
    assert len(s1.session.user.sessions) == 2
    assert bob.take() == [] and s1.take() == []
    assert core.find_user("othernick") is None
    # LUSERS and WHOIS count one user
    bob.send("WHOIS alice")
    assert "2 connections" in " ".join(m.params[-1] for m in bob.take())


def test_messages_reach_each_session_once_and_echo_to_the_senders_others(
    core: ServerCore, clock: Clock
) -> None:
    s1 = login(core, clock, "alice", "alice")
    s2 = login(core, clock, "alice", "alice", caps="message-tags")
    bob = plain(core, clock, "bob")
    s1.send("JOIN #c")
    bob.send("JOIN #c")
    for p in (s1, s2, bob):
        p.take()
    s1.send("PRIVMSG #c :to the channel")
    assert [m.params for m in only(bob.take(), "PRIVMSG")] == [["#c", "to the channel"]]
    assert [m.params for m in only(s2.take(), "PRIVMSG")] == [["#c", "to the channel"]]
    assert s1.take() == []  # no echo-message: the sender itself gets nothing
    s1.send("PRIVMSG bob :to bob")
    assert len(only(bob.take(), "PRIVMSG")) == 1
    assert [m.params for m in only(s2.take(), "PRIVMSG")] == [["bob", "to bob"]]
    s1.send("NOTICE bob :a notice")
    assert len(only(bob.take(), "NOTICE")) == 1
    assert [m.params for m in only(s2.take(), "NOTICE")] == [["bob", "a notice"]]
    s2.send("@+typing=active TAGMSG #c")
    assert only(s1.take(), "TAGMSG") == []  # s1 did not ask for message-tags
    s1.send("PRIVMSG alice :note to self")
    assert len(only(s1.take(), "PRIVMSG")) == 1
    assert len(only(s2.take(), "PRIVMSG")) == 1
    assert bob.take() == []
    bob.send("PRIVMSG alice :hi alice")
    assert len(only(s1.take(), "PRIVMSG")) == 1
    assert len(only(s2.take(), "PRIVMSG")) == 1


def test_nick_join_part_away_mode_of_one_session_are_seen_by_all(
    core: ServerCore, clock: Clock
) -> None:
    s1 = login(core, clock, "alice", "alice")
    s2 = login(core, clock, "alice", "alice", caps="away-notify")
    bob = plain(core, clock, "bob")
    bob.send("JOIN #c")
    for p in (s1, s2, bob):
        p.take()
    s2.send("JOIN #c")
    assert len(only(s1.take(), "JOIN")) == 1
    assert len(only(bob.take(), "JOIN")) == 1
    s2.take()
    s1.send("NICK alice2")
    assert len(only(s2.take(), "NICK")) == 1
    assert len(only(bob.take(), "NICK")) == 1
    s1.send("MODE alice2 +i")
    assert len(only(s2.take(), "MODE")) == 1
    s1.send("AWAY :lunch")
    assert only(s2.take(), "AWAY")[0].params == ["lunch"]
    s1.take()
    s1.send("PART #c")
    assert len(only(s2.take(), "PART")) == 1
    assert len(only(bob.take(), "PART")) == 1


def test_quit_of_one_session_is_invisible_and_the_last_is_a_normal_quit(
    core: ServerCore, clock: Clock
) -> None:
    s1 = login(core, clock, "alice", "alice")
    s2 = login(core, clock, "alice", "alice")
    bob = plain(core, clock, "bob")
    s1.send("JOIN #c")
    bob.send("JOIN #c")
    for p in (s1, s2, bob):
        p.take()
    s1.send("QUIT :one device")
    assert s1.closed
    assert bob.take() == [] and s2.take() == []
    s2.send("PRIVMSG #c :still here")
    assert len(only(bob.take(), "PRIVMSG")) == 1
    core.connection_lost(s2.session, "Connection reset", clock.now)
    pump(core)
    assert only(bob.take(), "QUIT")[0].source.startswith("alice!")  # type: ignore[union-attr]
    assert core.find_user("alice") is None
    # the account can be used again from scratch
    s3 = login(core, clock, "alice", "alice")
    assert one(_welcomed(s3), "001").params[0] == "alice"


def test_sessions_per_account_are_bounded(clock: Clock) -> None:
    core = new_core(config(max_sessions=2), clock)
    make_account(core, clock, "alice")
    peers = [login(core, clock, "alice", f"n{i}") for i in range(2)]
    for p in peers:
        _welcomed(p)
    extra = login(core, clock, "alice", "n9")
    err = one(extra.take(), "ERROR")
    assert "Too many connections for account alice" in err.params[0]
    assert extra.closed
    assert len(peers[0].session.user.sessions) == 2


def test_login_after_registration_does_not_merge_users(core: ServerCore, clock: Clock) -> None:
    s1 = login(core, clock, "alice", "alice")
    other = plain(core, clock, "other")
    other.send(f"PRIVMSG NickServ :IDENTIFY alice {PW}")
    assert one(other.take(), "900")
    assert other.session.user is not s1.session.user
    assert other.session.user.nick == "other"


# ------------------------------------------------------------------ always-on
@pytest.fixture
def aon(clock: Clock) -> ServerCore:
    c = new_core(config(always_on="true"), clock)
    make_account(c, clock, "alice")
    return c


def test_always_on_user_stays_holds_its_nick_and_reattaches(aon: ServerCore, clock: Clock) -> None:
    core = aon
    s1 = login(core, clock, "alice", "alice")
    s1.send("JOIN #c")
    bob = plain(core, clock, "bob")
    bob.send("JOIN #c")
    s1.take()
    bob.take()
    clock.advance(5)
    s1.send("QUIT :bye")
    got = bob.take()
    assert only(got, "QUIT") == []
    user = core.find_user("alice")
    assert user is not None and user.sessions == () and user.last_seen == clock.wall
    assert user.away == "Not connected"
    bob.send("NAMES #c")
    assert "alice" in one(bob.take(), "353").params[-1]
    bob.send("WHO #c")
    assert len(only(bob.take(), "352")) == 2
    bob.send("PRIVMSG #c :while away")
    bob.send("PRIVMSG alice :are you there")
    assert one(bob.take(), "301")  # RPL_AWAY
    carol = Peer(core, clock)
    carol.send("NICK alice")
    assert one(carol.take(), "433")
    s2 = login(core, clock, "alice", "whatever")
    got = _welcomed(s2)
    assert one(got, "001").params[0] == "alice"
    assert one(got, "JOIN").params == ["#c"]
    assert user.last_seen is None and user.away is None
    assert s2.session.user is user
    assert only(bob.take(), "JOIN") == []


def test_kill_removes_an_always_on_user_with_no_session(aon: ServerCore, clock: Clock) -> None:
    core = aon
    s1 = login(core, clock, "alice", "alice")
    s1.send("JOIN #c")
    op = plain(core, clock, "op")
    oper_up(op)
    op.send("JOIN #c")
    s1.send("QUIT")
    op.take()
    op.send("KILL alice :gone")
    assert len(only(op.take(), "QUIT")) == 1
    assert core.find_user("alice") is None
    s2 = login(core, clock, "alice", "alice")
    assert only(_welcomed(s2), "JOIN") == []


def test_shutdown_and_timers_with_a_sessionless_user(aon: ServerCore, clock: Clock) -> None:
    core = aon
    s1 = login(core, clock, "alice", "alice")
    s1.send("MONITOR + alice")
    s1.send("QUIT")
    bob = plain(core, clock, "bob")
    bob.send("MONITOR + alice")
    assert one(bob.take(), "730")  # online
    clock.advance(3600)
    core.handle_timers(clock.now)
    pump(core)
    core.shutdown("stopping", clock.now)
    pump(core)
    assert bob.closed


def test_opt_in_with_nickserv_set_always_on(clock: Clock) -> None:
    core = new_core(config(always_on="opt-in"), clock)
    make_account(core, clock, "alice")
    s1 = login(core, clock, "alice", "alice")
    assert not s1.session.user.always_on
    s1.send("PRIVMSG NickServ :SET ALWAYS-ON ON")
    assert "now ON" in one(s1.take(), "NOTICE").params[-1]
    assert s1.session.user.always_on
    s1.send("QUIT")
    assert core.find_user("alice") is not None
    s2 = login(core, clock, "alice", "alice")
    _welcomed(s2)
    s2.send("PRIVMSG NickServ :SET ALWAYS-ON OFF")
    s2.take()
    s2.send("QUIT")
    assert core.find_user("alice") is None


def test_always_on_user_is_back_in_its_channels_after_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    store = SQLiteStore(str(tmp_path / "rc.db"), commit_ms=0.0)
    try:
        core = new_core(config(always_on="true"), clock, store=store)
        make_account(core, clock, "alice")
        s1 = login(core, clock, "alice", "alice")
        s1.send("JOIN #c")
        s1.send("JOIN #d")
        s1.send("PART #d")
        s1.send("QUIT")
        core.shutdown("restart", clock.now)
        pump(core)
        clock.advance(10)
        again = new_core(config(always_on="true"), clock, store=store)
        user = again.find_user("alice")
        assert user is not None and user.account == "alice" and user.sessions == ()
        assert sorted(user.channels) == ["#c"]
        assert again.find_channel("#c").members[user] == "o"  # type: ignore[union-attr]
        bob = plain(again, clock, "bob")
        bob.send("NICK alice")
        assert one(bob.take(), "433")
        s2 = login(again, clock, "alice", "x")
        assert one(_welcomed(s2), "JOIN").params == ["#c"]
        # not always-on any more: nothing is restored
        off = new_core(config(always_on="false"), clock, store=store)
        assert off.find_user("alice") is None
    finally:
        store.close()


def test_dropping_the_account_of_a_sessionless_always_on_user_removes_it(
    aon: ServerCore, clock: Clock
) -> None:
    core = aon
    s1 = login(core, clock, "alice", "alice")
    s1.send("JOIN #c")
    s1.send("QUIT")
    other = plain(core, clock, "other")
    other.send("JOIN #c")
    other.send(f"PRIVMSG NickServ :IDENTIFY alice {PW}")  # logged in, not attached
    other.take()
    other.send(f"PRIVMSG NickServ :DROP {PW}")
    assert len(only(other.take(), "QUIT")) == 1
    assert core.find_user("alice") is None
    assert other.session.user.account is None


def test_opt_out_is_on_until_the_account_sets_it_off(clock: Clock) -> None:
    core = new_core(config(always_on="opt-out"), clock)
    make_account(core, clock, "alice")
    assert core.find_user("alice") is not None  # the registering connection stayed
    s1 = login(core, clock, "alice", "alice")
    s1.send("PRIVMSG NickServ :SET ALWAYS-ON OFF")
    assert "now OFF" in one(s1.take(), "NOTICE").params[-1]
    s1.send("QUIT")
    assert core.find_user("alice") is None


def test_the_join_replay_follows_the_attaching_sessions_caps(
    core: ServerCore, clock: Clock
) -> None:
    s1 = login(core, clock, "alice", "alice")
    s1.send("JOIN #c")
    s2 = login(core, clock, "alice", "alice", caps="extended-join no-implicit-names")
    got = _welcomed(s2)
    assert one(got, "JOIN").params == ["#c", "alice", "Real alice"]
    assert only(got, "353") == []


def test_ghost_from_another_login_removes_a_sessionless_always_on_user(
    aon: ServerCore, clock: Clock
) -> None:
    core = aon
    s1 = login(core, clock, "alice", "alice")
    s1.send("QUIT")
    other = plain(core, clock, "other")
    other.send(f"PRIVMSG NickServ :GHOST alice {PW}")
    assert "has been ghosted" in only(other.take(), "NOTICE")[-1].params[-1]
    assert core.find_user("alice") is None


def test_a_turn_of_channel_changes_is_one_store_write(clock: Clock) -> None:
    no_history = dataclasses.replace(config(always_on="true"), history=HistoryConfig(enabled=False))
    core = new_core(no_history, clock)
    make_account(core, clock, "alice")
    s1 = login(core, clock, "alice", "alice")
    store = core.store
    assert isinstance(store, SQLiteStore)
    before = store.rows
    s1.send("JOIN #a,#b,#c,#d,#e")
    assert store.rows == before + 1
    saved = store.always_on_users()
    assert [name for name, _ in saved[0].channels] == ["#a", "#b", "#c", "#d", "#e"]
    s1.send("PART #a,#b")
    assert store.rows == before + 2
    assert [name for name, _ in store.always_on_users()[0].channels] == ["#c", "#d", "#e"]


def test_a_returning_always_on_user_gets_what_it_missed(aon: ServerCore, clock: Clock) -> None:
    core = aon
    s1 = login(core, clock, "alice", "alice")
    s1.send("JOIN #c")
    bob = plain(core, clock, "bob")
    bob.send("JOIN #c")
    bob.send("PRIVMSG #c :before she left")
    clock.advance(1)
    s1.send("QUIT :bye")
    clock.advance(1)
    bob.send("PRIVMSG #c :while away 1")
    bob.send("PRIVMSG #c :while away 2")
    bob.send("PRIVMSG alice :are you there")
    bob.take()
    s2 = login(core, clock, "alice", "alice", caps="batch server-time")
    got = _welcomed(s2)
    missed = [(m.params[0], m.params[1]) for m in got if m.command == "PRIVMSG"]
    assert missed == [
        ("#c", "while away 1"),
        ("#c", "while away 2"),
        ("alice", "are you there"),
    ]
    assert all("batch" in m.tags and "time" in m.tags for m in got if m.command == "PRIVMSG")
    assert [m.command for m in got].index("JOIN") < [m.command for m in got].index("PRIVMSG")
    # a client with draft/chathistory asks for itself: nothing pushed
    s2.send("QUIT")
    clock.advance(1)
    bob.send("PRIVMSG #c :again")
    s3 = login(core, clock, "alice", "alice", caps="batch draft/chathistory")
    assert not [m for m in _welcomed(s3) if m.command == "PRIVMSG"]
