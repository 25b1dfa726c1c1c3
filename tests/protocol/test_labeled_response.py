"""labeled-response and batch (ircv3 extensions/labeled-response.md, batch.md):
every labeled command is answered by exactly one labeled logical message."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from coreharness import Clock, Peer
from relaychat.config import Config, OperConfig
from relaychat.passwords import hash_password
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message
from relaychat.protocol.output import _in_batch, _one_batch

Connect = Callable[..., Peer]
LABELS = ("batch", "labeled-response")


def labeled(msgs: list[Message], label: str) -> list[Message]:
    return [m for m in msgs if m.tags.get("label") == label]


def test_a_single_reply_carries_the_label(connect: Connect) -> None:
    a = connect("alice", caps=LABELS)
    a.send("@label=x1 PRIVMSG nobody :hi")
    (m,) = a.take()
    assert (m.command, m.tags["label"], m.params[1]) == ("401", "x1", "nobody")


def test_no_reply_is_an_ack(core: ServerCore, connect: Connect) -> None:
    a = connect("alice", caps=LABELS)
    connect("bob")
    a.send("@label=p PONG :x")
    a.send("@label=m PRIVMSG bob :hi")  # no echo-message: nothing comes back
    msgs = a.take()
    assert [(m.command, m.tags["label"], m.source) for m in msgs] == [
        ("ACK", "p", core.server_name),
        ("ACK", "m", core.server_name),
    ]
    assert msgs[0].params == []


def test_several_replies_come_in_one_labeled_response_batch(connect: Connect) -> None:
    a = connect("alice", caps=LABELS)
    connect("bob")
    a.send("@label=w WHOIS bob")
    msgs = a.take()
    start, *body, end = msgs
    assert start.command == "BATCH" and start.tags == {"label": "w"}
    ref = start.params[0][1:]
    assert start.params == ["+" + ref, "labeled-response"]
    assert end.command == "BATCH" and end.params == ["-" + ref] and end.tags == {}
    assert [m.tags for m in body] == [{"batch": ref}] * len(body)
    assert body[0].command == "311" and body[-1].command == "318"


def test_join_is_answered_as_one_batch_including_the_join_itself(connect: Connect) -> None:
    a = connect("alice", caps=(*LABELS, "message-tags"))
    a.send("@label=j JOIN #c")
    msgs = a.take()
    assert msgs[0].command == "BATCH" and msgs[0].tags == {"label": "j"}
    ref = msgs[0].params[0][1:]
    join = msgs[1]
    assert join.command == "JOIN" and join.tags["batch"] == ref and join.tags["msgid"]
    assert "label" not in join.tags
    assert [m.command for m in msgs[2:-1]] == ["353", "366"]


def test_echo_message_is_the_labeled_reply_and_others_get_no_label(connect: Connect) -> None:
    a = connect("alice", caps=(*LABELS, "echo-message", "message-tags"))
    b = connect("bob", caps=(*LABELS, "message-tags"))
    a.send("JOIN #c")
    b.send("JOIN #c")
    a.take()
    b.take()
    a.send("@label=e1;+draft/reply=abc PRIVMSG #c :hello")
    (echo,) = a.take()
    (got,) = b.take()
    assert echo.tags["label"] == "e1" and echo.params == ["#c", "hello"]
    assert "label" not in got.tags and got.tags["msgid"] == echo.tags["msgid"]
    assert got.tags["+draft/reply"] == "abc"


def test_echo_in_a_busy_turn_is_still_labeled(
    core: ServerCore, clock: Clock, connect: Connect
) -> None:
    """The echo of a message sent after others in the same turn (when the sender
    already holds a slice of the channel's batch) is still its labeled reply."""
    a = connect("alice", caps=(*LABELS, "echo-message"))
    b = connect("bob")
    a.send("JOIN #c")
    b.send("JOIN #c")
    a.take()
    b.feed(b"PRIVMSG #c :one\r\n", flush=False)
    a.feed(b"@label=z PRIVMSG #c :two\r\n")
    msgs = a.take()
    assert [(m.params[1], m.tags.get("label")) for m in msgs] == [("one", None), ("two", "z")]


def test_message_to_oneself_is_delivered_unlabeled(connect: Connect) -> None:
    """The delivery never carries the label; with echo-message the echo does."""
    a = connect("alice", caps=(*LABELS, "echo-message"))
    a.send("@label=s1 PRIVMSG alice :me")
    msgs = a.take()
    assert [(m.command, m.tags.get("label")) for m in msgs] == [
        ("PRIVMSG", None),
        ("PRIVMSG", "s1"),
    ]
    b = connect("bob", caps=LABELS)
    b.send("@label=s2 PRIVMSG bob :me")
    assert [(m.command, m.tags.get("label")) for m in b.take()] == [
        ("PRIVMSG", None),
        ("ACK", "s2"),
    ]


def test_labels_need_the_capability_and_batch(connect: Connect) -> None:
    plain = connect("alice", caps=("message-tags",))
    plain.send("@label=a PRIVMSG nobody :x")
    assert [m.tags for m in plain.take()] == [{}]
    plain.send("@label=a PONG x")
    assert plain.take() == []
    no_batch = connect("bob", caps=("labeled-response",))
    no_batch.send("@label=b PRIVMSG nobody :x")
    assert [m.tags for m in no_batch.take()] == [{}]


def test_an_over_long_or_empty_label_is_ignored(connect: Connect) -> None:
    a = connect("alice", caps=LABELS)
    a.send("@label=" + "x" * 65 + " PRIVMSG nobody :x")
    assert [m.tags for m in a.take()] == [{}]
    a.send("@label= PRIVMSG nobody :x")
    assert [m.tags for m in a.take()] == [{}]
    a.send("@label=" + "y" * 64 + " PRIVMSG nobody :x")
    assert [m.tags for m in a.take()] == [{"label": "y" * 64}]


def test_a_label_with_special_characters_round_trips(connect: Connect) -> None:
    a = connect("alice", caps=LABELS)
    a.send(r"@label=a\:b\sc\\d PRIVMSG nobody :x")
    (m,) = a.take()
    assert m.tags["label"] == "a;b c\\d"


def test_errors_from_the_command_table_are_labeled(connect: Connect) -> None:
    a = connect("alice", caps=LABELS)
    a.send("@label=u FOOBAR")
    a.send("@label=n KICK")
    a.send("@label=o DIE")
    got = [(m.command, m.tags["label"]) for m in a.take()]
    assert got == [("421", "u"), ("461", "n"), ("481", "o")]


def test_labels_work_before_registration(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("CAP LS 302")
    p.send("@label=r1 CAP REQ :batch labeled-response")
    p.take()
    p.send("@label=r2 NICK alice")
    assert [(m.command, m.tags.get("label")) for m in p.take()] == [("ACK", "r2")]
    p.send("@label=r3 USER u 0 * :A")  # registration waits for CAP END
    assert [(m.command, m.tags.get("label")) for m in p.take()] == [("ACK", "r3")]
    p.send("@label=r4 CAP END")
    msgs = p.take()
    assert msgs[0].command == "BATCH" and msgs[0].tags == {"label": "r4"}
    assert msgs[1].command == "001" and msgs[-1].command == "BATCH"


def test_an_ordered_operation_keeps_its_label(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    """OPER's password check runs off the core's thread; its reply still
    carries the command's label, and commands after it wait their turn."""
    cfg = Config(opers={"op": OperConfig(password=hash_password("sekrit"), host="*")})
    core = make_core(cfg, flood_rate=0.0)
    a = Peer(core, clock)
    a.register("alice", caps=LABELS)
    a.send("@label=o1 OPER op sekrit")
    msgs = a.take()
    assert msgs[0].command == "BATCH" and msgs[0].tags == {"label": "o1"}
    assert [m.command for m in msgs[1:-1]] == ["381", "MODE"]
    a.send("@label=o2 OPER op wrong")
    a.send("@label=o3 PRIVMSG nobody :x")
    assert [(m.command, m.tags.get("label")) for m in a.take()] == [("464", "o2"), ("401", "o3")]


def test_quit_is_answered_with_its_labeled_error(connect: Connect) -> None:
    a = connect("alice", caps=LABELS)
    a.send("@label=q QUIT :bye")
    msgs = a.take()
    assert [(m.command, m.tags.get("label")) for m in msgs] == [("ERROR", "q")]


def test_nested_batches_get_the_outer_tag_on_their_start_and_end() -> None:
    lines = [
        b":s 001 a :hi",
        b":s BATCH +in x",
        b"@batch=in :s 002 a :inner",
        b":s BATCH -in",
        b":s 003 a :after",
    ]
    assert _in_batch(lines, b"batch=out") == [
        b"@batch=out :s 001 a :hi",
        b"@batch=out :s BATCH +in x",
        b"@batch=in :s 002 a :inner",
        b"@batch=out :s BATCH -in",
        b"@batch=out :s 003 a :after",
    ]
    assert _one_batch(lines[1:4]) and not _one_batch(lines) and not _one_batch(lines[:1])


def test_a_reply_that_is_one_batch_gets_the_label_on_its_start(
    core: ServerCore, connect: Connect
) -> None:
    a = connect("alice", caps=LABELS)
    out = core.output
    out.begin_response(a.session)
    out.label = "L"
    out.send_batch(a.session, "example.com/x", ["p"], [b":s 001 alice :one\r\n"])
    out.end_response()
    from coreharness import pump

    pump(core)
    start, body, end = a.take()
    assert start.tags == {"label": "L"} and start.params[1:] == ["example.com/x", "p"]
    assert body.tags == {"batch": start.params[0][1:]} and end.tags == {}


# ------------------------------------------------------------ randomised
COMMANDS = [
    "PING :t",
    "PONG :t",
    "PRIVMSG #r :hi",
    "PRIVMSG bob :hi",
    "PRIVMSG alice :me",
    "PRIVMSG nobody :x",
    "NOTICE bob :n",
    "TAGMSG #r",
    "@+typing=active TAGMSG bob",
    "JOIN #r",
    "JOIN #s",
    "PART #s",
    "NAMES #r",
    "TOPIC #r :t",
    "TOPIC #r",
    "MODE #r",
    "MODE #r +b",
    "MODE alice",
    "WHO #r",
    "WHOIS bob",
    "WHOWAS nobody",
    "LIST",
    "AWAY :gone",
    "AWAY",
    "ISON bob nobody",
    "USERHOST bob",
    "LUSERS",
    "MOTD",
    "VERSION",
    "TIME",
    "NICK alice",
    "KICK #r nobody",
    "INVITE bob #r",
    "SETNAME :New Name",
    "FOOBAR",
    "KICK",
    "CAP LIST",
]


def test_every_labeled_command_is_answered_exactly_once(connect: Connect) -> None:
    for seed in range(12):
        rng = random.Random(seed)
        caps = [*LABELS, "message-tags", "echo-message", "server-time", "setname"]
        caps = [c for c in caps if c in LABELS or rng.random() < 0.6]
        a = connect("alice", caps=tuple(caps))
        b = connect("bob")
        b.send("JOIN #r")
        sent: list[str] = []
        for i in range(60):
            cmd = rng.choice(COMMANDS)
            label = f"s{seed}n{i}"
            sent.append(label)
            if cmd.startswith("@"):
                tags, rest = cmd.split(" ", 1)
                a.send(f"{tags};label={label} {rest}")
            else:
                a.send(f"@label={label} {cmd}")
        msgs = a.take()
        seen = [m.tags["label"] for m in msgs if "label" in m.tags]
        assert seen == sent, seed  # each once, in order
        _check_batches(msgs)
        a.send("QUIT")
        b.send("QUIT")


def _check_batches(msgs: list[Message]) -> None:
    """Every batch opened is closed, every line inside names an open batch,
    labeled batches are labeled-response batches."""
    open_refs: list[str] = []
    for m in msgs:
        ref = m.tags.get("batch")
        if ref is not None:
            assert ref in open_refs, m
        if m.command == "BATCH":
            sign, name = m.params[0][0], m.params[0][1:]
            if sign == "+":
                assert name not in open_refs
                open_refs.append(name)
            else:
                assert name == open_refs[-1], m
                open_refs.pop()
    assert open_refs == []


def test_an_operation_that_fails_still_answers_its_label(
    make_core: Callable[..., ServerCore], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaychat.protocol.handlers import oper

    def broken(password: str, stored: str) -> bool:
        raise OSError("worker broke")

    monkeypatch.setattr(oper, "verify_password", broken)
    cfg = Config(opers={"op": OperConfig(password=hash_password("sekrit"), host="*")})
    core = make_core(cfg, flood_rate=0.0)
    a = Peer(core, clock)
    a.register("alice", caps=LABELS)
    a.send("@label=f1 OPER op sekrit")
    a.send("@label=f2 PING :x")
    got = [(m.command, m.tags.get("label")) for m in a.take()]
    assert got == [("400", "f1"), ("PONG", "f2")]
    assert a.session.held_response is None
