"""Interoperability with jaraco's ``irc`` package (PyPI ``irc``): a SingleServerIRCBot,
whose channel tracking (NAMES, JOIN, PART, NICK, QUIT, MODE) and ISUPPORT parsing
must agree with what the server sent.

The bot's reactor runs ``process_once`` in a thread; the test thread only touches
the connection while holding ``reactor.mutex``, the lock the reactor holds while it
dispatches events, so the two never interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import irc.bot
import irc.client
import pytest

from ircutil import RawClient, wait_for


class Bot(irc.bot.SingleServerIRCBot):
    """Records every event it sees; never reconnects on its own."""

    def __init__(self, port: int, nick: str) -> None:
        super().__init__(
            [irc.bot.ServerSpec("127.0.0.1", port)], nick, "Jaraco Bot", recon=NoReconnect()
        )
        self.events: list[irc.client.Event] = []
        self.reactor.add_global_handler("all_events", self._record, -100)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"irc-bot-{nick}", daemon=True)

    def on_nicknameinuse(self, connection: Any, event: irc.client.Event) -> None:
        """The library's own recipe (its examples/testbot.py): retry with "_" appended."""
        connection.nick(connection.get_nickname() + "_")

    def _record(self, connection: Any, event: irc.client.Event) -> None:
        self.events.append(event)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.reactor.process_once(0.05)

    def start_in_thread(self) -> None:
        self._connect()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self.reactor.mutex:
            self.connection.close()

    def call(self, method: str, *args: Any) -> None:
        """Call a ServerConnection method from the test thread."""
        with self.reactor.mutex:
            getattr(self.connection, method)(*args)

    def find(self, kind: str, pred: Callable[[irc.client.Event], bool] = lambda e: True) -> Any:
        with self.reactor.mutex:
            return next((e for e in self.events if e.type == kind and pred(e)), None)

    def wait_event(
        self, kind: str, pred: Callable[[irc.client.Event], bool] = lambda e: True
    ) -> irc.client.Event:
        try:
            wait_for(lambda: self.find(kind, pred), what=f"a {kind!r} event")
        except AssertionError as exc:
            with self.reactor.mutex:
                seen = [(e.type, e.source, e.target, e.arguments) for e in self.events]
            raise AssertionError(f"{exc}; events: {seen[-30:]}") from None
        return self.find(kind, pred)

    def in_mutex(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` wrapped to run under the reactor's lock (for wait_for on bot state)."""

        def locked() -> Any:
            with self.reactor.mutex:
                return fn()

        return locked


class NoReconnect:
    """A ReconnectStrategy that never reconnects: teardown closes the link on purpose."""

    def run(self, bot: Any) -> None:
        pass


@pytest.fixture
def bot(irc_server: Any) -> Iterator[Callable[[str], Bot]]:
    """``bot(nick)`` -> a connected, registered bot; all are stopped at teardown."""
    made: list[Bot] = []

    def make(nick: str = "jbot") -> Bot:
        b = Bot(irc_server.port, nick)
        made.append(b)
        b.start_in_thread()
        b.wait_event("endofmotd")
        return b

    yield make
    for b in made:
        b.stop()


def test_irc_library_registers_and_parses_isupport(bot: Callable[[str], Bot]) -> None:
    b = bot("jbot")
    welcome = b.wait_event("welcome")
    assert welcome.target == "jbot"
    with b.reactor.mutex:
        conn = b.connection
        assert conn.get_nickname() == "jbot"
        assert conn.get_server_name() == "irc.relaychat.local"
        features = conn.features
        assert features.network == "RelayChat"
        assert dict(features.prefix) == {"@": "o", "+": "v"}  # prefix char -> mode
        assert features.chantypes == "#&"
        assert features.nicklen == 30
        assert features.chanmodes == ["beI", "k", "l", "imnst"]
        assert features.targmax["PRIVMSG"] == 4


def test_irc_library_nick_in_use_falls_back(
    client: Callable[..., RawClient], bot: Callable[[str], Bot]
) -> None:
    client("jbot")
    b = bot("jbot")
    assert b.find("nicknameinuse").arguments == ["jbot", "Nickname is already in use"]
    assert b.wait_event("welcome").target == "jbot_"
    with b.reactor.mutex:
        assert b.connection.get_nickname() == "jbot_"


def test_irc_library_tracks_channel_events(
    client: Callable[..., RawClient], bot: Callable[[str], Bot]
) -> None:
    b = bot("jbot")
    b.call("join", "#lib")
    b.wait_event("endofnames")
    wait_for(b.in_mutex(lambda: "#lib" in b.channels), what="bot tracks #lib")
    with b.reactor.mutex:
        assert b.channels["#lib"].is_oper("jbot")

    bob = client("bob")
    bob.join("#lib")
    join = b.wait_event("join", lambda e: e.source.nick == "bob")
    assert join.source == "bob!~bob@127.0.0.1" and join.target == "#lib"

    # MODE: the bot ops and voices bob; its own channel state follows the echo.
    b.call("mode", "#lib", "+ov bob bob")
    mode = bob.expect("MODE")
    assert mode.source == "jbot!~jbot@127.0.0.1"
    assert mode.params == ["#lib", "+ov", "bob", "bob"]
    b.wait_event("mode", lambda e: e.arguments[:1] == ["+ov"])
    with b.reactor.mutex:
        assert b.channels["#lib"].is_oper("bob") and b.channels["#lib"].is_voiced("bob")

    # TOPIC from bob (now an operator) reaches the bot.
    bob.send("TOPIC #lib :library topic")
    topic = b.wait_event("topic")
    assert topic.source.nick == "bob"
    assert (topic.target, topic.arguments) == ("#lib", ["library topic"])

    # NICK: the bot renames bob in its member list.
    bob.send("NICK bobby")
    nick = b.wait_event("nick")
    assert (nick.source.nick, nick.target) == ("bob", "bobby")
    with b.reactor.mutex:
        assert b.channels["#lib"].has_user("bobby") and not b.channels["#lib"].has_user("bob")
        assert b.channels["#lib"].is_oper("bobby")

    # PART, then a second user's QUIT.
    bob.send("PART #lib :see you")
    part = b.wait_event("part")
    assert (part.source.nick, part.target, part.arguments) == ("bobby", "#lib", ["see you"])
    carol = client("carol")
    carol.join("#lib")
    b.wait_event("join", lambda e: e.source.nick == "carol")
    carol.send("QUIT :off to lunch")
    quit_ = b.wait_event("quit")
    assert quit_.source.nick == "carol"
    assert "off to lunch" in quit_.arguments[0]
    wait_for(b.in_mutex(lambda: not b.channels["#lib"].has_user("carol")), what="carol gone")
    with b.reactor.mutex:
        assert sorted(b.channels["#lib"].users()) == ["jbot"]


def test_irc_library_messages_and_ctcp_action_both_ways(
    client: Callable[..., RawClient], bot: Callable[[str], Bot]
) -> None:
    b = bot("jbot")
    b.call("join", "#lib")
    b.wait_event("endofnames")
    bob = client("bob")
    bob.join("#lib")

    bob.send("PRIVMSG #lib :hello library")
    pub = b.wait_event("pubmsg")
    assert (pub.source, pub.target, pub.arguments) == (
        "bob!~bob@127.0.0.1",
        "#lib",
        ["hello library"],
    )
    bob.send("PRIVMSG jbot :just you")
    priv = b.wait_event("privmsg")
    assert (priv.source.nick, priv.target, priv.arguments) == ("bob", "jbot", ["just you"])
    bob.send("PRIVMSG #lib :\x01ACTION waves\x01")
    action = b.wait_event("action")
    assert (action.source.nick, action.target, action.arguments) == ("bob", "#lib", ["waves"])

    b.call("privmsg", "#lib", "hello bob")
    msg = bob.expect("PRIVMSG")
    assert (msg.source, msg.params) == ("jbot!~jbot@127.0.0.1", ["#lib", "hello bob"])
    b.call("action", "bob", "bows")
    msg = bob.expect("PRIVMSG")
    assert msg.params == ["bob", "\x01ACTION bows\x01"]
    b.call("notice", "#lib", "a notice")
    msg = bob.expect("NOTICE")
    assert msg.params == ["#lib", "a notice"]

    # CTCP VERSION: the bot answers with a CTCP reply in a NOTICE.
    bob.send("PRIVMSG jbot :\x01VERSION\x01")
    reply = bob.expect("NOTICE")
    assert reply.source.startswith("jbot!")
    assert reply.params[1].startswith("\x01VERSION ") and reply.params[1].endswith("\x01")


def test_irc_library_nick_change_and_quit(
    client: Callable[..., RawClient], bot: Callable[[str], Bot]
) -> None:
    b = bot("jbot")
    b.call("join", "#lib")
    b.wait_event("endofnames")
    bob = client("bob")
    bob.join("#lib")

    b.call("nick", "jbot2")
    msg = bob.expect("NICK")
    assert (msg.source, msg.params) == ("jbot!~jbot@127.0.0.1", ["jbot2"])
    wait_for(b.in_mutex(lambda: b.connection.get_nickname() == "jbot2"), what="nick tracked")

    b.call("quit", "library out")
    msg = bob.expect("QUIT")
    assert msg.source == "jbot2!~jbot@127.0.0.1"
    assert "library out" in msg.params[0]
    b.wait_event("disconnect")  # the server closes the link after QUIT
