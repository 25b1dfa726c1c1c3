"""Property tests for the wire layer: parse/serialize and the framer.

The rules they check are stated in the docstrings of
:mod:`relaychat.protocol.message` and :mod:`relaychat.protocol.framing`.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from relaychat.protocol.framing import Frame, LineBuffer, TooLong
from relaychat.protocol.message import (
    Message,
    MessageParseError,
    MessageSerializeError,
    parse_message,
    sanitize_text,
    valid_middle,
    valid_tag_key,
    valid_trailing,
)

# -- strategies ---------------------------------------------------------------------

# A broad alphabet: spaces, colons, tabs and other control characters, '@', '!',
# escapes' backslash and ';', and any non-ASCII character -- but no CR, LF, NUL
# (and no lone surrogates, which are not text).
_TRICKY = " :@!;=\\\t\x01\x0b\x0c\x7f\x85\xa0\u2028\u3000☺"
_SAFE_CHARS = st.one_of(
    st.sampled_from(_TRICKY),
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0"),
)
_safe_text = st.text(_SAFE_CHARS, max_size=30)
_word = st.text(_SAFE_CHARS.filter(lambda c: c != " "), min_size=1, max_size=20)
_middle = _word.filter(lambda p: p[0] != ":")
_command = st.one_of(
    st.sampled_from(["PRIVMSG", "NOTICE", "001", "433", "MODE", "cap"]),
    _middle.filter(lambda c: c[0] != "@"),
)
_source = st.one_of(st.none(), _word)
_key_part = st.text(st.sampled_from("abcXYZ019-"), min_size=1, max_size=8)
_tag_key = st.builds(
    lambda plus, vendor, name: plus + (vendor + "/" if vendor else "") + name,
    st.sampled_from(["", "+"]),
    st.one_of(st.just(""), st.from_regex(r"[a-z0-9.-]{1,10}", fullmatch=True)),
    _key_part,
)
# tag values may hold anything but NUL: CR, LF, ';', ' ' and '\' are escaped
_tag_value = st.text(
    st.one_of(
        st.sampled_from(" ;\\\r\n=:"),
        st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
    ),
    max_size=20,
)


@st.composite
def valid_messages(draw: st.DrawFn) -> Message:
    middles = draw(st.lists(_middle, max_size=6))
    params = middles + draw(st.lists(_safe_text, max_size=1))
    return Message(
        command=draw(_command),
        params=params,
        source=draw(_source),
        tags=draw(st.dictionaries(_tag_key, _tag_value, max_size=4)),
    )


# anything at all, CR, LF and NUL included
_ANY_CHARS = st.one_of(
    st.sampled_from(" :@\r\n\0\\;"),
    st.characters(exclude_categories=["Cs"]),
)
_any_text = st.text(_ANY_CHARS, max_size=20)


@st.composite
def any_messages(draw: st.DrawFn) -> Message:
    return Message(
        command=draw(st.one_of(st.sampled_from(["PRIVMSG", ""]), _any_text)),
        params=draw(st.lists(_any_text, max_size=5)),
        source=draw(st.one_of(st.none(), _any_text)),
        tags=draw(st.dictionaries(_any_text, _any_text, max_size=3)),
    )


# -- parse / serialize ----------------------------------------------------------------


@given(valid_messages())
@example(Message("PRIVMSG", ["#c", ":) hi  there"], source="n!u@h", tags={"+x": "a b;c"}))
@example(Message("MODE", ["#c", "+b", "foo:bar"]))
@example(Message("TOPIC", ["#c", ""]))
@example(Message("foo", ["b\tar", "baz"]))
def test_valid_messages_round_trip(msg: Message) -> None:
    line = msg.serialize()
    assert "\r" not in line and "\n" not in line and "\0" not in line
    assert parse_message(line) == msg
    assert msg.to_bytes() == line.encode() + b"\r\n"


@given(any_messages())
@example(Message("PRIVMSG", ["#c", "hi\r:root!root@server PRIVMSG #c :forged"]))
@example(Message("MODE", ["#c", "+b", "foo bar", "x"]))
@example(Message("PRIVMSG", ["", "x"]))
@example(Message("PING", ["x"], source="a b"))
@example(Message(":x", ["y"]))
@example(Message("TAGMSG", ["#c"], tags={"a;b": ""}))
def test_serialize_refuses_or_writes_a_line_that_parses_back_the_same(msg: Message) -> None:
    try:
        line = msg.serialize()
    except MessageSerializeError:
        return
    assert "\r" not in line and "\n" not in line and "\0" not in line
    back = parse_message(line)
    assert back.command == msg.command
    assert back.params == msg.params
    assert back.source == (msg.source or None)
    assert back.tags == msg.tags


@given(any_messages())
def test_serialize_accepts_exactly_what_the_validators_accept(msg: Message) -> None:
    params = msg.params
    ok = (
        valid_middle(msg.command)
        and msg.command[0] != "@"
        and all(valid_middle(p) for p in params[:-1])
        and all(valid_trailing(p) for p in params[-1:])
        and (not msg.source or (" " not in msg.source and valid_trailing(msg.source)))
        and all(valid_tag_key(k) and "\0" not in v for k, v in msg.tags.items())
    )
    try:
        msg.serialize()
    except MessageSerializeError:
        assert not ok
    else:
        assert ok


@given(st.text(_ANY_CHARS, max_size=60))
@example("")
@example(":")
@example("@")
@example("@a :b")
@example(": ")
@example("\r\n")
@example(":src :x")
def test_parse_raises_only_message_parse_error_and_its_result_serializes(line: str) -> None:
    try:
        msg = parse_message(line)
    except MessageParseError:
        return
    # whatever parses can be written again, and reads back the same
    assert parse_message(msg.serialize()) == msg


@given(_any_text)
def test_sanitized_text_is_a_valid_last_parameter(text: str) -> None:
    clean = sanitize_text(text)
    assert valid_trailing(clean)
    assert len(clean) == len(text)
    assert parse_message(Message("PRIVMSG", ["#c", clean]).serialize()).params[-1] == clean


# -- framing -----------------------------------------------------------------------------

# lengths on either side of the limits in _limits()
_near_limits = st.sampled_from(
    [0, 1, 9, 10, 11, 17, 18, 19, 61, 62, 63, 99, 100, 101, 509, 510, 511]
)
_near_tag_limits = st.sampled_from([0, 1, 9, 10, 11, 99, 100, 101, 4093, 4094, 4095])
_line_bytes = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"PRIVMSG #c :hi", b"@+a=b PING x", b"", b"\r", b"\n", b"\r\n"]),
    st.builds(lambda n: b"x" * n, st.one_of(st.integers(0, 700), _near_limits)),
    st.builds(lambda n: b"@" + b"t" * n, _near_tag_limits),
    st.builds(lambda n: b"@" + b"t" * n + b" PING x", _near_tag_limits),
    st.builds(lambda n: b"@a " + b"x" * n, _near_limits),
)
_terminator = st.sampled_from([b"\r\n", b"\n", b"\r", b"\n\r", b"\r\r\n", b""])
_stream = st.lists(st.tuples(_line_bytes, _terminator), max_size=30).map(
    lambda parts: b"".join(line + end for line, end in parts)
)


def _feed_in_pieces(buf: LineBuffer, data: bytes, cuts: list[int]) -> list[Frame]:
    out: list[Frame] = []
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        out += buf.feed(data[prev:cut])
        assert buf.pending() <= buf.max_total
        prev = cut
    return out


def _limits() -> st.SearchStrategy[tuple[int, int]]:
    return st.sampled_from([(512, 4094), (20, 10), (3, 0), (64, 100)])


@settings(max_examples=300)
@given(_stream, st.data(), _limits())
@example(b"PRIVMSG #c :hi\r:root!root@server PRIVMSG #c :forged\r\n", None, (512, 4094))
def test_framer_gives_the_same_frames_however_the_stream_is_split(
    data: bytes, draw: st.DataObject | None, limits: tuple[int, int]
) -> None:
    whole = LineBuffer(*limits).feed(data)
    if draw is None:
        cuts = list(range(len(data)))  # one byte at a time
    else:
        cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=12))
    assert _feed_in_pieces(LineBuffer(*limits), data, cuts) == whole
    for frame in whole:
        if isinstance(frame, bytes):
            assert frame
            assert b"\r" not in frame and b"\n" not in frame


def _verdict(line: bytes, line_length: int, tags_length: int) -> Frame:
    """The module docstring's limits, written out plainly."""
    if line[:1] == b"@":
        tags, _, rest = line[1:].partition(b" ")
        if len(tags) > tags_length:
            return TooLong(tags=True)
        if rest and len(rest) + 2 > line_length:
            return TooLong(tags=False)
        return line
    return TooLong(tags=False) if len(line) + 2 > line_length else line


@given(_stream, _limits())
def test_framer_lines_are_the_stream_split_on_cr_and_lf(
    data: bytes, limits: tuple[int, int]
) -> None:
    *lines, tail = data.replace(b"\r", b"\n").split(b"\n")
    expected = [_verdict(line, *limits) for line in lines if line]
    # an unfinished line already over a limit is reported without waiting for its end
    if isinstance(_verdict(tail, *limits), TooLong):
        expected.append(_verdict(tail, *limits))
    assert LineBuffer(*limits).feed(data) == expected


@given(st.integers(1, 20_000), st.integers(1, 5000), st.sampled_from([b"x", b"@", b" "]))
def test_endless_line_stays_bounded_and_is_reported_once(
    size: int, chunk: int, fill: bytes
) -> None:
    buf = LineBuffer()
    data = fill * size
    out: list[Frame] = []
    for i in range(0, len(data), chunk):
        out += buf.feed(data[i : i + chunk])
        assert buf.pending() <= buf.max_total
    out += buf.feed(b"\r\nPING ok\r\n")
    too_long = size - 1 > 4094 if fill == b"@" else size + 2 > 512
    first = TooLong(tags=fill == b"@") if too_long else data
    assert out == [first, b"PING ok"]
