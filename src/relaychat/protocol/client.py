"""The client side of the protocol, sans-I/O: registration, CAP, PING, nick tracking,
batches, labeled responses and multi-line messages.

Theory of operation
-------------------
:class:`ClientProtocol` takes bytes in (``receive_data``, ``receive_eof``) and gives
what they complete out, plus bytes to send (``data_to_send``). It owns line framing,
registration (PASS, CAP LS 302 / REQ / END, NICK, USER, alternate nicks on
432/433/436/437, SASL login before CAP END with the mechanisms of
:mod:`relaychat.protocol.sasl_client`), PING answers, current-nick tracking,
ISUPPORT and the capability sets. It never touches a socket, a thread, a lock or a
clock, so it is not thread-safe by itself: :mod:`relaychat.client.connection` drives
it from threads.

What ``receive_data`` returns, in the order the server meant it (:data:`Received`):

* a :class:`~relaychat.protocol.message.Message` for each line outside any batch;
* a :class:`Batch` for each IRCv3 batch (``batch``), once its ``BATCH -ref`` line has
  arrived: its type, parameters, the tags of its start line and everything inside it
  in order, nested batches (the ``batch`` tag on a ``BATCH +`` line) included as
  :class:`Batch` items where they started;
* a :class:`Response` for the reply to a labeled request (``labeled-response``): the
  ``ACK``, the one labeled message, or the labeled batch, for a label that
  :meth:`ClientProtocol.send_request` handed out and that is still pending. Each
  label is resolved at most once; a reply to a label that is not pending (cancelled,
  or the server's mistake) comes as an ordinary Message or Batch.

Every line, inside a batch or not, is still seen at once by the registration and
state handlers (PING is answered, our nick is tracked) when it arrives.

Bounds. A server that opens batches and never closes them cannot grow memory
without limit (:class:`ClientLimits`): at most ``max_open_batches`` batches are open
at once and the open batches together hold at most ``max_batch_lines`` lines and
``max_batch_bytes`` bytes of them. When a new batch or line would pass a limit, the
oldest open top-level batch is delivered at once, unfinished (``closed`` False);
lines that arrive later for it are delivered one by one, as a client without batch
support would see them. Nothing is dropped, and no label is resolved twice.
At most ``max_pending_requests`` labeled requests wait at once
(:class:`TooManyRequests` past that).
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from relaychat.protocol.casemap import casefolder, fold_rfc1459
from relaychat.protocol.framing import LineBuffer, TooLong
from relaychat.protocol.message import (
    Message,
    MessageParseError,
    parse_message,
    split_source,
    truncate_utf8,
)
from relaychat.protocol.numerics import (
    ERR_ERRONEUSNICKNAME,
    ERR_NICKLOCKED,
    ERR_NICKNAMEINUSE,
    ERR_PASSWDMISMATCH,
    ERR_SASLABORTED,
    ERR_SASLALREADY,
    ERR_SASLFAIL,
    ERR_SASLTOOLONG,
    ERR_UNKNOWNCOMMAND,
    ERR_YOUREBANNEDCREEP,
    RPL_ISUPPORT,
    RPL_LOGGEDIN,
    RPL_LOGGEDOUT,
    RPL_SASLMECHS,
    RPL_SASLSUCCESS,
    RPL_WELCOME,
)
from relaychat.protocol.sasl_client import (
    DEFAULT_MECHANISMS,
    ChallengeReader,
    Mechanism,
    SaslCredentials,
    SaslError,
    encode_response,
    make_mechanism,
)

# Modern IRC: a client accepts up to 8191 bytes of tags from a server ('@' included)
SERVER_TAGS_BYTES = 8190

__all__ = [
    "ACCOUNT_REGISTRATION",
    "CHATHISTORY",
    "DEFAULT_CAPS",
    "DEFAULT_HISTORY_LINES",
    "READ_MARKER",
    "History",
    "HistoryRef",
    "MULTILINE",
    "MULTILINE_CONCAT",
    "Batch",
    "AuthenticationFailed",
    "ClientLimits",
    "ClientProtocol",
    "ConnectionClosed",
    "MultilineLimits",
    "NotSupported",
    "Phase",
    "Received",
    "RecentMsgids",
    "RegistrationError",
    "RequestError",
    "Response",
    "SaslCredentials",
    "TooManyRequests",
    "split_lines",
    "split_multiline",
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

#: The draft/multiline capability, batch type and concatenation tag (IRCv3 multiline,
#: a work-in-progress specification, hence the ``draft/`` names).
MULTILINE = "draft/multiline"
MULTILINE_CONCAT = "draft/multiline-concat"

#: The capability that allows ``REGISTER <account> <email|*> <password>`` (IRCv3
#: account-registration, a work-in-progress specification). Not requested by default.
ACCOUNT_REGISTRATION = "draft/account-registration"

#: IRCv3 chathistory (``CHATHISTORY`` with a ``chathistory`` batch) and read-marker
#: (``MARKREAD``), work-in-progress specifications, hence the ``draft/`` names.
CHATHISTORY = "draft/chathistory"
READ_MARKER = "draft/read-marker"

#: How many lines a history request asks for when not told (capped by the server's
#: ISUPPORT ``CHATHISTORY`` limit).
DEFAULT_HISTORY_LINES = 50

#: At most this many targets have a read marker kept (a server cannot grow it).
MAX_READ_MARKERS = 10_000

#: What a client asks for when the server offers it, unless given ``caps``. Not
#: ``echo-message``: a bot that repeats what it hears would then hear itself.
DEFAULT_CAPS: tuple[str, ...] = (
    "batch",
    CHATHISTORY,
    MULTILINE,
    READ_MARKER,
    "labeled-response",
    "message-tags",
    "server-time",
)

# Bytes of a relayed PRIVMSG line that are not its text, besides our nick and the
# target (IRCv3 multiline, "splitting long lines"): ":" "!" "@" " PRIVMSG " " :" CRLF
# and a safety margin of 10, plus the longest user (20) and host (63) we assume.
_LINE_OVERHEAD = 14 + 10 + 20 + 63


class ConnectionClosed(ConnectionError):
    """The connection is closed (by either side) and nothing more can be read or sent."""


class RegistrationError(ConnectionError):
    """The server refused the registration (bad password, ban, no usable nick, ERROR)."""


class AuthenticationFailed(RegistrationError):
    """SASL login failed, or the server does not offer it (``numeric`` None then):
    ``numeric`` and ``text`` are the server's (904 "SASL authentication failed"...).
    Never holds the password."""

    def __init__(self, numeric: str | None, text: str) -> None:
        super().__init__(f"SASL {numeric}: {text}" if numeric else f"SASL: {text}")
        self.numeric = numeric
        self.text = text


class RequestError(Exception):
    """A labeled request could not be made (see the subclasses)."""


class NotSupported(RequestError):
    """The server did not enable ``labeled-response`` and ``batch`` for us, so a reply
    cannot be matched to its request. Send the command with ``send`` instead and read
    its replies as they come."""


class TooManyRequests(RequestError):
    """As many labeled requests as :attr:`ClientLimits.max_pending_requests` are
    waiting for their replies already."""


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


class _Sasl(enum.Enum):
    IDLE = "idle"  # not started (no credentials, or sasl not acknowledged yet)
    STARTED = "started"  # AUTHENTICATE <mechanism> sent, no challenge yet
    EXCHANGING = "exchanging"  # challenges and responses going back and forth
    ABORTING = "aborting"  # AUTHENTICATE * sent (our side failed), waiting for 906
    SUCCEEDED = "succeeded"  # 903 (or 907)
    FAILED = "failed"  # given up: see ClientProtocol.sasl_failure


class _SaslEvent(enum.Enum):
    MECHANISM = "mechanism"  # we named a mechanism
    CHALLENGE = "challenge"  # the server sent a whole challenge
    ABORT = "abort"  # our mechanism failed; AUTHENTICATE * sent
    SUCCESS = "success"  # 903 / 907
    FAILURE = "failure"  # 902/904/905/906 with no mechanism left to try, or no sasl


_ACTIVE = (_Sasl.STARTED, _Sasl.EXCHANGING, _Sasl.ABORTING)

# The SASL state machine, as data: (state, event) -> next state. A pair that is not
# listed is ignored (a stray 903 after we gave up, a challenge after success).
_SASL_TRANSITIONS: dict[tuple[_Sasl, _SaslEvent], _Sasl] = {
    (_Sasl.IDLE, _SaslEvent.MECHANISM): _Sasl.STARTED,
    (_Sasl.IDLE, _SaslEvent.FAILURE): _Sasl.FAILED,
    (_Sasl.STARTED, _SaslEvent.MECHANISM): _Sasl.STARTED,  # the next one after 904/908
    (_Sasl.STARTED, _SaslEvent.CHALLENGE): _Sasl.EXCHANGING,
    (_Sasl.EXCHANGING, _SaslEvent.CHALLENGE): _Sasl.EXCHANGING,
    (_Sasl.STARTED, _SaslEvent.ABORT): _Sasl.ABORTING,
    (_Sasl.EXCHANGING, _SaslEvent.ABORT): _Sasl.ABORTING,
    (_Sasl.STARTED, _SaslEvent.SUCCESS): _Sasl.SUCCEEDED,
    (_Sasl.EXCHANGING, _SaslEvent.SUCCESS): _Sasl.SUCCEEDED,
    (_Sasl.STARTED, _SaslEvent.FAILURE): _Sasl.FAILED,
    (_Sasl.EXCHANGING, _SaslEvent.FAILURE): _Sasl.FAILED,
    (_Sasl.ABORTING, _SaslEvent.FAILURE): _Sasl.FAILED,
}


# -- what comes out ----------------------------------------------------------------


@dataclass(eq=False)
class Batch:
    """One IRCv3 batch, delivered whole once its ``BATCH -ref`` line arrived.

    ``tags`` and ``source`` are those of the ``BATCH +ref`` line (a ``label``, the
    ``msgid`` and ``time`` of a multi-line message...); ``items`` is everything in the
    batch in order: messages, and nested batches where they started. ``closed`` is
    False for a batch delivered before its end (see the limits in the module
    docstring, or a nested batch whose parent ended first).
    """

    ref: str
    type: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    items: list[Message | Batch] = field(default_factory=list)
    closed: bool = False

    @property
    def command(self) -> str:
        """``"BATCH"``: code that picks messages by command (``m.command == "PRIVMSG"``)
        passes over a batch without having to test its type first."""
        return "BATCH"

    @property
    def msgid(self) -> str | None:
        """The ``msgid`` of the start line (a multi-line message's id), or None."""
        return self.tags.get("msgid") or None

    @property
    def complete(self) -> bool:
        """Whether this batch and every batch nested in it ended with its end line."""
        return self.closed and all(i.complete for i in self.items if isinstance(i, Batch))

    def messages(self) -> list[Message]:
        """Every message in the batch, in order, those of nested batches included
        (their ``BATCH`` lines are not messages here)."""
        out: list[Message] = []
        for item in self.items:
            if isinstance(item, Batch):
                out.extend(item.messages())
            else:
                out.append(item)
        return out

    def multiline(self) -> Message | None:
        """A ``draft/multiline`` batch as one message whose last parameter is the whole
        text: the lines joined with ``\\n``, a line tagged ``draft/multiline-concat``
        joined to the one before it directly. None for any other batch (or an empty one).

        The message has the command of the lines (PRIVMSG or NOTICE), the batch's target,
        and the start line's tags and source (the first line's when the start had none).
        Its text may hold line feeds, so it is for reading: it cannot be sent as it is
        (``Connection.privmsg`` sends such a text as a multi-line message again).
        """
        if self.type != MULTILINE:
            return None
        lines = [m for m in self.items if isinstance(m, Message) and len(m.params) >= 2]
        if not lines:
            return None
        parts: list[str] = []
        for line in lines:
            text = line.params[-1]
            if parts and MULTILINE_CONCAT in line.tags:
                parts[-1] += text
            else:
                parts.append(text)
        target = self.params[0] if self.params else lines[0].params[0]
        tags = {k: v for k, v in self.tags.items() if k != "batch"}
        return Message(
            lines[0].command, [target, "\n".join(parts)], self.source or lines[0].source, tags
        )


@dataclass(frozen=True, eq=False)
class Response:
    """The reply to one labeled request: ``messages`` is empty for an ``ACK``, holds
    the one labeled message, or every message of the labeled batch (``batch``) in
    order, nested batches flattened."""

    label: str
    messages: list[Message]
    batch: Batch | None = None
    #: For a history request (:meth:`ClientProtocol.send_history`): the stored messages.
    history: History | None = None

    @property
    def ack(self) -> bool:
        """Whether the server answered with ``ACK`` (the command has no reply)."""
        return self.batch is None and not self.messages

    @property
    def complete(self) -> bool:
        """False when the labeled batch was delivered before its end (limits)."""
        return self.batch is None or self.batch.complete

    @property
    def error(self) -> Message | None:
        """The first error in the reply: a numeric 400-599 or a ``FAIL``; else None."""
        for msg in self.messages:
            command = msg.command
            if command.upper() == "FAIL" or (
                len(command) == 3 and command.isdigit() and command[0] in "45"
            ):
                return msg
        return None

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)


@dataclass(frozen=True, eq=False)
class History:
    """Stored messages of one target (IRCv3 chathistory), oldest first: the answer
    to a history request, and the item delivered for the automatic fetch on JOIN
    (``auto`` True). Everything in it is history, never a live message; a message
    the connection already delivered live (same ``msgid``) is left out, and a
    live message that comes after it with a ``msgid`` in it is not delivered again.

    ``error`` is the server's ``FAIL`` (or error numeric) when it refused; ``complete``
    is False for a batch cut short (limits). Each message keeps its ``time`` and
    ``msgid`` tags.
    """

    target: str
    messages: list[Message]
    auto: bool = False
    error: Message | None = None
    complete: bool = True

    @property
    def command(self) -> str:
        """``"CHATHISTORY"``: code that picks items by command passes over it."""
        return "CHATHISTORY"

    @property
    def oldest(self) -> Message | None:
        return self.messages[0] if self.messages else None

    @property
    def newest(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)


#: A point in a target's history: a message (its ``msgid``, else its ``time``), a
#: datetime (timezone-aware, or taken as UTC), or a reference as the spec writes it
#: (``msgid=...`` / ``timestamp=...``).
HistoryRef = Message | datetime | str

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")


def format_timestamp(when: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ss.sssZ`` (server-time), UTC; a naive datetime is UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def history_reference(ref: HistoryRef) -> str:
    """The CHATHISTORY reference for ``ref``. Raises ValueError for a message with
    neither ``msgid`` nor a valid ``time`` tag, or a string that is no reference."""
    if isinstance(ref, datetime):
        return "timestamp=" + format_timestamp(ref)
    if isinstance(ref, Message):
        if ref.msgid is not None and _valid_word(ref.msgid):
            return "msgid=" + ref.msgid
        stamp = ref.tags.get("time", "")
        if _TIMESTAMP.fullmatch(stamp):
            return "timestamp=" + stamp
        raise ValueError("the message has neither a msgid nor a time tag")
    kind, _, value = ref.partition("=")
    if kind == "msgid" and _valid_word(value):
        return ref
    if kind == "timestamp" and _TIMESTAMP.fullmatch(value):
        return ref
    raise ValueError(f"bad history reference {ref!r}")


def _valid_word(word: str) -> bool:
    return bool(word) and word[0] != ":" and not any(c in word for c in " \r\n\0")


def read_timestamp(value: Message | datetime | str) -> str:
    """The ``YYYY-MM-DDThh:mm:ss.sssZ`` of a read marker: a message's ``time`` tag, a
    datetime, or the text itself (``timestamp=`` in front allowed). ValueError else."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Message):
        value = value.tags.get("time", "")
    value = value.removeprefix("timestamp=")
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(f"bad timestamp {value!r}")
    return value


#: What :meth:`ClientProtocol.receive_data` returns: see the module docstring.
Received = Message | Batch | Response | History


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """How much a client holds for a server (see the module docstring, "Bounds")."""

    max_open_batches: int = 64
    max_batch_lines: int = 20_000
    max_batch_bytes: int = 8 * 1024 * 1024
    max_pending_requests: int = 1000

    def __post_init__(self) -> None:
        for name in ("max_open_batches", "max_batch_lines", "max_batch_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_pending_requests < 0:
            raise ValueError("max_pending_requests must be >= 0")


class RecentMsgids:
    """The ``msgid`` of the last ``size`` messages seen, to drop a message seen twice.

    Share one between the connections a program makes one after the other (a
    reconnect) and give it to each as ``seen_msgids``: what the server sends again
    after a reconnect (history played back, say) is not delivered twice. Not
    thread-safe; each connection uses it under its own lock, so share it only
    between connections that do not run at the same time.
    """

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def is_duplicate(self, msgid: str) -> bool:
        """Record ``msgid``; return whether it had been recorded before."""
        if msgid in self._ids:
            self._ids.move_to_end(msgid)
            return True
        self._ids[msgid] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False

    def __contains__(self, msgid: object) -> bool:
        return msgid in self._ids

    def __len__(self) -> int:
        return len(self._ids)


# -- multi-line messages out -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultilineLimits:
    """The value of the ``draft/multiline`` capability: ``max-bytes`` of text per
    batch (line feeds between lines count one each) and ``max-lines`` per batch."""

    max_bytes: int
    max_lines: int | None = None

    @classmethod
    def parse(cls, value: str) -> MultilineLimits | None:
        """``"max-bytes=4096,max-lines=24"`` -> limits; None without a usable
        ``max-bytes`` (required). Unknown keys are ignored."""
        fields: dict[str, int] = {}
        for token in value.split(","):
            key, _, number = token.partition("=")
            if key in ("max-bytes", "max-lines") and number.isascii() and number.isdigit():
                fields[key] = int(number)
        max_bytes = fields.get("max-bytes", 0)
        if max_bytes < 1:
            return None
        max_lines = fields.get("max-lines")
        return cls(max_bytes, max_lines if max_lines else None)


def split_lines(text: str) -> list[str]:
    """``text`` split at CR LF, CR and LF only. Not ``str.splitlines()``, which also
    splits at ``\x1d`` and ``\x1e`` (IRC italics and strikethrough), ``\x0b``,
    ``\x0c``, ``\x1c``, ``\x85``, U+2028 and U+2029. A trailing line break gives a
    last empty line."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _split_long(line: str, budget: int) -> list[str]:
    """``line`` cut into pieces of at most ``budget`` UTF-8 bytes, between words when
    there is a space to cut at (the space stays at the end of a piece, as the multiline
    specification recommends), never inside a character."""
    pieces: list[str] = []
    while len(line.encode("utf-8", "replace")) > budget:
        cut = truncate_utf8(line, budget)
        space = cut.rfind(" ")
        if space > 0:
            cut = cut[: space + 1]
        if not cut:  # a budget smaller than one character: take the character
            cut = line[0]
        pieces.append(cut)
        line = line[len(cut) :]
    pieces.append(line)
    return pieces


def split_multiline(
    text: str, limits: MultilineLimits, line_bytes: int
) -> list[list[tuple[str, bool]]]:
    """Plan the multi-line batches that carry ``text``: a list of batches, each a
    list of ``(line, concat)`` pairs, ``concat`` meaning "joined to the line before
    without a line break" (``draft/multiline-concat``).

    Lines longer than ``line_bytes`` (or the batch's ``max-bytes``) are cut as
    :func:`_split_long` does. A text over ``max-bytes`` or ``max-lines`` becomes
    several batches, each within both limits (a batch never starts with a concat
    line). Blank lines at the start or end of a batch are left out, and so is a
    batch of blank lines only; blank lines inside a batch are kept.
    """
    budget = max(1, min(line_bytes, limits.max_bytes))
    pieces: list[tuple[str, bool]] = []
    for line in split_lines(text):
        for i, piece in enumerate(_split_long(line, budget) if line else [""]):
            pieces.append((piece, i > 0))
    batches: list[list[tuple[str, bool]]] = []
    current: list[tuple[str, bool]] = []
    size = 0
    for piece, concat in pieces:
        if not current and not piece:
            continue  # no blank line to start a batch with
        cost = len(piece.encode("utf-8", "replace")) + (0 if concat or not current else 1)
        full = limits.max_lines is not None and len(current) >= limits.max_lines
        if current and (full or size + cost > limits.max_bytes):
            batches.append(current)
            current, size, concat = [], 0, False
            if not piece:
                continue
            cost = len(piece.encode("utf-8", "replace"))
        current.append((piece, concat))
        size += cost
    if current:
        batches.append(current)
    for lines in batches:
        while lines and not lines[-1][0]:
            lines.pop()
    return [lines for lines in batches if lines]


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
    """Sans-I/O client core: bytes in, messages, batches and responses and bytes out.

    ``caps`` are the capabilities to request when the server offers them
    (:data:`DEFAULT_CAPS` when None; ``()`` requests none); the ones the server
    acknowledges end up in :attr:`enabled_caps`. ``alt_nicks`` are tried in order
    when the server rejects the nick during registration (432/433/436/437); by
    default ``nick_``, ``nick__``, ... are generated. After ``max_nick_attempts``
    rejections the registration fails. ``limits`` bound what is held for the server
    (see the module docstring). With ``seen_msgids``, a message (or multi-line
    message) whose ``msgid`` it has recorded is not delivered again.

    SASL (IRCv3 sasl-3.1/3.2). With ``sasl`` credentials the client requests the
    ``sasl`` capability when offered and logs in before ``CAP END``: registration
    waits for it. ``sasl_mechanisms`` are tried in that order (by default
    SCRAM-SHA-256, then PLAIN), limited to those the server lists (the capability's
    value, or a 908 reply); after a 904 to a mechanism's name the next one is
    tried. When the login fails (902/904/905/906, a SCRAM server that does not
    prove itself) or the server does not offer ``sasl``, registration fails
    (:attr:`sasl_failure` says why) unless ``sasl_required`` is False: then it
    goes on without an account. :attr:`account` is the account the server
    confirmed (900), None before and after a 901.
    """

    def __init__(
        self,
        nick: str,
        *,
        user: str | None = None,
        realname: str | None = None,
        password: str | None = None,
        caps: Iterable[str] | None = None,
        alt_nicks: Iterable[str] | None = None,
        max_nick_attempts: int = 10,
        limits: ClientLimits | None = None,
        seen_msgids: RecentMsgids | None = None,
        sasl: SaslCredentials | None = None,
        sasl_mechanisms: Iterable[str] = DEFAULT_MECHANISMS,
        sasl_required: bool = True,
        join_history: int = 0,
    ) -> None:
        if not nick or any(c in nick for c in " \r\n\0:"):
            raise ValueError(f"bad nick {nick!r}")
        self.nick = nick
        self.user = user or nick
        self.realname = realname or nick
        self.password = password
        self.requested_caps = frozenset(DEFAULT_CAPS if caps is None else caps)
        self.available_caps: dict[str, str] = {}
        self.enabled_caps: set[str] = set()
        self.isupport: dict[str, str] = {}
        self.phase = Phase.NEW
        self.limits = limits or ClientLimits()
        self.seen_msgids = seen_msgids
        #: Why registration failed (or the last ERROR text), else None.
        self.error: str | None = None
        self._cap_phase = _CapPhase.LISTING
        self._alt_nicks: Iterator[str] = (
            iter(list(alt_nicks)) if alt_nicks is not None else _alternate_nicks(nick)
        )
        self._nick_attempts_left = max_nick_attempts
        self._lines = LineBuffer(line_length=MAX_LINE_BYTES, tags_length=SERVER_TAGS_BYTES)
        self._outbuf = bytearray()
        self._pending: set[str] = set()  # labels of requests waiting for their reply
        # history requests among them: label -> (target, fetched on JOIN)
        self._history_requests: dict[str, tuple[str, bool]] = {}
        if join_history < 0:
            raise ValueError("join_history must be >= 0")
        #: Lines of history fetched on our own JOIN when the server offers it (0: none).
        self.join_history = join_history
        # with draft/chathistory: msgids delivered live, and delivered as history
        self._live_msgids = RecentMsgids()
        self._history_msgids = RecentMsgids()
        # draft/read-marker: folded target -> (name, timestamp or None for "*")
        self._read_markers: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._labels = itertools.count(1)
        self._batch_refs = itertools.count(1)
        # open batches: ref -> batch, its parent's ref (None: top level), its root's ref
        self._open: dict[str, Batch] = {}
        self._parent: dict[str, str | None] = {}
        self._root: dict[str, str] = {}
        # per open top-level batch, oldest first: [lines, bytes] held in its tree
        self._held: dict[str, list[int]] = {}
        self._held_lines = 0
        self._held_bytes = 0
        self._sasl_credentials = sasl
        self.sasl_mechanisms: tuple[str, ...] = tuple(m.upper() for m in sasl_mechanisms)
        for name in self.sasl_mechanisms:
            if name not in DEFAULT_MECHANISMS:
                raise ValueError(f"unknown SASL mechanism {name!r}")
        self.sasl_required = sasl_required
        #: The account the server says we are logged into (900), else None.
        self.account: str | None = None
        #: Why SASL failed: (numeric or None, text), else None.
        self.sasl_failure: tuple[str | None, str] | None = None
        #: The mechanisms the server named (the ``sasl`` value or 908), if it did.
        self.sasl_server_mechanisms: tuple[str, ...] | None = None
        self._sasl = _Sasl.IDLE
        self._sasl_tried: list[str] = []
        self._mechanism: Mechanism | None = None
        self._challenge = ChallengeReader()

    # -- state ----------------------------------------------------------------

    def _transition(self, event: _Event) -> None:
        self.phase = _TRANSITIONS.get((self.phase, event), self.phase)

    def _sasl_transition(self, event: _SaslEvent) -> None:
        self._sasl = _SASL_TRANSITIONS.get((self._sasl, event), self._sasl)

    @property
    def sasl_mechanism(self) -> str | None:
        """The mechanism in use or last used, else None."""
        return self._sasl_tried[-1] if self._sasl_tried else None

    @property
    def sasl_in_progress(self) -> bool:
        return self._sasl in _ACTIVE

    def casefold(self, name: str) -> str:
        """Fold a nick or channel name with the server's CASEMAPPING (rfc1459 by default)."""
        try:
            fold = casefolder(self.isupport.get("CASEMAPPING", "rfc1459"))
        except ValueError:
            fold = fold_rfc1459
        return fold(name)

    def is_me(self, nick: str) -> bool:
        return self.casefold(nick) == self.casefold(self.nick)

    @property
    def labels_enabled(self) -> bool:
        """Whether replies can be matched to requests: the server enabled both
        ``labeled-response`` and ``batch`` (the first needs the second)."""
        return "labeled-response" in self.enabled_caps and "batch" in self.enabled_caps

    @property
    def multiline_limits(self) -> MultilineLimits | None:
        """The server's limits for multi-line messages when ``draft/multiline`` and
        ``batch`` are enabled and the capability's value is usable; else None."""
        if MULTILINE not in self.enabled_caps or "batch" not in self.enabled_caps:
            return None
        return MultilineLimits.parse(self.available_caps.get(MULTILINE, ""))

    @property
    def history_enabled(self) -> bool:
        """Whether history can be requested: ``draft/chathistory`` and labels are on."""
        return CHATHISTORY in self.enabled_caps and self.labels_enabled

    @property
    def history_limit(self) -> int | None:
        """The most messages one history reply holds (ISUPPORT ``CHATHISTORY``), or
        None when the server names no limit."""
        value = self.isupport.get("CHATHISTORY", "")
        if value.isascii() and value.isdigit() and 0 < int(value):
            return int(value)
        return None

    def history_pending(self, target: str) -> bool:
        """Whether a history request for ``target`` waits for its reply."""
        folded = self.casefold(target)
        return any(self.casefold(t) == folded for t, _ in self._history_requests.values())

    @property
    def read_markers_enabled(self) -> bool:
        return READ_MARKER in self.enabled_caps

    @property
    def read_markers(self) -> dict[str, str | None]:
        """target -> timestamp (``YYYY-MM-DDThh:mm:ss.sssZ``) of the last message
        read, as the server last said (``MARKREAD``); None for ``*`` (nothing read)."""
        return dict(self._read_markers.values())

    def read_marker(self, target: str) -> str | None:
        """The read marker of ``target`` (by the server's case mapping), else None."""
        found = self._read_markers.get(self.casefold(target))
        return None if found is None else found[1]

    @property
    def open_batches(self) -> int:
        """How many batches are open (started, not yet ended or delivered)."""
        return len(self._open)

    @property
    def pending_requests(self) -> int:
        """How many labeled requests wait for their reply."""
        return len(self._pending)

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

    def send_request(self, message: Message) -> str:
        """Queue ``message`` with a new ``label`` tag and return the label; its reply
        comes out of :meth:`receive_data` as one :class:`Response`.

        Raises :class:`NotSupported` unless :attr:`labels_enabled`,
        :class:`TooManyRequests` when ``max_pending_requests`` wait already, and
        ValueError for a message that already has a label or cannot be serialized
        (nothing is queued then).
        """
        if not self.labels_enabled:
            raise NotSupported("the server did not enable labeled-response and batch")
        if "label" in message.tags:
            raise ValueError("the message has a label already")
        if len(self._pending) >= self.limits.max_pending_requests:
            raise TooManyRequests(f"{len(self._pending)} requests wait for replies already")
        label = f"r{next(self._labels)}"
        tags = {**message.tags, "label": label}
        self.send(Message(message.command, list(message.params), message.source, tags))
        self._pending.add(label)
        return label

    def cancel_request(self, label: str) -> bool:
        """Stop waiting for the reply to ``label``; whether it was still pending. A
        reply that comes later is delivered as an ordinary Message or Batch."""
        if label in self._pending:
            self._pending.remove(label)
            self._history_requests.pop(label, None)
            return True
        return False

    def send_history(
        self,
        target: str,
        *,
        before: HistoryRef | None = None,
        after: HistoryRef | None = None,
        limit: int | None = None,
        auto: bool = False,
    ) -> str:
        """Queue a labeled ``CHATHISTORY`` request for ``target`` and return its label;
        its reply comes out of :meth:`receive_data` as a :class:`Response` whose
        ``history`` is the :class:`History` (or, with ``auto``, as the History itself).

        Neither ``before`` nor ``after``: the latest messages (LATEST); ``before``:
        those just before it (BEFORE); ``after``: those just after it (AFTER); both:
        those between (BETWEEN). ``limit`` (default :data:`DEFAULT_HISTORY_LINES`) is
        capped by :attr:`history_limit`. Raises :class:`NotSupported` unless
        :attr:`history_enabled`, ValueError for a bad target, reference or limit,
        and what :meth:`send_request` raises.
        """
        if not self.history_enabled:
            raise NotSupported(f"the server did not enable {CHATHISTORY} and labels")
        if not _valid_word(target):
            raise ValueError(f"bad target {target!r}")
        count = DEFAULT_HISTORY_LINES if limit is None else limit
        if count < 1:
            raise ValueError("limit must be at least 1")
        most = self.history_limit
        if most is not None:
            count = min(count, most)
        if before is not None and after is not None:
            params = ["BETWEEN", target, history_reference(after), history_reference(before)]
        elif before is not None:
            params = ["BEFORE", target, history_reference(before)]
        elif after is not None:
            params = ["AFTER", target, history_reference(after)]
        else:
            params = ["LATEST", target, "*"]
        label = self.send_request(Message("CHATHISTORY", [*params, str(count)]))
        self._history_requests[label] = (target, auto)
        return label

    def mark_read(self, target: str, timestamp: Message | datetime | str) -> bool:
        """Queue ``MARKREAD <target> timestamp=...`` (the last message the user read)
        unless the server's marker is at that time or later already; whether it was
        queued. The server answers with the marker it keeps, which updates
        :attr:`read_markers`. Raises :class:`NotSupported` without
        ``draft/read-marker``, ValueError for a bad target or timestamp."""
        if not self.read_markers_enabled:
            raise NotSupported(f"the server did not enable {READ_MARKER}")
        if not _valid_word(target):
            raise ValueError(f"bad target {target!r}")
        stamp = read_timestamp(timestamp)
        known = self.read_marker(target)
        if known is not None and known >= stamp:
            return False
        self.send(Message("MARKREAD", [target, "timestamp=" + stamp]))
        return True

    def request_read_marker(self, target: str) -> None:
        """Queue ``MARKREAD <target>``: ask for the marker of a nick (the server sends
        a channel's on JOIN). Raises as :meth:`mark_read` does."""
        if not self.read_markers_enabled:
            raise NotSupported(f"the server did not enable {READ_MARKER}")
        if not _valid_word(target):
            raise ValueError(f"bad target {target!r}")
        self.send(Message("MARKREAD", [target]))

    def send_text(self, command: str, target: str, text: str) -> None:
        """Queue ``text`` for ``target`` with ``command`` (PRIVMSG or NOTICE).

        With :attr:`multiline_limits`, a text of several lines (or one line too long
        for one IRC line) goes as ``draft/multiline`` batches planned by
        :func:`split_multiline`; otherwise, and for a text that fits one line, each
        non-empty line is one message (long lines are not split: the server may cut
        them). Everything is queued at once or, on ValueError (a bad target, a NUL in
        the text), nothing.
        """
        limits = self.multiline_limits
        out: list[Message] = []
        if limits is None:
            out = [Message(command, [target, line]) for line in split_lines(text) if line]
        else:
            line_bytes = 512 - _LINE_OVERHEAD - len(self.nick.encode()) - len(target.encode())
            for lines in split_multiline(text, limits, max(line_bytes, 64)):
                if len(lines) == 1:
                    out.append(Message(command, [target, lines[0][0]]))
                    continue
                ref = f"m{next(self._batch_refs)}"
                out.append(Message("BATCH", ["+" + ref, MULTILINE, target]))
                for line, concat in lines:
                    tags = {"batch": ref, MULTILINE_CONCAT: ""} if concat else {"batch": ref}
                    out.append(Message(command, [target, line], None, tags))
                out.append(Message("BATCH", ["-" + ref]))
        data = b"".join(message.to_bytes() for message in out)
        self._outbuf += data

    def data_to_send(self) -> bytes:
        """Return (and forget) every byte queued so far; ``b""`` when there is none."""
        data = bytes(self._outbuf)
        self._outbuf.clear()
        return data

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._outbuf)

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Received]:
        """Feed bytes from the server; return the messages, batches and responses
        they complete, in order (see the module docstring).

        Lines end in LF, with an optional CR before it. They are decoded as UTF-8
        with replacement characters. Empty lines and lines that do not parse are
        dropped (logged); so is a line longer than :data:`MAX_LINE_BYTES` (or
        with more than 8191 bytes of tags). A partial line waits for the next call.
        """
        out: list[Received] = []
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
            self._route(message, len(frame), out)
        return out

    def receive_eof(self) -> None:
        """The server closed the connection; a pending partial line is dropped, and
        so are open batches and pending requests (their replies cannot come)."""
        self._lines = LineBuffer(line_length=MAX_LINE_BYTES, tags_length=SERVER_TAGS_BYTES)
        self._open.clear()
        self._parent.clear()
        self._root.clear()
        self._held.clear()
        self._held_lines = self._held_bytes = 0
        self._pending.clear()
        self._history_requests.clear()
        if self.phase is Phase.REGISTERING and self.error is None:
            self.error = "connection closed before registration completed"
        self._transition(_Event.EOF)

    # -- batches and labels -----------------------------------------------------

    def _route(self, msg: Message, size: int, out: list[Received]) -> None:
        """Put one parsed line where it belongs: into an open batch, or out."""
        if msg.command.upper() == "BATCH" and msg.params and len(msg.params[0]) > 1:
            sign, ref = msg.params[0][0], msg.params[0][1:]
            if sign == "+" and len(msg.params) >= 2 and self._start_batch(ref, msg, size, out):
                return
            if sign == "-" and self._end_batch(ref, out):
                return
            # a BATCH line that opens nothing or closes nothing open: delivered as it is
        within = msg.tags.get("batch")
        if within is not None and within in self._open and self._make_room(size, within, out):
            self._open[within].items.append(msg)
            self._hold(within, size)
            return
        self._emit_message(msg, out)

    def _start_batch(self, ref: str, msg: Message, size: int, out: list[Received]) -> bool:
        if ref in self._open:
            logger.warning("server reopened batch %r; its second start is a plain line", ref)
            return False
        while len(self._open) >= self.limits.max_open_batches and self._held:
            self._evict_oldest(out)
        parent_ref = msg.tags.get("batch")
        if parent_ref is not None and (
            parent_ref not in self._open or not self._make_room(size, parent_ref, out)
        ):
            parent_ref = None  # a parent we do not know (any more): start at the top
        batch = Batch(ref, msg.params[1], list(msg.params[2:]), dict(msg.tags), msg.source)
        self._open[ref] = batch
        self._parent[ref] = parent_ref
        if parent_ref is None:
            self._root[ref] = ref
            self._held[ref] = [0, 0]
        else:
            self._root[ref] = self._root[parent_ref]
            self._open[parent_ref].items.append(batch)
            self._hold(ref, size)
        return True

    def _end_batch(self, ref: str, out: list[Received]) -> bool:
        batch = self._open.get(ref)
        if batch is None:
            return False
        batch.closed = True
        if self._parent[ref] is None:
            self._finish_root(ref, out)
        else:
            for r in self._descendants(ref):
                self._forget_open(r)
            self._forget_open(ref)
        return True

    def _descendants(self, ref: str) -> list[str]:
        found = [r for r, p in self._parent.items() if p == ref]
        for r in list(found):
            found.extend(self._descendants(r))
        return found

    def _forget_open(self, ref: str) -> None:
        del self._open[ref], self._parent[ref], self._root[ref]

    def _hold(self, ref: str, size: int) -> None:
        held = self._held[self._root[ref]]
        held[0] += 1
        held[1] += size
        self._held_lines += 1
        self._held_bytes += size

    def _make_room(self, size: int, ref: str, out: list[Received]) -> bool:
        """Deliver the oldest open batches until one more line of ``size`` bytes fits
        the limits; whether the batch ``ref`` is still open to take it."""
        limits = self.limits
        while (
            self._held_lines + 1 > limits.max_batch_lines
            or self._held_bytes + size > limits.max_batch_bytes
        ) and self._held:
            self._evict_oldest(out)
        return ref in self._open

    def _evict_oldest(self, out: list[Received]) -> None:
        root = next(iter(self._held))
        logger.warning("batch %r held too long or too much: delivered unfinished", root)
        self._finish_root(root, out)

    def _finish_root(self, root: str, out: list[Received]) -> None:
        """Deliver the top-level batch ``root`` as it is and forget its open tree."""
        batch = self._open[root]
        for ref in [r for r, top in self._root.items() if top == root]:
            self._forget_open(ref)
        lines, size = self._held.pop(root)
        self._held_lines -= lines
        self._held_bytes -= size
        label = batch.tags.get("label")
        wanted = None if label is None else self._history_requests.get(label)
        if label is not None and self.cancel_request(label):
            if wanted is not None:
                self._emit_history(label, wanted, batch.messages(), batch, out)
                return
            self._record_msgids(batch.messages())
            out.append(Response(label, batch.messages(), batch))
        elif self._keep_batch(batch):
            out.append(batch)

    def _emit_history(
        self,
        label: str,
        wanted: tuple[str, bool],
        messages: list[Message],
        batch: Batch | None,
        out: list[Received],
    ) -> None:
        """The reply to a history request: drop what was delivered live (by msgid),
        remember the rest as history, and give it out as a Response or, for the
        fetch on JOIN, as the History itself."""
        target, auto = wanted
        error = Response(label, messages).error
        kept: list[Message] = []
        for msg in messages:
            if error is not None:
                break
            msgid = msg.msgid
            if msgid is not None:
                if msgid in self._live_msgids:
                    continue
                if self.seen_msgids is not None and self.seen_msgids.is_duplicate(msgid):
                    continue
                self._history_msgids.is_duplicate(msgid)
            kept.append(msg)
        complete = batch is None or batch.complete
        history = History(target, kept, auto, error, complete)
        if auto:
            out.append(history)
        else:
            out.append(Response(label, kept if error is None else messages, batch, history))

    def _emit_message(self, msg: Message, out: list[Received]) -> None:
        label = msg.tags.get("label")
        wanted = None if label is None else self._history_requests.get(label)
        if label is not None and msg.command.upper() != "BATCH" and self.cancel_request(label):
            if wanted is not None:
                messages = [] if msg.command.upper() == "ACK" else [msg]
                self._emit_history(label, wanted, messages, None, out)
            elif msg.command.upper() == "ACK":
                out.append(Response(label, []))
            else:
                self._record_msgids([msg])
                out.append(Response(label, [msg]))
            return
        if not self._live(msg.msgid):
            return
        out.append(msg)

    def _live(self, msgid: str | None) -> bool:
        """Whether a live message with ``msgid`` is new: not delivered as history,
        nor seen before (``seen_msgids``); records it."""
        if msgid is None:
            return True
        if msgid in self._history_msgids:
            return False
        if self.seen_msgids is not None and self.seen_msgids.is_duplicate(msgid):
            return False
        if CHATHISTORY in self.enabled_caps:
            self._live_msgids.is_duplicate(msgid)
        return True

    def _record_msgids(self, messages: list[Message]) -> None:
        if self.seen_msgids is not None:
            for msg in messages:
                if msg.msgid is not None:
                    self.seen_msgids.is_duplicate(msg.msgid)

    def _keep_batch(self, batch: Batch) -> bool:
        """With ``seen_msgids``: False for a batch seen before (by its own msgid);
        otherwise drop the messages in it seen before, and keep it."""
        if batch.msgid is not None and not self._live(batch.msgid):
            return False
        kept: list[Message | Batch] = []
        for item in batch.items:
            if isinstance(item, Batch):
                if self._keep_batch(item):
                    kept.append(item)
            elif self._live(item.msgid):
                kept.append(item)
        batch.items = kept
        return True

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
        if (
            self.phase is Phase.REGISTERING
            and self._sasl_credentials is not None
            and self._sasl is not _Sasl.SUCCEEDED
            and self.sasl_required
        ):  # a server that registered us without CAP, or during SASL
            self._sasl_failed(None, "the server registered us without SASL login")
            return
        if self.phase is Phase.REGISTERING and self._sasl in _ACTIVE:
            self._cap_phase = _CapPhase.DONE  # nothing to end: we are in
            self._sasl_failed(None, "the server registered us before the login ended")
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

    def _on_join(self, msg: Message) -> None:
        """Our own JOIN: fetch the channel's last :attr:`join_history` lines."""
        if not (msg.source and msg.params and self.join_history > 0 and self.history_enabled):
            return
        if not self.is_me(split_source(msg.source)[0]) or self.history_pending(msg.params[0]):
            return
        try:
            self.send_history(msg.params[0], limit=self.join_history, auto=True)
        except (RequestError, ValueError) as exc:  # too many pending, a bad name
            logger.warning("no history fetched on JOIN %r: %s", msg.params[0], exc)

    def _on_markread(self, msg: Message) -> None:
        """``MARKREAD <target> <timestamp=...|*>`` from the server: the read marker."""
        if len(msg.params) < 2 or not _valid_word(msg.params[0]):
            return
        target, value = msg.params[0], msg.params[1]
        if value == "*":
            stamp = None
        elif value.startswith("timestamp=") and _TIMESTAMP.fullmatch(value[10:]):
            stamp = value[10:]
        else:
            logger.warning("ignoring MARKREAD with a bad timestamp %r", value[:64])
            return
        folded = self.casefold(target)
        self._read_markers[folded] = (target, stamp)
        self._read_markers.move_to_end(folded)
        while len(self._read_markers) > MAX_READ_MARKERS:
            self._read_markers.popitem(last=False)

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
            if self._sasl_credentials is not None and self._sasl is _Sasl.IDLE:
                self._sasl_failed(None, "the server does not offer SASL (no CAP)")

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
            self._caps_settled()
        elif sub == "NAK":
            self._caps_settled()

    def _request_caps(self) -> None:
        requested = set(self.requested_caps)
        if self._sasl_credentials is not None and self._cap_phase is _CapPhase.LISTING:
            requested.add("sasl")  # only while registering: it logs in before CAP END
        wanted = sorted(
            name
            for name in requested
            if name in self.available_caps and name not in self.enabled_caps
        )
        if wanted:
            self.send(Message("CAP", ["REQ", " ".join(wanted)]))
            if self._cap_phase is _CapPhase.LISTING:
                self._cap_phase = _CapPhase.REQUESTING
        else:
            self._caps_settled()

    def _caps_settled(self) -> None:
        """The capabilities are settled: log in first if we should, then CAP END."""
        if self._cap_phase is _CapPhase.DONE or self.phase is not Phase.REGISTERING:
            return
        if self._sasl in _ACTIVE:
            return  # CAP END once the login is over (a CAP NEW or ACK meanwhile)
        if self._sasl_credentials is None or self._sasl is not _Sasl.IDLE:
            self._end_caps()
            return
        if "sasl" not in self.enabled_caps:
            offered = "sasl" in self.available_caps
            self._sasl_failed(
                None,
                "the server refused the sasl capability"
                if offered
                else "the server does not offer SASL",
            )
            return
        value = self.available_caps.get("sasl", "")
        if value:
            self.sasl_server_mechanisms = tuple(m.upper() for m in value.split(",") if m)
        self._next_mechanism(None, "the server offers none of our SASL mechanisms")

    # -- SASL -------------------------------------------------------------------

    def _next_mechanism(self, numeric: str | None, text: str) -> None:
        """Name the next mechanism to try, or fail with (numeric, text)."""
        server = self.sasl_server_mechanisms
        for name in self.sasl_mechanisms:
            if name not in self._sasl_tried and (server is None or name in server):
                assert self._sasl_credentials is not None
                self._sasl_tried.append(name)
                try:
                    self._mechanism = make_mechanism(name, self._sasl_credentials)
                except SaslError as exc:  # e.g. a name SCRAM cannot carry
                    numeric, text = None, str(exc)
                    continue
                self._challenge = ChallengeReader()
                self._sasl_transition(_SaslEvent.MECHANISM)
                self.send(Message("AUTHENTICATE", [name]))
                return
        if server is not None and numeric is None:
            text = f"{text} (it offers {', '.join(server) or 'none'})"
        self._sasl_failed(numeric, text)

    def _sasl_failed(self, numeric: str | None, text: str) -> None:
        self._sasl_transition(_SaslEvent.FAILURE)
        self._mechanism = None
        self.sasl_failure = (numeric, text)
        if self.phase is not Phase.REGISTERING:
            return
        if self.sasl_required:
            self._reject(f"SASL {numeric}: {text}" if numeric else f"SASL: {text}")
        else:
            logger.info("SASL failed (%s); registering without an account", text)
            self._end_caps()

    def _on_authenticate(self, msg: Message) -> None:
        if self._sasl not in (_Sasl.STARTED, _Sasl.EXCHANGING) or not msg.params:
            return
        mechanism = self._mechanism
        assert mechanism is not None
        try:
            challenge = self._challenge.feed(msg.params[0])
            if challenge is None:
                return
            self._sasl_transition(_SaslEvent.CHALLENGE)
            response = mechanism.step(challenge)
        except SaslError as exc:
            self._sasl_transition(_SaslEvent.ABORT)
            self.sasl_failure = (None, str(exc))
            self.send(Message("AUTHENTICATE", ["*"]))
            return
        for chunk in encode_response(response):
            self.send(Message("AUTHENTICATE", [chunk]))

    def _on_sasl_numeric(self, msg: Message) -> None:
        command = msg.command
        text = msg.params[-1] if len(msg.params) >= 2 else command
        if command == RPL_LOGGEDIN:
            if len(msg.params) >= 3:
                self.account = msg.params[2]
        elif command == RPL_LOGGEDOUT:
            self.account = None
        elif command == RPL_SASLMECHS:
            if len(msg.params) >= 3:
                names = msg.params[1].split(",")
                self.sasl_server_mechanisms = tuple(n.upper() for n in names if n)
        elif command in (RPL_SASLSUCCESS, ERR_SASLALREADY):
            if self._sasl in (_Sasl.STARTED, _Sasl.EXCHANGING):
                if self._mechanism is not None and not self._mechanism.done:
                    # SCRAM: success before the server proved it knows the password
                    self._sasl_transition(_SaslEvent.ABORT)
                    self._sasl_failed(None, "the server ended SASL before it proved itself")
                    return
                self._sasl_transition(_SaslEvent.SUCCESS)
                self._mechanism = None
                self._end_caps()
        elif self._sasl is _Sasl.ABORTING:
            assert self.sasl_failure is not None
            self._sasl_failed(*self.sasl_failure)  # our reason, not the 906's
        elif self._sasl is _Sasl.STARTED and command == ERR_SASLFAIL:
            self._next_mechanism(command, text)  # the server may not know this one
        elif self._sasl in (_Sasl.STARTED, _Sasl.EXCHANGING):
            self._sasl_failed(command, text)

    def _end_caps(self) -> None:
        if self._cap_phase is not _CapPhase.DONE:
            self._cap_phase = _CapPhase.DONE
            self.send(Message("CAP", ["END"]))


_HANDLERS: dict[str, Callable[[ClientProtocol, Message], None]] = {
    "PING": ClientProtocol._on_ping,
    "CAP": ClientProtocol._on_cap,
    "NICK": ClientProtocol._on_nick,
    "JOIN": ClientProtocol._on_join,
    "MARKREAD": ClientProtocol._on_markread,
    "ERROR": ClientProtocol._on_error,
    RPL_WELCOME: ClientProtocol._on_welcome,
    RPL_ISUPPORT: ClientProtocol._on_isupport,
    ERR_UNKNOWNCOMMAND: ClientProtocol._on_unknown_command,
    "AUTHENTICATE": ClientProtocol._on_authenticate,
    **dict.fromkeys(
        (
            RPL_LOGGEDIN,
            RPL_LOGGEDOUT,
            ERR_NICKLOCKED,
            RPL_SASLSUCCESS,
            ERR_SASLFAIL,
            ERR_SASLTOOLONG,
            ERR_SASLABORTED,
            ERR_SASLALREADY,
            RPL_SASLMECHS,
        ),
        ClientProtocol._on_sasl_numeric,
    ),
}
