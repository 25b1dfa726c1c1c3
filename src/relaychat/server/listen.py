"""Listening sockets for the configured listeners, the same for both engines.

``::`` is bound dual-stack (``IPV6_V6ONLY`` off), so one listener serves IPv4 and
IPv6 clients; the core shows IPv4 clients as ``1.2.3.4``, not ``::ffff:1.2.3.4``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaychat.config import Config
    from relaychat.server.tls import TlsListener

__all__ = [
    "BindError",
    "listen_addresses",
    "listener_kind",
    "log_web_clients",
    "open_listeners",
    "tune_socket",
]

log = logging.getLogger("relaychat")

# The kernel's send buffer is capped so that SendQ is the real bound: left to
# autotuning, Linux lets one stuck reader pin up to tcp_wmem's maximum (4 MiB).
SOCKET_SNDBUF = 128 * 1024


class BindError(OSError):
    """A listener could not be bound; ``address`` says which."""

    def __init__(self, address: str, port: int, exc: OSError) -> None:
        super().__init__(exc.errno, exc.strerror)
        self.address = address
        self.port = port


def listen_addresses(config: Config) -> list[tuple[str, int]]:
    return [(item.address, item.port) for item in config.listen]


def open_listeners(config: Config, backlog: int = 4096) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets, one per listener; all or none."""
    socks: list[socket.socket] = []
    try:
        for address, port in listen_addresses(config):
            socks.append(_bind(address, port, backlog))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def _bind(address: str, port: int, backlog: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise BindError(address, port, OSError(exc.errno, exc.strerror)) from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(address, port, exc) from None
    return sock


def tune_socket(sock: socket.socket) -> None:
    """TCP_NODELAY (lines go out as soon as a turn ends) and a bounded send buffer."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SNDBUF)
    except OSError:
        pass


def listener_kind(tls: bool, websocket: bool) -> str:
    """What the "listening on" log line says after the port."""
    return (" (TLS)" if tls else "") + (" (WebSocket)" if websocket else "")


def log_web_clients(
    config: Config,
    socks: Sequence[socket.socket],
    tls: Sequence[TlsListener | None],
    websocket: Sequence[bool],
) -> None:
    """``web client: http://127.0.0.1:8097/`` for each WebSocket listener (when
    the browser client is served), once the ports are bound."""
    from relaychat.server.websocket import web_url

    if not config.websocket.web_client:
        return
    for sock, tls_state, ws, listener in zip(socks, tls, websocket, config.listen, strict=True):
        if ws:
            url = web_url(listener.address, sock.getsockname()[1], tls_state is not None)
            log.info("web client: %s", url)
