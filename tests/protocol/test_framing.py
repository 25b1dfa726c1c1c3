"""Framing a byte stream into lines: any split, CRLF or LF, length limits."""

from __future__ import annotations

import pytest

from relaychat.protocol.framing import LineBuffer, TooLong


def test_one_message_split_over_many_reads_is_one_line() -> None:
    buf = LineBuffer()
    data = b"PRIVMSG #c :hello world\r\n"
    out = []
    for i in range(len(data)):
        out.extend(buf.feed(data[i : i + 1]))
    assert out == [b"PRIVMSG #c :hello world"]


def test_many_messages_in_one_read_are_separate_lines() -> None:
    buf = LineBuffer()
    assert buf.feed(b"A\r\nB\nC\r\nD") == [b"A", b"B", b"C"]
    assert buf.pending() == 1
    assert buf.feed(b"\r\n") == [b"D"]


def test_line_over_512_bytes_is_too_long_and_the_next_line_survives() -> None:
    buf = LineBuffer(512, 8191)
    long_line = b"PRIVMSG #c :" + b"x" * 600 + b"\r\n"
    out = buf.feed(long_line + b"PING x\r\n")
    assert out == [TooLong(tags=False), b"PING x"]


def test_exactly_512_bytes_with_crlf_is_accepted() -> None:
    buf = LineBuffer(512, 8191)
    line = b"A" * 510
    assert buf.feed(line + b"\r\n") == [line]
    assert buf.feed(b"A" * 511 + b"\r\n") == [TooLong(tags=False)]


def test_tags_have_their_own_budget() -> None:
    buf = LineBuffer(512, 8191)
    tags = b"@+x=" + b"y" * 4000
    assert buf.feed(tags + b" PRIVMSG #c :hi\r\n") == [tags + b" PRIVMSG #c :hi"]
    huge = b"@+x=" + b"y" * 9000
    assert buf.feed(huge + b" PRIVMSG #c :hi\r\n") == [TooLong(tags=True)]


def test_endless_line_without_newline_is_bounded_and_discarded() -> None:
    buf = LineBuffer(512, 8191)
    out = []
    for _ in range(100):
        out.extend(buf.feed(b"x" * 1000))
        assert buf.pending() <= buf.max_total
    assert out == [TooLong(tags=False)]
    # the rest of that line is dropped; the following line is fine
    assert buf.feed(b"tail\r\nPING ok\r\n") == [b"PING ok"]


# -- CR as a line end ---------------------------------------------------------


def test_lone_cr_ends_a_line_so_a_forged_message_is_a_separate_line() -> None:
    buf = LineBuffer()
    out = buf.feed(b"PRIVMSG #c :hi\r:root!root@server PRIVMSG #c :forged\r\n")
    assert out == [b"PRIVMSG #c :hi", b":root!root@server PRIVMSG #c :forged"]


def test_cr_lf_and_crlf_all_end_lines_and_empty_lines_are_never_yielded() -> None:
    buf = LineBuffer()
    assert buf.feed(b"A\rB\nC\r\nD\n\r\r\n\nE\r") == [b"A", b"B", b"C", b"D", b"E"]
    assert buf.pending() == 0


def test_crlf_split_between_reads_yields_no_empty_line() -> None:
    buf = LineBuffer()
    assert buf.feed(b"PING a\r") == [b"PING a"]
    assert buf.feed(b"\nPING b\r") == [b"PING b"]
    assert buf.feed(b"\n") == []
    assert buf.pending() == 0


def test_no_yielded_line_contains_cr_or_lf() -> None:
    buf = LineBuffer()
    out = buf.feed(b"a\r\r\nb\n\rc\r\n\r\nd\n")
    assert out == [b"a", b"b", b"c", b"d"]


# -- the client tag-data limit (IRCv3 message-tags: 4094 bytes) ---------------


def test_default_tag_data_limit_is_4094_bytes_between_at_and_space() -> None:
    buf = LineBuffer()
    ok = b"@+x=" + b"y" * (4094 - 3)  # tag data: "+x=" + 4091 bytes = 4094
    assert len(ok) - 1 == 4094
    assert buf.feed(ok + b" TAGMSG #c\r\n") == [ok + b" TAGMSG #c"]
    assert buf.feed(b"@+x=" + b"y" * (4094 - 2) + b" TAGMSG #c\r\n") == [TooLong(tags=True)]


def test_tag_data_limit_does_not_count_the_at_or_the_space() -> None:
    buf = LineBuffer(512, 10)
    assert buf.feed(b"@0123456789 PING x\r\n") == [b"@0123456789 PING x"]
    assert buf.feed(b"@0123456789a PING x\r\n") == [TooLong(tags=True)]


def test_rest_of_a_tagged_line_keeps_the_512_byte_limit() -> None:
    buf = LineBuffer()
    tags = b"@+x=" + b"y" * 4000
    ok = b"PRIVMSG #c :" + b"z" * (510 - 12)
    assert buf.feed(tags + b" " + ok + b"\r\n") == [tags + b" " + ok]
    assert buf.feed(tags + b" " + ok + b"z\r\n") == [TooLong(tags=False)]


def test_line_of_only_tags_within_the_limit_is_yielded_for_the_parser_to_refuse() -> None:
    buf = LineBuffer(512, 10)
    assert buf.feed(b"@a=b\r\n") == [b"@a=b"]
    assert buf.feed(b"@0123456789\r\n") == [b"@0123456789"]
    assert buf.feed(b"@0123456789a") == [TooLong(tags=True)]


# -- bounded memory ------------------------------------------------------------


def test_over_long_tags_without_a_space_are_refused_before_the_line_ends() -> None:
    buf = LineBuffer()
    out = buf.feed(b"@" + b"t" * 5000)
    assert out == [TooLong(tags=True)]
    assert buf.pending() == 0
    assert buf.feed(b"t" * 5000 + b" PRIVMSG #c :x\r\nPING ok\r\n") == [b"PING ok"]


def test_over_long_line_is_reported_once_and_discarded_up_to_a_lone_cr() -> None:
    buf = LineBuffer()
    out = buf.feed(b"x" * 600)
    out += buf.feed(b"x" * 600)
    out += buf.feed(b"x\rPING ok\r\n")
    assert out == [TooLong(tags=False), b"PING ok"]


def test_pending_never_exceeds_max_total_whatever_is_fed() -> None:
    buf = LineBuffer()
    for chunk in (
        b"@" + b"a" * 4000,
        b" ",
        b"b" * 100,
        b"b" * 900,
        b"@" * 9000,
        b"\n" + b"c" * 700,
    ):
        buf.feed(chunk)
        assert buf.pending() <= buf.max_total


def test_limits_must_be_sane() -> None:
    with pytest.raises(ValueError):
        LineBuffer(2, 4094)
    with pytest.raises(ValueError):
        LineBuffer(512, -1)


def test_empty_lines_are_counted_though_not_yielded() -> None:
    buf = LineBuffer()
    assert buf.feed(b"\n\n\r\n\r") == [] and buf.blank == 4
    assert buf.feed(b"PING a\r\n") == [b"PING a"] and buf.blank == 0
    assert buf.feed(b"PING b\r\n\r\n") == [b"PING b"] and buf.blank == 1
