"""Per-key time limits: failure backoff for authentication (OPER, SASL, NickServ),
a plain throttle (KNOCK) and a count per window (account registrations).

Each failure for a key (``ip:1.2.3.4``, ``name:admin``) doubles the time the key
is blocked, from 1 s up to ``ceiling``; a success or ``forget_after`` seconds
without failures clears it. Keys are bounded (oldest dropped) so that an
attacker cycling names cannot grow the table. Monotonic time, passed in.

:class:`Throttle`: one event per key per ``delay`` seconds. Entries are kept in
the order they were last used, so the stale ones are at the front and are
dropped as new ones come: the table never holds more than the keys used within
one ``delay``, and each call costs O(1) amortised.
"""

from __future__ import annotations

__all__ = ["Backoff", "Throttle", "WindowLimit"]


class Backoff:
    def __init__(self, ceiling: float = 60.0, forget_after: float = 600.0, size: int = 10000):
        self.ceiling = ceiling
        self.forget_after = forget_after
        self.size = size
        self._entries: dict[str, tuple[int, float, float]] = {}  # key -> (failures, until, last)

    def blocked(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait (0: it may try now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        failures, until, last = entry
        if now - last > self.forget_after:
            del self._entries[key]
            return 0.0
        return max(0.0, until - now)

    def failed(self, key: str, now: float) -> None:
        entry = self._entries.pop(key, None)
        failures = 1 if entry is None or now - entry[2] > self.forget_after else entry[0] + 1
        delay = min(self.ceiling, 2.0 ** (failures - 1))
        self._entries[key] = (failures, now + delay, now)
        while len(self._entries) > self.size:
            del self._entries[next(iter(self._entries))]

    def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)


class Throttle:
    def __init__(self) -> None:
        self._last: dict[object, float] = {}  # key -> when it was last allowed, oldest first

    def __len__(self) -> int:
        return len(self._last)

    def wait(self, key: object, now: float, delay: float) -> float:
        """Seconds ``key`` must still wait before its next event (0: it may go now)."""
        last = self._last.get(key)
        if last is None or delay <= 0:
            return 0.0
        return max(0.0, last + delay - now)

    def hit(self, key: object, now: float, delay: float) -> None:
        """Record an event for ``key``; forget keys whose ``delay`` has passed."""
        last = self._last
        last.pop(key, None)
        last[key] = now
        while last:
            oldest = next(iter(last))
            if last[oldest] + delay > now:
                break
            del last[oldest]


class WindowLimit:
    """At most ``limit`` events per key within ``window`` seconds (account
    registrations per address). Keys are bounded (oldest dropped)."""

    def __init__(self, size: int = 10000) -> None:
        self.size = size
        self._hits: dict[str, list[float]] = {}  # key -> times within the window, oldest first

    def wait(self, key: str, now: float, limit: int, window: float) -> float:
        """Seconds until ``key`` may have another event (0: now; ``limit`` 0: no limit)."""
        hits = self._recent(key, now, window)
        if limit <= 0 or len(hits) < limit:
            return 0.0
        return max(0.0, hits[-limit] + window - now)

    def hit(self, key: str, now: float, window: float) -> None:
        hits = self._recent(key, now, window)
        hits.append(now)
        self._hits.pop(key, None)
        self._hits[key] = hits
        while len(self._hits) > self.size:
            del self._hits[next(iter(self._hits))]

    def _recent(self, key: str, now: float, window: float) -> list[float]:
        hits = [t for t in self._hits.get(key, ()) if now - t < window]
        if hits:
            self._hits[key] = hits
        else:
            self._hits.pop(key, None)
        return hits
