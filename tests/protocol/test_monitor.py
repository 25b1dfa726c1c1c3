"""MONITOR (IRCv3 monitor) on the core: + - C L S, the limit, the numerics,
notifications, and the reverse index kept in step."""

from __future__ import annotations

from collections.abc import Callable

from coreharness import Clock, Peer, pump
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message

Connect = Callable[..., Peer]
MASK = "~u@127.0.0.1"  # what the harness's users look like after the nick


def replies(msgs: list[Message]) -> list[tuple[str, list[str]]]:
    """(numeric, params after the addressee) of each message."""
    return [(m.command, m.params[1:]) for m in msgs]


def targets(msgs: list[Message], numeric: str) -> list[str]:
    """Every target listed by ``numeric`` lines, in order."""
    return [t for m in msgs if m.command == numeric for t in m.params[-1].split(",")]


# ---------------------------------------------------------------- ISUPPORT
def test_isupport_advertises_the_limit(make_core: Callable[..., ServerCore], clock: Clock) -> None:
    for limit in (100, 7):
        core = make_core(flood_rate=0.0, monitor_limit=limit)
        p = Peer(core, clock)
        p.send("NICK alice")
        p.send("USER u 0 * :Real")
        tokens = [t for m in p.take() if m.command == N.RPL_ISUPPORT for t in m.params[1:-1]]
        assert f"MONITOR={limit}" in tokens


# ----------------------------------------------------------------------- +
def test_add_reports_online_with_mask_and_offline_as_sent(connect: Connect) -> None:
    connect("bob")
    a = connect("alice")
    a.send("MONITOR + BOB,Carol")
    assert replies(a.take()) == [
        (N.RPL_MONONLINE, [f"bob!{MASK}"]),
        (N.RPL_MONOFFLINE, ["Carol"]),
    ]


def test_notification_line_format(connect: Connect) -> None:
    a = connect("alice")
    a.send("MONITOR + bob")
    a.take()
    a.raw.clear()
    connect("bob")
    assert a.raw == [f":irc.relaychat.local 730 alice :bob!{MASK}\r\n".encode()]


def test_add_skips_duplicates_within_and_across_commands(connect: Connect) -> None:
    a = connect("alice")
    a.send("MONITOR + bob,BOB,bob,Bob")
    assert replies(a.take()) == [(N.RPL_MONOFFLINE, ["bob"])]
    a.send("MONITOR + BOB")  # already listed: not added again, nothing said
    assert a.take() == []
    a.send("MONITOR L")
    assert replies(a.take()) == [
        (N.RPL_MONLIST, ["bob"]),
        (N.RPL_ENDOFMONLIST, ["End of MONITOR list"]),
    ]


def test_add_skips_invalid_nicks(connect: Connect, core: ServerCore) -> None:
    a = connect("alice")
    long = "n" * (core.limits.nicklen + 1)
    a.send(f"MONITOR + :1digit,#chan,,with space,{long},a!b,ok,-dash,x@y,*")
    assert replies(a.take()) == [(N.RPL_MONOFFLINE, ["ok"])]
    assert dict(core.monitor.listed(a.session)) == {"ok": "ok"}


def test_only_invalid_or_empty_targets_add_nothing_and_say_nothing(
    connect: Connect, core: ServerCore
) -> None:
    a = connect("alice")
    a.send("MONITOR + ,,,")
    a.send("MONITOR + 123")
    assert a.take() == []
    assert not core.monitor.watching and not core.monitor.watchers


def test_targets_are_case_mapped_with_the_servers_casemapping(connect: Connect) -> None:
    a = connect("alice")
    a.send("MONITOR + Bob[m]")  # rfc1459: [ ] fold to { }
    a.take()
    connect("bob{M}")
    assert replies(a.take()) == [(N.RPL_MONONLINE, [f"bob{{M}}!{MASK}"])]
    a.send("MONITOR + BOB{m}")  # the same target, folded
    assert a.take() == []


def test_missing_targets_is_461(connect: Connect) -> None:
    a = connect("alice")
    for line in ("MONITOR", "MONITOR +", "MONITOR -", "MONITOR + :"):
        a.send(line)
        assert replies(a.take()) == [
            (N.ERR_NEEDMOREPARAMS, ["MONITOR", "Not enough parameters"])
        ], line


def test_unknown_subcommand_is_400(connect: Connect) -> None:
    a = connect("alice")
    a.send("MONITOR X bob")
    a.send("MONITOR :")
    a.send("MONITOR +-")
    assert replies(a.take()) == [
        (N.ERR_UNKNOWNERROR, ["MONITOR", "X", "Unknown MONITOR subcommand"]),
        (N.ERR_UNKNOWNERROR, ["MONITOR", "*", "Unknown MONITOR subcommand"]),
        (N.ERR_UNKNOWNERROR, ["MONITOR", "+-", "Unknown MONITOR subcommand"]),
    ]


def test_monitor_before_registration_is_451(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("MONITOR + bob")
    assert [m.command for m in p.take()] == [N.ERR_NOTREGISTERED]
    assert not core.monitor.watching


def test_subcommand_letters_are_case_insensitive(connect: Connect) -> None:
    a = connect("alice")
    a.send("MONITOR + bob")
    a.send("MONITOR l")
    a.send("MONITOR s")
    a.send("MONITOR c")
    a.send("MONITOR L")
    assert [m.command for m in a.take()] == [
        N.RPL_MONOFFLINE,
        N.RPL_MONLIST,
        N.RPL_ENDOFMONLIST,
        N.RPL_MONOFFLINE,
        N.RPL_ENDOFMONLIST,
    ]


# ------------------------------------------------------------------- limit
def test_over_the_limit_is_734_with_the_targets_not_added(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, monitor_limit=3)
    a = Peer(core, clock)
    a.register("alice")
    a.send("MONITOR + a,b,c,1bad,d,e")
    assert replies(a.take()) == [
        (N.RPL_MONOFFLINE, ["a,b,c"]),
        (N.ERR_MONLISTFULL, ["3", "d,e", "Monitor list is full."]),
    ]
    a.send("MONITOR + A")  # already there: takes no room, no error
    assert a.take() == []
    a.send("MONITOR + x")
    assert replies(a.take()) == [(N.ERR_MONLISTFULL, ["3", "x", "Monitor list is full."])]
    a.send("MONITOR - b")
    a.send("MONITOR + x,y")
    assert replies(a.take()) == [
        (N.RPL_MONOFFLINE, ["x"]),
        (N.ERR_MONLISTFULL, ["3", "y", "Monitor list is full."]),
    ]
    a.send("MONITOR L")
    assert targets(a.take(), N.RPL_MONLIST) == ["a", "c", "x"]


def test_734_names_the_rest_as_sent_cut_to_fit_in_one_line(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, monitor_limit=1, nicklen=30)
    a = Peer(core, clock)
    a.register("alice")
    a.send("MONITOR + first")
    a.take()
    rest = [f"N{i:02d}" + "x" * 27 for i in range(16)]  # 16 x 30 bytes: a 491-byte command
    a.raw.clear()
    a.send("MONITOR + " + ",".join(rest))
    (full,) = a.take()
    assert full.command == N.ERR_MONLISTFULL and full.params[1] == "1"
    shown = full.params[2].split(",")
    assert shown == rest[: len(shown)] and len(shown) < len(rest)  # as sent, cut
    assert len(a.raw[0]) <= 512 < len(a.raw[0]) + len(",") + 30  # the next would not fit


def test_734_leaves_out_what_could_not_be_a_parameter(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, monitor_limit=1)
    a = Peer(core, clock)
    a.register("alice")
    a.send("MONITOR + :first,n1,,has space,1bad,n2")
    assert replies(a.take()) == [
        (N.RPL_MONOFFLINE, ["first"]),
        (N.ERR_MONLISTFULL, ["1", "n1,1bad,n2", "Monitor list is full."]),
    ]


# -------------------------------------------------------------- - C L S
def test_remove_and_clear_say_nothing_and_update_both_indexes(
    connect: Connect, core: ServerCore
) -> None:
    a = connect("alice")
    a.send("MONITOR + bob,carol,dave")
    a.take()
    a.send("MONITOR - BOB,nobody,,1bad")
    assert a.take() == []
    assert set(core.monitor.listed(a.session)) == {"carol", "dave"}
    assert set(core.monitor.watchers) == {"carol", "dave"}
    a.send("MONITOR C")
    assert a.take() == []
    assert not core.monitor.watching and not core.monitor.watchers
    a.send("MONITOR L")
    assert replies(a.take()) == [(N.RPL_ENDOFMONLIST, ["End of MONITOR list"])]


def test_list_and_status_batch_targets_into_lines_of_at_most_512_bytes(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, monitor_limit=400, nicklen=30)
    a = Peer(core, clock)
    a.register("alice")
    names = [f"user{i:03d}" + "x" * 22 for i in range(300)]
    online = [Peer(core, clock) for _ in range(20)]
    for i, p in enumerate(online):
        p.register(names[i])
    for i in range(0, 300, 15):
        a.send("MONITOR + " + ",".join(names[i : i + 15]))
    a.take()
    a.raw.clear()
    a.send("MONITOR L")
    msgs = a.take()
    assert targets(msgs, N.RPL_MONLIST) == names
    lines = b"".join(a.raw).split(b"\r\n")
    assert all(len(line) + 2 <= 512 for line in lines)
    assert len(msgs) == 20 + 1  # packed: 15 targets of 30 bytes to a line, then 733
    a.raw.clear()
    a.send("MONITOR S")
    msgs = a.take()
    assert targets(msgs, N.RPL_MONONLINE) == [f"{n}!{MASK}" for n in names[:20]]
    assert targets(msgs, N.RPL_MONOFFLINE) == names[20:]
    assert all(len(line) + 2 <= 512 for line in b"".join(a.raw).split(b"\r\n"))


def test_status_of_an_empty_list_says_nothing(connect: Connect) -> None:
    a = connect("alice")
    a.send("MONITOR S")
    assert a.take() == []


def test_list_shows_targets_as_the_client_gave_them(connect: Connect) -> None:
    connect("bob")
    a = connect("alice")
    a.send("MONITOR + BoB,Zed")
    a.send("MONITOR L")
    msgs = a.take()
    assert targets(msgs, N.RPL_MONLIST) == ["BoB", "Zed"]
    a.send("MONITOR S")
    assert replies(a.take()) == [
        (N.RPL_MONONLINE, [f"bob!{MASK}"]),
        (N.RPL_MONOFFLINE, ["Zed"]),
    ]


# ----------------------------------------------------------- notifications
def test_registration_quit_and_disconnect_notify_watchers(
    connect: Connect, core: ServerCore, clock: Clock
) -> None:
    a = connect("alice")
    c = connect("carol")
    a.send("MONITOR + bob")
    c.send("MONITOR + bob")
    a.take(), c.take()
    b = connect("bob")
    assert replies(a.take()) == [(N.RPL_MONONLINE, [f"bob!{MASK}"])]
    assert replies(c.take()) == [(N.RPL_MONONLINE, [f"bob!{MASK}"])]
    b.send("QUIT :bye")
    assert replies(a.take()) == [(N.RPL_MONOFFLINE, ["bob"])]
    assert replies(c.take()) == [(N.RPL_MONOFFLINE, ["bob"])]
    b2 = connect("Bob")
    assert replies(a.take()) == [(N.RPL_MONONLINE, [f"Bob!{MASK}"])]
    core.connection_lost(b2.session, "Connection reset by peer", clock.now)
    pump(core)
    assert replies(a.take()) == [(N.RPL_MONOFFLINE, ["Bob"])]


def test_unregistered_connection_that_leaves_notifies_nobody(
    connect: Connect, core: ServerCore, clock: Clock
) -> None:
    a = connect("alice")
    a.send("MONITOR + bob")
    a.take()
    p = Peer(core, clock)
    p.send("NICK bob")  # never registers: never online
    p.send("QUIT")
    assert a.take() == []


def test_nick_change_notifies_old_offline_then_new_online(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    a.send("MONITOR + bob,robert")
    a.take()
    b.send("NICK Robert")
    assert replies(a.take()) == [
        (N.RPL_MONOFFLINE, ["bob"]),
        (N.RPL_MONONLINE, [f"Robert!{MASK}"]),
    ]
    b.send("NICK ROBERT")  # the same nick, folded: still online, nothing to say
    assert a.take() == []


def test_watcher_of_only_one_side_of_a_nick_change_hears_only_that(connect: Connect) -> None:
    a = connect("alice")
    c = connect("carol")
    b = connect("bob")
    a.send("MONITOR + bob")
    c.send("MONITOR + robert")
    a.take(), c.take()
    b.send("NICK robert")
    assert replies(a.take()) == [(N.RPL_MONOFFLINE, ["bob"])]
    assert replies(c.take()) == [(N.RPL_MONONLINE, [f"robert!{MASK}"])]


def test_kill_notifies_watchers(make_core: Callable[..., ServerCore], clock: Clock) -> None:
    core = make_core(flood_rate=0.0)
    a, op, b = Peer(core, clock), Peer(core, clock), Peer(core, clock)
    a.register("alice")
    op.register("op")
    b.register("bob")
    core.registry.set_user_modes(op.user, "o")
    op.user.oper_name = "admin"
    a.send("MONITOR + bob")
    a.take()
    op.send("KILL bob :spam")
    assert replies(a.take()) == [(N.RPL_MONOFFLINE, ["bob"])]


def test_users_who_are_not_watching_hear_nothing(connect: Connect) -> None:
    a = connect("alice")
    a.send("MONITOR + carol")
    a.take()
    b = connect("bob")
    b.send("NICK robert")
    b.send("QUIT")
    assert a.take() == []


# ------------------------------------------------------- the reverse index
def test_watcher_disconnect_cleans_the_index(
    connect: Connect, core: ServerCore, clock: Clock
) -> None:
    a = connect("alice")
    c = connect("carol")
    a.send("MONITOR + bob,dave")
    c.send("MONITOR + bob")
    assert set(core.monitor.watchers) == {"bob", "dave"}
    a.send("QUIT")
    assert core.monitor.watchers == {"bob": {c.session}}
    assert a.session not in core.monitor.watching
    core.connection_lost(c.session, "gone", clock.now)
    assert not core.monitor.watchers and not core.monitor.watching
    b = connect("bob")  # nobody left to tell
    b.send("QUIT")


def test_watcher_dropped_for_sendq_is_cleaned_too(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, sendq=8192)
    a = Peer(core, clock)
    a.register("alice")
    a.send("MONITOR + bob")
    core.note_backlog(a.session, 9000, clock.now)  # the transport holds too much
    core.settle()
    assert a.session.closing == "Max SendQ exceeded"
    assert not core.monitor.watchers and not core.monitor.watching


def test_a_notification_costs_work_for_the_watchers_only(
    connect: Connect, core: ServerCore, clock: Clock
) -> None:
    """The reverse index: telling the watchers of a nick looks at them, not at
    every session or every list."""
    watchers = [connect(f"w{i}") for i in range(3)]
    others = [connect(f"o{i}") for i in range(20)]
    for w in watchers:
        w.send("MONITOR + bob")
    for i, o in enumerate(others):
        o.send(f"MONITOR + x{i},y{i}")
    for p in [*watchers, *others]:
        p.take()
    looked_at: list[str] = []
    index = core.monitor.watchers

    class Spy(dict[str, set[object]]):
        def get(self, key: str, default: object = None) -> object:
            looked_at.append(key)
            return super().get(key, default)

    core.monitor.watchers = Spy(index)  # type: ignore[assignment]
    connect("bob")
    assert looked_at == ["bob"]
    assert all(replies(w.take())[-1] == (N.RPL_MONONLINE, [f"bob!{MASK}"]) for w in watchers)
    assert all(not [m for m in o.take() if m.command.startswith("73")] for o in others)


def test_help_knows_monitor(connect: Connect) -> None:
    a = connect("alice")
    a.send("HELP MONITOR")
    text = " ".join(m.params[-1] for m in a.take())
    assert "MONITOR <+|-> <nick>{,<nick>}" in text
