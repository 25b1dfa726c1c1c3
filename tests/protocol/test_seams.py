"""The core's seams, used as a later feature would use them: event consumers,
users apart from sessions, owner APIs, operations, the response buffer, the
explicit clock and deadlines, containment of a handler that raises."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from coreharness import Clock, Peer, advance, new_core, pump, tick
from relaychat.config import Config, LimitsConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.commands import COMMANDS
from relaychat.protocol.core import CommandSpec, ServerCore, normalize_ip
from relaychat.protocol.events import CHANNEL, PEERS, USER, Event
from relaychat.protocol.ops import Batcher, Op
from relaychat.protocol.timebase import Now

Connect = Callable[..., Peer]


def test_a_second_consumer_sees_every_event_and_one_msgid_per_happening(
    core: ServerCore, connect: Connect
) -> None:
    seen: list[Event] = []
    core.add_consumer(seen.append)  # what a history writer or a publisher does
    a, b = connect("alice"), connect("bob")
    a.send("JOIN #c")
    b.send("JOIN #c")
    a.send("@+draft/react=x PRIVMSG #c :hello")
    a.send("PRIVMSG bob :psst")
    b.send("NICK robert")
    b.send("QUIT :bye")
    # a JOIN is two renderings of one happening (plain, and extended-join's with
    # account and realname), which share its msgid; everything else is one event
    joins = seen[:4]
    assert [(e.command, e.cap, e.nocap) for e in joins] == [
        ("JOIN", None, ("extended-join",)),
        ("JOIN", "extended-join", ()),
    ] * 2
    assert [e.params for e in joins] == [
        ["#c"],
        ["#c", "*", "Real alice"],
        ["#c"],
        ["#c", "*", "Real bob"],
    ]
    assert joins[0].msgid == joins[1].msgid and joins[2].msgid == joins[3].msgid
    kinds = [(e.command, e.audience) for e in seen]
    assert kinds == [
        ("JOIN", CHANNEL),
        ("JOIN", CHANNEL),
        ("JOIN", CHANNEL),
        ("JOIN", CHANNEL),
        ("PRIVMSG", CHANNEL),
        ("PRIVMSG", USER),
        ("NICK", PEERS),
        ("QUIT", PEERS),
    ]
    assert len({e.msgid for e in seen}) == len(seen) - 2
    msg = seen[4]
    assert msg.source == "alice!~u@127.0.0.1" and msg.params == ["#c", "hello"]
    assert msg.channel is not None and msg.channel.name == "#c"
    assert msg.time == pytest.approx(a.clock.wall)
    assert seen[5].params == ["bob", "psst"] and seen[5].target is b.user
    assert seen[6].params == ["robert"] and seen[6].source.startswith("bob!")


def test_local_delivery_is_just_a_consumer(core: ServerCore, connect: Connect) -> None:
    """Without the local consumer, nobody receives a relayed message: handlers do
    not write relayed lines themselves."""
    a, b = connect("alice"), connect("bob")
    a.send("JOIN #c")
    b.send("JOIN #c")
    b.take()
    core.remove_consumer(core.output.deliver)
    a.send("PRIVMSG #c :hello")
    assert b.take() == []
    core.add_consumer(core.output.deliver, first=True)
    a.send("PRIVMSG #c :again")
    assert [m.params for m in b.take()] == [["#c", "again"]]


def test_a_user_with_two_sessions_gets_channel_messages_on_both(
    core: ServerCore, connect: Connect, clock: Clock
) -> None:
    """The seam for several connections per account: membership is the user's,
    delivery reaches each of its sessions."""
    a, b = connect("alice"), connect("bob")
    a.send("JOIN #c")
    b.send("JOIN #c")
    second = Peer(core, clock)
    user = b.session.user
    # attach the second connection to bob's user, as account multi-login would
    core.registry.remove_user(second.session.user, clock.wall)
    second.session.user = user
    user.sessions = (*user.sessions, second.session)
    b.take()
    a.send("PRIVMSG #c :both of you")
    assert [m.params[-1] for m in b.take()] == ["both of you"]
    assert [m.params[-1] for m in second.take()] == ["both of you"]


def test_registry_owns_membership_both_ways(core: ServerCore, connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    chan = core.find_channel("#c")
    assert chan is not None and a.user in chan.members and a.user.channels["#c"] is chan
    core.registry.part(chan, a.user)
    assert a.user.channels == {} and core.find_channel("#c") is None


def test_a_recreated_channel_is_a_new_instance(core: ServerCore, connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    first = core.find_channel("#c")
    a.send("PART #c")
    a.send("JOIN #c")
    second = core.find_channel("#c")
    assert first is not None and second is not None and first.cid != second.cid


def test_replies_of_one_command_leave_as_one_buffer(core: ServerCore, connect: Connect) -> None:
    """The response buffer: a command's numerics and its own JOIN echo are one unit
    (what labeled-response will wrap)."""
    a = connect("alice")
    a.raw.clear()
    a.send("JOIN #c")
    assert len(a.raw) == 1
    text = a.raw[0].decode()
    assert text.index(" JOIN ") < text.index(" 353 ") < text.index(" 366 ")


# ------------------------------------------------------------------ operations
def test_ordered_operation_holds_later_lines_and_is_cancelled_by_quit(
    core: ServerCore, connect: Connect
) -> None:
    a = connect("alice")
    calls: list[str] = []
    op = Op(lambda: 42, lambda r: calls.append(f"then {r}"), a.session)
    core.submit(op)
    a.feed(b"PING one\r\n", flush=False)
    assert a.session.busy and a.take() == []  # PING waits for the op
    assert core.ops_to_run() == [op]
    op.result = op.run()
    core.op_done(op, a.clock.now)
    pump(core)
    assert calls == ["then 42"]
    assert [m.command for m in a.take()] == ["PONG"]
    # an op whose session quits is not completed
    op2 = Op(lambda: 1, lambda r: calls.append("never"), a.session)
    core.submit(op2)
    assert core.ops_to_run() == [op2]
    core.connection_lost(a.session, "Connection closed", a.clock.now)
    op2.result = op2.run()
    core.op_done(op2, a.clock.now)
    assert calls == ["then 42"]


def test_pool_bounds_operations_in_flight(core: ServerCore, connect: Connect) -> None:
    peers = [connect(f"u{i}") for i in range(5)]
    ops = [Op(lambda: None, None, p.session, pool="hash") for p in peers]
    for op in ops:
        core.submit(op)
    first = core.ops_to_run()
    assert first == ops[:2]  # at most two hashes at once
    core.connection_lost(peers[2].session, "gone", peers[2].clock.now)  # its op is dropped
    core.op_done(first[0], peers[0].clock.now)
    assert core.ops_to_run() == [ops[3]]


def test_batched_operation_runs_once_per_turn() -> None:
    seen: list[list[int]] = []
    batcher = Batcher(lambda items: seen.append(list(items)))
    clock = Clock()
    core = new_core(Config(), clock)
    for i in range(3):
        core.add_to_batch(batcher, i)
    ops = core.ops_to_run()
    assert len(ops) == 1
    ops[0].run()
    assert seen == [[0, 1, 2]]


def test_failed_operation_tells_the_session_and_logs(
    core: ServerCore, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    a = connect("alice")

    def boom() -> None:
        raise RuntimeError("disk on fire")

    core.submit(Op(boom, lambda r: None, a.session))
    with caplog.at_level(logging.ERROR, logger="relaychat.core"):
        pump(core)
    assert [m.command for m in a.take()] == [N.ERR_UNKNOWNERROR]
    assert any("failed" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------- clock and timers
def test_idle_clients_cost_nothing_until_a_deadline(clock: Clock) -> None:
    limits = LimitsConfig(flood_rate=0.0, ping_interval=200.0, max_connections_per_ip=0)
    core = new_core(Config(limits=limits), clock)
    peers = [Peer(core, clock) for _ in range(200)]
    for i, p in enumerate(peers):
        p.register(f"u{i}")
    advance(core, clock, 31)  # the registration timeouts come due once, and lapse
    deadline = core.next_deadline()
    assert deadline is not None and deadline >= clock.mono + 150
    pending = len(core.timers)
    for _ in range(100):
        clock.advance(1.0)
        tick(core, clock)
        # not one timer came due or was re-armed: nothing was scanned
        assert len(core.timers) == pending and core.next_deadline() == deadline
    assert not any(p.take() for p in peers)


def test_wall_clock_jumping_back_does_not_freeze_ping_timeouts(clock: Clock) -> None:
    core = new_core(
        Config(limits=LimitsConfig(flood_rate=0.0, ping_interval=30.0, ping_timeout=10.0)), clock
    )
    a = Peer(core, clock)
    a.register("alice")
    clock.wall -= 3600  # NTP steps the wall clock back an hour
    advance(core, clock, 45)
    assert a.closed
    assert "Ping timeout" in a.take()[-1].params[-1]


def test_throttled_client_is_drained_by_a_timer(clock: Clock) -> None:
    core = new_core(Config(limits=LimitsConfig(flood_rate=1.0, flood_burst=2)), clock)
    a = Peer(core, clock)
    a.register("alice")
    advance(core, clock, 5)
    a.take()
    a.send("PING 1\r\nPING 2\r\nPING 3\r\nPING 4")
    assert [m.params[-1] for m in a.take()] == ["1", "2"]
    advance(core, clock, 2.5, step=0.5)
    assert [m.params[-1] for m in a.take()] == ["3", "4"]


# ------------------------------------------------------------- containment
def _boom(core: ServerCore, sess: Any, msg: Any, now: Now) -> None:
    chan = core.find_channel("#c")
    assert chan is not None
    core.registry.join(chan, sess.user)  # half a change ...
    raise RuntimeError("bug")  # ... then a bug


def test_a_handler_that_raises_closes_only_its_session_and_leaves_no_ghost(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    table = dict(COMMANDS)
    table["BOOM"] = CommandSpec(_boom)
    core = ServerCore(Config(limits=LimitsConfig(flood_rate=0.0)), table, clock.now)
    from coreharness import _CLOCKS

    _CLOCKS[id(core)] = clock
    peers = [Peer(core, clock) for _ in range(12)]
    for i, p in enumerate(peers):
        p.register(f"u{i}")
    peers[0].send("JOIN #c")
    with caplog.at_level(logging.ERROR, logger="relaychat.core"):
        for p in peers[1:]:
            p.send("BOOM")
    for p in peers[1:]:
        assert p.closed
        assert "Internal error" in p.take()[-1].params[-1]
    chan = core.find_channel("#c")
    assert chan is not None and list(chan.members) == [peers[0].user]  # no ghosts
    assert not peers[0].closed
    peers[0].send("PING still-here")
    assert peers[0].take()[-1].command == "PONG"
    logged = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(logged) == 5  # rate-limited: a client cannot flood the log


def test_ipv4_mapped_addresses_are_shown_as_ipv4() -> None:
    assert normalize_ip("::ffff:127.0.0.1") == "127.0.0.1"
    assert normalize_ip("::1") == "::1"
    assert normalize_ip("2001:db8::1") == "2001:db8::1"


def test_a_mapped_client_matches_ipv4_masks(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock, ip="::ffff:127.0.0.1")
    p.register("alice")
    assert p.user.host == "127.0.0.1" and p.user.prefix == "alice!~u@127.0.0.1"


def test_per_ip_limit_spares_exempt_addresses(clock: Clock) -> None:
    limits = LimitsConfig(max_connections_per_ip=2, connection_limit_exempt=("10.0.0.0/8",))
    exempt_ip = "10.1.2.3"
    core = new_core(Config(limits=limits), clock)
    limited = [Peer(core, clock, ip="192.0.2.1") for _ in range(3)]
    assert [p.closed for p in limited] == [False, False, True]
    spared = [Peer(core, clock, ip=exempt_ip) for _ in range(5)]
    assert not any(p.closed for p in spared)


def test_shutdown_error_says_its_reason_once(core: ServerCore, connect: Connect) -> None:
    a = connect("alice")
    core.shutdown("Server shutting down", a.clock.now)
    pump(core)
    error = a.take()[-1]
    assert error.command == "ERROR" and error.params == ["Server shutting down"]


def test_sendq_overflow_while_delivering_to_a_channel_drops_only_that_member(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, sendq=8192)
    a, b, c = (Peer(core, clock) for _ in range(3))
    for p, nick in ((a, "alice"), (b, "bob"), (c, "carol")):
        p.register(nick, caps=("message-tags",))
        p.send("JOIN #c")
    for p in (a, b, c):
        p.take()
    for _ in range(18):  # bob reads nothing: his queue fills up to just under SendQ
        a.feed(b"PRIVMSG bob :" + b"x" * 400 + b"\r\n", flush=False)
    assert 7000 < b.session.queued < 8192 and not b.session.closing
    # a cap-filtered channel event walks the member list; bob overflows midway
    a.feed(b"@+draft/x=" + b"y" * 600 + b" TAGMSG #c\r\n", flush=False)
    a.feed(b"PRIVMSG #c :still here\r\n")
    assert not a.closed and not c.closed
    got = [(m.command, m.params[-1]) for m in c.take()]
    assert ("TAGMSG", "#c") in got and ("PRIVMSG", "still here") in got, got
    assert ("QUIT", "Max SendQ exceeded") in got
    assert b.closed and b.take()[-1].params[-1].endswith("(Max SendQ exceeded)")
    chan = core.find_channel("#c")
    assert chan is not None and b.user not in chan.members


def test_a_timer_that_raises_closes_its_session_and_timers_go_on(
    make_core: Callable[..., ServerCore], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    core = make_core(flood_rate=0.0, ping_interval=5.0)
    a, b = Peer(core, clock), Peer(core, clock)
    a.register("alice")
    b.register("bob")

    def boom() -> None:
        raise RuntimeError("bug in a timer")

    core.call_at(clock.mono + 1, a.session, boom)
    with caplog.at_level(logging.ERROR, logger="relaychat.core"):
        advance(core, clock, 2)
    assert a.closed and "Internal error" in a.take()[-1].params[-1]
    advance(core, clock, 5)
    assert [m.command for m in b.take()] == ["PING"]  # bob's timers still run


def test_list_masks_with_spaces_or_leading_colons_are_refused(
    core: ServerCore, connect: Connect
) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    a.take()
    a.send("MODE #c +b :foo bar")
    a.send("MODE #c +b ::x!*@*")
    a.send("MODE #c +b a,b")
    chan = core.find_channel("#c")
    assert chan is not None and chan.lists["b"] == []
    assert not [m for m in a.take() if m.command == "MODE"]


def test_user_realname_is_bounded_like_setname(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, realnamelen=20)
    p = Peer(core, clock)
    p.send("NICK long")
    p.send("USER u 0 * :" + "é" * 40)
    assert any(m.command == "001" for m in p.take())
    assert p.user.realname == "é" * 10  # 20 bytes, cut between characters
