"""``relaychat serve`` as a real process, for both engines: signals, a taken port,
bad and sample configuration files, SIGHUP reload, mkpasswd + OPER, DIE.

Every process is killed and reaped at teardown, so no process or port is left behind.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ircutil import RawClient, child_env, free_port, wait_listening

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "relaychat.example.toml"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, nick: str) -> RawClient:
        c = RawClient(self.port)
        c.register(nick)
        return c

    def exit_code_within(self, seconds: float) -> int:
        try:
            return self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running {seconds}s later; stderr:\n{self.stderr()}"
            ) from None


def run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaychat", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``spawn(engine, *extra_args)`` -> a listening ``relaychat serve`` on a free port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(engine: str, *extra: str) -> Server:
        for attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            err_path = tmp_path / f"serve-{port}.stderr"
            with err_path.open("wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "relaychat", "serve", "--host", "127.0.0.1"]
                    + ["--port", str(port), "--engine", engine, *extra],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=child_env(),
                )
            procs.append(proc)
            server = Server(proc, port, err_path)
            if wait_listening(proc, port):
                return server
            if "in use" not in server.stderr() or attempt == 2:
                pytest.fail(f"server exited with {proc.returncode}:\n{server.stderr()}")
        raise AssertionError("unreachable")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def motd_text(c: RawClient) -> list[str]:
    c.send("MOTD")
    lines: list[str] = []
    while True:
        msg = c.expect(lambda m: m.command in ("372", "376", "422"))
        if msg.command != "372":
            return lines
        lines.append(msg.params[-1])


# --------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_sends_error_to_clients_and_exits_0_within_2s(
    spawn: Callable[..., Server], engine: str, sig: signal.Signals
) -> None:
    server = spawn(engine)
    c = server.client("stayer")
    try:
        c.join("#bye")
        signalled = time.monotonic()
        server.proc.send_signal(sig)
        error = c.expect("ERROR", timeout=5)
        assert "shutting down" in error.params[-1].lower()
        c.wait_closed(timeout=5)
        code = server.exit_code_within(5)
        elapsed = time.monotonic() - signalled
        assert code == 0, server.stderr()
        assert elapsed < 2.0, f"exited {elapsed:.2f}s after {sig.name}"
        assert "Traceback" not in server.stderr()
    finally:
        c.close()


def test_port_in_use_is_one_clear_line_and_a_nonzero_exit(engine: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--host", "127.0.0.1", "--port", str(port), "--engine", engine)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "in use" in lines[0]


# ------------------------------------------------------------ configuration
def test_unknown_config_key_exits_2_naming_the_key_and_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[server]\nname = "irc.example.org"\ncolour = "blue"\n')
    result = run_cli("serve", "--config", str(conf), "--port", "0")
    assert result.returncode == 2
    assert "server.colour" in result.stderr
    assert str(conf) in result.stderr
    assert "Traceback" not in result.stderr


def test_example_config_starts_and_serves(spawn: Callable[..., Server], engine: str) -> None:
    server = spawn(engine, "--config", str(EXAMPLE_CONFIG), "--log-level", "WARNING")
    c = server.client("sample")
    try:
        c.join("#sample")
        assert motd_text(c) == ["- Welcome to relaychat. Be kind; have fun."]
    finally:
        c.close()


def test_sighup_reloads_the_config_without_dropping_clients(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    conf = tmp_path / "relaychat.toml"
    conf.write_text('[server]\nmotd = "first words"\nlog_level = "WARNING"\n')
    server = spawn(engine, "--config", str(conf))
    c = server.client("keeper")
    try:
        c.join("#stay")
        assert motd_text(c) == ["- first words"]
        conf.write_text('[server]\nmotd = "second words"\nlog_level = "WARNING"\n')
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while (text := motd_text(c)) != ["- second words"]:
            assert text == ["- first words"], text
            assert time.monotonic() < deadline, "SIGHUP did not reload the MOTD"
            time.sleep(0.05)  # polling a condition under a deadline
        assert not c.closed
        assert server.proc.poll() is None
        c.send("NAMES #stay")
        names = c.expect("353")
        assert "keeper" in names.params[-1].replace("@", "").split()
    finally:
        c.close()


# ------------------------------------------------------------ opers and DIE
def test_mkpasswd_hash_is_an_oper_password_and_die_stops_the_server(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    made = run_cli("mkpasswd", "secret")
    assert made.returncode == 0, made.stderr
    hashed = made.stdout.strip()
    assert hashed and "secret" not in hashed
    conf = tmp_path / "opers.toml"
    conf.write_text(
        f'[server]\nlog_level = "WARNING"\n\n[opers.admin]\npassword = "{hashed}"\n'
        'host = "*@127.0.0.1"\n'
    )
    server = spawn(engine, "--config", str(conf))
    c = server.client("boss")
    bystander = server.client("bystander")
    try:
        c.send("DIE")
        c.expect("481")  # not an operator yet
        c.send("OPER admin wrong")
        c.expect("464")
        c.send("OPER nobody secret")
        c.expect("464")
        c.send("OPER admin secret")
        c.expect("381")
        assert server.proc.poll() is None

        c.send("DIE :maintenance")
        assert "maintenance" in bystander.expect("ERROR", timeout=5).params[-1]
        c.expect("ERROR", timeout=5)
        assert server.exit_code_within(5) == 0, server.stderr()
        assert "Traceback" not in server.stderr()
    finally:
        c.close()
        bystander.close()
