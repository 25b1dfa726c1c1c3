"""Channel batches (one turn's channel messages shared by every member) must deliver
exactly what per-member queues would: every message once, in order, interleaved
correctly with everything else a member receives in the same turn."""

from __future__ import annotations

import random

import pytest

from coreharness import Clock, Peer, new_core
from relaychat.config import Config, LimitsConfig
from relaychat.protocol.core import ServerCore

CHANNELS = ("#a", "#b", "#c")


def _core(clock: Clock) -> ServerCore:
    return new_core(Config(limits=LimitsConfig(flood_rate=0.0)), clock)


@pytest.mark.parametrize("seed", range(40))
def test_random_turns_deliver_like_a_reference_model(seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    core = _core(clock)
    names = [f"u{i}" for i in range(8)]
    peers = {}
    for n in names:
        caps = ("echo-message",) if rng.random() < 0.3 else ()
        if rng.random() < 0.3:
            caps += ("server-time",)
        p = Peer(core, clock)
        p.register(n, caps=caps)
        peers[n] = p
    members: dict[str, set[str]] = {c: set() for c in CHANNELS}
    expected: dict[str, list[str]] = {n: [] for n in names}
    counter = 0

    def feed(n: str, line: str) -> None:
        # straight into the core, without pumping: many operations share one turn
        peers[n].feed((line + "\r\n").encode(), flush=False)

    for _ in range(300):
        op = rng.random()
        n = rng.choice(names)
        chan = rng.choice(CHANNELS)
        if op < 0.15:
            if n not in members[chan]:
                feed(n, f"JOIN {chan}")
                members[chan].add(n)
        elif op < 0.22:
            if n in members[chan]:
                feed(n, f"PART {chan}")
                members[chan].discard(n)
        elif op < 0.85:
            counter += 1
            text = f"m{counter}"
            if n in members[chan]:
                feed(n, f"PRIVMSG {chan} :{text}")
                for m in members[chan]:
                    if m != n or "echo-message" in peers[m].session.caps:
                        expected[m].append(f"{chan} {text}")
        elif op < 0.95:
            counter += 1
            to = rng.choice(names)
            text = f"p{counter}"
            feed(n, f"PRIVMSG {to} :{text}")
            expected[to].append(f"{to} {text}")
            if "echo-message" in peers[n].session.caps:
                # to oneself too: delivered, and echoed as the command's reply
                expected[n].append(f"{to} {text}")
        else:
            from coreharness import pump

            pump(core)
    from coreharness import pump

    pump(core)
    for n, p in peers.items():
        got = [f"{m.params[0]} {m.params[1]}" for m in p.take() if m.command == "PRIVMSG"]
        assert got == expected[n], n


def test_members_share_one_buffer_for_a_turn_of_channel_messages(clock: Clock) -> None:
    core = _core(clock)
    peers = [Peer(core, clock) for _ in range(5)]
    for i, p in enumerate(peers):
        p.register(f"u{i}")
        p.send("JOIN #c")
    for p in peers:
        p.take()
        p.raw.clear()
    for i in range(10):
        peers[0].feed(f"PRIVMSG #c :{i}\r\n".encode(), flush=False)
    from coreharness import pump

    pump(core)
    buffers = [p.raw[-1] for p in peers[1:]]
    assert all(b is buffers[0] for b in buffers)  # joined once, shared
    assert buffers[0].count(b"PRIVMSG") == 10
    assert peers[0].raw == []  # the sender got nothing back


@pytest.fixture
def clock() -> Clock:
    return Clock()
