"""Interoperability with suckless ``ii`` (Debian package ``ii``), a FIFO- and file-driven client.

``ii -s HOST -p PORT -n NICK -i DIR`` keeps one directory per server, channel and query
under ``DIR/HOST/``: ``in`` is a FIFO it reads commands and text from, ``out`` a plain file
it appends ``<epoch> <line>`` to. Channel directories are lower-cased (``#chan``). Commands:
``/j #chan`` (or ``/j nick text`` to open a query), ``/t topic``, ``/n nick``, ``/q reason``;
plain text written to a channel's ``in`` becomes a PRIVMSG. ii echoes the raw lines it
receives on stdout, which the tests keep in a log file to see PINGs.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ircutil import DEFAULT_TIMEOUT, RawClient, require_tool, wait_for

HOST = "127.0.0.1"


class Ii:
    """One running ``ii`` process and the file tree it writes."""

    def __init__(self, binary: str, port: int, nick: str, root: Path) -> None:
        self.nick = nick
        self.base = root / HOST
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "ii.stdout"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [binary, "-s", HOST, "-p", str(port), "-n", nick, "-i", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def path(self, name: str = "") -> Path:
        """The directory of the server (``name=""``), a channel or a query."""
        return self.base / name.lower() if name else self.base

    def out(self, name: str = "") -> str:
        try:
            return (self.path(name) / "out").read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_out(self, text: str, name: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until ``text`` appears in the ``out`` file of ``name``."""
        try:
            wait_for(lambda: text in self.out(name), timeout, f"{text!r} in {name or HOST}/out")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; out file:\n{self.out(name)}") from None

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def write(self, line: str, name: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write one line to the ``in`` FIFO of ``name``; waits for ii to be reading it
        (opening a FIFO without a reader fails with ENXIO in non-blocking mode)."""
        fifo = self.path(name) / "in"
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENXIO):
                    raise
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"ii is not reading {fifo} (exit code {self.proc.poll()})"
                    ) from None
                time.sleep(0.01)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def wait_registered(self) -> None:
        self.wait_out("End of /MOTD command")

    def join(self, channel: str) -> None:
        self.write(f"/j {channel}")
        self.wait_out(f"{self.nick}(", channel)  # "-!- nick(~user@host) has joined #chan"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def ii(tmp_path: Path) -> Iterator[Callable[..., Ii]]:
    """``ii(port, nick)`` -> a running, registered ii; every one is stopped at teardown."""
    binary = require_tool("ii")
    started: list[Ii] = []

    def start(port: int, nick: str = "iibot") -> Ii:
        client = Ii(binary, port, nick, tmp_path / f"ii-{len(started)}")
        started.append(client)
        client.wait_registered()
        return client

    yield start
    for client in started:
        client.stop()


def test_ii_registers_and_writes_welcome_to_server_out(
    irc_server: Any, ii: Callable[..., Ii]
) -> None:
    bot = ii(irc_server.port)
    out = bot.out()
    assert "Welcome to the RelayChat IRC Network iibot!~iibot@127.0.0.1" in out
    assert "NETWORK=RelayChat" in out
    assert (bot.path() / "in").exists()


def test_ii_channel_messages_both_ways(
    irc_server: Any, client: Callable[..., RawClient], ii: Callable[..., Ii]
) -> None:
    bot = ii(irc_server.port)
    bot.join("#chan")
    alice = client("alice")
    alice.join("#chan")
    bot.wait_out("alice(~alice@127.0.0.1) has joined #chan", "#chan")

    alice.send("PRIVMSG #chan :hello ii")
    bot.wait_out("<alice> hello ii", "#chan")

    bot.write("hi alice, from a fifo", "#chan")
    msg = alice.expect("PRIVMSG")
    assert msg.source == "iibot!~iibot@127.0.0.1"
    assert msg.params == ["#chan", "hi alice, from a fifo"]
    bot.wait_out("<iibot> hi alice, from a fifo", "#chan")  # ii logs its own lines too


def test_ii_private_messages_open_a_query_directory(
    irc_server: Any, client: Callable[..., RawClient], ii: Callable[..., Ii]
) -> None:
    bot = ii(irc_server.port)
    alice = client("alice")
    alice.send("PRIVMSG iibot :psst")
    bot.wait_out("<alice> psst", "alice")

    bot.write("/j alice right back at you")
    msg = alice.expect("PRIVMSG")
    assert msg.source == "iibot!~iibot@127.0.0.1"
    assert msg.params == ["alice", "right back at you"]

    bot.write("and from the query fifo", "alice")
    assert alice.expect("PRIVMSG").params == ["alice", "and from the query fifo"]


def test_ii_topic_command_sets_the_topic(
    irc_server: Any, client: Callable[..., RawClient], ii: Callable[..., Ii]
) -> None:
    bot = ii(irc_server.port)
    bot.join("#chan")  # ii created the channel, so it is the operator
    alice = client("alice")
    alice.join("#chan")
    bot.write("/t a topic from ii", "#chan")
    msg = alice.expect("TOPIC")
    assert msg.source == "iibot!~iibot@127.0.0.1"
    assert msg.params == ["#chan", "a topic from ii"]
    bot.wait_out('iibot changed topic to "a topic from ii"', "#chan")

    alice.send("PART #chan :bye")
    bot.wait_out("alice(~alice@127.0.0.1) has left #chan", "#chan")


def test_ii_nick_change_and_quit_are_seen_by_others(
    irc_server: Any, client: Callable[..., RawClient], ii: Callable[..., Ii]
) -> None:
    bot = ii(irc_server.port)
    bot.join("#chan")
    alice = client("alice")
    alice.join("#chan")

    bot.write("/n iibot2")
    msg = alice.expect("NICK")
    assert (msg.source, msg.params) == ("iibot!~iibot@127.0.0.1", ["iibot2"])
    bot.wait_out('changed nick to "iibot2"')

    bot.write("/q gone fishing")
    quit_msg = alice.expect("QUIT")
    assert quit_msg.source == "iibot2!~iibot@127.0.0.1"
    assert "gone fishing" in quit_msg.params[0]
    assert bot.proc.wait(DEFAULT_TIMEOUT) == 0  # ii exits when the server closes the link


def test_ii_killed_process_is_seen_as_quit(
    irc_server: Any, client: Callable[..., RawClient], ii: Callable[..., Ii]
) -> None:
    bot = ii(irc_server.port)
    bot.join("#chan")
    alice = client("alice")
    alice.join("#chan")
    bot.proc.kill()
    bot.proc.wait(DEFAULT_TIMEOUT)
    assert alice.expect("QUIT").source == "iibot!~iibot@127.0.0.1"
    alice.send("ISON iibot alice")
    assert alice.expect("303").params[-1] == "alice"


def test_ii_answers_server_pings_and_stays_connected(
    start_server: Callable[..., Any], ii: Callable[..., Ii]
) -> None:
    # The server ticks once a second: it sends no second PING while one is unanswered,
    # and drops a client that leaves it unanswered (ii exits when its link closes).
    server = start_server(ping_interval=0.2, ping_timeout=0.5)
    bot = ii(server.port)
    wait_for(lambda: bot.log().count(" PING ") >= 2, what="two PINGs in ii's stdout")
    assert bot.proc.poll() is None
    alice = RawClient(server.port)
    try:
        alice.register("alice")
        alice.send("ISON iibot")
        assert alice.expect("303").params[-1] == "iibot"
    finally:
        alice.close()
