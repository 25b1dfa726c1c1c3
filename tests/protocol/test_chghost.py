"""chghost: the oper command CHGHOST, ``core.change_host``, the CHGHOST message to
peers with the capability and the spec's fallback (QUIT, JOIN, MODE) to the rest."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coreharness import Clock, Peer, pump
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.events import Event
from relaychat.protocol.message import Message

Connect = Callable[..., Peer]


def lines(msgs: list[Message]) -> list[tuple[str | None, str, list[str]]]:
    return [(m.source, m.command, m.params) for m in msgs]


@pytest.fixture
def oper(core: ServerCore, connect: Connect) -> Peer:
    op = connect("op")
    core.registry.set_user_modes(op.user, "o")
    op.user.oper_name = "admin"
    return op


# ------------------------------------------------------------ the command
def test_chghost_is_for_operators_only(connect: Connect) -> None:
    a = connect("alice")
    a.send("CHGHOST alice x y")
    assert [m.command for m in a.take()] == [N.ERR_NOPRIVILEGES]
    assert a.user.host == "127.0.0.1"


def test_missing_parameters_is_461(oper: Peer) -> None:
    oper.send("CHGHOST alice x")
    assert [m.params[1:] for m in oper.take()] == [["CHGHOST", "Not enough parameters"]]


def test_unknown_nick_is_401(oper: Peer) -> None:
    oper.send("CHGHOST nobody x y")
    assert [(m.command, m.params[1]) for m in oper.take()] == [(N.ERR_NOSUCHNICK, "nobody")]


@pytest.mark.parametrize("ident", ["a@b", "a!b", "*", "x,y", "é", "x" * 19, "a\x01b", "a?b", "a:b"])
def test_an_invalid_ident_is_a_fail(oper: Peer, connect: Connect, ident: str) -> None:
    b = connect("bob")
    oper.send(f"CHGHOST bob {ident} ok.host")
    (fail,) = oper.take()
    assert (fail.command, fail.params[:2]) == ("FAIL", ["CHGHOST", "INVALID_USERNAME"])
    assert b.user.ident == "~u"


@pytest.mark.parametrize(
    "host", ["-x", ".x", ":1", "/x", "a@b", "a!b", "a*", "a,b", "é.example", "h" * 64, "a b"]
)
def test_an_invalid_host_is_a_fail(oper: Peer, connect: Connect, host: str) -> None:
    b = connect("bob")
    oper.send(f"CHGHOST bob ~ok :{host}")
    (fail,) = oper.take()
    assert (fail.command, fail.params[:2]) == ("FAIL", ["CHGHOST", "INVALID_HOSTNAME"])
    assert b.user.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("ident", "host"), [("~b", "ckyard"), ("toolshed", "user/tim"), ("x", "0::1"), ("a.b", "h_1")]
)
def test_valid_idents_and_hosts(oper: Peer, connect: Connect, ident: str, host: str) -> None:
    b = connect("bob")
    oper.send(f"CHGHOST bob {ident} {host}")
    (notice,) = oper.take()
    assert notice.command == "NOTICE"
    assert notice.params[1] == f"CHGHOST: bob!~u@127.0.0.1 is now bob!{ident}@{host}"
    assert (b.user.ident, b.user.host) == (ident, host)


def test_no_change_is_said_and_relays_nothing(oper: Peer, connect: Connect) -> None:
    b = connect("bob", caps=("chghost",))
    c = connect("carol")
    for p in (b, c):
        p.send("JOIN #c")
    b.take(), c.take()
    oper.send("CHGHOST bob ~u 127.0.0.1")
    assert [m.params[1] for m in oper.take()] == ["CHGHOST: bob already is bob!~u@127.0.0.1"]
    assert b.take() == [] and c.take() == []


def test_the_new_mask_is_what_everyone_sees_next(
    oper: Peer, connect: Connect, core: ServerCore
) -> None:
    b = connect("bob")
    b.send("JOIN #c")
    oper.send("CHGHOST bob ~b ckyard")
    oper.take()
    oper.send("WHOIS bob")
    user = next(m for m in oper.take() if m.command == N.RPL_WHOISUSER)
    assert user.params[2:4] == ["~b", "ckyard"]
    oper.send("JOIN #c")
    oper.take()
    b.send("PRIVMSG #c :hi")
    assert [m.source for m in oper.take()] == ["bob!~b@ckyard"]


# ------------------------------------------------------ who is told what
def test_peers_with_chghost_get_chghost_from_the_old_mask(oper: Peer, connect: Connect) -> None:
    b = connect("bob", caps=("chghost",))
    p = connect("peer", caps=("chghost",))
    for x in (b, p):
        x.send("JOIN #a")
        x.send("JOIN #b")  # two shared channels: still one CHGHOST
    b.take(), p.take()
    oper.send("CHGHOST bob ~b ckyard")
    expected = [("bob!~u@127.0.0.1", "CHGHOST", ["~b", "ckyard"])]
    assert lines(p.take()) == expected
    assert lines(b.take()) == expected  # its own sessions with the capability too


def test_peers_without_chghost_get_quit_join_and_mode(oper: Peer, connect: Connect) -> None:
    b = connect("bob")
    b.send("JOIN #a")  # bob creates #a: operator there
    p = connect("peer")
    p.send("JOIN #a")
    p.send("JOIN #b")
    b.send("JOIN #b")
    p.send("MODE #b +v bob")
    b.take(), p.take()
    oper.send("CHGHOST bob ~b ckyard")
    assert lines(p.take()) == [
        ("bob!~u@127.0.0.1", "QUIT", ["Changing hostname"]),
        ("bob!~b@ckyard", "JOIN", ["#a"]),
        ("irc.relaychat.local", "MODE", ["#a", "+o", "bob"]),
        ("bob!~b@ckyard", "JOIN", ["#b"]),
        ("irc.relaychat.local", "MODE", ["#b", "+v", "bob"]),
    ]
    assert b.take() == []  # no QUIT of oneself; without chghost, nothing


def test_fallback_restores_every_status_letter(
    oper: Peer, connect: Connect, core: ServerCore
) -> None:
    b = connect("bob")
    b.send("JOIN #a")
    b.send("MODE #a +v bob")
    p = connect("peer")
    p.send("JOIN #a")
    p.take()
    oper.send("CHGHOST bob ~b ckyard")
    assert lines(p.take())[-1] == ("irc.relaychat.local", "MODE", ["#a", "+ov", "bob", "bob"])


def test_fallback_join_is_extended_for_extended_join_and_away_follows(
    oper: Peer, connect: Connect, core: ServerCore
) -> None:
    b = connect("bob")
    b.send("JOIN #a")
    b.send("AWAY :gone fishing")
    core.account_changed(b.user, "bobacct")
    p = connect("peer", caps=("extended-join", "away-notify"))
    p.send("JOIN #a")
    b.take(), p.take()
    oper.send("CHGHOST bob ~b ckyard")
    assert lines(p.take()) == [
        ("bob!~u@127.0.0.1", "QUIT", ["Changing hostname"]),
        ("bob!~b@ckyard", "JOIN", ["#a", "bobacct", "Real bob"]),
        ("irc.relaychat.local", "MODE", ["#a", "+o", "bob"]),
        ("bob!~b@ckyard", "AWAY", ["gone fishing"]),
    ]


def test_users_sharing_no_channel_hear_nothing(oper: Peer, connect: Connect) -> None:
    b = connect("bob")
    b.send("JOIN #a")
    x = connect("x", caps=("chghost",))
    y = connect("y")
    x.send("JOIN #other")
    y.send("JOIN #other")
    x.take(), y.take()
    oper.send("CHGHOST bob ~b ckyard")
    assert x.take() == [] and y.take() == []


def test_a_user_in_no_channel_is_told_with_chghost_only(oper: Peer, connect: Connect) -> None:
    b = connect("bob", caps=("chghost",))
    oper.send("CHGHOST bob ~b ckyard")
    assert lines(b.take()) == [("bob!~u@127.0.0.1", "CHGHOST", ["~b", "ckyard"])]


# ------------------------------------------------------- the core function
def test_change_host_before_registration_tells_nobody(core: ServerCore, clock: Clock) -> None:
    seen: list[Event] = []
    core.add_consumer(seen.append)
    p = Peer(core, clock)
    p.send("NICK bob")
    assert core.change_host(p.user, "~cloak", "cloaked.example")
    p.send("USER u 0 * :Real")
    welcome = next(m for m in p.take() if m.command == N.RPL_WELCOME)
    assert welcome.params[-1].endswith("bob!~u@cloaked.example")  # USER sets the ident
    assert seen == []


def test_change_host_events_are_renderings_of_one_happening(
    core: ServerCore, connect: Connect
) -> None:
    """CHGHOST and every part of the fallback share one msgid: a history writer
    stores the change once."""
    b = connect("bob")
    b.send("JOIN #a")
    b.send("JOIN #b")
    seen: list[Event] = []
    core.add_consumer(seen.append)
    assert core.change_host(b.user, "~b", "ckyard")
    pump(core)
    assert [e.command for e in seen] == ["CHGHOST", "QUIT"] + ["JOIN", "JOIN", "MODE"] * 2
    assert len({e.msgid for e in seen}) == 1
    assert seen[0].cap == "chghost" and all("chghost" in e.nocap for e in seen[1:])
    assert not core.change_host(b.user, "~b", "ckyard")


def test_help_knows_chghost(oper: Peer) -> None:
    oper.send("HELP CHGHOST")
    text = " ".join(m.params[-1] for m in oper.take())
    assert "CHGHOST <nick> <user> <host>" in text
