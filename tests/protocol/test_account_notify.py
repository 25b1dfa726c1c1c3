"""account-notify: ``core.account_changed(user, account | None)`` tells the peers
with the capability and the user itself: ``ACCOUNT <name>`` or ``ACCOUNT *``."""

from __future__ import annotations

from collections.abc import Callable

from coreharness import Clock, Peer, pump
from relaychat.protocol.core import ServerCore
from relaychat.protocol.events import Event

Connect = Callable[..., Peer]


def accounts(p: Peer) -> list[tuple[str | None, list[str]]]:
    return [(m.source, m.params) for m in p.take() if m.command == "ACCOUNT"]


def test_login_and_logout_reach_peers_and_self_with_the_capability(
    core: ServerCore, connect: Connect
) -> None:
    b = connect("bob", caps=("account-notify",))
    p = connect("peer", caps=("account-notify",))
    q = connect("plain")
    for x in (b, p, q):
        x.send("JOIN #a")
        x.send("JOIN #b")
        x.take()
    assert core.account_changed(b.user, "BobAcct")
    pump(core)
    assert accounts(p) == [("bob!~u@127.0.0.1", ["BobAcct"])]  # once, two channels shared
    assert accounts(b) == [("bob!~u@127.0.0.1", ["BobAcct"])]
    assert q.take() == []
    assert b.user.account == "BobAcct"
    assert core.account_changed(b.user, None)
    pump(core)
    assert accounts(p) == [("bob!~u@127.0.0.1", ["*"])]
    assert accounts(b) == [("bob!~u@127.0.0.1", ["*"])]


def test_no_change_tells_nobody(core: ServerCore, connect: Connect) -> None:
    b = connect("bob", caps=("account-notify",))
    assert not core.account_changed(b.user, None)
    core.account_changed(b.user, "x")
    assert not core.account_changed(b.user, "x")
    pump(core)
    assert accounts(b) == [("bob!~u@127.0.0.1", ["x"])]


def test_peers_outside_shared_channels_hear_nothing(core: ServerCore, connect: Connect) -> None:
    b = connect("bob")
    o = connect("other", caps=("account-notify",))
    o.send("JOIN #elsewhere")
    o.take()
    core.account_changed(b.user, "x")
    pump(core)
    assert o.take() == []


def test_before_registration_the_account_is_set_silently(core: ServerCore, clock: Clock) -> None:
    seen: list[Event] = []
    core.add_consumer(seen.append)
    p = Peer(core, clock)
    p.send("NICK bob")
    assert core.account_changed(p.user, "early")
    assert p.user.account == "early" and seen == []


def test_whox_shows_the_account(core: ServerCore, connect: Connect) -> None:
    b = connect("bob")
    core.account_changed(b.user, "BobAcct")
    b.send("WHO bob %na")
    (reply,) = [m for m in b.take() if m.command == "354"]
    assert reply.params[1:] == ["bob", "BobAcct"]
