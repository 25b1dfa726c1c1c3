"""labeled-response, batch and msgid over real sockets, both engines: a random
labeled session answered label by label while bystanders talk in the same
channel and see neither labels nor batches that are not theirs."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from ircutil import RawClient
from relaychat.protocol.message import Message

LABELS = ("batch", "labeled-response", "message-tags", "echo-message", "server-time")
COMMANDS = [
    "PING :t",
    "PRIVMSG #r :hi",
    "PRIVMSG bob :hi",
    "PRIVMSG alice :me",
    "PRIVMSG nobody :x",
    "@+typing=active TAGMSG #r",
    "JOIN #s",
    "PART #s",
    "NAMES #r",
    "TOPIC #r",
    "WHO #r",
    "WHOIS bob",
    "LIST",
    "AWAY :gone",
    "AWAY",
    "ISON bob nobody",
    "MOTD",
    "VERSION",
    "FOOBAR",
    "KICK",
]


def _check_batches(msgs: list[Message]) -> None:
    open_refs: list[str] = []
    for m in msgs:
        ref = m.tags.get("batch")
        assert ref is None or ref in open_refs, m
        if m.command == "BATCH":
            name = m.params[0][1:]
            if m.params[0][0] == "+":
                open_refs.append(name)
            else:
                assert open_refs and open_refs[-1] == name
                open_refs.pop()
    assert open_refs == []


@pytest.mark.usefixtures("no_server_errors")
def test_random_labeled_session_is_answered_once_per_label(
    irc_server: Any, connect: Callable[..., RawClient]
) -> None:
    rng = random.Random(7)
    a = connect(irc_server, "alice", LABELS)
    b = connect(irc_server, "bob", ("message-tags",))
    c = connect(irc_server, "carol")
    for p in (a, b, c):
        p.join("#r")
    b.sync()
    c.sync()
    sent = []
    for i in range(150):
        cmd = rng.choice(COMMANDS)
        label = f"L{i}"
        sent.append(label)
        if cmd.startswith("@"):
            tags, rest = cmd.split(" ", 1)
            a.send(f"{tags};label={label} {rest}")
        else:
            a.send(f"@label={label} {cmd}")
        if i % 10 == 0:
            b.send(f"PRIVMSG #r :bystander {i}")
    got = a.take_until(lambda m: m.tags.get("label") == sent[-1])
    last = got[-1]
    if last.command == "BATCH":  # the last reply is a batch: read to its end
        ref = last.params[0][1:]
        got += a.take_until(lambda m: m.command == "BATCH" and m.params[0] == "-" + ref)
    got += a.sync()
    assert [m.tags["label"] for m in got if "label" in m.tags] == sent
    _check_batches(got)
    msgids = [m.tags["msgid"] for m in got if "msgid" in m.tags]
    assert len(msgids) == len(set(msgids)) or _self_messages_repeat(got)
    for bystander in (b, c):
        seen = bystander.sync()
        assert all("label" not in m.tags and m.command != "BATCH" for m in seen)
        assert all(m.command != "ACK" for m in seen)


def _self_messages_repeat(msgs: list[Message]) -> bool:
    """A message to oneself arrives twice with echo-message (delivery and echo),
    with one msgid: the only repeats allowed."""
    by_id: dict[str, list[Message]] = {}
    for m in msgs:
        if "msgid" in m.tags:
            by_id.setdefault(m.tags["msgid"], []).append(m)
    return all(len(v) == 1 or (len(v) == 2 and v[0].params[0] == "alice") for v in by_id.values())


def test_echo_and_delivery_share_one_msgid(
    irc_server: Any, connect: Callable[..., RawClient]
) -> None:
    a = connect(irc_server, "alice", LABELS)
    b = connect(irc_server, "bob", ("message-tags",))
    a.send("@label=e PRIVMSG bob :hello")
    echo = a.expect(lambda m: m.tags.get("label") == "e")
    got = b.expect("PRIVMSG")
    assert echo.command == "PRIVMSG" and echo.tags["msgid"] == got.tags["msgid"]
    assert "label" not in got.tags
