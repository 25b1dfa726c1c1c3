"""The engine driver: the policy both engines share, written once.

Theory of operation
-------------------
An engine (``loop``: asyncio; ``threads``: a thread per connection) owns sockets
and threads; the :class:`Driver` owns everything else between them and the
core: framing (a :class:`~relaychat.protocol.framing.LineBuffer` per
connection), the clock (``Now``: monotonic + wall), the end-of-turn flush
(every connection's output in one write, SendQ, close with a deadline),
operations (run on the engine's workers), the core's requests (stop, rehash),
timers (the core's next deadline and the close deadlines), and containment: an
exception escaping the core closes the one connection it came from, is logged
at most a few times a minute, and never kills a timer or a thread.

An engine implements the primitives of :class:`Engine` (the same names in
both) and calls the driver's entry points from the core's thread only (the
asyncio loop's thread; in the threads engine, with its core lock held):
``accepted``, ``data_received``, ``connection_lost``, ``on_timer``,
``op_finished``; then ``take_output`` and, per buffer written, ``wrote``.

WebSocket listeners (``websocket = true``) put a
:class:`~relaychat.server.websocket.WebSocketLink` between the engine's bytes
and the core: ``conn.ws`` (None on every other connection, so the TCP path pays
one attribute test per read and nothing per line). Until its HTTP upgrade is
done such a connection has no session (``conn.session is None``) and an
upgrade deadline (``limits.tls_handshake_timeout``); the session is opened with
the client address the upgrade gave (a trusted proxy's forwarded address). The
core's output for it is framed in ``take_output`` (one frame per line), before
the engine writes it, so SendQ counts framed bytes. WebSocket pings go out from
one sweep every ``[websocket] ping_interval`` seconds, to the connections with
no traffic either way since the sweep before (keeping proxies and NATs from
dropping idle clients); a dead peer is found by the core's IRC PING cycle, the
same as for TCP.

Close policy: a closing connection gets its last output written, then a
graceful close; if the peer does not read it within ``CLOSE_DEADLINE`` seconds
the connection is aborted. A connection whose unsent output passes SendQ is
dropped (``Max SendQ exceeded``) and aborted at once.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from relaychat.mail import SmtpMailer
from relaychat.protocol.commands import build_core
from relaychat.protocol.framing import LineBuffer
from relaychat.protocol.ops import Op
from relaychat.protocol.timebase import Now
from relaychat.server.proxy import ProxyParser, TrustedProxies
from relaychat.server.sts import sts_policy
from relaychat.server.tls import tls_listeners
from relaychat.server.websocket import WebRoot, WebSocketLink
from relaychat.store.base import open_store

if TYPE_CHECKING:
    from relaychat.config import Config, StsConfig
    from relaychat.protocol.caps import StsPolicy
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Session
    from relaychat.protocol.storage import Store

__all__ = ["CLOSE_DEADLINE", "Driver", "Engine", "clock"]

log = logging.getLogger("relaychat.driver")

CLOSE_DEADLINE = 2.0  # seconds a closing peer has to read its last lines
TLS_HANDSHAKE = b"\x16"  # the first byte of a TLS record carrying a handshake


_monotonic = time.monotonic
_time = time.time


def clock() -> Now:
    return Now(_monotonic(), _time())


class Engine(Protocol):
    """The primitives an engine gives the driver (same names in both engines)."""

    def write(self, conn: Any, data: bytes) -> int:
        """Queue ``data``; return the bytes still unsent for ``conn`` (never blocks)."""
        ...

    def backlog(self, conn: Any) -> int: ...

    def close(self, conn: Any) -> None:
        """Close once the unsent bytes are written (the driver aborts at the deadline)."""
        ...

    def abort(self, conn: Any) -> None: ...

    def run_op(self, op: Op) -> None:
        """Run ``op.run()`` on a worker; then ``driver.op_finished(op)`` on the core's thread."""
        ...

    def set_timer(self, when: float) -> None:
        """Call ``driver.on_timer()`` at monotonic time ``when`` (earlier is fine)."""
        ...

    def stop(self, reason: str) -> None: ...


class Driver:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        config_loader: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.config_loader = config_loader
        # per listener, in order: its TLS state or None; a pair that cannot be
        # used is an error at start naming the file (TlsError)
        self.tls = tls_listeners(config.listen)
        # per listener, in order: whether it speaks HTTP/WebSocket
        self.websocket = [item.websocket for item in config.listen]
        self.web_root = WebRoot()
        # per listener, in order: its trusted proxies (a PROXY header first) or None
        self.proxies = [
            TrustedProxies(item.proxy) if item.proxy else None for item in config.listen
        ]
        # opened (and migrated) before anything listens: a bad file is an error
        # at start naming it (StoreError), not a failure at the first login
        self.store: Store = open_store(config.store)
        self.core: ServerCore = build_core(config, clock(), secrets.token_hex(8), store=self.store)
        self.core.mailer = SmtpMailer()
        self._closing: dict[Any, float] = {}  # conn -> abort deadline (monotonic)
        self.ports: list[int] = []  # each listener's bound port, once listening
        self._timer_at: float | None = None
        self._ws_conns: set[Any] = set()  # every connection of a WebSocket listener
        self._ws_dirty: set[Any] = set()  # ... whose link has bytes to write
        self._upgrading: dict[Any, float] = {}  # conn -> upgrade deadline (in order)
        self._ws_ping_at: float | None = None

    # ------------------------------------------------------------ entry points
    def listening(self, ports: list[int]) -> None:
        """The engine bound its listeners (``ports``: each one's port, in
        order), before serving anyone: the STS policy can be decided."""
        self.ports = list(ports)
        self.core.set_sts(self.decide_sts(self.config.sts))

    def decide_sts(self, sts: StsConfig) -> StsPolicy | None:
        """The STS policy under ``sts`` (reads the certificate: may block); a
        check that fails unexpectedly advertises nothing (logged)."""
        try:
            policy, why = sts_policy(sts, self.config.listen, self.ports)
        except Exception:
            log.exception("STS not advertised: checking the certificate failed")
            return None
        if why is not None:
            log.info("STS %s", why)
        return policy

    def accepted(
        self,
        conn: Any,
        ip: str,
        secure: bool = False,
        websocket: bool = False,
        certfp: str | None = None,
    ) -> Session | None:
        """A new connection (``secure``: its TLS handshake is done; ``websocket``:
        it came to a WebSocket listener, and has no session until its upgrade;
        ``certfp``: the SHA-256 fingerprint of the client's certificate, if it
        sent one)."""
        lim = self.core.limits
        conn.framer = LineBuffer(lim.line_length, lim.tags_length)
        conn.closed = False
        if websocket:
            settings = self.core.config.websocket
            conn.session = None
            conn.ws = link = WebSocketLink(settings, ip, secure, self.web_root)
            link.certfp = certfp
            self._ws_conns.add(conn)
            mono = _monotonic()
            self._upgrading[conn] = mono + lim.tls_handshake_timeout
            if self._ws_ping_at is None and settings.ping_interval > 0:
                self._ws_ping_at = mono + settings.ping_interval
            return None
        conn.ws = None
        sess = self.core.connect(ip, clock(), handle=conn, secure=secure, certfp=certfp)
        conn.session = sess
        return sess

    @staticmethod
    def proxy_refused(peer: str, reason: str) -> None:
        """A connection on a listener behind proxies closed before it was one:
        its one log line (``peer``: the socket's address, the proxy's). Any
        thread may call it; nothing else happens."""
        log.info("PROXY: closed the connection from %s: %s", peer, reason)

    @staticmethod
    def proxy_closed(peer: str, parser: ProxyParser) -> None:
        """The peer closed before the end of its header: logged like a refusal,
        but at DEBUG when it sent nothing at all (a load balancer's TCP health
        check connects and closes, every few seconds)."""
        if parser.received:
            log.info("PROXY: %s closed the connection within its PROXY header", peer)
        else:
            log.debug("PROXY: %s closed the connection before sending anything", peer)

    def data_received(self, conn: Any, data: bytes) -> None:
        if conn.ws is not None:
            self._ws_received(conn, data)
            return
        sess = conn.session
        if sess.closing is not None:
            return
        if not sess.recv_bytes and data[:1] == TLS_HANDSHAKE and not sess.secure:
            # a TLS ClientHello on a plaintext port: no IRC line starts with 0x16
            sess.recv_bytes += len(data)
            self.core.disconnect(sess, "This port does not speak TLS", clock())
            return
        try:
            framer = conn.framer
            sess.recv_bytes += len(data)
            lines = framer.feed(data)
            if lines or framer.blank:
                self.core.receive_lines(sess, lines, Now(_monotonic(), _time()), framer.blank)
        except Exception:
            self._contain(sess, "input")

    def connection_lost(self, conn: Any, reason: str) -> None:
        self._closing.pop(conn, None)
        conn.closed = True
        if conn.ws is not None:
            self._ws_conns.discard(conn)
            self._ws_dirty.discard(conn)
            self._upgrading.pop(conn, None)
            if conn.session is None:
                return
        try:
            self.core.connection_lost(conn.session, reason, clock())
        except Exception:
            self._contain(None, "connection_lost")

    def on_timer(self) -> None:
        self._timer_at = None
        now = clock()
        try:
            self.core.handle_timers(now)
        except Exception:
            self._contain(None, "timers")
        if self._closing:
            for conn, deadline in list(self._closing.items()):
                if deadline <= now.mono:
                    del self._closing[conn]
                    if not conn.closed:
                        conn.closed = True
                        self.engine.abort(conn)
        if self._upgrading:
            self._upgrades_due(now.mono)
        if self._ws_ping_at is not None and self._ws_ping_at <= now.mono:
            self._ws_pings(now.mono)

    def op_finished(self, op: Op) -> None:
        try:
            self.core.op_done(op, clock())
        except Exception:
            self._contain(op.session, f"completion of {op!r}")

    def shutdown(self, reason: str) -> None:
        self.core.shutdown(reason, clock())
        for conn in list(self._upgrading):  # no session to say ERROR to
            if conn.session is None and not conn.closed:
                conn.closed = True
                self.engine.abort(conn)

    def close_store(self) -> None:
        """After the last connection (and the engine's in-flight operations):
        run here the operations still waiting for a worker (the writes of server
        bans queue one at a time), then commit what the store has queued and
        close it. What the server did before it stopped is not lost."""
        core = self.core
        for _ in range(10_000):  # each round finishes ops, which may ready the next
            ops = core.ops_to_run()
            if not ops:
                break
            for op in ops:
                try:
                    op.result = op.run()
                except Exception as exc:  # handed back as the op's error
                    op.error = exc
                self.op_finished(op)
        try:
            self.store.close()
        except Exception:
            log.exception("closing the store failed")

    # ---------------------------------------------------------- end of a turn
    def take_output(self) -> list[tuple[Any, bytes, bool]]:
        """The core's output, and everything else a turn ends with: operations
        started, requests acted on, the timer re-armed."""
        core = self.core
        out = core.data_to_send()
        if self._ws_conns:
            out = self._ws_output(out)
        for op in core.ops_to_run():
            self.engine.run_op(op)
        if core.requests:
            for kind, arg in core.take_requests():
                if kind == "stop":
                    self.engine.stop(arg)
                elif kind == "rehash":
                    self.start_rehash(arg)
            for op in core.ops_to_run():
                self.engine.run_op(op)
        self._arm_timer()
        return out

    def wrote(self, conn: Any, backlog: int, close: bool) -> None:
        """After writing a buffer from ``take_output``: SendQ and the close policy."""
        if conn.closed:
            return
        sess = conn.session
        if close:
            if backlog > self.core.limits.sendq and sess is not None:
                conn.closed = True
                self.engine.abort(conn)
            elif backlog == 0:
                conn.closed = True
                self.engine.close(conn)
            else:
                self.engine.close(conn)
                self._closing[conn] = time.monotonic() + CLOSE_DEADLINE
                self._arm_timer()
            return
        if sess is not None and backlog != sess.backlog:
            try:
                self.core.note_backlog(sess, backlog, clock())
            except Exception:
                self._contain(sess, "note_backlog")

    def flush_inline(self) -> None:
        """Take the output and write it here (an engine whose writes never block
        and that needs no lock around them: asyncio)."""
        engine = self.engine
        write = engine.write
        for _ in range(8):  # a SendQ drop queues QUITs for others: flush those too
            out = self.take_output()
            if not out:
                return
            for conn, data, close in out:
                if conn.closed:
                    continue
                backlog = write(conn, data) if data else engine.backlog(conn)
                if close or backlog != conn.session.backlog:
                    self.wrote(conn, backlog, close)

    # --------------------------------------------------------------- WebSocket
    def _ws_received(self, conn: Any, data: bytes) -> None:
        sess = conn.session
        if sess is not None and sess.closing is not None:
            return
        link: WebSocketLink = conn.ws
        try:
            lines, blank = link.receive_data(data)
        except Exception:
            self._contain(sess, "WebSocket input")
            if sess is None and not conn.closed:
                conn.closed = True
                self.engine.abort(conn)
            return
        if link.has_output():
            self._ws_dirty.add(conn)
        if sess is None:
            if not link.open:
                return
            self._upgrading.pop(conn, None)
            sess = self.core.connect(
                link.ip, clock(), handle=conn, secure=link.secure, certfp=link.certfp
            )
            conn.session = sess
            if sess.closing is not None:
                return
        try:
            sess.recv_bytes += len(data)
            if lines or blank:
                check = conn.framer.check
                framed = [check(line) for line in lines]
                self.core.receive_lines(sess, framed, clock(), blank)
            if link.failed is not None and sess.closing is None:
                self.core.disconnect(sess, link.failed, clock())
        except Exception:
            self._contain(sess, "input")

    def _ws_output(self, out: list[tuple[Any, bytes, bool]]) -> list[tuple[Any, bytes, bool]]:
        """The turn's output with every WebSocket connection's lines framed, and
        the links' own bytes (handshake responses, pongs, pings, close frames)."""
        dirty = self._ws_dirty
        framed: list[tuple[Any, bytes, bool]] = []
        for conn, data, close in out:
            link = conn.ws
            if link is not None:
                data = link.send_lines(data, close)
                dirty.discard(conn)
            framed.append((conn, data, close))
        if dirty:
            for conn in dirty:
                link = conn.ws
                data = link.data_to_send()
                if conn.session is None and not link.eof:
                    continue  # not reached: before the upgrade only a refusal writes
                framed.append((conn, data, link.eof and conn.session is None))
            dirty.clear()
        return framed

    def _upgrades_due(self, mono: float) -> None:
        """Connections without their upgrade at the deadline are aborted."""
        upgrading = self._upgrading
        for conn, deadline in list(upgrading.items()):
            if deadline > mono:
                break
            del upgrading[conn]
            if conn.session is None and not conn.closed:
                if not conn.ws.eof:
                    log.info("WebSocket upgrade from %s: none by the deadline", conn.ws.peer_ip)
                conn.closed = True
                self.engine.abort(conn)

    def _ws_pings(self, mono: float) -> None:
        interval = self.core.config.websocket.ping_interval
        for conn in self._ws_conns:
            if conn.session is not None and not conn.closed and conn.ws.keepalive():
                self._ws_dirty.add(conn)
        self._ws_ping_at = mono + interval if self._ws_conns and interval > 0 else None

    # --------------------------------------------------------------- internals
    def start_rehash(self, sess: Session | None) -> None:
        """Reload the configuration in a worker; the core applies all or nothing.
        The TLS listeners read their certificate and key again (each keeps its
        old pair if the new one is broken)."""
        loader = self.config_loader
        core = self.core
        tls = [item for item in self.tls if item is not None]
        if loader is None:
            if tls:

                def reload_tls() -> object:
                    for item in tls:
                        item.reload()
                    return self.decide_sts(self.config.sts)  # a new certificate, maybe

                core.submit(Op(reload_tls, core.set_sts, None))
            if sess is not None:
                core.server_notice(sess, "REHASH: this server has no configuration file")
            return

        def run() -> object:
            for item in tls:
                item.reload()
            try:
                config = loader()
            except Exception as exc:  # reported to the oper; the old config stays
                return exc
            return config, self.decide_sts(config.sts)

        def then(result: Any) -> None:
            if isinstance(result, tuple):
                result, core.sts = result  # offered with the new configuration
            core.rehash_result(sess, result, core.now)

        core.submit(Op(run, then, None))

    def _arm_timer(self) -> None:
        when = self.core.next_deadline()
        if self._closing:
            first = min(self._closing.values())
            when = first if when is None else min(when, first)
        if self._upgrading:  # in deadline order
            first = next(iter(self._upgrading.values()))
            when = first if when is None else min(when, first)
        if self._ws_ping_at is not None:
            when = self._ws_ping_at if when is None else min(when, self._ws_ping_at)
        if when is not None and (self._timer_at is None or when < self._timer_at):
            self._timer_at = when
            self.engine.set_timer(when)

    def _contain(self, sess: Session | None, what: str) -> None:
        """An exception escaped the core: log it (rate-limited), close the one
        connection it came from, keep serving everyone else."""
        if self.core.error_log.allow(time.monotonic()):  # one budget with the core's
            log.exception(
                "[%s] internal error in %s", sess.conn_id if sess is not None else "-", what
            )
        if sess is not None and sess.closing is None:
            try:
                self.core.disconnect(sess, "Internal error", clock())
            except Exception:
                log.exception("[%d] could not close after an internal error", sess.conn_id)
