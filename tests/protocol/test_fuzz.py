"""Random command sequences: no handler may crash (an internal error reply), and the
core's bookkeeping must stay consistent, whatever clients send."""

from __future__ import annotations

import itertools
import random

import pytest

from coreharness import Clock, Peer, new_core, pump, tick
from relaychat.config import Config, LimitsConfig, OperConfig
from relaychat.passwords import hash_password
from relaychat.protocol.commands import COMMANDS

WORDS = [
    "#a",
    "#b",
    "&c",
    "u0",
    "u1",
    "u2",
    "*",
    "#a,#b",
    "u0,u1",
    "0",
    "+o",
    "-o",
    "+b",
    "+k",
    "key",
    "+l",
    "5",
    "+imnst",
    "-nt",
    "+v",
    "*!*@*",
    "%nuhcrf,42",
    "LS",
    "REQ",
    "END",
    "302",
    ":",
    "",
    "x" * 40,
    "ñ",
    "@#a",
    "+#a",
    "o",
    "admin",
    "secret",
    "-i",
    "+w",
    "END",
    "server-time",
    "-echo-message",
    "C<5",
    ">1",
    "!#a",
]


CHANNEL_FIRST = {
    "PART",
    "TOPIC",
    "NAMES",
    "LIST",
    "KICK",
    "MODE",
    "PRIVMSG",
    "NOTICE",
    "TAGMSG",
    "WHO",
}


def random_line(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return "JOIN " + rng.choice(["#a", "#b", "&c", "#a,#b"])
    command = rng.choice(sorted(set(COMMANDS) - {"QUIT"}) + ["BOGUS", "privmsg", "001"])
    if rng.random() < 0.01:
        command = "QUIT"
    params = [rng.choice(WORDS) for _ in range(rng.randint(0, 5))]
    if command in CHANNEL_FIRST and rng.random() < 0.7:
        params[:1] = [rng.choice(["#a", "#b", "&c"])]
    if params and rng.random() < 0.5:
        params[-1] = ":" + params[-1] + " with spaces"
    tags = "@+x=1;y " if rng.random() < 0.1 else ""
    return (tags + " ".join([command, *params])).strip()


@pytest.mark.parametrize("seed", range(30))
def test_random_commands_never_crash_a_handler(seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    cfg = Config(
        limits=LimitsConfig(flood_rate=0.0),
        opers={"admin": OperConfig(password=hash_password("secret", n=2**4))},
    )
    core = new_core(cfg, clock, lambda: cfg)
    peers: list[Peer] = []
    fresh = itertools.count()
    for i in range(4):
        p = Peer(core, clock)
        p.register(f"u{i}")
        peers.append(p)
    peers.append(Peer(core, clock))  # one that never registers
    for _ in range(1500):
        p = rng.choice(peers)
        if p.closed:  # a QUIT, KILL or flood ended it: a new client takes its place
            p = Peer(core, clock)
            p.register(f"n{next(fresh)}")
            peers.remove(rng.choice([q for q in peers if q.closed]))
            peers.append(p)
        p.send(random_line(rng))
        if rng.random() < 0.05:
            clock.advance(rng.choice([1, 30, 200]))
            tick(core, clock)
            pump(core)
    for p in peers:
        for m in p.take():
            assert "Internal" not in m.params[-1] if m.params else True, m
    # bookkeeping: every member knows its channels, every channel its members
    for chan in core.registry.channels.values():
        assert chan.members, chan.name
        for member in chan.members:
            assert member.channels.get(chan.folded) is chan
            assert member.registered and member.sessions
            assert all(s.closing is None for s in member.sessions)
    for sess in core.sessions.values():
        for folded, chan in sess.user.channels.items():
            assert core.registry.channels.get(folded) is chan and sess.user in chan.members
    assert core.registry.registered_count == sum(1 for s in core.sessions.values() if s.registered)
