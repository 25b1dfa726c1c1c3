"""Drive the sans-I/O core directly: no sockets, a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from coreharness import Clock, Peer, new_core, oper_up, user
from relaychat.config import Config, LimitsConfig
from relaychat.protocol.core import ServerCore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_core(clock: Clock) -> Callable[..., ServerCore]:
    def make(config: Config | None = None, **limits: object) -> ServerCore:
        cfg = config or Config()
        if limits:
            cfg = dataclasses.replace(cfg, limits=dataclasses.replace(LimitsConfig(), **limits))
        return new_core(cfg, clock)

    return make


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    return make_core(flood_rate=0.0)


@pytest.fixture
def connect(core: ServerCore, clock: Clock) -> Iterator[Callable[..., Peer]]:
    def make(nick: str | None = None, **kw: object) -> Peer:
        peer = Peer(core, clock)
        if nick:
            peer.register(nick, **kw)  # type: ignore[arg-type]
        return peer

    yield make


@pytest.fixture
def oper(core: ServerCore, clock: Clock) -> Peer:
    """A registered operator (the module's ``core`` must know the ``admin`` oper)."""
    p = user(core, clock, "oper")
    oper_up(p)
    return p
