"""IRCv3 metadata over real sockets, for both engines: the round trip, before-connect,
the JOIN batch, and a hostile client (every key at its largest, every subscription,
invalid keys and targets, SYNC and SET floods) while a bystander still gets PONG
promptly."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ircutil import RawClient, make_config
from relaychat.config import Config, MetadataConfig
from relaychat.protocol.message import Message

pytestmark = pytest.mark.usefixtures("no_server_errors")

Connect = Callable[..., RawClient]
CAP = "draft/metadata-2"
META = ("batch", CAP)


@pytest.fixture
def meta_server(engine: str, run_config: Callable[[Config], Any]) -> Callable[..., Any]:
    """``meta_server(limits={...}, **metadata_settings)`` -> a running server for the
    test's engine (flood control off unless ``limits`` sets it)."""

    def start(limits: dict[str, Any] | None = None, **settings: Any) -> Any:
        cfg = make_config(engine, **(limits or {}))
        meta = dataclasses.replace(MetadataConfig(), **settings)
        return run_config(dataclasses.replace(cfg, metadata=meta))

    return start


def batch_of(msgs: list[Message], kind: str) -> tuple[list[str], list[Message]]:
    """The one batch of type ``kind`` in ``msgs``: its parameters and its lines."""
    starts = [m for m in msgs if m.command == "BATCH" and m.params[1:2] == [kind]]
    assert len(starts) == 1, [str(m) for m in msgs]
    ref = starts[0].params[0][1:]
    assert any(m.command == "BATCH" and m.params == ["-" + ref] for m in msgs)
    return starts[0].params[2:], [m for m in msgs if m.tags.get("batch") == ref]


def codes(msgs: list[Message]) -> list[str]:
    return [m.params[1] for m in msgs if m.command == "FAIL"]


def test_set_notify_get_over_sockets(meta_server: Callable[..., Any], connect: Connect) -> None:
    server = meta_server()
    alice = connect(server, "alice", caps=META)
    bob = connect(server, "bob", caps=META)
    carol = connect(server, "carol", caps=META)
    for c in (alice, bob, carol):
        c.join("#c")
    bob.send("METADATA * SUB status")
    bob.expect("770")

    alice.send("METADATA * SET status :out for lunch")
    assert alice.expect("761").params == ["alice", "alice", "status", "*", "out for lunch"]
    note = bob.expect("METADATA")
    assert note.params == ["alice", "status", "*", "out for lunch"]
    assert "METADATA" not in [m.command for m in carol.sync()]  # not subscribed
    assert "METADATA" not in [m.command for m in alice.sync()]  # her own change

    carol.send("METADATA alice GET status nothere")
    params, inner = batch_of(carol.sync(), "metadata")
    assert params == ["alice"]
    assert [(m.command, m.params[1:]) for m in inner] == [
        ("761", ["alice", "status", "*", "out for lunch"]),
        ("766", ["alice", "nothere", "key not set"]),
    ]


def test_before_connect_and_the_welcome_burst_over_sockets(
    meta_server: Callable[..., Any], connect: Connect
) -> None:
    server = meta_server()
    c = connect(server)
    c.send("CAP LS 302")
    ls = c.expect("CAP")
    assert f"{CAP}=before-connect,max-subs=50,max-keys=20,max-value-bytes=300" in ls.params[-1]
    c.send(f"CAP REQ :batch {CAP}")
    c.expect("CAP")
    c.send("METADATA * SET display-name :Ada L.")
    assert c.expect("761").params == ["*", "*", "display-name", "*", "Ada L."]
    c.send("NICK ada")
    c.send("USER ada 0 * :Ada")
    c.send("CAP END")
    burst = c.take_until("376")
    params, inner = batch_of(burst, "metadata")
    assert params == ["ada"]
    assert [m.params for m in inner] == [["ada", "display-name", "*", "Ada L."]]
    assert server.core.find_user("ada").metadata == {"display-name": "Ada L."}


def test_join_sends_a_metadata_batch_to_a_subscriber(
    meta_server: Callable[..., Any], connect: Connect
) -> None:
    server = meta_server()
    op = connect(server, "op", caps=META)
    op.join("#c")
    op.send("METADATA #c SET url :https://example.org/c")
    op.send("METADATA * SET avatar :https://example.org/op.png")
    op.sync()
    joiner = connect(server, "joiner", caps=META)
    joiner.send("METADATA * SUB url avatar")
    joiner.expect("770")
    joiner.send("JOIN #c")
    got = joiner.take_until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    params, inner = batch_of(got, "metadata")
    assert params == ["#c"]
    assert sorted(m.params for m in inner) == [
        ["#c", "url", "*", "https://example.org/c"],
        ["op", "avatar", "*", "https://example.org/op.png"],
    ]


def test_a_hostile_metadata_client_gets_bounded_answers_while_a_bystander_gets_pong(
    meta_server: Callable[..., Any], connect: Connect
) -> None:
    server = meta_server(change_burst=40, change_rate=1.0, sync_burst=200, sync_rate=50.0)
    meta = server.core.config.metadata
    watcher = connect(server, keep_raw=True)
    watcher.register("watcher", caps=META)
    attacker = connect(server, "attacker", caps=META)
    members = [connect(server, f"member{i}", caps=META) for i in range(5)]
    for c in (watcher, attacker, *members):
        c.join("#c")
    keys = [f"k{i:02d}" + "x" * 61 for i in range(meta.max_keys)]  # 64-byte keys
    watcher.send("METADATA * SUB " + " ".join(keys[:6]))
    watcher.send("METADATA * SUB " + " ".join(keys[6:12]))
    watcher.send("METADATA * SUB " + " ".join(keys[12:]))
    watcher.sync()
    for m in members:
        m.send("METADATA * SET avatar :https://example.org/a.png")
        m.sync()

    big = "v" * meta.max_value_bytes
    setup: list[str] = ["METADATA * SUB avatar"]  # what the members set: SYNC has work
    # every subscription there is, and then some
    setup += [f"METADATA * SUB {' '.join(f's{j}-{i}' for j in range(8))}" for i in range(10)]
    # every key at the largest value that fits, then more keys than allowed
    setup += [f"METADATA * SET {k} :{big}" for k in keys]
    setup += [f"METADATA * SET extra{i} :{big}" for i in range(10)]
    flood: list[str] = []
    # changes past the change budget
    flood += [f"METADATA * SET {keys[0]} :{i}" for i in range(40)]
    # invalid keys, values, targets and subcommands
    flood += ["METADATA * SET BAD :v", "METADATA * SET a:b :v", "METADATA * SET " + "k" * 300]
    flood += ["METADATA nobody GET k", "METADATA #nowhere LIST", "METADATA member0 SET k :v"]
    flood += ["METADATA #c SET k :not an op", "METADATA * EXPLODE", "METADATA * SUB $bad"]
    # the same key asked many times, and syncs past the sync budget
    flood += [f"METADATA attacker GET {' '.join([keys[0][:20]] * 20)}"] * 50
    flood += ["METADATA #c SYNC"] * 100
    rounds = 30
    replies: list[Message] = []
    finished = threading.Event()

    def attack() -> None:
        for i, lines in enumerate([setup] + [flood] * rounds):
            attacker.send(
                "".join(line + "\r\n" for line in lines).encode() + f"PING :r{i}\r\n".encode()
            )
            replies.extend(
                attacker.take_until(
                    lambda m, i=i: m.command == "PONG" and m.params[-1] == f"r{i}", 60
                )
            )
        finished.set()

    pinger = connect(server, "pinger")
    thread = threading.Thread(target=attack, name="test-attacker")
    began = time.monotonic()
    thread.start()
    rtts: list[float] = []
    try:
        while thread.is_alive():
            start = time.monotonic()
            pinger.send("PING :rtt")
            pinger.expect(lambda m: m.command == "PONG" and m.params[-1] == "rtt", timeout=5)
            rtts.append(time.monotonic() - start)
            thread.join(0.02)
    finally:
        thread.join(60)
    assert finished.is_set(), "the attacker's commands were never all answered"
    assert len(rtts) >= 3 and max(rtts) < 1.0, rtts
    assert not attacker.closed
    elapsed = time.monotonic() - began
    seen = set(codes(replies))
    assert {
        "TOO_MANY_SUBS",
        "LIMIT_REACHED",
        "RATE_LIMITED",
        "KEY_INVALID",
        "INVALID_TARGET",
        "KEY_NO_PERMISSION",
        "SUBCOMMAND_INVALID",
    } <= seen, seen
    assert "774" in [m.command for m in replies]  # the SYNC flood was told to wait
    user = server.core.find_user("attacker")
    assert user is not None and len(user.metadata) == meta.max_keys
    assert len(user.sessions[0].metadata.subs) == meta.max_subs
    # each GET answered its one key once
    gets = [m for m in replies if m.command == "BATCH" and m.params[1:] == ["metadata", "attacker"]]
    assert len(gets) == 50 * rounds
    assert len([m for m in replies if m.command == "766"]) == 50 * rounds
    # the watcher was told of each change, no more (the budget bounds the fan-out)
    notes = [m for m in watcher.sync() if m.command == "METADATA"]
    assert meta.max_keys <= len(notes) <= meta.change_burst + elapsed * meta.change_rate + 1
    # and the SYNCs past the budget were told to wait
    synced = [m for m in replies if m.command == "BATCH" and m.params[1:] == ["metadata", "#c"]]
    lines_synced = 5 * (len(synced) - 1)  # the SUB of avatar sent one batch of 5 lines too
    assert lines_synced <= meta.sync_burst + elapsed * meta.sync_rate + 5
    assert watcher.raw is not None
    for line in bytes(watcher.raw).split(b"\r\n"):
        body = line.split(b" ", 1)[1] if line.startswith(b"@") else line
        assert len(body) <= 510, line
    # the channel still works for everybody
    members[0].send("PRIVMSG #c :still here")
    assert watcher.expect("PRIVMSG").params == ["#c", "still here"]


def test_metadata_of_a_client_that_quits_is_gone(
    meta_server: Callable[..., Any], connect: Connect
) -> None:
    server = meta_server()
    first = connect(server, "ada", caps=META)
    first.send("METADATA * SET k :v")
    first.expect("761")
    first.send("QUIT :bye")
    first.wait_closed()
    again = connect(server, "ada", caps=META)
    again.send("METADATA * LIST")
    assert batch_of(again.sync(), "metadata") == (["ada"], [])
