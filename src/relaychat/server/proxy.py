"""The PROXY protocol (HAProxy's, versions 1 and 2), sans-I/O.

Theory of operation
-------------------
A listener with a ``proxy`` list sits behind trusted proxies (HAProxy, a
cloud load balancer): every connection on it must come from one of them and
must start with a PROXY header, which says where the client really connects
from. The engines check the peer with :class:`TrustedProxies` at accept, then
read the header with a :class:`ProxyParser` (before any TLS: a TLS listener
behind a proxy gets the header, then the ClientHello) under a deadline, and
only then start the connection proper with the header's source address.

:meth:`ProxyParser.feed` takes bytes as they come and answers ``None`` (more
needed), a :class:`ProxyHeader` (with the bytes that followed the header in the
same read: IRC lines or the ClientHello, never lost) or raises
:class:`ProxyHeaderError` with a reason for the log. The version is told by the
first bytes; a stream that cannot be either one's prefix is refused at once, so
a client that speaks IRC straight away is refused at its first read.
:meth:`ProxyParser.wanted` says how many bytes may be read without going past
the header, for an engine that reads exactly the header and leaves the rest
in the socket (the threads engine: its TLS reads from the socket itself).

Version 1: one ASCII line of at most 107 bytes, ``PROXY TCP4|TCP6 SRC DST
SPORT DPORT\\r\\n``, or ``PROXY UNKNOWN ...\\r\\n`` (keep the proxy's own
address). Version 2: a 16-byte binary head (signature, version and command,
family and transport, length) and ``length`` bytes of addresses and TLVs; the
LOCAL command (the proxy's own health check), the UNSPEC and UNIX families keep
the proxy's address. TLVs are checked to be well formed and skipped; the
length is bounded (:data:`V2_MAX_LENGTH`).

Nothing here does I/O; one parser belongs to one connection and one thread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "V1_MAX_LENGTH",
    "V2_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyParser",
    "TrustedProxies",
]

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the spec's bound, "\r\n" included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEAD = 16  # signature, version/command, family/transport, length
V2_MAX_LENGTH = 2048  # address block and TLVs; the spec allows 65535, we need far less
_MIN_HEADER = len(b"PROXY UNKNOWN\r\n")  # the shortest header of either version: 15 bytes

# version 2: (family << 4 | transport) -> address bytes, for the families with addresses
_V2_INET_STREAM = 0x11
_V2_INET6_STREAM = 0x21
_V2_ADDRESS_LENGTH = {_V2_INET_STREAM: 12, _V2_INET6_STREAM: 36}
_V2_FAMILIES = {0x0: "UNSPEC", 0x1: "INET", 0x2: "INET6", 0x3: "UNIX"}
_V2_TRANSPORTS = {0x0: "UNSPEC", 0x1: "STREAM", 0x2: "DGRAM"}
_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_V1_FAMILIES: dict[bytes, type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]] = {
    b"TCP4": ipaddress.IPv4Address,
    b"TCP6": ipaddress.IPv6Address,
}


class ProxyHeaderError(Exception):
    """The peer sent something that is not a valid PROXY header; ``reason``
    says what, for the log line (it never holds the peer's raw bytes)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``source`` is the client's address (``"203.0.113.7"``,
    ``"2001:db8::1"``) and ``port`` its port, or both None: keep the address
    of the connection itself (v1 UNKNOWN, v2 LOCAL, UNSPEC or UNIX).
    ``leftover``: the bytes after the header, the connection's first data."""

    version: int
    source: str | None
    port: int | None
    leftover: bytes = b""


class ProxyParser:
    """One connection's PROXY header, fed in pieces (see the module doc)."""

    __slots__ = ("_buf", "_error", "_done", "max_v2_length", "received")

    def __init__(self, max_v2_length: int = V2_MAX_LENGTH) -> None:
        self.max_v2_length = max_v2_length
        self.received = 0  # bytes fed so far
        self._buf = b""
        self._error: ProxyHeaderError | None = None
        self._done = False

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add ``data``; the header once complete, else None. Raises
        :class:`ProxyHeaderError` for a bad one (and again on every later
        call); feeding after the header was returned is a programming error."""
        if self._done:
            raise RuntimeError("the PROXY header is already complete")
        if self._error is not None:
            raise self._error
        self.received += len(data)
        self._buf += data
        try:
            header = self._parse()
        except ProxyHeaderError as exc:
            self._error = exc
            self._buf = b""
            raise
        if header is not None:
            self._done = True
            self._buf = b""
        return header

    def wanted(self) -> int:
        """How many more bytes can be read without reading past the header
        (at least 1 while it is incomplete)."""
        buf = self._buf
        if len(buf) < _MIN_HEADER:
            return _MIN_HEADER - len(buf)
        if buf.startswith(V2_SIGNATURE):
            if len(buf) < V2_HEAD:
                return V2_HEAD - len(buf)
            return max(1, V2_HEAD + int.from_bytes(buf[14:16], "big") - len(buf))
        return 1 if buf.endswith(b"\r") else 2  # v1: at least the "\r\n" to come

    # ----------------------------------------------------------- internals
    def _parse(self) -> ProxyHeader | None:
        buf = self._buf
        if buf[:1] == V1_PREFIX[:1]:
            return self._parse_v1(buf)
        if buf[:1] == V2_SIGNATURE[:1]:
            return self._parse_v2(buf)
        if buf:
            raise ProxyHeaderError("not a PROXY header")
        return None

    def _parse_v1(self, buf: bytes) -> ProxyHeader | None:
        if not V1_PREFIX.startswith(buf[:6]):
            raise ProxyHeaderError("not a PROXY header")
        end = buf.find(b"\r\n", 0, V1_MAX_LENGTH)
        if end < 0:
            if len(buf) >= V1_MAX_LENGTH:
                raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes")
            if b"\n" in buf or b"\r" in buf[:-1]:
                raise ProxyHeaderError("PROXY v1 line with a bare CR or LF")
            return None
        line, leftover = buf[:end], buf[end + 2 :]
        fields = line.split(b" ")
        if len(fields) >= 2 and fields[1] == b"UNKNOWN":
            return ProxyHeader(1, None, None, leftover)  # the rest of the line is ignored
        if len(fields) != 6:
            raise ProxyHeaderError("PROXY v1 line without 6 fields")
        family = _V1_FAMILIES.get(fields[1])
        if family is None:
            raise ProxyHeaderError("PROXY v1 with an unknown protocol (not TCP4, TCP6, UNKNOWN)")
        source = _v1_address(fields[2], family)
        _v1_address(fields[3], family)
        port = _v1_port(fields[4])
        _v1_port(fields[5])
        return ProxyHeader(1, source, port, leftover)

    def _parse_v2(self, buf: bytes) -> ProxyHeader | None:
        if not buf.startswith(V2_SIGNATURE):
            if V2_SIGNATURE.startswith(buf):
                return None
            raise ProxyHeaderError("not a PROXY header")
        if len(buf) < V2_HEAD:
            return None
        version, command = buf[12] >> 4, buf[12] & 0x0F
        if version != 2:
            raise ProxyHeaderError(f"PROXY v2 header with version {version}")
        if command not in (_V2_LOCAL, _V2_PROXY):
            raise ProxyHeaderError(f"PROXY v2 header with an unknown command {command}")
        family, transport = buf[13] >> 4, buf[13] & 0x0F
        if family not in _V2_FAMILIES or transport not in _V2_TRANSPORTS:
            raise ProxyHeaderError(f"PROXY v2 header with an unknown family {buf[13]:#04x}")
        length = int.from_bytes(buf[14:16], "big")
        if length > self.max_v2_length:
            raise ProxyHeaderError(
                f"PROXY v2 header of {length} bytes (more than {self.max_v2_length})"
            )
        end = V2_HEAD + length
        if len(buf) < end:
            return None
        body, leftover = buf[V2_HEAD:end], buf[end:]
        if command == _V2_LOCAL:
            return ProxyHeader(2, None, None, leftover)  # the proxy's own connection
        if transport == 0x2:
            raise ProxyHeaderError("PROXY v2 header for a datagram (DGRAM) connection")
        need = _V2_ADDRESS_LENGTH.get(buf[13], 0)
        if family == 0x3:
            need = 216  # two sun_path of 108 bytes
        if length < need:
            raise ProxyHeaderError(
                f"PROXY v2 {_V2_FAMILIES[family]} header too short for its addresses"
            )
        _check_tlvs(body[need:])
        if buf[13] not in _V2_ADDRESS_LENGTH:
            return ProxyHeader(2, None, None, leftover)  # UNSPEC or UNIX: no IP address
        size = 4 if buf[13] == _V2_INET_STREAM else 16
        address = _client_address(ipaddress.ip_address(body[:size]))
        port = int.from_bytes(body[2 * size : 2 * size + 2], "big")
        return ProxyHeader(2, address, port, leftover)


def _client_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """``::ffff:1.2.3.4`` is the IPv4 client ``1.2.3.4``."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _v1_address(
    raw: bytes, family: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
) -> str:
    try:
        text = raw.decode("ascii")
        if not text.isascii() or not text or "%" in text:  # no IPv6 zone ids
            raise ValueError
        return _client_address(family(text))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError("PROXY v1 line with an invalid address") from None


def _v1_port(raw: bytes) -> int:
    if not (1 <= len(raw) <= 5) or not raw.isdigit() or (raw[:1] == b"0" and len(raw) > 1):
        raise ProxyHeaderError("PROXY v1 line with an invalid port")
    port = int(raw)
    if port > 65535:
        raise ProxyHeaderError("PROXY v1 line with an invalid port")
    return port


def _check_tlvs(data: bytes) -> None:
    """TLVs (type, 2-byte length, value) must fill ``data`` exactly; skipped."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 3:
            raise ProxyHeaderError("PROXY v2 header with a truncated TLV")
        pos += 3 + int.from_bytes(data[pos + 1 : pos + 3], "big")
        if pos > len(data):
            raise ProxyHeaderError("PROXY v2 header with a truncated TLV")


class TrustedProxies:
    """A listener's ``proxy`` list: the addresses and networks whose
    connections may (and must) carry a PROXY header. An IPv4-mapped IPv6 peer
    (a dual-stack listener's IPv4 client) counts as its IPv4 address."""

    __slots__ = ("networks",)

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(n) for n in networks)

    def trusts(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)
