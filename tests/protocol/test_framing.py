"""Framing a byte stream into lines: any split, CRLF or LF, length limits."""

from __future__ import annotations

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
