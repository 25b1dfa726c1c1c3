"""Deadlines: a heap of (when, key, subject) in monotonic time.

Each session has at most one live entry: its next check (registration timeout,
the next PING or ping timeout, a throttled client's next line), kept in
``Session.timer_at``. The core schedules a check when something becomes due
instead of scanning every session every second, so 50,000 idle clients cost
nothing until one of their deadlines comes. Entries are never removed: one that
fires after its session moved its check (``timer_at`` differs) or closed is
skipped (lazy invalidation). One-off calls (``call_at``) are entries too.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaychat.protocol.state import Session

__all__ = ["Timers"]


class Timers:
    __slots__ = ("_heap", "_calls")

    def __init__(self) -> None:
        # (when, key, subject): key is the session's conn_id (an int it already
        # holds: no new object per entry) or a negative number for a call
        self._heap: list[tuple[float, int, Any]] = []
        self._calls = 0

    def __len__(self) -> int:
        return len(self._heap)

    def check_at(self, sess: Session, when: float) -> None:
        """Make sure ``sess`` is checked at ``when`` or earlier."""
        at = sess.timer_at
        if at is None or when < at:
            sess.timer_at = when
            heapq.heappush(self._heap, (when, sess.conn_id, sess))

    def call_at(self, when: float, sess: Session | None, fn: Callable[[], None]) -> None:
        """``sess`` None: a server task (the core runs it whatever sessions do)."""
        self._calls += 1
        heapq.heappush(self._heap, (when, -self._calls, (sess, fn)))

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int = 10000) -> list[Any]:
        """What is due at ``now``: sessions to check (their entry is consumed) and
        ``(session, fn)`` calls; at most ``limit`` per call, so one call stays short."""
        heap = self._heap
        due: list[Any] = []
        while heap and heap[0][0] <= now and len(due) < limit:
            when, key, subject = heapq.heappop(heap)
            if key < 0:
                due.append(subject)
            elif subject.timer_at == when:
                subject.timer_at = None
                due.append(subject)
        return due
