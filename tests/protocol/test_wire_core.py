"""The wire rules seen through the core: bytes from a client, bytes to the others."""

from __future__ import annotations

from collections.abc import Callable

from coreharness import Clock, Peer
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore


def _pair(core: ServerCore, clock: Clock, caps: tuple[str, ...] = ()) -> tuple[Peer, Peer]:
    a, b = Peer(core, clock), Peer(core, clock)
    a.register("alice", caps=caps)
    b.register("bob", caps=caps)
    for p in (a, b):
        p.send("JOIN #c")
    a.take()
    b.take()
    return a, b


def test_lone_cr_cannot_forge_a_message_from_another_source(core: ServerCore, clock: Clock) -> None:
    alice, bob = _pair(core, clock)
    bob.raw.clear()
    alice.send(b"PRIVMSG #c :hi\r:root!root@server PRIVMSG #c :forged\r\n")
    got = [(m.source, m.command, m.params) for m in bob.take()]
    # two messages, both from alice: the second line's source is ignored
    assert got == [
        ("alice!~u@127.0.0.1", "PRIVMSG", ["#c", "hi"]),
        ("alice!~u@127.0.0.1", "PRIVMSG", ["#c", "forged"]),
    ]
    raw = b"".join(bob.raw)
    assert b"root!root@server" not in raw
    assert b"\r" not in raw.replace(b"\r\n", b"")


def test_client_tag_data_over_4094_bytes_is_417(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, tags_length=4094)
    alice, bob = _pair(core, clock, caps=("message-tags",))
    ok = "@+x=" + "y" * (4094 - 3)
    alice.send(ok + " PRIVMSG #c :fits")
    assert [m.params for m in bob.take()] == [["#c", "fits"]]
    alice.send(ok + "y PRIVMSG #c :too much")
    assert [m.command for m in alice.take()] == [N.ERR_INPUTTOOLONG]
    assert bob.take() == []
    # the connection goes on
    alice.send("PRIVMSG #c :after")
    assert [m.params for m in bob.take()] == [["#c", "after"]]
