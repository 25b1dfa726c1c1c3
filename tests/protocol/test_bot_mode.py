"""Bot mode (IRCv3 bot-mode): user mode +B, ISUPPORT BOT=B, RPL_WHOISBOT (335)
in WHOIS, the B flag in WHO and WHOX replies."""

from __future__ import annotations

from collections.abc import Callable

from coreharness import Clock, Peer
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore

Connect = Callable[..., Peer]


def test_isupport_and_myinfo_name_the_mode(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("NICK robo")
    p.send("USER u 0 * :Real")
    msgs = p.take()
    tokens = [t for m in msgs if m.command == N.RPL_ISUPPORT for t in m.params[1:-1]]
    assert "BOT=B" in tokens
    myinfo = next(m for m in msgs if m.command == N.RPL_MYINFO)
    assert "B" in myinfo.params[3]  # the user modes


def test_a_user_sets_and_unsets_B_on_itself(connect: Connect) -> None:
    r = connect("robo")
    r.send("MODE robo +B")
    (mode,) = r.take()
    assert (mode.source, mode.command, mode.params) == ("robo!~u@127.0.0.1", "MODE", ["robo", "+B"])
    assert "B" in r.user.modes
    r.send("MODE robo")
    assert [m.params[-1] for m in r.take()] == ["+B"]
    r.send("MODE robo +B")  # already set: nothing
    assert r.take() == []
    r.send("MODE robo -B+i")
    assert [m.params for m in r.take()] == [["robo", "-B+i"]]
    assert r.user.modes == "i"


def test_nobody_sets_B_on_someone_else(connect: Connect) -> None:
    a = connect("alice")
    connect("robo")
    a.send("MODE robo +B")
    assert [m.command for m in a.take()] == [N.ERR_USERSDONTMATCH]


def test_whois_of_a_bot_has_335_before_the_idle_line(connect: Connect) -> None:
    r = connect("robo")
    a = connect("alice")
    r.send("MODE robo +B")
    a.send("WHOIS robo")
    msgs = a.take()
    numerics = [m.command for m in msgs]
    bot = next(m for m in msgs if m.command == N.RPL_WHOISBOT)
    assert bot.params == ["alice", "robo", "is a Bot on RelayChat"]
    assert numerics.index(N.RPL_WHOISBOT) < numerics.index(N.RPL_WHOISIDLE)
    r.send("MODE robo -B")
    a.send("WHOIS robo")
    assert N.RPL_WHOISBOT not in [m.command for m in a.take()]


def test_who_flags_carry_B(connect: Connect) -> None:
    r = connect("robo")
    a = connect("alice")
    r.send("MODE robo +B")
    r.send("JOIN #c")
    a.send("JOIN #c")
    a.take()
    a.send("WHO #c")
    flags = {m.params[5]: m.params[6] for m in a.take() if m.command == N.RPL_WHOREPLY}
    assert flags == {"robo": "H@B", "alice": "H"}
    r.send("AWAY :off")
    a.send("WHO robo")
    (reply,) = [m for m in a.take() if m.command == N.RPL_WHOREPLY]
    assert reply.params[6] == "G@B"
    a.send("WHO robo %nf")
    (whox,) = [m for m in a.take() if m.command == N.RPL_WHOSPCRPL]
    assert whox.params[1:] == ["robo", "G@B"]


def test_a_human_has_no_B(connect: Connect) -> None:
    a = connect("alice")
    a.send("WHO alice")
    (reply,) = [m for m in a.take() if m.command == N.RPL_WHOREPLY]
    assert reply.params[6] == "H"
