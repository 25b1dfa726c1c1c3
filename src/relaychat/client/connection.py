"""The client library: one full-duplex connection to an IRC server.

Theory of operation
-------------------
Two layers, as in the rest of relaychat:

* :class:`ClientProtocol` is the sans-I/O core. It takes bytes in
  (:meth:`~ClientProtocol.receive_data`, :meth:`~ClientProtocol.receive_eof`) and gives
  parsed :class:`~relaychat.protocol.message.Message` objects and bytes to send out
  (:meth:`~ClientProtocol.data_to_send`). It owns line framing, registration (PASS,
  CAP LS 302 / REQ / END, NICK, USER, alternate nicks on 432/433/436/437), PING
  answers, current-nick tracking, ISUPPORT and the capability sets. It never touches
  a socket, a thread, a lock or a clock, so it is not thread-safe by itself.

* :class:`Connection` drives the core over one TCP socket with one background
  *reader thread*. The reader thread is the only caller of ``recv``; it feeds the
  core, flushes whatever the core wants to answer (PONG, CAP, NICK), then delivers
  each message to the ``on_message`` callbacks (on the reader thread) and to a
  bounded queue read by :meth:`Connection.get`, iteration and
  :meth:`Connection.wait_for`. Any thread may call :meth:`Connection.send`.

Locks
-----
``_state_lock`` guards the core (short critical sections, no I/O under it).
``_write_lock`` guards ``sendall``: the thread holding it drains the core's outgoing
buffer until it is empty, so bytes leave in the order the core queued them. A
user thread takes it blocking (``send`` returns once its bytes are written); the
reader thread only tries it, so a writer blocked on a full socket never stops the
reader from reading. Whoever releases the lock re-checks for bytes queued in the
meantime. ``_cond`` guards the delivery queue and the disconnected flag.

When the server closes the connection (or it breaks) the reader thread sets
:attr:`Connection.disconnected`, wakes every waiter, calls the ``on_disconnect``
callbacks and ends: nothing spins on EOF.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from relaychat.protocol.client import (
    ClientProtocol,
    ConnectionClosed,
    Phase,
    RegistrationError,
)
from relaychat.protocol.message import Message, parse_message

__all__ = [
    "ClientProtocol",
    "Connection",
    "ConnectionClosed",
    "Phase",
    "RegistrationError",
    "connect",
]

logger = logging.getLogger("relaychat.client")

MessageCallback = Callable[[Message], None]
DisconnectCallback = Callable[[BaseException | None], None]
_C = TypeVar("_C", bound=Callable[..., None])

_ids = itertools.count(1)


class Connection:
    """A full-duplex IRC client connection (see the module docstring for threads and locks).

    Create it, register callbacks if you want them, then :meth:`connect`; or use
    the :func:`connect` function. As a context manager it connects on entry (if
    not yet connected) and quits on exit.
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
        caps: Iterable[str] = (),
        alt_nicks: Iterable[str] | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.id = f"c{next(_ids)}"
        self._protocol = ClientProtocol(
            nick, user=user, realname=realname, password=password, caps=caps, alt_nicks=alt_nicks
        )
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[Message] = deque(maxlen=queue_size)
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
    def registered(self) -> bool:
        return self.phase is Phase.REGISTERED

    def is_me(self, nick: str) -> bool:
        """Whether ``nick`` is our current nick under the server's case mapping."""
        with self._state_lock:
            return self._protocol.is_me(nick)

    def casefold(self, name: str) -> str:
        with self._state_lock:
            return self._protocol.casefold(name)

    # -- callbacks --------------------------------------------------------------

    def on_message(self, callback: _C) -> _C:
        """Call ``callback(message)`` on the reader thread for every message, in order.

        Returns the callback, so this works as a decorator. A callback that raises
        is logged and does not stop delivery. While a callback runs nothing else
        is read, so keep it short; it may call :meth:`send`.
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
        message), :class:`TimeoutError` if 001 did not come within ``timeout``
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
            if phase is not Phase.REGISTERED:
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
        """Send a message, from any thread: ``send(Message(...))`` or
        ``send("PRIVMSG", "#chan", "hello there")``.

        Returns once the bytes are handed to the kernel. Raises ValueError for a
        message that cannot be sent faithfully (see :meth:`ClientProtocol.send`),
        TypeError for a Message together with params, and
        :class:`ConnectionClosed` once the connection is gone.
        """
        if isinstance(message, Message):
            if params:
                raise TypeError("send(Message) takes no extra params")
            msg = message
        else:
            msg = Message(message, list(params))
        if self._sock is None or self.disconnected.is_set() or self._closing:
            raise ConnectionClosed("connection is closed")
        with self._state_lock:
            self._protocol.send(msg)
        self._flush(block=True)

    def send_raw(self, line: str) -> None:
        """Parse ``line`` (one IRC line, no CRLF) and send it. Raises
        :class:`~relaychat.protocol.message.MessageParseError` or ValueError for
        a line that is empty or holds CR/LF."""
        if "\r" in line or "\n" in line:
            raise ValueError("a raw line may not contain CR or LF")
        self.send(parse_message(line))

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
        """Send ``text`` to a channel or nick; a multi-line text becomes one PRIVMSG
        per non-empty line. Long lines are not split (the server may cut them)."""
        for line in text.splitlines():
            if line:
                self.send("PRIVMSG", target, line)

    def notice(self, target: str, text: str) -> None:
        """Like :meth:`privmsg`, with NOTICE."""
        for line in text.splitlines():
            if line:
                self.send("NOTICE", target, line)

    def action(self, target: str, text: str) -> None:
        """Send a CTCP ACTION (``/me``)."""
        self.send("PRIVMSG", target, f"\x01ACTION {text}\x01")

    # -- receiving --------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Message:
        """Return the next unread message, waiting up to ``timeout`` seconds (None: forever).

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

    def __iter__(self) -> Iterator[Message]:
        """Yield messages until the connection is gone and the queue is drained."""
        while True:
            try:
                yield self.get()
            except ConnectionClosed:
                return

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """Read messages (as :meth:`get` does) until one satisfies ``predicate``; return it.

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
                    messages = self._protocol.receive_data(data)
                    phase = self._protocol.phase
                self._flush(block=False)
                self._deliver(messages)
                if phase is not Phase.REGISTERING and phase is not Phase.NEW:
                    self._registration_done.set()
        except BaseException as exc:  # a bug in the core: log it, end the connection
            logger.exception("[%s] reader thread failed", self.id)
            error = exc
        finally:
            self._finish(error)

    def _deliver(self, messages: list[Message]) -> None:
        if not messages:
            return
        with self._cond:
            for message in messages:
                if len(self._queue) == self._queue.maxlen:
                    self._dropped += 1
                    if self._dropped == 1:
                        logger.warning("[%s] delivery queue full, dropping old messages", self.id)
                self._queue.append(message)
            self._cond.notify_all()
            callbacks = list(self._callbacks)
        for message in messages:
            for callback in callbacks:
                try:
                    callback(message)
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
    caps: Iterable[str] = (),
    alt_nicks: Iterable[str] | None = None,
    on_message: MessageCallback | None = None,
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
    )
    if on_message is not None:
        conn.on_message(on_message)
    return conn.connect(timeout)
