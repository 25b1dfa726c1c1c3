"""Failure backoff for authentication (OPER today; SASL and NickServ next).

Each failure for a key (``ip:1.2.3.4``, ``name:admin``) doubles the time the key
is blocked, from 1 s up to ``ceiling``; a success or ``forget_after`` seconds
without failures clears it. Keys are bounded (oldest dropped) so that an
attacker cycling names cannot grow the table. Monotonic time, passed in.
"""

from __future__ import annotations

__all__ = ["Backoff"]


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
