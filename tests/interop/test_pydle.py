"""Interoperability with ``pydle`` (PyPI), an asyncio IRCv3 client library.

pydle negotiates capabilities on its own (``CAP LS 302``, then ``CAP REQ`` for what it
knows: multi-prefix, away-notify, userhost-in-names, echo-message, message-tags, ...),
tracks channels and users from NAMES, JOIN, MODE, TOPIC, NICK, AWAY, and answers
CTCP VERSION. Each bot runs in its own event loop on a thread; the test thread
schedules coroutines on it and reads the bot's state through the loop too, so it never
sees a half-updated dict.

pydle quirks met on Python 3.11 (pydle 1.2): on registration it sends
``WHOIS <unregistered>`` (its placeholder nick; the server answers 401/318, which pydle
expects) and only then sets its nick, possibly after on_connect; without WHOX in
ISUPPORT it WHOISes every user it first sees, and only then calls on_join; it dispatches
every line as its own task, so callbacks for consecutive lines may interleave; it
answers the server's ERROR after QUIT by logging a ServerError; and it reconnects after
an unexpected close unless told not to. It reads only the first parameter of each
``CAP LS`` line, so a list continued over two lines (``CAP * LS * :...``) ends its
negotiation at the first line, with no capability: the server here leaves out the two
history drafts pydle does not know (``draft/read-marker``, ``draft/message-redaction``)
so that ``CAP LS 302`` fits on one line (see the README).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pydle
import pytest

from ircutil import DEFAULT_TIMEOUT, RawClient, make_config, wait_for
from relaychat.server.runner import start_in_thread

NICK = "pybot"


class Bot(pydle.Client):
    """A pydle client that records its callbacks as tuples in ``events``."""

    RECONNECT_ON_ERROR = False

    def __init__(self, nickname: str) -> None:
        self.events: list[tuple[Any, ...]] = []
        super().__init__(nickname, realname="Pydle Bot")

    async def on_connect(self) -> None:
        await super().on_connect()
        self.events.append(("connect",))

    async def on_join(self, channel: str, user: str) -> None:
        await super().on_join(channel, user)
        self.events.append(("join", channel, user))

    async def on_part(self, channel: str, user: str, message: str | None = None) -> None:
        await super().on_part(channel, user, message)
        self.events.append(("part", channel, user, message))

    async def on_channel_message(self, target: str, by: str, message: str) -> None:
        await super().on_channel_message(target, by, message)
        self.events.append(("channel_message", target, by, message))

    async def on_private_message(self, target: str, by: str, message: str) -> None:
        await super().on_private_message(target, by, message)
        self.events.append(("private_message", target, by, message))

    async def on_ctcp(self, by: str, target: str, what: str, contents: str | None) -> None:
        await super().on_ctcp(by, target, what, contents)
        self.events.append(("ctcp", by, target, what, contents))

    async def on_mode_change(self, channel: str, modes: list[str], by: str) -> None:
        await super().on_mode_change(channel, modes, by)
        self.events.append(("mode", channel, modes, by))

    async def on_topic_change(self, channel: str, message: str, by: str) -> None:
        await super().on_topic_change(channel, message, by)
        self.events.append(("topic", channel, message, by))

    async def on_nick_change(self, old: str, new: str) -> None:
        await super().on_nick_change(old, new)
        self.events.append(("nick", old, new))

    async def on_quit(self, user: str, message: str | None = None) -> None:
        await super().on_quit(user, message)
        self.events.append(("quit", user, message))

    async def on_user_online(self, nickname: str) -> None:
        await super().on_user_online(nickname)
        self.events.append(("online", nickname))

    async def on_user_offline(self, nickname: str) -> None:
        await super().on_user_offline(nickname)
        self.events.append(("offline", nickname))


class Runner:
    """One pydle bot on its own event loop, running in a thread."""

    def __init__(self, port: int, nick: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name=f"pydle-{nick}", daemon=True
        )
        self.thread.start()
        self.bot = Bot(nick)
        self.nick = nick
        self.port = port

    def start(self) -> None:
        self.call(self.bot.connect("127.0.0.1", self.port))
        self.wait_event("connect")
        # pydle learns its nick from 001 only after WHOISing its placeholder nick, which
        # may finish after the MOTD (and on_connect) has been handled.
        self.wait(lambda b: b.nickname == self.nick, "pydle knows its nick")

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Run a coroutine on the bot's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def read(self, fn: Callable[[Bot], Any]) -> Any:
        """``fn(bot)`` evaluated on the bot's loop, between two of its callbacks."""

        async def read() -> Any:
            return fn(self.bot)

        return self.call(read())

    def wait(self, cond: Callable[[Bot], Any], what: str) -> None:
        try:
            wait_for(lambda: self.read(cond), what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; events: {self.read(lambda b: b.events)}") from None

    def wait_event(self, *event: Any) -> None:
        self.wait(lambda b: event in b.events, f"pydle event {event}")

    def close(self) -> None:
        if self.loop.is_running():
            if self.read(lambda b: b.connected):
                self.call(self.bot.disconnect(expected=True))
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEFAULT_TIMEOUT)
        # Let closed transports finish and cancel what pydle left behind, so nothing
        # is garbage-collected open (a ResourceWarning is an error in this suite).
        self.loop.run_until_complete(_cancel_leftovers())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


async def _cancel_leftovers() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0)  # transports closed by the cancellations call connection_lost


# pydle 1.2 ends CAP negotiation at the first line of a continued CAP LS (see above)
ONE_LINE_CAP_LS = ("draft/read-marker", "draft/message-redaction")


@pytest.fixture
def irc_server(engine: str) -> Iterator[Any]:
    """The shared server, with a ``CAP LS 302`` that fits on one line for pydle."""
    cfg = make_config(engine)
    cfg = dataclasses.replace(
        cfg, server=dataclasses.replace(cfg.server, disabled_caps=ONE_LINE_CAP_LS)
    )
    handle = start_in_thread(cfg)
    yield handle
    handle.stop()


@pytest.fixture
def pydle_bot(irc_server: Any) -> Iterator[Callable[..., Runner]]:
    """``pydle_bot(nick)`` -> a Runner whose bot has registered (seen the MOTD)."""
    runners: list[Runner] = []

    def make(nick: str = NICK) -> Runner:
        runner = Runner(irc_server.port, nick)
        runners.append(runner)
        runner.start()
        return runner

    yield make
    for runner in runners:
        runner.close()


def join(runner: Runner, channel: str, op: str | None = None) -> None:
    """Join and wait until pydle has parsed NAMES, which shows ``op`` (the bot itself
    when it creates the channel) as an operator."""
    runner.call(runner.bot.join(channel))
    runner.wait_event("join", channel, runner.bot.nickname)
    op = op or runner.bot.nickname
    runner.wait(
        lambda b: op in b.channels.get(channel, {}).get("modes", {}).get("o", []),
        f"pydle sees {op} as channel operator",
    )


def test_pydle_negotiates_ircv3_caps_and_registers(pydle_bot: Callable[..., Runner]) -> None:
    runner = pydle_bot()
    caps = runner.read(lambda b: dict(b._capabilities))
    enabled = {name for name, value in caps.items() if value}
    assert {
        "multi-prefix",
        "away-notify",
        "userhost-in-names",
        "echo-message",
        "message-tags",
        "cap-notify",
    } <= enabled
    # pydle leaves out what it does not implement; those are known but not enabled.
    assert caps.get("server-time") is False
    assert runner.read(lambda b: (b.registered, b.nickname, b.network)) == (
        True,
        NICK,
        "RelayChat",
    )
    prefixes = runner.read(lambda b: dict(b._nickname_prefixes))
    assert prefixes == {"@": "o", "+": "v"}


def test_pydle_parses_names_with_multi_prefix_and_userhost(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    bob = client("bob")
    bob.join("#py")
    bob.send("MODE #py +v bob")
    bob.expect("MODE")
    runner = pydle_bot()
    join(runner, "#py", op="bob")
    # bob is "@+bob!~bob@127.0.0.1" in NAMES: both prefixes and the userhost are parsed.
    chan = runner.read(lambda b: b.channels["#py"])
    assert chan["users"] == {"bob", NICK}
    assert "bob" in chan["modes"]["o"] and "bob" in chan["modes"]["v"]
    bob_user = runner.read(lambda b: dict(b.users["bob"]))
    assert (bob_user["username"], bob_user["hostname"]) == ("~bob", "127.0.0.1")


def test_pydle_channel_and_private_messages_both_ways(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    runner = pydle_bot()
    join(runner, "#py")
    bob = client("bob")
    bob.join("#py")
    runner.wait_event("join", "#py", "bob")

    bob.send("PRIVMSG #py :hi pydle")
    runner.wait_event("channel_message", "#py", "bob", "hi pydle")
    runner.call(runner.bot.message("#py", "hi bob"))
    msg = bob.expect("PRIVMSG")
    assert (msg.source, msg.params) == (f"{NICK}!~{NICK}@127.0.0.1", ["#py", "hi bob"])
    runner.wait_event("channel_message", "#py", NICK, "hi bob")  # echo-message

    bob.send(f"PRIVMSG {NICK} :psst")
    runner.wait_event("private_message", NICK, "bob", "psst")
    runner.call(runner.bot.message("bob", "psst yourself"))
    assert bob.expect("PRIVMSG").params == ["bob", "psst yourself"]


def test_pydle_ctcp_action_and_version(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    runner = pydle_bot()
    join(runner, "#py")
    bob = client("bob")
    bob.join("#py")

    bob.send("PRIVMSG #py :\x01ACTION waves\x01")
    runner.wait_event("ctcp", "bob", "#py", "ACTION", "waves")
    runner.call(runner.bot.ctcp("#py", "ACTION", "waves back"))
    assert bob.expect("PRIVMSG").params == ["#py", "\x01ACTION waves back\x01"]

    bob.send(f"PRIVMSG {NICK} :\x01VERSION\x01")
    reply = bob.expect("NOTICE")
    assert reply.source.startswith(f"{NICK}!")
    assert reply.params[0] == "bob"
    assert reply.params[1] == f"\x01VERSION pydle v{pydle.__version__}\x01"


def test_pydle_whois_returns_user_details(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    runner = pydle_bot()
    join(runner, "#py")
    bob = client("bob")
    bob.join("#py")
    # pydle WHOISes every user it first sees (the server has no WHOX) and records the
    # JOIN after that answer; whois() would return that pending, pre-AWAY answer.
    runner.wait_event("join", "#py", "bob")
    bob.send("AWAY :out to lunch")
    bob.expect("306")

    info = runner.call(runner.bot.whois("bob"))
    assert info["username"] == "~bob"
    assert info["hostname"] == "127.0.0.1"
    assert info["realname"] == "Test bob"
    assert info["server"] == "irc.relaychat.local"
    assert info["channels"] == {"#py"}
    assert info["away"] is True and info["away_message"] == "out to lunch"
    assert info["oper"] is False
    assert isinstance(info["idle"], int)

    assert runner.call(runner.bot.whois("nobody")) is None  # 401, then 318


def test_pydle_tracks_away_notify_mode_topic_nick_and_part(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    runner = pydle_bot()
    join(runner, "#py")
    bob = client("bob")
    bob.join("#py")
    # pydle has WHOISed bob before it reports the JOIN, so from here on only
    # away-notify can tell it about bob's AWAY.
    runner.wait_event("join", "#py", "bob")

    bob.send("AWAY :brb")
    runner.wait(lambda b: b.users["bob"]["away_message"] == "brb", "away-notify AWAY")
    assert runner.read(lambda b: b.users["bob"]["away"]) is True
    bob.send("AWAY")
    runner.wait(lambda b: b.users["bob"]["away"] is False, "away-notify back")
    assert runner.read(lambda b: b.users["bob"]["away_message"]) is None

    runner.call(runner.bot.set_mode("#py", "+v", "bob"))
    msg = bob.expect("MODE")
    assert msg.params == ["#py", "+v", "bob"]
    runner.wait(lambda b: "bob" in b.channels["#py"]["modes"].get("v", []), "pydle sees +v")

    runner.call(runner.bot.set_topic("#py", "pydle topic"))
    assert bob.expect("TOPIC").params == ["#py", "pydle topic"]
    runner.wait_event("topic", "#py", "pydle topic", NICK)
    assert runner.read(lambda b: b.channels["#py"]["topic"]) == "pydle topic"

    bob.send("NICK bobby")
    runner.wait_event("nick", "bob", "bobby")
    assert runner.read(lambda b: b.channels["#py"]["users"]) == {NICK, "bobby"}

    bob.send("PART #py :later")
    runner.wait_event("part", "#py", "bobby", "later")
    assert runner.read(lambda b: b.channels["#py"]["users"]) == {NICK}


def test_pydle_nick_change_and_quit(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    runner = pydle_bot()
    join(runner, "#py")
    bob = client("bob")
    bob.join("#py")

    runner.call(runner.bot.set_nickname("pybot2"))
    msg = bob.expect("NICK")
    assert (msg.source, msg.params) == (f"{NICK}!~{NICK}@127.0.0.1", ["pybot2"])
    runner.wait(lambda b: b.nickname == "pybot2", "pydle tracks its new nick")

    runner.call(runner.bot.quit("pydle out"))
    msg = bob.expect("QUIT")
    assert msg.source == "pybot2!~pybot@127.0.0.1"
    assert "pydle out" in msg.params[0]
    assert not runner.read(lambda b: b.connected)


def test_pydle_takes_the_ircv3_layer(pydle_bot: Callable[..., Runner]) -> None:
    """pydle asks for what relaychat now offers (account-notify, account-tag,
    extended-join, chghost) and parses what comes of it."""
    runner = pydle_bot()
    caps = runner.read(lambda b: dict(b._capabilities))
    enabled = {name for name, value in caps.items() if value}
    assert {"account-notify", "account-tag", "extended-join", "chghost"} <= enabled


def test_pydle_monitor_sees_a_user_come_and_go(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    runner = pydle_bot()
    assert runner.call(runner.bot.monitor("Carol"))  # MONITOR is in ISUPPORT
    runner.call(runner.bot.rawmsg("PING", "sync"))
    carol = client("carol")
    runner.wait_event("online", "carol")
    carol.send("QUIT :bye")
    carol.wait_closed()
    runner.wait_event("offline", "carol")


def test_pydle_parses_extended_join_and_msgid_tags(
    client: Callable[..., RawClient], pydle_bot: Callable[..., Runner]
) -> None:
    runner = pydle_bot()
    join(runner, "#x")
    bob = client("bob")
    bob.join("#x")
    runner.wait_event("join", "#x", "bob")
    assert runner.read(lambda b: b.users["bob"]["realname"]) == "Test bob"
    bob.send("PRIVMSG #x :tagged")
    runner.wait_event("channel_message", "#x", "bob", "tagged")


class SaslBot(Bot):
    """A pydle client that logs in with SASL (PLAIN, through pure-sasl)."""

    def __init__(self, nickname: str, username: str, password: str) -> None:
        self.events = []
        pydle.Client.__init__(
            self,
            nickname,
            realname="Pydle Bot",
            sasl_username=username,
            sasl_password=password,
            sasl_mechanism="PLAIN",
        )


def test_pydle_logs_in_with_sasl_plain(irc_server: Any) -> None:
    maker = RawClient(irc_server.port)
    maker.register("maker")
    maker.send("REGISTER pyacct * :pydle-password")
    assert maker.expect("REGISTER").params[0] == "SUCCESS"
    # gone before pydle logs in: a login to an account whose user is online
    # would attach to that user (multiclient)
    maker.send("QUIT")
    maker.wait_closed()
    maker.close()
    owner = RawClient(irc_server.port)
    try:
        owner.register("owner")
        runner = Runner(irc_server.port, NICK)
        runner.bot = SaslBot(NICK, "pyacct", "pydle-password")
        try:
            runner.start()
            assert runner.read(lambda b: b._capabilities.get("sasl")) is True
            owner.send(f"WHOIS {NICK}")
            whois = owner.take_until("318")
            assert [m.params[1:3] for m in whois if m.command == "330"] == [[NICK, "pyacct"]]
        finally:
            runner.close()
    finally:
        owner.close()
