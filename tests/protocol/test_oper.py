"""OPER (scrypt check run as a job), KILL, WALLOPS, REHASH, DIE."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from coreharness import Clock, Peer, advance, new_core, tick
from relaychat.config import Config, LimitsConfig, OperConfig
from relaychat.passwords import hash_password, verify_password
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore

HASH = hash_password("secret", n=2**10)  # cheap parameters: the test is about the flow


@pytest.fixture
def oper_core(clock: Clock) -> ServerCore:
    cfg = Config(
        limits=dataclasses.replace(LimitsConfig(), flood_rate=0.0),
        opers={"admin": OperConfig(password=HASH), "remote": OperConfig(HASH, host="*@10.*")},
    )
    return new_core(cfg, clock, lambda: cfg)


def peer(core: ServerCore, clock: Clock, nick: str) -> Peer:
    p = Peer(core, clock)
    p.register(nick)
    return p


def test_password_hash_round_trip_and_malformed_hash() -> None:
    assert verify_password("secret", HASH)
    assert not verify_password("wrong", HASH)
    assert not verify_password("secret", "garbage")
    assert not verify_password("secret", "scrypt$x$y$z$a$b")


def test_oper_with_right_password_gets_381_and_mode_o(oper_core: ServerCore, clock: Clock) -> None:
    a = peer(oper_core, clock, "alice")
    a.send("OPER admin secret")
    got = a.take()
    assert [m.command for m in got] == [N.RPL_YOUREOPER, "MODE"]
    assert a.user.oper_name == "admin" and "o" in a.user.modes
    assert oper_core.registry.oper_count == 1


def test_oper_wrong_password_unknown_name_and_wrong_host(
    oper_core: ServerCore, clock: Clock
) -> None:
    a = peer(oper_core, clock, "alice")
    a.send("OPER admin nope")
    a.send("OPER nobody secret")  # held by the backoff until the clock moves on
    a.send("OPER remote secret")
    assert [m.command for m in a.take()] == [N.ERR_PASSWDMISMATCH]
    advance(oper_core, clock, 10)
    # the same answer each time: no oracle for operator names or hosts
    assert [m.command for m in a.take()] == [N.ERR_PASSWDMISMATCH] * 2
    assert a.user.oper_name is None


def test_commands_after_oper_wait_for_the_password_check(
    oper_core: ServerCore, clock: Clock
) -> None:
    a = peer(oper_core, clock, "alice")
    # both lines arrive in one read; the KILL must run after OPER succeeded
    b = peer(oper_core, clock, "bob")
    a.feed(b"OPER admin secret\r\nKILL bob :spam\r\n", flush=False)
    assert a.session.busy  # the job is pending: KILL waits
    from coreharness import pump

    pump(oper_core)
    assert [m.command for m in a.take()] == [N.RPL_YOUREOPER, "MODE"]
    assert b.closed


def test_oper_only_commands_need_oper(oper_core: ServerCore, clock: Clock) -> None:
    a = peer(oper_core, clock, "alice")
    for line in ("KILL bob :x", "WALLOPS :hi", "REHASH", "DIE"):
        a.send(line)
    assert [m.command for m in a.take()] == [N.ERR_NOPRIVILEGES] * 4
    assert oper_core.stop_requested is None


def test_kill_disconnects_the_target_and_tells_its_channels(
    oper_core: ServerCore, clock: Clock
) -> None:
    a, b, c = (peer(oper_core, clock, n) for n in ("alice", "bob", "carol"))
    for p in (b, c):
        p.send("JOIN #c")
    b.take()
    c.take()
    a.send("OPER admin secret")
    a.take()
    a.send("KILL bob :flooding")
    assert b.closed
    got = b.take()
    assert got[0].command == "KILL" and got[-1].command == "ERROR"
    quit_msg = c.take()[0]
    assert quit_msg.command == "QUIT" and "flooding" in quit_msg.params[0]
    a.send("KILL nobody :x")
    assert [m.command for m in a.take()] == [N.ERR_NOSUCHNICK]


def test_wallops_reaches_users_with_mode_w(oper_core: ServerCore, clock: Clock) -> None:
    a, b, c = (peer(oper_core, clock, n) for n in ("alice", "bob", "carol"))
    b.send("MODE bob +w")
    b.take()
    a.send("OPER admin secret")
    a.take()
    a.send("WALLOPS :maintenance at noon")
    assert b.take()[0].params == ["maintenance at noon"]
    assert c.take() == []


def test_rehash_reloads_config_through_a_job(clock: Clock) -> None:
    base = Config(opers={"admin": OperConfig(password=HASH)})
    new = dataclasses.replace(base, limits=dataclasses.replace(LimitsConfig(), topiclen=7))
    core = new_core(base, clock, lambda: new)
    a = peer(core, clock, "alice")
    a.send("OPER admin secret")
    a.send("REHASH")
    got = a.take()
    assert N.RPL_REHASHING in [m.command for m in got]
    assert core.limits.topiclen == 7


def test_rehash_with_a_broken_file_keeps_the_old_config(clock: Clock) -> None:
    from relaychat.config import ConfigError

    def broken() -> Config:
        raise ConfigError("x.toml: unknown key 'server.bogus'")

    base = Config(opers={"admin": OperConfig(password=HASH)})
    core = new_core(base, clock, broken)
    a = peer(core, clock, "alice")
    a.send("OPER admin secret")
    a.send("REHASH")
    notices = [m.params[-1] for m in a.take() if m.command == "NOTICE"]
    assert any("server.bogus" in n for n in notices)
    assert core.config is base


def test_die_requests_a_stop(oper_core: ServerCore, clock: Clock) -> None:
    a = peer(oper_core, clock, "alice")
    a.send("OPER admin secret")
    a.send("DIE :upgrade")
    assert oper_core.stop_requested == "upgrade"


def test_flood_lines_are_delayed_then_excess_flood_disconnects(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=2.0, flood_burst=5, recvq=400)
    a, b = Peer(core, clock), Peer(core, clock)
    a.register("alice")  # registration uses 3 tokens of the burst
    b.register("bob")
    clock.advance(10)  # refill the bucket
    burst = b"".join(f"PRIVMSG bob :{i}\r\n".encode() for i in range(10))
    a.send(burst)
    first = [m.params[1] for m in b.take()]
    assert first == ["0", "1", "2", "3", "4"]  # the burst; the rest waits
    clock.advance(1.0)
    tick(core, clock)
    from coreharness import pump

    pump(core)
    assert [m.params[1] for m in b.take()] == ["5", "6"]  # 2 lines per second
    assert not a.closed
    a.send(b"".join(f"PRIVMSG bob :{'x' * 30}\r\n".encode() for _ in range(20)))
    assert a.closed
    assert "Excess Flood" in a.take()[-1].params[0]
    assert not b.closed


def test_opers_are_exempt_from_flood_control(clock: Clock) -> None:
    cfg = Config(
        limits=dataclasses.replace(LimitsConfig(), flood_rate=1.0, flood_burst=2, recvq=100000),
        opers={"admin": OperConfig(password=HASH)},
    )
    core = new_core(cfg, clock)
    a, b = Peer(core, clock), Peer(core, clock)
    a.register("alice")
    b.register("bob")
    clock.advance(10)
    a.send("OPER admin secret")
    a.take()
    a.send(b"".join(f"PRIVMSG bob :{i}\r\n".encode() for i in range(50)))
    assert len(b.take()) == 50
