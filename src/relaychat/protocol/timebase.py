"""The time the transport hands to the core: monotonic for timers, wall for stamps.

The core never reads a clock. Every entry point takes a :class:`Now`: ``mono``
(seconds from any fixed origin, never going back: deadlines, idle times, flood
buckets) and ``wall`` (seconds since the epoch: server-time tags, topic and ban
times, signon, WHOWAS). A backward NTP step moves ``wall`` only, so it can
change a timestamp but never freeze a timeout or throttle a client.

Formatting helpers live here too; they use :mod:`datetime` arithmetic only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

__all__ = ["Now", "server_time", "ctime_utc"]


class Now(NamedTuple):
    mono: float
    wall: float


@lru_cache(maxsize=256)  # the events of one turn share their time: formatted once
def server_time(wall: float) -> str:
    """IRCv3 server-time: ``YYYY-MM-DDThh:mm:ss.sssZ`` (UTC)."""
    dt = datetime.fromtimestamp(wall, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def ctime_utc(wall: float, fmt: str = "%a %b %d %Y at %H:%M:%S UTC") -> str:
    """A human date for replies (RPL_CREATED, INFO, WHOWAS, TIME)."""
    return datetime.fromtimestamp(wall, UTC).strftime(fmt)
