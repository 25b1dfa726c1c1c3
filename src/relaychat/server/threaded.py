"""The ``threads`` engine: the tutorial's thread per connection, done right.

Theory of operation
-------------------
Threads:

* the **acceptor** (``serve_forever``'s caller) accepts connections on every
  listening socket (``selectors``) and starts one **reader thread** per
  connection (a small stack: 256 KiB);
* each reader blocks in ``recv``; ``b""`` (EOF) or an error ends it — it never
  spins on a dead socket; it feeds the bytes to the core;
* one **writer thread** waits (``selectors``) on the sockets whose output the
  kernel did not take at once, and finishes those writes;
* one **ticker thread** drives ``core.tick`` every second and runs jobs
  (password hashes) in a small pool.

Locks (``conn.wlock`` may be held while taking ``self.lock``, never the reverse):

1. ``self.lock`` guards the :class:`ServerCore` and every ``_Conn.pending``.
   Whoever calls the core holds it, then moves ``core.data_to_send()`` into the
   connections' ``pending`` lists *before* releasing it, so output keeps the
   order the core made it in.
2. ``_Conn.wlock`` serialises writes to one socket. Writers take everything in
   ``pending`` (under lock 1, briefly) and send it with ``MSG_DONTWAIT``: one
   system call for all of a turn's lines (coalesced), never blocking on a slow
   reader. What the kernel does not take waits for the writer thread. Past
   ``limits.sendq`` bytes waiting, the client is dropped (``Max SendQ exceeded``).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from relaychat.config import Config
from relaychat.protocol.server import Job, ServerCore
from relaychat.server.listen import open_listeners, peer_ip
from relaychat.server.loop import tune_socket

__all__ = ["ThreadedServer"]

log = logging.getLogger("relaychat.threads")

STACK_SIZE = 256 * 1024
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class _Conn:
    __slots__ = (
        "sock",
        "session",
        "pending",
        "backlog",
        "wlock",
        "closing",
        "closed",
        "watched",
        "thread",
        "__weakref__",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.session: Any = None
        self.pending: list[bytes] = []  # guarded by ThreadedServer.lock
        self.backlog = b""  # bytes the kernel refused; guarded by wlock
        self.wlock = threading.Lock()
        self.closing = False  # close once everything is written
        self.closed = False
        self.watched = False  # registered with the writer's selector
        self.thread: threading.Thread | None = None


class ThreadedServer:
    """Serve one :class:`ServerCore` with a thread per connection."""

    def __init__(self, config: Config, config_loader: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.core = ServerCore(config, config_loader=config_loader)
        self.lock = threading.Lock()
        self.port = 0
        self.conns: set[_Conn] = set()
        self._listeners: list[socket.socket] = []
        self._accepting = selectors.DefaultSelector()  # the listeners; acceptor only
        self._stopping = threading.Event()
        self._stop_reason = "Server shutting down"
        self._selector = selectors.DefaultSelector()
        self._sel_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="relaychat-job")
        self._threads: list[threading.Thread] = []
        self._signalled_stop: str | None = None  # set by signal handlers only
        self._signalled_rehash = False
        self._dirty: set[_Conn] = set()  # guarded by lock
        self._jobs: list[Job] = []  # guarded by lock

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Bind and listen on every listener (port 0 picks a free port: ``.port``
        is the first listener's)."""
        self._listeners = open_listeners(self.config, backlog=1024)
        for sock in self._listeners:
            self._accepting.register(sock, selectors.EVENT_READ, sock)
        self.port = self._listeners[0].getsockname()[1]
        for target, name in (
            (self._writer_loop, "relaychat-writer"),
            (self._ticker_loop, "relaychat-ticker"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        for sock in self._listeners:
            addr = sock.getsockname()
            log.info("listening on %s port %d (engine: threads)", addr[0], addr[1])

    def serve_forever(self) -> None:
        """Accept until stopped, then shut down (ERROR to all) within about 2 s."""
        assert self._listeners
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
                # the timeout lets the acceptor notice a stop request promptly
                for key, _ in self._accepting.select(0.2):
                    try:
                        sock, addr = key.data.accept()
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        if self._stopping.is_set():
                            break
                        log.warning("accept failed: %s", exc)
                        time.sleep(0.05)  # EMFILE and friends: back off instead of spinning
                        continue
                    self._accepted(sock, addr)
        finally:
            threading.stack_size(old_stack)
        self._shutdown()

    def request_stop(self, reason: str = "Server shutting down") -> None:
        self._stop_reason = reason
        self._stopping.set()

    def signal_stop(self, reason: str = "Server shutting down") -> None:
        """For a signal handler: takes no lock (the interrupted main thread may hold
        one); the accept loop acts on it within its 0.2 s accept timeout."""
        self._signalled_stop = reason

    def signal_rehash(self) -> None:
        """For a signal handler (SIGHUP): the accept loop starts the reload."""
        self._signalled_rehash = True

    def request_rehash(self) -> None:
        from relaychat.protocol.handlers.oper import start_rehash

        with self.lock:
            start_rehash(self.core, None)
            self._collect()
        self._after_turn()

    def _shutdown(self) -> None:
        self._accepting.close()
        for sock in self._listeners:
            sock.close()
        with self.lock:
            self.core.shutdown(self._stop_reason, time.time())
            self._collect()
        self._after_turn()
        deadline = time.monotonic() + 1.5
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            with conn.wlock:
                if conn.backlog and time.monotonic() < deadline:
                    with contextlib.suppress(OSError):
                        conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
                        conn.sock.sendall(conn.backlog)
                self._close_socket_locked(conn)
        for conn in conns:
            if conn.thread is not None:
                conn.thread.join(max(0.01, deadline - time.monotonic()))
        self._stopping.set()
        self._wake()
        for t in self._threads:
            t.join(0.5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        log.info("stopped: %s", self._stop_reason)

    # ------------------------------------------------------------ per conn
    def _accepted(self, sock: socket.socket, addr: Any) -> None:
        sock.settimeout(None)
        tune_socket(sock)
        conn = _Conn(sock)
        ip = peer_ip(addr)
        with self.lock:
            conn.session = self.core.connect(ip, time.time(), handle=conn)
            self.conns.add(conn)
            self._collect()
        thread = threading.Thread(
            target=self._reader,
            args=(conn,),
            daemon=True,
            name=f"relaychat-conn-{conn.session.conn_id}",
        )
        conn.thread = thread
        try:
            thread.start()
        except RuntimeError as exc:  # cannot start a thread: refuse this one client
            log.error("cannot start a reader thread: %s", exc)
            with self.lock:
                self.core.disconnect(conn.session, "Server is out of resources", time.time())
                self._collect()
            self._close_socket(conn)
        self._after_turn()

    def _reader(self, conn: _Conn) -> None:
        sock = conn.sock
        core = self.core
        reason = "Connection closed"
        while True:
            try:
                data = sock.recv(65536)
            except OSError as exc:
                reason = f"Read error: {exc.strerror or exc.__class__.__name__}"
                break
            if not data:
                break  # EOF: the peer is gone; stop instead of spinning on b""
            with self.lock:
                if conn.session.closing is not None:
                    break
                core.receive_data(conn.session, data, time.time())
                self._collect()
            self._after_turn()
            if conn.closed:
                break
        with self.lock:
            core.connection_lost(conn.session, reason, time.time())
            self._collect()
        self._after_turn()
        self._close_socket(conn)

    # --------------------------------------------------------------- output
    def _collect(self) -> None:
        """Move the core's output into per-connection queues. Caller holds ``lock``."""
        for conn, data, close in self.core.data_to_send():
            conn.pending.append(data)
            if close:
                conn.closing = True
            self._dirty.add(conn)
        self._jobs.extend(self.core.jobs_to_run())
        if self.core.stop_requested is not None and not self._stopping.is_set():
            self.request_stop(self.core.stop_requested)

    def _after_turn(self) -> None:
        """Outside ``lock``: write what the last core call produced, start jobs."""
        with self.lock:
            dirty, self._dirty = self._dirty, set()
            jobs, self._jobs = self._jobs, []
        for conn in dirty:
            self._flush(conn)
        for job in jobs:
            self._pool.submit(self._run_job, job)

    def _flush(self, conn: _Conn) -> None:
        """Send everything queued for ``conn`` without blocking."""
        with conn.wlock:
            if conn.closed:
                return
            with self.lock:
                pending = conn.pending
                conn.pending = []
            data = conn.backlog + b"".join(pending) if pending else conn.backlog
            if data:
                try:
                    sent = conn.sock.send(data, _SEND_FLAGS)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._close_socket_locked(conn)
                    return
                conn.backlog = data[sent:]
            if conn.backlog:
                if len(conn.backlog) > self.core.limits.sendq and not conn.closing:
                    self._drop_sendq(conn)
                    return
                self._watch(conn)
            elif conn.closing:
                self._close_socket_locked(conn)

    def _drop_sendq(self, conn: _Conn) -> None:
        """Caller holds ``conn.wlock``."""
        conn.backlog = b""
        with self.lock:
            self.core.disconnect(conn.session, "Max SendQ exceeded", time.time())
            self._collect()
        self._close_socket_locked(conn)
        # the QUIT went to the others' queues; the ticker or next turn flushes them
        self._wake()

    def _watch(self, conn: _Conn) -> None:
        if conn.watched:
            return
        with self._sel_lock:
            try:
                self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
                conn.watched = True
            except (KeyError, ValueError, OSError):
                pass
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x", _SEND_FLAGS)

    def _writer_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                events = self._selector.select(1.0)
            except (OSError, ValueError):
                if self._stopping.is_set():
                    return
                continue
            for key, _ in events:
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                conn: _Conn = key.data
                self._unwatch(conn)
                self._flush(conn)
            self._after_turn()

    def _unwatch(self, conn: _Conn) -> None:
        with self._sel_lock:
            if conn.watched:
                conn.watched = False
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(conn.sock)

    def _close_socket(self, conn: _Conn) -> None:
        with conn.wlock:
            self._close_socket_locked(conn)

    def _close_socket_locked(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._unwatch(conn)
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
        conn.sock.close()
        with self.lock:
            self.conns.discard(conn)

    # ----------------------------------------------------------- ticker, jobs
    def _ticker_loop(self) -> None:
        while not self._stopping.wait(1.0):
            with self.lock:
                self.core.tick(time.time())
                self._collect()
            self._after_turn()

    def _run_job(self, job: Job) -> None:
        try:
            job.result = job.run()
        except Exception as exc:  # noqa: BLE001 - handed back to the core
            job.error = exc
        with self.lock:
            self.core.job_done(job, time.time())
            self._collect()
        self._after_turn()
