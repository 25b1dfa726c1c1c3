"""The default engine: one asyncio event loop (uvloop when installed) owns every socket.

Theory of operation
-------------------
Each connection is an ``asyncio.Protocol`` (:class:`_Connection`); its callbacks
feed the :class:`~relaychat.protocol.server.ServerCore` and ask for one flush per
loop turn (``call_soon``). The flush takes ``core.data_to_send()``: every
connection's pending lines joined into one buffer, written with one
``transport.write`` — coalesced, and a channel message was serialised only once.

A write never blocks: asyncio buffers what the socket does not take. When a
connection's buffer passes ``limits.sendq`` the client is dropped with
``Max SendQ exceeded`` and everyone else goes on. Blocking work from the core
(password hashes, reloading the config) runs in the default executor; its
result comes back on the loop. Everything here runs on the loop's thread only,
so the core needs no lock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from relaychat.config import Config
from relaychat.protocol.server import Job, ServerCore
from relaychat.server.listen import open_listeners, peer_ip

__all__ = ["LoopServer", "new_event_loop", "tune_socket"]

log = logging.getLogger("relaychat.loop")


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "session")

    def __init__(self, server: LoopServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack alike
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        ip = peer_ip(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock)
        srv = self.server
        srv.connections.add(self)
        self.session = srv.core.connect(ip, time.time(), handle=self)
        srv.schedule_flush()

    def data_received(self, data: bytes) -> None:
        srv = self.server
        srv.core.receive_data(self.session, data, time.time())
        srv.schedule_flush()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        srv = self.server
        srv.connections.discard(self)
        reason = "Connection closed" if exc is None else f"Read error: {_reason(exc)}"
        srv.core.connection_lost(self.session, reason, time.time())
        srv.schedule_flush()
        if not srv.connections and srv._all_closed is not None:
            srv._all_closed.set()


# The kernel's send buffer is capped so that SendQ is the real bound: left to
# autotuning, Linux lets one stuck reader pin up to tcp_wmem's maximum (4 MiB).
SOCKET_SNDBUF = 128 * 1024


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY (lines go out as soon as a turn ends) and a bounded send buffer."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SNDBUF)
    except OSError:
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return exc.__class__.__name__


class LoopServer:
    """Serve one :class:`ServerCore` on an asyncio loop.

    ``await start()`` binds every listener (port 0 picks a free port: ``.port`` is
    the first listener's), then
    ``await serve_forever()`` until ``request_stop()`` (thread-safe) or DIE.
    """

    def __init__(self, config: Config, config_loader: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.core = ServerCore(config, config_loader=config_loader)
        self.connections: set[_Connection] = set()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._servers: list[asyncio.Server] = []
        self._flush_scheduled = False
        self._stop: asyncio.Event | None = None
        self._stop_reason = "Server shutting down"
        self._all_closed: asyncio.Event | None = None
        self._ticker: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        socks = [sock] if sock is not None else open_listeners(self.config)
        for s in socks:
            server = await self.loop.create_server(lambda: _Connection(self), sock=s, backlog=4096)
            self._servers.append(server)
        self.port = socks[0].getsockname()[1]
        self._ticker = self.loop.call_later(1.0, self._tick)
        kind = type(self.loop).__module__.split(".")[0]
        for s in socks:
            addr = s.getsockname()
            log.info("listening on %s port %d (engine: loop, %s)", addr[0], addr[1], kind)

    async def serve_forever(self) -> None:
        assert self._stop is not None
        await self._stop.wait()
        await self.close(self._stop_reason)

    def request_stop(self, reason: str = "Server shutting down") -> None:
        """Stop serving; safe to call from any thread or a signal handler."""
        self._stop_reason = reason
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    def request_rehash(self) -> None:
        """Reload the configuration file (SIGHUP); safe from any thread."""
        from relaychat.protocol.handlers.oper import start_rehash

        def go() -> None:
            start_rehash(self.core, None)
            self.schedule_flush()

        self.loop.call_soon_threadsafe(go)

    async def close(self, reason: str) -> None:
        """ERROR to every client, close all sockets; returns within about 2 s."""
        if self._ticker is not None:
            self._ticker.cancel()
        for server in self._servers:
            server.close()
        self.core.shutdown(reason, time.time())
        self.flush()
        if self.connections:
            self._all_closed = asyncio.Event()
            try:
                await asyncio.wait_for(self._all_closed.wait(), 1.5)
            except TimeoutError:
                for conn in list(self.connections):
                    if conn.transport is not None:
                        conn.transport.abort()
        if self._servers:
            try:
                closed = asyncio.gather(*(server.wait_closed() for server in self._servers))
                await asyncio.wait_for(closed, 0.3)
            except TimeoutError:
                pass
        log.info("stopped: %s", reason)

    # ------------------------------------------------------------ internals
    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every connection's pending output (one write each) and start jobs."""
        self._flush_scheduled = False
        core = self.core
        sendq = core.limits.sendq
        for _ in range(4):  # a SendQ drop queues QUITs for others: flush those too
            batch = core.data_to_send()
            if not batch:
                break
            for conn, data, close in batch:
                transport = conn.transport
                if transport is None or transport.is_closing():
                    continue
                transport.write(data)
                if close:
                    if transport.get_write_buffer_size():
                        self.loop.call_later(2.0, transport.abort)
                    transport.close()
                elif transport.get_write_buffer_size() > sendq:
                    core.disconnect(conn.session, "Max SendQ exceeded", time.time())
                    transport.abort()
        jobs = core.jobs_to_run()
        for job in jobs:
            fut = self.loop.run_in_executor(None, job.run)
            fut.add_done_callback(lambda f, job=job: self._job_finished(job, f))  # type: ignore[misc]
        if core.stop_requested is not None and self._stop is not None:
            self._stop_reason = core.stop_requested
            self._stop.set()

    def _job_finished(self, job: Job, fut: asyncio.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            job.error = exc
        else:
            job.result = fut.result()
        self.core.job_done(job, time.time())
        self.schedule_flush()

    def _tick(self) -> None:
        self.core.tick(time.time())
        self.flush()
        self._ticker = self.loop.call_later(1.0, self._tick)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
