"""Case mapping and mask matching.

``rfc1459`` folds ``[]\\~`` to ``{}|^`` as well as ASCII letters; ``ascii`` folds
letters only. Masks use ``*`` (any run) and ``?`` (one character), compared
after case folding.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["casefolder", "fold_ascii", "fold_rfc1459", "mask_matches", "compile_mask"]

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


@lru_cache(maxsize=4096)
def compile_mask(mask: str, casemapping: str = "rfc1459") -> re.Pattern[str]:
    """A compiled regular expression for a (folded) glob mask."""
    fold = casefolder(casemapping)
    parts: list[str] = []
    for ch in fold(mask):
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def mask_matches(mask: str, name: str, casemapping: str = "rfc1459") -> bool:
    """Whether ``name`` (e.g. ``nick!user@host``) matches the glob ``mask``."""
    return compile_mask(mask, casemapping).fullmatch(casefolder(casemapping)(name)) is not None
