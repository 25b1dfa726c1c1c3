"""IRC over WebSocket (the IRCv3 WebSocket transport) and the browser client's
files, for the listeners marked ``websocket = true``; the same for both engines.

Theory of operation
-------------------
A :class:`WebSocketLink` is one connection's HTTP/WebSocket state, sans-I/O: it
wraps the ``websockets`` library's :class:`~websockets.server.ServerProtocol`.
The driver feeds it the bytes the engine read (after TLS) and gets back IRC
lines; it hands it the core's output (CRLF-terminated lines) and gets back
WebSocket frames to write. It never touches a socket, a clock or a thread; its
owner (the driver, on the core's thread) calls it.

Before the upgrade there is no IRC session. The first request decides:

* an upgrade (``Upgrade`` header): the key and version are checked by
  ``websockets`` (400), the ``Origin`` against ``[websocket] origins`` (403;
  once the list is set, a request without ``Origin`` is refused too), and the
  subprotocol is the first of the client's offers that is ``text.ircv3.net`` or
  ``binary.ircv3.net``. Offers of neither are not refused: the upgrade goes on
  without a ``Sec-WebSocket-Protocol`` header (the spec's MAY) and the link
  uses ``default_subprotocol`` (a browser that insisted on its offer fails the
  connection itself). The client address is the peer's, or, when the peer is
  one of ``trusted_proxies``, the rightmost address of ``Forwarded`` (or else
  ``X-Forwarded-For``) that is not a trusted proxy. Only then does the driver
  open the IRC session, with that address;
* any other request is plain HTTP: ``GET``/``HEAD`` of the browser client's
  files (``web_client = true``), one response per connection, then close.
  Malformed HTTP gets 400.

After the upgrade each text or binary message is one IRC line. A trailing CR/LF
run is dropped (lenient with old clients); a CR or LF inside a message closes
the connection with 1007, as does a message that is not UTF-8 in text mode (the
``text.ircv3.net`` subprotocol, or none with ``default_subprotocol = "text"``),
whichever frame type carried it. In binary mode binary messages are any bytes
(the core answers lines that are not UTF-8 as it does for TCP). NUL goes to the
core like any byte, which refuses the line as it does on TCP. A message or
frame over ``max_message`` bytes closes with 1009, a protocol error with 1002.

Output: every line becomes one frame, text in text mode (a line that is not
UTF-8 has its bad sequences replaced by U+FFFD, as the spec allows), binary in
binary mode. The core's last output before a close (ERROR) is followed by a
close frame 1000.
"""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import logging
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CLOSED, CLOSING, CONNECTING, OPEN
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from relaychat.config import WebSocketConfig

__all__ = ["SUBPROTOCOLS", "WEB_ROOT", "WebRoot", "WebSocketLink", "client_address", "web_url"]

log = logging.getLogger("relaychat.websocket")
# the library's own per-connection lines ("connection open") are below WARNING
_wire_log = logging.getLogger("relaychat.websocket.wire")
_wire_log.setLevel(logging.WARNING)

TEXT = "text.ircv3.net"
BINARY = "binary.ircv3.net"
SUBPROTOCOLS = (TEXT, BINARY)

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # no leading dot: no "..", no hidden
_LINE_END = b"\r\n"
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")
_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE


# A final data frame's first byte (FIN + opcode), and the 2-byte headers of the
# lengths that fit in 7 bits (every IRC line without tags does).
_FIN_TEXT, _FIN_BINARY = 0x81, 0x82
_TEXT_HEADERS = [bytes((_FIN_TEXT, n)) for n in range(126)]
_BINARY_HEADERS = [bytes((_FIN_BINARY, n)) for n in range(126)]


def _frames(lines: list[bytes], small: list[bytes]) -> bytes:
    """``lines`` as unmasked final frames (RFC 6455 5.2); ``small``: the 2-byte
    headers of the frame type, by payload length."""
    first = small[0][0]
    parts: list[bytes] = []
    append = parts.append
    for line in lines:
        size = len(line)
        if size < 126:
            append(small[size])
        elif size < 65536:
            append(_HEADER_16.pack(first, 126, size))
        else:
            append(_HEADER_64.pack(first, 127, size))
        append(line)
    return b"".join(parts)


def _select(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The client's most preferred subprotocol we speak; None: go on without one."""
    for item in offered:
        if item in SUBPROTOCOLS:
            return item
    return None


class WebSocketLink:
    """One connection of a WebSocket listener (see the module's theory of operation).

    After :meth:`receive_data`: ``open`` (the upgrade is done: ``ip`` is the
    client's address), ``failed`` (the WebSocket is closing: the reason to give
    the core), ``eof`` (close the connection once the output is written).
    """

    __slots__ = (
        "protocol",
        "peer_ip",
        "ip",
        "secure",
        "certfp",
        "open",
        "text",
        "strict",
        "failed",
        "eof",
        "active",
        "_parts",
        "_part_text",
        "_settings",
        "_web",
    )

    def __init__(
        self, settings: WebSocketConfig, peer_ip: str, secure: bool, web: WebRoot | None
    ) -> None:
        origins: list[Origin | None] | None = None
        if settings.origins:
            origins = [Origin(item) for item in settings.origins]
        self.protocol = ServerProtocol(
            origins=origins,
            subprotocols=[Subprotocol(item) for item in SUBPROTOCOLS],
            select_subprotocol=_select,
            max_size=settings.max_message,
            logger=_wire_log,
        )
        self.peer_ip = peer_ip
        self.ip = peer_ip
        self.secure = secure
        self.certfp: str | None = None  # the TLS client certificate's, for the session
        self.open = False
        self.text = settings.default_subprotocol == "text"
        self.strict = self.text  # every message must be UTF-8
        self.failed: str | None = None
        self.eof = False
        self.active = False  # traffic since the last keepalive check
        self._parts: list[bytes] = []
        self._part_text = False
        self._settings = settings
        self._web = web if settings.web_client else None

    # --------------------------------------------------------------- input
    def receive_data(self, data: bytes) -> tuple[list[bytes], int]:
        """Feed bytes from the peer; the IRC lines they complete and the number
        of empty messages (which cost flood tokens like empty TCP lines)."""
        protocol = self.protocol
        protocol.receive_data(data)
        lines: list[bytes] = []
        blank = 0
        for event in protocol.events_received():
            if isinstance(event, Request):
                if not self._request(event):
                    break
                continue
            if not self.open or self.failed is not None:
                break
            if not isinstance(event, Frame):
                continue
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                if opcode is not _CONT:
                    self._part_text = opcode is _TEXT
                payload = bytes(event.data)  # bytes already: no copy
                if not event.fin:
                    self._parts.append(payload)
                    continue
                if self._parts:
                    self._parts.append(payload)
                    message = b"".join(self._parts)
                    self._parts.clear()
                else:
                    message = payload
                line = self._line(message)
                if line is None:
                    break
                if line:
                    lines.append(line)
                else:
                    blank += 1
            elif opcode is _CLOSE:
                self.failed = "Connection closed"
        self.active = True
        if self.open and self.failed is None and protocol.state is not OPEN:
            self.failed = _close_reason(protocol)
        if protocol.state is CONNECTING and protocol.writes == [b""]:
            self._bad_request()  # the request did not parse: only an EOF is queued
        return lines, blank

    def _line(self, message: bytes) -> bytes | None:
        """The IRC line a message holds, or None (refused: the link fails)."""
        if message[-1:] in (b"\n", b"\r"):
            message = message.rstrip(b"\r\n")
        if b"\r" in message or b"\n" in message:
            self._fail(CloseCode.INVALID_DATA, "one IRC line per message")
            return None
        if self.strict or self._part_text:
            try:
                message.decode()
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return None
        return message

    def _fail(self, code: int, reason: str) -> None:
        self.protocol.fail(code, reason)
        self.failed = _close_reason(self.protocol)

    # ------------------------------------------------------------- the upgrade
    def _request(self, request: Request) -> bool:
        """Answer the first request; True when the WebSocket is open."""
        protocol = self.protocol
        headers = request.headers
        if "Upgrade" not in headers:
            response = (
                self._web.respond(request.method, request.path)
                if self._web is not None
                else protocol.accept(request)  # 426 Upgrade Required
            )
            protocol.send_response(response)
            return False
        self.ip = client_address(self.peer_ip, headers, self._settings.trusted_proxies)
        response = protocol.accept(request)
        if response.status_code != 101:
            exc = protocol.handshake_exc
            log.info(
                "WebSocket upgrade from %s refused (%d): %s",
                self.ip,
                response.status_code,
                exc if exc is not None else response.reason_phrase,
            )
            protocol.send_response(response)
            return False
        chosen = protocol.subprotocol
        if chosen is not None:
            self.text = chosen == TEXT
            self.strict = self.text
        protocol.send_response(response)
        self.open = True
        return True

    def _bad_request(self) -> None:
        """Malformed HTTP: ``websockets`` only closes; say 400 first."""
        protocol = self.protocol
        log.info("HTTP request from %s refused (400): %s", self.peer_ip, protocol.handshake_exc)
        response = protocol.reject(400, "Bad request.\n")
        protocol.writes.insert(0, response.serialize())

    # -------------------------------------------------------------- output
    def send_lines(self, data: bytes, close: bool) -> bytes:
        """The core's output (CRLF-terminated lines) as frames, after what the
        link has pending; ``close``: a close frame 1000 follows.

        Data frames are built here, not by ``websockets`` (whose per-frame
        objects cost several times what the core spends on a relayed line): a
        server's frame is unmasked, unfragmented and uncompressed (no extension
        is negotiated), so it is a 2-byte header (4 or 10 for longer lines)
        and the line. Control frames (pong, ping, close) stay the library's and
        keep their order: what it has queued goes first."""
        protocol = self.protocol
        out = b""
        if data and protocol.state is OPEN:
            self.active = True
            lines = data.split(_LINE_END)
            lines.pop()
            if self.text:
                try:
                    data.decode()
                except UnicodeDecodeError:
                    lines = [line.decode("utf-8", "replace").encode() for line in lines]
                out = self.data_to_send() + _frames(lines, _TEXT_HEADERS)
            else:
                out = self.data_to_send() + _frames(lines, _BINARY_HEADERS)
        if close and protocol.state is OPEN:
            protocol.send_close(CloseCode.NORMAL_CLOSURE)
        return out + self.data_to_send()

    def data_to_send(self) -> bytes:
        writes = self.protocol.data_to_send()
        if not writes:
            return b""
        if writes[-1] == b"":
            self.eof = True
            writes.pop()
        return b"".join(writes)

    def has_output(self) -> bool:
        return bool(self.protocol.writes)

    def keepalive(self) -> bool:
        """A ping if nothing went either way since the last call; True when
        there is something to write."""
        if self.protocol.state is not OPEN:
            return False
        if not self.active:
            self.protocol.send_ping(b"relaychat")
        self.active = False
        return self.has_output()


def _close_reason(protocol: ServerProtocol) -> str:
    """The QUIT reason for a WebSocket that closed or failed."""
    if protocol.close_rcvd is not None and protocol.close_rcvd_then_sent is not False:
        return "Connection closed"  # the peer closed it
    sent = protocol.close_sent
    if sent is None or protocol.state not in (CLOSING, CLOSED):
        return "Connection closed"
    reason = f": {sent.reason}" if sent.reason else ""
    return f"WebSocket error {int(sent.code)}{reason}"


# ------------------------------------------------------------ client address
@functools.lru_cache(maxsize=8)
def _networks(
    items: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item) for item in items)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header hop: ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``,
    ``[2001:db8::1]:80``, quoted or not; None for anything else (``unknown``,
    an obfuscated name)."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _hops(headers: Headers) -> list[str]:
    """The forwarded-for chain, client first: RFC 7239 ``Forwarded`` if present,
    else ``X-Forwarded-For``."""
    forwarded = headers.get_all("Forwarded")
    if forwarded:
        hops = []
        for element in ",".join(forwarded).split(","):
            value = ""
            for pair in element.split(";"):
                name, _, val = pair.partition("=")
                if name.strip().lower() == "for":
                    value = val
            hops.append(value)
        return hops
    chain = headers.get_all("X-Forwarded-For")
    return ",".join(chain).split(",") if chain else []


def client_address(peer: str, headers: Headers, trusted_proxies: tuple[str, ...]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy; then the
    rightmost hop of the forwarded chain that is not a trusted proxy (all
    trusted: the leftmost). A hop that is not an address ends the walk at the
    last good one (ultimately the peer)."""
    if not trusted_proxies:
        return peer
    nets = _networks(trusted_proxies)

    def trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return addr is not None and any(addr in net for net in nets)

    if not trusted(_address(peer)):
        return peer
    client = peer
    for hop in reversed(_hops(headers)):
        addr = _address(hop)
        if addr is None:
            break
        client = str(addr)
        if not trusted(addr):
            break
    return client


# ------------------------------------------------------------- the web client
class WebRoot:
    """The browser client's static files: ``GET``/``HEAD`` of ``/`` (index.html)
    and of files by name under ``directory`` (subdirectories too). Names are
    checked segment by segment (letters, digits, ``._-``, no leading dot), so no
    ``..``, no hidden file, no escape by symlink; anything else is 404. Files
    are read at each request (small, and edits show at once)."""

    def __init__(self, directory: Path = WEB_ROOT) -> None:
        self.directory = directory.resolve()

    def respond(self, method: str, target: str) -> Response:
        if method not in ("GET", "HEAD"):
            response = _plain(405, "Method Not Allowed", "Method not allowed.\n")
            response.headers["Allow"] = "GET, HEAD"
            return response
        path = target.partition("?")[0].partition("#")[0]
        body = self._read(path)
        if body is None:
            return _plain(404, "Not Found", "Not found.\n", head=method == "HEAD")
        data, content_type = body
        headers = _common_headers()
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(len(data))
        headers["Cache-Control"] = "no-cache"
        headers["Content-Security-Policy"] = CSP
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        return Response(200, "OK", headers, b"" if method == "HEAD" else data)

    def _read(self, path: str) -> tuple[bytes, str] | None:
        if not path.startswith("/"):
            return None
        name = path[1:] or "index.html"
        parts = name.split("/")
        if not all(_SEGMENT.fullmatch(part) for part in parts):
            return None
        file = self.directory.joinpath(*parts)
        try:
            real = file.resolve()
            if not real.is_relative_to(self.directory) or not real.is_file():
                return None
            data = real.read_bytes()
        except OSError:
            return None
        return data, CONTENT_TYPES.get(real.suffix.lower(), "application/octet-stream")


def _common_headers() -> Headers:
    return Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close")])


def _plain(status: int, phrase: str, text: str, head: bool = False) -> Response:
    body = text.encode()
    headers = _common_headers()
    headers["Content-Type"] = "text/plain; charset=utf-8"
    headers["Content-Length"] = str(len(body))
    headers["X-Content-Type-Options"] = "nosniff"
    return Response(status, phrase, headers, b"" if head else body)


def web_url(address: str, port: int, tls: bool) -> str:
    """The browser client's address for a listener (a wildcard shows as localhost)."""
    host = "localhost" if address in ("", "0.0.0.0", "::") else address
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}/"
