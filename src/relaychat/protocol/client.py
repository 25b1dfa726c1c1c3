"""The client side of the protocol, sans-I/O: registration, CAP, PING, nick tracking.

:class:`ClientProtocol` takes bytes in (``receive_data``, ``receive_eof``) and gives
parsed :class:`~relaychat.protocol.message.Message` objects and bytes to send out
(``data_to_send``). It owns line framing, registration (PASS, CAP LS 302 / REQ / END,
NICK, USER, alternate nicks on 432/433/436/437), PING answers, current-nick
tracking, ISUPPORT and the capability sets. It never touches a socket, a thread, a
lock or a clock, so it is not thread-safe by itself: :mod:`relaychat.client.connection`
drives it from threads.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator

from relaychat.protocol.casemap import casefolder, fold_rfc1459
from relaychat.protocol.framing import LineBuffer, TooLong
from relaychat.protocol.message import Message, MessageParseError, parse_message, split_source
from relaychat.protocol.numerics import (
    ERR_ERRONEUSNICKNAME,
    ERR_NICKNAMEINUSE,
    ERR_PASSWDMISMATCH,
    ERR_UNKNOWNCOMMAND,
    ERR_YOUREBANNEDCREEP,
    RPL_ISUPPORT,
    RPL_WELCOME,
)

# Modern IRC: a client accepts up to 8191 bytes of tags from a server ('@' included)
SERVER_TAGS_BYTES = 8190

__all__ = [
    "ClientProtocol",
    "ConnectionClosed",
    "Phase",
    "RegistrationError",
]

logger = logging.getLogger("relaychat.client")

# Not in relaychat.protocol.numerics because relaychat's server never sends them.
ERR_NICKCOLLISION = "436"
ERR_UNAVAILRESOURCE = "437"

_NICK_REJECTED = frozenset(
    {ERR_ERRONEUSNICKNAME, ERR_NICKNAMEINUSE, ERR_NICKCOLLISION, ERR_UNAVAILRESOURCE}
)
_FATAL_BEFORE_WELCOME = frozenset({ERR_PASSWDMISMATCH, ERR_YOUREBANNEDCREEP})

#: Longest line (without tags) accepted from the server. Generous: servers send
#: more than the 512 bytes the RFCs allow, and a client loses nothing by reading it.
MAX_LINE_BYTES = 8192


class ConnectionClosed(ConnectionError):
    """The connection is closed (by either side) and nothing more can be read or sent."""


class RegistrationError(ConnectionError):
    """The server refused the registration (bad password, ban, no usable nick, ERROR)."""


class Phase(enum.Enum):
    """Where a connection is in its life."""

    NEW = "new"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    CLOSED = "closed"


class _Event(enum.Enum):
    START = "start"
    WELCOME = "welcome"
    REJECTED = "rejected"
    EOF = "eof"


# The registration state machine, as data: (phase, event) -> next phase.
# A pair that is not listed leaves the phase unchanged (e.g. ERROR after 001).
_TRANSITIONS: dict[tuple[Phase, _Event], Phase] = {
    (Phase.NEW, _Event.START): Phase.REGISTERING,
    (Phase.NEW, _Event.EOF): Phase.CLOSED,
    (Phase.REGISTERING, _Event.WELCOME): Phase.REGISTERED,
    (Phase.REGISTERING, _Event.REJECTED): Phase.FAILED,
    (Phase.REGISTERING, _Event.EOF): Phase.CLOSED,
    (Phase.REGISTERED, _Event.EOF): Phase.CLOSED,
    (Phase.FAILED, _Event.EOF): Phase.CLOSED,
}


class _CapPhase(enum.Enum):
    LISTING = "listing"  # CAP LS 302 sent, collecting (possibly multi-line) replies
    REQUESTING = "requesting"  # CAP REQ sent, waiting for ACK/NAK
    DONE = "done"  # CAP END sent, or the server does not do CAP


def _alternate_nicks(nick: str) -> Iterator[str]:
    """``nick_``, ``nick__``, ``nick___``, then forms that fit a 9-character NICKLEN
    (``nick[:8]_`` ... and ``nick[:6]NNN`` with a counter)."""
    for i in range(1, 4):
        yield nick + "_" * i
    for i in range(1, 4):
        short = nick[: 9 - i] + "_" * i
        if short != nick:
            yield short
    for i in itertools.count(1):
        yield f"{nick[:6]}{i:03d}"


class ClientProtocol:
    """Sans-I/O client core: bytes in, messages and bytes out.

    ``caps`` are the capabilities to request when the server offers them; the
    ones the server acknowledges end up in :attr:`enabled_caps`. ``alt_nicks`` are
    tried in order when the server rejects the nick during registration
    (432/433/436/437); by default ``nick_``, ``nick__``, ... are generated.
    After ``max_nick_attempts`` rejections the registration fails.
    """

    def __init__(
        self,
        nick: str,
        *,
        user: str | None = None,
        realname: str | None = None,
        password: str | None = None,
        caps: Iterable[str] = (),
        alt_nicks: Iterable[str] | None = None,
        max_nick_attempts: int = 10,
    ) -> None:
        if not nick or any(c in nick for c in " \r\n\0:"):
            raise ValueError(f"bad nick {nick!r}")
        self.nick = nick
        self.user = user or nick
        self.realname = realname or nick
        self.password = password
        self.requested_caps = frozenset(caps)
        self.available_caps: dict[str, str] = {}
        self.enabled_caps: set[str] = set()
        self.isupport: dict[str, str] = {}
        self.phase = Phase.NEW
        #: Why registration failed (or the last ERROR text), else None.
        self.error: str | None = None
        self._cap_phase = _CapPhase.LISTING
        self._alt_nicks: Iterator[str] = (
            iter(list(alt_nicks)) if alt_nicks is not None else _alternate_nicks(nick)
        )
        self._nick_attempts_left = max_nick_attempts
        self._lines = LineBuffer(line_length=MAX_LINE_BYTES, tags_length=SERVER_TAGS_BYTES)
        self._outbuf = bytearray()

    # -- state ----------------------------------------------------------------

    def _transition(self, event: _Event) -> None:
        self.phase = _TRANSITIONS.get((self.phase, event), self.phase)

    def casefold(self, name: str) -> str:
        """Fold a nick or channel name with the server's CASEMAPPING (rfc1459 by default)."""
        try:
            fold = casefolder(self.isupport.get("CASEMAPPING", "rfc1459"))
        except ValueError:
            fold = fold_rfc1459
        return fold(name)

    def is_me(self, nick: str) -> bool:
        return self.casefold(nick) == self.casefold(self.nick)

    # -- output ---------------------------------------------------------------

    def start(self) -> None:
        """Queue the registration burst: [PASS], CAP LS 302, NICK, USER.

        Raises RuntimeError when called twice.
        """
        if self.phase is not Phase.NEW:
            raise RuntimeError(f"start() in phase {self.phase.value}")
        self._transition(_Event.START)
        if self.password is not None:
            self.send(Message("PASS", [self.password]))
        self.send(Message("CAP", ["LS", "302"]))
        self.send(Message("NICK", [self.nick]))
        self.send(Message("USER", [self.user, "0", "*", self.realname]))

    def send(self, message: Message) -> None:
        """Queue one message. Raises ValueError if it cannot be serialized faithfully
        (CR/LF/NUL anywhere, or a space/colon/empty string in a middle parameter) --
        a programming error, never sent half-way."""
        self._outbuf += message.to_bytes()  # MessageSerializeError is a ValueError

    def data_to_send(self) -> bytes:
        """Return (and forget) every byte queued so far; ``b""`` when there is none."""
        data = bytes(self._outbuf)
        self._outbuf.clear()
        return data

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._outbuf)

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Message]:
        """Feed bytes from the server; return the complete messages they finish.

        Lines end in LF, with an optional CR before it. They are decoded as UTF-8
        with replacement characters. Empty lines and lines that do not parse are
        dropped (logged); so is a line longer than :data:`MAX_LINE_BYTES` (or
        with more than 8191 bytes of tags). A partial line waits for the next call.
        """
        messages: list[Message] = []
        for frame in self._lines.feed(data):
            if isinstance(frame, TooLong):
                logger.warning("dropping an over-long line from the server")
                continue
            line = frame.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                message = parse_message(line)
            except MessageParseError as exc:
                logger.warning("ignoring unparsable line %r: %s", line, exc)
                continue
            self._handle(message)
            messages.append(message)
        return messages

    def receive_eof(self) -> None:
        """The server closed the connection; a pending partial line is dropped."""
        self._lines = LineBuffer(line_length=MAX_LINE_BYTES, tags_length=SERVER_TAGS_BYTES)
        if self.phase is Phase.REGISTERING and self.error is None:
            self.error = "connection closed before registration completed"
        self._transition(_Event.EOF)

    # -- handlers -------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        command = msg.command.upper()
        handler = _HANDLERS.get(command)
        if handler is not None:
            handler(self, msg)
        elif self.phase is Phase.REGISTERING:
            if command in _NICK_REJECTED:
                self._next_nick(msg)
            elif command in _FATAL_BEFORE_WELCOME:
                self._reject(msg.params[-1] if msg.params else command)

    def _reject(self, reason: str) -> None:
        self.error = reason
        self._transition(_Event.REJECTED)

    def _next_nick(self, msg: Message) -> None:
        self._nick_attempts_left -= 1
        candidate = next(self._alt_nicks, None) if self._nick_attempts_left > 0 else None
        if candidate is None:
            text = msg.params[-1] if msg.params else msg.command
            self._reject(f"no usable nick (last tried {self.nick!r}: {text})")
            return
        self.nick = candidate
        self.send(Message("NICK", [candidate]))

    def _on_ping(self, msg: Message) -> None:
        self.send(Message("PONG", list(msg.params)))

    def _on_welcome(self, msg: Message) -> None:
        if msg.params:
            self.nick = msg.params[0]
        self._cap_phase = _CapPhase.DONE
        self._transition(_Event.WELCOME)

    def _on_isupport(self, msg: Message) -> None:
        for token in msg.params[1:-1]:
            if token.startswith("-"):
                self.isupport.pop(token[1:].upper(), None)
            else:
                key, _, value = token.partition("=")
                self.isupport[key.upper()] = value

    def _on_nick(self, msg: Message) -> None:
        if msg.source and msg.params and self.is_me(split_source(msg.source)[0]):
            self.nick = msg.params[0]

    def _on_error(self, msg: Message) -> None:
        if self.phase is not Phase.FAILED:  # keep the more specific reason (e.g. 464)
            self.error = msg.params[-1] if msg.params else "ERROR"
        self._transition(_Event.REJECTED)

    def _on_unknown_command(self, msg: Message) -> None:
        if len(msg.params) >= 2 and msg.params[1].upper() == "CAP":
            self._cap_phase = _CapPhase.DONE  # a server without CAP: nothing to end

    def _on_cap(self, msg: Message) -> None:
        if len(msg.params) < 2:
            return
        sub = msg.params[1].upper()
        more = len(msg.params) >= 4 and msg.params[2] == "*"
        names = msg.params[-1].split() if len(msg.params) >= 3 else []
        if sub in ("LS", "NEW"):
            for item in names:
                key, _, value = item.partition("=")
                self.available_caps[key] = value
            if sub == "LS" and self._cap_phase is _CapPhase.LISTING and not more:
                self._request_caps()
            elif sub == "NEW":
                self._request_caps()
        elif sub == "DEL":
            for name in names:
                self.available_caps.pop(name, None)
                self.enabled_caps.discard(name)
        elif sub == "ACK":
            for name in names:
                if name.startswith("-"):
                    self.enabled_caps.discard(name[1:])
                else:
                    self.enabled_caps.add(name)
            self._end_caps()
        elif sub == "NAK":
            self._end_caps()

    def _request_caps(self) -> None:
        wanted = sorted(
            name
            for name in self.requested_caps
            if name in self.available_caps and name not in self.enabled_caps
        )
        if wanted:
            self.send(Message("CAP", ["REQ", " ".join(wanted)]))
            if self._cap_phase is _CapPhase.LISTING:
                self._cap_phase = _CapPhase.REQUESTING
        else:
            self._end_caps()

    def _end_caps(self) -> None:
        if self._cap_phase is not _CapPhase.DONE:
            self._cap_phase = _CapPhase.DONE
            self.send(Message("CAP", ["END"]))


_HANDLERS: dict[str, Callable[[ClientProtocol, Message], None]] = {
    "PING": ClientProtocol._on_ping,
    "CAP": ClientProtocol._on_cap,
    "NICK": ClientProtocol._on_nick,
    "ERROR": ClientProtocol._on_error,
    RPL_WELCOME: ClientProtocol._on_welcome,
    RPL_ISUPPORT: ClientProtocol._on_isupport,
    ERR_UNKNOWNCOMMAND: ClientProtocol._on_unknown_command,
}
