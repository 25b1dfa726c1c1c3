"""Interoperability with suckless ``sic`` (Debian package ``sic``), a stdin/stdout client.

sic reads commands on stdin: ``:j #chan`` joins (and makes ``#chan`` the default target
if there is none), ``:m target text`` sends a PRIVMSG, ``:s target`` sets the default
target, any other ``:LINE`` goes to the server raw, and a line without ``:`` is a PRIVMSG
to the default target. It prints ``<target padded to 12> : <date> <time> <text>``, with
``<nick> text`` for messages. It answers PINGs and exits (status 1) when the server closes
the link. Driven through a pty with pexpect, so its stdout is line-buffered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pexpect
import pytest

from ircutil import DEFAULT_TIMEOUT, RawClient, require_tool


@pytest.fixture
def sic(irc_server: Any) -> Iterator[Callable[[str], pexpect.spawn]]:
    """``sic(nick)`` -> a registered sic under pexpect; all are closed at teardown."""
    binary = require_tool("sic")
    spawned: list[pexpect.spawn] = []

    def start(nick: str = "sicbot") -> pexpect.spawn:
        child = pexpect.spawn(
            binary,
            ["-h", "127.0.0.1", "-p", str(irc_server.port), "-n", nick],
            encoding="utf-8",
            timeout=DEFAULT_TIMEOUT,
        )
        spawned.append(child)
        child.expect_exact("End of /MOTD command.")
        return child

    yield start
    for child in spawned:
        child.close(force=True)


def line(target: str, text: str) -> str:
    """A regex for one sic output line about ``target`` ending in ``text``."""
    return rf"{re.escape(target)} *: \S+ \S+ {re.escape(text)}\r\n"


def test_sic_joins_and_exchanges_channel_messages(
    client: Callable[..., RawClient], sic: Callable[[str], pexpect.spawn]
) -> None:
    child = sic("sicbot")
    child.sendline(":j #sic")
    child.expect(line("sicbot", ">< JOIN (#sic): "))
    alice = client("alice")
    alice.join("#sic")
    child.expect(line("alice", ">< JOIN (#sic): "))

    alice.send("PRIVMSG #sic :hello sic")
    child.expect(line("#sic", "<alice> hello sic"))

    child.sendline("plain text goes to the default channel")
    msg = alice.expect("PRIVMSG")
    assert msg.source == "sicbot!~sicbot@127.0.0.1"
    assert msg.params == ["#sic", "plain text goes to the default channel"]


def test_sic_private_messages_and_raw_commands(
    client: Callable[..., RawClient], sic: Callable[[str], pexpect.spawn]
) -> None:
    child = sic("sicbot")
    alice = client("alice")
    alice.send("PRIVMSG sicbot :just for sic")
    child.expect(line("sicbot", "<alice> just for sic"))

    child.sendline(":m alice hello alice")
    msg = alice.expect("PRIVMSG")
    assert (msg.source, msg.params) == ("sicbot!~sicbot@127.0.0.1", ["alice", "hello alice"])

    child.sendline(":WHOIS alice")  # sent to the server as is
    child.expect_exact(">< 311 (sicbot alice ~alice 127.0.0.1 *): Test alice\r\n")


def test_sic_quit_is_seen_and_sic_exits(
    client: Callable[..., RawClient], sic: Callable[[str], pexpect.spawn]
) -> None:
    child = sic("sicbot")
    child.sendline(":j #sic")
    child.expect(line("sicbot", ">< JOIN (#sic): "))
    alice = client("alice")
    alice.join("#sic")

    child.sendline(":QUIT :sic signing off")
    msg = alice.expect("QUIT")
    assert msg.source == "sicbot!~sicbot@127.0.0.1"
    assert "sic signing off" in msg.params[0]
    child.expect_exact("remote host closed connection")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1  # sic's way of saying the server hung up
