"""Fixtures for the client tests, next to the shared ones in ``tests/conftest.py``.

Most tests use the shared ``irc_server`` (relaychat in this process, both engines).
Tests that need the server to die under the client use ``server_process``: ``python -m
relaychat serve`` as a subprocess on a free loopback port, which ``kill()`` SIGKILLs.
``RELAYCHAT_TEST_SERVER=miniircd`` or ``=ngircd`` runs those against servers this
project did not write instead.

``scripted_peer`` is a listening loopback socket that a test drives line by line,
for what a real server will not do on demand (PING now, multi-line CAP LS, refusal).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import ircutil
from ircutil import free_port, wait_listening


def _server_command(kind: str, port: int, workdir: Path) -> list[str]:
    if kind == "relaychat":
        cmd = [sys.executable, "-m", "relaychat", "serve", "--host", "127.0.0.1"]
        return [*cmd, "--port", str(port)]
    if kind == "miniircd":
        exe = shutil.which("miniircd") or str(Path(sys.executable).parent / "miniircd")
        return [exe, "--setuid", "root", "--listen", "127.0.0.1", "--ports", str(port)]
    if kind == "ngircd":
        conf = workdir / "ngircd.conf"
        conf.write_text(
            "[Global]\nName = irc.test\nInfo = test\nListen = 127.0.0.1\n"
            f"Ports = {port}\nMotdPhrase = test\nPidFile = {workdir}/ngircd.pid\n"
            "ServerUID = root\nServerGID = root\n"
            "[Limits]\nMaxConnectionsIP = 0\n[Options]\nPAM = no\nIdent = no\nDNS = no\n"
        )
        return ["/usr/sbin/ngircd", "--nodaemon", "--config", str(conf)]
    raise ValueError(f"unknown RELAYCHAT_TEST_SERVER {kind!r}")


@dataclass
class ServerProcess:
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def kill(self) -> None:
        """SIGKILL the server and reap it: every client sees its connection drop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    kind = os.environ.get("RELAYCHAT_TEST_SERVER", "relaychat")
    if kind == "relaychat":
        try:
            import relaychat.cli  # noqa: F401
        except ImportError as exc:
            pytest.skip(f"relaychat server not available: {exc}")
    for _ in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        log = (tmp_path / f"server-{port}.log").open("wb")
        proc = subprocess.Popen(
            _server_command(kind, port, tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ircutil.child_env(),
            cwd=ircutil.child_cwd(),
        )
        log.close()
        try:
            up = wait_listening(proc, port)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if up:
            break
        proc.wait()
    else:
        output = (tmp_path / f"server-{port}.log").read_text(errors="replace")
        pytest.fail(f"{kind} server did not start:\n{output}")
    server = ServerProcess("127.0.0.1", port, proc)
    try:
        yield server
    finally:
        server.kill()


class ScriptedPeer:
    """One accepted loopback connection that the test reads and writes line by line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    def send_line(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def read_line(self, timeout: float = 10.0) -> str:
        """The next line from the client; raises TimeoutError, EOFError on close."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line from the client; have {self._buf!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if not data:
                raise EOFError(f"client closed; have {self._buf!r}")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r").decode()

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """Read lines until one starts with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            seen.append(line)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {prefix!r} line; saw {seen}")

    def register(self, nick: str = "tester") -> None:
        """Play a minimal server through registration: no caps, then 001."""
        self.expect("CAP LS")
        self.welcome(nick)

    def welcome(self, nick: str = "tester") -> None:
        """Answer an already read CAP LS with no caps, wait for CAP END, send 001."""
        self.send_line("CAP * LS :")
        self.expect("CAP END")
        self.send_line(f":irc.test 001 {nick} :Welcome")

    def close(self) -> None:
        self.sock.close()


class PeerListener:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.peers: list[ScriptedPeer] = []

    def accept(self, timeout: float = 10.0) -> ScriptedPeer:
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        peer = ScriptedPeer(conn)
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        self.sock.close()


@pytest.fixture
def scripted_peer() -> Iterator[PeerListener]:
    listener = PeerListener()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for child Python processes (bots, the terminal client)."""
    return ircutil.child_env()
