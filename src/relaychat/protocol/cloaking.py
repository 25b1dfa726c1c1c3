"""IP cloaking: a stable, keyed stand-in for a client's address.

Done as Ergo does it (``irc/cloaks``): the address is first cut to a prefix
(``cidr_len_ipv4``, default /32; ``cidr_len_ipv6``, default /64, because one user
commonly holds a whole /64), then hashed with a server secret, and the digest is
written in lower-case base32 in front of a network name. Ergo hashes with SHA3
and writes one label; here it is HMAC-SHA256 (the standard library's keyed
hash) and two labels of eight characters, 80 bits in all:
``abcd1234.efgh5678.<netname>``. The same address (or prefix) and secret always
give the same cloak, so bans and ignores on a cloak keep working across
reconnections, and without the secret the address cannot be recovered or
confirmed by brute force over the address space.

A connection whose address is not an IP address (a Unix socket, say) is hashed
as its text. Pure: no I/O, clocks or threads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from functools import lru_cache

__all__ = ["Cloaker"]


class Cloaker:
    """Cloaks for one secret and netname (a REHASH that changes them makes a new
    one; users keep the cloak they connected with)."""

    __slots__ = ("_key", "netname", "v4_bits", "v6_bits", "cloak")

    def __init__(self, secret: str, netname: str, v4_bits: int = 32, v6_bits: int = 64) -> None:
        if not secret:
            raise ValueError("cloaking needs a secret")
        self._key = secret.encode("utf-8")
        self.netname = netname
        self.v4_bits = v4_bits
        self.v6_bits = v6_bits
        # reconnecting clients ask again and again: keep the last few thousand
        self.cloak = lru_cache(maxsize=4096)(self._cloak)

    def same_secret(self, secret: str) -> bool:
        return hmac.compare_digest(self._key, secret.encode("utf-8"))

    def __repr__(self) -> str:
        return f"Cloaker(netname={self.netname!r})"  # never the secret

    def _cloak(self, ip: str) -> str:
        """The cloaked host for address ``ip`` (``::ffff:a.b.c.d`` counts as
        ``a.b.c.d``)."""
        data: bytes
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            data = b"host:" + ip.encode("utf-8", "replace")
        else:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            bits = self.v4_bits if addr.version == 4 else self.v6_bits
            net = ipaddress.ip_network((addr, bits), strict=False)
            data = bytes([addr.version, bits]) + net.network_address.packed
        digest = hmac.new(self._key, data, hashlib.sha256).digest()
        text = base64.b32encode(digest[:10]).decode("ascii").lower()
        return f"{text[:8]}.{text[8:16]}.{self.netname}"
