"""extended-monitor: AWAY, SETNAME, CHGHOST and ACCOUNT of monitored users reach
watchers that negotiated extended-monitor and the matching capability, shared
channel or not, and never twice."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coreharness import Peer, pump
from relaychat.protocol.core import ServerCore

Connect = Callable[..., Peer]

# (capability, what the watched user does, the line its watchers get)
CHANGES: list[tuple[str, Callable[[ServerCore, Peer], None], str]] = [
    ("away-notify", lambda core, b: b.send("AWAY :lunch"), "AWAY"),
    ("setname", lambda core, b: b.send("SETNAME :New Name"), "SETNAME"),
    ("chghost", lambda core, b: core.change_host(b.user, "~new", "new.host"), "CHGHOST"),
    ("account-notify", lambda core, b: core.account_changed(b.user, "bobacct"), "ACCOUNT"),
]
IDS = [c[0] for c in CHANGES]


def act(core: ServerCore, b: Peer, change: Callable[[ServerCore, Peer], None]) -> None:
    change(core, b)
    pump(core)


def got(p: Peer, command: str) -> list[list[str]]:
    return [m.params for m in p.take() if m.command == command]


@pytest.mark.parametrize(("cap", "change", "command"), CHANGES, ids=IDS)
def test_watcher_with_both_caps_gets_it_without_a_shared_channel(
    core: ServerCore,
    connect: Connect,
    cap: str,
    change: Callable[[ServerCore, Peer], None],
    command: str,
) -> None:
    b = connect("bob")
    w = connect("watcher", caps=("extended-monitor", cap))
    w.send("MONITOR + bob")
    w.take()
    act(core, b, change)
    assert len(got(w, command)) == 1


@pytest.mark.parametrize(("cap", "change", "command"), CHANGES, ids=IDS)
def test_one_of_the_two_caps_is_not_enough(
    core: ServerCore,
    connect: Connect,
    cap: str,
    change: Callable[[ServerCore, Peer], None],
    command: str,
) -> None:
    b = connect("bob")
    only_ext = connect("w1", caps=("extended-monitor",))
    only_cap = connect("w2", caps=(cap,))
    for w in (only_ext, only_cap):
        w.send("MONITOR + bob")
        w.take()
    act(core, b, change)
    assert got(only_ext, command) == [] and got(only_cap, command) == []


@pytest.mark.parametrize(("cap", "change", "command"), CHANGES, ids=IDS)
def test_a_watcher_that_shares_a_channel_gets_it_once(
    core: ServerCore,
    connect: Connect,
    cap: str,
    change: Callable[[ServerCore, Peer], None],
    command: str,
) -> None:
    b = connect("bob")
    w = connect("watcher", caps=("extended-monitor", cap))
    for p in (b, w):
        p.send("JOIN #a")
        p.send("JOIN #b")
    w.send("MONITOR + bob")
    w.take()
    act(core, b, change)
    assert len(got(w, command)) == 1


@pytest.mark.parametrize(("cap", "change", "command"), CHANGES, ids=IDS)
def test_not_watching_or_no_longer_watching_gets_nothing(
    core: ServerCore,
    connect: Connect,
    cap: str,
    change: Callable[[ServerCore, Peer], None],
    command: str,
) -> None:
    b = connect("bob")
    w = connect("watcher", caps=("extended-monitor", cap))
    w.send("MONITOR + bob")
    w.send("MONITOR - bob")
    other = connect("other", caps=("extended-monitor", cap))
    other.send("MONITOR + carol")
    w.take(), other.take()
    act(core, b, change)
    assert got(w, command) == [] and got(other, command) == []


def test_the_lines_are_the_events_lines(core: ServerCore, connect: Connect) -> None:
    b = connect("bob")
    caps = ("extended-monitor", "away-notify", "setname", "chghost", "account-notify")
    w = connect("watcher", caps=caps)
    w.send("MONITOR + bob")
    w.take()
    b.send("AWAY :lunch")
    b.send("AWAY")
    b.send("SETNAME :Robert")
    core.change_host(b.user, "~rob", "rob.example")
    core.account_changed(b.user, "robacct")
    core.account_changed(b.user, None)
    pump(core)
    assert [(m.source, m.command, m.params) for m in w.take()] == [
        ("bob!~u@127.0.0.1", "AWAY", ["lunch"]),
        ("bob!~u@127.0.0.1", "AWAY", []),
        ("bob!~u@127.0.0.1", "SETNAME", ["Robert"]),
        ("bob!~u@127.0.0.1", "CHGHOST", ["~rob", "rob.example"]),
        ("bob!~rob@rob.example", "ACCOUNT", ["robacct"]),
        ("bob!~rob@rob.example", "ACCOUNT", ["*"]),
    ]


def test_a_user_watching_itself_gets_only_what_the_capability_gives_it(
    core: ServerCore, connect: Connect
) -> None:
    b = connect("bob", caps=("extended-monitor", "away-notify", "setname"))
    b.send("MONITOR + bob")
    b.take()
    b.send("AWAY :out")  # away-notify does not echo one's own AWAY: 306 only
    b.send("SETNAME :Me")  # setname echoes once
    assert [m.command for m in b.take()] == ["306", "SETNAME"]


def test_watchers_follow_the_nick_not_the_user(core: ServerCore, connect: Connect) -> None:
    b = connect("bob")
    w = connect("watcher", caps=("extended-monitor", "away-notify"))
    w.send("MONITOR + robert")
    w.take()
    b.send("AWAY :x")
    pump(core)
    assert got(w, "AWAY") == []
    b.send("NICK robert")
    b.send("AWAY :y")
    assert got(w, "AWAY") == [["y"]]
