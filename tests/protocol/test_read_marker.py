"""MARKREAD (draft/read-marker) against the core, on an in-memory SQLite store:
get and set, only forward, the account's other sessions, the marker on JOIN
(before 366) and on attach, users not logged in, errors and hostile input."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

from coreharness import Clock, Peer, new_core, one, only, pump
from relaychat.config import Config, HistoryConfig, LimitsConfig
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message
from relaychat.protocol.readmarkers import MAX_MARKERS
from relaychat.store.sqlite import SQLiteStore

PW = "read-marker-pw-1"
CAP = "draft/read-marker"
T1 = "timestamp=2023-01-01T00:00:00.000Z"
T2 = "timestamp=2023-06-01T12:30:00.250Z"


def ts(wall: float) -> str:
    dt = datetime.fromtimestamp(wall, UTC)
    return "timestamp=" + dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def cfg(**history: object) -> Config:
    return Config(
        limits=LimitsConfig(flood_rate=0.0),
        history=HistoryConfig(**history),  # type: ignore[arg-type]
    )


def make_account(core: ServerCore, clock: Clock, name: str) -> None:
    p = Peer(core, clock)
    p.register(name + "_r")
    p.send(f"REGISTER {name} * :{PW}")
    assert one(p.take(), "REGISTER").params[0] == "SUCCESS"
    p.send("QUIT")


def login(core: ServerCore, clock: Clock, account: str, nick: str, caps: str = CAP) -> Peer:
    """A connection logged in to ``account`` with SASL PLAIN during registration."""
    p = Peer(core, clock)
    p.send("CAP LS 302")
    p.send("CAP REQ :" + " ".join(["sasl", *caps.split()]))
    p.send(f"NICK {nick}")
    p.send(f"USER {nick} 0 * :Real {nick}")
    p.send("AUTHENTICATE PLAIN")
    p.send("AUTHENTICATE " + base64.b64encode(f"\0{account}\0{PW}".encode()).decode())
    p.send("CAP END")
    assert "001" in [m.command for m in p.take()]
    return p


def markread(peer: Peer, line: str) -> list[Message]:
    peer.send(line)
    return peer.take()


def marker(msgs: list[Message]) -> list[str]:
    """The parameters of the one MARKREAD among ``msgs``."""
    m = one(msgs, "MARKREAD")
    assert m.source is not None and "!" not in m.source  # from the server
    return m.params


def fail_code(msgs: list[Message]) -> str:
    f = one(msgs, "FAIL")
    assert f.params[0] == "MARKREAD"
    return f.params[1]


def test_the_capability_is_offered_only_with_history(clock: Clock) -> None:
    assert CAP in new_core(cfg(), clock).caps_offered
    assert CAP not in new_core(cfg(enabled=False), clock).caps_offered


def test_get_is_star_then_set_answers_the_stored_time_and_get_returns_it(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice")
    assert marker(markread(a, "MARKREAD #c")) == ["#c", "*"]
    assert marker(markread(a, f"MARKREAD #c {T1}")) == ["#c", T1]
    assert marker(markread(a, "MARKREAD #C")) == ["#C", T1]  # folded: the same target
    assert marker(markread(a, f"MARKREAD bob {T2}")) == ["bob", T2]
    assert marker(markread(a, "MARKREAD BOB")) == ["BOB", T2]
    assert marker(markread(a, "MARKREAD #c")) == ["#c", T1]  # targets apart


def test_a_marker_only_moves_forward(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice")
    markread(a, f"MARKREAD #c {T2}")
    assert marker(markread(a, f"MARKREAD #c {T1}")) == ["#c", T2]  # older: the stored one
    assert marker(markread(a, f"MARKREAD #c {T2}")) == ["#c", T2]  # equal: the same


def test_a_time_in_the_future_is_clamped_to_now(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice")
    assert marker(markread(a, "MARKREAD #c timestamp=2999-01-01T00:00:00.000Z")) == [
        "#c",
        ts(clock.wall),
    ]


def test_other_sessions_of_the_account_with_the_cap_get_a_change_and_only_a_change(
    clock: Clock,
) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    s1 = login(core, clock, "alice", "alice")
    s2 = login(core, clock, "alice", "alice")
    s3 = login(core, clock, "alice", "alice", caps="")
    other = Peer(core, clock)
    other.register("carol", caps=(CAP,))
    assert s1.session.user is s2.session.user is s3.session.user
    assert marker(markread(s1, f"MARKREAD #c {T2}")) == ["#c", T2]
    assert marker(s2.take()) == ["#c", T2]
    assert s3.take() == [] and other.take() == []  # no cap; another user
    markread(s1, f"MARKREAD #c {T1}")  # did not move: nobody else hears of it
    assert s2.take() == []
    assert marker(markread(s2, "MARKREAD #c")) == ["#c", T2]
    assert marker(markread(other, "MARKREAD #c")) == ["#c", "*"]  # never leaked


def test_join_sends_the_channels_marker_before_end_of_names(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice")
    a.send("JOIN #fresh")
    got = a.take()
    cmds = [m.command for m in got]
    assert cmds.index("JOIN") < cmds.index("MARKREAD") < cmds.index("366")
    assert marker(got) == ["#fresh", "*"]
    markread(a, f"MARKREAD #c {T1}")
    a.send("JOIN #c")
    got = a.take()
    assert marker(got) == ["#c", T1]
    cmds = [m.command for m in got]
    assert cmds.index("MARKREAD") < cmds.index("366")
    plain = login(core, clock, "alice", "alice", caps="")  # the cap not asked
    plain.send("JOIN #d")
    assert only(plain.take(), "MARKREAD") == []


def test_join_with_no_implicit_names_still_gets_the_marker(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice", caps=f"{CAP} no-implicit-names")
    a.send("JOIN #c")
    got = a.take()
    assert [m.command for m in got] == ["JOIN", "MARKREAD"]


def test_a_session_attaching_gets_the_markers_with_the_join_replay(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    s1 = login(core, clock, "alice", "alice")
    s1.send("JOIN #c")
    markread(s1, f"MARKREAD #c {T1}")
    p = Peer(core, clock)
    for line in ("CAP LS 302", f"CAP REQ :sasl {CAP}", "NICK x", "USER x 0 * :x"):
        p.send(line)
    p.send("AUTHENTICATE PLAIN")
    p.send("AUTHENTICATE " + base64.b64encode(f"\0alice\0{PW}".encode()).decode())
    p.send("CAP END")
    got = p.take()
    cmds = [m.command for m in got]
    assert cmds.index("JOIN") < cmds.index("MARKREAD") < cmds.index("366")
    assert marker(got) == ["#c", T1]


def test_markers_are_kept_across_a_restart_and_loaded_at_login(
    clock: Clock, tmp_path: Path
) -> None:
    store = SQLiteStore(str(tmp_path / "rm.db"), commit_ms=0.0)
    try:
        core = new_core(cfg(), clock, store=store)
        make_account(core, clock, "alice")
        a = login(core, clock, "alice", "alice")
        markread(a, f"MARKREAD #c {T2}")
        core.shutdown("restart", clock.now)
        pump(core)
        core2 = new_core(cfg(), clock, store=store)
        b = login(core2, clock, "alice", "alice")
        b.send("JOIN #c")
        assert marker(b.take()) == ["#c", T2]
        # NickServ IDENTIFY after registration loads them too, before the next command
        c = Peer(core2, clock)
        c.register("other", caps=(CAP,))
        c.send(f"PRIVMSG NickServ :IDENTIFY alice {PW}")
        c.send("JOIN #c")
        assert marker(c.take()) == ["#c", T2]
    finally:
        store.close()


def test_users_not_logged_in_keep_markers_in_memory_for_themselves(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    a = Peer(core, clock)
    a.register("anon", caps=(CAP,))
    b = Peer(core, clock)
    b.register("other", caps=(CAP,))
    assert marker(markread(a, f"MARKREAD #c {T2}")) == ["#c", T2]
    assert marker(markread(a, f"MARKREAD #c {T1}")) == ["#c", T2]
    a.send("JOIN #c")
    assert marker(a.take()) == ["#c", T2]
    b.send("JOIN #c")
    assert marker(b.take()) == ["#c", "*"]
    assert marker(markread(b, "MARKREAD #c")) == ["#c", "*"]
    assert core.ops_to_run() == []  # no store involved


def test_markers_in_memory_are_bounded(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    a = Peer(core, clock)
    a.register("anon")
    base = 1_600_000_000
    for i in range(MAX_MARKERS + 50):
        a.send(f"MARKREAD #c{i} {ts(base + i)}")
    a.take()
    markers = a.session.user.read_markers
    assert markers is not None and len(markers) == MAX_MARKERS
    assert "#c0" not in markers and f"#c{MAX_MARKERS + 49}" in markers  # the oldest went


def test_errors_and_hostile_input_are_the_specs_fail_codes(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice")
    cases = {
        "MARKREAD": "NEED_MORE_PARAMS",
        "MARKREAD :": "NEED_MORE_PARAMS",
        "MARKREAD #c *": "INVALID_PARAMS",
        "MARKREAD #c timestamp=yesterday": "INVALID_PARAMS",
        "MARKREAD #c timestamp=2023-01-01T00:00:00": "INVALID_PARAMS",  # no Z
        "MARKREAD #c msgid=abc": "INVALID_PARAMS",
        "MARKREAD #c 2023-01-01T00:00:00.000Z": "INVALID_PARAMS",
        "MARKREAD #c timestamp=1969-12-31T23:59:59.000Z": "INVALID_PARAMS",
        f"MARKREAD #c timestamp={'9' * 400}": "INVALID_PARAMS",
        f"MARKREAD #{'x' * 400} {T1}": "INVALID_PARAMS",
        f"MARKREAD {'n' * 400}": "INVALID_PARAMS",
        "MARKREAD bad!nick": "INVALID_PARAMS",
        "MARKREAD #a,#b": "INVALID_PARAMS",
        "MARKREAD :has space": "INVALID_PARAMS",
        "MARKREAD \x01\x02": "INVALID_PARAMS",
    }
    for line, code in cases.items():
        got = markread(a, line)
        assert fail_code(got) == code, (line, got)
        assert only(got, "MARKREAD") == []
    assert marker(markread(a, "MARKREAD #c")) == ["#c", "*"]  # nothing changed


def test_a_failing_store_is_internal_error(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice")
    assert core.store is not None
    core.store.close()
    f = one(markread(a, f"MARKREAD #c {T1}"), "FAIL")
    assert f.params[:3] == ["MARKREAD", "INTERNAL_ERROR", "#c"]
    f = one(markread(a, "MARKREAD #c"), "FAIL")
    assert f.params[:3] == ["MARKREAD", "INTERNAL_ERROR", "#c"]


def test_without_history_markread_is_refused(clock: Clock) -> None:
    core = new_core(cfg(enabled=False), clock)
    a = Peer(core, clock)
    a.register("anon")
    assert fail_code(markread(a, f"MARKREAD #c {T1}")) == "INTERNAL_ERROR"
    a.send("JOIN #c")
    assert only(a.take(), "MARKREAD") == []


def test_dropping_the_account_drops_its_markers(clock: Clock) -> None:
    core = new_core(cfg(), clock)
    make_account(core, clock, "alice")
    a = login(core, clock, "alice", "alice")
    markread(a, f"MARKREAD #c {T1}")
    a.send(f"PRIVMSG NickServ :DROP {PW}")
    a.take()
    assert a.session.user.account is None and a.session.user.read_markers is None
    make_account(core, clock, "alice")  # a new owner of the name inherits nothing
    b = login(core, clock, "alice", "alice2")
    assert marker(markread(b, "MARKREAD #c")) == ["#c", "*"]
