"""Listening sockets for the configured ``[[listen]]`` tables, the same for both engines.

``open_listeners`` binds every listener before it returns, or closes what it had
bound and raises :class:`BindError` naming the listener that failed. A host name
binds every address it resolves to. ``::`` is bound dual-stack (IPV6_V6ONLY off),
so one listener serves IPv4 and IPv6 clients; ``peer_ip`` shows those IPv4
clients as ``192.0.2.1``, not ``::ffff:192.0.2.1``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaychat.config import Config

__all__ = ["BindError", "open_listeners", "peer_ip"]


class BindError(OSError):
    """A listener could not be bound; ``address`` and ``port`` say which, and
    ``errno``/``strerror`` why."""

    def __init__(self, address: str, port: int, exc: OSError) -> None:
        super().__init__(exc.errno, exc.strerror or str(exc))
        self.address = address
        self.port = port


def open_listeners(config: Config, backlog: int = 4096) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every listener; all or none."""
    socks: list[socket.socket] = []
    for listener in config.listen:
        try:
            socks.extend(_bind(listener.address, listener.port, backlog))
        except OSError as exc:
            for sock in socks:
                sock.close()
            raise BindError(listener.address, listener.port, exc) from None
    return socks


def _bind(address: str, port: int, backlog: int) -> list[socket.socket]:
    infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen: set[Any] = set()
    try:
        for family, kind, proto, _, addr in infos:
            if addr in seen:
                continue
            seen.add(addr)
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                wildcard = ipaddress.ip_address(addr[0]).is_unspecified
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if wildcard else 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def peer_ip(peername: Any) -> str:
    """A client's IP address from ``getpeername()``; an IPv4 client of a ``::``
    listener shows as its IPv4 address, as a ``0.0.0.0`` listener would show it."""
    if not isinstance(peername, tuple):
        return "unknown"
    host = str(peername[0])
    if host.startswith("::ffff:"):
        with contextlib.suppress(ValueError):
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
            if mapped is not None:
                return str(mapped)
    return host
