"""Server notices on the core: user mode +s with a snomask, who may set it, and the
notice for each letter where the thing happens."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coreharness import OPER_HASH, Clock, Peer, oper_up, pump, user
from relaychat.config import Config, OperConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.registry import SNOMASK_LETTERS

OPERS = {"admin": OperConfig(OPER_HASH)}


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    return make_core(Config(opers=OPERS), flood_rate=0.0)


def snotices(p: Peer) -> list[str]:
    out = []
    for m in p.take():
        if m.command == "NOTICE" and m.params[-1].startswith("*** "):
            assert m.source == p.core.server_name and m.params[0] == p.user.nick
            out.append(m.params[-1])
    return out


# ------------------------------------------------------------------ the mode
def test_non_operator_gets_481_once_and_no_mode(core: ServerCore, clock: Clock) -> None:
    a = user(core, clock, "alice")
    a.send("MODE alice +sss +c +c +c")
    assert [m.command for m in a.take()] == [N.ERR_NOPRIVILEGES]
    a.send("MODE alice +is +c")  # the other letters still apply
    got = a.take()
    assert [(m.command, m.params[1:]) for m in got] == [
        (N.ERR_NOPRIVILEGES, ["Permission Denied - Only operators may set user mode s"]),
        ("MODE", ["+i"]),
    ]
    assert core.registry.snomasks == {}


def test_operator_sets_a_snomask_and_gets_008(core: ServerCore, oper: Peer) -> None:
    oper.send("MODE oper +s +cq")
    got = oper.take()
    assert [(m.command, m.params) for m in got] == [
        ("MODE", ["oper", "+s", "+cq"]),
        (N.RPL_SNOMASK, ["oper", "+cq", "Server notice mask"]),
    ]
    oper.send("MODE oper")
    assert [m.params[1:] for m in oper.take()] == [["+os", "+cq"]]
    assert core.registry.snomasks[oper.user] == "cq"


def test_snomask_changes(core: ServerCore, oper: Peer) -> None:
    oper.send("MODE oper +s")  # alone: every letter
    assert oper.take()[0].params == ["oper", "+s", "+" + SNOMASK_LETTERS]
    oper.send("MODE oper +s -qx")
    got = oper.take()
    assert [(m.command, m.params[1:]) for m in got] == [
        ("MODE", ["+s", "+cfko"]),
        (N.RPL_SNOMASK, ["+cfko", "Server notice mask"]),
    ]
    oper.send("MODE oper +s +cz?")  # nothing new; unknown letters ignored
    assert oper.take() == []
    oper.send("MODE oper +s -*")  # an empty snomask ends +s
    assert [(m.command, m.params[1:]) for m in oper.take()] == [("MODE", ["-s"])]
    assert "s" not in oper.user.modes and core.registry.snomasks == {}
    oper.send("MODE oper +s *")
    oper.take()
    oper.send("MODE oper -s")
    assert [m.params[1:] for m in oper.take()] == [["-s"]]
    assert all(not w for w in core.registry.sno_watchers.values())


def test_losing_operator_status_ends_server_notices(core: ServerCore, oper: Peer) -> None:
    oper.send("MODE oper +s +c")
    oper.take()
    oper.send("MODE oper -o")
    assert [m.params[1:] for m in oper.take()] == [["-os"]]
    assert oper.user.oper_name is None and oper.user.modes == ""
    assert all(not w for w in core.registry.sno_watchers.values())


def test_user_mode_order_is_kept_in_the_announcement(core: ServerCore, oper: Peer) -> None:
    oper.send("MODE oper +w-o+i")
    assert [m.params[1:] for m in oper.take()] == [["+w-o+i"]]


def test_quitting_operator_leaves_no_watcher(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("MODE oper +s")
    oper.send("QUIT")
    assert all(not w for w in core.registry.sno_watchers.values())
    assert core.registry.snomasks == {}


def test_nothing_is_formatted_while_nobody_watches(core: ServerCore) -> None:
    class Boom:
        def __str__(self) -> str:
            raise AssertionError("formatted")

    core.snotice("c", "%s", Boom())  # no watcher: never formatted


# -------------------------------------------------------------- the notices
def test_connect_and_quit_notices(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("MODE oper +s +cq")
    oper.take()
    b = user(core, clock, "bob", "192.0.2.9")
    b.send("QUIT :bye now")
    half = Peer(core, clock)
    half.send("QUIT")  # never registered: no notice
    assert snotices(oper) == [
        "*** CONNECT: Client connecting: bob (~u@192.0.2.9) [192.0.2.9] [Real bob]",
        "*** QUIT: Client exiting: bob (~u@192.0.2.9) [192.0.2.9] [Quit: bye now]",
    ]


def test_only_the_letters_asked_for(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("MODE oper +s +q")
    oper.take()
    b = user(core, clock, "bob")
    b.send("QUIT")
    assert [n.split(":")[0] for n in snotices(oper)] == ["*** QUIT"]


def test_kill_and_oper_notices(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("MODE oper +s +ko")
    oper.take()
    b = user(core, clock, "bob")
    oper_up(b)
    c = user(core, clock, "carol")
    oper.send("KILL carol :enough")
    got = snotices(oper)
    assert got == [
        "*** OPER: bob (~u@127.0.0.1) [127.0.0.1] is now an IRC operator (admin)",
        "*** KILL: Received KILL message for carol (~u@127.0.0.1) from oper: enough",
    ]
    assert c.closed


def test_flood_notices(make_core: Callable[..., ServerCore], clock: Clock) -> None:
    core = make_core(Config(opers=OPERS), flood_rate=1.0, flood_burst=5, recvq=1024, sendq=8192)
    op = user(core, clock, "oper")
    oper_up(op)  # operators are exempt from flood control
    op.send("MODE oper +s +f")
    op.take()
    flooder = user(core, clock, "flooder")
    flooder.feed(b"PRIVMSG nobody :x\r\n" * 100)
    assert flooder.closed
    hog = user(core, clock, "hog")
    core.note_backlog(hog.session, 9000, clock.now)  # the transport holds too much
    pump(core)
    assert hog.closed
    assert snotices(op) == [
        "*** FLOOD: Excess Flood: flooder!~u@127.0.0.1 (127.0.0.1) dropped",
        "*** FLOOD: Max SendQ exceeded: hog!~u@127.0.0.1 (127.0.0.1) dropped",
    ]


def test_ban_notices(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("MODE oper +s +x")
    oper.take()
    victim = user(core, clock, "victim", "192.0.2.1")
    oper.send("KLINE 1h *@192.0.2.1 :bye")
    oper.send("UNKLINE *@192.0.2.1")
    assert victim.closed
    assert snotices(oper) == [
        "*** BANS: oper added K-line for *@192.0.2.1 (1h): bye",
        "*** BANS: K-line hit for *@192.0.2.1 by victim!~u@192.0.2.1 (1 since the last notice):"
        " bye",
        "*** BANS: oper removed K-line for *@192.0.2.1",
    ]


def test_ban_hits_are_summed_not_repeated(core: ServerCore, clock: Clock, oper: Peer) -> None:
    """A banned address reconnecting in a loop: one notice per ban every 10 s."""
    oper.send("DLINE 192.0.2.0/24 :no")
    oper.send("MODE oper +s +x")
    oper.take()
    for _ in range(50):
        Peer(core, clock, "192.0.2.5")
    assert len(snotices(oper)) == 1
    clock.advance(10)
    Peer(core, clock, "192.0.2.6")
    got = snotices(oper)
    assert len(got) == 1 and "(50 since the last notice)" in got[0]
