"""Fixtures shared by every test directory: real servers on port 0, for both engines."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ircutil import RawClient, make_config
from relaychat.config import Config
from relaychat.server.runner import start_in_thread

ENGINES = ("loop", "threads")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run_config() -> Iterator[Callable[[Config], Any]]:
    """``run_config(config)`` -> a server running ``config`` in this process
    (``.port``, ``.core``, ``.stop()``); every server is stopped at teardown."""
    handles: list[Any] = []

    def start(config: Config) -> Any:
        handle = start_in_thread(config)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def start_server(engine: str, run_config: Callable[[Config], Any]) -> Callable[..., Any]:
    """``start_server(**limits)`` -> a running server for the test's engine."""
    return lambda **limits: run_config(make_config(engine, **limits))


@pytest.fixture
def irc_server(start_server: Callable[..., Any]) -> Any:
    """A server with default limits (flood control off) on 127.0.0.1, port 0."""
    return start_server()


@pytest.fixture
def ws_server(engine: str, run_config: Callable[[Config], Any]) -> Any:
    """A server with an IRC listener (``.port``) and a WebSocket one
    (``wsutil.ws_port(server)``), default ``[websocket]`` settings."""
    from wsutil import make_ws_config

    return run_config(make_ws_config(engine))


@pytest.fixture
def connect() -> Iterator[Callable[..., RawClient]]:
    """``connect(server, nick=None, caps=(), **kw)`` -> a RawClient on ``server``
    (registered when ``nick`` is given); all are closed at teardown."""
    made: list[RawClient] = []

    def make(
        server: Any, nick: str | None = None, caps: tuple[str, ...] = (), **kw: Any
    ) -> RawClient:
        c = RawClient(server.port, **kw)
        made.append(c)
        if nick:
            c.register(nick, caps)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(irc_server: Any, connect: Callable[..., RawClient]) -> Callable[..., RawClient]:
    """``client("nick")`` -> a registered RawClient on ``irc_server``; ``client()``: not."""

    def make(nick: str | None = None, caps: tuple[str, ...] = ()) -> RawClient:
        return connect(irc_server, nick, caps)

    return make


@pytest.fixture
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if the server logged an error (a handler crashed, say)."""
    caplog.set_level(logging.ERROR, logger="relaychat")
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
