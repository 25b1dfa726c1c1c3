"""Registration, CAP negotiation, PASS, NICK, USER, PING/PONG, QUIT and timers (no sockets)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from coreharness import new_core, tick
from relaychat.config import Config, LimitsConfig, ServerConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore

Peer = Any
Connect = Callable[..., Peer]


def cmds(peer: Peer) -> list[str]:
    return [m.command for m in peer.take()]


def test_nick_user_registers_with_001_to_005_lusers_and_motd(connect: Connect) -> None:
    p = connect()
    p.send("NICK alice")
    assert cmds(p) == []
    p.send("USER al 0 * :Alice A")
    got = cmds(p)
    assert got[:5] == [N.RPL_WELCOME, N.RPL_YOURHOST, N.RPL_CREATED, N.RPL_MYINFO, N.RPL_ISUPPORT]
    assert N.RPL_LUSERCLIENT in got and got[-1] == N.RPL_ENDOFMOTD
    assert p.user.prefix == "alice!~al@127.0.0.1"


def test_isupport_advertises_the_tokens_clients_need(connect: Connect) -> None:
    p = connect()
    p.send("NICK alice")
    p.send("USER al 0 * :Alice")
    tokens = {
        t.split("=")[0]: t for m in p.take() if m.command == N.RPL_ISUPPORT for t in m.params[1:-1]
    }
    for name in (
        "CASEMAPPING",
        "CHANTYPES",
        "CHANMODES",
        "PREFIX",
        "NICKLEN",
        "CHANNELLEN",
        "TOPICLEN",
        "AWAYLEN",
        "KICKLEN",
        "MODES",
        "TARGMAX",
        "NETWORK",
        "STATUSMSG",
        "ELIST",
    ):
        assert name in tokens, name
    assert tokens["PREFIX"] == "PREFIX=(ov)@+"
    assert tokens["CASEMAPPING"] == "CASEMAPPING=rfc1459"


def test_cap_negotiation_holds_registration_until_cap_end(connect: Connect) -> None:
    p = connect()
    p.send("CAP LS 302")
    ls = p.take()[0]
    assert ls.params[:2] == ["*", "LS"]
    assert "server-time" in ls.params[-1].split()
    p.send("NICK alice")
    p.send("USER a 0 * :A")
    assert cmds(p) == []
    p.send("CAP REQ :server-time echo-message")
    ack = p.take()[0]
    assert ack.params[1:] == ["ACK", "server-time echo-message"]
    p.send("CAP END")
    assert N.RPL_WELCOME in cmds(p)
    p.send("CAP LIST")
    assert set(p.take()[0].params[-1].split()) >= {"server-time", "echo-message"}


def test_cap_req_with_an_unknown_capability_is_naked_whole(connect: Connect) -> None:
    p = connect()
    p.send("CAP REQ :server-time bogus-cap")
    msg = p.take()[0]
    assert msg.params[1:] == ["NAK", "server-time bogus-cap"]
    assert "server-time" not in p.session.caps


def test_cap_req_minus_removes_a_capability(connect: Connect) -> None:
    p = connect("alice", caps=("server-time",))
    p.send("CAP REQ :-server-time")
    assert p.take()[0].params[1] == "ACK"
    assert "server-time" not in p.session.caps and p.session.variant == 0


def test_bad_cap_subcommand_is_410(connect: Connect) -> None:
    p = connect()
    p.send("CAP FROB")
    assert cmds(p) == [N.ERR_INVALIDCAPCMD]


def test_nick_in_use_is_433_case_insensitively(connect: Connect) -> None:
    connect("Alice[")
    p = connect()
    p.send("NICK alice{")
    msg = p.take()[0]
    assert msg.command == N.ERR_NICKNAMEINUSE and msg.params[1] == "alice{"


def test_erroneous_and_missing_nicks(connect: Connect) -> None:
    p = connect()
    for bad in ("1abc", "a b", "#chan", "x" * 31, "a:b"):
        p.send(f"NICK :{bad}")
        assert cmds(p) == [N.ERR_ERRONEUSNICKNAME], bad
    p.send("NICK")
    assert cmds(p) == [N.ERR_NONICKNAMEGIVEN]


def test_nick_change_is_seen_by_channel_peers_and_frees_the_old_nick(connect: Connect) -> None:
    a, b = connect("alice"), connect("bob")
    a.send("JOIN #c")
    b.send("JOIN #c")
    a.take()
    b.take()
    a.send("NICK alicia")
    for peer in (a, b):
        msg = peer.take()[0]
        assert (msg.command, msg.source, msg.params) == ("NICK", "alice!~u@127.0.0.1", ["alicia"])
    c = connect()
    c.send("NICK alice")
    c.send("USER c 0 * :C")
    assert N.RPL_WELCOME in cmds(c)


def test_nick_case_change_of_own_nick_is_allowed(connect: Connect) -> None:
    a = connect("alice")
    a.send("NICK ALICE")
    assert a.take()[0].params == ["ALICE"]


def test_commands_before_registration_get_451(connect: Connect) -> None:
    p = connect()
    p.send("JOIN #c")
    p.send("PRIVMSG x :hi")
    assert cmds(p) == [N.ERR_NOTREGISTERED, N.ERR_NOTREGISTERED]


def test_user_twice_and_pass_after_registration_are_462(connect: Connect) -> None:
    a = connect("alice")
    a.send("USER x 0 * :X")
    a.send("PASS secret")
    assert cmds(a) == [N.ERR_ALREADYREGISTERED, N.ERR_ALREADYREGISTERED]


def test_missing_parameters_are_461(connect: Connect) -> None:
    a = connect("alice")
    a.send("KICK #c")
    a.send("JOIN")
    got = a.take()
    assert [m.command for m in got] == [N.ERR_NEEDMOREPARAMS, N.ERR_NEEDMOREPARAMS]
    assert [m.params[1] for m in got] == ["KICK", "JOIN"]


def test_unknown_command_is_421(connect: Connect) -> None:
    a = connect("alice")
    a.send("FROBNICATE now")
    msg = a.take()[0]
    assert msg.command == N.ERR_UNKNOWNCOMMAND and msg.params[1] == "FROBNICATE"


def test_server_password_is_required_when_configured(clock: Any) -> None:
    from coreharness import Peer as PeerCls

    cfg = Config(server=ServerConfig(password="s3cret"))
    core = new_core(cfg, clock)
    bad = PeerCls(core, clock)
    bad.send("NICK bad")
    bad.send("USER b 0 * :B")
    assert [m.command for m in bad.take()] == [N.ERR_PASSWDMISMATCH, "ERROR"]
    assert bad.closed
    good = PeerCls(core, clock)
    good.send("PASS s3cret")
    good.send("NICK good")
    good.send("USER g 0 * :G")
    assert N.RPL_WELCOME in [m.command for m in good.take()]


def test_ping_is_answered_with_pong(connect: Connect) -> None:
    a = connect("alice")
    a.send("PING :token123")
    msg = a.take()[0]
    assert msg.command == "PONG" and msg.params[-1] == "token123"


def test_idle_client_gets_ping_and_is_dropped_after_ping_timeout(
    make_core: Callable[..., ServerCore], clock: Any
) -> None:
    from coreharness import Peer as PeerCls

    core = make_core(flood_rate=0.0, ping_interval=30.0, ping_timeout=10.0)
    a, b = PeerCls(core, clock), PeerCls(core, clock)
    a.register("alice")
    b.register("bob")
    a.send("JOIN #c")
    b.send("JOIN #c")
    a.take()
    b.take()
    clock.advance(31)
    tick(core, clock)
    _pump(core)
    assert [m.command for m in a.take()] == ["PING"]
    b.send("PONG :irc.relaychat.local")
    b.take()
    clock.advance(11)
    tick(core, clock)
    _pump(core)
    assert a.closed
    quit_msg = [m for m in b.take() if m.command == "QUIT"]
    assert quit_msg and quit_msg[0].params[0].startswith("Ping timeout")
    assert not b.closed


def test_unregistered_connection_times_out(
    make_core: Callable[..., ServerCore], clock: Any
) -> None:
    from coreharness import Peer as PeerCls

    core = make_core(registration_timeout=5.0)
    p = PeerCls(core, clock)
    p.send("NICK slow")
    clock.advance(6)
    tick(core, clock)
    _pump(core)
    assert p.closed
    assert "Registration timed out" in p.take()[-1].params[0]
    assert core.registry.nicks == {}


def test_quit_tells_channel_peers_once_and_closes(connect: Connect) -> None:
    a, b = connect("alice"), connect("bob")
    for ch in ("#a", "#b"):
        a.send(f"JOIN {ch}")
        b.send(f"JOIN {ch}")
    a.take()
    b.take()
    a.send("QUIT :see you")
    quits = [m for m in b.take() if m.command == "QUIT"]
    assert len(quits) == 1 and quits[0].params == ["Quit: see you"]
    assert a.closed and a.take()[-1].command == "ERROR"


def test_max_connections_per_ip_refuses_the_extra_one(
    make_core: Callable[..., ServerCore], clock: Any
) -> None:
    from coreharness import Peer as PeerCls

    core = make_core(max_connections_per_ip=2, connection_limit_exempt=())
    peers = [PeerCls(core, clock) for _ in range(3)]
    assert [p.closed for p in peers] == [False, False, True]
    assert "Too many connections" in peers[2].take()[0].params[0]
    other = PeerCls(core, clock, ip="10.0.0.2")
    assert not other.closed


def test_config_limits_are_applied(clock: Any) -> None:
    limits = dataclasses.replace(LimitsConfig(), nicklen=5)
    core = new_core(Config(limits=limits), clock)
    from coreharness import Peer as PeerCls

    p = PeerCls(core, clock)
    p.send("NICK abcdef")
    assert [m.command for m in p.take()] == [N.ERR_ERRONEUSNICKNAME]


def _pump(core: ServerCore) -> None:
    from coreharness import pump

    pump(core)


def test_casemapping_ascii_keeps_brackets_distinct(clock: Any) -> None:
    from coreharness import Peer as PeerCls

    core = new_core(
        Config(server=ServerConfig(casemapping="ascii"), limits=LimitsConfig(flood_rate=0.0)),
        clock,
    )
    a = PeerCls(core, clock)
    a.register("nick[")
    b = PeerCls(core, clock)
    b.register("NICK{")  # distinct under ascii (would collide under rfc1459)
    c = PeerCls(core, clock)
    c.send("NICK Nick[")
    assert [m.command for m in c.take()] == [N.ERR_NICKNAMEINUSE]
    a.send("JOIN #Chan[")
    b.send("JOIN #chan{")
    assert len(core.registry.channels) == 2
    a.send("VERSION")
    assert "CASEMAPPING=ascii" in [t for m in a.take() for t in m.params]


def test_a_stream_of_empty_lines_costs_flood_budget_and_ends_in_excess_flood(
    make_core: Callable[..., ServerCore], clock: Any
) -> None:
    from coreharness import Peer as PeerCls

    core = make_core(flood_rate=4.0, flood_burst=20)
    p = PeerCls(core, clock)
    p.register("blank")
    p.feed(b"\n" * 100000)
    assert p.closed
    assert "Excess Flood" in p.take()[-1].params[-1]


def test_ping_interval_shorter_than_the_registration_timeout_is_honoured(
    make_core: Callable[..., ServerCore], clock: Any
) -> None:
    from coreharness import Peer as PeerCls
    from coreharness import advance

    core = make_core(flood_rate=0.0, ping_interval=2.0, registration_timeout=30.0)
    p = PeerCls(core, clock)
    p.register("quick")
    advance(core, clock, 3)
    assert [m.command for m in p.take()] == ["PING"]
