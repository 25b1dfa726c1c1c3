"""The terminal client: ``relaychat chat [--nick N] [--password P] [--account NAME
[--password-file PATH]] [HOST[:PORT]]``.

Theory of operation: one :class:`~relaychat.client.connection.Connection` and one
prompt_toolkit ``PromptSession``. The main thread sits in ``prompt()``; the
connection's reader thread renders each incoming message and prints it. The
prompt runs under ``patch_stdout``, so those prints land above the prompt and the
partly typed line is redrawn below them: reading and typing never wait for each
other.

:class:`ChatSession` holds everything that is not the terminal (the current target,
the joined channels, the command table, rendering) and is driven by
:meth:`ChatSession.handle_input` (main thread) and :meth:`ChatSession.handle_message`
(reader thread); ``_lock`` guards the target and the channel list between them.
The WHOIS collector and the CTCP rate limiter belong to the reader thread alone.

Replies. Where the client waits for a reply (``/whois``, ``/names``, ``/who``,
``/list``) it sends the command labeled (``Connection.send_request``) and shows the
whole :class:`~relaychat.protocol.client.Response` as one block when the reader
thread resolves it; the prompt never waits. On a server without
``labeled-response`` the command goes out plainly and its replies are shown as they
come (a WHOIS still gathered into one block by the collector).

Multi-line messages. A ``draft/multiline`` batch is shown as one message, its lines
indented under the first. Multi-line input (pasted, or Alt+Enter for a line break)
is sent by ``Connection.privmsg``: one multi-line message when the server offers
``draft/multiline``, else one PRIVMSG per non-empty line.

What arrives is never trusted with the terminal: :func:`sanitize` removes IRC
formatting and shows every control character, bidi control and zero-width
character as an escape (``\\x1b``, ``\\u202e``), so a peer cannot move the cursor
or reorder or hide text. CTCP VERSION and PING are answered, at most one reply
per sender and a few in all per few seconds; other CTCP requests are only shown.
What the user sends is shown once, when it is sent (no ``echo-message``).

History. With a server that offers ``draft/chathistory``, joining a channel fetches
its last ``--history`` lines (50 by default; ``Connection(join_history=...)``): they
are shown between ``— history —`` and ``— live —`` lines, dimmed, each with its
original time, and the channel's live lines that arrive meanwhile wait below them
(a message seen live is never shown again as history: the library drops it by
``msgid``). ``/history [n]`` loads the lines before the oldest one shown for the
current target. With ``draft/read-marker``, what the user types (a message, a
command, switching to a target) marks the current target read up to the newest
message shown in it (``MARKREAD``). Without history nothing of this is shown.

Login. With ``--account`` the client logs in with SASL during registration; the
password comes from ``--password-file``, else ``RELAYCHAT_PASSWORD``, else a prompt
that does not echo (before the chat screen starts). It is never printed, logged, or
put in an error message; a failed login ends the program with the server's numeric.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from relaychat import __version__
from relaychat.client.connection import (
    Batch,
    Connection,
    ConnectionClosed,
    History,
    Incoming,
    NotSupported,
    RegistrationError,
    RequestError,
    Response,
    SaslCredentials,
)
from relaychat.protocol.client import ACCOUNT_REGISTRATION, DEFAULT_CAPS, split_lines
from relaychat.protocol.message import Message, MessageParseError, split_source
from relaychat.protocol.numerics import (
    RPL_AWAY,
    RPL_ENDOFNAMES,
    RPL_ENDOFWHO,
    RPL_ENDOFWHOIS,
    RPL_ISUPPORT,
    RPL_LIST,
    RPL_LISTEND,
    RPL_LISTSTART,
    RPL_NAMREPLY,
    RPL_TOPIC,
    RPL_TOPICWHOTIME,
    RPL_WHOISACCOUNT,
    RPL_WHOISCHANNELS,
    RPL_WHOISIDLE,
    RPL_WHOISOPERATOR,
    RPL_WHOISSERVER,
    RPL_WHOISUSER,
    RPL_WHOREPLY,
)

__all__ = [
    "ChatSession",
    "chat_main",
    "format_duration",
    "parse_address",
    "parse_ctcp",
    "render",
    "render_lines",
    "render_reply",
    "sanitize",
]

#: Where ``relaychat chat --account`` takes the password from when no file is given.
PASSWORD_ENV = "RELAYCHAT_PASSWORD"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6667

# IRC formatting codes, removed: colour (\x03 with its digits), hex colour (\x04 with
# its digits), bold \x02, reset \x0f, monospace \x11, reverse \x16, italics \x1d,
# strikethrough \x1e, underline \x1f.
_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?"
    r"|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
# Shown as escapes: controls (C0, DEL, C1: ESC, BEL, CR, backspace ...), format
# characters (bidi embeddings, overrides, isolates and marks, zero-width spaces and
# joiners, BOM, invisible operators, tag characters), line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _visible(char: str) -> str:
    if char == "\t":
        return " "
    if unicodedata.category(char) not in _INVISIBLE_CATEGORIES:
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def sanitize(text: str) -> str:
    """Make received text safe to print: it cannot move the cursor, reorder or hide text.

    IRC formatting codes are removed. Every other control character (ESC included)
    and every invisible format character (bidi overrides and isolates U+202A-U+202E,
    U+2066-U+2069, marks U+200E, U+200F, U+061C, zero-width U+200B-U+200D, U+2060,
    U+FEFF, ...) is shown as a Python-style escape such as ``\\x1b`` or ``\\u202e``;
    a tab becomes a space. The result has no control characters, so sanitizing
    twice changes nothing.
    """
    text = _FORMATTING.sub("", text)
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(map(_visible, text))


def parse_address(text: str | None) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or ``[V6]`` -> (host, port).

    Empty or None gives the defaults; a bare IPv6 address without brackets is
    taken as a host. Raises ValueError for a port that is not 1-65535.
    """
    if not text:
        return DEFAULT_HOST, DEFAULT_PORT
    host, port = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ValueError(f"unclosed '[' in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"junk after ']' in {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    number = int(port) if port else DEFAULT_PORT
    if not 0 < number < 65536:
        raise ValueError(f"port out of range: {number}")
    return host or DEFAULT_HOST, number


def _nick_of(msg: Message) -> str:
    return sanitize(split_source(msg.source)[0]) if msg.source else "?"


def _userhost(msg: Message) -> str:
    if not msg.source:
        return ""
    _, user, host = split_source(msg.source)
    return f" ({sanitize(user or '')}@{sanitize(host or '')})" if user or host else ""


def _reason(params: list[str], index: int) -> str:
    return f" ({sanitize(params[index])})" if len(params) > index and params[index] else ""


class _View(NamedTuple):
    """What a renderer needs to know about the session."""

    is_me: Callable[[str], bool]
    current: str | None


def parse_ctcp(text: str) -> tuple[str, str] | None:
    """``"\\x01VERB args\\x01"`` -> ``("VERB", "args")`` (verb upper-cased), or None
    when ``text`` is not a CTCP message. The closing ``\\x01`` is optional, as some
    clients leave it out."""
    if len(text) < 2 or not text.startswith("\x01"):
        return None
    body = text[1:-1] if text.endswith("\x01") else text[1:]
    verb, _, args = body.partition(" ")
    if not verb:
        return None
    return verb.upper(), args


def _render_privmsg(msg: Message, view: _View, notice: bool = False) -> str | None:
    if len(msg.params) < 2:
        return None
    target, text = msg.params[0], msg.params[-1]
    nick = _nick_of(msg)
    private = view.is_me(target) or target == "*"  # "*": a server notice before registration
    where = "" if private or view.current == target else f"{sanitize(target)} "
    ctcp = parse_ctcp(text)
    if ctcp is not None:
        verb, args = sanitize(ctcp[0]), sanitize(ctcp[1])
        if notice:
            return f"-- CTCP {verb} reply from {nick}{': ' + args if args else ''}"
        if verb == "ACTION":
            return f"{where}* {nick} {args}"
        to = "" if private else f" to {sanitize(target)}"
        return f"-- CTCP {verb}{' ' + args if args else ''} from {nick}{to}"
    if notice:
        chan = "" if private or where == "" else f":{sanitize(target)}"
        return f"-{nick}{chan}- {sanitize(text)}"
    if private:
        return f"*{nick}* {sanitize(text)}"
    return f"{where}<{nick}> {sanitize(text)}"


def _render_join(msg: Message, view: _View) -> str | None:
    chan = sanitize(msg.params[0]) if msg.params else "?"
    return f"--> {_nick_of(msg)}{_userhost(msg)} joined {chan}"


def _render_part(msg: Message, view: _View) -> str | None:
    chan = sanitize(msg.params[0]) if msg.params else "?"
    return f"<-- {_nick_of(msg)} left {chan}{_reason(msg.params, 1)}"


def _render_quit(msg: Message, view: _View) -> str | None:
    return f"<-- {_nick_of(msg)} quit{_reason(msg.params, 0)}"


def _render_nick(msg: Message, view: _View) -> str | None:
    new = sanitize(msg.params[0]) if msg.params else "?"
    if view.is_me(msg.params[0] if msg.params else ""):
        return f"-- you are now known as {new}"
    return f"-- {_nick_of(msg)} is now known as {new}"


def _render_kick(msg: Message, view: _View) -> str | None:
    if len(msg.params) < 2:
        return None
    chan, victim = sanitize(msg.params[0]), sanitize(msg.params[1])
    return f"<-- {victim} was kicked from {chan} by {_nick_of(msg)}{_reason(msg.params, 2)}"


def _render_topic(msg: Message, view: _View) -> str | None:
    if len(msg.params) < 2:
        return None
    chan, text = sanitize(msg.params[0]), sanitize(msg.params[1])
    return f"-- {_nick_of(msg)} changed the topic of {chan} to: {text}"


def _render_mode(msg: Message, view: _View) -> str | None:
    if len(msg.params) < 2:
        return None
    target, modes = sanitize(msg.params[0]), sanitize(" ".join(msg.params[1:]))
    return f"-- {_nick_of(msg)} sets mode {modes} on {target}"


def _render_invite(msg: Message, view: _View) -> str | None:
    chan = sanitize(msg.params[-1]) if msg.params else "?"
    return f"-- {_nick_of(msg)} invites you to {chan}"


def _render_error(msg: Message, view: _View) -> str | None:
    return f"! {sanitize(msg.params[-1]) if msg.params else 'ERROR'}"


def _render_hidden(msg: Message, view: _View) -> str | None:
    return None


def _render_names(msg: Message, view: _View) -> str | None:
    # 353 me = #chan :nick nick
    if len(msg.params) < 3:
        return None
    return f"-- names {sanitize(msg.params[-2])}: {sanitize(msg.params[-1])}"


def _render_topic_reply(msg: Message, view: _View) -> str | None:
    # 332 me #chan :topic
    if len(msg.params) < 3:
        return None
    return f"-- topic of {sanitize(msg.params[1])}: {sanitize(msg.params[2])}"


def _render_who_reply(msg: Message, view: _View) -> str | None:
    # 352 me #chan user host server nick flags :hops realname
    if len(msg.params) < 8:
        return _render_numeric(msg, view)
    chan, user, host, _, nick, flags, last = (sanitize(p) for p in msg.params[1:8])
    realname = last.partition(" ")[2]
    return f"-- who {chan}: {nick} ({user}@{host}) {flags} {realname}".rstrip()


def _render_away(msg: Message, view: _View) -> str | None:
    # 301 me nick :away message (outside WHOIS: the answer to a message to someone away)
    if len(msg.params) < 3:
        return _render_numeric(msg, view)
    return f"-- {sanitize(msg.params[1])} is away: {sanitize(msg.params[2])}"


def _render_list_reply(msg: Message, view: _View) -> str | None:
    # 322 me #chan users :topic
    if len(msg.params) < 4:
        return _render_numeric(msg, view)
    chan, users, topic = (sanitize(p) for p in msg.params[1:4])
    return f"-- list {chan} ({users}): {topic}".rstrip()


def _render_standard_reply(msg: Message, view: _View) -> str | None:
    # FAIL/WARN/NOTE <command> <code> [<context>...] :<description>
    if len(msg.params) < 3:
        return f"-- {sanitize(msg.serialize())}"
    what = sanitize(" ".join(msg.params[:-1]))
    mark = "!" if msg.command.upper() == "FAIL" else "--"
    return f"{mark} {what}: {sanitize(msg.params[-1])}"


def _render_numeric(msg: Message, view: _View) -> str | None:
    params = [sanitize(p) for p in msg.params[1:]]  # params[0] is our nick
    if not params:
        return None
    if msg.command[0] in "45":
        # "433 me bob :Nickname is in use" -> "! bob: Nickname is in use"
        subject = " ".join(params[:-1])
        return f"! {subject}: {params[-1]}" if subject else f"! {params[-1]}"
    return f"-- {' '.join(params)}"


def _render_logged_in(msg: Message, view: _View) -> str | None:
    # 900 <nick> <nick!user@host> <account> :You are now logged in as <account>
    return f"-- logged in as {sanitize(msg.params[2])}" if len(msg.params) >= 3 else None


def _render_logged_out(msg: Message, view: _View) -> str | None:
    return "-- logged out"


_Renderer = Callable[[Message, _View], str | None]

# What the server echoes back to us with echo-message.
_ECHOED = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})

_RENDERERS: dict[str, _Renderer] = {
    "PRIVMSG": _render_privmsg,
    "NOTICE": lambda msg, view: _render_privmsg(msg, view, notice=True),
    "JOIN": _render_join,
    "PART": _render_part,
    "QUIT": _render_quit,
    "NICK": _render_nick,
    "KICK": _render_kick,
    "TOPIC": _render_topic,
    "MODE": _render_mode,
    "INVITE": _render_invite,
    "ERROR": _render_error,
    "PING": _render_hidden,
    "PONG": _render_hidden,
    "CAP": _render_hidden,
    "TAGMSG": _render_hidden,  # typing notifications and reactions: nothing to print
    "MARKREAD": _render_hidden,  # read markers: kept by the connection
    "ACK": _render_hidden,  # a late answer to a labeled request given up on
    "BATCH": _render_hidden,  # the start or end of a batch not grouped (limits)
    "FAIL": _render_standard_reply,
    "WARN": _render_standard_reply,
    "NOTE": _render_standard_reply,
    RPL_AWAY: _render_away,
    RPL_ISUPPORT: _render_hidden,  # machine-readable
    RPL_ENDOFWHO: _render_hidden,
    RPL_ENDOFWHOIS: _render_hidden,
    RPL_TOPIC: _render_topic_reply,
    RPL_TOPICWHOTIME: _render_hidden,
    RPL_WHOREPLY: _render_who_reply,
    RPL_NAMREPLY: _render_names,
    RPL_ENDOFNAMES: _render_hidden,
    RPL_LISTSTART: _render_hidden,
    RPL_LIST: _render_list_reply,
    RPL_LISTEND: _render_hidden,
    "900": _render_logged_in,
    "901": _render_logged_out,
    # The rest of SASL: a failure that matters ends the connection with its own
    # message; a 904 or 908 on the way to a mechanism that works is no news.
    **dict.fromkeys(("902", "903", "904", "905", "906", "907", "908"), _render_hidden),
}


def render(msg: Message, *, is_me: Callable[[str], bool], current: str | None) -> str | None:
    """One incoming message as one display line without timestamp, or None to hide it.

    ``current`` is the target the prompt talks to; channel messages for another
    channel carry the channel name. Numerics 400-599 render as ``! text``.
    """
    view = _View(is_me, current)
    command = msg.command.upper()
    renderer = _RENDERERS.get(command)
    if renderer is not None:
        return renderer(msg, view)
    if len(command) == 3 and command.isdigit():
        return _render_numeric(msg, view)
    return f"-- {sanitize(msg.serialize())}"


def render_lines(
    msg: Message, *, is_me: Callable[[str], bool], current: str | None
) -> list[str] | None:
    """Like :func:`render`, for a message whose text may hold line breaks (a
    multi-line message read with ``Batch.multiline()``): its first line as
    :func:`render` shows it, then each further line indented under the text."""
    text = msg.params[-1] if msg.params else ""
    if "\n" not in text or msg.command.upper() not in ("PRIVMSG", "NOTICE"):
        line = render(msg, is_me=is_me, current=current)
        return None if line is None else [line]
    first, *rest = text.split("\n")
    head = render(
        Message(msg.command, [*msg.params[:-1], first], msg.source, msg.tags),
        is_me=is_me,
        current=current,
    )
    if head is None:
        return None
    shown = sanitize(first)
    indent = " " * (len(head) - len(shown) if head.endswith(shown) else 2)
    return [head] + [indent + sanitize(line) for line in rest]


class _ReplyView(NamedTuple):
    """What a reply renderer needs: the session's view, the case mapping and what
    the command asked about."""

    view: _View
    casefold: Callable[[str], str]
    subject: str


_Units = list[tuple[list[str], Message]]  # display units (lines) with the message that dates them


def _plain(messages: list[Message], rv: _ReplyView, units: _Units) -> None:
    for msg in messages:
        line = render(msg, is_me=rv.view.is_me, current=rv.view.current)
        if line is not None:
            units.append(([line], msg))


def _reply_whois(messages: list[Message], rv: _ReplyView) -> _Units:
    collector = _WhoisCollector(rv.casefold)
    units: _Units = []
    for msg in messages:
        block = collector.feed(msg)
        if block is None:
            _plain([msg], rv, units)
        elif block:
            units.append((block, msg))
    return units


def _reply_names(messages: list[Message], rv: _ReplyView) -> _Units:
    # 353 me = #chan :nick nick ... (several lines), then 366 me #chan :End of /NAMES list
    names: dict[str, list[str]] = {}
    units: _Units = []
    first: Message | None = None
    for msg in messages:
        if msg.command == RPL_NAMREPLY and len(msg.params) >= 3:
            names.setdefault(msg.params[-2], []).extend(msg.params[-1].split())
            first = first or msg
        elif msg.command == RPL_ENDOFNAMES and len(msg.params) >= 2:
            names.setdefault(msg.params[1], [])
            first = first or msg
        else:
            _plain([msg], rv, units)
    for chan, nicks in names.items():
        shown = " ".join(nicks) if nicks else "nobody visible"
        units.append(([f"-- names {chan} ({len(nicks)}): {shown}"], first or messages[0]))
    return units


def _reply_who(messages: list[Message], rv: _ReplyView) -> _Units:
    # 352 me #chan user host server nick flags :hops realname ... then 315 me mask :End
    rows: list[str] = []
    units: _Units = []
    for msg in messages:
        if msg.command == RPL_WHOREPLY and len(msg.params) >= 8:
            chan, user, host, _, nick, flags, last = msg.params[1:8]
            realname = last.partition(" ")[2]
            where = "" if chan == "*" else f"{chan} "
            rows.append(f"   {where}{nick} ({user}@{host}) {flags} {realname}".rstrip())
        elif msg.command != RPL_ENDOFWHO:
            _plain([msg], rv, units)
    if rows:
        units.append(([f"-- who {rv.subject}", *rows], messages[0]))
    elif not units:
        units.append(([f"-- who {rv.subject}: nobody"], messages[0]))
    return units


def _reply_list(messages: list[Message], rv: _ReplyView) -> _Units:
    # 321 me Channel :Users Name, 322 me #chan users :topic ..., 323 me :End of /LIST
    rows: list[str] = []
    units: _Units = []
    for msg in messages:
        if msg.command == RPL_LIST and len(msg.params) >= 4:
            chan, users, topic = msg.params[1:4]
            rows.append(f"   {chan} ({users})" + (f": {topic}" if topic else ""))
        elif msg.command not in (RPL_LISTSTART, RPL_LISTEND):
            _plain([msg], rv, units)
    if rows:
        units.append(([f"-- channels ({len(rows)})", *rows], messages[0]))
    elif not units:
        units.append((["-- no channels"], messages[0]))
    return units


_REPLIES: dict[str, Callable[[list[Message], _ReplyView], _Units]] = {
    "WHOIS": _reply_whois,
    "NAMES": _reply_names,
    "WHO": _reply_who,
    "LIST": _reply_list,
}


def render_reply(
    command: str,
    subject: str,
    messages: list[Message],
    *,
    is_me: Callable[[str], bool],
    current: str | None,
    casefold: Callable[[str], str] = str.lower,
) -> list[list[str]]:
    """The whole reply to one WHOIS, NAMES, WHO or LIST (``subject``: what it asked
    about) as display units, each a list of lines shown as one block: a WHOIS as the
    block :class:`_WhoisCollector` makes, the names of a channel on one line, the
    rows of a WHO or LIST under a heading. Errors in the reply (``401``...) render
    as :func:`render` does. Lines are not sanitized yet (``show`` does it)."""
    return [
        lines for lines, _ in _reply_units(command, subject, messages, is_me, current, casefold)
    ]


def _reply_units(
    command: str,
    subject: str,
    messages: list[Message],
    is_me: Callable[[str], bool],
    current: str | None,
    casefold: Callable[[str], str],
) -> _Units:
    if not messages:
        return []
    rv = _ReplyView(_View(is_me, current), casefold, subject)
    renderer = _REPLIES.get(command.upper())
    if renderer is None:
        units: _Units = []
        _plain(messages, rv, units)
        return units
    return renderer(messages, rv)


def format_duration(seconds: int) -> str:
    """``192`` -> ``"3m 12s"``, ``3600`` -> ``"1h 0m 0s"``, ``90061`` -> ``"1d 1h 1m 1s"``;
    negative values count as 0."""
    seconds = max(0, seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size or parts:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts)


def _local_time(epoch: int) -> str:
    """An epoch time as a local date and time with the zone, or the number if out of range."""
    try:
        return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    except (OverflowError, OSError, ValueError):
        return str(epoch)


@dataclass
class _Whois:
    """What the replies to one WHOIS said about one nick (raw, unsanitized)."""

    nick: str
    user_host: str
    realname: str
    channels: list[str] = field(default_factory=list)
    server: str | None = None
    idle: int | None = None
    signon: int | None = None
    away: str | None = None
    operator: bool = False
    extra: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rows = [
            ("nick", self.nick),
            ("user", self.user_host),
            ("realname", self.realname),
            ("channels", " ".join(self.channels) or "none visible"),
        ]
        if self.server is not None:
            rows.append(("server", self.server))
        if self.idle is not None:
            rows.append(("idle", format_duration(self.idle)))
        if self.signon is not None:
            rows.append(("signon", _local_time(self.signon)))
        rows.append(("away", f"yes: {self.away}" if self.away is not None else "no"))
        rows.append(("operator", "yes" if self.operator else "no"))
        rows.extend(("info", text) for text in self.extra)
        return [f"-- whois {self.nick}"] + [f"   {k + ':':<9} {v}" for k, v in rows]


class _WhoisCollector:
    """Gathers the numerics answering a WHOIS, from RPL_WHOISUSER to RPL_ENDOFWHOIS,
    into one :class:`_Whois`, so that they are shown as one block.

    Used by the reader thread only. A reply about a nick with no WHOIS in progress
    (a 301 after a message to someone away, a 318 after a 401) is not consumed.
    Memory is bounded whatever the server sends: a few nicks in progress, a
    bounded channel list and a few extra lines each.
    """

    MAX_PENDING = 8
    MAX_CHANNELS = 200
    MAX_EXTRA = 16

    def __init__(self, casefold: Callable[[str], str]) -> None:
        self._casefold = casefold
        self._pending: dict[str, _Whois] = {}

    def feed(self, msg: Message) -> list[str] | None:
        """None: not part of a WHOIS in progress (render it as usual); ``[]``: taken,
        nothing to show yet; otherwise the finished block (unsanitized lines)."""
        command, params = msg.command, msg.params
        if not (len(command) == 3 and command.isdigit()) or len(params) < 3:
            return None
        key = self._casefold(params[1])
        if command == RPL_WHOISUSER:
            # 311 me nick user host * :realname
            if len(params) < 6:
                return None
            self._pending.pop(key, None)
            self._pending[key] = _Whois(params[1], f"{params[2]}@{params[3]}", params[-1])
            while len(self._pending) > self.MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            return []
        entry = self._pending.get(key)
        if entry is None or command[0] in "45":
            return None
        if command == RPL_ENDOFWHOIS:
            del self._pending[key]
            return entry.lines()
        if command == RPL_WHOISCHANNELS:
            room = self.MAX_CHANNELS - len(entry.channels)
            entry.channels.extend(params[-1].split()[: max(0, room)])
        elif command == RPL_WHOISSERVER:
            # 312 me nick server :description
            entry.server = f"{params[2]} ({params[3]})" if len(params) > 3 else params[2]
        elif command == RPL_WHOISOPERATOR:
            entry.operator = True
        elif command == RPL_AWAY:
            entry.away = params[-1]
        elif command == RPL_WHOISIDLE:
            # 317 me nick idle [signon] :seconds idle[, signon time]
            numbers = [p for p in params[2:-1] if p.isascii() and p.isdigit()]
            if numbers:
                entry.idle = int(numbers[0])
            if len(numbers) > 1:
                entry.signon = int(numbers[1])
        elif len(entry.extra) < self.MAX_EXTRA:
            if command == RPL_WHOISACCOUNT and len(params) > 3:
                entry.extra.append(f"logged in as {params[2]}")
            else:
                entry.extra.append(" ".join(params[2:]))
        return []


class _CtcpLimiter:
    """Allows at most one CTCP reply per sender, and ``burst`` in all, per ``interval``
    seconds, so the client cannot be used to multiply someone else's traffic
    (reflection) however many requests arrive or under however many nicks."""

    def __init__(
        self,
        interval: float = 5.0,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._recent: deque[tuple[float, str]] = deque()

    def allow(self, sender: str) -> bool:
        """Whether a reply to ``sender`` (a case-folded nick) may go out now; records it if so."""
        now = self._clock()
        while self._recent and now - self._recent[0][0] >= self.interval:
            self._recent.popleft()
        if len(self._recent) >= self.burst or any(s == sender for _, s in self._recent):
            return False
        self._recent.append((now, sender))
        return True


def _timestamp(msg: Message | None, clock: Callable[[], float]) -> str:
    """``HH:MM`` local time, from the IRCv3 ``time`` tag when the server sent one."""
    if msg is not None and "time" in msg.tags:
        try:
            stamp = datetime.fromisoformat(msg.tags["time"].replace("Z", "+00:00"))
            return stamp.astimezone().strftime("%H:%M")
        except ValueError:
            pass
    return time.strftime("%H:%M", time.localtime(clock()))


#: Live lines of a channel held while its history is on the way, at most.
MAX_HELD = 1000
#: Lines ``/history`` loads when not told, and the most it asks for.
HISTORY_LINES = 50
MAX_HISTORY_LINES = 1000
#: Commands whose first parameter names the buffer (channel or nick) a message is for.
_TARGETED = frozenset({"PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "TOPIC", "MODE"})


class _Command(NamedTuple):
    handler: Callable[[ChatSession, str], None]
    usage: str
    help: str


class ChatSession:
    """The terminal client minus the terminal.

    ``output`` receives finished display lines (``[HH:MM] ...``; a block such as a
    WHOIS answer comes as one string of several lines) from both the main thread
    and the connection's reader thread; ``changed`` is called when the prompt text
    may have changed. ``clock`` returns the epoch time (for tests). ``ask_secret``
    asks the user for a password without showing it (main thread; for ``/register``).

    What the user sends is shown once, locally, when it is sent: the client does
    not request ``echo-message``, and if the connection has it anyway the server's
    echoes of our own messages are not shown again.
    """

    def __init__(
        self,
        conn: Connection,
        output: Callable[[str], None],
        *,
        changed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        ask_secret: Callable[[str], str] | None = None,
        dim: Callable[[str], str] = lambda line: line,
    ) -> None:
        self.conn = conn
        self._dim = dim
        # folded channel -> live display units held until its history is shown
        self._held: dict[str, list[tuple[list[str], Message]]] = {}
        # folded buffer -> the oldest message shown (for /history), the newest time
        self._oldest: dict[str, Message] = {}
        self._newest: dict[str, str] = {}
        self._ask_secret = ask_secret
        self._output = output
        self._changed = changed
        self._clock = clock
        self._lock = threading.Lock()
        self._target: str | None = None
        self._channels: list[str] = []
        self._whois = _WhoisCollector(conn.casefold)  # reader thread only
        self._ctcp_limiter = _CtcpLimiter()  # reader thread only
        #: Set once the user asked to quit.
        self.quitting = threading.Event()

    # -- state -----------------------------------------------------------------

    @property
    def target(self) -> str | None:
        with self._lock:
            return self._target

    @property
    def channels(self) -> list[str]:
        with self._lock:
            return list(self._channels)

    def prompt(self) -> str:
        target = self.target
        return f"{sanitize(target)}> " if target else "> "

    def _is_channel(self, name: str) -> bool:
        chantypes = self.conn.isupport.get("CHANTYPES") or "#&"
        return bool(name) and name[0] in chantypes

    def _set_target(self, target: str | None) -> None:
        with self._lock:
            self._target = target
        self._changed()

    def _find_channel(self, name: str) -> str | None:
        folded = self.conn.casefold(name)
        with self._lock:
            return next((c for c in self._channels if self.conn.casefold(c) == folded), None)

    def _forget_channel(self, name: str) -> None:
        folded = self.conn.casefold(name)
        with self._lock:
            self._channels = [c for c in self._channels if self.conn.casefold(c) != folded]
            if self._target is not None and self.conn.casefold(self._target) == folded:
                self._target = self._channels[-1] if self._channels else None
        self._changed()

    def show(self, text: str, msg: Message | None = None) -> None:
        """Print one line, timestamped. ``text`` is sanitized here again, the last
        guard for whatever a renderer or a command put into it."""
        self._output(f"[{_timestamp(msg, self._clock)}] {sanitize(text)}")

    def show_block(self, lines: list[str], msg: Message | None = None, dim: bool = False) -> None:
        """Print several lines as one block: a timestamp on the first, the others
        indented below it; ``dim`` for history."""
        stamp = f"[{_timestamp(msg, self._clock)}] "
        indent = " " * len(stamp)
        style = self._dim if dim else str
        self._output(
            "\n".join(
                style(stamp + sanitize(lines[0]) if i == 0 else indent + sanitize(line))
                for i, line in enumerate(lines)
            )
        )

    # -- buffers and history --------------------------------------------------------

    def _buffer_of(self, msg: Message) -> str | None:
        """The channel or nick a message belongs to, else None."""
        if msg.command.upper() not in _TARGETED or not msg.params:
            return None
        target = msg.params[0]
        if self._is_channel(target):
            return target
        if msg.source and msg.command.upper() in ("PRIVMSG", "NOTICE"):
            sender = split_source(msg.source)[0]
            return target if self.conn.is_me(sender) else sender
        return None

    def _note_shown(self, buffer: str, msg: Message) -> None:
        """Remember the oldest message and the newest time shown for ``buffer``."""
        stamp = msg.tags.get("time")
        if not stamp:
            return
        folded = self.conn.casefold(buffer)
        with self._lock:
            oldest = self._oldest.get(folded)
            if oldest is None or stamp < oldest.tags.get("time", ""):
                self._oldest[folded] = msg
            if stamp > self._newest.get(folded, ""):
                self._newest[folded] = stamp

    def _show_history(self, history: History, heading: str, ending: str) -> None:
        """History lines, dimmed, between ``heading`` and ``ending`` (nothing when
        there is none)."""
        units = []
        for msg in history.messages:
            lines = render_lines(msg, is_me=self.conn.is_me, current=self.target)
            if lines:
                units.append((lines, msg))
        if not units:
            return
        self.show(heading)
        for lines, msg in units:
            self.show_block(lines, msg, dim=True)
            self._note_shown(history.target, msg)
        self.show(ending)
        oldest = history.oldest
        if oldest is not None and "time" in oldest.tags:  # the same millisecond: not "<"
            folded = self.conn.casefold(history.target)
            with self._lock:
                known = self._oldest.get(folded)
                if known is None or oldest.tags["time"] <= known.tags.get("time", ""):
                    self._oldest[folded] = oldest

    def _on_join_history(self, history: History) -> None:
        """The history fetched on JOIN: shown above the live lines held meanwhile."""
        with self._lock:
            held = self._held.pop(self.conn.casefold(history.target), [])
        if history.error is not None:
            line = render(history.error, is_me=self.conn.is_me, current=self.target)
            if line is not None:
                self.show(line, history.error)
        where = "" if history.target == self.target else f" of {history.target}"
        self._show_history(history, f"— history{where} —", f"— live{where} —")
        for lines, msg in held:
            self.show_block(lines, msg)
        self._mark_read(self.target)

    def release_held(self) -> None:
        """Show the live lines held for history that will not come (disconnected)."""
        with self._lock:
            held = [unit for units in self._held.values() for unit in units]
            self._held.clear()
        for lines, msg in held:
            self.show_block(lines, msg)

    def _mark_read(self, target: str | None) -> None:
        """MARKREAD ``target`` up to the newest message shown in it, when the server
        keeps read markers and has an older one."""
        if target is None or not self.conn.read_markers_enabled:
            return
        with self._lock:
            newest = self._newest.get(self.conn.casefold(target))
        if newest is None:
            return
        try:
            self.conn.mark_read(target, newest)
        except (ConnectionClosed, RequestError, ValueError):
            pass

    # -- incoming (reader thread) --------------------------------------------------

    def handle_message(self, item: Incoming) -> None:
        """Update the session for one incoming message or batch, then print it.

        A multi-line message (``draft/multiline`` batch) is shown as one; the
        messages of any other batch are handled one by one, in order; the history
        fetched on JOIN is shown above the channel's live lines held meanwhile."""
        if isinstance(item, History):
            self._on_join_history(item)
            return
        if isinstance(item, Batch):
            joined = item.multiline()
            if joined is None:
                for msg in item.messages():
                    self.handle_message(msg)
                return
            item = joined
        msg = item
        command = msg.command.upper()
        sender = split_source(msg.source)[0] if msg.source else ""
        mine = bool(sender) and self.conn.is_me(sender)
        hold_after = None
        if command == "JOIN" and mine and msg.params and self.conn.history_pending(msg.params[0]):
            hold_after = msg.params[0]
        if command == "JOIN" and mine and msg.params:
            channel = msg.params[0]
            with self._lock:
                if channel not in self._channels:
                    self._channels.append(channel)
            self._set_target(channel)
        elif command == "PART" and mine and msg.params:
            self._forget_channel(msg.params[0])
        elif command == "KICK" and len(msg.params) >= 2 and self.conn.is_me(msg.params[1]):
            self._forget_channel(msg.params[0])
        elif command == "NICK":
            self._changed()
        if command == "ERROR" and self.quitting.is_set():
            return  # the server's goodbye after our QUIT
        if command in _ECHOED and mine and "echo-message" in self.conn.enabled_caps:
            return  # an echo of what we sent, which was shown when we sent it
        if command == "PRIVMSG" and sender and not mine and "\n" not in msg.params[-1]:
            self._answer_ctcp(sender, msg)
        block = self._whois.feed(msg)
        if block is not None:
            if block:
                self.show_block(block, msg)
            return
        lines = render_lines(msg, is_me=self.conn.is_me, current=self.target)
        buffer = self._buffer_of(msg)
        if lines and buffer is not None:
            self._note_shown(buffer, msg)
            with self._lock:
                held = self._held.get(self.conn.casefold(buffer))
                if held is not None and len(held) < MAX_HELD:
                    held.append((lines, msg))
                    return
        if lines:
            self.show_block(lines, msg)
        if hold_after is not None:
            with self._lock:
                self._held.setdefault(self.conn.casefold(hold_after), [])

    def _answer_ctcp(self, sender: str, msg: Message) -> None:
        """Answer CTCP VERSION and PING with a NOTICE, within the rate limit; never
        anything else (and never a NOTICE: replies are not answered)."""
        ctcp = parse_ctcp(msg.params[-1]) if len(msg.params) >= 2 else None
        if ctcp is None:
            return
        verb, args = ctcp
        if verb == "VERSION":
            reply = f"VERSION relaychat {__version__}"
        elif verb == "PING":
            token = args.replace("\x01", "")
            reply = f"PING {token}" if token else "PING"
        else:
            return
        if not self._ctcp_limiter.allow(self.conn.casefold(sender)):
            return
        try:
            self.conn.send("NOTICE", sender, f"\x01{reply}\x01")
        except (ConnectionClosed, ValueError):  # gone, or a sender name we cannot address
            pass

    # -- user input (main thread) ------------------------------------------------------

    def handle_input(self, line: str) -> None:
        """Run one line typed by the user: a ``/command`` or text for the current target.

        ``//text`` sends ``/text`` as text. Errors (unknown command, missing
        arguments, no target, closed connection) are shown as ``! ...`` lines.
        """
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        try:
            if line.startswith("/") and not line.startswith("//"):
                name, _, args = line[1:].partition(" ")
                command = _COMMANDS.get(name.lower())
                if command is None:
                    self.show(f"! unknown command /{name} (try /help)")
                    return
                command.handler(self, args.strip())
            else:
                self._say(line[1:] if line.startswith("//") else line)
        except ConnectionClosed:
            self.show("! not connected")
            return
        except (ValueError, MessageParseError, RequestError) as exc:
            self.show(f"! {exc}")
        if not self.quitting.is_set():
            self._mark_read(self.target)  # the user is looking at it

    def _need_target(self) -> str | None:
        target = self.target
        if target is None:
            self.show("! no current channel: /join one or /msg someone")
        return target

    def _usage(self, name: str) -> None:
        self.show(f"! usage: {_COMMANDS[name].usage}")

    def _echo(self, target: str, text: str) -> None:
        """Show what we sent, as the others see it: a multi-line message as one block
        (without ``draft/multiline``, blank lines are not sent, so not shown)."""
        lines = split_lines(text)
        if self.conn.multiline_limits is None:
            lines = [line for line in lines if line]
        while lines and not lines[-1]:
            lines.pop()
        while lines and not lines[0]:
            lines.pop(0)
        if not lines:
            return
        where = "" if target == self.target else f"{target} "
        if self._is_channel(target):
            head = f"{where}<{self.conn.nick}> "
        else:
            head = f"-> *{target}* "
        indent = " " * len(head)
        self.show_block([head + lines[0]] + [indent + line for line in lines[1:]])

    def _say(self, text: str) -> None:
        target = self._need_target()
        if target is not None:
            self.conn.privmsg(target, text)
            self._echo(target, text)

    def _cmd_join(self, args: str) -> None:
        if not args:
            self._usage("join")
            return
        channel, _, key = args.partition(" ")
        if not self._is_channel(channel):
            channel = "#" + channel
        joined = self._find_channel(channel)
        if joined is not None:
            self._set_target(joined)
            self.show(f"-- talking in {joined}")
        else:
            self.conn.join(channel, key.strip() or None)

    def _split_channel(self, args: str) -> tuple[str | None, str]:
        first, _, rest = args.partition(" ")
        if first and self._is_channel(first):
            return first, rest.strip()
        return self.target, args

    def _cmd_part(self, args: str) -> None:
        channel, reason = self._split_channel(args)
        if channel is None or not self._is_channel(channel):
            self._usage("part")
            return
        self.conn.part(channel, reason or None)

    def _cmd_msg(self, args: str) -> None:
        target, _, text = args.partition(" ")
        if not target or not text:
            self._usage("msg")
            return
        self.conn.privmsg(target, text)
        self._echo(target, text)

    def _cmd_query(self, args: str) -> None:
        if not args or " " in args:
            self._usage("query")
            return
        joined = self._find_channel(args)
        self._set_target(joined or args)
        self.show(f"-- talking to {joined or args}")

    def _cmd_me(self, args: str) -> None:
        if not args:
            self._usage("me")
            return
        target = self._need_target()
        if target is not None:
            self.conn.action(target, args)
            where = "" if target == self.target else f"{target} "
            self.show(f"{where}* {self.conn.nick} {args}")

    def _cmd_nick(self, args: str) -> None:
        if not args or " " in args:
            self._usage("nick")
            return
        self.conn.send("NICK", args)

    def _cmd_topic(self, args: str) -> None:
        channel, text = self._split_channel(args)
        if channel is None:
            self._usage("topic")
            return
        self.conn.send("TOPIC", channel, *([text] if text else []))

    def _cmd_names(self, args: str) -> None:
        channel = args or self.target
        if not channel:
            self._usage("names")
            return
        self._ask("NAMES", channel)

    def _cmd_who(self, args: str) -> None:
        mask = args or self.target
        if not mask:
            self._usage("who")
            return
        self._ask("WHO", mask)

    def _cmd_whois(self, args: str) -> None:
        if not args or " " in args:
            self._usage("whois")
            return
        self._ask("WHOIS", args)

    def _cmd_list(self, args: str) -> None:
        self._ask("LIST", *args.split())

    def _ask(self, command: str, *params: str) -> None:
        """Send a command whose reply is shown whole when it comes (labeled), or,
        without labeled-response, send it plainly: its replies are shown as they come."""
        try:
            future = self.conn.send_request(command, *params)
        except NotSupported:
            self.conn.send(command, *params)
            return
        subject = params[0] if params else ""
        future.add_done_callback(lambda done: self._show_reply(command, subject, done))

    def _show_reply(self, command: str, subject: str, done: Future[Response]) -> None:
        """Show a labeled reply (on the reader thread, in order with the rest).
        Nothing for a request given up on or cut off by a disconnect, which is shown
        on its own."""
        if done.cancelled() or done.exception() is not None:
            return
        response = done.result()
        units = _reply_units(
            command, subject, response.messages, self.conn.is_me, self.target, self.conn.casefold
        )
        for lines, msg in units:
            self.show_block(lines, msg)
        if not response.complete:
            self.show(f"! the reply to {command} was cut short")

    def _cmd_history(self, args: str) -> None:
        target = self._need_target()
        if target is None:
            return
        if args and not (args.isascii() and args.isdigit() and 0 < int(args)):
            self._usage("history")
            return
        count = min(int(args), MAX_HISTORY_LINES) if args else HISTORY_LINES
        if not self.conn.history_enabled:
            self.show("! this server keeps no history")
            return
        with self._lock:
            oldest = self._oldest.get(self.conn.casefold(target))
        future = self.conn.send_history(target, before=oldest, limit=count)
        future.add_done_callback(lambda done: self._show_older(target, done))

    def _show_older(self, target: str, done: Future[Response]) -> None:
        """The reply to /history (reader thread)."""
        if done.cancelled() or done.exception() is not None:
            return
        history = done.result().history
        if history is None:
            return
        if history.error is not None:
            line = render(history.error, is_me=self.conn.is_me, current=self.target)
            if line is not None:
                self.show(line, history.error)
            return
        if not history.messages:
            self.show(f"-- no older history for {target}")
            return
        self._show_history(
            history, f"— older history of {target} —", f"— end of older history of {target} —"
        )

    def _cmd_register(self, args: str) -> None:
        words = args.split()
        if len(words) > 2:
            self._usage("register")
            return
        if self._ask_secret is None:
            self.show("! cannot ask for a password here")
            return
        account = words[0] if words else self.conn.nick
        email = words[1] if len(words) > 1 else None
        try:
            secret = self._ask_secret(f"Password for the new account {account}: ")
        except (EOFError, KeyboardInterrupt):
            self.show("-- registration cancelled")
            return
        if not secret:
            self.show("-- registration cancelled")
            return
        future = self.conn.send_register_account(secret, account=account, email=email)
        self.show(f"-- registering account {account}")
        future.add_done_callback(self._show_registration)

    def _show_registration(self, done: Future[Response]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        for msg in done.result():
            if msg.command.upper() == "REGISTER" and len(msg.params) >= 3:
                status, account, text = msg.params[0], msg.params[1], msg.params[-1]
                self.show(f"-- account {account}: {status.lower()}: {text}", msg)
            else:
                line = render(msg, is_me=self.conn.is_me, current=self.target)
                if line is not None:
                    self.show(line, msg)

    def _cmd_away(self, args: str) -> None:
        self.conn.send("AWAY", *([args] if args else []))

    def _cmd_quit(self, args: str) -> None:
        self.quitting.set()
        self.conn.quit(args or "Leaving")

    def _cmd_raw(self, args: str) -> None:
        if not args:
            self._usage("raw")
            return
        self.conn.send_raw(args)

    def _cmd_help(self, args: str) -> None:
        seen: set[str] = set()
        for command in _COMMANDS.values():
            if command.usage not in seen:
                seen.add(command.usage)
                self.show(f"-- {command.usage:<28} {command.help}")
        self.show("-- text without a leading / goes to the current channel; //text sends /text")
        self.show("-- Alt+Enter (or Esc, Enter) starts a new line: a multi-line message")


# The command table: /name -> handler, syntax line, help text.
_COMMANDS: dict[str, _Command] = {
    "join": _Command(ChatSession._cmd_join, "/join #channel [key]", "join or switch to a channel"),
    "part": _Command(ChatSession._cmd_part, "/part [#channel] [reason]", "leave a channel"),
    "msg": _Command(ChatSession._cmd_msg, "/msg target text", "send a private message"),
    "query": _Command(ChatSession._cmd_query, "/query target", "talk to a nick or channel"),
    "me": _Command(ChatSession._cmd_me, "/me action", "send an action"),
    "nick": _Command(ChatSession._cmd_nick, "/nick newnick", "change your nick"),
    "topic": _Command(ChatSession._cmd_topic, "/topic [#channel] [text]", "show or set a topic"),
    "names": _Command(ChatSession._cmd_names, "/names [#channel]", "list who is in a channel"),
    "who": _Command(ChatSession._cmd_who, "/who [mask]", "who is there"),
    "whois": _Command(ChatSession._cmd_whois, "/whois nick", "about someone"),
    "list": _Command(ChatSession._cmd_list, "/list [#chan,...|filter]", "list channels"),
    "away": _Command(ChatSession._cmd_away, "/away [message]", "set (or clear) away"),
    "history": _Command(
        ChatSession._cmd_history, "/history [n]", "load n older lines of this channel or query"
    ),
    "register": _Command(
        ChatSession._cmd_register,
        "/register [account [email]]",
        "register an account (asks for its password)",
    ),
    "raw": _Command(ChatSession._cmd_raw, "/raw LINE", "send a raw IRC line"),
    "quit": _Command(ChatSession._cmd_quit, "/quit [reason]", "disconnect and exit"),
    "bye": _Command(ChatSession._cmd_quit, "/bye [reason]", "same as /quit"),
    "help": _Command(ChatSession._cmd_help, "/help", "this list"),
}


def _default_nick() -> str:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = ""
    name = re.sub(r"[^A-Za-z0-9_\-\[\]\\^{}|`]", "", name).lstrip("-0123456789")
    return name[:16] or "guest"


class _Disconnected(Exception):
    """Ends the prompt when the server goes away."""


def _dim(line: str) -> str:
    """ANSI faint. Safe to print raw: every received text was sanitized (no ESC)."""
    return f"\x1b[2m{line}\x1b[22m"


def _run_terminal(conn: Connection, nick: str) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.patch_stdout import patch_stdout

    bindings = KeyBindings()

    @bindings.add("escape", "enter")  # Alt+Enter: a line break in the message
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    prompt_session: PromptSession[str] = PromptSession(key_bindings=bindings)
    app = prompt_session.app

    def ask_secret(question: str) -> str:
        # a session of its own: the chat history never holds the password
        return PromptSession[str]().prompt(question, is_password=True)

    session = ChatSession(
        conn,
        lambda line: print(line, flush=True),
        changed=app.invalidate,
        ask_secret=ask_secret,
        dim=_dim,
    )
    conn.on_message(session.handle_message)

    def stop_prompt() -> None:
        if app.is_running and not app.is_done:
            app.exit(exception=_Disconnected())

    def on_disconnect(error: BaseException | None) -> None:
        session.release_held()
        if not session.quitting.is_set():
            session.show(f"! disconnected{f': {error}' if error else ''}")
        loop = app.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop_prompt)

    conn.on_disconnect(on_disconnect)
    with patch_stdout(raw=True):  # our lines hold no escape but the dimming
        session.show(f"-- connecting to {conn.host}:{conn.port} as {nick}")
        try:
            conn.connect()
        except (OSError, RegistrationError) as exc:  # TimeoutError is an OSError
            session.show(f"! cannot connect to {conn.host}:{conn.port}: {exc}")
            return 1
        session.show("-- connected; /join #channel to start, /help for commands")
        while not session.quitting.is_set():
            if conn.disconnected.is_set():
                return 1
            try:
                # pre_run closes the window where the server leaves before the prompt runs
                line = prompt_session.prompt(
                    session.prompt,
                    pre_run=lambda: stop_prompt() if conn.disconnected.is_set() else None,
                )
            except KeyboardInterrupt:
                continue  # Ctrl-C drops the typed line
            except EOFError:
                line = "/quit"  # Ctrl-D
            except _Disconnected:
                return 1
            session.handle_input(line)
    return 0


def _account_password(account: str, path: str | None) -> str:
    """The account password: the first line of ``path``, else ``$RELAYCHAT_PASSWORD``,
    else asked on the terminal without echo. Raises OSError for a file that cannot be
    read (the message names the file, never its content)."""
    if path is not None:
        with open(path, encoding="utf-8") as file:
            return file.readline().rstrip("\r\n")
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    return getpass.getpass(f"Password for {account}: ")


def chat_main(argv: list[str] | None = None) -> int:
    """Entry point of ``relaychat chat``; returns the exit status.

    0 after /quit (or Ctrl-D), 1 when the connection fails or the server goes
    away, 2 for bad arguments or when stdin/stdout is not a terminal, 130 for
    Ctrl-C while not at the prompt (at the prompt Ctrl-C only drops the line).
    """
    parser = argparse.ArgumentParser(
        prog="relaychat chat", description="Chat on an IRC server from the terminal."
    )
    parser.add_argument("--nick", default=None, help="nickname (default: your user name)")
    parser.add_argument("--password", default=None, help="server password (PASS)")
    parser.add_argument(
        "--account",
        default=None,
        help=f"log in to this account with SASL; the password comes from --password-file,"
        f" else ${PASSWORD_ENV}, else a prompt",
    )
    parser.add_argument(
        "--password-file",
        default=None,
        metavar="PATH",
        help="read the account password from the first line of this file",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=HISTORY_LINES,
        metavar="N",
        help=f"lines of history shown on joining a channel, when the server keeps it"
        f" (default {HISTORY_LINES}; 0: none)",
    )
    parser.add_argument(
        "address",
        nargs="?",
        default=None,
        metavar="HOST[:PORT]",
        help=f"server (default {DEFAULT_HOST}:{DEFAULT_PORT})",
    )
    args = parser.parse_args(argv)
    try:
        host, port = parse_address(args.address)
    except ValueError as exc:
        parser.error(str(exc))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("relaychat chat: needs a terminal", file=sys.stderr)
        return 2
    if args.password_file is not None and args.account is None:
        parser.error("--password-file needs --account")
    if not 0 <= args.history <= MAX_HISTORY_LINES:
        parser.error(f"--history must be 0-{MAX_HISTORY_LINES}")
    nick = args.nick or _default_nick()
    sasl = None
    if args.account is not None:
        try:
            secret = _account_password(args.account, args.password_file)
        except OSError as exc:
            parser.error(f"cannot read --password-file {args.password_file}: {exc.strerror}")
        except (EOFError, KeyboardInterrupt):
            return 130
        if not secret:
            parser.error("empty account password")
        try:
            sasl = SaslCredentials(args.account, secret)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        conn = Connection(
            host,
            port,
            nick,
            password=args.password,
            sasl=sasl,
            caps=(*DEFAULT_CAPS, ACCOUNT_REGISTRATION),
            join_history=args.history,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return _run_terminal(conn, nick)
    except KeyboardInterrupt:  # Ctrl-C outside the prompt, e.g. while connecting
        return 130
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(chat_main())
