"""draft/multiline (ircv3 extensions/multiline.md, client-batch.md, batch.md): a
client sends one message as a batch of lines; recipients with the capability get
it as a batch, the others line by line; every invalid batch is a FAIL and relays
nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coreharness import Clock, Peer, advance, pump
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message
from relaychat.protocol.multiline import (
    MultilineEvent,
    combined_text,
    relay_room,
    split_for_relay,
)
from relaychat.protocol.state import CAP_MULTILINE

Connect = Callable[..., Peer]
ML = ("batch", "draft/multiline")
LABELS = ("batch", "labeled-response")
CONCAT = "draft/multiline-concat"


def send_batch(
    peer: Peer,
    target: str,
    lines: Sequence[str | tuple[str, bool]],
    *,
    ref: str = "b1",
    command: str = "PRIVMSG",
    start_tags: str = "",
    start: bool = True,
    end: bool = True,
) -> None:
    """``BATCH +ref draft/multiline target``, the lines, ``BATCH -ref``, in one read."""
    out = [f"{start_tags + ' ' if start_tags else ''}BATCH +{ref} draft/multiline {target}"]
    if not start:
        out.clear()
    for item in lines:
        text, concat = (item, False) if isinstance(item, str) else item
        tags = f"@batch={ref};{CONCAT}" if concat else f"@batch={ref}"
        out.append(f"{tags} {command} {target} :{text}")
    if end:
        out.append(f"BATCH -{ref}")
    peer.feed(("\r\n".join(out) + "\r\n").encode())


def batches(msgs: list[Message]) -> list[tuple[Message, list[Message], Message]]:
    """Each top-level draft/multiline batch: (start, lines, end)."""
    found = []
    i = 0
    while i < len(msgs):
        m = msgs[i]
        if m.command == "BATCH" and m.params[0][0] == "+" and m.params[1] == "draft/multiline":
            ref = m.params[0][1:]
            j = i + 1
            while not (msgs[j].command == "BATCH" and msgs[j].params == ["-" + ref]):
                j += 1
            found.append((m, msgs[i + 1 : j], msgs[j]))
            i = j
        i += 1
    return found


def received_text(lines: list[Message]) -> str:
    return combined_text([(m.params[1], CONCAT in m.tags) for m in lines])


def fails(msgs: list[Message]) -> list[list[str]]:
    return [m.params for m in msgs if m.command == "FAIL"]


@pytest.fixture
def room(connect: Connect) -> tuple[Peer, Peer, Peer, Peer]:
    """alice sends; bob has multiline, carol has message-tags only, dave nothing:
    all four on #channel."""
    alice = connect("alice", caps=(*ML, "message-tags", "server-time"))
    bob = connect("bob", caps=(*ML, "message-tags", "server-time"))
    carol = connect("carol", caps=("message-tags", "server-time"))
    dave = connect("dave")
    for p in (alice, bob, carol, dave):
        p.send("JOIN #channel")
    for p in (alice, bob, carol, dave):
        p.take()
    return alice, bob, carol, dave


# ------------------------------------------------------------------ the capability
def test_cap_ls_advertises_max_bytes_and_max_lines(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    for limits, value in (
        ({}, "max-bytes=4096,max-lines=100"),
        ({"multiline_max_bytes": 40000, "multiline_max_lines": 10}, "max-bytes=40000,max-lines=10"),
    ):
        core = make_core(recvq=65536, **limits)
        p = Peer(core, clock)
        p.send("CAP LS 302")
        offered = " ".join(m.params[-1] for m in p.take())  # 302: over several lines
        assert f"draft/multiline={value}" in offered.split()
        old = Peer(core, clock)
        old.send("CAP LS")
        (ls,) = old.take()
        assert "draft/multiline" in ls.params[-1].split()  # no values before 302


# ------------------------------------------------------------ the spec's example
SPEC_LINES = ["hello", "", "how is ", ("everyone?", True)]


def test_spec_example_to_a_multiline_recipient(room: tuple[Peer, Peer, Peer, Peer]) -> None:
    alice, bob, _, _ = room
    # the spec's client sends one line with a lower-case command
    alice.feed(
        b"@+draft/reply=m0 BATCH +123 draft/multiline #channel\r\n"
        b"@batch=123 PRIVMSG #channel hello\r\n"
        b"@batch=123 PRIVMSG #channel :\r\n"
        b"@batch=123 privmsg #channel :how is \r\n"
        b"@batch=123;draft/multiline-concat PRIVMSG #channel :everyone?\r\n"
        b"BATCH -123\r\n"
    )
    assert alice.take() == []  # no echo-message: nothing back
    msgs = bob.take()
    ((start, lines, end),) = batches(msgs)
    assert len(msgs) == 6
    ref = start.params[0][1:]
    assert start.source == alice.user.source
    assert start.params == ["+" + ref, "draft/multiline", "#channel"]
    assert start.tags["msgid"] and start.tags["time"] and start.tags["+draft/reply"] == "m0"
    assert [(m.source, m.command, m.params) for m in lines] == [
        (alice.user.source, "PRIVMSG", ["#channel", "hello"]),
        (alice.user.source, "PRIVMSG", ["#channel", ""]),
        (alice.user.source, "PRIVMSG", ["#channel", "how is "]),
        (alice.user.source, "PRIVMSG", ["#channel", "everyone?"]),
    ]
    assert [m.tags for m in lines] == [{"batch": ref}] * 3 + [{"batch": ref, CONCAT: ""}]
    assert end.params == ["-" + ref] and end.tags == {} and end.source == "irc.relaychat.local"
    assert received_text(lines) == "hello\n\nhow is everyone?"


def test_spec_example_fallback_keeps_the_lines_and_drops_blank_ones(
    room: tuple[Peer, Peer, Peer, Peer],
) -> None:
    alice, bob, carol, dave = room
    alice.user.account = "acct"
    alice.user.modes = "B"
    send_batch(alice, "#channel", SPEC_LINES, start_tags="@+draft/reply=m0")
    (start, _, _), *_ = batches(bob.take())
    got = carol.take()
    assert [(m.command, m.params) for m in got] == [
        ("PRIVMSG", ["#channel", "hello"]),
        ("PRIVMSG", ["#channel", "how is "]),
        ("PRIVMSG", ["#channel", "everyone?"]),
    ]
    first, *later = got
    # the first line carries what the batch start carries: msgid, client tags
    assert first.tags["msgid"] == start.tags["msgid"]
    assert first.tags["+draft/reply"] == "m0" and "bot" in first.tags
    for m in later:  # the later ones: no msgid, no client-only tags; time and bot still
        assert "msgid" not in m.tags and "+draft/reply" not in m.tags
        assert m.tags["time"] and "bot" in m.tags
    assert [(m.command, m.params, m.tags) for m in dave.take()] == [
        (m.command, m.params, {}) for m in got
    ]


def test_account_tag_goes_on_the_batch_start_and_every_fallback_line(connect: Connect) -> None:
    alice = connect("alice", caps=ML)
    bob = connect("bob", caps=(*ML, "account-tag"))
    carol = connect("carol", caps=("account-tag",))
    alice.user.account = "acc"
    send_batch(alice, "bob", ["a", "b"])
    send_batch(alice, "carol", ["a", "b"])
    ((start, lines, _),) = batches(bob.take())
    assert start.tags == {"account": "acc"} and all("account" not in m.tags for m in lines)
    assert [m.tags for m in carol.take()] == [{"account": "acc"}] * 2


def test_notice_batches_work_like_privmsg(room: tuple[Peer, Peer, Peer, Peer]) -> None:
    alice, bob, carol, dave = room
    send_batch(alice, "#channel", SPEC_LINES, command="NOTICE")
    ((_, lines, _),) = batches(bob.take())
    assert {m.command for m in lines} == {"NOTICE"}
    assert received_text(lines) == "hello\n\nhow is everyone?"
    assert [m.params[1] for m in dave.take() if m.command == "NOTICE"] == [
        "hello",
        "how is ",
        "everyone?",
    ]


def test_private_message_and_away_reply(connect: Connect) -> None:
    alice = connect("alice", caps=ML)
    bob = connect("bob", caps=ML)
    bob.send("AWAY :out")
    bob.take()
    send_batch(alice, "BOB", ["one", "two"])
    assert [(m.command, m.params[1:]) for m in alice.take()] == [("301", ["bob", "out"])]
    ((start, lines, _),) = batches(bob.take())
    assert start.params[2] == "bob" and [m.params for m in lines] == [
        ["bob", "one"],
        ["bob", "two"],
    ]
    send_batch(alice, "bob", ["n"], command="NOTICE")  # NOTICE: no away reply
    assert alice.take() == []


def test_statusmsg_batch_reaches_operators_only(connect: Connect) -> None:
    op = connect("op", caps=ML)
    member = connect("member", caps=ML)
    plain = connect("plain")
    op.send("JOIN #c")
    member.send("JOIN #c")
    plain.send("JOIN #c")
    op.send("MODE #c +v plain")
    for p in (op, member, plain):
        p.take()
    send_batch(member, "@#c", ["for", "ops"])
    ((start, lines, _),) = batches(op.take())
    assert start.params[2] == "@#c" and [m.params[0] for m in lines] == ["@#c", "@#c"]
    assert plain.take() == []  # voiced, not an operator
    send_batch(member, "+#c", ["voiced"])
    assert [m.params for m in plain.take()] == [["+#c", "voiced"]]


# ----------------------------------------------------------- permission checks
def _nothing_relayed(*peers: Peer) -> None:
    for p in peers:
        assert [m for m in p.take() if m.command in ("PRIVMSG", "NOTICE", "BATCH")] == []


def test_checks_and_numerics_are_those_of_privmsg(connect: Connect) -> None:
    alice = connect("alice", caps=ML)
    bob = connect("bob", caps=ML)
    bob.send("JOIN #c")
    bob.send("JOIN #open")
    bob.send("MODE #open -n")
    bob.take()
    cases = [
        ("#c", "404"),  # +n, not a member
        ("#nowhere", "403"),
        ("nobody", "401"),
        ("@bob", "401"),  # a status prefix on a nick
    ]
    for target, numeric in cases:
        send_batch(alice, target, ["x"])
        assert [m.command for m in alice.take()] == [numeric], target
        send_batch(alice, target, ["x"], command="NOTICE")
        assert alice.take() == [], target  # NOTICE never gets an error
    _nothing_relayed(bob)
    bob.send("MODE #open +b alice!*@*")
    bob.take()
    send_batch(alice, "#open", ["banned"])
    assert [m.command for m in alice.take()] == ["404"]
    alice.send("JOIN #c")
    bob.send("MODE #c +m")
    alice.take()
    bob.take()
    send_batch(alice, "#c", ["moderated"])
    assert [m.command for m in alice.take()] == ["404"]
    _nothing_relayed(bob)
    bob.send("MODE #c +v alice")
    bob.take()
    send_batch(alice, "#c", ["voiced"])
    assert alice.take()[0].command == "MODE"
    assert [m.params[1] for m in bob.take() if m.command == "PRIVMSG"] == ["voiced"]


COMPARED_TARGETS = [
    "#member",
    "@#member",
    "+#member",
    "#closed",  # +n, alice not on it
    "#open",  # -n
    "#moderated",  # +m, alice on it unvoiced
    "#voiced",  # +m, alice voiced
    "#banned",  # alice on it, banned
    "#excepted",  # banned, with an exception
    "#nowhere",
    "bob",
    "@bob",
    "away",
    "nobody",
]


@pytest.mark.parametrize("command", ["PRIVMSG", "NOTICE"])
def test_a_batch_is_checked_exactly_as_privmsg(
    core: ServerCore, clock: Clock, command: str
) -> None:
    """PRIVMSG's target checks are inline on its hot path and resolve_target's
    for a batch: both give the same numerics and reach the same people."""
    alice, bob, away = Peer(core, clock), Peer(core, clock), Peer(core, clock)
    alice.register("alice", caps=ML)
    bob.register("bob", caps=ML)
    away.register("away")
    away.send("AWAY :elsewhere")
    for chan in ("#member", "#closed", "#open", "#moderated", "#voiced", "#banned", "#excepted"):
        bob.send(f"JOIN {chan}")
    for chan in ("#member", "#moderated", "#voiced", "#banned", "#excepted"):
        alice.send(f"JOIN {chan}")
    bob.send("MODE #open -n")
    bob.send("MODE #moderated +m")
    bob.send("MODE #voiced +mv alice")
    bob.send("MODE #banned +b alice!*@*")
    bob.send("MODE #excepted +be alice!*@* alice!*@*")
    for p in (alice, bob, away):
        p.take()
    outcomes = {}
    for target in COMPARED_TARGETS:
        alice.send(f"{command} {target} :x")
        plain = ([m.command for m in alice.take()], bool(bob.take()), bool(away.take()))
        send_batch(alice, target, ["x"], command=command)
        batched = ([m.command for m in alice.take()], bool(bob.take()), bool(away.take()))
        assert batched == plain, target
        outcomes[target] = plain
    errors = command == "PRIVMSG"
    assert outcomes["#closed"] == (["404"] if errors else [], False, False)
    assert outcomes["#excepted"] == outcomes["#voiced"] == outcomes["@#member"] == ([], True, False)
    assert outcomes["away"] == (["301"] if errors else [], False, True)


# ---------------------------------------------------------------------- errors
def test_invalid_target_is_the_spec_example(room: tuple[Peer, Peer, Peer, Peer]) -> None:
    alice, bob, carol, _ = room
    alice.feed(
        b"BATCH +456 draft/multiline #foo\r\n@batch=456 PRIVMSG #bar hello\r\nBATCH -456\r\n"
    )
    (fail,) = alice.take()
    assert fail.source == "irc.relaychat.local"
    assert fail.params == [
        "BATCH",
        "MULTILINE_INVALID_TARGET",
        "#foo",
        "#bar",
        "Invalid multiline target",
    ]
    _nothing_relayed(bob, carol)


def test_target_matches_case_insensitively(room: tuple[Peer, Peer, Peer, Peer]) -> None:
    alice, bob, _, _ = room
    alice.feed(
        b"BATCH +x draft/multiline #Channel\r\n@batch=x PRIVMSG #CHANNEL :hi\r\nBATCH -x\r\n"
    )
    assert alice.take() == []
    ((start, lines, _),) = batches(bob.take())
    assert start.params[2] == "#channel" and lines[0].params == ["#channel", "hi"]


@pytest.mark.parametrize(
    ("lines", "code", "context"),
    [
        (["a"] * 4, "MULTILINE_MAX_LINES", ["3"]),
        (["a" * 10, "b" * 10], "MULTILINE_MAX_BYTES", ["20"]),  # 10 + LF + 10 = 21
        (["a" * 21], "MULTILINE_MAX_BYTES", ["20"]),
    ],
)
def test_limits(
    make_core: Callable[..., ServerCore],
    clock: Clock,
    lines: list[str],
    code: str,
    context: list[str],
) -> None:
    core = make_core(flood_rate=0.0, multiline_max_bytes=20, multiline_max_lines=3)
    alice, bob = Peer(core, clock), Peer(core, clock)
    alice.register("alice", caps=ML)
    bob.register("bob", caps=ML)
    send_batch(alice, "bob", lines)
    assert fails(alice.take()) == [["BATCH", code, *context, alice_text(code)]]
    _nothing_relayed(bob)
    # the limits themselves are allowed: 3 lines, 20 bytes (a concatenated line adds no LF)
    send_batch(alice, "bob", ["a" * 9, ("b" * 9, True), "c"])
    assert alice.take() == []
    ((_, got, _),) = batches(bob.take())
    assert received_text(got) == "a" * 9 + "b" * 9 + "\nc"


def alice_text(code: str) -> str:
    return {
        "MULTILINE_MAX_LINES": "Multiline batch max-lines exceeded",
        "MULTILINE_MAX_BYTES": "Multiline batch max-bytes exceeded",
    }[code]


INVALID = [
    # (what follows "BATCH +b draft/multiline #channel", why, whether it fails at once)
    (["@batch=b PRIVMSG #channel :hello ", f"@batch=b;{CONCAT} PRIVMSG #channel :"], "concat", 1),
    (["@batch=b PRIVMSG #channel :", "@batch=b PRIVMSG #channel :"], "blank", 0),
    (["@batch=b PRIVMSG #channel :starts", "@batch=b NOTICE #channel :ends"], "mixed", 1),
    ([], "empty", 0),
    (["@batch=b PRIVMSG #channel"], "no text", 1),
    (["@batch=b TAGMSG #channel"], "tagmsg", 1),
    (["@batch=b JOIN #other"], "join in the batch", 1),
    (["@batch=b PRIVMSG #channel :x", "@batch=other PRIVMSG #channel :x"], "another batch", 1),
    (["BATCH -other"], "another end", 1),
    (["@batch=b BATCH +c draft/multiline #channel"], "nested", 1),
]


@pytest.mark.parametrize(("body", "why", "at_once"), INVALID, ids=[w for _, w, _ in INVALID])
def test_invalid_batches_fail_and_relay_nothing(
    room: tuple[Peer, Peer, Peer, Peer], core: ServerCore, body: list[str], why: str, at_once: int
) -> None:
    alice, bob, carol, dave = room
    # after a failure, the batch's other lines and its end are dropped silently
    after = ["@batch=b PRIVMSG #channel :after"] if at_once else []
    lines = ["BATCH +b draft/multiline #channel", *body, *after, "BATCH -b", ""]
    alice.feed("\r\n".join(lines).encode())
    got = alice.take()
    assert [m.params[:2] for m in got] == [["BATCH", "MULTILINE_INVALID"]], got
    assert got[0].source == core.server_name
    _nothing_relayed(bob, carol, dave)
    assert alice.session.client_batch is None
    assert "#other" not in alice.user.channels  # a command inside the batch is not run
    send_batch(alice, "#channel", ["fine"])  # and the next batch works
    assert alice.take() == []
    assert len(batches(bob.take())) == 1


def test_spec_example_errors_have_the_spec_descriptions(
    room: tuple[Peer, Peer, Peer, Peer],
) -> None:
    alice, _, _, _ = room
    send_batch(alice, "#channel", ["hello ", ("", True), "there"])
    send_batch(alice, "#channel", ["", ""])
    assert [f[1:] for f in fails(alice.take())] == [
        ["MULTILINE_INVALID", "Invalid multiline batch with concatenated blank line"],
        ["MULTILINE_INVALID", "Invalid multiline batch with blank lines only"],
    ]


def test_lines_of_a_failed_batch_are_dropped_without_more_errors(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, multiline_max_lines=2)
    alice, bob = Peer(core, clock), Peer(core, clock)
    alice.register("alice", caps=ML)
    bob.register("bob", caps=ML)
    send_batch(alice, "bob", ["a"] * 50)
    assert [f[1] for f in fails(alice.take())] == ["MULTILINE_MAX_LINES"]  # once
    _nothing_relayed(bob)
    alice.send("PRIVMSG bob :plain")  # the failed batch is forgotten after its end
    assert [m.params for m in bob.take()] == [["bob", "plain"]]


def test_unknown_references_fail_and_relay_nothing(connect: Connect) -> None:
    alice = connect("alice", caps=(*ML, "message-tags"))
    bob = connect("bob")
    alice.send("@batch=nope PRIVMSG bob :stray")
    alice.send("BATCH -nope")
    alice.send("BATCH x")
    unknown = ["MULTILINE_INVALID", "Unknown batch reference"]
    assert [f[1:] for f in fails(alice.take())] == [
        unknown,
        unknown,
        ["MULTILINE_INVALID", "Expected BATCH +<ref> or -<ref>"],
    ]
    _nothing_relayed(bob)


def test_a_command_outside_the_batch_fails_it_and_then_runs(
    room: tuple[Peer, Peer, Peer, Peer],
) -> None:
    alice, bob, _, _ = room
    send_batch(alice, "#channel", ["part one"], end=False)
    alice.send("PING :t")
    msgs = alice.take()
    assert [m.command for m in msgs] == ["FAIL", "PONG"]
    assert msgs[0].params[:2] == ["BATCH", "MULTILINE_INVALID"]
    alice.send("@batch=b1 PRIVMSG #channel :part two")  # the rest of it: silently dropped
    alice.send("BATCH -b1")
    assert alice.take() == []
    _nothing_relayed(bob)
    send_batch(alice, "#channel", ["x"], end=False)
    alice.send("PRIVMSG #channel :plain")  # an untagged PRIVMSG is not part of it
    assert [m.command for m in alice.take()] == ["FAIL"]
    assert [(m.command, m.params[1]) for m in bob.take()] == [("PRIVMSG", "plain")]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"@batch=b1 PRIVMSG #channel :" + b"x" * 600, "417"),
        (b"@batch=b1 PRIVMSG #channel :\xff", "FAIL"),
        (b"@batch=b1 PRIVMSG #channel :a\x00b", "400"),
    ],
)
def test_an_unreadable_line_fails_the_open_batch(
    room: tuple[Peer, Peer, Peer, Peer], line: bytes, reply: str
) -> None:
    """It may have been a line of the batch: the rest must not go out without it."""
    alice, bob, _, _ = room
    send_batch(alice, "#channel", ["one"], end=False)
    alice.feed(line + b"\r\n@batch=b1 PRIVMSG #channel :two\r\nBATCH -b1\r\n")
    msgs = alice.take()
    assert [m.command for m in msgs] == [reply, "FAIL"]
    assert msgs[-1].params[:2] == ["BATCH", "MULTILINE_INVALID"]
    _nothing_relayed(bob)


def test_a_second_batch_while_one_is_open_replaces_it(room: tuple[Peer, Peer, Peer, Peer]) -> None:
    alice, bob, _, _ = room
    send_batch(alice, "#channel", ["dropped"], ref="one", end=False)
    send_batch(alice, "#channel", ["kept"], ref="two")
    assert [f[1] for f in fails(alice.take())] == ["MULTILINE_INVALID"]
    ((_, lines, _),) = batches(bob.take())
    assert [m.params[1] for m in lines] == ["kept"]


@pytest.mark.parametrize(
    ("caps", "start"),
    [
        ((), "BATCH +b draft/multiline bob"),
        (("batch",), "BATCH +b draft/multiline bob"),
        (("draft/multiline",), "BATCH +b draft/multiline bob"),
        (ML, "BATCH +b example.com/other bob"),
        (ML, "BATCH +b draft/multiline"),
        (ML, "BATCH +b draft/multiline bob,carol"),
        (ML, "BATCH +b_d draft/multiline bob"),
        (ML, "BATCH + draft/multiline bob"),
    ],
)
def test_batches_that_cannot_open_fail_and_their_lines_are_not_relayed(
    connect: Connect, caps: tuple[str, ...], start: str
) -> None:
    alice = connect("alice", caps=caps)
    bob = connect("bob")
    connect("carol")
    alice.send(start)
    alice.send("@batch=b PRIVMSG bob :one")
    alice.send("BATCH -b")
    got = fails(alice.take())
    assert got and all(f[:2] == ["BATCH", "MULTILINE_INVALID"] for f in got)
    _nothing_relayed(bob)


def test_an_unfinished_batch_is_dropped_when_the_client_goes(
    room: tuple[Peer, Peer, Peer, Peer], core: ServerCore, clock: Clock
) -> None:
    alice, bob, carol, _ = room
    send_batch(alice, "#channel", ["never", "sent"], end=False)
    core.connection_lost(alice.session, "Connection reset", clock.now)
    pump(core)
    assert [m.command for m in bob.take()] == ["QUIT"]
    carol.take()
    send_batch(carol, "#channel", ["x"], end=False)
    carol.send("QUIT :bye")  # QUIT in a batch: the batch fails, the QUIT runs
    assert [m.command for m in carol.take()] == ["FAIL", "ERROR"]
    assert [m.command for m in bob.take()] == ["QUIT"]


# ----------------------------------------------------- echo and labeled-response
def test_echo_comes_as_the_same_batch(connect: Connect) -> None:
    alice = connect("alice", caps=(*ML, "echo-message", "message-tags"))
    bob = connect("bob", caps=(*ML, "message-tags"))
    send_batch(alice, "bob", ["a", ("b", True)])
    (echo,) = batches(alice.take())
    (got,) = batches(bob.take())
    assert echo[0].tags["msgid"] == got[0].tags["msgid"]
    assert received_text(echo[1]) == received_text(got[1]) == "ab"


def test_to_oneself_the_delivery_and_the_echo_are_two_batches(connect: Connect) -> None:
    alice = connect("alice", caps=(*ML, *LABELS, "echo-message", "message-tags"))
    send_batch(alice, "alice", ["me", "myself"], start_tags="@label=S")
    msgs = alice.take()
    (delivery, echo) = batches(msgs)
    assert len(msgs) == 8
    assert "label" not in delivery[0].tags and echo[0].tags["label"] == "S"
    assert delivery[0].tags["msgid"] == echo[0].tags["msgid"]
    assert delivery[0].params[0] != echo[0].params[0]  # two references
    assert received_text(delivery[1]) == received_text(echo[1]) == "me\nmyself"
    bob = connect("bob", caps=ML)  # without echo-message: the delivery only
    send_batch(bob, "bob", ["x"])
    assert len(batches(bob.take())) == 1


def test_labeled_echo_carries_the_label_on_its_batch_start(connect: Connect) -> None:
    alice = connect("alice", caps=(*ML, *LABELS, "echo-message"))
    connect("bob", caps=ML)
    alice.send("@label=L1 BATCH +b draft/multiline bob")
    assert alice.take() == []  # no ACK for the start: the batch is answered at its end
    alice.send("@batch=b;label=ignored PRIVMSG bob :one")
    alice.send("@batch=b PRIVMSG bob :two")
    assert alice.take() == []
    alice.send("BATCH -b")
    msgs = alice.take()
    ((start, lines, _),) = batches(msgs)
    assert len(msgs) == 4 and start.tags == {"label": "L1"}
    assert [m.params[1] for m in lines] == ["one", "two"]
    assert all("label" not in m.tags for m in msgs[1:])


def test_labeled_batch_without_echo_is_acked_and_errors_carry_the_label(
    connect: Connect,
) -> None:
    alice = connect("alice", caps=(*ML, *LABELS))
    bob = connect("bob", caps=ML)
    send_batch(alice, "bob", ["x"], start_tags="@label=L2")
    assert [(m.command, m.tags) for m in alice.take()] == [("ACK", {"label": "L2"})]
    send_batch(alice, "nobody", ["x"], start_tags="@label=L3")
    assert [(m.command, m.tags) for m in alice.take()] == [("401", {"label": "L3"})]
    send_batch(alice, "bob", ["x", "y"], start_tags="@label=L4", command="TAGMSG")
    assert [(m.command, m.params[1], m.tags) for m in alice.take()] == [
        ("FAIL", "MULTILINE_INVALID", {"label": "L4"})
    ]
    alice.send("@batch=zz;label=L5 PRIVMSG bob :stray")  # a stray line is labeled as itself
    assert [(m.command, m.tags) for m in alice.take()] == [("FAIL", {"label": "L5"})]
    # a label on BATCH - answers when BATCH + had none
    alice.send("BATCH +e draft/multiline bob")
    alice.send("@batch=e PRIVMSG bob :x")
    alice.send("@label=L6 BATCH -e")
    assert [(m.command, m.tags) for m in alice.take()] == [("ACK", {"label": "L6"})]
    assert len(batches(bob.take())) == 2


def test_labeled_failure_then_the_command_that_broke_it_with_its_own_label(
    connect: Connect,
) -> None:
    alice = connect("alice", caps=(*ML, *LABELS))
    alice.send("@label=B BATCH +b draft/multiline bob")
    alice.send("@label=P PING :t")
    assert [(m.command, m.tags) for m in alice.take()] == [
        ("FAIL", {"label": "B"}),
        ("PONG", {"label": "P"}),
    ]
    alice.send("@label=U BATCH +u draft/multiline bob")
    alice.send(b"@batch=u PRIVMSG bob :" + b"x" * 600 + b"\r\n")  # too long: 417
    assert [(m.command, m.tags) for m in alice.take()] == [("417", {}), ("FAIL", {"label": "U"})]
    alice.send("@label=V PING :after")  # no label is left over for the next command
    assert [(m.command, m.tags) for m in alice.take()] == [("PONG", {"label": "V"})]
    alice.send("PING :plain")
    assert [(m.command, m.tags) for m in alice.take()] == [("PONG", {})]


def test_labeled_echo_with_an_away_reply_nests_the_batch(connect: Connect) -> None:
    alice = connect("alice", caps=(*ML, *LABELS, "echo-message"))
    bob = connect("bob", caps=ML)
    bob.send("AWAY :gone")
    send_batch(alice, "bob", ["a", "b"], start_tags="@label=N")
    msgs = alice.take()
    outer, *inner, close = msgs
    assert outer.tags == {"label": "N"} and outer.params[1] == "labeled-response"
    ref = outer.params[0][1:]
    ((start, lines, end),) = batches(inner)
    assert start.tags == {"batch": ref} and end.tags == {"batch": ref}
    assert all(m.tags["batch"] == start.params[0][1:] for m in lines)
    assert inner[-1].command == "301" and close.params == ["-" + ref]


def test_multiline_without_batch_gets_the_fallback(connect: Connect) -> None:
    alice = connect("alice", caps=ML)
    bob = connect("bob", caps=("draft/multiline",))  # the capability depends on batch
    send_batch(alice, "bob", ["one", ("two", True)])
    assert [(m.command, m.params[1], m.tags) for m in bob.take()] == [
        ("PRIVMSG", "one", {}),
        ("PRIVMSG", "two", {}),
    ]


def test_refs_are_unique_per_connection(connect: Connect) -> None:
    alice = connect("alice", caps=(*ML, *LABELS, "echo-message"))
    bob = connect("bob", caps=ML)
    bob.send("AWAY :x")  # each echo comes with a 301: a labeled-response batch around it
    for i in range(3):
        alice.feed(f"@label=l{i} BATCH +same draft/multiline bob\r\n".encode(), flush=False)
        alice.feed(b"@batch=same PRIVMSG bob :m\r\nBATCH -same\r\n", flush=False)
    pump(alice.core)
    for p in (alice, bob):
        opened = [m.params[0][1:] for m in p.take() if m.command == "BATCH"]
        starts = opened[0::2] if p is bob else opened
        assert len(opened) == (6 if p is bob else 12)
        assert len(set(opened)) == len(opened) // 2  # each opened once and closed once
        assert "same" not in starts  # the server's own references, not the client's


# ------------------------------------------------- flood control and recvq
def test_every_line_costs_a_flood_token(make_core: Callable[..., ServerCore], clock: Clock) -> None:
    core = make_core(flood_rate=1.0, flood_burst=5)  # registration takes all 5
    alice, bob = Peer(core, clock), Peer(core, clock)
    alice.register("alice", caps=ML)
    bob.register("bob", caps=ML)
    advance(core, clock, 10)
    send_batch(alice, "bob", ["1", "2", "3", "4", "5", "6"])  # 8 lines, 5 tokens
    assert bob.take() == []
    advance(core, clock, 2)
    assert bob.take() == []
    advance(core, clock, 1)
    ((_, lines, _),) = batches(bob.take())
    assert len(lines) == 6


def test_an_open_batch_counts_toward_recvq(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=1.0, flood_burst=10, recvq=2000, multiline_max_bytes=2000)
    alice, bob = Peer(core, clock), Peer(core, clock)
    alice.register("alice", caps=ML)
    bob.register("bob", caps=ML)
    advance(core, clock, 20)
    # 10 tokens: BATCH + and 9 lines of 150 bytes, 1,358 bytes held
    send_batch(alice, "bob", ["x" * 150] * 9, end=False)
    assert alice.session.client_batch is not None and alice.session.client_batch.held == 1358
    line = b"@batch=b1 PRIVMSG bob :" + b"y" * 400 + b"\r\n"
    alice.feed(line)  # queued: 487 + 1,358 <= 2,000
    assert not alice.closed
    alice.feed(line)  # queued: 974 + 1,358 > 2,000 (the queue alone would fit)
    assert alice.closed and alice.inbox[-1].params[0].endswith("(Excess Flood)")
    _nothing_relayed(bob)


def test_a_batch_alone_past_recvq_is_excess_flood(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    """A file may not set max-bytes above recvq; a configuration built in code
    may, and then recvq still bounds what the client holds."""
    core = make_core(flood_rate=0.0, recvq=1000, multiline_max_bytes=4096)
    alice = Peer(core, clock)
    alice.register("alice", caps=ML)
    send_batch(alice, "alice", ["z" * 400] * 2, end=False)
    assert not alice.closed
    send_batch(alice, "alice", ["z" * 400], end=False, start=False)
    assert alice.closed and alice.inbox[-1].params[0].endswith("(Excess Flood)")


# ------------------------------------------------------------- long lines
def test_a_line_too_long_to_relay_is_split_not_cut(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(flood_rate=0.0, line_length=4096, recvq=65536)
    alice, bob, carol = Peer(core, clock), Peer(core, clock), Peer(core, clock)
    alice.register("alice", caps=ML)
    bob.register("bob", caps=ML)
    carol.register("carol")
    for p in (alice, bob, carol):
        p.send("JOIN #c")
        p.take()
    words = " ".join(f"wörd{i}" for i in range(300))  # 2,589 bytes, multi-byte characters
    send_batch(alice, "#c", ["short", words, ("€" * 300, True)])
    raw_bob = b"".join(bob.raw)
    ((_, lines, _),) = batches(bob.take())
    assert received_text(lines) == "short\n" + words + "€" * 300
    assert len(lines) > 3
    carol_raw = b"".join(carol.raw[-1:])
    assert all(len(line) + 2 <= 512 for line in carol_raw.split(b"\r\n"))
    got = [m.params[1] for m in carol.take()]
    assert "".join(got[1:]) == words + "€" * 300
    for line in raw_bob.split(b"\r\n"):
        body = line.split(b" ", 1)[1] if line.startswith(b"@") else line
        assert len(body) + 2 <= 512


def test_split_for_relay() -> None:
    assert split_for_relay("abc", False, 10) == [("abc", False)]
    assert split_for_relay("aaaa bbbb cccc", True, 10) == [("aaaa bbbb ", True), ("cccc", True)]
    assert split_for_relay("x" * 25, False, 10) == [
        ("x" * 10, False),
        ("x" * 10, True),
        ("x" * 5, True),
    ]
    parts = split_for_relay("é" * 9, False, 5)  # 2-byte characters: never cut in one
    assert [p for p, _ in parts] == ["éé", "éé", "éé", "éé", "é"]


# ---------------------------------------------- delivery and the hot path
def test_a_batch_keeps_its_place_among_other_channel_messages_of_a_turn(
    room: tuple[Peer, Peer, Peer, Peer], core: ServerCore
) -> None:
    alice, bob, carol, dave = room
    dave.feed(b"PRIVMSG #channel :before\r\n", flush=False)
    alice.feed(
        b"BATCH +q draft/multiline #channel\r\n@batch=q PRIVMSG #channel :m1\r\n"
        b"@batch=q PRIVMSG #channel :m2\r\nBATCH -q\r\n",
        flush=False,
    )
    dave.feed(b"PRIVMSG #channel :after\r\n", flush=False)
    pump(core)
    got = bob.take()
    assert [m.command for m in got] == [
        "PRIVMSG",
        "BATCH",
        "PRIVMSG",
        "PRIVMSG",
        "BATCH",
        "PRIVMSG",
    ]
    assert [m.params[1] for m in carol.take()] == ["before", "m1", "m2", "after"]


def test_one_line_messages_share_bytes_across_the_multiline_bit(
    room: tuple[Peer, Peer, Peer, Peer], core: ServerCore
) -> None:
    """A session with multiline gets the same bytes object for an ordinary message
    as one without it (the bit changes only multiline events)."""
    alice, bob, carol, _ = room
    seen = []
    core.add_consumer(seen.append)
    alice.send("PRIVMSG #channel :one line")
    (ev,) = seen
    assert bob.session.variant & CAP_MULTILINE and not carol.session.variant & CAP_MULTILINE
    v = carol.session.variant
    assert ev.for_variant(v | CAP_MULTILINE) is ev.for_variant(v)


def test_the_event_is_a_multiline_event_with_the_whole_text(
    room: tuple[Peer, Peer, Peer, Peer], core: ServerCore
) -> None:
    alice, _, _, _ = room
    seen = []
    core.add_consumer(seen.append)
    send_batch(alice, "#channel", SPEC_LINES)
    (ev,) = seen
    assert isinstance(ev, MultilineEvent)
    assert ev.command == "PRIVMSG" and ev.params == ["#channel", "hello\n\nhow is everyone?"]


# ------------------------------------------------------------- randomised
TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=0, max_size=120
).map(lambda s: s.strip("\r\n\0"))


@st.composite
def composed(draw: st.DrawFn) -> list[tuple[str, bool]]:
    """A valid batch: no concatenated blank line, not blank only."""
    n = draw(st.integers(1, 12))
    lines = []
    for i in range(n):
        text = draw(TEXT)
        concat = bool(text) and i > 0 and draw(st.booleans())
        lines.append((text, concat))
    if not any(t for t, _ in lines):
        lines[0] = ("x", False)
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=composed(), notice=st.booleans(), private=st.booleans())
def test_a_valid_batch_is_delivered_intact(
    lines: list[tuple[str, bool]], notice: bool, private: bool
) -> None:
    from coreharness import new_core
    from relaychat.config import Config, LimitsConfig

    clock = Clock()
    limits = LimitsConfig(flood_rate=0.0, recvq=65536, multiline_max_bytes=16384)
    core = new_core(Config(limits=limits), clock)
    alice, bob, carol = Peer(core, clock), Peer(core, clock), Peer(core, clock)
    alice.register("alice", caps=(*ML, "echo-message"))
    bob.register("bob", caps=(*ML, "message-tags"))
    carol.register("carol", caps=("message-tags",))
    target = "bob" if private else "#r"
    for p in (alice, bob, carol):
        p.send("JOIN #r")
        p.take()
    command = "NOTICE" if notice else "PRIVMSG"
    sent = combined_text(lines)
    send_batch(alice, target, lines, command=command)
    for p in (alice, bob):
        ((start, got, _),) = batches(p.take())
        assert {m.command for m in got} == {command}
        assert received_text(got) == sent
    if not private:
        fallback = [m.params[1] for m in carol.take()]
        assert all(fallback)  # never a blank line
        assert "".join(fallback) == "".join(t for t, _ in lines)
        space = relay_room(alice.user.source, command, target)
        assert all(len(t.encode()) <= space for t in fallback)


def test_a_full_batch_sent_at_once_passes_the_default_flood_limits(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    """With the shipped defaults (flood control on), a client that pastes a batch
    of max-lines lines in one write is slowed down, not dropped."""
    from relaychat.config import Config

    core = make_core(Config())
    lim = core.limits
    a, b = Peer(core, clock), Peer(core, clock)
    a.register("alice", caps=ML)
    b.register("bob", caps=ML)
    advance(core, clock, 30)  # a full flood bucket after registering
    a.take()
    b.take()
    width = lim.multiline_max_bytes // lim.multiline_max_lines - 1
    lines = [f"{i:03d}" + "x" * (width - 3) for i in range(lim.multiline_max_lines)]
    send_batch(a, "bob", lines)
    advance(core, clock, lim.multiline_max_lines / lim.flood_rate + 5)
    assert not a.closed
    ((_, got, _),) = batches(b.take())
    assert [m.params[1] for m in got] == lines
