"""CHATHISTORY (draft/chathistory, draft/event-playback) against the core, on an
in-memory SQLite store: every subcommand, its errors, private conversations,
relay only after commit, retention, and a property test against a reference."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.coreharness import Clock, Peer, new_core, pump

from relaychat.config import Config, HistoryConfig, LimitsConfig
from relaychat.protocol import history as history_module
from relaychat.protocol.message import Message

CAPS = ("batch", "server-time", "message-tags", "draft/chathistory")


def ts(wall: float) -> str:
    dt = datetime.fromtimestamp(wall, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def setup(config: Config | None = None, caps: tuple[str, ...] = CAPS) -> tuple:
    clock = Clock()
    core = new_core(config or Config(), clock)
    alice = Peer(core, clock)
    alice.register("alice", caps=caps)
    bob = Peer(core, clock)
    bob.register("bob", caps=caps)
    alice.send("JOIN #c")
    bob.send("JOIN #c")
    alice.take()
    bob.take()
    return clock, core, alice, bob


def history(peer: Peer, line: str) -> tuple[list[Message], list[Message]]:
    """(messages inside the chathistory batch, other replies) of one command."""
    peer.send(line)
    got = peer.take()
    inside = [m for m in got if "batch" in m.tags]
    rest = [m for m in got if "batch" not in m.tags and m.command != "BATCH"]
    return inside, rest


def texts(msgs: list[Message]) -> list[str]:
    return [m.params[-1] for m in msgs if m.command in ("PRIVMSG", "NOTICE")]


def say(clock: Clock, peer: Peer, target: str, n: int, step: float = 0.01) -> list[str]:
    sent = []
    for i in range(n):
        text = f"m{i}"
        peer.send(f"PRIVMSG {target} :{text}")
        clock.advance(step)
        sent.append(text)
    return sent


def test_latest_returns_the_last_messages_in_one_batch_oldest_first() -> None:
    clock, core, alice, bob = setup()
    say(clock, alice, "#c", 5)
    bob.take()
    bob.send("CHATHISTORY LATEST #c * 3")
    got = bob.take()
    assert got[0].command == "BATCH" and got[0].params[1:] == ["chathistory", "#c"]
    ref = got[0].params[0][1:]
    assert got[-1].command == "BATCH" and got[-1].params == ["-" + ref]
    body = got[1:-1]
    assert [m.params for m in body] == [["#c", "m2"], ["#c", "m3"], ["#c", "m4"]]
    assert all(m.tags["batch"] == ref and m.tags["msgid"] and m.tags["time"] for m in body)
    assert body[0].source and body[0].source.startswith("alice!")


def test_history_msgids_and_times_are_those_the_clients_saw() -> None:
    clock, core, alice, bob = setup()
    alice.send("@+draft/react=x PRIVMSG #c :hello")
    live = [m for m in bob.take() if m.command == "PRIVMSG"][0]
    inside, _ = history(bob, "CHATHISTORY LATEST #c * 10")
    assert inside[0].tags["msgid"] == live.tags["msgid"]
    assert inside[0].tags["time"] == live.tags["time"]
    assert inside[0].tags.get("+draft/react") == "x"


def test_before_after_around_between_by_msgid_and_timestamp() -> None:
    clock, core, alice, bob = setup()
    say(clock, alice, "#c", 10, step=1.0)
    inside, _ = history(bob, "CHATHISTORY LATEST #c * 10")
    ids = [m.tags["msgid"] for m in inside]
    times = [m.tags["time"] for m in inside]
    assert texts(history(bob, f"CHATHISTORY BEFORE #c msgid={ids[5]} 3")[0]) == ["m2", "m3", "m4"]
    assert texts(history(bob, f"CHATHISTORY AFTER #c msgid={ids[5]} 3")[0]) == ["m6", "m7", "m8"]
    assert texts(history(bob, f"CHATHISTORY BEFORE #c timestamp={times[5]} 2")[0]) == ["m3", "m4"]
    assert texts(history(bob, f"CHATHISTORY AFTER #c timestamp={times[5]} 2")[0]) == ["m6", "m7"]
    around = texts(history(bob, f"CHATHISTORY AROUND #c msgid={ids[5]} 4")[0])
    assert around == ["m3", "m4", "m5", "m6"]
    between = f"CHATHISTORY BETWEEN #c msgid={ids[2]} msgid={ids[7]} 10"
    assert texts(history(bob, between)[0]) == ["m3", "m4", "m5", "m6"]
    # reversed references: the messages nearest the first one, still oldest first
    back = f"CHATHISTORY BETWEEN #c timestamp={times[7]} timestamp={times[2]} 2"
    assert texts(history(bob, back)[0]) == ["m5", "m6"]
    latest_after = f"CHATHISTORY LATEST #c timestamp={times[7]} 10"
    assert texts(history(bob, latest_after)[0]) == ["m8", "m9"]
    unknown = history(bob, "CHATHISTORY BEFORE #c msgid=nosuchid 10")
    assert unknown[0] == [] and unknown[1] == []  # an empty batch


def test_equal_timestamps_keep_the_order_they_were_relayed_in() -> None:
    clock, core, alice, bob = setup()
    for i in range(20):
        (alice if i % 2 else bob).send(f"PRIVMSG #c :{i}")  # the clock does not move
    inside, _ = history(bob, "CHATHISTORY LATEST #c * 50")
    assert texts(inside) == [str(i) for i in range(20)]
    mid = inside[10].tags["msgid"]
    assert texts(history(bob, f"CHATHISTORY AFTER #c msgid={mid} 3")[0]) == ["11", "12", "13"]


def test_event_playback_only_for_clients_that_ask() -> None:
    clock, core, alice, bob = setup()
    carol = Peer(core, clock)
    carol.register("carol", caps=(*CAPS, "draft/event-playback"))
    carol.send("JOIN #c")
    alice.send("TOPIC #c :new topic")
    alice.send("PRIVMSG #c :hi")
    bob.send("PART #c :bye")
    carol.take()
    inside, _ = history(carol, "CHATHISTORY LATEST #c * 50")
    assert [m.command for m in inside] == ["JOIN", "JOIN", "JOIN", "TOPIC", "PRIVMSG", "PART"]
    inside, _ = history(alice, "CHATHISTORY LATEST #c * 50")
    assert [m.command for m in inside] == ["PRIVMSG"]


def test_quit_and_nick_are_kept_in_each_channel_of_the_user() -> None:
    clock, core, alice, bob = setup(caps=(*CAPS, "draft/event-playback"))
    bob.send("JOIN #d")
    alice.send("JOIN #d")
    bob.send("NICK robert")
    bob.send("QUIT :gone")
    for chan in ("#c", "#d"):
        inside, _ = history(alice, f"CHATHISTORY LATEST {chan} * 50")
        assert [m.command for m in inside][-2:] == ["NICK", "QUIT"]


def test_errors_are_the_specs_fail_codes() -> None:
    clock, core, alice, bob = setup(Config(limits=LimitsConfig(flood_rate=0.0)))
    cases = {
        "CHATHISTORY": "NEED_MORE_PARAMS",
        "CHATHISTORY LATEST #c *": "NEED_MORE_PARAMS",
        "CHATHISTORY FOO #c * 10": "UNKNOWN_COMMAND",
        "CHATHISTORY LATEST #c nonsense 10": "INVALID_PARAMS",
        "CHATHISTORY BEFORE #c * 10": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c * -1": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c * ten": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c * \u00b2": "INVALID_PARAMS",  # isdigit(), but int() refuses it
        "CHATHISTORY LATEST #c * \u0663": "INVALID_PARAMS",  # an Arabic-Indic 3
        "CHATHISTORY TARGETS * * \u00b2": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c timestamp=yesterday 10": "INVALID_PARAMS",
        "CHATHISTORY LATEST #c timestamp=2023-01-01T00:00:00 10": "INVALID_PARAMS",
        f"CHATHISTORY LATEST #c msgid={'x' * 200} 10": "INVALID_PARAMS",
        "CHATHISTORY LATEST #nochan * 10": "INVALID_TARGET",
        "CHATHISTORY LATEST bad!nick * 10": "INVALID_TARGET",
        "CHATHISTORY TARGETS * * 10": "INVALID_PARAMS",
        "CHATHISTORY TARGETS": "NEED_MORE_PARAMS",
    }
    for line, code in cases.items():
        alice.send(line)
        got = alice.take()
        fails = [m for m in got if m.command == "FAIL"]
        assert len(fails) == 1 and fails[0].params[:2] == ["CHATHISTORY", code], (line, got)


def test_a_channel_one_is_not_in_is_refused_as_if_it_did_not_exist() -> None:
    clock, core, alice, bob = setup()
    say(clock, alice, "#c", 3)
    carol = Peer(core, clock)
    carol.register("carol", caps=CAPS)
    carol.send("CHATHISTORY LATEST #c * 10")
    got = carol.take()
    assert [m.params[:3] for m in got] == [["CHATHISTORY", "INVALID_TARGET", "LATEST"]]


def test_limit_is_capped_by_the_server() -> None:
    config = Config(history=HistoryConfig(chathistory_limit=5))
    clock, core, alice, bob = setup(config)
    say(clock, alice, "#c", 12)
    assert len(history(bob, "CHATHISTORY LATEST #c * 1000")[0]) == 5
    assert len(history(bob, "CHATHISTORY LATEST #c * 0")[0]) == 5
    assert any(t == "CHATHISTORY=5" for line in core.isupport for t in line)


def test_private_conversation_is_seen_by_its_two_parties_only() -> None:
    clock, core, alice, bob = setup()
    alice.send("PRIVMSG bob :secret 1")
    bob.send("PRIVMSG alice :secret 2")
    alice.send("PRIVMSG alice :note to self")
    bob.take()
    assert texts(history(bob, "CHATHISTORY LATEST alice * 10")[0]) == ["secret 1", "secret 2"]
    assert texts(history(alice, "CHATHISTORY LATEST bob * 10")[0]) == ["secret 1", "secret 2"]
    assert texts(history(alice, "CHATHISTORY LATEST alice * 10")[0]) == ["note to self"]
    carol = Peer(core, clock)
    carol.register("carol", caps=CAPS)
    assert history(carol, "CHATHISTORY LATEST alice * 10")[0] == []
    assert history(carol, "CHATHISTORY LATEST bob * 10")[0] == []


def test_next_owner_of_a_nick_does_not_read_its_predecessors_messages() -> None:
    clock, core, alice, bob = setup()
    alice.send("PRIVMSG bob :for the first bob")
    bob.send("QUIT")
    clock.advance(1)
    bob2 = Peer(core, clock)
    bob2.register("bob", caps=CAPS)
    assert history(bob2, "CHATHISTORY LATEST alice * 10")[0] == []
    alice.send("PRIVMSG bob :for the second")
    assert texts(history(bob2, "CHATHISTORY LATEST alice * 10")[0]) == ["for the second"]
    # alice was a party to both and sees both
    both = texts(history(alice, "CHATHISTORY LATEST bob * 10")[0])
    assert both == ["for the first bob", "for the second"]


def test_targets_lists_channels_and_conversations_by_latest_message() -> None:
    clock, core, alice, bob = setup()
    start = clock.wall
    alice.send("PRIVMSG #c :in channel")
    clock.advance(1)
    bob.send("PRIVMSG alice :private")
    clock.advance(1)
    alice.take()
    alice.send(f"CHATHISTORY TARGETS timestamp={ts(start - 1)} timestamp={ts(clock.wall)} 10")
    got = alice.take()
    lines = [m.params for m in got if m.command == "CHATHISTORY"]
    assert [p[:2] for p in lines] == [["TARGETS", "#c"], ["TARGETS", "bob"]]
    assert got[0].params[1] == "draft/chathistory-targets"


def test_a_message_is_relayed_only_once_its_row_is_committed() -> None:
    clock, core, alice, bob = setup()
    alice.feed(b"PRIVMSG #c :durable\r\n", flush=False)
    assert core.data_to_send() == []  # held: the commit has not run
    ops = core.ops_to_run()
    assert [op.pool for op in ops] == ["history"]
    # another turn meanwhile: its output waits behind the first
    bob.feed(b"PING :x\r\n", flush=False)
    assert core.data_to_send() == []
    for op in ops:
        op.result = op.run()
        core.op_done(op, clock.now)
    pump(core)
    assert [m.params for m in bob.take() if m.command in ("PRIVMSG", "PONG")] == [
        ["#c", "durable"],
        [core.server_name, "x"],
    ]


def test_store_failure_still_relays_and_logs(caplog: object) -> None:
    clock, core, alice, bob = setup()
    assert core.store is not None
    core.store.close()  # every write now fails
    alice.send("PRIVMSG #c :still delivered")
    assert texts(bob.take()) == ["still delivered"]
    alice.send("CHATHISTORY LATEST #c * 10")
    fails = [m for m in alice.take() if m.command == "FAIL"]
    assert fails and fails[0].params[1] == "MESSAGE_ERROR"


def test_retention_keeps_the_last_max_lines_and_drops_old_rows() -> None:
    config = Config(history=HistoryConfig(max_lines=3, max_age=1.0, prune_interval=60.0))
    clock, core, alice, bob = setup(config)
    say(clock, alice, "#c", 6)
    clock.advance(61)
    core.handle_timers(clock.now)
    pump(core)
    assert texts(history(bob, "CHATHISTORY LATEST #c * 10")[0]) == ["m3", "m4", "m5"]
    for _ in range(25):  # past max_age (a day); alice and bob time out meanwhile
        clock.advance(3600)
        core.handle_timers(clock.now)
        pump(core)
    carol = Peer(core, clock)
    carol.register("carol", caps=CAPS)
    carol.send("JOIN #c")
    carol.send("PRIVMSG #c :fresh")
    clock.advance(61)
    core.handle_timers(clock.now)
    pump(core)
    assert texts(history(carol, "CHATHISTORY LATEST #c * 10")[0]) == ["fresh"]


def test_excluded_channels_and_disabled_history() -> None:
    config = Config(history=HistoryConfig(exclude_channels=("#c*",)))
    clock, core, alice, bob = setup(config)
    alice.send("PRIVMSG #c :not kept")
    assert texts(bob.take()) == ["not kept"]
    assert history(bob, "CHATHISTORY LATEST #c * 10")[0] == []
    off = Config(history=HistoryConfig(enabled=False))
    clock, core, alice, bob = setup(off, caps=("batch",))
    assert "draft/chathistory" not in core.caps_offered
    alice.send("CHATHISTORY LATEST #c * 10")
    assert [m.params[1] for m in alice.take() if m.command == "FAIL"] == ["MESSAGE_ERROR"]


# ------------------------------------------------------------ property test
@dataclasses.dataclass
class Ref:
    text: str
    time: int  # ms
    seq: int


def reference(rows: list[Ref], sub: str, a: tuple[str, int], b: tuple[str, int], n: int):
    """The spec's windows over a plain list (rows in relay order)."""

    def after(r: Ref, bound: tuple[str, int], incl: bool = False) -> bool:
        kind, v = bound
        if kind == "seq":
            return r.seq >= v if incl else r.seq > v
        return r.time >= v if incl else r.time > v

    def before(r: Ref, bound: tuple[str, int]) -> bool:
        kind, v = bound
        return r.seq < v if kind == "seq" else r.time < v

    if sub == "BEFORE":
        return [r for r in rows if before(r, a)][-n:]
    if sub == "AFTER":
        return [r for r in rows if after(r, a)][:n]
    if sub == "AROUND":
        lo = [r for r in rows if before(r, a)][-(n // 2) :] if n // 2 else []
        return lo + [r for r in rows if after(r, a, True)][: n - len(lo)]
    if sub == "LATEST":
        return [r for r in rows if after(r, a)][-n:]
    # BETWEEN: from the first reference towards the second, both exclusive

    def order(bound: tuple[str, int]) -> tuple[int, int]:
        kind, v = bound
        return (rows[v - 1].time, v) if kind == "seq" else (v, 0)

    if order(a) <= order(b):
        return [r for r in rows if after(r, a) and before(r, b)][:n]
    return [r for r in rows if after(r, b) and before(r, a)][-n:]


# a reference: a msgid of the n-th message so far (if there is one) or a time
# (the start plus 2n ms: the messages below are 0 to 21 ms apart)
query = st.tuples(
    st.sampled_from(["BEFORE", "AFTER", "AROUND", "LATEST", "BETWEEN"]),
    st.tuples(st.sampled_from(["msgid", "msgid", "time"]), st.integers(0, 25)),
    st.tuples(st.sampled_from(["msgid", "msgid", "time"]), st.integers(0, 25)),
    st.integers(1, 8),
)
step = st.sampled_from([0, 0, 1, 7])  # a message after this many 3 ms steps


@settings(max_examples=80, deadline=None)
@given(actions=st.lists(st.one_of(step, step, query), min_size=1, max_size=60))
def test_random_interleavings_agree_with_a_reference(actions: list) -> None:
    """Messages (sent after 0, 1 or 7 steps of 3 ms: several often share a
    millisecond) and queries, interleaved at random; each query's answer is
    what the spec's window over a plain list gives."""
    clock, core, alice, bob = setup(Config(limits=LimitsConfig(flood_rate=0.0)))
    rows: list[Ref] = []
    ids: list[str] = []
    base = clock.wall
    for action in actions:
        if isinstance(action, int):
            clock.advance(action / 1000 * 3)
            alice.send(f"PRIVMSG #c :{len(rows)}")
            live = [m for m in bob.take() if m.command == "PRIVMSG"]
            assert len(live) == 1
            ids.append(live[0].tags["msgid"])
            ms = round(clock.wall * 1_000_000) // 1000
            rows.append(Ref(str(len(rows)), ms, len(rows) + 1))
            continue
        sub, (ka, va), (kb, vb), n = action

        def ref_of(kind: str, v: int) -> tuple[str, tuple[str, int]]:
            if kind == "msgid" and v < len(rows):
                return f"msgid={ids[v]}", ("seq", v + 1)
            ms = round(base * 1000) + v * 2
            return f"timestamp={ts(ms / 1000)}", ("time", ms)

        ta, ra = ref_of(ka, va)
        tb, rb = ref_of(kb, vb)
        if sub == "BETWEEN":
            line = f"CHATHISTORY {sub} #c {ta} {tb} {n}"
        else:
            line = f"CHATHISTORY {sub} #c {ta} {n}"
        want = [r.text for r in reference(rows, sub, ra, rb, n)]
        got = texts(history(bob, line)[0])
        assert got == want, (line, ra, rb)
    inside, _ = history(bob, "CHATHISTORY LATEST #c * 100")
    assert texts(inside) == [r.text for r in rows]


def test_autoreplay_on_join_for_clients_without_chathistory() -> None:
    config = Config(history=HistoryConfig(autoreplay_lines=2))
    clock, core, alice, bob = setup(config)
    say(clock, alice, "#c", 4)
    plain = Peer(core, clock)
    plain.register("plain", caps=("server-time",))
    plain.send("JOIN #c")
    got = plain.take()
    assert [m.command for m in got][0] == "JOIN"
    replayed = [m for m in got if m.command == "PRIVMSG"]
    assert texts(replayed) == ["m2", "m3"] and all("time" in m.tags for m in replayed)
    assert got.index(replayed[0]) > [m.command for m in got].index("366")
    modern = Peer(core, clock)
    modern.register("modern", caps=CAPS)
    modern.send("JOIN #c")
    assert not [m for m in modern.take() if m.command == "PRIVMSG"]  # it asks when it wants


def test_write_behind_relays_at_once_and_still_keeps_history() -> None:
    config = Config(history=HistoryConfig(relay_after_commit=False))
    clock, core, alice, bob = setup(config)
    alice.feed(b"PRIVMSG #c :fast\r\n", flush=False)
    out = core.data_to_send()  # not held: the commit runs behind
    assert any(b"fast" in data for _, data, _ in out)
    ops = core.ops_to_run()
    assert [op.pool for op in ops] == ["history"]
    for op in ops:
        op.result = op.run()
        core.op_done(op, clock.now)
    pump(core)
    assert texts(history(bob, "CHATHISTORY LATEST #c * 10")[0]) == ["fast"]


def test_a_flood_faster_than_commits_pauses_input_instead_of_relaying_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history_module, "PAUSE_AT", 2000)
    monkeypatch.setattr(history_module, "RESUME_AT", 500)
    clock, core, alice, bob = setup(Config(limits=LimitsConfig(flood_rate=0.0)))
    ops = []
    for i in range(60):  # turn after turn, no commit finishing meanwhile
        alice.feed(f"PRIVMSG #c :{i}\r\n".encode(), flush=False)
        assert core.data_to_send() == []  # nothing relayed before its commit
        ops += core.ops_to_run()
    assert core.input_paused and alice.session.inq  # the rest waits, queued
    assert len(ops) < 60
    for op in ops:  # the commits finish: input resumes and the queue runs
        op.result = op.run()
        core.op_done(op, clock.now)
    pump(core)
    assert not core.input_paused
    assert texts(bob.take()) == [str(i) for i in range(60)]
    assert texts(history(bob, "CHATHISTORY LATEST #c * 100")[0]) == [str(i) for i in range(60)]


def test_messages_to_services_are_never_kept() -> None:
    """A password sent to NickServ must not land in the history table."""
    clock, core, alice, bob = setup()
    alice.send("PRIVMSG NickServ :REGISTER very-secret-pw")
    alice.send("PRIVMSG NickServ :IDENTIFY alice very-secret-pw")
    alice.send("PRIVMSG bob :a normal one")
    store = core.store
    assert store is not None
    rows = store._read("SELECT line FROM history")  # type: ignore[attr-defined]
    assert rows and not any("very-secret-pw" in line for (line,) in rows)
    assert texts(history(alice, "CHATHISTORY LATEST NickServ * 10")[0]) == []
