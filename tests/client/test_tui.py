"""The terminal client: rendering and argument parsing as pure functions, command
handling against a real server, and the whole program in a pty driven by pexpect."""

from __future__ import annotations

import base64
import fcntl
import io
import os
import re
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pexpect
import pytest
from pexpect.fdpexpect import fdspawn

from ircutil import wait_for
from relaychat import __version__
from relaychat.client import Batch, Connection, connect
from relaychat.client.tui import (
    ChatSession,
    _CtcpLimiter,
    _WhoisCollector,
    format_duration,
    parse_address,
    parse_ctcp,
    render,
    render_lines,
    render_reply,
    sanitize,
)
from relaychat.protocol.message import Message, parse_message, split_source

STAMP = r"\[\d\d:\d\d\] "
HOST = "127.0.0.1"


def from_nick(nick: str, command: str) -> Callable[[Message], bool]:
    def match(msg: Message) -> bool:
        return (
            msg.command == command
            and msg.source is not None
            and split_source(msg.source)[0].lower() == nick.lower()
        )

    return match


# -- pure parts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ("127.0.0.1", 6667)),
        ("irc.example", ("irc.example", 6667)),
        ("irc.example:6697", ("irc.example", 6697)),
        ("[::1]:7000", ("::1", 7000)),
        ("[::1]", ("::1", 6667)),
        ("::1", ("::1", 6667)),
    ],
)
def test_parse_address(text: str | None, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host:0", "host:99999", "host:http", "[::1"])
def test_parse_address_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_sanitize_strips_formatting_and_shows_terminal_escapes() -> None:
    shown = sanitize("\x02bold\x02 \x0304,12red\x03 \x1b[2Jclear\x07 \x9b2J \x7f\rcr\x08")
    assert shown == r"bold red \x1b[2Jclear\x07 \x9b2J \x7f\x0dcr\x08"


@pytest.mark.parametrize(
    ("char", "shown"),
    [(chr(c), f"\\u{c:04x}") for c in range(0x202A, 0x202F)]  # LRE RLE PDF LRO RLO
    + [(chr(c), f"\\u{c:04x}") for c in range(0x2066, 0x206A)]  # LRI RLI FSI PDI
    + [("\u200e", r"\u200e"), ("\u200f", r"\u200f"), ("\u061c", r"\u061c")]  # LRM RLM ALM
    + [("\u200b", r"\u200b"), ("\u200c", r"\u200c"), ("\u200d", r"\u200d")]  # zero-width
    + [("\u2060", r"\u2060"), ("\ufeff", r"\ufeff")]  # word joiner, BOM
    + [("\u2028", r"\u2028"), ("\U000e0041", r"\U000e0041")],  # line separator, tag char
)
def test_sanitize_shows_bidi_and_invisible_characters(char: str, shown: str) -> None:
    assert sanitize(f"a{char}b") == f"a{shown}b"


def test_sanitize_keeps_printable_text_and_is_idempotent() -> None:
    text = "héllo wörld 日本語 \u00a0nbsp 😀 👍🏽 مرحبا"
    assert sanitize(text) == text
    nasty = "\x1b]0;title\x07 \u202edlrow \u200b \x03"
    assert sanitize(sanitize(nasty)) == sanitize(nasty)
    assert sanitize(nasty).isprintable()
    assert sanitize("tab\there") == "tab here"


def me(nick: str) -> bool:
    return nick.lower() == "me"


@pytest.mark.parametrize(
    ("line", "current", "shown"),
    [
        (":bob!b@h PRIVMSG #t :hi", "#t", "<bob> hi"),
        (":bob!b@h PRIVMSG #other :hi", "#t", "#other <bob> hi"),
        (":bob!b@h PRIVMSG me :psst", "#t", "*bob* psst"),
        (":bob!b@h PRIVMSG #t :\x01ACTION waves\x01", "#t", "* bob waves"),
        (":bob!b@h PRIVMSG me :\x01VERSION\x01", "#t", "-- CTCP VERSION from bob"),
        (":bob!b@h PRIVMSG me :\x01PING 123\x01", "#t", "-- CTCP PING 123 from bob"),
        (":bob!b@h PRIVMSG #t :\x01CLIENTINFO\x01", "#t", "-- CTCP CLIENTINFO from bob to #t"),
        (":bob!b@h PRIVMSG me :\x01DCC SEND x 1 2\x01", "#t", "-- CTCP DCC SEND x 1 2 from bob"),
        (
            ":bob!b@h NOTICE me :\x01VERSION irssi 1.4\x01",
            "#t",
            "-- CTCP VERSION reply from bob: irssi 1.4",
        ),
        (":bob!b@h PRIVMSG me :\x01ACTION no closing", "#t", "* bob no closing"),
        (":bob!b@h PRIVMSG #t :\x1b[2J\u202eevil", "#t", "<bob> \\x1b[2J\\u202eevil"),
        (":b\u202eob!b@h PRIVMSG #t :hi", "#t", "<b\\u202eob> hi"),
        (":bob!b@h PRIVMSG #t\u202e :hi", "#t", "#t\\u202e <bob> hi"),
        (":bob!b@h TOPIC #t :\x1b[31mred", "#t", "-- bob changed the topic of #t to: \\x1b[31mred"),
        (":irc 301 me bob :gone fishing", "#t", "-- bob is away: gone fishing"),
        (":bob!b@h NOTICE me :note", "#t", "-bob- note"),
        (":irc.test NOTICE * :*** Looking up", None, "-irc.test- *** Looking up"),
        (":bob!b@h NOTICE #other :fyi", "#t", "-bob:#other- fyi"),
        (":bob!b@h JOIN #t", "#t", "--> bob (b@h) joined #t"),
        (":bob!b@h PART #t :later", "#t", "<-- bob left #t (later)"),
        (":bob!b@h QUIT :Quit: gone", "#t", "<-- bob quit (Quit: gone)"),
        (":bob!b@h NICK bobby", "#t", "-- bob is now known as bobby"),
        (":op!o@h KICK #t bob :behave", "#t", "<-- bob was kicked from #t by op (behave)"),
        (":bob!b@h TOPIC #t :new topic", "#t", "-- bob changed the topic of #t to: new topic"),
        (":op!o@h MODE #t +o bob", "#t", "-- op sets mode +o bob on #t"),
        (":irc 433 me bob :Nickname is already in use", "#t", "! bob: Nickname is already in use"),
        (":irc 421 me FOO :Unknown command", "#t", "! FOO: Unknown command"),
        (":irc 464 * :Password incorrect", None, "! Password incorrect"),
        (":irc 332 me #t :the topic", "#t", "-- topic of #t: the topic"),
        (":irc 353 me = #t :@op bob me", "#t", "-- names #t: @op bob me"),
        ("ERROR :Closing link", None, "! Closing link"),
        (":irc 366 me #t :End of /NAMES list", "#t", None),
        ("PING :x", None, None),
        ("@+typing=active :bob!b@h TAGMSG #t", "#t", None),
        ("@label=r1 :irc ACK", "#t", None),
        (":irc BATCH +x labeled-response", "#t", None),
        (":irc 322 me #t 3 :the topic", "#t", "-- list #t (3): the topic"),
        (":irc 323 me :End of /LIST", "#t", None),
        (
            ":irc FAIL BATCH MULTILINE_MAX_BYTES 4096 :Multiline batch max-bytes exceeded",
            "#t",
            "! BATCH MULTILINE_MAX_BYTES 4096: Multiline batch max-bytes exceeded",
        ),
        (
            ":irc WARN REHASH CERTS_EXPIRED :Certificate expired",
            "#t",
            "-- REHASH CERTS_EXPIRED: Certificate expired",
        ),
    ],
)
def test_render(line: str, current: str | None, shown: str | None) -> None:
    assert render(parse_message(line), is_me=me, current=current) == shown


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("\x01VERSION\x01", ("VERSION", "")),
        ("\x01ping 123 456\x01", ("PING", "123 456")),
        ("\x01ACTION unterminated", ("ACTION", "unterminated")),
        ("plain", None),
        ("\x01", None),
        ("\x01\x01", None),
        ("\x01 x\x01", None),
    ],
)
def test_parse_ctcp(text: str, parsed: tuple[str, str] | None) -> None:
    assert parse_ctcp(text) == parsed


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (59, "59s"),
        (192, "3m 12s"),
        (3600, "1h 0m 0s"),
        (90061, "1d 1h 1m 1s"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: int, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_ctcp_limiter_one_reply_per_sender_and_a_few_in_all() -> None:
    now = [100.0]
    limiter = _CtcpLimiter(interval=5.0, burst=3, clock=lambda: now[0])
    assert limiter.allow("bob")
    assert not limiter.allow("bob")  # the same sender within the interval
    assert limiter.allow("carol") and limiter.allow("dave")
    assert not limiter.allow("eve")  # three in all within the interval
    now[0] += 4.9
    assert not limiter.allow("bob") and not limiter.allow("eve")
    now[0] += 0.1
    assert limiter.allow("bob") and limiter.allow("eve")


def _whois_block(*lines: str) -> list[str] | None:
    collector = _WhoisCollector(str.lower)
    result: list[str] | None = None
    for line in lines:
        result = collector.feed(parse_message(line))
        if line != lines[-1]:
            assert result == [], line  # taken, nothing to show until the end
    return result


def test_whois_replies_become_one_block() -> None:
    signon = 1767225600
    block = _whois_block(
        ":irc 311 me Bob ~bob host.example * :Bob the Builder",
        ":irc 319 me Bob :@#t +#u",
        ":irc 319 me Bob :#v",
        ":irc 312 me Bob irc.test :Test server",
        ":irc 313 me Bob :is an IRC operator",
        ":irc 301 me Bob :gone fishing",
        ":irc 330 me Bob bobacct :is logged in as",
        ":irc 378 me Bob :is connecting from *@host.example 192.0.2.1",
        f":irc 317 me Bob 192 {signon} :seconds idle, signon time",
        ":irc 318 me bob :End of /WHOIS list",
    )
    local = datetime.fromtimestamp(signon).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    assert block == [
        "-- whois Bob",
        "   nick:     Bob",
        "   user:     ~bob@host.example",
        "   realname: Bob the Builder",
        "   channels: @#t +#u #v",
        "   server:   irc.test (Test server)",
        "   idle:     3m 12s",
        f"   signon:   {local}",
        "   away:     yes: gone fishing",
        "   operator: yes",
        "   info:     logged in as bobacct",
        "   info:     is connecting from *@host.example 192.0.2.1",
    ]


def test_whois_block_of_a_plain_user_says_not_away_not_operator() -> None:
    block = _whois_block(
        ":irc 311 me bob b h * :Bob",
        ":irc 317 me bob 5 :seconds idle",  # the old form, without signon
        ":irc 318 me bob :End of /WHOIS list",
    )
    assert block is not None
    assert "   idle:     5s" in block and not any("signon" in line for line in block)
    assert "   away:     no" in block and "   operator: no" in block
    assert "   channels: none visible" in block


def test_numerics_outside_a_whois_are_left_to_render() -> None:
    collector = _WhoisCollector(str.lower)
    for line in [
        ":irc 301 me bob :away",  # after a PRIVMSG to someone away
        ":irc 401 me nobody :No such nick/channel",
        ":irc 318 me nobody :End of /WHOIS list",
        ":irc 001 me :Welcome",
    ]:
        assert collector.feed(parse_message(line)) is None


def test_whois_collector_is_bounded() -> None:
    collector = _WhoisCollector(str.lower)
    for i in range(100):  # WHOIS starts that never end
        collector.feed(parse_message(f":irc 311 me n{i} u h * :r"))
    assert len(collector._pending) == _WhoisCollector.MAX_PENDING
    for _ in range(100):
        collector.feed(parse_message(":irc 319 me n99 :" + " ".join(f"#c{i}" for i in range(50))))
        collector.feed(parse_message(":irc 671 me n99 :is using a secure connection"))
    block = collector.feed(parse_message(":irc 318 me n99 :End"))
    assert block is not None and len(block) < 40
    assert len(block[4]) < 20 * _WhoisCollector.MAX_CHANNELS


def multiline_batch(*lines: str, source: str = "bob!b@h", target: str = "#t") -> Batch:
    items = [parse_message(f"@batch=1 :{source} PRIVMSG {target} :{line}") for line in lines]
    return Batch("1", "draft/multiline", [target], {"msgid": "m1"}, source, list(items), True)


def test_render_lines_shows_a_multiline_message_under_its_first_line() -> None:
    msg = multiline_batch("first", "", "\x1b[2Jthird").multiline()
    assert msg is not None
    assert render_lines(msg, is_me=me, current="#t") == [
        "<bob> first",
        "      ",
        "      \\x1b[2Jthird",
    ]
    other = multiline_batch("a", "b", target="#u").multiline()
    assert other is not None
    assert render_lines(other, is_me=me, current="#t") == ["#u <bob> a", "         b"]
    one = parse_message(":bob!b@h PRIVMSG #t :just one")
    assert render_lines(one, is_me=me, current="#t") == ["<bob> just one"]
    assert render_lines(parse_message("PING x"), is_me=me, current=None) is None


def reply(*lines: str) -> list[Message]:
    return [parse_message(line) for line in lines]


def test_render_reply_names_who_and_list() -> None:
    names = reply(
        ":irc 353 me = #t :@op bob",
        ":irc 353 me = #t :me",
        ":irc 366 me #t :End of /NAMES list",
    )
    assert render_reply("NAMES", "#t", names, is_me=me, current="#t") == [
        ["-- names #t (3): @op bob me"]
    ]
    empty = reply(":irc 366 me #nowhere :End of /NAMES list")
    assert render_reply("NAMES", "#nowhere", empty, is_me=me, current=None) == [
        ["-- names #nowhere (0): nobody visible"]
    ]
    who = reply(
        ":irc 352 me #t ~bob host irc bob H@ :0 Bob the Builder",
        ":irc 352 me * ~me host irc me G :0 Me",
        ":irc 315 me #t :End of /WHO list",
    )
    assert render_reply("WHO", "#t", who, is_me=me, current="#t") == [
        ["-- who #t", "   #t bob (~bob@host) H@ Bob the Builder", "   me (~me@host) G Me"]
    ]
    assert render_reply(
        "WHO", "nobody", reply(":irc 315 me nobody :End"), is_me=me, current=None
    ) == [["-- who nobody: nobody"]]
    listing = reply(
        ":irc 321 me Channel :Users Name",
        ":irc 322 me #t 3 :the topic",
        ":irc 322 me #u 1 :",
        ":irc 323 me :End of /LIST",
    )
    assert render_reply("LIST", "", listing, is_me=me, current=None) == [
        ["-- channels (2)", "   #t (3): the topic", "   #u (1)"]
    ]
    assert render_reply("LIST", "", reply(":irc 323 me :End"), is_me=me, current=None) == [
        ["-- no channels"]
    ]


def test_render_reply_whois_and_its_errors() -> None:
    found = reply(
        ":irc 311 me bob ~b h * :Bob",
        ":irc 318 me bob :End of /WHOIS list",
    )
    (block,) = render_reply("WHOIS", "bob", found, is_me=me, current=None)
    assert block[0] == "-- whois bob" and "   realname: Bob" in block
    missing = reply(
        ":irc 401 me nobody :No such nick/channel",
        ":irc 318 me nobody :End of /WHOIS list",
    )
    assert render_reply("WHOIS", "nobody", missing, is_me=me, current=None) == [
        ["! nobody: No such nick/channel"]
    ]


def test_session_shows_a_multiline_batch_as_one_message() -> None:
    lines: list[str] = []
    session = ChatSession(Connection(HOST, 1, "me"), lines.append, clock=lambda: 0.0)
    session.handle_message(multiline_batch("line one", "line two"))
    (shown,) = lines
    first, second = shown.split("\n")
    assert re.fullmatch(STAMP + "#t <bob> line one", first)  # #t: not the current target
    assert second == " " * first.index("line one") + "line two"  # under the text
    # any other batch: its messages one by one
    netsplit = Batch(
        "n",
        "netsplit",
        ["a", "b"],
        items=[parse_message(":x!x@h QUIT :a b"), parse_message(":y!y@h QUIT :a b")],
    )
    session.handle_message(netsplit)
    assert [line[len("[HH:MM] ") :] for line in lines[1:]] == [
        "<-- x quit (a b)",
        "<-- y quit (a b)",
    ]


# -- command handling against a real server ------------------------------------------


def start_chat(port: int, **kwargs: Any) -> tuple[ChatSession, list[str], Connection]:
    lines: list[str] = []
    conn = Connection(HOST, port, "me", **kwargs)
    session = ChatSession(conn, lines.append)
    conn.on_message(session.handle_message)
    conn.connect()
    return session, lines, conn


@pytest.fixture
def chat(irc_server: Any) -> Iterator[tuple[ChatSession, list[str], Connection]]:
    session, lines, conn = start_chat(irc_server.port)
    try:
        yield session, lines, conn
    finally:
        conn.close()


@pytest.fixture(params=["labels", "plain"])
def chat_modes(
    request: pytest.FixtureRequest, irc_server: Any
) -> Iterator[tuple[ChatSession, list[str], Connection]]:
    """The session with labeled-response (replies come whole) and without (caps=():
    replies come one by one, as from a server without it)."""
    caps = None if request.param == "labels" else ()
    session, lines, conn = start_chat(irc_server.port, caps=caps)
    assert conn.supports_labels == (request.param == "labels")
    try:
        yield session, lines, conn
    finally:
        conn.close()


def test_session_commands_and_errors(chat: Any, irc_server: Any) -> None:
    session, lines, conn = chat
    session.handle_input("hello?")
    session.handle_input("/frobnicate")
    session.handle_input("/part")
    assert all(re.match(STAMP, line) for line in lines)
    assert [line[len("[HH:MM] ") :] for line in lines[-3:]] == [
        "! no current channel: /join one or /msg someone",
        "! unknown command /frobnicate (try /help)",
        "! usage: /part [#channel] [reason]",
    ]

    with connect(HOST, irc_server.port, "bob") as bob:
        session.handle_input("/join t")  # the # is added
        conn.wait_for(from_nick("me", "JOIN"))
        bob.join("#t")
        conn.wait_for(from_nick("bob", "JOIN"))
        assert session.target == "#t" and session.prompt() == "#t> "
        session.handle_input("//slash is literal")
        got = bob.wait_for(from_nick("me", "PRIVMSG"))
        assert got.params == ["#t", "/slash is literal"]
        session.handle_input("/raw PRIVMSG bob :raw line")
        assert bob.wait_for(from_nick("me", "PRIVMSG")).params == ["bob", "raw line"]
        session.handle_input("/part #t bye now")
        part = bob.wait_for(from_nick("me", "PART"))
        assert part.params[0] == "#t"
        conn.wait_for(from_nick("me", "PART"))
        assert session.target is None and session.prompt() == "> "


def round_trip(conn: Connection, seen: list[Message]) -> None:
    """PING the server and wait for its PONG, keeping in ``seen`` what came before it:
    once it is back, everything the server sent this connection earlier has arrived."""

    def keep(msg: Message) -> bool:
        seen.append(msg)
        return msg.command == "PONG"

    conn.send("PING", "sync")
    conn.wait_for(keep)


def test_session_answers_ctcp_version_and_ping_at_most_once_per_sender(
    chat: Any, irc_server: Any
) -> None:
    session, lines, conn = chat
    with (
        connect(HOST, irc_server.port, "bob") as bob,
        connect(HOST, irc_server.port, "carol") as carol,
    ):
        to_bob: list[Message] = []
        for text in ["\x01VERSION\x01", "\x01VERSION\x01", "\x01PING 1\x01", "\x01FINGER\x01"]:
            bob.privmsg("me", text)
        round_trip(bob, to_bob)  # the server has passed all four on to me
        carol.privmsg("me", "\x01PING tok en\x01")  # so this reaches me after them
        assert carol.wait_for(from_nick("me", "NOTICE")).params == ["carol", "\x01PING tok en\x01"]
        round_trip(bob, to_bob)  # my replies to bob left before the one to carol
        replies = [m.params[-1] for m in to_bob if from_nick("me", "NOTICE")(m)]
        assert replies == [f"\x01VERSION relaychat {__version__}\x01"]  # only the first
        wait_for(lambda: any("CTCP FINGER from bob" in line for line in lines))
        assert sum("CTCP VERSION from bob" in line for line in lines) == 2  # both shown


def test_session_never_answers_ctcp_in_a_notice(chat: Any, irc_server: Any) -> None:
    session, lines, conn = chat
    with connect(HOST, irc_server.port, "bob") as bob:
        bob.notice("me", "\x01VERSION\x01")
        bob.privmsg("me", "\x01PING after\x01")
        # the first NOTICE bob gets is the answer to the PING, not to the NOTICE before it
        assert bob.wait_for(from_nick("me", "NOTICE")).params == ["bob", "\x01PING after\x01"]


def test_session_shows_whois_as_one_block(chat_modes: Any, irc_server: Any) -> None:
    session, lines, conn = chat_modes
    with connect(HOST, irc_server.port, "bob", realname="Bob the Builder") as bob:
        bob.join("#t")
        bob.send("AWAY", "gone fishing")
        bob.wait_for(lambda m: m.command == "306")
        session.handle_input("/whois bob")
        wait_for(lambda: any("whois bob" in line for line in lines))
    block = next(line for line in lines if "whois bob" in line).split("\n")
    assert re.match(STAMP + "-- whois bob$", block[0])
    body = [line.strip() for line in block[1:]]
    assert body[:5] == [
        "nick:     bob",
        "user:     ~bob@127.0.0.1",
        "realname: Bob the Builder",
        "channels: @#t",
        "server:   irc.relaychat.local (relaychat IRC server)",
    ]
    assert re.fullmatch(r"idle:     (\d+[dhm] )*\d+s", body[5])
    assert re.fullmatch(r"signon:   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", body[6])
    assert body[7:] == ["away:     yes: gone fishing", "operator: no"]
    assert not any(re.search(r"\b31\d\b|End of /WHOIS", line) for line in lines)


def test_session_whois_of_nobody_is_one_error(chat_modes: Any, irc_server: Any) -> None:
    session, lines, conn = chat_modes
    session.handle_input("/whois nobody")
    wait_for(lambda: any("nobody" in line for line in lines))
    round_trip(conn, [])  # anything else the reply would show is shown by now
    shown = [line for line in lines if "nobody" in line or "WHOIS" in line]
    assert len(shown) == 1 and shown[0].endswith("! nobody: No such nick/channel")


def test_session_shows_names_who_and_list_replies(chat_modes: Any, irc_server: Any) -> None:
    session, lines, conn = chat_modes
    labels = conn.supports_labels
    with connect(HOST, irc_server.port, "bob", realname="Bob the Builder") as bob:
        session.handle_input("/join #t")
        conn.wait_for(from_nick("me", "JOIN"))
        bob.join("#t")
        conn.wait_for(from_nick("bob", "JOIN"))
        session.handle_input("/topic the topic")
        conn.wait_for(from_nick("me", "TOPIC"))
        del lines[:]
        for command in ("/names", "/who", "/list"):
            session.handle_input(command)
        round_trip(conn, [])  # the three replies are in and shown
        shown = [line[len("[HH:MM] ") :] for line in lines]
    if labels:  # whole replies
        assert shown == [
            "-- names #t (2): @me bob",
            "-- who #t\n"
            + " " * 8
            + "   #t me (~me@127.0.0.1) H@ me\n"
            + " " * 8
            + "   #t bob (~bob@127.0.0.1) H Bob the Builder",
            "-- channels (1)\n" + " " * 8 + "   #t (2): [+nt] the topic",
        ]
    else:  # one line per reply, as they come
        assert shown == [
            "-- names #t: @me bob",
            "-- who #t: me (~me@127.0.0.1) H@ me",
            "-- who #t: bob (~bob@127.0.0.1) H Bob the Builder",
            "-- list #t (2): [+nt] the topic",
        ]


def test_multiline_input_reaches_a_client_without_the_cap_line_by_line(
    chat: Any, irc_server: Any
) -> None:
    """The chat client sends a draft/multiline batch (relaychat offers it); bob,
    without the capability, gets the server's fallback: each non-blank line."""
    session, lines, conn = chat
    assert conn.multiline_limits is not None
    with connect(HOST, irc_server.port, "bob", caps=()) as bob:
        session.handle_input("/join #t")
        conn.wait_for(from_nick("me", "JOIN"))
        bob.join("#t")
        conn.wait_for(from_nick("bob", "JOIN"))
        del lines[:]
        session.handle_input("first line\n\nsecond line")
        got = [bob.wait_for(from_nick("me", "PRIVMSG")).params for _ in range(2)]
        assert got == [["#t", "first line"], ["#t", "second line"]]
        (shown,) = lines  # shown once, as one block of what was sent
    first, blank, second = shown.split("\n")  # shown as sent: one message, blank line kept
    assert re.fullmatch(STAMP + "<me> first line", first)
    assert not blank.strip() and second == " " * first.index("first") + "second line"


def test_session_speaks_multiline_with_a_server_that_offers_it(scripted_peer: Any) -> None:
    lines: list[str] = []
    conn = Connection(HOST, scripted_peer.port, "me")
    session = ChatSession(conn, lines.append)
    conn.on_message(session.handle_message)
    with ThreadPoolExecutor(1) as pool:
        connecting = pool.submit(conn.connect)
        peer = scripted_peer.accept()
        peer.expect("CAP LS")
        peer.send_line(":irc.test CAP * LS :batch draft/multiline=max-bytes=4096,max-lines=24")
        peer.expect("CAP REQ")
        peer.send_line(":irc.test CAP me ACK :batch draft/multiline")
        peer.expect("CAP END")
        peer.send_line(":irc.test 001 me :Welcome")
        connecting.result(10)
    try:
        session.handle_input("/msg bob roses are red\nviolets are blue")
        assert [peer.read_line() for _ in range(4)] == [
            "BATCH +m1 draft/multiline bob",
            "@batch=m1 PRIVMSG bob :roses are red",
            "@batch=m1 PRIVMSG bob :violets are blue",
            "BATCH -m1",
        ]
        for line in [
            "@msgid=x :bob!b@h BATCH +7 draft/multiline me",
            "@batch=7 :bob!b@h PRIVMSG me :sugar is sweet",
            "@batch=7 :bob!b@h PRIVMSG me :and so ",
            "@batch=7;draft/multiline-concat :bob!b@h PRIVMSG me :are you",
            ":irc.test BATCH -7",
        ]:
            peer.send_line(line)
        wait_for(lambda: any("sugar" in line for line in lines))
        sent, received = lines[-2:]
        assert sent.split("\n")[1].strip() == "violets are blue"
        assert [line.strip() for line in received.split("\n")][1] == "and so are you"
        assert received.split("\n")[0].endswith("*bob* sugar is sweet")
    finally:
        peer.close()
        conn.close()


def test_session_shows_a_sent_line_once_even_with_echo_message(irc_server: Any) -> None:
    lines: list[str] = []
    conn = Connection(HOST, irc_server.port, "me", caps=("echo-message",))
    session = ChatSession(conn, lines.append)
    conn.on_message(session.handle_message)
    conn.connect()
    try:
        assert "echo-message" in conn.enabled_caps  # the server does echo our lines
        with connect(HOST, irc_server.port, "bob") as bob:
            session.handle_input("/join #t")
            conn.wait_for(from_nick("me", "JOIN"))
            bob.join("#t")
            conn.wait_for(from_nick("bob", "JOIN"))
            session.handle_input("said once")
            session.handle_input("/me acted once")
            session.handle_input("/msg bob whispered once")
            bob.wait_for(lambda m: m.params == ["bob", "whispered once"])
            bob.privmsg("#t", "marker")  # after my three lines and their echoes
            wait_for(lambda: any("<bob> marker" in line for line in lines))
        shown = "\n".join(lines)
        assert shown.count("said once") == 1
        assert shown.count("acted once") == 1
        assert shown.count("whispered once") == 1
    finally:
        conn.close()


# -- the program in a pty ----------------------------------------------------------------


class Terminal:
    """``python -m relaychat.client.tui`` on a pty, read and typed into with pexpect.

    The pty comes from ``os.openpty`` and the child from ``subprocess``, not from
    ``pexpect.spawn``: that uses ``forkpty()``, which is unsafe (and warns, from 3.12)
    in a multi-threaded process like this one, with servers and readers running.
    """

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "relaychat.client.tui", *args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm"),
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self.pty = fdspawn(master, encoding="utf-8", timeout=15)

    def exit_status(self) -> int:
        """Wait for the program to end (its output to reach EOF); its exit status."""
        self.pty.expect(pexpect.EOF)
        return self.proc.wait(15)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(15)
        self.pty.close()


@pytest.fixture
def terminal(child_env: dict[str, str]) -> Iterator[Callable[..., Terminal]]:
    """``terminal(*args)`` -> the pexpect handle of a running terminal client."""
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        term = Terminal(list(args), child_env)
        started.append(term)
        return term

    yield start
    for term in started:
        term.close()


def test_tui_full_duplex_session(irc_server: Any, terminal: Any) -> None:
    term = terminal("--nick", "tuiuser", f"{HOST}:{irc_server.port}")
    child = term.pty
    child.expect("connected;")
    child.sendline("/join #t")
    child.expect("#t>")  # the prompt follows the current channel
    with connect(HOST, irc_server.port, "bob") as bob:
        bob.join("#t")
        child.expect(STAMP + "--> bob")

        child.send("half typed")  # no Enter: the line stays pending
        child.expect("half typed")
        bob.privmsg("#t", "hello from bob")
        child.expect(STAMP + "<bob> hello from bob")
        child.expect("#t> half typed")  # redrawn below the incoming line
        child.send(" and done\r")
        said = bob.wait_for(from_nick("tuiuser", "PRIVMSG"))
        assert said.params == ["#t", "half typed and done"]
        child.expect(STAMP + "<tuiuser> half typed and done")

        bob.action("#t", "waves")
        child.expect(STAMP + r"\* bob waves")
        child.sendline("/me dances")
        assert bob.wait_for(from_nick("tuiuser", "PRIVMSG")).params == [
            "#t",
            "\x01ACTION dances\x01",
        ]
        child.sendline("/msg bob psst")
        assert bob.wait_for(from_nick("tuiuser", "PRIVMSG")).params == ["bob", "psst"]
        bob.privmsg("tuiuser", "private reply")
        child.expect(STAMP + r"\*bob\* private reply")

        child.sendline("/nick bob")
        child.expect(STAMP + "! bob: ")  # 433, rendered as an error

        child.sendline("/quit off to bed")
        quit_msg = bob.wait_for(from_nick("tuiuser", "QUIT"))
        assert "off to bed" in quit_msg.params[-1]
        assert term.exit_status() == 0


def join_with_bob(term: Terminal, port: int) -> Connection:
    """The terminal joins #t, then bob (returned, connected) joins it too."""
    term.pty.expect("connected;")
    term.pty.sendline("/join #t")
    term.pty.expect("#t>")
    bob = connect(HOST, port, "bob", realname="Bob the Builder")
    bob.join("#t")
    term.pty.expect(STAMP + "--> bob")
    return bob


def test_tui_shows_whois_as_one_readable_block(irc_server: Any, terminal: Any) -> None:
    term = terminal("--nick", "tuiuser", f"{HOST}:{irc_server.port}")
    with join_with_bob(term, irc_server.port) as bob:
        bob.send("AWAY", "gone fishing")
        bob.wait_for(lambda m: m.command == "306")
        term.pty.sendline("/whois bob")
        term.pty.expect(STAMP + "-- whois bob\r\n")
        for row in [
            r"nick:     bob",
            r"user:     ~bob@127\.0\.0\.1",
            r"realname: Bob the Builder",
            r"channels: #t",
            r"server:   irc\.relaychat\.local \(relaychat IRC server\)",
            r"idle:     (\d+[dhm] )*\d+s",
            r"signon:   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+",
            r"away:     yes: gone fishing",
            r"operator: no",
        ]:
            term.pty.expect(r" +" + row + "\r\n")
            assert term.pty.before == ""  # one row after the other, nothing in between
        bob.privmsg("#t", "marker")
        term.pty.expect(STAMP + "<bob> marker")
        assert "End of /WHOIS" not in term.pty.before and "seconds idle" not in term.pty.before
    term.pty.sendline("/quit")
    assert term.exit_status() == 0


def test_tui_sends_and_shows_multiline_input_and_labeled_replies(
    irc_server: Any, terminal: Any
) -> None:
    term = terminal("--nick", "tuiuser", f"{HOST}:{irc_server.port}")
    with join_with_bob(term, irc_server.port) as bob:
        term.pty.send("roses are red\x1b\rviolets are blue\r")  # Alt+Enter, then Enter
        batch = bob.wait_for(lambda m: m.command == "BATCH")  # bob has draft/multiline
        whole = batch.multiline()
        assert whole is not None and whole.params == ["#t", "roses are red\nviolets are blue"]
        term.pty.expect(STAMP + "<tuiuser> roses are red\r\n +violets are blue\r\n")
        term.pty.sendline("/names")
        term.pty.expect(STAMP + r"-- names #t \(2\): @tuiuser bob")
        term.pty.sendline("/list")
        term.pty.expect(STAMP + r"-- channels \(1\)\r\n +#t \(2\)")
        bob.privmsg("#t", "marker")
        term.pty.expect(STAMP + "<bob> marker")
        assert "End of" not in term.pty.before
    term.pty.sendline("/quit")
    assert term.exit_status() == 0


def test_tui_answers_ctcp_version_and_ping_and_shows_the_rest(
    irc_server: Any, terminal: Any
) -> None:
    term = terminal("--nick", "tuiuser", f"{HOST}:{irc_server.port}")
    with join_with_bob(term, irc_server.port) as bob:
        bob.privmsg("tuiuser", "\x01CLIENTINFO\x01")  # shown, never answered
        bob.privmsg("tuiuser", "\x01VERSION\x01")
        reply = bob.wait_for(from_nick("tuiuser", "NOTICE"))  # the first is the VERSION reply
        assert reply.params == ["bob", f"\x01VERSION relaychat {__version__}\x01"]
        term.pty.expect(STAMP + "-- CTCP CLIENTINFO from bob")
        term.pty.expect(STAMP + "-- CTCP VERSION from bob")
        with connect(HOST, irc_server.port, "carol") as carol:
            carol.join("#t")
            carol.privmsg("#t", "\x01PING 1735689600 123456\x01")
            reply = carol.wait_for(from_nick("tuiuser", "NOTICE"))
            assert reply.params == ["carol", "\x01PING 1735689600 123456\x01"]
            term.pty.expect(STAMP + "-- CTCP PING 1735689600 123456 from carol to #t")
        bob.action("#t", "waves")
        term.pty.expect(STAMP + r"\* bob waves")
    term.pty.sendline("/quit")
    assert term.exit_status() == 0


def test_tui_shows_a_sent_line_exactly_once(irc_server: Any, terminal: Any) -> None:
    term = terminal("--nick", "tuiuser", f"{HOST}:{irc_server.port}")
    with join_with_bob(term, irc_server.port) as bob:
        term.pty.sendline("only once please")
        assert bob.wait_for(from_nick("tuiuser", "PRIVMSG")).params == ["#t", "only once please"]
        term.pty.sendline("/me nods once")
        bob.wait_for(from_nick("tuiuser", "PRIVMSG"))
        bob.privmsg("#t", "marker")  # reaches the terminal after any echo of its lines
        term.pty.expect(STAMP + "<bob> marker")
        assert term.pty.before.count("<tuiuser> only once please") == 1
        assert term.pty.before.count("* tuiuser nods once") == 1
    term.pty.sendline("/quit")
    assert term.exit_status() == 0


def test_tui_neutralises_terminal_escapes_and_bidi_controls(irc_server: Any, terminal: Any) -> None:
    term = terminal("--nick", "tuiuser", f"{HOST}:{irc_server.port}")
    seen = io.StringIO()
    term.pty.logfile_read = seen
    with join_with_bob(term, irc_server.port) as bob:
        bob.privmsg("#t", "clear\x1b[2Jscreen \u202eevil\u202c \u2066x\u2069 zero\u200bwidth\ufeff")
        term.pty.expect_exact(
            r"<bob> clear\x1b[2Jscreen \u202eevil\u202c \u2066x\u2069 zero\u200bwidth\ufeff"
        )
        bob.notice("tuiuser", "\x1b[1A\x1b[2Kup and erase")
        term.pty.expect_exact(r"-bob- \x1b[1A\x1b[2Kup and erase")
        bob.part("#t", "\x1b]0;window title\x07bye")
        term.pty.expect_exact(r"<-- bob left #t (\x1b]0;window title\x07bye)")
    output = seen.getvalue()
    for raw in ["\x1b[2J", "\x1b]0;", "\x1b[1A", "\x07", "\u202e", "\u2066", "\u200b", "\ufeff"]:
        assert raw not in output, raw
    term.pty.sendline("/quit")
    assert term.exit_status() == 0


def test_tui_bye_exits_zero(irc_server: Any, terminal: Any) -> None:
    term = terminal("--nick", "byer", f"{HOST}:{irc_server.port}")
    term.pty.expect("connected;")
    term.pty.sendline("/bye")
    assert term.exit_status() == 0


def test_tui_exits_one_when_the_server_dies(server_process: Any, terminal: Any) -> None:
    term = terminal("--nick", "victim", server_process.address)
    term.pty.expect("connected;")
    term.pty.send("unsent")
    term.pty.expect("unsent")
    server_process.kill()
    term.pty.expect("! disconnected")
    assert term.exit_status() == 1


def test_tui_reports_a_refused_connection(terminal: Any) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    term = terminal("--nick", "x", f"{HOST}:{port}")
    term.pty.expect(STAMP + f"! cannot connect to {HOST}:{port}")
    assert term.exit_status() == 1


def test_tui_refuses_to_run_without_a_terminal(child_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relaychat.client.tui", "127.0.0.1:1"],
        env=child_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"needs a terminal" in result.stderr


# -- SASL login --------------------------------------------------------------------------

SECRET = "s3cret-Horse-7"


def sasl_terminal(
    child_env: dict[str, str], *args: str, env: dict[str, str] | None = None
) -> Terminal:
    environment = {k: v for k, v in child_env.items() if k != "RELAYCHAT_PASSWORD"}
    term = Terminal(list(args), dict(environment, **(env or {})))
    term.pty.logfile_read = io.StringIO()  # everything the terminal showed
    return term


def play_plain_login(peer: Any, account: str, *, succeed: bool = True) -> bytes:
    """Play a server offering sasl=PLAIN through the login; the decoded response."""
    peer.expect("CAP LS")
    peer.send_line(":irc.test CAP * LS :sasl=PLAIN")
    assert peer.expect("CAP REQ") == "CAP REQ sasl"
    peer.send_line(":irc.test CAP alice ACK :sasl")
    peer.expect("AUTHENTICATE PLAIN")
    peer.send_line("AUTHENTICATE +")
    response = base64.b64decode(peer.expect("AUTHENTICATE ").split()[1])
    if not succeed:
        peer.send_line(":irc.test 904 alice :SASL authentication failed")
        return response
    peer.send_line(f":irc.test 900 alice alice!a@h {account} :You are now logged in as {account}")
    peer.send_line(":irc.test 903 alice :SASL authentication successful")
    peer.expect("CAP END")
    peer.send_line(":irc.test 001 alice :Welcome")
    return response


def test_tui_account_password_from_a_prompt_is_never_shown(
    scripted_peer: Any, child_env: dict[str, str]
) -> None:
    term = sasl_terminal(
        child_env, "--nick", "alice", "--account", "alice", f"{HOST}:{scripted_peer.port}"
    )
    try:
        term.pty.expect("Password for alice: ")
        term.pty.send(SECRET + "\r")
        peer = scripted_peer.accept()
        assert play_plain_login(peer, "alice") == f"\0alice\0{SECRET}".encode()
        term.pty.expect(STAMP + "-- logged in as alice")
        term.pty.expect("connected;")
        term.pty.sendline("/quit")
        peer.expect("QUIT")
        peer.close()
        assert term.exit_status() == 0
        shown = term.pty.logfile_read.getvalue()
        assert "Password for alice" in shown and SECRET not in shown
    finally:
        term.close()


def test_tui_failed_login_from_a_password_file_exits_one(
    scripted_peer: Any, child_env: dict[str, str], tmp_path: Any
) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    term = sasl_terminal(
        child_env,
        "--nick",
        "alice",
        "--account",
        "alice",
        "--password-file",
        str(secret_file),
        f"{HOST}:{scripted_peer.port}",
        env={"RELAYCHAT_PASSWORD": "not-this-one"},
    )
    try:
        peer = scripted_peer.accept()
        assert play_plain_login(peer, "alice", succeed=False) == f"\0alice\0{SECRET}".encode()
        term.pty.expect(STAMP + "! cannot connect to .*: SASL 904: SASL authentication failed")
        assert term.exit_status() == 1
        assert SECRET not in term.pty.logfile_read.getvalue()
    finally:
        term.close()


def test_tui_account_password_from_the_environment(
    scripted_peer: Any, child_env: dict[str, str]
) -> None:
    term = sasl_terminal(
        child_env,
        "--nick",
        "alice",
        "--account",
        "bob",
        f"{HOST}:{scripted_peer.port}",
        env={"RELAYCHAT_PASSWORD": SECRET},
    )
    try:
        peer = scripted_peer.accept()
        assert play_plain_login(peer, "bob") == f"\0bob\0{SECRET}".encode()
        term.pty.expect(STAMP + "-- logged in as bob")
        term.pty.expect("connected;")
        assert "Password for" not in term.pty.logfile_read.getvalue()
        term.pty.sendline("/quit")
        peer.expect("QUIT")
        peer.close()
        assert term.exit_status() == 0
        assert SECRET not in term.pty.logfile_read.getvalue()
    finally:
        term.close()


def test_render_shows_login_and_hides_the_sasl_chatter() -> None:
    def me(nick: str) -> bool:
        return nick == "alice"

    def shown(line: str) -> str | None:
        return render(parse_message(line), is_me=me, current=None)

    assert shown(":irc 900 alice alice!a@h bob :You are now logged in as bob") == (
        "-- logged in as bob"
    )
    assert shown(":irc 901 alice alice!a@h :You are now logged out") == "-- logged out"
    for numeric in ("903", "904", "908"):
        assert shown(f":irc {numeric} alice :whatever") is None


def registration_peer(peer: Any) -> None:
    peer.expect("CAP LS")
    peer.send_line(":irc.test CAP * LS :batch labeled-response draft/account-registration")
    peer.expect("CAP REQ")
    peer.send_line(":irc.test CAP me ACK :batch labeled-response draft/account-registration")
    peer.expect("CAP END")
    peer.send_line(":irc.test 001 alice :Welcome")


def test_session_register_asks_for_the_password_and_shows_the_result(scripted_peer: Any) -> None:
    lines: list[str] = []
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return SECRET

    conn = Connection(
        HOST,
        scripted_peer.port,
        "alice",
        caps=("batch", "labeled-response", "draft/account-registration"),
    )
    session = ChatSession(conn, lines.append, ask_secret=ask)
    conn.on_message(session.handle_message)
    with ThreadPoolExecutor(1) as pool:
        connecting = pool.submit(conn.connect)
        peer = scripted_peer.accept()
        registration_peer(peer)
        connecting.result(10)
    try:
        session.handle_input("/register alice a@example.org")
        assert asked == ["Password for the new account alice: "]
        line = parse_message(peer.expect("@label="))
        assert line.params == ["alice", "a@example.org", SECRET]
        peer.send_line(
            f"@label={line.tags['label']} :irc.test REGISTER SUCCESS alice :Account created"
        )
        peer.send_line(":irc.test 900 alice alice!a@h alice :You are now logged in as alice")
        wait_for(lambda: any("logged in as alice" in shown for shown in lines))
        assert any(shown.endswith("-- account alice: success: Account created") for shown in lines)
        session.handle_input("/register bob")
        line = parse_message(peer.expect("@label="))
        assert line.params == ["bob", "*", SECRET]
        peer.send_line(
            f"@label={line.tags['label']} :irc.test FAIL REGISTER ACCOUNT_EXISTS bob :Taken"
        )
        wait_for(lambda: any("ACCOUNT_EXISTS" in shown for shown in lines))
        assert not any(SECRET in shown for shown in lines)
    finally:
        peer.close()
        conn.close()


def test_tui_register_password_prompt_does_not_show_it(
    scripted_peer: Any, child_env: dict[str, str]
) -> None:
    term = sasl_terminal(child_env, "--nick", "alice", f"{HOST}:{scripted_peer.port}")
    try:
        peer = scripted_peer.accept()
        registration_peer(peer)
        term.pty.expect("connected;")
        term.pty.sendline("/register")
        term.pty.expect("Password for the new account alice:")
        term.pty.send(SECRET + "\r")
        line = parse_message(peer.expect("@label="))
        assert line.params == ["alice", "*", SECRET]
        peer.send_line(f"@label={line.tags['label']} :irc.test REGISTER SUCCESS alice :Done")
        term.pty.expect(STAMP + "-- account alice: success: Done")
        term.pty.sendline("/quit")
        peer.expect("QUIT")
        peer.close()
        assert term.exit_status() == 0
        assert SECRET not in term.pty.logfile_read.getvalue()
    finally:
        term.close()


def test_tui_shows_history_dimmed_above_live_lines_and_loads_older(
    irc_server: Any, terminal: Any
) -> None:
    with connect(HOST, irc_server.port, "alice") as alice:
        alice.join("#h")
        alice.wait_for(lambda m: m.command == "366")
        for i in range(8):
            alice.privmsg("#h", f"old {i}")
        alice.request("PING", "stored")  # the server has taken (and stored) them all
        term = terminal("--nick", "tuiuser", "--history", "3", f"{HOST}:{irc_server.port}")
        child = term.pty
        child.expect("connected;")
        child.sendline("/join #h")
        child.expect(STAMP + "— history —")
        for i in range(5, 8):  # dimmed (ANSI faint), with their own times
            child.expect(re.escape("\x1b[2m") + STAMP + f"<alice> old {i}" + re.escape("\x1b[22m"))
        child.expect(STAMP + "— live —")
        alice.privmsg("#h", "now live")
        child.expect(STAMP + "<alice> now live")
        child.sendline("/history 2")
        child.expect(STAMP + "— older history of #h —")
        child.expect(re.escape("\x1b[2m") + STAMP + "<alice> old 3")
        child.expect(re.escape("\x1b[2m") + STAMP + "<alice> old 4")
        child.expect(STAMP + "— end of older history of #h —")
        child.sendline("/quit")
        assert term.exit_status() == 0


def test_session_marks_the_current_channel_read_when_the_user_speaks(scripted_peer: Any) -> None:
    lines: list[str] = []
    conn = Connection(HOST, scripted_peer.port, "me", join_history=10)
    session = ChatSession(conn, lines.append)
    conn.on_message(session.handle_message)
    with ThreadPoolExecutor(1) as pool:
        connecting = pool.submit(conn.connect)
        peer = scripted_peer.accept()
        peer.expect("CAP LS")
        caps = "batch labeled-response server-time message-tags draft/read-marker"
        peer.send_line(f":irc.test CAP * LS :{caps}")
        peer.expect("CAP REQ")
        peer.send_line(f":irc.test CAP me ACK :{caps}")
        peer.expect("CAP END")
        peer.send_line(":irc.test 001 me :Welcome")
        connecting.result(10)
    try:
        session.handle_input("/join #t")
        assert peer.read_line() == "JOIN #t"  # no CHATHISTORY: the server keeps none
        peer.send_line(":me!u@h JOIN #t")
        peer.send_line(":irc.test MARKREAD #t timestamp=2026-01-01T00:00:00.000Z")
        peer.send_line("@time=2026-01-02T10:00:00.000Z;msgid=a :bob!b@h PRIVMSG #t :read me")
        wait_for(lambda: any("<bob> read me" in line for line in lines))
        assert conn.read_marker("#t") == "2026-01-01T00:00:00.000Z"
        assert not any("MARKREAD" in line or "history" in line for line in lines)
        session.handle_input("answer")
        assert peer.read_line() == "PRIVMSG #t answer"
        assert peer.read_line() == "MARKREAD #t timestamp=2026-01-02T10:00:00.000Z"
        peer.send_line(":irc.test MARKREAD #t timestamp=2026-01-02T10:00:00.000Z")
        wait_for(lambda: conn.read_marker("#t") == "2026-01-02T10:00:00.000Z")
        session.handle_input("again, nothing new to mark")
        assert peer.read_line() == "PRIVMSG #t :again, nothing new to mark"
        peer.send_line("PING :sync")  # nothing more from the client before its PONG
        assert peer.read_line() == "PONG sync"
    finally:
        peer.close()
        conn.close()
