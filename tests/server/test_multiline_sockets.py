"""draft/multiline over real sockets, for both engines: a batch end to end (labeled
echo, batch and fallback recipients), and a hostile client that opens batches of
the largest size again and again, leaves them open, interleaves them, while
bystanders keep being served and see only the messages that were whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ircutil import RawClient, wait_for
from relaychat.protocol.message import Message

Connect = Callable[..., RawClient]
ML = ("batch", "draft/multiline")
CONCAT = "draft/multiline-concat"
MAX_LINES = 20
MAX_BYTES = 1024


def batch_lines(ref: str, target: str, lines: list[tuple[str, bool]]) -> bytes:
    out = [f"BATCH +{ref} draft/multiline {target}"]
    for text, concat in lines:
        tags = f"@batch={ref};{CONCAT}" if concat else f"@batch={ref}"
        out.append(f"{tags} PRIVMSG {target} :{text}")
    out.append(f"BATCH -{ref}")
    return ("\r\n".join(out) + "\r\n").encode()


def combined(lines: list[tuple[str, bool]]) -> str:
    return "".join(("" if i == 0 or c else "\n") + t for i, (t, c) in enumerate(lines))


def from_nick(msg: Message, nick: str) -> bool:
    return msg.source is not None and msg.source.startswith(nick + "!")


def collect_batches(msgs: list[Message], nick: str) -> tuple[list[str], list[Message]]:
    """The texts of the multiline batches from ``nick`` in ``msgs``, and every
    other PRIVMSG or BATCH line from it (which there should be none of)."""
    texts: list[str] = []
    stray: list[Message] = []
    open_ref: str | None = None
    parts: list[str] = []
    for m in msgs:
        if m.command == "BATCH" and m.params[0].startswith("+") and from_nick(m, nick):
            assert open_ref is None, m
            open_ref, parts = m.params[0][1:], []
        elif m.command == "BATCH" and open_ref is not None and m.params == ["-" + open_ref]:
            texts.append("".join(parts))
            open_ref = None
        elif m.command == "PRIVMSG" and from_nick(m, nick):
            if open_ref is not None and m.tags.get("batch") == open_ref:
                sep = "" if not parts or CONCAT in m.tags else "\n"
                parts.append(sep + m.params[1])
            else:
                stray.append(m)
    assert open_ref is None
    return texts, stray


# ------------------------------------------------------------------ end to end
def test_a_batch_end_to_end(start_server: Callable[..., Any], connect: Connect) -> None:
    server = start_server()
    alice = connect(server, "alice", (*ML, "echo-message", "labeled-response", "message-tags"))
    bob = connect(server, "bob", (*ML, "message-tags"))
    carol = connect(server, "carol")
    for c in (alice, bob, carol):
        c.join("#c")
    alice.sync()
    lines = [("hello", False), ("", False), ("how is ", False), ("everyone?", True)]
    alice.send(b"@label=e2e " + batch_lines("x1", "#c", lines))

    echo = alice.take_until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    assert echo[0].tags["label"] == "e2e" and echo[0].params[1:] == ["draft/multiline", "#c"]
    assert combined([(m.params[1], CONCAT in m.tags) for m in echo[1:-1]]) == combined(lines)
    assert alice.sync() == []

    got = bob.take_until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    got = [m for m in got if m.command in ("BATCH", "PRIVMSG")]
    assert got[0].tags["msgid"] == echo[0].tags["msgid"] and "label" not in got[0].tags
    assert collect_batches(got, "alice") == ([combined(lines)], [])

    fallback = [m.params[1] for m in carol.sync() if m.command == "PRIVMSG"]
    assert fallback == ["hello", "how is ", "everyone?"]


# ---------------------------------------------------------------- a hostile client
def _full_batch(round_: int) -> list[tuple[str, bool]]:
    """MAX_LINES lines, MAX_BYTES bytes of text with the line feeds."""
    text_bytes = MAX_BYTES - (MAX_LINES - 1)
    sizes = [text_bytes // MAX_LINES] * MAX_LINES
    sizes[-1] += text_bytes - sum(sizes)
    lines = [(f"{round_:04d}" + "y" * (n - 4), False) for n in sizes]
    assert len(combined(lines).encode()) == MAX_BYTES
    return lines


def _attack_rounds(rounds: int) -> list[bytes]:
    """Per round: a whole batch of the largest size (relayed), one line too many,
    one byte too many, two batches interleaved, and a batch left open that the
    next round's first BATCH + breaks (none of those relayed)."""
    out = []
    for r in range(rounds):
        good = _full_batch(r)
        too_many = [*good, ("one more", False)]
        too_big = [*good[:-1], (good[-1][0] + "z", False)]
        interleaved = [
            b"BATCH +i1 draft/multiline #c\r\nBATCH +i2 draft/multiline #c\r\n",
            b"@batch=i1 PRIVMSG #c :one\r\n@batch=i2 PRIVMSG #c :two\r\n",
            b"BATCH -i1\r\nBATCH -i2\r\n",
        ]
        left_open = b"BATCH +o draft/multiline #c\r\n" + b"".join(
            f"@batch=o PRIVMSG #c :{t}\r\n".encode() for t, _ in good
        )
        out.append(
            batch_lines(f"g{r}", "#c", good)
            + batch_lines("m", "#c", too_many)
            + batch_lines("b", "#c", too_big)
            + b"".join(interleaved)
            + left_open
        )
    return out


def test_a_hostile_client_gets_nothing_relayed_that_was_not_whole(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    server = start_server(multiline_max_lines=MAX_LINES, multiline_max_bytes=MAX_BYTES)
    hostile = connect(server, "hostile", ML)
    watcher = connect(server, "watcher", ML)  # gets batches
    plain = connect(server, "plain")  # gets the fallback
    bystander = connect(server, "bystander")  # in no channel: only wants its PONGs
    for c in (hostile, watcher, plain):
        c.join("#c")
    watcher.sync()
    plain.sync()
    rounds = 150
    chunks = _attack_rounds(rounds)
    last = _full_batch(rounds - 1)[-1][0]  # the last line of the last whole batch
    failed: list[BaseException] = []

    def attack() -> None:
        try:
            for chunk in chunks:
                hostile.sock.sendall(chunk)
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    def is_last(m: Message) -> bool:
        return m.command == "PRIVMSG" and from_nick(m, "hostile") and m.params[1] == last

    def hostile_quit(m: Message) -> bool:
        return m.command == "QUIT" and from_nick(m, "hostile")

    sending = threading.Thread(target=attack, name="test-hostile")
    sending.start()
    try:
        # the bystander's PINGs are answered while the server works through the
        # attack (until the last whole batch has reached the watcher)
        pongs = 0
        while not any(is_last(m) for m in watcher.lines):
            token = f"p{pongs}"
            sent = time.monotonic()
            bystander.send(f"PING :{token}")
            assert bystander.expect("PONG", timeout=5.0).params[-1] == token
            assert time.monotonic() - sent < 5.0
            pongs += 1
            while watcher.poll() or plain.poll():
                pass  # keep reading, as a client does
    finally:
        sending.join(30)
    assert not failed and not sending.is_alive() and pongs >= 1

    # the last round's batch is open, all of its lines held, when the client goes
    w_msgs = watcher.take_until(is_last)
    w_msgs += watcher.take_until(lambda m: m.command == "BATCH" and m.params[0][0] == "-")
    p_msgs = plain.take_until(is_last, timeout=30.0)
    (sess,) = [s for s in server.core.sessions.values() if s.user.nick == "hostile"]
    wait_for(
        lambda: sess.client_batch is not None and len(sess.client_batch.lines) == MAX_LINES,
        what="the last batch to be held open",
    )
    hostile.close()
    w_msgs += watcher.take_until(hostile_quit, timeout=30.0)
    p_msgs += plain.take_until(hostile_quit, timeout=30.0)
    texts, stray = collect_batches(w_msgs, "hostile")
    assert stray == [] and texts == [combined(_full_batch(r)) for r in range(rounds)]
    fallback = [m.params[1] for m in p_msgs if m.command == "PRIVMSG"]
    assert fallback == [t for r in range(rounds) for t, _ in _full_batch(r)]
    assert not any(m.command == "BATCH" for m in p_msgs)
    assert all(s.client_batch is None for s in server.core.sessions.values())
    assert watcher.sync() == [] and plain.sync() == []


def test_an_open_batch_counts_with_queued_lines_toward_recvq(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    """The lines waiting for flood tokens would fit in recvq by themselves; with
    the text the open batch holds, they do not: Excess Flood, nothing relayed."""
    server = start_server(
        flood_rate=0.1,  # next to no refill while the test runs
        flood_burst=17,
        recvq=2048,
        multiline_max_lines=MAX_LINES,
        multiline_max_bytes=MAX_BYTES,
    )
    hostile = connect(server, "hostile", ML)  # CAP LS, CAP REQ, NICK, USER, CAP END
    watcher = connect(server, "watcher", ML)
    bystander = connect(server, "bystander")
    hostile.join("#c")  # 6 tokens used, 11 left
    watcher.join("#c")
    watcher.sync()
    held = [b"@batch=o PRIVMSG #c :" + b"h" * 100 + b"\r\n"] * 10  # 1,009 bytes held
    queued = [b"@batch=o PRIVMSG #c :" + b"q" * 30 + b"\r\n"] * 10  # 10 * (51 + 64) = 1,150
    assert 10 * (51 + 64) <= server.core.limits.recvq < 10 * (51 + 64) + 1009
    hostile.send(b"BATCH +o draft/multiline #c\r\n" + b"".join(held + queued))
    end = hostile.expect("ERROR", timeout=15.0)
    assert "Excess Flood" in end.params[-1]
    msgs = watcher.take_until(lambda m: m.command == "QUIT" and from_nick(m, "hostile"))
    assert msgs[-1].params == ["Excess Flood"]
    assert [m for m in msgs if from_nick(m, "hostile") and m.command != "QUIT"] == []
    bystander.send("PING :b")
    assert bystander.expect("PONG", timeout=5.0).params[-1] == "b"
    assert watcher.sync() == []


def test_a_batch_unfinished_when_the_client_goes_is_never_relayed(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    server = start_server()
    alice = connect(server, "alice", ML)
    watcher = connect(server, "watcher", ML)
    alice.join("#c")
    watcher.join("#c")
    watcher.sync()
    alice.send(b"BATCH +u draft/multiline #c\r\n@batch=u PRIVMSG #c :never\r\n")
    alice.send("@batch=u PRIVMSG #c :held")
    (sess,) = [s for s in server.core.sessions.values() if s.user.nick == "alice"]
    wait_for(
        lambda: sess.client_batch is not None and len(sess.client_batch.lines) == 2,
        what="the server to hold both lines",
    )
    alice.close()
    msgs = watcher.take_until(lambda m: m.command == "QUIT" and from_nick(m, "alice"))
    assert [m.command for m in msgs if from_nick(m, "alice")] == ["QUIT"]
    assert not any(m.command == "BATCH" for m in msgs)
    assert sess.client_batch is None
