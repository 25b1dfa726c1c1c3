"""The parser and serialiser against the standard ircdocs parser test vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from relaychat.protocol.casemap import fold_ascii, fold_rfc1459, mask_matches
from relaychat.protocol.message import (
    Message,
    MessageParseError,
    parse_message,
    split_source,
)

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((VECTORS / name).read_text(encoding="utf-8"))
    tests: list[dict[str, Any]] = data["tests"]
    return tests


@pytest.mark.parametrize("case", _load("msg-split.yaml"), ids=lambda c: c["input"][:40])
def test_split_vectors(case: dict[str, Any]) -> None:
    msg = parse_message(case["input"])
    atoms = case["atoms"]
    assert msg.command == atoms["verb"]
    assert msg.params == atoms.get("params", [])
    assert msg.source == atoms.get("source")
    assert msg.tags == (atoms.get("tags") or {})


@pytest.mark.parametrize("case", _load("msg-join.yaml"), ids=lambda c: c.get("desc", "")[:40])
def test_join_vectors(case: dict[str, Any]) -> None:
    atoms = case["atoms"]
    msg = Message(
        command=atoms["verb"],
        params=list(atoms.get("params", [])),
        source=atoms.get("source"),
        tags={k: ("" if v is None else v) for k, v in (atoms.get("tags") or {}).items()},
    )
    line = msg.serialize()
    if line in case["matches"]:
        return
    # tag order is free; compare parsed forms when the exact string differs
    reparsed = [parse_message(m) for m in case["matches"]]
    assert parse_message(line) in reparsed


@pytest.mark.parametrize("case", _load("userhost-split.yaml"), ids=lambda c: c["source"])
def test_userhost_vectors(case: dict[str, Any]) -> None:
    nick, user, host = split_source(case["source"])
    atoms = case["atoms"]
    assert (nick, user, host) == (atoms.get("nick"), atoms.get("user"), atoms.get("host"))


@pytest.mark.parametrize("case", _load("mask-match.yaml"), ids=lambda c: c["mask"])
def test_mask_vectors(case: dict[str, Any]) -> None:
    for name in case["matches"]:
        assert mask_matches(case["mask"], name), name
    for name in case["fails"]:
        assert not mask_matches(case["mask"], name), name


def test_empty_and_blank_lines_are_parse_errors() -> None:
    for line in ("", "   ", "@a=b", ":src", "@a :src "):
        with pytest.raises(MessageParseError):
            parse_message(line)


def test_round_trip_keeps_trailing_colon_and_spaces() -> None:
    msg = Message("PRIVMSG", ["#c", ":) hi  there"], source="n!u@h", tags={"+x": "a b;c"})
    assert parse_message(msg.serialize()) == msg
    assert msg.to_bytes().endswith(b"\r\n")


def test_empty_last_param_gets_a_colon() -> None:
    assert Message("TOPIC", ["#c", ""]).serialize() == "TOPIC #c :"


def test_rfc1459_casemapping_folds_brackets() -> None:
    assert fold_rfc1459("Nick[]\\~") == "nick{}|^"
    assert fold_ascii("Nick[]") == "nick[]"
