"""Fixtures of the server tests: ``relaychat serve`` as a real process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ircutil import Server, child_cwd, child_env, free_port, wait_listening


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``spawn(engine, *extra_args)`` -> a listening ``relaychat serve`` on a free port
    (``--host 127.0.0.1 --port P``; ``host=None``: ``--port P`` only)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(engine: str, *extra: str, host: str | None = "127.0.0.1") -> Server:
        for attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            err_path = tmp_path / f"serve-{port}.stderr"
            flags = ["--port", str(port)] if host is None else ["--host", host, "--port", str(port)]
            with err_path.open("wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "relaychat", "serve", *flags]
                    + ["--engine", engine, *extra],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=child_env(),
                    cwd=child_cwd(),
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
