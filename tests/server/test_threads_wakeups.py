"""The threads engine's write combining never strands output: a thread that ends
its turn while another holds the write lock leaves its output to that thread,
and every holder of the lock writes what was left before it lets go (a reader
closing its socket included). A stranded reply waited for the service thread's
one-second tick."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ircutil import RawClient


@pytest.mark.parametrize("engine", ["threads"])
def test_replies_are_not_stranded_while_other_connections_close(
    start_server: Callable[..., Any], connect: Callable[..., RawClient], engine: str
) -> None:
    srv = start_server()
    bystander = connect(srv, "bystander")
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            with socket.create_connection(("127.0.0.1", srv.port)) as s:
                s.sendall(b"NICK churn\r\nUSER c 0 * :c\r\nQUIT\r\n")
                s.settimeout(2)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        worst = 0.0
        for i in range(150):
            start = time.monotonic()
            bystander.send(f"PING :p{i}")
            bystander.expect(lambda m, i=i: m.command == "PONG" and m.params[-1] == f"p{i}")
            worst = max(worst, time.monotonic() - start)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert worst < 0.5, worst
