"""Test helpers for the WebSocket listeners: servers with one, and clients this
project did not write (the ``websockets`` library's sync client, and its sans-I/O
``ClientProtocol`` over a raw socket for a client that stops reading).

A server with a WebSocket listener, in this process (both engines)::

    server = run_config(make_ws_config(engine))      # or the ``ws_server`` fixture
    ws = WsClient(ws_port(server))                    # ws://127.0.0.1:PORT/
    tcp = connect(server, "nick")                      # the IRC listener: server.port

As a process: ``spawn(engine, "--web-port", "0")`` and ``web_url_of(server)``.
"""

from __future__ import annotations

import dataclasses
import re
import select
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from ircutil import DEFAULT_TIMEOUT, STARTUP_TIMEOUT, Server, make_config
from relaychat.config import Config, ListenConfig, WebSocketConfig
from relaychat.protocol.message import Message, parse_message

TEXT = "text.ircv3.net"
BINARY = "binary.ircv3.net"


def make_ws_config(
    engine: str = "loop",
    websocket: WebSocketConfig | None = None,
    tls: tuple[Path, Path] | None = None,
    **limits: object,
) -> Config:
    """``make_config`` (an IRC listener on 127.0.0.1 port 0, quiet logs, no flood
    control, an in-memory store) plus a WebSocket listener on 127.0.0.1 port 0
    (the second listener: ``ws_port(server)``); ``tls=(cert, key)`` makes it wss://."""
    cfg = make_config(engine, **limits)
    ws = ListenConfig("127.0.0.1", 0, websocket=True)
    if tls is not None:
        ws = dataclasses.replace(ws, tls=True, cert=str(tls[0]), key=str(tls[1]))
    return dataclasses.replace(
        cfg, listen=(*cfg.listen, ws), websocket=websocket or WebSocketConfig()
    )


def ws_port(server: Any) -> int:
    """The WebSocket listener's port of a ``run_config(make_ws_config(...))`` server."""
    port: int = server.server.ports[1]
    return port


WEB_URL = re.compile(r"web client: (\S+)")


def web_url_of(server: Server, timeout: float = STARTUP_TIMEOUT) -> str:
    """The browser client's address a ``relaychat serve`` process logged."""
    deadline = time.monotonic() + timeout
    while True:
        found = WEB_URL.findall(server.stderr())
        if found:
            return str(found[0])
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no web client address logged:\n{server.stderr()}")
        time.sleep(0.05)  # polling a condition under a deadline


class WsClient:
    """An IRC client over WebSocket, on the ``websockets`` sync client; the same
    ``send``/``expect``/``register``/``join`` as ``RawClient``. ``kinds`` records
    each received message's type (``str``: a text frame, ``bytes``: binary)."""

    def __init__(
        self,
        port: int,
        subprotocols: list[str] | None = None,
        *,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        path: str = "/",
    ) -> None:
        scheme = "wss" if tls is not None else "ws"
        # entered as a context manager: the form every websockets version takes
        self.ws: ClientConnection = connect(
            f"{scheme}://127.0.0.1:{port}{path}",
            subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            ssl=tls,
            open_timeout=DEFAULT_TIMEOUT,
            proxy=None,
            compression=None,
        ).__enter__()
        self.lines: list[Message] = []
        self.kinds: list[type] = []
        self.closed = False
        self.nick: str | None = None

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    def send(self, line: str | bytes, text: bool | None = None) -> None:
        self.ws.send(line, text=text)

    def _read(self, timeout: float) -> bool:
        if self.closed:
            return False
        try:
            data = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return False
        except ConnectionClosed:
            self.closed = True
            return False
        self.kinds.append(type(data))
        raw = data if isinstance(data, str) else data.decode("utf-8", "replace")
        assert "\r" not in raw and "\n" not in raw, f"a frame held a line break: {raw!r}"
        self.lines.append(parse_message(raw))
        return True

    def expect(
        self, pred: Callable[[Message], bool] | str, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        return self.take_until(pred, timeout)[-1]

    def take_until(
        self, pred: Callable[[Message], bool] | str, timeout: float = DEFAULT_TIMEOUT
    ) -> list[Message]:
        check = (lambda m: m.command == pred) if isinstance(pred, str) else pred
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.lines):
                if check(msg):
                    taken = self.lines[: i + 1]
                    del self.lines[: i + 1]
                    return taken
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(
                    f"no matching message within {timeout}s; got {[str(m) for m in self.lines]}"
                )
            self._read(min(left, 0.5))

    def sync(self, token: str = "sync") -> list[Message]:
        self.send(f"PING :{token}")
        return self.take_until(lambda m: m.command == "PONG" and m.params[-1:] == [token])[:-1]

    def register(self, nick: str) -> Message:
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :WebSocket {nick}")
        self.nick = nick
        welcome = self.expect("001")
        self.expect("376")
        return welcome

    def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        self.expect(lambda m: m.command == "366" and m.params[1] == channel)

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Read until the server closes; the close code it sent."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError("server did not close the WebSocket")
            self._read(0.2)
        rcvd = self.ws.protocol.close_rcvd
        return None if rcvd is None else int(rcvd.code)

    def close(self) -> None:
        self.ws.close()
        self.closed = True


class WsRawClient:
    """A WebSocket client on a raw socket, driven by ``websockets``' sans-I/O
    ``ClientProtocol``: it reads only when asked (``rcvbuf``: a small receive
    buffer, so a client that stops reading is not hidden by the kernel), and
    sees control frames (pings)."""

    def __init__(
        self, port: int, subprotocols: tuple[str, ...] = (TEXT,), rcvbuf: int | None = None
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.protocol = ClientProtocol(
            parse_uri(f"ws://127.0.0.1:{port}/"),
            subprotocols=[Subprotocol(p) for p in subprotocols],
        )
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.frames: list[Frame] = []
        self.closed = False
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while True:
            events = self._read(deadline - time.monotonic())
            if any(isinstance(e, Response) for e in events):
                break
            assert time.monotonic() < deadline and not self.closed, "no handshake response"
        assert self.protocol.handshake_exc is None, self.protocol.handshake_exc

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def _read(self, timeout: float) -> list[Any]:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.closed = True
            self.protocol.receive_eof()
        events = self.protocol.events_received()
        self.frames += [e for e in events if isinstance(e, Frame)]
        self._flush()
        return events

    def send(self, line: str) -> None:
        self.protocol.send_text(line.encode())
        self._flush()

    def send_many(self, lines: list[str]) -> None:
        """One message per line, written at once."""
        for line in lines:
            self.protocol.send_text(line.encode())
        self._flush()

    def lines(self) -> list[str]:
        return [
            bytes(f.data).decode() for f in self.frames if f.opcode in (Opcode.TEXT, Opcode.BINARY)
        ]

    def wait_for(self, pred: Callable[[Frame], bool], timeout: float = DEFAULT_TIMEOUT) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames:
                if pred(frame):
                    return frame
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"no such frame within {timeout}s")
            self._read(min(left, 0.5))

    def wait_line(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.wait_for(lambda f: f.opcode is Opcode.TEXT and text in bytes(f.data).decode(), timeout)

    def close(self) -> None:
        self.sock.close()
        self.closed = True
