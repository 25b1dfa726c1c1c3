"""no-implicit-names: a JOIN sends no NAMES reply to a client with the capability;
an explicit NAMES is answered as usual."""

from __future__ import annotations

from collections.abc import Callable

from coreharness import Peer
from relaychat.protocol import numerics as N

Connect = Callable[..., Peer]


def test_join_without_names_then_names_on_request(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    a.send("TOPIC #c :the topic")
    b = connect("bob", caps=("no-implicit-names",))
    b.send("JOIN #c")
    assert [m.command for m in b.take()] == ["JOIN", N.RPL_TOPIC, N.RPL_TOPICWHOTIME]
    b.send("NAMES #c")
    assert [m.command for m in b.take()] == [N.RPL_NAMREPLY, N.RPL_ENDOFNAMES]


def test_without_the_capability_join_still_sends_names(connect: Connect) -> None:
    b = connect("bob")
    b.send("JOIN #c,#d")
    assert [m.command for m in b.take()] == [
        "JOIN",
        N.RPL_NAMREPLY,
        N.RPL_ENDOFNAMES,
    ] * 2


def test_capability_can_be_turned_off_again(connect: Connect) -> None:
    b = connect("bob", caps=("no-implicit-names",))
    b.send("CAP REQ -no-implicit-names")
    b.take()
    b.send("JOIN #c")
    assert [m.command for m in b.take()] == ["JOIN", N.RPL_NAMREPLY, N.RPL_ENDOFNAMES]
