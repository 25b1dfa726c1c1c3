"""Listening sockets for both engines, one or more per ``[[listen]]`` table.

``bind_listeners`` binds and listens on every configured address before it
returns, or closes what it had bound and raises :class:`ListenError` naming the
listener that failed. A host name binds every address it resolves to. The IPv6
wildcard ``::`` has IPV6_V6ONLY off, so it serves IPv4 clients too; ``peer_ip``
shows those clients by their IPv4 address, as a ``0.0.0.0`` listener would.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

from relaychat.config import ListenConfig

__all__ = ["ListenError", "bind_listeners", "format_address", "peer_ip"]


class ListenError(OSError):
    """Binding ``listener`` failed; ``errno``/``strerror`` are the cause's."""

    def __init__(self, listener: ListenConfig, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.listener = listener

    @property
    def reason(self) -> str:
        if self.errno == errno.EADDRINUSE:
            return "address already in use"
        return str(self.strerror)

    def __str__(self) -> str:
        return f"cannot listen on {self.listener}: {self.reason}"


def bind_listeners(listen: Sequence[ListenConfig], backlog: int) -> list[socket.socket]:
    """Bound, listening sockets for every listener, in order."""
    socks: list[socket.socket] = []
    for listener in listen:
        try:
            socks.extend(_bind(listener, backlog))
        except OSError as exc:
            for sock in socks:
                sock.close()
            raise ListenError(listener, exc) from exc
    return socks


def _bind(listener: ListenConfig, backlog: int) -> list[socket.socket]:
    infos = socket.getaddrinfo(
        listener.address, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
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
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def peer_ip(peername: Any) -> str:
    """A client's IP address from ``getpeername()``; an IPv4 client of a ``::``
    listener (``::ffff:192.0.2.1``) shows as its IPv4 address."""
    if not isinstance(peername, tuple):
        return "unknown"
    host = str(peername[0])
    if host.startswith("::ffff:"):
        with contextlib.suppress(ValueError):
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
            if mapped is not None:
                return str(mapped)
    return host


def format_address(sock: socket.socket) -> str:
    """``127.0.0.1:6667`` or ``[::]:6667``, for log lines."""
    host, port = sock.getsockname()[:2]
    return str(ListenConfig(host, port))
