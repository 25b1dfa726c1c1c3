"""Asynchronous operations: work that must leave the core's thread.

Password hashing today; store queries and calls to other nodes next. The core
never blocks: a handler *submits* an :class:`Op` and the transport runs
``op.run()`` on a worker thread, then hands it back (``core.op_done``) on the
core's thread, where ``op.then(result)`` runs.

* **Ordered** ops (``session`` given, ``ordered=True``) hold the session's later
  input until they complete, so its commands keep their order (OPER then MODE).
* **Unordered** ops are fire-and-forget; those submitted through a
  :class:`Batcher` in one turn become a single op over a list of items (a
  history write per message becomes one transaction per turn).
* **Pools** bound how many ops of a kind run at once (``pool="hash"``: at most a
  few scrypt hashes in flight, each 16 MiB); the rest wait in order.
* **Guarded**: an exception in ``run`` comes back as ``op.error`` and never
  reaches ``then``; the core logs it (rate-limited) and tells the session.
* **Cancelled on disconnect**: an op whose session has closed is not started if
  it is still waiting, and its ``then`` is not called when it completes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaychat.protocol.state import Session

__all__ = ["Batcher", "Op", "Ops"]


class Op:
    __slots__ = ("run", "then", "session", "ordered", "pool", "result", "error")

    def __init__(
        self,
        run: Callable[[], Any],
        then: Callable[[Any], None] | None = None,
        session: Session | None = None,
        *,
        ordered: bool = True,
        pool: str = "default",
    ) -> None:
        self.run = run
        self.then = then
        self.session = session
        self.ordered = ordered and session is not None
        self.pool = pool
        self.result: Any = None
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Op {self.pool} {getattr(self.run, '__name__', self.run)!r}>"


class Batcher:
    """Collects items during a turn; ``Ops.to_run`` turns them into one op that
    calls ``run_batch(items)`` (off the core's thread)."""

    __slots__ = ("run_batch", "pool", "items")

    def __init__(self, run_batch: Callable[[list[Any]], Any], pool: str = "default") -> None:
        self.run_batch = run_batch
        self.pool = pool
        self.items: list[Any] = []


class Ops:
    def __init__(self, pool_limits: dict[str, int] | None = None) -> None:
        self.limits = {"default": 64, **(pool_limits or {})}
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, deque[Op]] = {}
        self._ready: list[Op] = []
        self._batchers: list[Batcher] = []

    def submit(self, op: Op) -> None:
        if op.ordered:
            assert op.session is not None
            op.session.busy = True
        pool = op.pool
        if self._in_flight.get(pool, 0) < self.limits.get(pool, 64):
            self._in_flight[pool] = self._in_flight.get(pool, 0) + 1
            self._ready.append(op)
        else:
            self._waiting.setdefault(pool, deque()).append(op)

    def add_to_batch(self, batcher: Batcher, item: Any) -> None:
        if not batcher.items:
            self._batchers.append(batcher)
        batcher.items.append(item)

    def to_run(self) -> list[Op]:
        """What the transport should start now (each on a worker thread)."""
        if self._batchers:
            for b in self._batchers:
                items, b.items = b.items, []
                self.submit(Op(_bind(b.run_batch, items), None, None, pool=b.pool))
            self._batchers = []
        ready = self._ready
        self._ready = []
        return ready

    def finished(self, op: Op) -> bool:
        """Book an op as done; True if its ``then`` should run (its session, if
        any, is still open)."""
        pool = op.pool
        self._in_flight[pool] = self._in_flight.get(pool, 1) - 1
        waiting = self._waiting.get(pool)
        while waiting:
            nxt = waiting.popleft()
            sess = nxt.session
            if sess is not None and sess.closing is not None:
                continue  # cancelled: its session went away while it waited
            self._in_flight[pool] += 1
            self._ready.append(nxt)
            break
        sess = op.session
        if sess is not None:
            if op.ordered:
                sess.busy = False
            if sess.closing is not None:
                return False
        return True


def _bind(fn: Callable[[list[Any]], Any], items: list[Any]) -> Callable[[], Any]:
    return lambda: fn(items)
