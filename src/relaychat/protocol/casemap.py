"""Case mapping and mask matching.

``rfc1459`` folds ``[]\\~`` to ``{}|^`` as well as ASCII letters; ``ascii`` folds
letters only. Masks use ``*`` (any run) and ``?`` (one character), compared
after case folding by :mod:`relaychat.protocol.masks` (linear time, no
backtracking).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from relaychat.protocol.masks import COMPILE_CACHE_SIZE, Mask, compile_mask

__all__ = ["casefolder", "fold_ascii", "fold_rfc1459", "mask_matches"]

_RFC1459 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~",
    "abcdefghijklmnopqrstuvwxyz{}|^",
)
_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_rfc1459(name: str) -> str:
    return name.translate(_RFC1459)


def fold_ascii(name: str) -> str:
    return name.translate(_ASCII)


def casefolder(casemapping: str) -> Callable[[str], str]:
    """The fold function for a CASEMAPPING name; raises ValueError for others."""
    if casemapping == "rfc1459":
        return fold_rfc1459
    if casemapping == "ascii":
        return fold_ascii
    raise ValueError(f"unknown casemapping {casemapping!r}")


@lru_cache(maxsize=COMPILE_CACHE_SIZE)
def _folded_mask(mask: str, casemapping: str) -> Mask:
    # saves folding the same ban mask again for every message checked against it
    return compile_mask(casefolder(casemapping)(mask))


def mask_matches(mask: str, name: str, casemapping: str = "rfc1459") -> bool:
    """Whether ``name`` (e.g. ``nick!user@host``) matches the glob ``mask``, both
    folded with ``casemapping``; raises ValueError for an unknown casemapping."""
    return _folded_mask(mask, casemapping).matches(casefolder(casemapping)(name))
