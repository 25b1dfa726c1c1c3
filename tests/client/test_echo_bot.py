"""``examples/echo_bot.py`` run as the README says, against a real server on port 0 (and a
scripted one that offers draft/multiline)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaychat.client import connect
from relaychat.protocol.message import Message, split_source

BOT = Path(__file__).resolve().parents[2] / "examples" / "echo_bot.py"
HOST = "127.0.0.1"


class BotProcess:
    """The bot as a subprocess; its stdout lines arrive in a queue (read by a thread)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BOT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, text: str, timeout: float = 15.0) -> str:
        """The next output line containing ``text``; fails on a timeout or on exit."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"echo bot did not print {text!r}; printed {self.seen}")
            if line is None:
                pytest.fail(f"echo bot exited before printing {text!r}; printed {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(15)
        self._reader.join(15)  # the pipe reaches EOF once the bot is gone
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def echo_bot(irc_server: Any, child_env: dict[str, str]) -> Iterator[BotProcess]:
    bot = BotProcess([HOST, str(irc_server.port), "echobot", "#echo"], child_env)
    try:
        yield bot
    finally:
        bot.stop()


def from_echobot(msg: Message) -> bool:
    return msg.command == "PRIVMSG" and split_source(msg.source or "")[0] == "echobot"


def test_echo_bot_echoes_in_the_channel_and_in_private(
    irc_server: Any, echo_bot: BotProcess
) -> None:
    echo_bot.expect(f"connected to {HOST}:{irc_server.port} as echobot")
    echo_bot.expect("joined #echo")
    with connect(HOST, irc_server.port, "alice") as alice:
        alice.join("#echo")
        alice.privmsg("#echo", "hello, bot")
        assert alice.wait_for(from_echobot).params == ["#echo", "hello, bot"]
        echo_bot.expect("echoed to #echo: 'hello, bot'")

        alice.privmsg("echobot", "just us \x1b[2J")
        assert alice.wait_for(from_echobot).params == ["alice", "just us \x1b[2J"]
        echo_bot.expect(r"echoed to alice: 'just us \x1b[2J'")  # printed escaped

        alice.privmsg("#echo", "\x01VERSION\x01")  # CTCP is not echoed ...
        alice.privmsg("#echo", "after")
        assert alice.wait_for(from_echobot).params == ["#echo", "after"]  # ... so this is next


def test_echo_bot_echoes_a_multiline_message_whole(
    scripted_peer: Any, child_env: dict[str, str]
) -> None:
    """Against a server that offers draft/multiline (played by hand: relaychat's server
    on this branch does not), a multi-line message comes back as one."""
    bot = BotProcess([HOST, str(scripted_peer.port), "echobot", "#echo"], child_env)
    try:
        peer = scripted_peer.accept()
        peer.expect("CAP LS")
        peer.send_line(":irc.test CAP * LS :batch draft/multiline=max-bytes=4096")
        peer.expect("CAP REQ")
        peer.send_line(":irc.test CAP echobot ACK :batch draft/multiline")
        peer.expect("CAP END")
        peer.send_line(":irc.test 001 echobot :Welcome")
        peer.expect("JOIN #echo")
        peer.send_line(":echobot!e@h JOIN #echo")
        bot.expect("joined #echo")
        for line in [
            "@msgid=m1 :alice!a@h BATCH +b1 draft/multiline #echo",
            "@batch=b1 :alice!a@h PRIVMSG #echo :first",
            "@batch=b1 :alice!a@h PRIVMSG #echo :second",
            ":irc.test BATCH -b1",
        ]:
            peer.send_line(line)
        assert [peer.read_line() for _ in range(4)] == [
            "BATCH +m1 draft/multiline #echo",
            "@batch=m1 PRIVMSG #echo first",
            "@batch=m1 PRIVMSG #echo second",
            "BATCH -m1",
        ]
        bot.expect(r"echoed to #echo: 'first\nsecond'")
        peer.close()
        bot.expect("disconnected")
    finally:
        bot.stop()
