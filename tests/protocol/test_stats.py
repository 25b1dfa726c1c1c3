"""STATS on the core: u, m, o, k, l, the end numeric, and who may ask what."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from coreharness import OPER_HASH, Clock, Peer, advance, only, oper_up, user
from relaychat.config import Config, OperConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore

OPERS = {"admin": OperConfig(OPER_HASH), "local": OperConfig(OPER_HASH, host="~ops@10.*")}


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    # no PINGs while the clock jumps by days (nobody here answers them)
    return make_core(Config(opers=OPERS), flood_rate=0.0, ping_interval=1e9)


def stats(p: Peer, query: str) -> list[tuple[str, list[str]]]:
    p.send(f"STATS {query}")
    return [(m.command, m.params[1:]) for m in p.take()]


def test_stats_needs_a_query(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    a.send("STATS")
    assert [(m.command, m.params[1]) for m in a.take()] == [(N.ERR_NEEDMOREPARAMS, "STATS")]


def test_uptime(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    advance(core, clock, 2 * 86400 + 3 * 3600 + 4 * 60 + 5, step=3600)
    assert stats(a, "u") == [
        (N.RPL_STATSUPTIME, ["Server Up 2 days 3:04:05"]),
        (N.RPL_ENDOFSTATS, ["u", "End of /STATS report"]),
    ]
    assert stats(a, "U")[-1] == (N.RPL_ENDOFSTATS, ["U", "End of /STATS report"])


def test_command_counts_only_used_known_commands(core: ServerCore, clock: Clock) -> None:
    a, b = user(core, clock, "alice"), user(core, clock, "bob")
    for _ in range(3):
        a.send("PRIVMSG bob :hi")
    a.send("FROBNICATE")  # unknown: not counted, so a client cannot grow the table
    a.send("privmsg bob :lower case counts as PRIVMSG")
    b.take()
    got = stats(a, "m")
    counts = {p[0]: int(p[1]) for c, p in got if c == N.RPL_STATSCOMMANDS}
    assert counts == {"NICK": 2, "USER": 2, "PRIVMSG": 4, "STATS": 1}
    assert "FROBNICATE" not in core.command_counts
    assert got[-1] == (N.RPL_ENDOFSTATS, ["m", "End of /STATS report"])


def test_unknown_letter_gets_only_the_end(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    assert stats(a, "z") == [(N.RPL_ENDOFSTATS, ["z", "End of /STATS report"])]
    assert stats(a, "zebra")[0][1][0] == "z"
    assert stats(a, ":") == [(N.RPL_ENDOFSTATS, ["*", "End of /STATS report"])]
    assert stats(a, "::x") == [(N.RPL_ENDOFSTATS, ["*", "End of /STATS report"])]


@pytest.mark.parametrize("letter", ["l", "k", "o", "L", "K", "O"])
def test_oper_queries_are_481_then_219_for_others(
    core: ServerCore, clock: Clock, letter: str
) -> None:
    a = user(core, clock, "alice")
    got = stats(a, letter)
    assert [c for c, _ in got] == [N.ERR_NOPRIVILEGES, N.RPL_ENDOFSTATS]
    assert got[1][1][0] == letter


def test_server_parameter(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    assert stats(a, f"u {core.server_name}")[-1][0] == N.RPL_ENDOFSTATS
    assert stats(a, "u irc.*")[-1][0] == N.RPL_ENDOFSTATS
    assert stats(a, "u other.example.org") == [
        (N.ERR_NOSUCHSERVER, ["other.example.org", "No such server"])
    ]


def test_opers_lists_configured_operators(oper: Peer) -> None:
    assert stats(oper, "o") == [
        (N.RPL_STATSOLINE, ["O", "*@*", "*", "admin"]),
        (N.RPL_STATSOLINE, ["O", "~ops@10.*", "*", "local"]),
        (N.RPL_ENDOFSTATS, ["o", "End of /STATS report"]),
    ]


def test_bans_lists_klines_and_dlines(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("KLINE 1h ~bad@*.example.org :go away")
    oper.send("DLINE 192.0.2.0/24")
    oper.take()
    wall = str(int(clock.wall))
    assert stats(oper, "k") == [
        (N.RPL_STATSKLINE, ["K", "~bad@*.example.org", wall, "3600", oper.user.prefix, "go away"]),
        (N.RPL_STATSKLINE, ["D", "192.0.2.0/24", wall, "0", oper.user.prefix, "No reason given"]),
        (N.RPL_ENDOFSTATS, ["k", "End of /STATS report"]),
    ]


def test_links_shows_each_connection_with_its_traffic(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    a = user(core, clock, "alice", "10.1.2.3")
    pending = Peer(core, clock, "2001:db8::7")
    a.send("PRIVMSG oper :one")
    a.send("PRIVMSG oper :two")
    oper.take()
    advance(core, clock, 7)
    got = stats(oper, "l")
    rows = {p[0]: p[1:] for c, p in got if c == N.RPL_STATSLINKINFO}
    assert set(rows) == {"oper[~u@127.0.0.1]", "alice[~u@10.1.2.3]", "*[*@2001:db8::7]"}
    sendq, sent_lines, sent_bytes, recv_lines, recv_bytes, seconds = rows["alice[~u@10.1.2.3]"]
    assert sendq == "0" and int(seconds) == 7
    assert recv_lines == "4"  # NICK, USER and two PRIVMSG
    assert int(recv_bytes) == a.session.recv_bytes > 0
    assert int(sent_lines) >= 10 and int(sent_bytes) > 500  # the welcome burst
    assert rows["*[*@2001:db8::7]"][3:5] == ["0", "0"]
    assert got[-1] == (N.RPL_ENDOFSTATS, ["l", "End of /STATS report"])
    assert pending.session.conn_id in core.sessions


def test_links_stops_before_the_askers_sendq_fills(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(Config(opers=OPERS), flood_rate=0.0, sendq=8192, max_connections_per_ip=0)
    op = user(core, clock, "oper")
    oper_up(op)
    for _ in range(300):
        Peer(core, clock)
    op.send("STATS l")
    got = op.take()
    assert not op.closed
    rows = only(got, N.RPL_STATSLINKINFO)
    assert 0 < len(rows) < 301
    note = [m.params[-1] for m in got if m.command == "NOTICE"]
    assert len(note) == 1 and re.fullmatch(r"STATS l stopped after \d+ of 301 connections", note[0])
    assert got[-1].command == N.RPL_ENDOFSTATS
