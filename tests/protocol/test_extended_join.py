"""extended-join: ``JOIN #chan <account or *> :<realname>`` to members with the
capability, the plain JOIN to the others."""

from __future__ import annotations

from collections.abc import Callable

from coreharness import Clock, Peer
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message

Connect = Callable[..., Peer]


def joins(msgs: list[Message]) -> list[tuple[str | None, list[str]]]:
    return [(m.source, m.params) for m in msgs if m.command == "JOIN"]


def test_members_see_the_join_their_capabilities_ask_for(connect: Connect) -> None:
    ext = connect("ext", caps=("extended-join",))
    plain = connect("plain")
    for p in (ext, plain):
        p.send("JOIN #c")
    ext.take(), plain.take()
    b = connect("bob")
    b.send("JOIN #c")
    assert joins(ext.take()) == [("bob!~u@127.0.0.1", ["#c", "*", "Real bob"])]
    assert joins(plain.take()) == [("bob!~u@127.0.0.1", ["#c"])]
    assert joins(b.take()) == [("bob!~u@127.0.0.1", ["#c"])]


def test_the_joiner_with_the_capability_sees_its_own_extended_join_before_names(
    connect: Connect,
) -> None:
    b = connect("bob", caps=("extended-join",))
    b.send("JOIN #c")
    msgs = b.take()
    assert [m.command for m in msgs] == ["JOIN", N.RPL_NAMREPLY, N.RPL_ENDOFNAMES]
    assert msgs[0].params == ["#c", "*", "Real bob"]


def test_the_account_name_is_shown_when_logged_in(core: ServerCore, connect: Connect) -> None:
    ext = connect("ext", caps=("extended-join",))
    ext.send("JOIN #c")
    ext.take()
    b = connect("bob")
    core.account_changed(b.user, "BobAccount")
    b.send("JOIN #c")
    assert joins(ext.take()) == [("bob!~u@127.0.0.1", ["#c", "BobAccount", "Real bob"])]


def test_a_realname_with_spaces_and_colons_is_the_last_parameter(connect: Connect) -> None:
    ext = connect("ext", caps=("extended-join",))
    ext.send("JOIN #c")
    ext.take()
    b = connect("carol")
    b.send("SETNAME :a realname: with : colons")
    b.send("JOIN #c")
    assert joins(ext.take()) == [("carol!~u@127.0.0.1", ["#c", "*", "a realname: with : colons"])]


def test_a_long_realname_is_cut_so_the_join_fits_in_512_bytes(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, realnamelen=500)
    ext = Peer(core, clock)
    ext.register("ext", caps=("extended-join",))
    ext.send("JOIN #c")
    ext.take()
    b = Peer(core, clock)
    b.register("bob")
    b.send("SETNAME :" + "wide é " * 60)  # 480 bytes
    assert b.user.realname.startswith("wide é")
    ext.raw.clear()
    b.send("JOIN #c")
    (join,) = joins(ext.take())
    assert join[1][:2] == ["#c", "*"] and ("wide é " * 60).startswith(join[1][2])
    assert 509 <= len(ext.raw[0]) <= 512  # cut to fit, on a character boundary


def test_join_echo_to_a_non_member_never_happens(connect: Connect) -> None:
    """JOIN's renderings go to the channel's members only (the joiner is one)."""
    outsider = connect("out", caps=("extended-join",))
    b = connect("bob")
    b.send("JOIN #c")
    assert joins(outsider.take()) == []
