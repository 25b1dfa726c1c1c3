"""Test helpers: a raw line-based IRC client over a real socket, and servers on port 0.

Everything waits for a condition with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from relaychat.config import Config, LimitsConfig, ListenConfig, ServerConfig, StoreConfig
from relaychat.protocol.message import Message, parse_message

DEFAULT_TIMEOUT = 10.0
SRC = Path(__file__).resolve().parent.parent / "src"
STARTUP_TIMEOUT = 15.0


def child_env() -> dict[str, str]:
    """The environment for child Pythons: this checkout's ``src`` on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


_CHILD_CWD: tempfile.TemporaryDirectory[str] | None = None


def child_cwd() -> str:
    """The working directory for child servers: a temporary one, so the store's
    default file (relaychat.db) is never written into the checkout."""
    global _CHILD_CWD
    if _CHILD_CWD is None:
        _CHILD_CWD = tempfile.TemporaryDirectory(prefix="relaychat-test-")
    return _CHILD_CWD.name


def free_port() -> int:
    """A port that was free a moment ago (callers retry if it is taken meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(
    proc: subprocess.Popen[bytes], port: int, timeout: float = STARTUP_TIMEOUT
) -> bool:
    """True once the port accepts a connection; False if the process exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)  # polling a condition under a deadline
    raise AssertionError(f"server did not listen on port {port} within {timeout}s")


def make_config(engine: str = "loop", **limits: object) -> Config:
    """Port 0 on 127.0.0.1, quiet logs; flood control off unless a test sets it; no
    address exempt from the per-IP limit (the tests connect from loopback); an
    in-memory store (no relaychat.db written by a test)."""
    lim = {"flood_rate": 0.0, "max_connections_per_ip": 0, "connection_limit_exempt": (), **limits}
    return Config(
        server=ServerConfig(engine=engine, log_level="WARNING"),
        listen=(ListenConfig("127.0.0.1", 0),),
        limits=dataclasses.replace(LimitsConfig(), **lim),  # type: ignore[arg-type]
        store=StoreConfig(path=":memory:"),
    )


class RawClient:
    """A line-based client over a real TCP socket, for driving the server in tests.

    ``rcvbuf``: a receive buffer size set before connecting (a small one keeps
    the kernel from hiding a client that stops reading). ``source``: the local
    address to connect from (any of 127.0.0.0/8 works on loopback: a test's
    "other hosts"). ``keep_raw``: keep every byte received in ``raw``, for tests
    about the byte stream itself. ``tls``: a client context to shake hands with
    (the handshake is done when the constructor returns).
    """

    raw: bytearray | None = None

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = DEFAULT_TIMEOUT,
        *,
        rcvbuf: int | None = None,
        source: str | None = None,
        keep_raw: bool = False,
        tls: ssl.SSLContext | None = None,
    ):
        if rcvbuf is None and source is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                if rcvbuf is not None:
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                if source is not None:
                    self.sock.bind((source, 0))
                self.sock.settimeout(timeout)
                self.sock.connect((host, port))
            except OSError:
                self.sock.close()
                raise
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except OSError:
                self.sock.close()
                raise
        if keep_raw:
            self.raw = bytearray()
        self.buf = b""
        self.lines: list[Message] = []  # received, not yet consumed by expect()
        self.closed = False
        self.nick: str | None = None

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode() + b"\r\n"
        self.sock.sendall(data)

    def _read(self, timeout: float) -> bool:
        if self.closed:
            return False
        buffered = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not buffered:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        if self.raw is not None:
            self.raw += data
        self.buf += data
        *complete, self.buf = self.buf.split(b"\r\n")
        for raw in complete:
            if raw:
                self.lines.append(parse_message(raw.decode("utf-8", "replace")))
        return True

    def poll(self) -> bool:
        """Read what has arrived, without waiting; whether anything had."""
        return self._read(0)

    def expect(
        self, pred: Callable[[Message], bool] | str, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """The first received message matching ``pred`` (a command name, or a
        predicate); the messages before it are consumed too."""
        return self.take_until(pred, timeout)[-1]

    def take_until(
        self, pred: Callable[[Message], bool] | str, timeout: float = DEFAULT_TIMEOUT
    ) -> list[Message]:
        """The received messages up to and including the first one matching
        ``pred``, all consumed."""
        check = (lambda m: m.command == pred) if isinstance(pred, str) else pred
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.lines):
                if check(msg):
                    taken = self.lines[: i + 1]
                    del self.lines[: i + 1]
                    return taken
            left = deadline - time.monotonic()
            if left <= 0 or (self.closed and not self._read(0)):
                raise AssertionError(
                    f"no matching message within {timeout}s; got {[str(m) for m in self.lines]}"
                )
            self._read(min(left, 0.5))

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError("server did not close the connection")
            self._read(0.2)

    def sync(self, token: str = "sync", timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """PING the server and wait for its PONG: every message received before
        it (consumed). The server answers in order, so whatever it sent this
        client before handling the PING is in the list."""
        self.send(f"PING :{token}")
        return self.take_until(lambda m: m.command == "PONG" and m.params[-1:] == [token], timeout)[
            :-1
        ]

    def register(
        self, nick: str, caps: tuple[str, ...] = (), timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        if caps:
            self.send("CAP LS 302")
            self.send("CAP REQ :" + " ".join(caps))
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :Test {nick}")
        if caps:
            self.send("CAP END")
        self.nick = nick
        deadline = time.monotonic() + timeout
        welcome = self.expect("001", timeout)
        self.expect("376", max(0.0, deadline - time.monotonic()))
        return welcome

    def sasl_plain(self, nick: str, account: str, password: str, caps: tuple[str, ...] = ()) -> str:
        """Register with SASL PLAIN (``CAP REQ :sasl`` and ``caps``, NICK, USER,
        AUTHENTICATE): the numeric that ends the exchange, 903 (logged in) or 904.
        ``CAP END`` is left to the caller."""
        self.send("CAP LS 302")
        self.send("CAP REQ :" + " ".join(["sasl", *caps]))
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :SASL {nick}")
        self.expect(lambda m: m.command == "CAP" and m.params[1] == "ACK")
        self.send("AUTHENTICATE PLAIN")
        assert self.expect("AUTHENTICATE").params == ["+"]
        creds = base64.b64encode(f"\0{account}\0{password}".encode()).decode()
        self.send("AUTHENTICATE " + creds)
        return self.expect(lambda m: m.command in ("903", "904")).command

    def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        self.expect(lambda m: m.command == "366" and m.params[1] == channel)

    def close(self) -> None:
        self.sock.close()
        self.closed = True


def wait_for(cond: Callable[[], object], timeout: float = DEFAULT_TIMEOUT, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.01)


def require_tool(name: str) -> str:
    """The path of a Debian tool a test drives; skipped when missing, except in CI
    (RELAYCHAT_REQUIRE_INTEROP=1) where a missing tool fails the test."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("RELAYCHAT_REQUIRE_INTEROP"):
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, nick: str, caps: tuple[str, ...] = ()) -> RawClient:
        c = RawClient(self.port)
        c.register(nick, caps)  # with caps: CAP LS 302, so cap-notify too
        return c

    def exit_code_within(self, seconds: float) -> int:
        try:
            return self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running {seconds}s later; stderr:\n{self.stderr()}"
            ) from None
