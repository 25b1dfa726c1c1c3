"""The parser and serialiser: the standard ircdocs parser test vectors, then the
validation rules of both directions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from relaychat.protocol.casemap import fold_ascii, fold_rfc1459, mask_matches
from relaychat.protocol.message import (
    Message,
    MessageParseError,
    MessageSerializeError,
    parse_message,
    sanitize_text,
    split_source,
    valid_middle,
    valid_tag_key,
    valid_trailing,
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


# -- validation helpers ----------------------------------------------------------


@pytest.mark.parametrize("p", ["#c", "a:b", "*!*@host", "b\tar", "ünïcode", "x"])
def test_valid_middle_accepts_plain_words(p: str) -> None:
    assert valid_middle(p)
    assert valid_trailing(p)


@pytest.mark.parametrize("p", ["", "foo bar", ":foo", "a\rb", "a\nb", "a\0b", " "])
def test_valid_middle_refuses_empty_space_leading_colon_and_cr_lf_nul(p: str) -> None:
    assert not valid_middle(p)


@pytest.mark.parametrize("p", ["", " ", ":) hi", "a  b :c"])
def test_valid_trailing_accepts_empty_spaces_and_colons(p: str) -> None:
    assert valid_trailing(p)


@pytest.mark.parametrize("p", ["a\rb", "\n", "nul\0"])
def test_valid_trailing_refuses_cr_lf_nul(p: str) -> None:
    assert not valid_trailing(p)


@pytest.mark.parametrize("key", ["a", "msgid", "+draft/reply", "example.com/ddd", "+x-y/z-1"])
def test_valid_tag_keys(key: str) -> None:
    assert valid_tag_key(key)


@pytest.mark.parametrize("key", ["", "+", "a=b", "a;b", "a b", "a_b", "a/", "/a", "a/b/c", "ké"])
def test_invalid_tag_keys(key: str) -> None:
    assert not valid_tag_key(key)


# -- serialize refuses what would not come back intact ------------------------------


def test_middle_parameter_with_a_space_is_refused() -> None:
    # a ban mask given as ":foo bar", echoed as a middle parameter
    with pytest.raises(MessageSerializeError):
        Message("MODE", ["#c", "+b", "foo bar", "extra"]).serialize()
    # as the last parameter it is fine
    assert Message("MODE", ["#c", "+b", "foo bar"]).serialize() == "MODE #c +b :foo bar"


@pytest.mark.parametrize("middle", ["", ":x", "a b", "a\rb", "a\nb", "a\0b"])
def test_invalid_middle_parameters_are_refused(middle: str) -> None:
    with pytest.raises(MessageSerializeError):
        Message("PRIVMSG", [middle, "text"]).serialize()


@pytest.mark.parametrize("last", ["hi\r:root!root@server PRIVMSG #c :forged", "a\nb", "a\0b"])
def test_cr_lf_nul_in_the_last_parameter_is_refused(last: str) -> None:
    msg = Message("PRIVMSG", ["#c", last])
    with pytest.raises(MessageSerializeError):
        msg.serialize()
    with pytest.raises(MessageSerializeError):
        msg.to_bytes()


@pytest.mark.parametrize("command", ["", "PRIV MSG", "PRIVMSG\r\nQUIT", "A\0", ":x", "@x"])
def test_invalid_command_is_refused(command: str) -> None:
    with pytest.raises(MessageSerializeError):
        Message(command, ["#c"]).serialize()


@pytest.mark.parametrize("source", ["a b", "n!u@h\r\nQUIT", "n\0"])
def test_source_with_space_cr_lf_nul_is_refused(source: str) -> None:
    with pytest.raises(MessageSerializeError):
        Message("PING", ["x"], source=source).serialize()


def test_empty_source_is_no_source() -> None:
    assert Message("PING", ["x"], source="").serialize() == "PING x"


def test_invalid_tag_key_is_refused_and_values_are_escaped() -> None:
    with pytest.raises(MessageSerializeError):
        Message("TAGMSG", ["#c"], tags={"a b": "v"}).serialize()
    with pytest.raises(MessageSerializeError):
        Message("TAGMSG", ["#c"], tags={"+k=": "v"}).serialize()
    with pytest.raises(MessageSerializeError):
        Message("TAGMSG", ["#c"], tags={"+k": "nul\0"}).serialize()
    line = Message("TAGMSG", ["#c"], tags={"+k": "a;b c\\d\r\n"}).serialize()
    assert line == "@+k=a\\:b\\sc\\\\d\\r\\n TAGMSG #c"


def test_serialize_error_is_a_value_error_and_not_a_parse_error() -> None:
    assert issubclass(MessageSerializeError, ValueError)
    assert not issubclass(MessageSerializeError, MessageParseError)


# -- sanitize_text -----------------------------------------------------------------


def test_sanitize_text_replaces_cr_lf_nul_by_spaces() -> None:
    assert sanitize_text("hi\r:root PRIVMSG #c :forged\n\0x") == "hi :root PRIVMSG #c :forged  x"


def test_sanitize_text_returns_clean_text_unchanged() -> None:
    text = "nothing to see: here ☺"
    assert sanitize_text(text) is text


def test_sanitized_text_always_serializes_as_the_last_parameter() -> None:
    text = sanitize_text("a\r\nQUIT :bye\0")
    assert parse_message(Message("PRIVMSG", ["#c", text]).serialize()).params == ["#c", text]


# -- parse refuses what serialize refuses --------------------------------------------


@pytest.mark.parametrize(
    "line", ["PRIVMSG #c :a\rb", "PRIVMSG #c :a\nb", "PRIVMSG #c :a\0b", "PING\r\nQUIT"]
)
def test_cr_lf_nul_inside_a_line_is_a_parse_error(line: str) -> None:
    with pytest.raises(MessageParseError):
        parse_message(line)


def test_stray_trailing_crlf_is_still_dropped() -> None:
    assert parse_message("PING x\r\n") == Message("PING", ["x"])


def test_tab_is_part_of_a_parameter_not_a_separator() -> None:
    assert parse_message("foo b\tar baz").params == ["b\tar", "baz"]


def test_tags_with_malformed_keys_are_dropped_and_the_rest_kept() -> None:
    msg = parse_message("@a_b=1;+ok=2;=3;x/y/z PRIVMSG #c :hi")
    assert msg.tags == {"+ok": "2"}
    assert msg.params == ["#c", "hi"]


@pytest.mark.parametrize("line", ["@a=b @x y", ":src :x y", "@a :src @x"])
def test_command_starting_with_at_or_colon_is_a_parse_error(line: str) -> None:
    with pytest.raises(MessageParseError):
        parse_message(line)


def test_empty_source_parses_as_none() -> None:
    assert parse_message(": PING x").source is None


def test_pack_fills_chunks_within_their_room() -> None:
    from relaychat.protocol.message import pack

    items = [f"n{i}" * (i % 7 + 1) for i in range(200)]
    for room, sep in ((50, " "), (11, ","), (3, " ")):
        chunks = list(pack(items, room, sep))
        assert sep.join(chunks) == sep.join(items)  # nothing lost, order kept
        for c in chunks:
            assert len(c.encode()) <= room or sep not in c  # only a lone long item exceeds
    assert list(pack([], 10)) == []
    assert list(pack(["é" * 4, "x"], 9)) == ["éééé", "x"]  # bytes, not characters
