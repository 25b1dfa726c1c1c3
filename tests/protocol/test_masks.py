"""The glob mask matcher: the ircdocs vectors, agreement with a reference matcher
(exhaustive on tiny inputs, property-based on small ones), case folding, and a
bound on the work adversarial masks can cause."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from relaychat.protocol.casemap import fold_ascii, fold_rfc1459, mask_matches
from relaychat.protocol.masks import Mask, compile_mask, match_mask

VECTORS = Path(__file__).parent / "vectors"


def reference_match(mask: str, subject: str) -> bool:
    """Glob matching by dynamic programming over mask x subject: obviously right,
    O(len(mask) * len(subject)), too slow for the server."""
    # reach[j]: the mask read so far matches subject[:j]
    reach = [True] + [False] * len(subject)
    for ch in mask:
        if ch == "*":
            reach = list(itertools.accumulate(reach, lambda a, b: a or b))
        else:
            reach = [False] + [
                reach[j] and (ch == "?" or ch == subject[j]) for j in range(len(subject))
            ]
    return reach[-1]


# ------------------------------------------------------------------ vectors
def _mask_vectors() -> list[dict[str, Any]]:
    data = yaml.safe_load((VECTORS / "mask-match.yaml").read_text(encoding="utf-8"))
    tests: list[dict[str, Any]] = data["tests"]
    return tests


@pytest.mark.parametrize("case", _mask_vectors(), ids=lambda c: c["mask"])
def test_ircdocs_mask_vectors(case: dict[str, Any]) -> None:
    for name in case["matches"]:
        assert match_mask(case["mask"], name), name
        assert mask_matches(case["mask"], name), name
        assert reference_match(case["mask"], name), name
    for name in case["fails"]:
        assert not match_mask(case["mask"], name), name
        assert not mask_matches(case["mask"], name), name
        assert not reference_match(case["mask"], name), name


# --------------------------------------------------------------- edge cases
@pytest.mark.parametrize(
    ("mask", "subject", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("***", "", True),
        ("?", "", False),
        ("*?*", "", False),
        ("?", "\n", True),  # "?" and "*" match any character, newlines too
        ("a*b", "a\r\nb", True),
        ("ab*ba", "aba", False),  # the prefix and the suffix may not overlap
        ("ab*ba", "abba", True),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("*ab*ab*", "abab", True),
        ("*ab*ab*", "aab", False),
        ("*aba*", "ababa", True),
        ("a?c*?", "abcd", True),
        ("a?c*?", "abc", False),
        ("*?b?*", "ab", False),
        ("*?b?*", "abc", True),
        ("*a?*b", "bab", False),  # a middle segment may not run into the suffix
        ("*a?*b", "aabb", True),
        ("a.b", "axb", False),  # regex metacharacters are plain characters
        ("a.b", "a.b", True),
        ("(a)+|{1}", "(a)+|{1}", True),
        ("^a$", "a", False),
        ("\\*", "\\xyz", True),  # no escape character: a backslash, then a star
        ("\\*", "*", False),
        ("caf?!*@*", "café!u@h", True),
    ],
)
def test_edge_cases(mask: str, subject: str, expected: bool) -> None:
    assert match_mask(mask, subject) is expected
    assert reference_match(mask, subject) is expected


def test_compiled_masks_are_cached_and_reusable() -> None:
    mask = compile_mask("*!*@*.example.com")
    assert isinstance(mask, Mask)
    assert compile_mask("*!*@*.example.com") is mask
    assert mask.min_length == len("!@.example.com")
    assert mask.matches("nick!user@host.example.com")
    assert not mask.matches("nick!user@example.com")


# ------------------------------------------------- agreement with reference
def test_exhaustively_agrees_with_reference_on_tiny_inputs() -> None:
    # every mask up to 5 characters against every subject up to 6: 173,355 pairs
    subjects = ["".join(p) for n in range(7) for p in itertools.product("ab", repeat=n)]
    for n in range(6):
        for chars in itertools.product("ab*?", repeat=n):
            mask = "".join(chars)
            compiled = compile_mask(mask)
            for subject in subjects:
                assert compiled.matches(subject) is reference_match(mask, subject), (mask, subject)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab*?", max_size=12), st.text(alphabet="ab", max_size=16))
def test_agrees_with_reference(mask: str, subject: str) -> None:
    assert match_mask(mask, subject) is reference_match(mask, subject)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*?", max_size=10), st.data())
def test_agrees_with_reference_on_subjects_built_to_match(mask: str, data: st.DataObject) -> None:
    # random subjects over "ab" rarely match long masks; build ones that should
    subject = "".join(
        data.draw(st.text(alphabet="ab", max_size=4))
        if ch == "*"
        else data.draw(st.sampled_from("ab"))
        if ch == "?"
        else ch
        for ch in mask
    )
    assert match_mask(mask, subject)
    assert reference_match(mask, subject)


# ------------------------------------------------------------- case folding
RFC1459_PAIRS = {"a": "A", "b": "B", "[": "{", "]": "}", "\\": "|", "~": "^"}
_UPPER_OR_LOWER = {c: v for k, v in RFC1459_PAIRS.items() for c in (k, v)}
_FOLDABLE = "".join(_UPPER_OR_LOWER)


def _respell(text: str, flips: list[bool]) -> str:
    """``text`` with some foldable characters swapped for their other form."""
    return "".join(
        RFC1459_PAIRS.get(ch, ch) if flip and ch in RFC1459_PAIRS else ch
        for ch, flip in zip(text, flips + [False] * len(text), strict=False)
    )


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=_FOLDABLE + "*?", max_size=10),
    st.text(alphabet=_FOLDABLE, max_size=12),
)
def test_rfc1459_matching_is_reference_matching_of_folded_strings(mask: str, subject: str) -> None:
    expected = reference_match(fold_rfc1459(mask), fold_rfc1459(subject))
    assert mask_matches(mask, subject, "rfc1459") is expected
    assert mask_matches(mask, subject) is expected  # rfc1459 is the default


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="ab[]\\~*?", max_size=10),
    st.text(alphabet="ab[]\\~", max_size=12),
    st.lists(st.booleans(), max_size=12),
    st.lists(st.booleans(), max_size=12),
)
def test_rfc1459_ignores_case_and_bracket_forms(
    mask: str, subject: str, mask_flips: list[bool], subject_flips: list[bool]
) -> None:
    upper_mask, upper_subject = _respell(mask, mask_flips), _respell(subject, subject_flips)
    expected = reference_match(mask, subject)
    assert mask_matches(upper_mask, subject) is expected
    assert mask_matches(mask, upper_subject) is expected
    assert mask_matches(upper_mask, upper_subject) is expected


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=_FOLDABLE + "*?", max_size=10),
    st.text(alphabet=_FOLDABLE, max_size=12),
)
def test_ascii_matching_folds_letters_only(mask: str, subject: str) -> None:
    expected = reference_match(fold_ascii(mask), fold_ascii(subject))
    assert mask_matches(mask, subject, "ascii") is expected


def test_bracket_forms_are_equal_under_rfc1459_only() -> None:
    assert mask_matches("[foo]*", "{FOO}bar")
    assert mask_matches("*\\~", "x|^")
    assert not mask_matches("[foo]*", "{foo}bar", "ascii")
    assert mask_matches("FOO*", "foobar", "ascii")
    with pytest.raises(ValueError):
        mask_matches("*", "x", "strict-rfc1459x")


# ------------------------------------------------------- adversarial masks
N = 400
RUN = "a" * N

# (mask, subject, expected): masks that drive a backtracking matcher into
# exponential or high-polynomial time against runs of "a"
ADVERSARIAL = [
    ("*a" * (N // 2 - 1) + "*b", RUN, False),
    ("*a" * (N // 2 - 1) + "*b", RUN[:-1] + "b", True),
    ("*a" * (N // 2 - 1) + "*b*", RUN, False),
    ("*a" * (N // 2 - 2) + "*b*a", RUN, False),
    ("*a?" * (N // 3) + "*b", RUN, False),
    ("*a?" * (N // 3 - 1) + "*b*", RUN, False),
    ("*?a" * (N // 3 - 1) + "*b*", RUN, False),
    ("*" + "a?" * (N // 2 - 1) + "b*", RUN, False),
    ("?" * N, RUN, True),
    ("?" * (N - 1) + "b", RUN, False),
    ("*" * N, RUN, True),
    ("*" * (N - 1) + "b", RUN, False),
    ("*?" * (N // 2), RUN, True),
    ("*?" * (N // 2) + "b", RUN, False),
    ("a*" * (N // 2), RUN, True),
    ("a*" * (N // 2 - 1) + "ab", RUN, False),
]


def _describe(mask: str, subject: str) -> str:
    return f"{mask[:6]}..{mask[-4:]}[{len(mask)}]-vs-..{subject[-2:]}[{len(subject)}]"


@pytest.mark.parametrize(
    ("mask", "subject", "expected"),
    ADVERSARIAL,
    ids=[_describe(mask, subject) for mask, subject, _ in ADVERSARIAL],
)
def test_adversarial_masks_give_right_answers(mask: str, subject: str, expected: bool) -> None:
    assert len(mask) <= N + 1
    assert match_mask(mask, subject) is expected


def test_thousand_adversarial_matches_take_well_under_two_seconds() -> None:
    # Each match takes microseconds (a backtracking matcher takes longer than the
    # age of the universe for the first one); 2 s for 1,000 leaves a huge margin
    # for a loaded machine, so this is no wall-clock flake, yet it fails at once
    # if matching ever backtracks again.
    compiled = [(compile_mask(mask), subject, expected) for mask, subject, expected in ADVERSARIAL]
    rounds = 1000 // len(compiled) + 1
    start = time.perf_counter()
    for _ in range(rounds):
        for mask, subject, expected in compiled:
            assert mask.matches(subject) is expected
    elapsed = time.perf_counter() - start
    assert rounds * len(compiled) >= 1000
    assert elapsed < 2.0, f"{rounds * len(compiled)} adversarial matches took {elapsed:.2f}s"


class _CountingStr(str):
    """A subject that records every substring search run on it."""

    calls: list[tuple[str, int]]

    def startswith(self, prefix: Any, *args: Any) -> bool:
        self.calls.append(("startswith", args[0] if args else 0))
        return str.startswith(self, prefix, *args)

    def endswith(self, suffix: Any, *args: Any) -> bool:
        self.calls.append(("endswith", args[0] if args else 0))
        return str.endswith(self, suffix, *args)

    def find(self, sub: str, *args: Any) -> int:  # type: ignore[override]
        self.calls.append(("find", args[0] if args else 0))
        return str.find(self, sub, *args)


@pytest.mark.parametrize(
    "mask",
    ["*a" * 199 + "*b", "*a" * 199 + "*b*", "x*" + "a*" * 198 + "b*y", "*" * 400, "a*" * 200],
)
def test_adversarial_mask_costs_one_forward_scan_per_segment(mask: str) -> None:
    # Count the work instead of timing it: one anchored comparison for each end,
    # then one substring search per middle segment, each starting past where
    # the previous one stopped, so no stretch of the subject is scanned twice.
    subject = _CountingStr("x" + RUN + "y" if mask.startswith("x") else RUN)
    subject.calls = []
    compile_mask(mask).matches(subject)
    segments = [part for part in mask.split("*")[1:-1] if part]
    assert len(subject.calls) <= len(segments) + 2
    starts = [pos for name, pos in subject.calls if name == "find"]
    assert starts == sorted(set(starts)), "a search went back over scanned text"
