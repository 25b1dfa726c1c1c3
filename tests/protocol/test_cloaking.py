"""IP cloaking: the cloaks themselves, where they show, where the real address still
shows (the user, operators, server bans), and that the secret shows nowhere."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from coreharness import OPER_HASH, Clock, Peer, new_core, only, oper_up
from relaychat.config import (
    CloakingConfig,
    Config,
    ConfigError,
    LimitsConfig,
    OperConfig,
    load_config,
)
from relaychat.protocol import numerics as N
from relaychat.protocol.cloaking import Cloaker
from relaychat.protocol.core import ServerCore

SECRET = "correct horse battery staple"
CLOAK = re.compile(r"[a-z2-7]{8}\.[a-z2-7]{8}\.ip")
REAL_IP = "198.51.100.23"


def cloaked_config(**cloaking: object) -> Config:
    return Config(
        limits=LimitsConfig(flood_rate=0.0),
        cloaking=dataclasses.replace(CloakingConfig(enabled=True, secret=SECRET), **cloaking),  # type: ignore[arg-type]
        opers={"admin": OperConfig(OPER_HASH), "net": OperConfig(OPER_HASH, host="*@198.51.100.*")},
    )


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    return make_core(cloaked_config())


def user(core: ServerCore, clock: Clock, nick: str, ip: str = REAL_IP) -> Peer:
    p = Peer(core, clock, ip)
    p.register(nick)
    return p


# ------------------------------------------------------------------ cloaks
def test_cloaks_are_stable_keyed_and_shaped_like_hosts() -> None:
    c = Cloaker(SECRET, "ip")
    one = c.cloak("192.0.2.1")
    assert CLOAK.fullmatch(one)
    assert c.cloak("192.0.2.1") == one == Cloaker(SECRET, "ip").cloak("192.0.2.1")
    assert c.cloak("192.0.2.2") != one
    assert Cloaker(SECRET + "!", "ip").cloak("192.0.2.1") != one
    assert c.cloak("::ffff:192.0.2.1") == one  # an IPv4 client of a "::" listener
    assert Cloaker(SECRET, "users.example").cloak("192.0.2.1").endswith(".users.example")


def test_ipv6_cloak_covers_the_slash_64_by_default() -> None:
    c = Cloaker(SECRET, "ip")
    assert c.cloak("2001:db8:1:2::1") == c.cloak("2001:db8:1:2:ffff::9")
    assert c.cloak("2001:db8:1:2::1") != c.cloak("2001:db8:1:3::1")
    assert CLOAK.fullmatch(c.cloak("::1"))
    whole = Cloaker(SECRET, "ip", v6_bits=128)
    assert whole.cloak("2001:db8:1:2::1") != whole.cloak("2001:db8:1:2::2")
    wide = Cloaker(SECRET, "ip", v4_bits=24)
    assert wide.cloak("192.0.2.1") == wide.cloak("192.0.2.200") != wide.cloak("192.0.3.1")


def test_a_non_ip_address_is_cloaked_too() -> None:
    assert CLOAK.fullmatch(Cloaker(SECRET, "ip").cloak("unknown"))


def test_the_secret_is_in_no_repr() -> None:
    assert SECRET not in repr(Cloaker(SECRET, "ip"))
    cfg = cloaked_config()
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.cloaking)
    with pytest.raises(ValueError):
        Cloaker("", "ip")


# -------------------------------------------------------------- in the core
def test_others_see_only_the_cloak(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    watcher = user(core, clock, "watcher", "192.0.2.50")
    cloak = a.user.host
    assert CLOAK.fullmatch(cloak) and a.user.ip == REAL_IP
    watcher.send("JOIN #c")
    a.send("JOIN #c")
    a.send("PRIVMSG #c :hi")
    a.send("PRIVMSG watcher :psst")
    a.send("NICK alice2")
    for query in ("WHO #c", "WHO alice2", "WHOIS alice2", "USERHOST alice2", "NAMES #c"):
        watcher.send(query)
    watcher.send("CAP REQ userhost-in-names")
    watcher.send("NAMES #c")
    a.send("QUIT :bye")
    watcher.send("WHOWAS alice2")
    raw = b"".join(watcher.raw).decode()
    assert REAL_IP not in raw
    assert f"alice!~u@{cloak} JOIN" in raw and f"alice2!~u@{cloak} QUIT" in raw
    assert "378" not in {m.command for m in watcher.take()}


def test_whois_shows_the_real_address_to_self_and_opers(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    b = user(core, clock, "bob", "192.0.2.60")
    op = user(core, clock, "oper", "192.0.2.61")
    oper_up(op)
    for asker in (a, op):
        asker.send("WHOIS alice")
        got = asker.take()
        assert only(got, N.RPL_WHOISUSER)[0].params[3] == a.user.host
        assert only(got, N.RPL_WHOISHOST)[0].params[1:] == [
            "alice",
            f"is connecting from *@{REAL_IP} {REAL_IP}",
        ]
        assert only(got, N.RPL_WHOISACTUALLY)[0].params[1:] == [
            "alice",
            f"~u@{REAL_IP}",
            REAL_IP,
            "Actual user@host, Actual IP",
        ]
    b.send("WHOIS alice")
    got = b.take()
    assert not only(got, N.RPL_WHOISHOST) and not only(got, N.RPL_WHOISACTUALLY)


def test_whois_real_address_of_an_ipv6_loopback_client(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice", "::1")
    a.send("WHOIS alice")
    got = a.take()
    assert only(got, N.RPL_WHOISACTUALLY)[0].params[2:4] == ["~u@0::1", "0::1"]


def test_without_cloaking_whois_is_unchanged(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0)
    a = Peer(core, clock, REAL_IP)
    a.register("alice")
    assert a.user.host == REAL_IP
    a.send("WHOIS alice")
    assert not only(a.take(), N.RPL_WHOISHOST)


def test_server_bans_match_the_cloak_and_the_real_address(core: ServerCore, clock: Clock) -> None:
    op = user(core, clock, "oper", "192.0.2.70")
    oper_up(op)
    by_ip = user(core, clock, "byip")
    by_cloak = user(core, clock, "bycloak", "198.51.100.24")
    op.send(f"KLINE *@{REAL_IP} :real")
    op.send(f"KLINE *@{by_cloak.user.host} :cloak")
    assert by_ip.closed and by_cloak.closed
    op.send("DLINE 198.51.100.0/24")
    assert Peer(core, clock, "198.51.100.99").closed


def test_channel_bans_match_the_cloak(core: ServerCore, clock: Clock) -> None:
    op = user(core, clock, "op", "192.0.2.80")
    a = user(core, clock, "alice")
    op.send("JOIN #c")
    op.send(f"MODE #c +b *!*@{a.user.host}")
    a.send("JOIN #c")
    assert [m.command for m in a.take()] == [N.ERR_BANNEDFROMCHAN]


def test_oper_host_may_name_the_real_address(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    oper_up(a, "net")
    assert a.user.oper_name == "net"


def test_a_rehash_with_a_new_secret_applies_to_new_connections(clock: Clock) -> None:
    cfg = cloaked_config()
    core = new_core(cfg, clock)
    first = Peer(core, clock, REAL_IP)
    old = first.user.host
    core.rehash(dataclasses.replace(cfg, cloaking=CloakingConfig(True, "another secret entirely")))
    assert first.user.host == old
    assert Peer(core, clock, REAL_IP).user.host != old
    core.rehash(dataclasses.replace(cfg, cloaking=CloakingConfig()))
    assert Peer(core, clock, REAL_IP).user.host == REAL_IP


def test_the_secret_never_reaches_logs_or_stats(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="relaychat")
    core = new_core(cloaked_config(), clock)
    op = Peer(core, clock, "192.0.2.90")
    op.register("oper")
    oper_up(op)
    for q in "uomkl":
        op.send(f"STATS {q}")
    op.send("REHASH")
    raw = b"".join(op.raw).decode()
    assert SECRET not in raw
    assert not [r for r in caplog.records if SECRET in r.getMessage()]


# ------------------------------------------------------------- configuration
def test_cloaking_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[cloaking]\nenabled = true\nsecret = "{SECRET}"\nnetname = "users.example"\n'
        "cidr_len_ipv6 = 48\n"
    )
    ck = load_config(path).cloaking
    assert ck == CloakingConfig(True, SECRET, "users.example", 32, 48)


def test_a_short_secret_is_refused_without_being_echoed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cloaking]\nenabled = true\nsecret = "hunter2hunter2"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "cloaking.secret" in str(err.value) and "hunter2" not in str(err.value)
    path.write_text('[cloaking]\nenabled = false\nsecret = ""\n')
    assert load_config(path).cloaking == CloakingConfig()
