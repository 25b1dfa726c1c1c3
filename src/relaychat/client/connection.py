"""The client library: one full-duplex connection to an IRC server.

Theory of operation
-------------------
Two layers, as in the rest of relaychat:

* :class:`ClientProtocol` is the sans-I/O core. It takes bytes in
  (:meth:`~ClientProtocol.receive_data`, :meth:`~ClientProtocol.receive_eof`) and gives
  parsed :class:`~relaychat.protocol.message.Message` objects, whole
  :class:`~relaychat.protocol.client.Batch` objects, the
  :class:`~relaychat.protocol.client.Response` to each labeled request, and bytes to
  send out (:meth:`~ClientProtocol.data_to_send`). It owns line framing, registration
  (PASS, CAP LS 302 / REQ / END, NICK, USER, alternate nicks on 432/433/436/437, SASL
  login), PING answers, current-nick tracking, ISUPPORT, the capability sets, open batches and
  pending labels. It never touches a socket, a thread, a lock or a clock, so it is
  not thread-safe by itself.

* :class:`Connection` drives the core over one TCP socket with one background
  *reader thread*. The reader thread is the only caller of ``recv``; it feeds the
  core, flushes whatever the core wants to answer (PONG, CAP, NICK), then, in the
  order the server sent them, delivers each message or batch (:data:`Incoming`) to
  the ``on_message`` callbacks (on the reader thread) and to a bounded queue read by
  :meth:`Connection.get`, iteration and :meth:`Connection.wait_for`, and resolves
  the future of each labeled reply. Any thread may call :meth:`Connection.send`,
  :meth:`Connection.request` and :meth:`Connection.send_request`.

Requests. :meth:`Connection.send_request` sends a command with a fresh ``label`` tag
and returns a :class:`PendingResponse` (a ``concurrent.futures.Future``) that the
reader thread resolves with the one :class:`Response` the server labels (an ``ACK``,
one message, or a batch), or fails with :class:`ConnectionClosed` when the connection
goes; :meth:`Connection.request` waits for it. Such a reply goes to its requester
only, never to the callbacks or the queue. Without ``labeled-response`` (and
``batch``) on the connection both raise :class:`NotSupported`: send the command with
:meth:`Connection.send` and read the replies as they come. (Waiting for an end
numeric such as 318 instead would guess: two concurrent WHOIS for one nick, or a
reply that never ends in the usual numeric, cannot be told apart.)

Locks
-----
``_state_lock`` guards the core and the table of pending requests (short critical
sections, no I/O under it): a label is handed out and its future registered under
one hold, so the reader cannot see a reply before its future exists.
``_write_lock`` guards ``sendall``: the thread holding it drains the core's outgoing
buffer until it is empty, so bytes leave in the order the core queued them. A
user thread takes it blocking (``send`` returns once its bytes are written); the
reader thread only tries it, so a writer blocked on a full socket never stops the
reader from reading. Whoever releases the lock re-checks for bytes queued in the
meantime. ``_cond`` guards the delivery queue and the disconnected flag.

When the server closes the connection (or it breaks) the reader thread sets
:attr:`Connection.disconnected`, fails every pending request with
:class:`ConnectionClosed`, wakes every waiter, calls the ``on_disconnect`` callbacks
and ends: nothing spins on EOF.

The library does not reconnect. A program that does makes a new :class:`Connection`;
giving each the same :class:`RecentMsgids` (``seen_msgids``) keeps what the server
sends again (by ``msgid``) from being delivered twice.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from datetime import datetime
from types import TracebackType
from typing import TypeVar

from relaychat.protocol.client import (
    ACCOUNT_REGISTRATION,
    AuthenticationFailed,
    Batch,
    ClientLimits,
    ClientProtocol,
    ConnectionClosed,
    History,
    HistoryRef,
    MultilineLimits,
    NotSupported,
    Phase,
    Received,
    RecentMsgids,
    RegistrationError,
    RequestError,
    Response,
    TooManyRequests,
)
from relaychat.protocol.message import Message, parse_message
from relaychat.protocol.sasl_client import DEFAULT_MECHANISMS, SaslCredentials

__all__ = [
    "AuthenticationFailed",
    "Batch",
    "ClientLimits",
    "ClientProtocol",
    "Connection",
    "ConnectionClosed",
    "History",
    "Incoming",
    "NotSupported",
    "PendingResponse",
    "Phase",
    "RecentMsgids",
    "RegistrationError",
    "RequestError",
    "Response",
    "SaslCredentials",
    "TooManyRequests",
    "connect",
]

logger = logging.getLogger("relaychat.client")

#: What the callbacks, the queue and the iterator deliver: a message outside any batch,
#: a whole batch (a multi-line message, say: see :meth:`Batch.multiline`), or the
#: :class:`History` fetched on our own JOIN (``join_history``).
Incoming = Message | Batch | History
MessageCallback = Callable[[Incoming], None]
DisconnectCallback = Callable[[BaseException | None], None]
_C = TypeVar("_C", bound=Callable[..., None])

_ids = itertools.count(1)


def _as_message(message: Message | str, params: tuple[str, ...]) -> Message:
    """``Message``, ``"COMMAND", "param", ...``, or one raw line (a str alone)."""
    if isinstance(message, Message):
        if params:
            raise TypeError("a Message takes no extra params")
        return message
    if params:
        return Message(message, list(params))
    if "\r" in message or "\n" in message:
        raise ValueError("a raw line may not contain CR or LF")
    return parse_message(message)


class PendingResponse(Future[Response]):
    """The reply to one labeled request, on its way: a ``concurrent.futures.Future``
    that the reader thread resolves with the :class:`Response`, or fails with
    :class:`ConnectionClosed`. ``add_done_callback`` callbacks run on the reader
    thread, in the order the server sent things. :meth:`cancel` stops waiting: a
    reply that comes later is delivered as an ordinary message or batch."""

    def __init__(self, conn: Connection, label: str, command: str) -> None:
        super().__init__()
        self.label = label
        self.command = command
        self._conn = conn

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._conn._forget_request(self.label)
        return True


class Connection:
    """A full-duplex IRC client connection (see the module docstring for threads and locks).

    Create it, register callbacks if you want them, then :meth:`connect`; or use
    the :func:`connect` function. As a context manager it connects on entry (if
    not yet connected) and quits on exit.

    ``caps``: the capabilities to request when offered (None: :data:`DEFAULT_CAPS`,
    that is ``batch``, ``draft/multiline``, ``labeled-response``, ``message-tags``
    and ``server-time``; ``()``: none). ``limits`` bound the batches held and the
    requests pending (:class:`ClientLimits`); ``seen_msgids`` drops messages seen
    before, by ``msgid`` (see :class:`RecentMsgids`).

    ``sasl``: log in with these credentials during registration (IRCv3 SASL,
    SCRAM-SHA-256 preferred, else PLAIN; ``sasl_mechanisms`` to choose);
    :meth:`connect` raises :class:`AuthenticationFailed` when the login fails or
    the server does not offer SASL, unless ``sasl_required`` is False (then it
    registers without an account). :attr:`account` is the confirmed account.

    History (``draft/chathistory``, requested by default): :meth:`history` and
    :meth:`latest` fetch stored messages with a labeled request; with
    ``join_history`` N > 0, our own JOIN fetches the channel's last N lines (capped by
    the server's limit), delivered as one :class:`History` item after the JOIN. A
    message delivered live is never delivered again as history, nor the other way
    round (by ``msgid``). Read markers (``draft/read-marker``): :meth:`mark_read`,
    :attr:`read_markers`, updated by the server's ``MARKREAD`` lines (which are also
    delivered as messages).
    """

    def __init__(
        self,
        host: str,
        port: int = 6667,
        nick: str = "relaychat",
        *,
        user: str | None = None,
        realname: str | None = None,
        password: str | None = None,
        caps: Iterable[str] | None = None,
        alt_nicks: Iterable[str] | None = None,
        queue_size: int = 10_000,
        limits: ClientLimits | None = None,
        seen_msgids: RecentMsgids | None = None,
        sasl: SaslCredentials | None = None,
        sasl_mechanisms: Iterable[str] = DEFAULT_MECHANISMS,
        sasl_required: bool = True,
        join_history: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.id = f"c{next(_ids)}"
        self._protocol = ClientProtocol(
            nick,
            user=user,
            realname=realname,
            password=password,
            caps=caps,
            alt_nicks=alt_nicks,
            limits=limits,
            seen_msgids=seen_msgids,
            sasl=sasl,
            sasl_mechanisms=sasl_mechanisms,
            sasl_required=sasl_required,
            join_history=join_history,
        )
        self._requests: dict[str, PendingResponse] = {}  # label -> future, under _state_lock
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[Incoming] = deque(maxlen=queue_size)
        self._dropped = 0
        self._callbacks: list[MessageCallback] = []
        self._disconnect_callbacks: list[DisconnectCallback] = []
        self._registration_done = threading.Event()
        self._closing = False
        #: Set once the connection is gone (server closed it, it broke, or close()).
        self.disconnected = threading.Event()
        #: The exception that broke the connection, or None after a clean close.
        self.disconnect_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.nick}@{self.host}:{self.port}>"

    # -- state, read under the lock -------------------------------------------

    @property
    def nick(self) -> str:
        """Our current nick: updated on 001, on alternates and on our own NICK echoes."""
        with self._state_lock:
            return self._protocol.nick

    @property
    def enabled_caps(self) -> frozenset[str]:
        with self._state_lock:
            return frozenset(self._protocol.enabled_caps)

    @property
    def available_caps(self) -> dict[str, str]:
        with self._state_lock:
            return dict(self._protocol.available_caps)

    @property
    def isupport(self) -> dict[str, str]:
        with self._state_lock:
            return dict(self._protocol.isupport)

    @property
    def phase(self) -> Phase:
        with self._state_lock:
            return self._protocol.phase

    @property
    def account(self) -> str | None:
        """The account the server confirmed we are logged into (900), else None."""
        with self._state_lock:
            return self._protocol.account

    @property
    def sasl_failure(self) -> tuple[str | None, str] | None:
        """Why SASL login failed, as (numeric or None, text); None when it did not."""
        with self._state_lock:
            return self._protocol.sasl_failure

    @property
    def registered(self) -> bool:
        return self.phase is Phase.REGISTERED

    @property
    def supports_labels(self) -> bool:
        """Whether :meth:`request` can work: ``labeled-response`` and ``batch`` are on."""
        with self._state_lock:
            return self._protocol.labels_enabled

    @property
    def multiline_limits(self) -> MultilineLimits | None:
        """The server's ``draft/multiline`` limits when :meth:`privmsg` can send a
        multi-line message as one (``draft/multiline`` and ``batch`` on); else None."""
        with self._state_lock:
            return self._protocol.multiline_limits

    @property
    def history_enabled(self) -> bool:
        """Whether :meth:`history` can work (``draft/chathistory`` and labels are on)."""
        with self._state_lock:
            return self._protocol.history_enabled

    @property
    def history_limit(self) -> int | None:
        """The most messages one history reply holds (ISUPPORT ``CHATHISTORY``)."""
        with self._state_lock:
            return self._protocol.history_limit

    def history_pending(self, target: str) -> bool:
        """Whether a history request for ``target`` (the fetch on JOIN, say) waits."""
        with self._state_lock:
            return self._protocol.history_pending(target)

    @property
    def read_markers_enabled(self) -> bool:
        with self._state_lock:
            return self._protocol.read_markers_enabled

    @property
    def read_markers(self) -> dict[str, str | None]:
        """target -> the timestamp of its last read message, as the server said
        (``MARKREAD``); None when nothing was read."""
        with self._state_lock:
            return self._protocol.read_markers

    def read_marker(self, target: str) -> str | None:
        with self._state_lock:
            return self._protocol.read_marker(target)

    def is_me(self, nick: str) -> bool:
        """Whether ``nick`` is our current nick under the server's case mapping."""
        with self._state_lock:
            return self._protocol.is_me(nick)

    def casefold(self, name: str) -> str:
        with self._state_lock:
            return self._protocol.casefold(name)

    # -- callbacks --------------------------------------------------------------

    def on_message(self, callback: _C) -> _C:
        """Call ``callback(item)`` on the reader thread for every message outside a
        batch and every whole :class:`Batch` (:data:`Incoming`), in order; labeled
        replies go to their requesters instead.

        Returns the callback, so this works as a decorator. A callback that raises
        is logged and does not stop delivery. While a callback runs nothing else
        is read, so keep it short; it may call :meth:`send` and
        :meth:`send_request`, not :meth:`request` (its reply would wait for it).
        """
        with self._cond:
            self._callbacks.append(callback)
        return callback

    def on_disconnect(self, callback: _C) -> _C:
        """Call ``callback(error_or_None)`` once when the connection goes away.

        Runs on the reader thread (or on the thread calling :meth:`close` when the
        reader never started).
        """
        with self._cond:
            self._disconnect_callbacks.append(callback)
        return callback

    # -- opening ------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> Connection:
        """Open the TCP connection, start the reader thread and register.

        Returns once the server sent 001 (RPL_WELCOME). Raises
        :class:`RegistrationError` if the server refused us (the reason is the
        message; :class:`AuthenticationFailed`, a subclass, when SASL login was
        required and failed), :class:`TimeoutError` if 001 did not come within ``timeout``
        seconds, or :class:`OSError` if the TCP connection failed. On any error
        the connection is closed.
        """
        if self._sock is not None:
            raise RuntimeError("connect() called twice")
        deadline = time.monotonic() + timeout
        self._sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._sock.settimeout(None)
        self._reader = threading.Thread(
            target=self._read_loop, name=f"relaychat-reader-{self.id}", daemon=True
        )
        self._reader.start()
        try:
            with self._state_lock:
                self._protocol.start()
            self._flush(block=True)
            if not self._registration_done.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no welcome from {self.host}:{self.port} in {timeout}s")
            with self._state_lock:
                phase, error = self._protocol.phase, self._protocol.error
                sasl_failure = self._protocol.sasl_failure
                required = self._protocol.sasl_required
            if phase is not Phase.REGISTERED:
                if sasl_failure is not None and required:
                    raise AuthenticationFailed(*sasl_failure)
                raise RegistrationError(error or "registration failed")
        except BaseException:
            self.close()
            raise
        logger.info("[%s] registered as %s", self.id, self.nick)
        return self

    def __enter__(self) -> Connection:
        if self._sock is None:
            self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.quit()

    # -- sending --------------------------------------------------------------------

    def send(self, message: Message | str, *params: str) -> None:
        """Send a message, from any thread: ``send(Message(...))``,
        ``send("PRIVMSG", "#chan", "hello there")`` or one raw line,
        ``send("PRIVMSG #chan :hello there")``.

        Returns once the bytes are handed to the kernel. Raises ValueError for a
        message that cannot be sent faithfully (see :meth:`ClientProtocol.send`; a
        :class:`~relaychat.protocol.message.MessageParseError` for a raw line that
        does not parse), TypeError for a Message together with params, and
        :class:`ConnectionClosed` once the connection is gone.
        """
        msg = _as_message(message, params)
        self._check_open()
        with self._state_lock:
            self._protocol.send(msg)
        self._flush(block=True)

    def _check_open(self) -> None:
        if self._sock is None or self.disconnected.is_set() or self._closing:
            raise ConnectionClosed("connection is closed")

    def send_request(self, message: Message | str, *params: str) -> PendingResponse:
        """Send a command with a fresh ``label`` and return the future of its reply
        at once (arguments as for :meth:`send`). From any thread, the reader's too.

        The future's result is the :class:`Response`: no message for an ``ACK``,
        the one labeled message, or the messages of the labeled batch. It fails with
        :class:`ConnectionClosed` if the connection goes first. Cancel it to stop
        waiting. Raises :class:`NotSupported` when the connection has no
        ``labeled-response`` (see :attr:`supports_labels`), :class:`TooManyRequests`
        when :attr:`ClientLimits.max_pending_requests` wait already, and what
        :meth:`send` raises.
        """
        msg = _as_message(message, params)
        self._check_open()
        with self._state_lock:
            if self._protocol.phase is Phase.CLOSED:
                raise ConnectionClosed("connection is closed")
            label = self._protocol.send_request(msg)
            future = PendingResponse(self, label, msg.command)
            self._requests[label] = future
        try:
            self._flush(block=True)
        except ConnectionClosed:
            future.cancel()
            raise
        return future

    def request(
        self, message: Message | str, *params: str, timeout: float | None = 10.0
    ) -> Response:
        """Send a command with a label and wait for its reply, as one result:
        ``conn.request("WHOIS", "bob")`` or ``conn.request("WHOIS bob")``.

        Returns the :class:`Response` (its ``messages``: empty for an ``ACK``, the
        one reply, or the messages of the labeled batch in order). Raises
        TimeoutError when no reply came within ``timeout`` seconds (None: wait as
        long as the connection lasts; a reply that comes later is delivered as an
        ordinary message or batch), :class:`ConnectionClosed` when the connection
        goes first, RuntimeError on the reader thread (in a callback: use
        :meth:`send_request` there), and what :meth:`send_request` raises. Any
        number of threads may wait for their own replies at once.
        """
        if threading.current_thread() is self._reader:
            raise RuntimeError("request() on the reader thread would wait for itself")
        future = self.send_request(message, *params)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.cancel():
                raise TimeoutError(f"no reply to {future.command} in {timeout}s") from None
            return future.result()  # the reply came meanwhile: the reader is handing it over

    def send_register_account(
        self, password: str, *, account: str | None = None, email: str | None = None
    ) -> PendingResponse:
        """Ask the server to register an account (IRCv3 account-registration:
        ``REGISTER <account> <email|*> <password>``, labeled) and return the future
        of its reply at once. ``account`` defaults to our nick, ``email`` to ``*``.

        The reply (:class:`Response`) holds ``REGISTER SUCCESS <account> <text>``,
        ``REGISTER VERIFICATION_REQUIRED ...`` or ``FAIL REGISTER <code> ...``
        (``response.error``); after a success the server usually logs us in (900,
        :attr:`account`). Raises :class:`NotSupported` without
        ``draft/account-registration`` (request it in ``caps``) or labels, and
        ValueError for an empty password, one with CR, LF or NUL, or an account or
        email that is not one word (the message never holds the password).
        """
        if not password or any(c in password for c in "\r\n\0"):
            raise ValueError("the password must be non-empty, without CR, LF or NUL")
        if ACCOUNT_REGISTRATION not in self.enabled_caps:
            raise NotSupported(f"the server did not enable {ACCOUNT_REGISTRATION}")
        account = self.nick if account is None else account
        email = "*" if email is None else email
        for what, word in (("account", account), ("email", email)):
            if not word or word.startswith(":") or any(c in word for c in " \r\n\0"):
                raise ValueError(f"bad {what} {word!r}")
        return self.send_request(Message("REGISTER", [account, email, password]))

    def register_account(
        self,
        password: str,
        *,
        account: str | None = None,
        email: str | None = None,
        timeout: float | None = 10.0,
    ) -> Response:
        """:meth:`send_register_account`, then wait for the reply as :meth:`request`
        does (TimeoutError, :class:`ConnectionClosed`)."""
        if threading.current_thread() is self._reader:
            raise RuntimeError("register_account() on the reader thread would wait for itself")
        future = self.send_register_account(password, account=account, email=email)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.cancel():
                raise TimeoutError(f"no reply to REGISTER in {timeout}s") from None
            return future.result()

    def send_history(
        self,
        target: str,
        *,
        before: HistoryRef | None = None,
        after: HistoryRef | None = None,
        limit: int | None = None,
    ) -> PendingResponse:
        """Ask for stored messages of ``target`` (see
        :meth:`ClientProtocol.send_history` for the arguments) and return the future
        of the reply at once; its :class:`Response` has the :class:`History` as
        ``history``. Raises :class:`NotSupported` without ``draft/chathistory`` or
        labels, ValueError for a bad target, reference or limit."""
        self._check_open()
        with self._state_lock:
            if self._protocol.phase is Phase.CLOSED:
                raise ConnectionClosed("connection is closed")
            label = self._protocol.send_history(target, before=before, after=after, limit=limit)
            future = PendingResponse(self, label, "CHATHISTORY")
            self._requests[label] = future
        try:
            self._flush(block=True)
        except ConnectionClosed:
            future.cancel()
            raise
        return future

    def history(
        self,
        target: str,
        *,
        before: HistoryRef | None = None,
        after: HistoryRef | None = None,
        limit: int | None = None,
        timeout: float | None = 10.0,
    ) -> History:
        """Stored messages of ``target``, oldest first (:meth:`send_history`, then
        wait as :meth:`request` does). The server's refusal is in ``error``."""
        if threading.current_thread() is self._reader:
            raise RuntimeError("history() on the reader thread would wait for itself")
        future = self.send_history(target, before=before, after=after, limit=limit)
        try:
            response = future.result(timeout)
        except TimeoutError:
            if future.cancel():
                raise TimeoutError(f"no reply to CHATHISTORY in {timeout}s") from None
            response = future.result()
        assert response.history is not None
        return response.history

    def latest(
        self, target: str, limit: int | None = None, timeout: float | None = 10.0
    ) -> History:
        """The last ``limit`` stored messages of ``target`` (see :meth:`history`)."""
        return self.history(target, limit=limit, timeout=timeout)

    def mark_read(self, target: str, timestamp: Message | datetime | str) -> bool:
        """Tell the server the user read ``target`` up to ``timestamp`` (a message, its
        time, or a datetime); whether MARKREAD was sent (not when the marker is there
        already). Raises :class:`NotSupported` without ``draft/read-marker``."""
        self._check_open()
        with self._state_lock:
            sent = self._protocol.mark_read(target, timestamp)
        if sent:
            self._flush(block=True)
        return sent

    def _forget_request(self, label: str) -> None:
        with self._state_lock:
            self._protocol.cancel_request(label)
            self._requests.pop(label, None)

    def send_raw(self, line: str) -> None:
        """Parse ``line`` (one IRC line, no CRLF) and send it. Raises
        :class:`~relaychat.protocol.message.MessageParseError` or ValueError for
        a line that is empty or holds CR/LF."""
        self.send(_as_message(line, ()))

    def _flush(self, *, block: bool) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            if not self._write_lock.acquire(blocking=block):
                return  # the holder drains our bytes before it lets go
            try:
                while True:
                    with self._state_lock:
                        data = self._protocol.data_to_send()
                    if not data:
                        break
                    try:
                        sock.sendall(data)
                    except OSError as exc:
                        if block:
                            raise ConnectionClosed(f"send failed: {exc}") from exc
                        return  # the reader will see the breakage on recv
            finally:
                self._write_lock.release()
            with self._state_lock:
                if not self._protocol.has_data_to_send:
                    return
            block = False

    def join(self, channel: str, key: str | None = None) -> None:
        self.send("JOIN", channel, *([key] if key is not None else []))

    def part(self, channel: str, reason: str | None = None) -> None:
        self.send("PART", channel, *([reason] if reason is not None else []))

    def privmsg(self, target: str, text: str) -> None:
        """Send ``text`` to a channel or nick.

        With ``draft/multiline`` (see :attr:`multiline_limits`) a text of several
        lines is one multi-line message: one batch, or several when it passes the
        server's ``max-bytes`` or ``max-lines``; a line too long for one IRC line is
        cut between words and joined again (``draft/multiline-concat``). Without it,
        each non-empty line is one PRIVMSG and long lines are not split (the server
        may cut them). All of it is written at once, so another thread's messages
        never land inside a batch.
        """
        self._send_text("PRIVMSG", target, text)

    def notice(self, target: str, text: str) -> None:
        """Like :meth:`privmsg`, with NOTICE."""
        self._send_text("NOTICE", target, text)

    def _send_text(self, command: str, target: str, text: str) -> None:
        self._check_open()
        with self._state_lock:
            self._protocol.send_text(command, target, text)
        self._flush(block=True)

    def action(self, target: str, text: str) -> None:
        """Send a CTCP ACTION (``/me``)."""
        self.send("PRIVMSG", target, f"\x01ACTION {text}\x01")

    # -- receiving --------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Incoming:
        """Return the next unread message or batch, waiting up to ``timeout`` seconds
        (None: forever).

        Raises TimeoutError when none arrives in time and :class:`ConnectionClosed`
        when the connection is gone and every message has been read. If nobody
        reads, the queue keeps only the newest ``queue_size`` messages.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self.disconnected.is_set():
                    raise ConnectionClosed("connection is closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no message")
                self._cond.wait(remaining)
            return self._queue.popleft()

    def __iter__(self) -> Iterator[Incoming]:
        """Yield messages and batches until the connection is gone and the queue is
        drained."""
        while True:
            try:
                yield self.get()
            except ConnectionClosed:
                return

    def wait_for(self, predicate: Callable[[Incoming], bool], timeout: float = 10.0) -> Incoming:
        """Read messages and batches (as :meth:`get` does) until one satisfies
        ``predicate``; return it.

        The messages read before the match are consumed and discarded (callbacks
        saw them anyway), so earlier matches are never missed but never seen twice.
        Raises TimeoutError after ``timeout`` seconds, :class:`ConnectionClosed` if
        the connection ends first.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching message")
            message = self.get(remaining)
            if predicate(message):
                return message

    # -- the reader thread ----------------------------------------------------

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        error: BaseException | None = None
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError as exc:
                    if not self._closing:
                        error = exc
                    break
                if not data:
                    break
                with self._state_lock:
                    received = self._protocol.receive_data(data)
                    phase = self._protocol.phase
                    futures = [
                        self._requests.pop(item.label, None) if isinstance(item, Response) else None
                        for item in received
                    ]
                self._flush(block=False)
                self._deliver(received, futures)
                if phase is not Phase.REGISTERING and phase is not Phase.NEW:
                    self._registration_done.set()
        except BaseException as exc:  # a bug in the core: log it, end the connection
            logger.exception("[%s] reader thread failed", self.id)
            error = exc
        finally:
            self._finish(error)

    def _deliver(
        self,
        received: list[Received],
        futures: list[PendingResponse | None],
    ) -> None:
        """Hand over, in order: replies to their futures, the rest to the queue and
        the callbacks."""
        if not received:
            return
        steps: list[Incoming | tuple[Response, PendingResponse]] = []
        for item, future in zip(received, futures, strict=True):
            if not isinstance(item, Response):
                steps.append(item)
            elif future is not None:
                steps.append((item, future))
            elif item.batch is not None:  # not expected: the core and the table forget
                steps.append(item.batch)  # labels together; deliver it rather than lose it
            else:
                steps.extend(item.messages)
        with self._cond:
            for step in steps:
                if isinstance(step, tuple):
                    continue
                if len(self._queue) == self._queue.maxlen:
                    self._dropped += 1
                    if self._dropped == 1:
                        logger.warning("[%s] delivery queue full, dropping old messages", self.id)
                self._queue.append(step)
            self._cond.notify_all()
            callbacks = list(self._callbacks)
        for step in steps:
            if isinstance(step, tuple):
                response, pending = step
                if pending.set_running_or_notify_cancel():  # False: cancelled just now
                    pending.set_result(response)
                continue
            for callback in callbacks:
                try:
                    callback(step)
                except Exception:
                    logger.exception("[%s] on_message callback failed", self.id)

    def _finish(self, error: BaseException | None) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a writer blocked on a full buffer
            except OSError:
                pass
            with self._write_lock:
                sock.close()
        with self._state_lock:
            self._protocol.receive_eof()
            pending = list(self._requests.values())
            self._requests.clear()
        for future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(ConnectionClosed("connection closed before the reply came"))
        self.disconnect_error = error
        with self._cond:
            self.disconnected.set()
            self._cond.notify_all()
            callbacks = list(self._disconnect_callbacks)
        self._registration_done.set()
        logger.info("[%s] disconnected%s", self.id, f": {error}" if error else "")
        for callback in callbacks:
            try:
                callback(error)
            except Exception:
                logger.exception("[%s] on_disconnect callback failed", self.id)

    # -- closing ------------------------------------------------------------------

    def quit(self, reason: str | None = None, timeout: float = 5.0) -> None:
        """Send QUIT, wait up to ``timeout`` seconds for the server to close the
        connection, then :meth:`close`. Safe to call on a closed connection."""
        if self._sock is not None and not self.disconnected.is_set():
            try:
                self.send("QUIT", *([reason] if reason is not None else []))
            except ConnectionClosed:
                pass
            else:
                self.disconnected.wait(timeout)
        self.close()

    def close(self) -> None:
        """Close the socket at once (no QUIT) and wait for the reader thread to end.

        Idempotent. When called from a callback (on the reader thread) it does not
        wait for itself; the reader ends after the callback returns.
        """
        self._closing = True
        sock, reader = self._sock, self._reader
        if sock is None:
            return
        if reader is None:
            self._finish(None)
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if reader is not threading.current_thread():
            reader.join()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the reader thread has ended; return whether it has."""
        reader = self._reader
        if reader is None:
            return self.disconnected.wait(timeout)
        reader.join(timeout)
        return not reader.is_alive()


def connect(
    host: str,
    port: int = 6667,
    nick: str = "relaychat",
    *,
    timeout: float = 10.0,
    user: str | None = None,
    realname: str | None = None,
    password: str | None = None,
    caps: Iterable[str] | None = None,
    alt_nicks: Iterable[str] | None = None,
    on_message: MessageCallback | None = None,
    limits: ClientLimits | None = None,
    seen_msgids: RecentMsgids | None = None,
    sasl: SaslCredentials | None = None,
    sasl_mechanisms: Iterable[str] = DEFAULT_MECHANISMS,
    sasl_required: bool = True,
    join_history: int = 0,
) -> Connection:
    """Create a :class:`Connection`, register ``on_message`` (so it sees the
    registration burst too) and :meth:`~Connection.connect` it."""
    conn = Connection(
        host,
        port,
        nick,
        user=user,
        realname=realname,
        password=password,
        caps=caps,
        alt_nicks=alt_nicks,
        limits=limits,
        seen_msgids=seen_msgids,
        sasl=sasl,
        sasl_mechanisms=sasl_mechanisms,
        sasl_required=sasl_required,
        join_history=join_history,
    )
    if on_message is not None:
        conn.on_message(on_message)
    return conn.connect(timeout)
