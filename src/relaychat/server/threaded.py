"""The ``threads`` engine: the tutorial's thread per connection, done right.

Theory of operation
-------------------
Threads:

* the **acceptor** (``serve_forever``'s caller) accepts on every listener and
  starts one **reader thread** per connection (a small stack: 256 KiB);
* each reader blocks in ``recv``; ``b""`` (EOF) or an error ends it (it never
  spins on a dead socket); it feeds the bytes to the driver under the core
  lock, and on the way out always reports the connection lost (so no ghost
  user stays in its channels, whatever went wrong) and closes its socket;
* one **service thread** finishes writes the kernel did not take at once
  (``selectors``), and runs the driver's timers (PING, timeouts, flood queues,
  close deadlines) when they are due;
* a small pool runs operations (password hashes, reloading the config).

Locks (``flush_lock`` may be held while taking ``lock``, never the reverse):

1. ``lock`` guards the driver and the core. A reader holds it only while the
   core handles its lines: no system call happens under it.
2. ``flush_lock`` guards every socket write and each connection's unsent
   ``backlog``. Output is *combined*: after its turn a reader tries to take
   ``flush_lock``; if another thread is flushing, it leaves, and that thread
   picks its output up on its next pass. The flusher takes all the core's
   output at once (under ``lock``, briefly), writes it without ``lock``
   (``MSG_DONTWAIT``: one system call per connection, never blocking), and
   loops while turns keep producing output. Under load many turns share one
   pass, so 10,000 readers do not mean 10,000 passes over 10,000 sockets.
   What the kernel does not take is kept as a list of buffers (no copying) for
   the service thread, and counts toward SendQ.

A socket's file descriptor is closed only by its reader thread, under
``flush_lock``, so a write can never hit a reused descriptor; ``abort`` only
shuts the socket down, which wakes the reader.

PROXY (a listener with a ``proxy`` list): the acceptor checks the peer against
the list; a reader thread then reads the PROXY header under its deadline
(``poll``), exactly (``ProxyParser.wanted``: never a byte past the header, so
IRC lines or the ClientHello stay in the socket), and only then goes on as a
plain or TLS connection would, with the header's source address.

TLS (a listener with ``tls = true``): the socket stays a plain socket and the
connection gets a :class:`~relaychat.server.tls.TlsSession` (sans-I/O, memory
BIOs). The reader thread does the handshake first (``poll`` with the handshake
deadline), and only then is the connection handed to the driver, with the
client certificate's fingerprint. Then the reader ``recv``s ciphertext and
decrypts it under the connection's ``tls_lock``; a write encrypts under that
lock and goes down the same non-blocking path as plaintext (``MSG_DONTWAIT``;
the backlog holds ciphertext). One session must not be used by two threads at
once, and its records must leave in the order they were made: ``tls_lock`` is
taken after ``flush_lock`` (never held while waiting), and what a decryption
makes to send (a TLS 1.3 key update's answer) stays in the session until the
next write under ``flush_lock`` takes it, in order, ahead of its own records.
"""

from __future__ import annotations

import contextlib
import logging
import select
import selectors
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

from relaychat.protocol.ops import Op
from relaychat.server.driver import Driver
from relaychat.server.listen import listener_kind, log_web_clients, open_listeners, tune_socket
from relaychat.server.proxy import ProxyHeader, ProxyHeaderError, ProxyParser

if TYPE_CHECKING:
    from relaychat.config import Config
    from relaychat.server.proxy import TrustedProxies
    from relaychat.server.tls import TlsListener, TlsSession

__all__ = ["ThreadedServer"]

log = logging.getLogger("relaychat.threads")

STACK_SIZE = 256 * 1024
# With thousands of reader threads runnable at once (a JOIN from everyone), each
# waiting thread forces the GIL holder to switch every interval; CPython's 5 ms
# default makes them thrash (6,000 JOINs: 11 s, a bystander's PING 10 s). Our
# turns are short and release the GIL on their own at the next system call, so
# a longer interval costs no latency and removes the thrashing (0.9 s, 0.16 s).
GIL_SWITCH_INTERVAL = 0.05
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)
_IOV_MAX = 64
_ACCEPT_WARN_INTERVAL = 10.0
_TLS_WAIT = 1.0  # seconds between checks for a stop while a handshake waits


class _Conn:
    __slots__ = (
        "sock",
        "session",
        "framer",
        "closed",
        "dead",
        "backlog",
        "backlog_bytes",
        "close_when_drained",
        "watched",
        "thread",
        "tls",
        "tls_lock",
        "ws",
        "__weakref__",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tls: TlsSession | None = None  # a TLS connection's session (see above)
        self.tls_lock: threading.Lock | None = None  # guards ``tls``
        self.session: Any = None  # None before a WebSocket upgrade
        self.framer: Any = None
        self.ws: Any = None
        self.closed = False  # the driver is done with it
        self.dead = False  # shut down: write nothing more
        self.backlog: deque[memoryview] = deque()  # unsent; guarded by flush_lock
        self.backlog_bytes = 0
        self.close_when_drained = False
        self.watched = False  # registered with the service thread's selector
        self.thread: threading.Thread | None = None


def _label(conn: _Conn) -> str:
    """The connection id for names and log lines ("ws" before a WebSocket upgrade)."""
    return "ws" if conn.session is None else str(conn.session.conn_id)


class ThreadedServer:
    """Serve one core with a thread per connection."""

    def __init__(self, config: Config, config_loader: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.lock = threading.Lock()
        self._late_ops: list[Op] = []  # operations readied while stopping
        self.flush_lock = threading.Lock()
        self.driver = Driver(config, self, config_loader)
        self.core = self.driver.core
        self.port = 0
        self.ports: list[int] = []
        self.conns: set[_Conn] = set()  # guarded by lock
        self._listeners: list[socket.socket] = []
        self._proxies: dict[int, TrustedProxies] = {}  # listener fd -> its trusted proxies
        self._stopping = threading.Event()
        self._stop_reason = "Server shutting down"
        self._selector = selectors.DefaultSelector()
        self._sel_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="relaychat-op")
        self._service: threading.Thread | None = None
        self._signalled_stop: str | None = None  # set by signal handlers only
        self._signalled_rehash = False
        self._pending = False  # the core may have output (set under lock)
        self._timer_at: float | None = None
        self._service_done = False
        self._accept_errors = 0
        self._accept_warned = 0.0
        self._no_new = False  # shutting down: a finished handshake joins no more

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Bind every listener (port 0 picks a free port: read ``.port``)."""
        self._listeners = open_listeners(self.config, backlog=1024)
        self.ports = [s.getsockname()[1] for s in self._listeners]
        self.port = self.ports[0]
        self.driver.listening(self.ports)
        self._proxies = {
            sock.fileno(): proxy
            for sock, proxy in zip(self._listeners, self.driver.proxies, strict=True)
            if proxy is not None
        }
        self._service = threading.Thread(
            target=self._service_loop, name="relaychat-service", daemon=True
        )
        self._service.start()
        driver = self.driver
        for sock, tls, ws in zip(self._listeners, driver.tls, driver.websocket, strict=True):
            addr = sock.getsockname()
            kind = listener_kind(tls is not None, ws)
            log.info("listening on %s port %d%s (engine: threads)", addr[0], addr[1], kind)
        log_web_clients(self.config, self._listeners, driver.tls, driver.websocket)

    def serve_forever(self, wait_for_readers: bool = True) -> None:
        """Accept until stopped, then shut down (ERROR to all) within about 2 s.

        ``wait_for_readers=False`` (a process about to exit) does not wait for the
        reader threads to notice their sockets closed: with thousands of them
        that alone takes a second, and the process exit ends them anyway."""
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        sel = selectors.DefaultSelector()
        kinds = zip(self.driver.tls, self.driver.websocket, strict=True)
        for sock, kind in zip(self._listeners, kinds, strict=True):
            sel.register(sock, selectors.EVENT_READ, kind)
        old_stack = threading.stack_size()
        threading.stack_size(STACK_SIZE)
        try:
            while not self._stopping.is_set():
                if self._signalled_stop is not None:
                    self.request_stop(self._signalled_stop)
                    break
                if self._signalled_rehash:
                    self._signalled_rehash = False
                    self.request_rehash()
                for key, _ in sel.select(0.1):
                    self._accept(key.fileobj, *key.data)  # type: ignore[arg-type]
        finally:
            threading.stack_size(old_stack)
            sys.setswitchinterval(old_interval)
            sel.close()
        self._shutdown(wait_for_readers)

    def request_stop(self, reason: str = "Server shutting down") -> None:
        self._stop_reason = reason
        self._stopping.set()

    def signal_stop(self, reason: str = "Server shutting down") -> None:
        """For a signal handler: takes no lock (the interrupted main thread may hold
        one); the accept loop acts on it within 0.1 s."""
        self._signalled_stop = reason

    def signal_rehash(self) -> None:
        """For a signal handler (SIGHUP): the accept loop starts the reload."""
        self._signalled_rehash = True

    def request_rehash(self) -> None:
        with self.lock:
            self.driver.start_rehash(None)
            self._pending = True
        self._after_turn()

    def _shutdown(self, wait_for_readers: bool = True) -> None:
        """ERROR to everyone, a moment for the last lines to leave, then every
        socket shut down; bounded by one deadline however many clients there are."""
        for sock in self._listeners:
            sock.close()
        with self.lock:
            self._no_new = True
            self.driver.shutdown(self._stop_reason)
            self._pending = True
            conns = list(self.conns)
        self._after_turn()
        deadline = time.monotonic() + 1.0
        # the readers exit without taking the core lock from here on
        self._stopping.set()
        while time.monotonic() < deadline and any(c.backlog_bytes for c in conns if not c.dead):
            time.sleep(0.02)  # the service thread is writing the last lines
        for conn in conns:
            self._kill(conn)  # wakes its reader, which closes the socket and ends
        for conn in conns if wait_for_readers else ():
            left = deadline + 0.2 - time.monotonic()
            if left <= 0:
                break
            if conn.thread is not None:
                conn.thread.join(left)
        self._service_done = True
        self._wake()
        if self._service is not None:
            self._service.join(0.2)
        # operations already handed to the pool finish (a store write among them),
        # then those started since the stop began run here; the ones still
        # waiting in the core run in close_store below
        self._pool.shutdown(wait=True)
        for op in self._late_ops:
            try:
                op.result = op.run()
            except Exception as exc:  # handed back to the core
                op.error = exc
            with self.lock:
                self.driver.op_finished(op)
        self._late_ops.clear()
        with contextlib.suppress(OSError):
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self.driver.close_store()
        log.info("stopped: %s", self._stop_reason)

    # ------------------------------------------------------------ per conn
    def _accept(self, listener: socket.socket, tls: TlsListener | None, ws: bool) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            proxy = self._proxies.get(listener.fileno())
            if proxy is not None:
                self._accepted_proxy(sock, addr, tls, proxy, ws)
            elif tls is None:
                self._accepted(sock, addr, ws)
            else:
                self._accepted_tls(sock, addr, tls, ws)

    def _accept_failed(self, exc: OSError) -> None:
        """EMFILE and friends: one warning per interval, and a short back-off."""
        self._accept_errors += 1
        now = time.monotonic()
        if now - self._accept_warned >= _ACCEPT_WARN_INTERVAL:
            log.warning(
                "accept failed %d time(s) in the last %.0f s: %s",
                self._accept_errors,
                _ACCEPT_WARN_INTERVAL,
                exc,
            )
            self._accept_warned = now
            self._accept_errors = 0
        time.sleep(0.05)

    def _accepted(self, sock: socket.socket, addr: Any, ws: bool = False) -> None:
        sock.setblocking(True)
        tune_socket(sock)
        conn = _Conn(sock)
        ip = addr[0] if isinstance(addr, tuple) else "unknown"
        with self.lock:
            self.driver.accepted(conn, ip, False, ws)
            self.conns.add(conn)
            self._pending = True
        thread = threading.Thread(
            target=self._reader,
            args=(conn,),
            daemon=True,
            name=f"relaychat-conn-{_label(conn)}",
        )
        conn.thread = thread
        try:
            thread.start()
        except RuntimeError as exc:  # cannot start a thread: refuse this one client
            log.error("cannot start a reader thread: %s", exc)
            conn.thread = None
            with self.lock:
                if conn.session is not None:
                    self.core.disconnect(conn.session, "Server is out of resources", self.core.now)
                self._pending = True
            self._after_turn()
            self._finish(conn, "Server is out of resources")
            return
        self._after_turn()

    # ---------------------------------------------------------- PROXY header
    def _accepted_proxy(
        self,
        sock: socket.socket,
        addr: Any,
        tls: TlsListener | None,
        proxy: TrustedProxies,
        ws: bool,
    ) -> None:
        """A trusted peer gets a thread that reads its header (``_proxy_reader``)."""
        peer = addr[0] if isinstance(addr, tuple) else "unknown"
        if not proxy.trusts(peer):
            self.driver.proxy_refused(peer, "not a trusted proxy of this listener")
            sock.close()
            return
        tune_socket(sock)
        sock.setblocking(False)
        thread = threading.Thread(
            target=self._proxy_reader,
            args=(sock, peer, tls, ws),
            daemon=True,
            name="relaychat-proxy",
        )
        try:
            thread.start()
        except RuntimeError as exc:
            log.error("cannot start a reader thread: %s", exc)
            sock.close()

    def _proxy_reader(
        self, sock: socket.socket, peer: str, tls: TlsListener | None, ws: bool
    ) -> None:
        try:
            header = self._read_proxy_header(sock, peer)
        except Exception:
            log.exception("PROXY header from %s failed", peer)
            sock.close()
            return
        if header is None:
            return
        ip = header.source or peer  # None: the proxy's own (UNKNOWN, LOCAL)
        if tls is not None:
            self._tls_reader(sock, ip, tls, ws)  # the ClientHello is still in the socket
            return
        sock.setblocking(True)
        conn = _Conn(sock)
        conn.thread = threading.current_thread()
        with self.lock:
            if self._no_new:
                sock.close()
                return
            self.driver.accepted(conn, ip, False, ws)
            self.conns.add(conn)
            if header.leftover:  # none: the header was read exactly
                self.driver.data_received(conn, header.leftover)
            self._pending = True
        conn.thread.name = f"relaychat-conn-{_label(conn)}"
        self._after_turn()
        self._reader(conn)

    def _read_proxy_header(self, sock: socket.socket, peer: str) -> ProxyHeader | None:
        """The header, read exactly, by the deadline; None: refused (logged,
        the socket closed)."""
        deadline = time.monotonic() + self.config.limits.proxy_timeout
        parser = ProxyParser()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                self.driver.proxy_refused(peer, "no PROXY header by the deadline")
                break
            if not poller.poll(min(left, _TLS_WAIT) * 1000):
                continue
            try:
                data = sock.recv(parser.wanted())
            except BlockingIOError:
                continue
            except OSError as exc:
                reason = exc.strerror or exc.__class__.__name__
                self.driver.proxy_refused(peer, f"read error: {reason}")
                break
            if not data:
                self.driver.proxy_closed(peer, parser)
                break
            try:
                header = parser.feed(data)
            except ProxyHeaderError as exc:
                self.driver.proxy_refused(peer, exc.reason)
                break
            if header is not None:
                return header
        sock.close()
        return None

    # ------------------------------------------------------------------ TLS
    def _accepted_tls(
        self, sock: socket.socket, addr: Any, tls: TlsListener, ws: bool = False
    ) -> None:
        """The reader thread shakes hands, then joins the driver (``_tls_reader``)."""
        tune_socket(sock)
        sock.setblocking(False)
        ip = addr[0] if isinstance(addr, tuple) else "unknown"
        thread = threading.Thread(
            target=self._tls_reader, args=(sock, ip, tls, ws), daemon=True, name="relaychat-tls"
        )
        try:
            thread.start()
        except RuntimeError as exc:
            log.error("cannot start a reader thread: %s", exc)
            sock.close()

    def _tls_reader(self, sock: socket.socket, ip: str, tls: TlsListener, ws: bool) -> None:
        try:
            shaken = self._handshake(sock, ip, tls)
        except Exception:
            log.exception("TLS handshake from %s failed", ip)
            sock.close()
            return
        if shaken is None:
            return
        session, early = shaken
        sock.setblocking(True)
        conn = _Conn(sock)
        conn.tls = session
        conn.tls_lock = threading.Lock()
        conn.thread = threading.current_thread()
        with self.lock:
            if self._no_new:
                sock.close()
                return
            self.driver.accepted(conn, ip, True, ws, session.certfp)
            self.conns.add(conn)
            if early:  # lines that came with the end of the handshake
                self.driver.data_received(conn, early)
            self._pending = True
        conn.thread.name = f"relaychat-conn-{_label(conn)}"
        self._after_turn()
        self._reader(conn)

    def _handshake(
        self, sock: socket.socket, ip: str, tls: TlsListener
    ) -> tuple[TlsSession, bytes] | None:
        """The server side of a handshake, by the deadline: the session and the
        plaintext that came with its end; None: failed (logged, the socket
        closed). Plaintext sent here fails it at once."""
        deadline = time.monotonic() + self.config.limits.tls_handshake_timeout
        session = tls.session()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                log.info("TLS handshake from %s failed: no handshake by the deadline", ip)
                sock.close()
                return None
            if not poller.poll(min(left, _TLS_WAIT) * 1000):
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                log.info("TLS handshake from %s failed: %s", ip, exc.strerror or exc)
                sock.close()
                return None
            if not data:
                log.info("TLS handshake from %s failed: the peer closed", ip)
                sock.close()
                return None
            early = session.feed(data)
            out = session.outgoing()
            if out and not self._send_handshake(sock, out, deadline):
                log.info("TLS handshake from %s failed: the peer does not read", ip)
                sock.close()
                return None
            if session.error is not None:
                log.info("TLS handshake from %s failed: %s", ip, session.error)
                sock.close()  # the alert went out first
                return None
            if session.handshake_done:
                return session, early

    def _send_handshake(self, sock: socket.socket, data: bytes, deadline: float) -> bool:
        """Write handshake records (a few KB) by the deadline; False: failed."""
        view = memoryview(data)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        while view:
            try:
                view = view[sock.send(view, _SEND_FLAGS) :]
                continue
            except BlockingIOError:
                pass
            except OSError:
                return False
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                return False
            poller.poll(min(left, _TLS_WAIT) * 1000)
        return True

    def _decrypt(self, conn: _Conn, data: bytes) -> bytes:
        """The plaintext of ``data`` (b"": the peer sent close_notify); raises
        OSError when the TLS stream is broken."""
        session, lock = conn.tls, conn.tls_lock
        assert session is not None and lock is not None
        with lock:
            plain = session.feed(data)
            # what the session has to send now waits in it for the next write
            # (under flush_lock), which takes it first: records stay in order
            pending = bool(session.error is None and session.wants_write)
        if pending:
            self.write(conn, b"")
        if session.error is not None:
            raise OSError(0, f"TLS error: {session.error}")
        if session.peer_closed and not plain:
            return b""
        return plain

    def _reader(self, conn: _Conn) -> None:
        sock = conn.sock
        reason = "Connection closed"
        try:
            while not conn.dead:
                try:
                    data = sock.recv(65536)
                    if conn.tls is not None and data:
                        data = self._decrypt(conn, data)
                        if not data and not conn.tls.peer_closed:
                            continue  # a partial record: read on
                except OSError as exc:
                    reason = f"Read error: {exc.strerror or exc.__class__.__name__}"
                    break
                if not data or self._stopping.is_set():
                    break  # EOF: the peer is gone; stop instead of spinning on b""
                with self.lock:
                    self.driver.data_received(conn, data)
                    self._pending = True
                self._after_turn()
        except Exception:
            log.exception("[%s] reader failed", _label(conn))
            reason = "Internal error"
        finally:
            self._finish(conn, reason)

    def _finish(self, conn: _Conn, reason: str) -> None:
        """The reader's way out: the core forgets the session, the socket closes."""
        if not self._stopping.is_set():
            with self.lock:
                self.driver.connection_lost(conn, reason)
                self._pending = True
            self._after_turn()
        with self.flush_lock:
            conn.dead = True
            conn.backlog.clear()
            conn.backlog_bytes = 0
            self._unwatch(conn)
            with contextlib.suppress(OSError):
                conn.sock.close()
        # a thread whose turn ended while this one held flush_lock left its output
        # to us (it could not take the lock): write it now, not at the next timer
        self._after_turn()
        if not self._stopping.is_set():
            with self.lock:
                self.conns.discard(conn)

    # --------------------------------------------------------------- output
    def _after_turn(self) -> None:
        """Write what the core produced, combining with other threads' turns."""
        while self._pending:
            if not self.flush_lock.acquire(blocking=False):
                return  # the thread that holds it will see our output
            try:
                self._flush_all()
            finally:
                self.flush_lock.release()

    def _flush_all(self) -> None:
        """Caller holds ``flush_lock``."""
        while True:
            with self.lock:
                self._pending = False
                out = self.driver.take_output()
            if not out:
                return
            results: list[tuple[_Conn, int, bool]] = []
            for conn, data, close in out:
                if conn.dead:
                    continue
                backlog = self._send(conn, data) if data else conn.backlog_bytes
                results.append((conn, backlog, close))
            with self.lock:
                for conn, backlog, close in results:
                    self.driver.wrote(conn, backlog, close)
                self._pending = True  # wrote() may have queued more (SendQ QUITs)

    def _send(self, conn: _Conn, data: bytes) -> int:
        """Non-blocking send (a TLS connection's data encrypted first); what the
        kernel refuses joins the backlog. Caller holds ``flush_lock``."""
        if conn.tls is not None:
            cipher = self._encrypt(conn, data)
            if cipher is None:
                return 0
            if not cipher:
                return conn.backlog_bytes
            data = cipher
        if conn.backlog:
            conn.backlog.append(memoryview(data))
            conn.backlog_bytes += len(data)
            return conn.backlog_bytes
        try:
            sent = conn.sock.send(data, _SEND_FLAGS)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._kill(conn)
            return 0
        if sent < len(data):
            conn.backlog.append(memoryview(data)[sent:])
            conn.backlog_bytes += len(data) - sent
            self._watch(conn)
        return conn.backlog_bytes

    def _encrypt(self, conn: _Conn, data: bytes) -> bytes | None:
        """The ciphertext to send (what the session held first); None: the
        session failed and the connection is shut down. Caller holds
        ``flush_lock``: ciphertext is made and queued in one order."""
        assert conn.tls is not None and conn.tls_lock is not None
        try:
            with conn.tls_lock:
                return conn.tls.encrypt(data)
        except SSL.Error:
            self._kill(conn)
            return None

    def _drain_backlog(self, conn: _Conn) -> None:
        """Write as much of the backlog as the kernel takes. Caller holds ``flush_lock``."""
        if conn.dead:
            return
        backlog = conn.backlog
        while backlog:
            bufs = [backlog[i] for i in range(min(len(backlog), _IOV_MAX))]
            try:
                sent = conn.sock.sendmsg(bufs, (), _SEND_FLAGS)
            except BlockingIOError:
                break
            except OSError:
                self._kill(conn)
                return
            conn.backlog_bytes -= sent
            while sent:
                head = backlog[0]
                if len(head) <= sent:
                    sent -= len(head)
                    backlog.popleft()
                else:
                    backlog[0] = head[sent:]
                    sent = 0
            if conn.backlog_bytes and len(bufs) < _IOV_MAX:
                break  # the kernel is full
        if backlog:
            self._watch(conn)
        elif conn.close_when_drained:
            self._kill(conn)

    # ------------------------------------------------- engine primitives
    def write(self, conn: _Conn, data: bytes) -> int:
        with self.flush_lock:
            backlog = self._send(conn, data)
        if self._pending:
            self._wake()  # output left by a thread that found flush_lock taken
        return backlog

    def backlog(self, conn: _Conn) -> int:
        return conn.backlog_bytes

    def close(self, conn: _Conn) -> None:
        """Called under ``lock`` (and ``flush_lock``, from a flush)."""
        if conn.backlog_bytes:
            conn.close_when_drained = True
        else:
            self._kill(conn)

    def abort(self, conn: _Conn) -> None:
        self._kill(conn)

    def run_op(self, op: Op) -> None:
        if not self._stopping.is_set():
            try:
                self._pool.submit(self._run_op, op)
                return
            except RuntimeError:  # the pool has shut down
                pass
        self._late_ops.append(op)  # run by the stopping thread once the pool is done

    def set_timer(self, when: float) -> None:
        if self._timer_at is None or when < self._timer_at:
            self._timer_at = when
            self._wake()

    def stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            self.request_stop(reason)

    # ------------------------------------------------------------ internals
    def _kill(self, conn: _Conn) -> None:
        """Shut the socket down (wakes its reader, which closes it)."""
        if conn.dead:
            return
        conn.dead = True
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)

    def _watch(self, conn: _Conn) -> None:
        if conn.watched or conn.dead:
            return
        with self._sel_lock:
            try:
                self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
                conn.watched = True
            except (KeyError, ValueError, OSError):
                pass
        self._wake()

    def _unwatch(self, conn: _Conn) -> None:
        with self._sel_lock:
            if conn.watched:
                conn.watched = False
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(conn.sock)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x", _SEND_FLAGS)

    def _service_loop(self) -> None:
        """Unfinished writes and timers."""
        while not self._service_done:
            timer_at = self._timer_at
            timeout = 1.0 if timer_at is None else min(1.0, max(0.0, timer_at - time.monotonic()))
            try:
                events = self._selector.select(timeout)
            except (OSError, ValueError):
                if self._stopping.is_set() and self._selector.get_map() is None:
                    return
                continue
            if self._selector.get_map() is None:
                return
            writable: list[_Conn] = []
            for key, _ in events:
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                writable.append(key.data)
            try:
                if writable:
                    self._service_writes(writable)
                if self._timer_at is not None and self._timer_at <= time.monotonic():
                    with self.lock:
                        self._timer_at = None
                        self.driver.on_timer()
                        self._pending = True
                self._after_turn()
            except Exception:  # never let the service thread die
                log.exception("service thread error")

    def _service_writes(self, writable: list[_Conn]) -> None:
        with self.flush_lock:
            results = []
            for conn in writable:
                self._unwatch(conn)
                self._drain_backlog(conn)
                results.append((conn, conn.backlog_bytes))
        with self.lock:
            for conn, backlog in results:
                if not conn.closed and not conn.dead:
                    self.driver.wrote(conn, backlog, False)
            self._pending = True

    def _run_op(self, op: Op) -> None:
        try:
            op.result = op.run()
        except Exception as exc:  # handed back to the core
            op.error = exc
        with self.lock:
            self.driver.op_finished(op)
            self._pending = True
        self._after_turn()
