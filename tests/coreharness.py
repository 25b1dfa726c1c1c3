"""Drive the sans-I/O core directly: fake connections and a fake clock, no sockets.

This plays the transport's part: it frames bytes into lines, hands them to the
core with the (fake) time, runs operations synchronously, acts on the core's
requests (a REHASH runs the given loader), and fires timers as the clock moves.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from relaychat.config import Config
from relaychat.passwords import hash_password
from relaychat.protocol.commands import build_core
from relaychat.protocol.core import ServerCore
from relaychat.protocol.framing import LineBuffer
from relaychat.protocol.message import Message, parse_message
from relaychat.protocol.ops import Op
from relaychat.protocol.state import Session
from relaychat.protocol.timebase import Now
from relaychat.store.sqlite import SQLiteStore


class Clock:
    """Monotonic and wall time, moved by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_700_000_000.0

    @property
    def now(self) -> Now:
        return Now(self.mono, self.wall)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


_LOADERS: dict[int, Callable[[], Config]] = {}
_CLOCKS: dict[int, Clock] = {}


def new_core(
    config: Config,
    clock: Clock,
    loader: Callable[[], Config] | None = None,
    store: SQLiteStore | None = None,
) -> ServerCore:
    """A core on ``store`` (the caller closes it: several cores in turn on one
    store are restarts), or on an in-memory SQLite store of its own (the test
    double: no mock store, no file), closed with the core."""
    if store is None:
        store = SQLiteStore(":memory:", commit_ms=0.0)
        core = build_core(config, clock.now, msgid_prefix="t", store=store)
        weakref.finalize(core, store.close)
    else:
        core = build_core(config, clock.now, msgid_prefix="t", store=store)
    _CLOCKS[id(core)] = clock
    if loader is not None:
        _LOADERS[id(core)] = loader
    pump(core)  # what the core started with (the first history retention pass)
    return core


def tick(core: ServerCore, clock: Clock) -> None:
    """Fire every timer that is due at the clock's time, then deliver."""
    core.handle_timers(clock.now)
    pump(core)


def advance(core: ServerCore, clock: Clock, seconds: float, step: float = 1.0) -> None:
    """Move the clock forward in steps, firing timers as a transport would."""
    left = seconds
    while left > 0:
        d = min(step, left)
        clock.advance(d)
        left -= d
        tick(core, clock)


class Peer:
    """One fake connection: ``send`` a line, read what the core answered."""

    def __init__(
        self, core: ServerCore, clock: Clock, ip: str = "127.0.0.1", certfp: str | None = None
    ) -> None:
        self.core = core
        self.clock = clock
        self.inbox: list[Message] = []
        self.raw: list[bytes] = []
        self.closed = False
        lim = core.limits
        self.framer = LineBuffer(lim.line_length, lim.tags_length)
        # ``certfp``: connected over TLS with a client certificate of that fingerprint
        self.session: Session = core.connect(
            ip, clock.now, handle=self, secure=certfp is not None, certfp=certfp
        )
        pump(core)

    @property
    def user(self) -> Any:
        return self.session.user

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else (line + "\r\n").encode()
        self.feed(data)

    def feed(self, data: bytes, flush: bool = True) -> None:
        """Bytes as a socket would deliver them; ``flush=False`` leaves the output
        queued (several turns' input before one ``pump``)."""
        self.session.recv_bytes += len(data)
        lines = self.framer.feed(data)
        if lines or self.framer.blank:
            self.core.receive_lines(self.session, lines, self.clock.now, self.framer.blank)
        if flush:
            pump(self.core)

    def take(self) -> list[Message]:
        """Everything received since the last take."""
        out, self.inbox = self.inbox, []
        return out

    def commands(self) -> list[str]:
        return [m.command for m in self.take()]

    def register(self, nick: str, user: str = "u", caps: tuple[str, ...] = ()) -> None:
        if caps:
            self.send("CAP LS 302")
            self.send("CAP REQ :" + " ".join(caps))
        self.send(f"NICK {nick}")
        self.send(f"USER {user} 0 * :Real {nick}")
        if caps:
            self.send("CAP END")
        assert any(m.command == "001" for m in self.inbox), self.inbox
        self.take()


def pump(core: ServerCore) -> None:
    """Deliver output, run operations and requests until nothing is left."""
    clock = _CLOCKS.get(id(core))
    for _ in range(100):
        busy = False
        for handle, data, close in core.data_to_send():
            busy = True
            peer: Peer = handle
            peer.raw.append(data)
            for line in data.split(b"\r\n"):
                if line:
                    peer.inbox.append(parse_message(line.decode()))
            if close:
                peer.closed = True
        for kind, arg in core.take_requests():
            busy = True
            if kind == "rehash":
                _rehash(core, arg)
        for op in core.ops_to_run():
            busy = True
            try:
                op.result = op.run()
            except Exception as exc:  # handed back as the op's error
                op.error = exc
            core.op_done(op, clock.now if clock is not None else core.now)
        if not busy:
            return


def _rehash(core: ServerCore, sess: Session | None) -> None:
    loader = _LOADERS.get(id(core))

    def run() -> object:
        if loader is None:
            return RuntimeError("no configuration file")
        try:
            return loader()
        except Exception as exc:
            return exc

    core.submit(Op(run, lambda result: core.rehash_result(sess, result, core.now), None))


OPER_PASSWORD = "secret"
OPER_HASH = hash_password(OPER_PASSWORD, n=2**10)  # cheap parameters: tests are about the flow


def oper_up(peer: Peer, name: str = "admin") -> None:
    """Make ``peer`` an operator (the core's config must have ``name`` with
    :data:`OPER_HASH`); its replies are taken."""
    peer.send(f"OPER {name} {OPER_PASSWORD}")
    got = peer.take()
    assert any(m.command == "381" for m in got), got


def user(core: ServerCore, clock: Clock, nick: str, ip: str = "127.0.0.1") -> Peer:
    """A registered peer from ``ip``."""
    p = Peer(core, clock, ip)
    p.register(nick)
    return p


def numerics(msgs: list[Message]) -> list[str]:
    return [m.command for m in msgs]


def only(msgs: list[Message], command: str) -> list[Message]:
    return [m for m in msgs if m.command == command]


def one(msgs: list[Message], command: str) -> Message:
    found = only(msgs, command)
    assert len(found) == 1, msgs
    return found[0]
