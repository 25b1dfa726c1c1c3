"""SILENCE on the core: the list, what it filters (and what it does not), the limits,
and that a refused command changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coreharness import Clock, Peer, only
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    return make_core(flood_rate=0.0, max_silence=4)


def user(core: ServerCore, clock: Clock, nick: str, caps: tuple[str, ...] = ()) -> Peer:
    p = Peer(core, clock)
    p.register(nick, caps=caps)
    return p


def listed(p: Peer) -> list[str]:
    p.send("SILENCE")
    got = p.take()
    assert got[-1].command == N.RPL_ENDOFSILELIST
    assert got[-1].params[1:] == ["End of Silence List"]
    assert all(m.command == N.RPL_SILELIST for m in got[:-1])
    return [m.params[1] for m in got[:-1]]


def test_empty_list(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    assert listed(a) == []


def test_masks_are_normalised_echoed_and_listed(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    a.send("SILENCE +bob,~spam@*.example.org,-nobody,+*!*@10.*")
    got = a.take()
    assert [(m.command, m.source, m.params) for m in got] == [
        ("SILENCE", "alice!~u@127.0.0.1", ["+bob!*@*"]),
        ("SILENCE", "alice!~u@127.0.0.1", ["+*!~spam@*.example.org"]),
        ("SILENCE", "alice!~u@127.0.0.1", ["+*!*@10.*"]),
    ]
    assert listed(a) == ["bob!*@*", "*!~spam@*.example.org", "*!*@10.*"]
    a.send("SILENCE -BOB!*@*,+BOB")  # case-insensitive: removed, then added again
    assert [m.params for m in a.take()] == [["-bob!*@*"], ["+BOB!*@*"]]
    a.send("SILENCE +bob,+bob,-ghost")  # already there, never there: nothing to say
    assert a.take() == []


def test_private_messages_notices_and_tagmsg_are_dropped(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice", caps=("message-tags",))
    b = user(core, clock, "Bob", caps=("message-tags",))
    c = user(core, clock, "carol")
    a.send("SILENCE +bob")
    a.take()
    b.send("PRIVMSG alice :hello")
    b.send("NOTICE alice :hello")
    b.send("@+typing=active TAGMSG alice")
    b.send("PRIVMSG alice,carol :to both")
    assert a.take() == []
    assert b.take() == []  # no error: the sender cannot tell
    assert [m.params for m in c.take()] == [["carol", "to both"]]
    c.send("PRIVMSG alice :not silenced")
    assert [m.params for m in a.take()] == [["alice", "not silenced"]]


def test_sender_with_echo_message_still_gets_its_echo_and_away_reply(
    core: ServerCore, clock: Clock
) -> None:
    a = user(core, clock, "alice")
    b = user(core, clock, "bob", caps=("echo-message",))
    a.send("SILENCE +bob")
    a.send("AWAY :gone")
    a.take()
    b.send("PRIVMSG alice :hello")
    got = b.take()
    assert [(m.command, m.params) for m in got] == [
        ("PRIVMSG", ["alice", "hello"]),
        (N.RPL_AWAY, ["bob", "alice", "gone"]),
    ]
    assert a.take() == []


def test_channel_messages_are_not_filtered(core: ServerCore, clock: Clock) -> None:
    a, b = user(core, clock, "alice"), user(core, clock, "bob")
    a.send("JOIN #c")
    b.send("JOIN #c")
    a.send("SILENCE +bob")
    a.take()
    b.send("PRIVMSG #c :everyone hears this")
    assert [m.params for m in only(a.take(), "PRIVMSG")] == [["#c", "everyone hears this"]]


def test_invite_from_a_silenced_user_is_dropped(core: ServerCore, clock: Clock) -> None:
    a, b = user(core, clock, "alice"), user(core, clock, "bob")
    b.send("JOIN #c")
    a.send("SILENCE +bob")
    a.take()
    b.take()
    b.send("INVITE alice #c")
    assert [m.command for m in b.take()] == [N.RPL_INVITING]
    assert a.take() == []


def test_silence_matches_the_current_nick_and_host(core: ServerCore, clock: Clock) -> None:
    a, b = user(core, clock, "alice"), user(core, clock, "bob")
    a.send("SILENCE *!*@127.0.0.*")
    a.take()
    b.send("PRIVMSG alice :by host")
    assert a.take() == []
    a.send("SILENCE -*!*@127.0.0.*,+bob")
    a.take()
    b.send("NICK robert")
    b.send("PRIVMSG alice :new nick")
    assert [m.params[-1] for m in only(a.take(), "PRIVMSG")] == ["new nick"]


def test_nobody_silences_themself(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    a.send("SILENCE +alice")
    a.take()
    a.send("PRIVMSG alice :note to self")
    assert [m.params for m in only(a.take(), "PRIVMSG")] == [["alice", "note to self"]]


def test_a_full_list_is_511_and_nothing_of_that_command_applies(
    core: ServerCore, clock: Clock
) -> None:
    a = user(core, clock, "alice")
    a.send("SILENCE +a,+b,+c,+d")
    a.take()
    a.send("SILENCE -a,+e,+f")  # -a makes room for e, not for f
    got = a.take()
    assert [(m.command, m.params[1:]) for m in got] == [
        (N.ERR_SILELISTFULL, ["f!*@*", "Your silence list is full"])
    ]
    assert listed(a) == ["a!*@*", "b!*@*", "c!*@*", "d!*@*"]
    a.send("SILENCE -a,+e")
    a.take()
    assert listed(a) == ["b!*@*", "c!*@*", "d!*@*", "e!*@*"]


def test_a_malformed_mask_is_refused_and_nothing_applies(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    for bad in ("+ok,+", "+ok,-", "+ok,+" + "x" * 201, "+ok,+::x"):
        a.send(f"SILENCE {bad}")
        got = a.take()
        assert [(m.command, m.params[:2]) for m in got] == [("FAIL", ["SILENCE", "INVALID_MASK"])]
    assert listed(a) == []


def test_thousands_of_masks_in_one_line_cost_one_pass(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, line_length=16384, recvq=32768)
    a = user(core, clock, "alice")
    masks = ",".join(f"+m{i}" for i in range(2000))  # about 14 KB
    a.send("SILENCE " + masks)
    got = a.take()
    assert [(m.command, m.params[1]) for m in got] == [(N.ERR_SILELISTFULL, "m32!*@*")]
    assert a.user.silence is None
    a.send("SILENCE " + ",".join(["+same"] * 2000))
    assert [m.params for m in a.take()] == [["+same!*@*"]]


def test_silence_is_advertised_with_its_limit(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("NICK n")
    p.send("USER u 0 * :r")
    tokens = [t for m in p.take() if m.command == N.RPL_ISUPPORT for t in m.params[1:-1]]
    assert "SILENCE=4" in tokens


def test_silence_before_registration_is_451(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("SILENCE +x")
    assert [m.command for m in p.take()] == [N.ERR_NOTREGISTERED]
