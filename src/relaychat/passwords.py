"""Password hashes for operator (and later account) passwords: scrypt from hashlib.

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. Hashing is deliberately slow
(tens of milliseconds): servers call it from a worker thread, never the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["DUMMY_HASH", "hash_password", "verify_password"]

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A well-formed hash of a random password nobody knows: checking against it costs
# what a real check costs, so a reply cannot tell an unknown name from a bad password.
DUMMY_HASH = (
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$w5hqzd7vJ2bXh2nq1x5dJX1C4D8m2sFY3rJd2o8pV0Y="
)
