"""Deadlines: a heap of (when, kind, subject) in monotonic time.

The core schedules a timer for a session when something is due (registration
timeout, the next PING check, a throttled client's next line) instead of
scanning every session every second: 50,000 idle clients cost nothing until
one of their deadlines comes. Timers are not cancelled; a timer that fires for
a session that is gone, or whose deadline moved, is checked and dropped or
re-armed by its handler (lazy invalidation).
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["Timers"]


class Timers:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, when: float, kind: str, subject: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, subject))

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int = 10000) -> list[tuple[str, Any]]:
        """The timers due at ``now`` (at most ``limit`` per call, so one call stays short)."""
        heap = self._heap
        due: list[tuple[str, Any]] = []
        while heap and heap[0][0] <= now and len(due) < limit:
            _, _, kind, subject = heapq.heappop(heap)
            due.append((kind, subject))
        return due
