"""KNOCK on the core: who may knock where, what the operators see, the rate limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coreharness import Clock, Peer, advance, only
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    # no PINGs while the clock jumps (nobody here answers them)
    return make_core(
        flood_rate=0.0, knock_delay=300.0, knock_channel_delay=60.0, ping_interval=86400.0
    )


def user(core: ServerCore, clock: Clock, nick: str) -> Peer:
    p = Peer(core, clock)
    p.register(nick)
    return p


@pytest.fixture
def room(core: ServerCore, clock: Clock) -> tuple[Peer, Peer, Peer]:
    """#c, invite-only: op (operator), voiced (voice), member (plain); all taken."""
    op, voiced, member = (user(core, clock, n) for n in ("op", "voiced", "member"))
    for p in (op, voiced, member):
        p.send("JOIN #c")
    op.send("MODE #c +iv voiced")
    for p in (op, voiced, member):
        p.take()
    return op, voiced, member


def codes(p: Peer) -> list[str]:
    return [m.command for m in p.take()]


def test_knock_reaches_the_operators_only(
    core: ServerCore, clock: Clock, room: tuple[Peer, Peer, Peer]
) -> None:
    op, voiced, member = room
    k = user(core, clock, "knocker")
    k.send("KNOCK #C")
    got = k.take()
    assert [(m.command, m.params[1:]) for m in got] == [
        (N.RPL_KNOCKDLVR, ["#c", "Your KNOCK has been delivered"])
    ]
    knock = only(op.take(), N.RPL_KNOCK)
    assert len(knock) == 1
    assert knock[0].source == core.server_name
    assert knock[0].params == ["#c", "#c", "knocker!~u@127.0.0.1", "has asked for an invite"]
    assert voiced.take() == [] and member.take() == []


def test_knock_message_is_passed_on(
    core: ServerCore, clock: Clock, room: tuple[Peer, Peer, Peer]
) -> None:
    op = room[0]
    k = user(core, clock, "knocker")
    k.send("KNOCK #c :let me in, please")
    assert only(op.take(), N.RPL_KNOCK)[0].params[-1] == (
        "has asked for an invite: let me in, please"
    )


def test_knock_on_keyed_or_full_channels_is_delivered(core: ServerCore, clock: Clock) -> None:
    op = user(core, clock, "op")
    op.send("JOIN #k")
    op.send("MODE #k +k sesame")
    op.send("JOIN #full")
    op.send("MODE #full +l 1")
    op.take()
    a, b = user(core, clock, "a"), user(core, clock, "b")
    a.send("KNOCK #k")
    b.send("KNOCK #full")
    assert codes(a) == [N.RPL_KNOCKDLVR] and codes(b) == [N.RPL_KNOCKDLVR]
    assert [m.params[0] for m in only(op.take(), N.RPL_KNOCK)] == ["#k", "#full"]


def test_knock_on_an_open_channel_is_713(core: ServerCore, clock: Clock) -> None:
    op = user(core, clock, "op")
    op.send("JOIN #open")
    op.send("JOIN #roomy")
    op.send("MODE #roomy +l 5")
    op.take()
    k = user(core, clock, "k")
    k.send("KNOCK #open")
    k.send("KNOCK #roomy")  # +l but not full
    got = k.take()
    assert [(m.command, m.params[1]) for m in got] == [
        (N.ERR_CHANOPEN, "#open"),
        (N.ERR_CHANOPEN, "#roomy"),
    ]
    assert op.take() == []


def test_knock_errors(core: ServerCore, clock: Clock, room: tuple[Peer, Peer, Peer]) -> None:
    op, _, member = room
    k = user(core, clock, "k")
    k.send("KNOCK")
    k.send("KNOCK #nowhere")
    k.send("KNOCK :")
    member.send("KNOCK #c")
    assert [(m.command, m.params[1]) for m in k.take()] == [
        (N.ERR_NEEDMOREPARAMS, "KNOCK"),
        (N.ERR_NOSUCHCHANNEL, "#nowhere"),
        (N.ERR_NOSUCHCHANNEL, "*"),
    ]
    assert [(m.command, m.params[1]) for m in member.take()] == [(N.ERR_KNOCKONCHAN, "#c")]
    assert op.take() == []


def test_knock_before_registration_is_451(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("KNOCK #c")
    assert codes(p) == [N.ERR_NOTREGISTERED]


def test_banned_user_cannot_knock_unless_excepted(
    core: ServerCore, clock: Clock, room: tuple[Peer, Peer, Peer]
) -> None:
    op = room[0]
    op.send("MODE #c +b bad*!*@*")
    op.take()
    bad = user(core, clock, "baddie")
    bad.send("KNOCK #c")
    assert [(m.command, m.params[1]) for m in bad.take()] == [(N.ERR_BANNEDFROMCHAN, "#c")]
    assert op.take() == []
    op.send("MODE #c +e baddie!*@*")
    op.take()
    bad.send("KNOCK #c")  # the refused KNOCK did not count toward the rate limit
    assert codes(bad) == [N.RPL_KNOCKDLVR]
    assert len(only(op.take(), N.RPL_KNOCK)) == 1


def test_one_knock_per_user_per_delay(core: ServerCore, clock: Clock) -> None:
    op = user(core, clock, "op")
    for name in ("#a", "#b"):
        op.send(f"JOIN {name}")
        op.send(f"MODE {name} +i")
    op.take()
    k = user(core, clock, "k")
    k.send("KNOCK #a")
    k.send("KNOCK #b")
    got = k.take()
    assert [m.command for m in got] == [N.RPL_KNOCKDLVR, N.ERR_TOOMANYKNOCK]
    assert got[1].params[1:] == ["#b", "Too many KNOCKs (user)"]
    assert [m.params[0] for m in only(op.take(), N.RPL_KNOCK)] == ["#a"]
    advance(core, clock, 299, step=100)
    k.send("KNOCK #b")
    assert codes(k) == [N.ERR_TOOMANYKNOCK]
    advance(core, clock, 1)
    k.send("KNOCK #b")
    assert codes(k) == [N.RPL_KNOCKDLVR]


def test_one_knock_per_channel_per_delay(
    core: ServerCore, clock: Clock, room: tuple[Peer, Peer, Peer]
) -> None:
    op = room[0]
    a, b = user(core, clock, "a"), user(core, clock, "b")
    a.send("KNOCK #c")
    b.send("KNOCK #c")
    assert codes(a) == [N.RPL_KNOCKDLVR]
    got = b.take()
    assert [(m.command, m.params[-1]) for m in got] == [
        (N.ERR_TOOMANYKNOCK, "Too many KNOCKs (channel)")
    ]
    assert len(only(op.take(), N.RPL_KNOCK)) == 1
    advance(core, clock, 60, step=30)
    b.send("KNOCK #c")
    assert codes(b) == [N.RPL_KNOCKDLVR]


def test_zero_delays_mean_no_limit(make_core: Callable[..., ServerCore], clock: Clock) -> None:
    core = make_core(flood_rate=0.0, knock_delay=0.0, knock_channel_delay=0.0)
    op = user(core, clock, "op")
    op.send("JOIN #c")
    op.send("MODE #c +i")
    op.take()
    k = user(core, clock, "k")
    for _ in range(5):
        k.send("KNOCK #c")
    assert codes(k) == [N.RPL_KNOCKDLVR] * 5
    assert len(only(op.take(), N.RPL_KNOCK)) == 5
    assert len(core.knock_users) == 0 and len(core.knock_channels) == 0


def test_rate_limit_tables_forget_old_entries(core: ServerCore, clock: Clock) -> None:
    op = user(core, clock, "op")
    op.send("JOIN #c")
    op.send("MODE #c +i")
    knockers = [user(core, clock, f"k{i}") for i in range(5)]
    for k in knockers:
        k.send("KNOCK #c")
        advance(core, clock, 61, step=61)  # past the channel's delay each time
    assert len(core.knock_channels) == 1
    assert len(core.knock_users) == 5
    advance(core, clock, 300, step=100)
    knockers[0].send("KNOCK #c")
    assert len(core.knock_users) == 1  # the stale ones went when a new one came


def test_knock_is_advertised(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("NICK n")
    p.send("USER u 0 * :r")
    tokens = [t for m in p.take() if m.command == N.RPL_ISUPPORT for t in m.params[1:-1]]
    assert "KNOCK" in tokens
