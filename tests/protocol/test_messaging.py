"""PRIVMSG, NOTICE, TAGMSG: delivery, errors, capabilities, serialise-once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.events import USER, build_event

Peer = Any
Connect = Callable[..., Peer]


def cmds(peer: Peer) -> list[str]:
    return [m.command for m in peer.take()]


def channel(connect: Connect, *nicks: str, caps: tuple[str, ...] = ()) -> list[Peer]:
    peers = [connect(n, caps=caps) for n in nicks]
    for p in peers:
        p.send("JOIN #c")
    for p in peers:
        p.take()
    return peers


def test_channel_message_reaches_every_member_but_the_sender(connect: Connect) -> None:
    a, b, c = channel(connect, "alice", "bob", "carol")
    a.send("PRIVMSG #c :hello there")
    assert a.take() == []
    for p in (b, c):
        msg = p.take()[0]
        assert (msg.source, msg.command, msg.params) == (
            "alice!~u@127.0.0.1",
            "PRIVMSG",
            ["#c", "hello there"],
        )


def test_channel_message_is_serialised_once_for_all_members(connect: Connect) -> None:
    peers = channel(connect, *[f"u{i}" for i in range(5)])
    peers[0].send("PRIVMSG #c :same bytes")
    data = [p.raw[-1] for p in peers[1:]]
    # the same bytes object was queued to every member (one serialisation)
    assert all(d is data[0] for d in data)


def test_outgoing_serialises_each_variant_once() -> None:
    out = build_event(
        "PRIVMSG",
        "a!b@c",
        ["#c", "hi"],
        time=1_700_000_000.5,
        msgid="m1",
        audience=USER,
        tags={"+draft/react": "x"},
        trailing=True,
    )
    plain, timed, tagged, both = (out.for_variant(v) for v in range(4))
    assert plain == b":a!b@c PRIVMSG #c :hi\r\n"
    assert timed.startswith(b"@time=2023-11-14T22:13:20.500Z :a!b@c")
    assert tagged.startswith(b"@msgid=m1;+draft/react=x :a!b@c")
    assert both.startswith(b"@time=") and b"+draft/react=x" in both
    assert out.for_variant(1) is timed


def test_private_message_and_away_reply(connect: Connect) -> None:
    a, b = connect("alice"), connect("bob")
    b.send("AWAY :lunch")
    b.take()
    a.send("PRIVMSG Bob :psst")
    msg = b.take()[0]
    assert (msg.command, msg.params) == ("PRIVMSG", ["bob", "psst"])
    away = a.take()[0]
    assert (away.command, away.params[1:]) == (N.RPL_AWAY, ["bob", "lunch"])
    a.send("NOTICE bob :no away reply for notices")
    assert a.take() == []


def test_several_targets_in_one_message(connect: Connect) -> None:
    a, b = channel(connect, "alice", "bob")
    c = connect("carol")
    a.send("PRIVMSG #c,carol :to both")
    assert b.take()[0].params == ["#c", "to both"]
    assert c.take()[0].params == ["carol", "to both"]


def test_too_many_targets_is_407(connect: Connect) -> None:
    a = connect("alice")
    a.send("PRIVMSG a,b,c,d,e :x")
    assert cmds(a) == [N.ERR_TOOMANYTARGETS]


def test_privmsg_errors(connect: Connect) -> None:
    a = connect("alice")
    a.send("PRIVMSG")
    a.send("PRIVMSG nobody :hi")
    a.send("PRIVMSG #nowhere :hi")
    a.send("PRIVMSG alice")
    assert cmds(a) == [N.ERR_NORECIPIENT, N.ERR_NOSUCHNICK, N.ERR_NOSUCHCHANNEL, N.ERR_NOTEXTTOSEND]


def test_notice_never_gets_error_replies(connect: Connect) -> None:
    a = connect("alice")
    a.send("NOTICE nobody :hi")
    a.send("NOTICE #nowhere :hi")
    a.send("NOTICE")
    assert a.take() == []


def test_no_external_messages_and_moderation(connect: Connect) -> None:
    a, b = channel(connect, "alice", "bob")
    out = connect("outsider")
    out.send("PRIVMSG #c :from outside")
    assert cmds(out) == [N.ERR_CANNOTSENDTOCHAN]
    a.send("MODE #c +m")
    b.take()
    b.send("PRIVMSG #c :muted")
    assert cmds(b) == [N.ERR_CANNOTSENDTOCHAN]
    a.send("MODE #c +v bob")
    b.take()
    b.send("PRIVMSG #c :voiced now")
    assert a.take()[-1].params == ["#c", "voiced now"]


def test_banned_member_cannot_speak(connect: Connect) -> None:
    a, b = channel(connect, "alice", "bob")
    a.send("MODE #c +b bob!*@*")
    b.take()
    b.send("PRIVMSG #c :hi")
    assert cmds(b) == [N.ERR_CANNOTSENDTOCHAN]


def test_statusmsg_reaches_only_ops(connect: Connect) -> None:
    a, b, c = channel(connect, "alice", "bob", "carol")
    a.send("MODE #c +o bob")
    b.take()
    c.take()
    c.send("PRIVMSG @#c :ops only")
    msg = b.take()[0]
    assert msg.params == ["@#c", "ops only"]
    assert [m for m in a.take() if m.command == "PRIVMSG"]  # alice is op too
    assert c.take() == []


def test_echo_message_returns_the_message_to_its_sender(connect: Connect) -> None:
    a, b = channel(connect, "alice", "bob", caps=("echo-message",))
    a.send("PRIVMSG #c :echoed")
    assert a.take()[0].params == ["#c", "echoed"]
    a.send("PRIVMSG bob :direct")
    assert a.take()[0].params == ["bob", "direct"]


def test_server_time_tag_only_for_clients_that_asked(connect: Connect) -> None:
    (a,) = channel(connect, "alice")
    t = connect("timed", caps=("server-time",))
    t.send("JOIN #c")
    t.take()
    a.take()
    a.send("PRIVMSG #c :hi")
    assert "time" in t.take()[0].tags


def test_client_tags_relay_to_message_tags_clients_only(connect: Connect) -> None:
    a, b = channel(connect, "alice", "bob", caps=("message-tags",))
    c = connect("carol")
    c.send("JOIN #c")
    c.take()
    a.take()
    b.take()
    a.send("@+draft/reply=abc;server=nope PRIVMSG #c :tagged")
    got = b.take()[0].tags
    assert got["+draft/reply"] == "abc" and "server" not in got and got["msgid"]
    assert c.take()[0].tags == {}


def test_tagmsg_goes_only_to_message_tags_clients(connect: Connect) -> None:
    a, b = channel(connect, "alice", "bob", caps=("message-tags",))
    c = connect("carol")
    c.send("JOIN #c")
    c.take()
    a.take()
    b.take()
    a.send("@+typing=active TAGMSG #c")
    msg = b.take()[0]
    assert msg.command == "TAGMSG" and msg.tags["+typing"] == "active" and msg.tags["msgid"]
    assert c.take() == []


def test_messages_from_one_sender_keep_their_order(core: ServerCore, connect: Connect) -> None:
    a, b = channel(connect, "alice", "bob")
    a.send(b"".join(f"PRIVMSG #c :{i}\r\n".encode() for i in range(100)))
    assert [m.params[1] for m in b.take()] == [str(i) for i in range(100)]
