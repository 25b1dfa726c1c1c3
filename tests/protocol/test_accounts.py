"""Accounts in the core: REGISTER/VERIFY (draft/account-registration), the NickServ
service, login effects (900, ACCOUNT, WHOIS 330, WHOX %a), throttling, and
passwords kept out of logs. The store is a real in-memory SQLite database."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import pytest

from coreharness import Clock, Peer, advance, new_core, one, only, pump
from relaychat.config import AccountsConfig, Config, LimitsConfig
from relaychat.protocol.accounts import saslprep, scram_credentials
from relaychat.protocol.commands import build_core
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message
from relaychat.protocol.storage import StoreError

Connect = Callable[..., Peer]
PW = "correct-horse-battery"


def fails(msgs: list[Message]) -> list[list[str]]:
    return [m.params for m in msgs if m.command == "FAIL"]


def ns(msgs: list[Message]) -> list[str]:
    """NickServ's notices, checking where they come from."""
    out = []
    for m in msgs:
        if m.command == "NOTICE":
            assert m.source == "NickServ!NickServ@services.", m
            out.append(m.params[1])
    return out


def register(p: Peer, account: str = "*", password: str = PW) -> list[Message]:
    p.send(f"REGISTER {account} * :{password}")
    return p.take()


def test_register_before_connection_registration_is_complete_connection_required(
    connect: Connect,
) -> None:
    p = connect()
    p.send("NICK early")
    p.take()
    p.send(f"REGISTER * * :{PW}")
    assert fails(p.take()) == [
        ["REGISTER", "COMPLETE_CONNECTION_REQUIRED", "Register your connection first"]
    ]


def test_register_creates_the_account_and_logs_in(core: ServerCore, connect: Connect) -> None:
    watcher = connect("watcher", caps=("account-notify",))
    alice = connect("alice", caps=("account-notify",))
    for p in (watcher, alice):
        p.send("JOIN #c")
    watcher.take()
    alice.take()
    got = register(alice)
    reg = one(got, "REGISTER")
    assert reg.source == core.server_name and reg.params == ["SUCCESS", "alice", "Account created"]
    logged = one(got, "900")
    assert logged.params[1:3] == ["alice!~u@127.0.0.1", "alice"]
    assert alice.user.account == "alice"
    assert [m.params for m in only(watcher.take(), "ACCOUNT")] == [["alice"]]
    rec = core.store.get_account("alice")  # type: ignore[union-attr]
    assert rec is not None and rec.name == "alice" and rec.scram is not None
    assert PW not in rec.password_hash and rec.scram.iterations == 4096


def test_account_names_are_case_folded_and_unique(connect: Connect) -> None:
    a = connect("alice")
    assert one(register(a, "Alice"), "REGISTER").params[1] == "Alice"
    b = connect("bob")
    assert fails(register(b, "ALICE")) == [
        ["REGISTER", "ACCOUNT_EXISTS", "ALICE", "That account already exists"]
    ]
    assert b.user.account is None


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("REGISTER * * short", "WEAK_PASSWORD"),
        ("REGISTER * * :has\x01control", "UNACCEPTABLE_PASSWORD"),
        ("REGISTER * * :" + "x" * 301, "UNACCEPTABLE_PASSWORD"),
        (f"REGISTER 9bad * :{PW}", "BAD_ACCOUNT_NAME"),
        (f"REGISTER nickserv * :{PW}", "BAD_ACCOUNT_NAME"),
        (f"REGISTER * not-an-email :{PW}", "INVALID_EMAIL"),
    ],
)
def test_register_refuses_bad_input_with_the_spec_codes(
    connect: Connect, line: str, code: str
) -> None:
    p = connect("carol")
    p.send(line)
    got = fails(p.take())
    assert [f[:2] for f in got] == [["REGISTER", code]]
    assert p.user.account is None


def test_register_when_logged_in_is_already_authenticated(connect: Connect) -> None:
    p = connect("dave")
    register(p)
    assert fails(register(p, "other")) == [
        ["REGISTER", "ALREADY_AUTHENTICATED", "dave", "You are already logged in"]
    ]


def test_verify_has_nothing_pending(connect: Connect) -> None:
    p = connect("erin")
    p.send("VERIFY erin 1234")
    assert fails(p.take()) == [["VERIFY", "INVALID_CODE", "erin", "No verification is pending"]]


def test_the_capability_is_offered_with_its_value_and_only_when_registration_is_on(
    clock: Clock,
) -> None:
    on = new_core(Config(), clock)
    off = new_core(Config(accounts=AccountsConfig(registration=False)), clock)
    assert on.caps_offered["draft/account-registration"] == "custom-account-name"
    assert "draft/account-registration" not in off.caps_offered
    p = Peer(off, clock)
    p.register("frank")
    assert fails(register(p))[0][:2] == ["REGISTER", "TEMPORARILY_UNAVAILABLE"]


def test_a_core_without_a_store_says_accounts_are_unavailable(clock: Clock) -> None:
    core = build_core(Config(limits=LimitsConfig(flood_rate=0.0)), clock.now, "t")
    p = Peer(core, clock)
    p.register("gina")
    assert fails(register(p))[0][:2] == ["REGISTER", "TEMPORARILY_UNAVAILABLE"]
    p.send("PRIVMSG NickServ :IDENTIFY pw")
    assert ns(p.take()) == ["Accounts are not available on this server"]


# --------------------------------------------------------------- NickServ
def test_nickserv_register_identify_whois_and_whox(core: ServerCore, connect: Connect) -> None:
    a = connect("hank")
    a.send(f"PRIVMSG NickServ :REGISTER {PW} hank@example.org")
    got = a.take()
    assert ns(got) == ["Account hank registered"]
    assert one(got, "900").params[2] == "hank"
    b = connect("other")
    b.send(f"PRIVMSG NickServ :IDENTIFY hank {PW}")
    got = b.take()
    assert ns(got) == ["You are now identified for hank"]
    assert b.user.account == "hank"
    a.send("WHOIS other")
    assert one(a.take(), "330").params[1:] == ["other", "hank", "is logged in as"]
    a.send("WHO other %na")
    assert one(a.take(), "354").params[1:] == ["other", "hank"]
    b.send("PRIVMSG NickServ :INFO")
    info = ns(b.take())
    assert info[0] == "Information on hank:" and info[1].startswith("Registered: ")
    assert "Email: hank@example.org" in info and "Logged in now: hank other" in info
    c = connect("stranger")
    c.send("PRIVMSG NickServ :INFO hank")
    assert not [line for line in ns(c.take()) if "Email" in line]  # only to the owner
    c.send("PRIVMSG NickServ :INFO nobody")
    assert ns(c.take()) == ["nobody is not a registered account"]


def test_unknown_account_and_wrong_password_get_the_same_answer_and_back_off(
    core: ServerCore, connect: Connect, clock: Clock
) -> None:
    a = connect("ivan")
    register(a)
    b = connect("jill")
    b.send("PRIVMSG NickServ :IDENTIFY ivan wrongpassword")
    wrong = ns(b.take())
    # the next attempt from this address is held (1 s backoff), not refused
    b.send("PRIVMSG NickServ :IDENTIFY nosuchaccount wrongpassword")
    assert b.take() == []
    advance(core, clock, 1.0)
    unknown = ns(b.take())
    assert wrong == unknown == ["Invalid account or password"]
    assert b.user.account is None
    # after a 2 s backoff, the right password works
    b.send(f"PRIVMSG NickServ :IDENTIFY ivan {PW}")
    assert b.take() == []
    advance(core, clock, 2.0)
    assert ns(b.take()) == ["You are now identified for ivan"]


def test_nickserv_set_password_then_only_the_new_one_works(
    core: ServerCore, connect: Connect
) -> None:
    a = connect("kate")
    register(a)
    a.send("PRIVMSG NickServ :SET PASSWORD short")
    assert ns(a.take()) == ["That password is too short"]
    a.send("PRIVMSG NickServ :SET PASSWORD new password!")
    assert ns(a.take()) == ["Syntax: SET PASSWORD <new password>"]
    a.send("PRIVMSG NickServ :set password brand-new-pw")
    assert ns(a.take()) == ["Password changed"]
    b = connect("lee")
    b.send("PRIVMSG NickServ :IDENTIFY kate brand-new-pw")
    assert ns(b.take()) == ["You are now identified for kate"]
    rec = core.store.get_account("kate")  # type: ignore[union-attr]
    assert rec is not None and rec.scram is not None


def test_nickserv_drop_logs_everyone_out(core: ServerCore, connect: Connect) -> None:
    a = connect("mia", caps=("account-notify",))
    register(a)
    b = connect("ned")
    b.send(f"PRIVMSG NickServ :IDENTIFY mia {PW}")
    b.take()
    a.send("PRIVMSG NickServ :DROP")
    assert ns(a.take())[0].startswith("Syntax: DROP")
    a.send(f"PRIVMSG NickServ :DROP {PW}")
    got = a.take()
    assert ns(got) == ["Account mia dropped"]
    assert one(got, "901").params[1:] == ["mia!~u@127.0.0.1", "You are now logged out"]
    assert [m.params for m in only(got, "ACCOUNT")] == [["*"]]
    assert a.user.account is None and b.user.account is None
    assert core.store.get_account("mia") is None  # type: ignore[union-attr]


def test_nickserv_ghost(core: ServerCore, connect: Connect, clock: Clock) -> None:
    a = connect("olga")
    register(a)
    squatter = connect("olga2")
    owner = connect("pat")
    owner.send("PRIVMSG NickServ :GHOST olga2")
    assert ns(owner.take()) == ["Access denied: log in, or give the account's password"]
    owner.send("PRIVMSG NickServ :GHOST olga2 whatever-password")
    assert ns(owner.take()) == ["Invalid account or password"]  # no account olga2
    a.send("PRIVMSG NickServ :GHOST olga")
    assert ns(a.take()) == ["You cannot ghost yourself"]
    # a second session of olga's account ghosts the first by password
    owner.send(f"PRIVMSG NickServ :GHOST olga {PW}")
    assert not a.closed  # held: the failure above backs this address off for 1 s
    advance(core, clock, 1.0)
    assert a.closed
    assert ns(owner.take()) == ["olga has been ghosted"]
    assert squatter.closed is False


def test_nickserv_nick_is_reserved_and_notices_to_it_get_no_answer(connect: Connect) -> None:
    p = connect("quinn")
    p.send("NICK NickServ")
    assert one(p.take(), "432").params[1:] == ["NickServ", "Reserved for services"]
    p.send("NOTICE NickServ :IDENTIFY x y")
    assert p.take() == []
    p.send("PRIVMSG nickserv :bogus")
    assert ns(p.take()) == ["Unknown command bogus. /msg NickServ HELP"]
    p.send("PRIVMSG NickServ :HELP")
    assert len(ns(p.take())) == 9


def test_passwords_never_reach_the_log(
    core: ServerCore, connect: Connect, caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sup3rSecretPassw0rd"
    a = connect("rita")
    register(a, password=secret)
    b = connect("sam")
    b.send(f"PRIVMSG NickServ :IDENTIFY rita {secret}x")
    b.send(f"PRIVMSG NickServ :IDENTIFY rita {secret}")
    advance(core, clock, 2.0)
    assert b.user.account == "rita"
    a.send(f"PRIVMSG NickServ :SET PASSWORD {secret}2")
    a.send(f"PRIVMSG NickServ :DROP {secret}2")
    assert ns(a.take())[-1] == "Account rita dropped"
    text = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert "rita" in text and secret not in text


def test_register_shares_its_time_and_pool_with_other_hashes(
    core: ServerCore, connect: Connect
) -> None:
    """The session's later commands wait for its REGISTER (an ordered op)."""
    p = connect("tom")
    p.feed(f"REGISTER * * :{PW}\r\nWHOIS tom\r\n".encode(), flush=False)
    assert p.session.busy
    pump(core)
    got = [m.command for m in p.take()]
    assert got.index("REGISTER") < got.index("330")


def test_account_settings_come_from_the_config(clock: Clock) -> None:
    cfg = dataclasses.replace(
        Config(limits=LimitsConfig(flood_rate=0.0)),
        accounts=AccountsConfig(password_min=30, scram_iterations=5000),
    )
    core = new_core(cfg, clock)
    p = Peer(core, clock)
    p.register("uma")
    assert fails(register(p))[0][:2] == ["REGISTER", "WEAK_PASSWORD"]
    assert (
        one(register(p, password="a much longer password, over thirty"), "REGISTER").params[0]
        == "SUCCESS"
    )
    rec = core.store.get_account("uma")  # type: ignore[union-attr]
    assert rec is not None and rec.scram is not None and rec.scram.iterations == 5000


def test_a_failing_store_is_an_error_to_the_command_and_a_log_line(
    core: ServerCore,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At run time a store that fails (here: every call raises) gives the
    affected commands an error and logs it; the server goes on serving."""
    caplog.set_level(logging.ERROR, logger="relaychat")
    p = connect("vera", caps=("sasl",))

    def broken(*args: object) -> None:
        raise StoreError(":memory:: disk I/O error")

    # fault injection into the real store: its calls fail as a full disk would
    monkeypatch.setattr(core.store, "get_account", broken)
    monkeypatch.setattr(core.store, "create_account", broken)
    assert fails(register(p))[0][:3] == ["REGISTER", "TEMPORARILY_UNAVAILABLE", "vera"]
    p.send(f"PRIVMSG NickServ :IDENTIFY vera {PW}")
    assert ns(p.take()) == ["Accounts are temporarily unavailable; try again later"]
    p.send("AUTHENTICATE PLAIN")
    p.take()
    p.send("AUTHENTICATE AHZlcmEAcGFzc3dvcmQ=")
    assert [m.command for m in p.take()] == ["904"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3 and all("disk I/O error" in e for e in errors), errors
    p.send("PING :still")
    assert one(p.take(), "PONG").params[-1] == "still"


@pytest.mark.parametrize(
    ("given", "prepared"),
    [
        ("I\u00adX", "IX"),  # RFC 4013 section 3 examples
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),  # a non-ASCII space is a space
    ],
)
def test_saslprep_maps_and_normalises(given: str, prepared: str) -> None:
    assert saslprep(given) == prepared


@pytest.mark.parametrize("bad", ["\u0007", "\u0627\u0031", "abc\u0627", "a\ue000b"])
def test_saslprep_refuses_prohibited_and_bad_bidi(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        saslprep(bad)
    assert bad not in str(err.value)


def test_a_password_saslprep_refuses_is_unacceptable(connect: Connect) -> None:
    p = connect("wade")
    assert fails(register(p, password="password\u0627"))[0][:2] == [
        "REGISTER",
        "UNACCEPTABLE_PASSWORD",
    ]


def test_non_ascii_passwords_are_saslprepped_on_both_sides(
    core: ServerCore, connect: Connect, clock: Clock
) -> None:
    """Registered as "pass\\u00a0word\\u2168", the password is "pass wordIX"
    after SASLprep: both spellings log in (NickServ and SCRAM, whose client
    prepares its password itself)."""
    p = connect("xena")
    assert one(register(p, password="pass\u00a0word\u2168"), "REGISTER").params[0] == "SUCCESS"
    q = connect("yuri")
    q.send("PRIVMSG NickServ :IDENTIFY xena pass\u00a0word\u2168")
    assert ns(q.take()) == ["You are now identified for xena"]
    rec = core.store.get_account("xena")  # type: ignore[union-attr]
    assert rec is not None and rec.scram is not None
    assert rec.scram == scram_credentials("pass wordIX", 4096, rec.scram.salt)


def test_registrations_per_address_are_limited_per_window(clock: Clock) -> None:
    cfg = dataclasses.replace(
        Config(limits=LimitsConfig(flood_rate=0.0)),
        accounts=AccountsConfig(register_limit=2, register_window=60.0),
    )
    core = new_core(cfg, clock)
    p = Peer(core, clock, ip="10.0.0.1")
    p.register("zed")
    for name in ("one", "two"):
        assert one(register(p, name), "REGISTER").params[0] == "SUCCESS"
        p.user.account = None  # as if logged out, to register again
    assert fails(register(p, "two"))[0][1] == "TEMPORARILY_UNAVAILABLE"  # checked first
    got = fails(register(p, "three"))
    assert got[0][:3] == ["REGISTER", "TEMPORARILY_UNAVAILABLE", "three"]
    assert got[0][3].startswith("Too many accounts registered from your address")
    p.send(f"PRIVMSG NickServ :REGISTER {PW}")
    assert ns(p.take())[0].startswith("Too many accounts")
    other = Peer(core, clock, ip="10.0.0.2")
    other.register("amy")
    assert one(register(other), "REGISTER").params[0] == "SUCCESS"
    advance(core, clock, 60.0, step=30.0)
    p.take()
    assert one(register(p, "three"), "REGISTER").params[0] == "SUCCESS"


def protected_core(clock: Clock, mode: str) -> ServerCore:
    cfg = dataclasses.replace(
        Config(limits=LimitsConfig(flood_rate=0.0)),
        accounts=AccountsConfig(nick_protection=mode, nick_grace=30.0),
    )
    core = new_core(cfg, clock)
    owner = Peer(core, clock)
    owner.register("owner")
    assert one(register(owner, "Wanda"), "REGISTER").params[0] == "SUCCESS"
    owner.send("QUIT")
    return core


def test_nick_protection_warn_asks_to_identify(clock: Clock) -> None:
    core = protected_core(clock, "warn")
    p = Peer(core, clock)
    p.send("NICK wanda")
    p.send("USER u 0 * :x")
    assert ns(only(p.take(), "NOTICE")) == [
        "wanda is a registered account: identify with /msg NickServ IDENTIFY <password>"
    ]
    advance(core, clock, 60.0, step=10.0)
    assert p.user.nick == "wanda"  # warn only


def test_nick_protection_enforce_changes_the_nick_after_the_grace(clock: Clock) -> None:
    core = protected_core(clock, "enforce")
    watcher = Peer(core, clock)
    watcher.register("watcher")
    watcher.send("JOIN #w")
    p = Peer(core, clock)
    p.register("squat")
    p.send("JOIN #w")
    p.send("NICK WANDA")
    got = p.take()
    assert ns(only(got, "NOTICE"))[0].endswith("within 30 seconds, or your nick will be changed")
    assert [m.params for m in only(watcher.take(), "NICK")] == [["WANDA"]]
    advance(core, clock, 29.0, step=1.0)
    assert p.user.nick == "WANDA"
    advance(core, clock, 2.0, step=1.0)
    assert p.user.nick is not None and p.user.nick.startswith("Guest")
    nick = one(p.take(), "NICK")
    assert nick.source is not None and nick.source.startswith("WANDA!")
    assert nick.params == [p.user.nick]
    assert [m.params for m in only(watcher.take(), "NICK")] == [[p.user.nick]]


def test_identifying_within_the_grace_keeps_the_nick(clock: Clock) -> None:
    core = protected_core(clock, "enforce")
    p = Peer(core, clock)
    p.register("wanda")
    p.send(f"PRIVMSG NickServ :IDENTIFY {PW}")
    assert ns(p.take())[-1] == "You are now identified for Wanda"
    advance(core, clock, 40.0, step=10.0)
    assert p.user.nick == "wanda"


def test_nick_protection_off_and_unregistered_nicks_say_nothing(clock: Clock) -> None:
    core = protected_core(clock, "off")
    p = Peer(core, clock)
    p.send("NICK wanda")
    p.send("USER u 0 * :x")
    assert only(p.take(), "NOTICE") == []
    core = protected_core(clock, "enforce")
    q = Peer(core, clock)
    q.send("NICK free")
    q.send("USER u 0 * :x")
    assert only(q.take(), "NOTICE") == []


def test_a_store_closed_at_shutdown_is_no_error_in_the_log(
    core: ServerCore, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relaychat")
    p = connect("walt")
    core.store.close()  # type: ignore[union-attr]
    p.send("NICK wanda2")  # the nick protection lookup meets the closed store
    p.send(f"PRIVMSG NickServ :IDENTIFY walt {PW}")
    assert ns(p.take()) == ["Accounts are temporarily unavailable; try again later"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("the store is closed" in r.getMessage() for r in caplog.records)


def test_nick_protection_knows_the_accounts_already_in_the_store(clock: Clock) -> None:
    """Account names are read from the store when the core starts (nick
    protection checks them in memory): a restart keeps protecting them."""
    core = protected_core(clock, "warn")
    assert core.store is not None
    restarted = build_core(core.config, clock.now, msgid_prefix="r", store=core.store)
    assert "wanda" in restarted.account_names
    from coreharness import _CLOCKS

    _CLOCKS[id(restarted)] = clock
    p = Peer(restarted, clock)
    p.send("NICK Wanda")
    p.send("USER u 0 * :x")
    assert ns(only(p.take(), "NOTICE")) == [
        "Wanda is a registered account: identify with /msg NickServ IDENTIFY <password>"
    ]
    q = Peer(restarted, clock)
    q.send("NICK nobody")
    q.send("USER u 0 * :x")
    assert only(q.take(), "NOTICE") == []  # a nick no account has: nothing said
