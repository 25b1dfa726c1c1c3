"""Server bans: K-lines (``user@host`` masks) and D-lines (IP addresses and CIDR
networks), kept in memory behind a small interface.

Theory of operation
-------------------
:class:`ServerBans` owns every ban and answers two questions: does this address
match a D-line (asked when a connection is accepted, before registration), and
does this ``ident``/``host``/``ip`` match a K-line (asked when registration
completes, and of every connected client when a ban is added). Handlers add and
remove bans through it and nothing else edits its tables; the core persists
each change in the store (``ServerCore.persist_ban``: each :class:`ServerBan`
carries what a store needs: kind, mask, reason, setter, wall time set and
duration) and restores them with ``add`` at start (``ServerCore._load_bans``).

Time is passed in (``Now``: monotonic for expiry, wall for display); nothing
here reads a clock. A ban with a duration expires at a monotonic deadline:
lookups skip an expired ban at once, and :meth:`expire` (which the core runs
from a timer at :meth:`next_expiry`) removes it. The number of bans is bounded
(``capacity``).

Cost: a D-line lookup is one dictionary probe per distinct prefix length in use
(a /32, a /24 and a /64 in use: three probes), whatever the number of D-lines.
A K-line lookup is one dictionary probe for exact masks plus a linear-time glob
match (:mod:`relaychat.protocol.masks`) per wildcard K-line.

Pure: no I/O, clocks or threads; the core's thread only.
"""

from __future__ import annotations

import heapq
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from relaychat.protocol.masks import Mask, compile_mask

__all__ = [
    "DLINE",
    "KLINE",
    "MAX_DURATION",
    "ServerBan",
    "ServerBans",
    "format_duration",
    "normalize_dline",
    "normalize_kline",
    "parse_duration",
]

KLINE = "K"
DLINE = "D"

MAX_DURATION = 10 * 365 * 86400  # seconds: longer is refused (use 0, permanent)
MASK_MAX = 200  # bytes in a K-line mask

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"(?:[0-9]{1,9}[smhdwy])+|[0-9]{1,10}", re.ASCII)
_DURATION_PART = re.compile(r"([0-9]{1,9})([smhdwy])", re.ASCII)


def parse_duration(text: str) -> int | None:
    """Seconds for ``0`` (permanent), ``90`` (seconds, as InspIRCd reads a bare
    number), ``30m``, ``1h30m``, ``2d``, ``1w``, ``1y`` (units s m h d w y); None
    for anything else or for more than :data:`MAX_DURATION`. ASCII digits only."""
    if not _DURATION.fullmatch(text):
        return None
    if text.isdigit():
        seconds = int(text)
    else:
        seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    return seconds if seconds <= MAX_DURATION else None


def format_duration(seconds: float) -> str:
    """``1h30m`` style, or ``permanent`` for 0."""
    left = int(seconds)
    if left <= 0:
        return "permanent"
    parts: list[str] = []
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)


def _network(text: str) -> IPNetwork | None:
    """An address or a CIDR network (host bits may be set: ``192.0.2.7/24`` is
    ``192.0.2.0/24``); an IPv4-mapped IPv6 address counts as its IPv4 address."""
    if not text or len(text) > 64 or not text.isascii():
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            net = ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def _show_network(net: IPNetwork) -> str:
    """A single address as itself, a network as ``address/length``."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def normalize_dline(text: str) -> str | None:
    """The canonical form of a D-line mask (``192.0.2.0/24``, ``2001:db8::1``), or
    None when ``text`` is not an IP address or network."""
    net = _network(text)
    return None if net is None else _show_network(net)


def normalize_kline(text: str) -> str | None:
    """The canonical form of a K-line mask, or None when ``text`` is not one.

    A K-line mask is ``user@host``: both parts non-empty, glob characters ``*``
    and ``?`` allowed, no ``!`` (a nick is not part of a server ban), no space,
    comma or leading colon, at most :data:`MASK_MAX` bytes. A host part with a
    ``/`` must be a CIDR network and is written canonically (``*@192.0.2.0/24``)."""
    if not text or len(text.encode("utf-8")) > MASK_MAX or text[0] == ":":
        return None
    if any(c in text for c in " ,!\r\n\x00") or not text.isprintable():
        return None
    user, at, host = text.partition("@")
    if not at or not user or not host or "@" in host:
        return None
    if "/" in host:
        net = _network(host)
        if net is None:
            return None
        host = str(net)
    return f"{user}@{host}"


@dataclass(slots=True, eq=False)
class ServerBan:
    """One K-line or D-line. ``expires`` is a monotonic deadline (None:
    permanent); ``set_at`` is wall time, so ``set_at + duration`` is the wall
    time it ends (what a store would keep)."""

    kind: str  # KLINE or DLINE
    mask: str  # canonical, as shown
    reason: str
    setter: str
    set_at: float
    duration: int  # seconds; 0: permanent
    expires: float | None
    # rate-limited server notices about connections this ban refused
    hits: int = 0
    noticed_at: float = field(default=-1e18)


class _KLine:
    __slots__ = ("ban", "user", "host", "net")

    def __init__(self, ban: ServerBan, fold: Callable[[str], str]) -> None:
        self.ban = ban
        user, _, host = ban.mask.partition("@")
        self.user: Mask = compile_mask(fold(user))
        self.net = _network(host) if "/" in host else None
        self.host: Mask | None = None if self.net is not None else compile_mask(fold(host))

    def matches(self, user: str, host: str, ip: str, addr: IPAddress | None) -> bool:
        """``user``, ``host``, ``ip`` already folded; ``addr`` parsed from ``ip``."""
        if not self.user.matches(user):
            return False
        if self.net is not None:
            return addr is not None and addr in self.net
        assert self.host is not None
        return self.host.matches(host) or self.host.matches(ip)


class ServerBans:
    """Every K-line and D-line, bounded by ``capacity`` (see the module docstring)."""

    def __init__(self, fold: Callable[[str], str], capacity: int) -> None:
        self.fold = fold
        self.capacity = capacity
        self._klines: dict[str, _KLine] = {}  # folded mask -> K-line
        self._wild: dict[str, _KLine] = {}  # those with a glob or a network: scanned
        self._dlines: dict[IPNetwork, ServerBan] = {}
        self._prefixes: dict[tuple[int, int], int] = {}  # (version, prefixlen) -> D-lines
        self._heap: list[tuple[float, int, ServerBan]] = []  # expiry deadlines (lazy)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._klines) + len(self._dlines)

    @property
    def has_dlines(self) -> bool:
        return bool(self._dlines)

    @property
    def has_klines(self) -> bool:
        return bool(self._klines)

    # -------------------------------------------------------------- changes
    def add(
        self,
        kind: str,
        mask: str,
        duration: int,
        reason: str,
        setter: str,
        mono: float,
        wall: float,
    ) -> tuple[ServerBan, ServerBan | None] | None:
        """Add a ban with an already normalised ``mask`` (see
        :func:`normalize_kline`, :func:`normalize_dline`); one with the same mask
        is replaced (as Ergo does). Returns (the new ban, the one it replaced),
        or None when the list is full (a replacement always fits)."""
        old = self.get(kind, mask)
        if old is None and len(self) >= self.capacity:
            return None
        ban = ServerBan(
            kind, mask, reason, setter, wall, duration, mono + duration if duration else None
        )
        if old is not None:
            self._drop(old)
        if kind == KLINE:
            key = self.fold(mask)
            entry = self._klines[key] = _KLine(ban, self.fold)
            if entry.net is not None or "*" in mask or "?" in mask:
                self._wild[key] = entry
        else:
            net = _network(mask)
            if net is None:
                raise ValueError(f"not a D-line mask: {mask!r}")
            self._dlines[net] = ban
            prefix = (net.version, net.prefixlen)
            self._prefixes[prefix] = self._prefixes.get(prefix, 0) + 1
        if ban.expires is not None:
            self._seq += 1
            heapq.heappush(self._heap, (ban.expires, self._seq, ban))
        return ban, old

    def remove(self, kind: str, mask: str) -> ServerBan | None:
        """Remove the ban with this (normalised) mask; None if there is none."""
        ban = self.get(kind, mask)
        if ban is not None:
            self._drop(ban)
        return ban

    def _drop(self, ban: ServerBan) -> None:
        if ban.kind == KLINE:
            key = self.fold(ban.mask)
            del self._klines[key]
            self._wild.pop(key, None)
            return
        net = _network(ban.mask)
        assert net is not None
        del self._dlines[net]
        prefix = (net.version, net.prefixlen)
        left = self._prefixes[prefix] - 1
        if left:
            self._prefixes[prefix] = left
        else:
            del self._prefixes[prefix]

    def get(self, kind: str, mask: str) -> ServerBan | None:
        if kind == KLINE:
            entry = self._klines.get(self.fold(mask))
            return entry.ban if entry is not None else None
        net = _network(mask)
        return self._dlines.get(net) if net is not None else None

    def entries(self) -> list[ServerBan]:
        """Every ban: K-lines then D-lines, each in the order they were added."""
        return [k.ban for k in self._klines.values()] + list(self._dlines.values())

    # -------------------------------------------------------------- expiry
    def next_expiry(self) -> float | None:
        """The monotonic time the next ban ends, or None."""
        heap = self._heap
        while heap and not self._live(heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, mono: float) -> list[ServerBan]:
        """Remove and return the bans whose time is up at ``mono``."""
        heap = self._heap
        gone: list[ServerBan] = []
        while heap and heap[0][0] <= mono:
            _, _, ban = heapq.heappop(heap)
            if self._live(ban):
                self._drop(ban)
                gone.append(ban)
        return gone

    def _live(self, ban: ServerBan) -> bool:
        return self.get(ban.kind, ban.mask) is ban

    # -------------------------------------------------------------- lookups
    def match_ip(self, ip: str, mono: float) -> ServerBan | None:
        """The D-line that covers address ``ip``, or None (also for what is not
        an address)."""
        if not self._dlines:
            return None
        addr = _address(ip)
        if addr is None:
            return None
        for version, prefixlen in self._prefixes:
            if version != addr.version:
                continue
            net = ipaddress.ip_network((addr, prefixlen), strict=False)
            ban = self._dlines.get(net)
            if ban is not None and (ban.expires is None or ban.expires > mono):
                return ban
        return None

    def match_user(self, user: str, host: str, ip: str, mono: float) -> ServerBan | None:
        """The K-line that ``user@host`` or ``user@ip`` matches, or None. ``host``
        is what others see (a cloak, when cloaking is on), ``ip`` the real address:
        an operator's ban may name either."""
        if not self._klines:
            return None
        fold = self.fold
        fuser, fhost, fip = fold(user), fold(host), fold(ip)
        for key in (f"{fuser}@{fhost}", f"{fuser}@{fip}"):
            exact = self._klines.get(key)
            if exact is not None and _current(exact.ban, mono):
                return exact.ban
        addr = _address(ip)
        for entry in self._wild.values():
            if _current(entry.ban, mono) and entry.matches(fuser, fhost, fip, addr):
                return entry.ban
        return None

    def matcher(self, kind: str, mask: str) -> Callable[[str, str, str], bool]:
        """A test ``(user, host, ip) -> bool`` for one (normalised) mask, compiled
        once: for checking every connected client against a new ban, or a new ban
        against its setter. ``user`` may be empty (a connection that has not sent
        USER yet): only a D-line can match it then."""
        if kind == DLINE:
            net = _network(mask)
            if net is None:
                raise ValueError(f"not a D-line mask: {mask!r}")

            def covers_ip(user: str, host: str, ip: str) -> bool:
                addr = _address(ip)
                return addr is not None and addr in net

            return covers_ip
        fold = self.fold
        entry = _KLine(ServerBan(kind, mask, "", "", 0.0, 0, None), fold)

        def covers_user(user: str, host: str, ip: str) -> bool:
            return bool(user) and entry.matches(fold(user), fold(host), fold(ip), _address(ip))

        return covers_user


def _current(ban: ServerBan, mono: float) -> bool:
    return ban.expires is None or ban.expires > mono


def _address(ip: str) -> IPAddress | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
