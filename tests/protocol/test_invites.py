"""Invites: bound to a channel instance, single use, expiring, bounded per user,
recorded only when the inviter may invite."""

from __future__ import annotations

from collections.abc import Callable

from coreharness import Clock, Peer, advance
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore

Connect = Callable[..., Peer]


def _last(p: Peer) -> str:
    return p.take()[-1].command


def test_invite_expires(make_core: Callable[..., ServerCore], clock: Clock) -> None:
    core = make_core(flood_rate=0.0, ping_interval=1e6)
    a, b = Peer(core, clock), Peer(core, clock)
    a.register("alice")
    b.register("bob")
    a.send("JOIN #c")
    a.send("MODE #c +i")
    a.send("INVITE bob #c")
    expiry = core.limits.invite_expiry
    advance(core, clock, expiry + 1, step=600)
    b.take()
    b.send("JOIN #c")
    assert _last(b) == N.ERR_INVITEONLYCHAN


def test_invites_per_user_are_bounded_oldest_first(core: ServerCore, connect: Connect) -> None:
    a, b = connect("alice"), connect("bob")
    cap = core.limits.max_invites
    names = [f"#c{i}" for i in range(cap + 2)]
    for name in names:
        a.send(f"JOIN {name}")
        a.send(f"MODE {name} +i")
        a.send(f"INVITE bob {name}")
    assert b.user.invites is not None and len(b.user.invites) == cap
    b.take()
    b.send(f"JOIN {names[0]}")  # the oldest was dropped
    assert _last(b) == N.ERR_INVITEONLYCHAN
    b.send(f"JOIN {names[-1]}")
    assert N.RPL_ENDOFNAMES in [m.command for m in b.take()]


def test_a_stale_invite_does_not_open_a_recreated_channel(
    core: ServerCore, connect: Connect
) -> None:
    a, b, c = connect("alice"), connect("bob"), connect("carol")
    a.send("JOIN #c")
    a.send("MODE #c +i")
    a.send("INVITE bob #c")
    a.send("PART #c")
    c.send("JOIN #c")
    c.send("MODE #c +i")
    b.take()
    b.send("JOIN #c")
    assert _last(b) == N.ERR_INVITEONLYCHAN


def test_a_non_op_invite_grants_nothing(core: ServerCore, connect: Connect) -> None:
    a, b, d = connect("alice"), connect("bob"), connect("dave")
    a.send("JOIN #c")
    b.send("JOIN #c")
    a.send("MODE #c +b dave!*@*")
    b.send("INVITE dave #c")  # a -i channel: any member may send it ...
    assert any(m.command == "INVITE" for m in d.take())
    d.send("JOIN #c")  # ... but it lets nobody past a ban
    assert _last(d) == N.ERR_BANNEDFROMCHAN
    assert d.user.invites is None
