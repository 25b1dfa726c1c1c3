"""The default engine: one asyncio event loop (uvloop when installed) owns every socket.

Theory of operation
-------------------
Each connection is an ``asyncio.Protocol`` (:class:`_Connection`); its callbacks
feed the :class:`~relaychat.server.driver.Driver` and ask for one flush per loop
turn (``call_soon``). The flush writes every connection's pending lines with one
``transport.write`` each: coalesced, and a channel message was serialised only
once. A write never blocks: asyncio buffers what the socket does not take, and
the driver drops a client whose buffer passes SendQ.

A listener behind trusted proxies (``proxy`` in its config) first checks the
peer against the list, then feeds what arrives to a
:class:`~relaychat.server.proxy.ProxyParser` under a deadline; only once the
header is complete does the connection start as any other (its TLS handshake,
or IRC) with the header's source address, fed the bytes that came after it.

TLS is done here, sans-I/O style: a TLS listener's connection runs a
:class:`~relaychat.server.tls.TlsSession` (pyOpenSSL over memory BIOs:
ciphertext in from ``data_received``, out through ``transport.write``). It
joins the driver once its handshake is done, with the client certificate's
fingerprint; a handshake has a deadline (a timer), and a stop aborts the ones
in flight. (``create_server(ssl=...)`` gives no handle on a connection before its
handshake ends, and uvloop reads before ``start_tls`` can take over.)

Operations (password hashes, reloading the config) run in the default executor
and come back on the loop. Timers: one ``call_later`` for the driver's next
deadline. Everything here runs on the loop's thread, so the core needs no lock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

from relaychat.protocol.ops import Op
from relaychat.server.driver import Driver
from relaychat.server.listen import listener_kind, log_web_clients, open_listeners, tune_socket
from relaychat.server.proxy import ProxyHeaderError, ProxyParser

if TYPE_CHECKING:
    from relaychat.config import Config
    from relaychat.server.proxy import TrustedProxies
    from relaychat.server.tls import TlsListener, TlsSession

__all__ = ["LoopServer", "new_event_loop"]

log = logging.getLogger("relaychat.loop")

_HIGH_WATER = 64 * 1024  # resume_writing tells the core the backlog drained


class _Connection(asyncio.Protocol):
    __slots__ = (
        "server",
        "tls",
        "tls_obj",
        "tls_timer",
        "transport",
        "session",
        "framer",
        "closed",
        "ws",
        "websocket",
        "ready",
        "proxy",
        "proxy_parser",
        "proxy_timer",
        "client_ip",
        "__weakref__",
    )

    def __init__(
        self,
        server: LoopServer,
        tls: TlsListener | None = None,
        proxy: TrustedProxies | None = None,
        websocket: bool = False,
    ) -> None:
        self.server = server
        self.proxy = proxy  # a listener behind proxies': the PROXY header comes first
        self.proxy_parser: ProxyParser | None = None  # while the header is read
        self.proxy_timer: asyncio.TimerHandle | None = None
        self.client_ip: str | None = None  # the header's source address
        self.tls = tls  # a TLS listener's: the handshake comes first
        self.websocket = websocket  # a WebSocket listener's
        self.ready = False  # handed to the driver (after the TLS handshake, if any)
        self.ws: Any = None
        self.tls_obj: TlsSession | None = None
        self.tls_timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.session: Any = None
        self.framer: Any = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack alike
        self.transport = transport  # type: ignore[assignment]
        if self.proxy is not None:
            self._proxy_begin()  # then _begin, once the header is read
            return
        self._begin()

    def _begin(self) -> None:
        """The connection proper: its TLS handshake, or IRC at once."""
        if self.tls is None:
            self._made()
            return
        srv = self.server
        self.tls_obj = self.tls.session()  # the newest certificate
        srv.handshaking.add(self)
        self.tls_timer = srv.loop.call_later(
            srv.config.limits.tls_handshake_timeout, self._handshake_expired
        )

    def _made(self) -> None:
        """The connection is ready for IRC (after its TLS handshake, if any)."""
        transport = self.transport
        assert transport is not None
        ip = self.client_ip or self._peer_ip()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock)
        try:
            transport.set_write_buffer_limits(high=_HIGH_WATER)
        except (AttributeError, ValueError):
            pass
        srv = self.server
        srv.connections.add(self)
        self.ready = True
        certfp = self.tls_obj.certfp if self.tls_obj is not None else None
        srv.driver.accepted(self, ip, self.tls is not None, self.websocket, certfp)
        srv.schedule_flush()

    def data_received(self, data: bytes) -> None:
        if self.proxy_parser is not None:
            self._proxy_received(data)
            return
        if self.tls_obj is not None:
            data = self._decrypt(data)
            if not data or not self.ready:
                return
        srv = self.server
        srv.driver.data_received(self, data)
        srv.schedule_flush()

    def _peer_ip(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return peer[0] if isinstance(peer, tuple) else "unknown"

    # ---------------------------------------------------------- PROXY header
    def _proxy_begin(self) -> None:
        assert self.proxy is not None
        if not self.proxy.trusts(self._peer_ip()):
            self._proxy_refuse("not a trusted proxy of this listener")
            return
        srv = self.server
        self.proxy_parser = ProxyParser()
        srv.proxying.add(self)
        self.proxy_timer = srv.loop.call_later(srv.config.limits.proxy_timeout, self._proxy_expired)

    def _proxy_received(self, data: bytes) -> None:
        assert self.proxy_parser is not None and self.transport is not None
        try:
            header = self.proxy_parser.feed(data)
        except ProxyHeaderError as exc:
            self._proxy_refuse(exc.reason)
            return
        if header is None:
            return
        self._proxy_over()
        self.client_ip = header.source  # None: the proxy's own (UNKNOWN, LOCAL)
        self._begin()
        if header.leftover and not self.transport.is_closing():
            self.data_received(header.leftover)  # IRC lines, or the ClientHello

    def _proxy_over(self) -> None:
        self.proxy_parser = None
        self.server.proxying.discard(self)
        if self.proxy_timer is not None:
            self.proxy_timer.cancel()
            self.proxy_timer = None

    def _proxy_refuse(self, reason: str) -> None:
        self.server.driver.proxy_refused(self._peer_ip(), reason)
        self._proxy_over()
        if self.transport is not None:
            self.transport.abort()

    def _proxy_expired(self) -> None:
        self.proxy_timer = None
        self._proxy_refuse("no PROXY header by the deadline")

    # ---------------------------------------------------------------- TLS
    def _decrypt(self, data: bytes) -> bytes:
        """Feed ciphertext; the plaintext it completes (the handshake first)."""
        tls, transport = self.tls_obj, self.transport
        assert tls is not None and transport is not None
        shaking = not tls.handshake_done
        plain = tls.feed(data)
        self._send_tls()  # handshake records, alerts, tickets
        if tls.error is not None:
            if shaking:
                self._handshake_failed(tls.error)  # plaintext sent here, say
            else:
                log.info("[%s] TLS error: %s", _label(self), tls.error)
                transport.abort()
            return b""
        if shaking and tls.handshake_done:
            self._handshake_over()
            self._made()
        if tls.peer_closed:
            transport.close()  # close_notify: the peer is done (after its last lines)
        return plain

    def encrypt(self, data: bytes) -> bytes:
        assert self.tls_obj is not None
        return self.tls_obj.encrypt(data)

    def _send_tls(self) -> None:
        assert self.tls_obj is not None and self.transport is not None
        out = self.tls_obj.outgoing()
        if out and not self.transport.is_closing():
            self.transport.write(out)

    def _handshake_over(self) -> None:
        self.server.handshaking.discard(self)
        if self.tls_timer is not None:
            self.tls_timer.cancel()
            self.tls_timer = None

    def _handshake_failed(self, reason: str) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        ip = peer[0] if isinstance(peer, tuple) else "unknown"
        log.info("TLS handshake from %s failed: %s", ip, reason)
        self._handshake_over()
        if self.transport is not None:
            self.transport.close()  # the alert goes out first

    def _handshake_expired(self) -> None:
        self.tls_timer = None
        self._handshake_failed("no handshake by the deadline")
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------
    def eof_received(self) -> bool:
        return False  # close our side too

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed and self.session is not None:
            self.server.driver.wrote(self, self.transport.get_write_buffer_size(), False)

    def connection_lost(self, exc: Exception | None) -> None:
        srv = self.server
        if self.proxy_parser is not None:  # lost before the end of its PROXY header
            srv.driver.proxy_closed(self._peer_ip(), self.proxy_parser)
            self._proxy_over()
        if not self.ready:  # lost before (or during) its TLS handshake
            self._handshake_over()
            return
        srv.connections.discard(self)
        reason = "Connection closed" if exc is None else f"Read error: {_reason(exc)}"
        srv.driver.connection_lost(self, reason)
        srv.schedule_flush()
        if not srv.connections and srv._all_closed is not None:
            srv._all_closed.set()


def _label(conn: _Connection) -> str:
    """The connection id for log lines ("-" before a WebSocket upgrade)."""
    return "-" if conn.session is None else str(conn.session.conn_id)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return exc.__class__.__name__


class LoopServer:
    """Serve one core on an asyncio loop.

    ``await start()`` binds every listener (port 0 picks a free port: read
    ``.port``, the first listener's), then ``await serve_forever()`` until
    ``request_stop()`` (thread-safe) or DIE.
    """

    def __init__(self, config: Config, config_loader: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.driver = Driver(config, self, config_loader)
        self.core = self.driver.core
        self.connections: set[_Connection] = set()
        self.port = 0
        self.ports: list[int] = []
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._servers: list[asyncio.Server] = []
        self._in_flight: set[asyncio.Future[Any]] = set()  # operations on worker threads
        self.handshaking: set[_Connection] = set()  # TLS handshakes in flight
        self.proxying: set[_Connection] = set()  # PROXY headers being read
        self._flush_scheduled = False
        self._stop: asyncio.Event | None = None
        self._stop_reason = "Server shutting down"
        self._all_closed: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    async def start(self, socks: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        socks = socks if socks is not None else open_listeners(self.config)
        per_listener = zip(
            socks, self.driver.tls, self.driver.proxies, self.driver.websocket, strict=True
        )
        for sock, tls, proxy, ws in per_listener:
            server = await self.loop.create_server(
                lambda tls=tls, proxy=proxy, ws=ws: _Connection(  # type: ignore[misc]
                    self, tls, proxy, ws
                ),
                sock=sock,
                backlog=4096,
            )
            self._servers.append(server)
            self.ports.append(sock.getsockname()[1])
        self.port = self.ports[0]
        self.driver.listening(self.ports)
        kind = type(self.loop).__module__.split(".")[0]
        for sock, tls, ws in zip(socks, self.driver.tls, self.driver.websocket, strict=True):
            addr = sock.getsockname()
            log.info(
                "listening on %s port %d%s (engine: loop, %s)",
                addr[0],
                addr[1],
                listener_kind(tls is not None, ws),
                kind,
            )
        log_web_clients(self.config, socks, self.driver.tls, self.driver.websocket)

    async def serve_forever(self) -> None:
        assert self._stop is not None
        await self._stop.wait()
        await self.close_all(self._stop_reason)
        # operations on worker threads finish (a store write among them); each
        # one done may start the next of its pool, so wait until none is left
        deadline = time.monotonic() + 5.0
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.wait(set(self._in_flight), timeout=deadline - time.monotonic())
            await asyncio.sleep(0)  # the completions' callbacks run (and start the next)
        self.driver.close_store()

    def request_stop(self, reason: str = "Server shutting down") -> None:
        """Stop serving; safe to call from any thread or a signal handler."""
        self._stop_reason = reason
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    def request_rehash(self) -> None:
        """Reload the configuration file (SIGHUP); safe from any thread."""

        def go() -> None:
            self.driver.start_rehash(None)
            self.schedule_flush()

        self.loop.call_soon_threadsafe(go)

    async def close_all(self, reason: str) -> None:
        """ERROR to every client, close all sockets; returns within about 2 s."""
        if self._timer is not None:
            self._timer.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.proxying):
            conn._proxy_over()
            if conn.transport is not None:
                conn.transport.abort()
        for conn in list(self.handshaking):
            conn._handshake_over()
            if conn.transport is not None:
                conn.transport.abort()
        self.driver.shutdown(reason)
        self.flush()
        if self.connections:
            self._all_closed = asyncio.Event()
            try:
                await asyncio.wait_for(self._all_closed.wait(), 1.5)
            except TimeoutError:
                for conn in list(self.connections):
                    if conn.transport is not None:
                        conn.transport.abort()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 0.3)
            except TimeoutError:
                pass
        log.info("stopped: %s", reason)

    # ------------------------------------------------- engine primitives
    def write(self, conn: _Connection, data: bytes) -> int:
        transport = conn.transport
        if transport is None or transport.is_closing():
            return 0
        if conn.tls_obj is not None:
            try:
                data = conn.encrypt(data)
            except SSL.Error:  # the session failed (logged by the read side)
                transport.abort()
                return 0
        transport.write(data)
        return transport.get_write_buffer_size()

    def backlog(self, conn: _Connection) -> int:
        transport = conn.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def close(self, conn: _Connection) -> None:
        transport = conn.transport
        if transport is None:
            return
        if conn.tls_obj is not None and not transport.is_closing():
            notify = conn.tls_obj.close_notify()
            if notify:
                transport.write(notify)
        transport.close()

    def abort(self, conn: _Connection) -> None:
        if conn.transport is not None:
            conn.transport.abort()

    def run_op(self, op: Op) -> None:
        fut = self.loop.run_in_executor(None, op.run)
        self._in_flight.add(fut)
        fut.add_done_callback(self._in_flight.discard)
        fut.add_done_callback(lambda f, op=op: self._op_finished(op, f))  # type: ignore[misc]

    def set_timer(self, when: float) -> None:
        if self._timer_at is not None and self._timer_at <= when and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_later(max(0.0, when - time.monotonic()), self._on_timer)

    def stop(self, reason: str) -> None:
        self._stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    # ------------------------------------------------------------ internals
    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        self.driver.flush_inline()

    def _op_finished(self, op: Op, fut: asyncio.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            op.error = exc
        else:
            op.result = fut.result()
        self.driver.op_finished(op)
        self.schedule_flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.driver.on_timer()
        self.flush()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
