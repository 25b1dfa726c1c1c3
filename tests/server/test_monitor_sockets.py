"""MONITOR and extended-monitor over real sockets, for both engines, and a client
that monitors as much junk as it can while a bystander keeps being answered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ircutil import RawClient, wait_for
from relaychat.protocol import numerics as N
from relaychat.protocol.message import Message

Connect = Callable[..., RawClient]


def listed(msgs: list[Message], numeric: str) -> list[str]:
    return [t for m in msgs if m.command == numeric for t in m.params[-1].split(",")]


def test_watcher_is_told_of_sign_on_nick_change_and_quit(irc_server: Any, connect: Connect) -> None:
    w = connect(irc_server, "watcher")
    w.send("MONITOR + bob,Robert")
    assert listed(w.sync(), N.RPL_MONOFFLINE) == ["bob", "Robert"]

    b = connect(irc_server, "bob")
    online = w.expect(N.RPL_MONONLINE)
    assert online.params == ["watcher", "bob!~bob@127.0.0.1"]

    b.send("NICK robert")
    assert w.expect(N.RPL_MONOFFLINE).params == ["watcher", "bob"]
    assert w.expect(N.RPL_MONONLINE).params == ["watcher", "robert!~bob@127.0.0.1"]

    w.send("MONITOR S")
    w.send("MONITOR L")
    msgs = w.take_until(N.RPL_ENDOFMONLIST)
    assert listed(msgs, N.RPL_MONONLINE) == ["robert!~bob@127.0.0.1"]
    assert listed(msgs, N.RPL_MONOFFLINE) == ["bob"]
    assert listed(msgs, N.RPL_MONLIST) == ["bob", "Robert"]

    b.send("QUIT :bye")
    assert w.expect(N.RPL_MONOFFLINE).params == ["watcher", "robert"]


def test_a_dropped_connection_is_offline_and_a_dropped_watcher_leaves_no_trace(
    irc_server: Any, connect: Connect
) -> None:
    w = connect(irc_server, "watcher")
    w.send("MONITOR + bob")
    w.sync()
    b = connect(irc_server, "bob")
    w.expect(N.RPL_MONONLINE)
    b.close()  # no QUIT: the socket just goes
    assert w.expect(N.RPL_MONOFFLINE).params == ["watcher", "bob"]

    index = irc_server.core.monitor
    assert index.watchers
    w.close()
    wait_for(lambda: not index.watchers and not index.watching, what="the index to be emptied")


def test_extended_monitor_away_without_a_shared_channel(irc_server: Any, connect: Connect) -> None:
    w = connect(irc_server, "watcher", caps=("extended-monitor", "away-notify"))
    plain = connect(irc_server, "plain", caps=("away-notify",))
    for c in (w, plain):
        c.send("MONITOR + bob")
        c.sync()
    b = connect(irc_server, "bob")
    w.expect(N.RPL_MONONLINE)
    b.send("AWAY :lunch")
    b.expect(N.RPL_NOWAWAY)
    away = w.expect("AWAY")
    assert (away.source, away.params) == ("bob!~bob@127.0.0.1", ["lunch"])
    assert [m.command for m in plain.sync()] == [N.RPL_MONONLINE]  # and no AWAY


def test_monitor_errors_over_the_wire(start_server: Callable[..., Any], connect: Connect) -> None:
    server = start_server(monitor_limit=2)
    c = connect(server, "c")
    welcome = c.sync()  # nothing pending
    assert welcome == []
    c.send("MONITOR")
    c.send("MONITOR +")
    c.send("MONITOR Q")
    c.send("MONITOR + a,b,c,d")
    got = [(m.command, m.params[1:]) for m in c.sync()]
    assert got == [
        (N.ERR_NEEDMOREPARAMS, ["MONITOR", "Not enough parameters"]),
        (N.ERR_NEEDMOREPARAMS, ["MONITOR", "Not enough parameters"]),
        (N.ERR_UNKNOWNERROR, ["MONITOR", "Q", "Unknown MONITOR subcommand"]),
        (N.RPL_MONOFFLINE, ["a,b"]),
        (N.ERR_MONLISTFULL, ["2", "c,d", "Monitor list is full."]),
    ]


# ------------------------------------------------------------------ hostile
def junk_lines(count: int) -> list[str]:
    """MONITOR + lines of up to 500 bytes: valid targets, each again in another
    case and again as sent, among over-long nicks, invalid ones and empty items."""
    lines = []
    for i in range(count):
        items: list[str] = []
        j = 0
        while True:
            valid = f"t{i:02d}n{j:03d}"
            batch = [valid, valid.upper(), "x" * 40, "1bad", "#chan", "", "a!b@c", valid]
            if len("MONITOR + :" + ",".join(items + batch)) > 500:
                break
            items += batch
            j += 1
        lines.append("MONITOR + :" + ",".join(items))
    return lines


def test_monitoring_the_maximum_with_junk_does_not_hold_up_a_bystander(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    limit = 100
    server = start_server(flood_rate=4.0, flood_burst=20, monitor_limit=limit)
    attacker = connect(server, "attacker")
    bystander = connect(server, "bystander")
    lines = junk_lines(24)  # 5 valid targets a line: 120 offered, the list holds 100
    assert all(len(line) <= 500 for line in lines)
    replies: list[Message] = []

    def attacker_done() -> None:
        done = attacker.take_until(lambda m: m.command == "PONG" and m.params[-1] == "done", 30)
        replies.extend(done)

    payload = "".join(f"{line}\r\n" for line in [*lines, "MONITOR S", "MONITOR L", "PING :done"])
    attacker.send(payload.encode())  # one write; flood control spreads the work out
    waiting = threading.Thread(target=attacker_done, name="test-attacker")
    waiting.start()
    rtts: list[float] = []
    try:
        while waiting.is_alive():
            t0 = time.monotonic()
            bystander.send("PING :rtt")
            bystander.expect("PONG", timeout=5)
            rtts.append(time.monotonic() - t0)
            waiting.join(0.3)  # about 3 PINGs a second: within the bystander's own budget
    finally:
        waiting.join(30)
    assert replies, "the attacker's commands were never answered"
    assert len(rtts) >= 2 and max(rtts) < 1.0, rtts
    assert not attacker.closed

    full = [m for m in replies if m.command == N.ERR_MONLISTFULL]
    assert full and all(m.params[1] == str(limit) for m in full)
    kept = listed(replies, N.RPL_MONLIST)
    assert len(kept) == limit == len(set(kept))
    assert all(len(t) == 7 and t.startswith("t") for t in kept)  # valid ones, as sent
    offline = listed(replies, N.RPL_MONOFFLINE)  # once when added, once for MONITOR S
    assert len(offline) == 2 * limit and sorted(offline[limit:]) == sorted(kept)
    index = server.core.monitor
    assert len(index.watchers) == limit
    attacker.close()
    wait_for(lambda: not index.watchers and not index.watching, what="the list to go with it")
