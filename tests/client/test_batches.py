"""Batches, multi-line messages and msgids in the sans-I/O client core: server lines
written by hand (the server on this branch has no draft/multiline), fed as bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relaychat.protocol.client import (
    MULTILINE_CONCAT,
    Batch,
    ClientLimits,
    ClientProtocol,
    MultilineLimits,
    Received,
    RecentMsgids,
    split_lines,
    split_multiline,
)
from relaychat.protocol.message import Message, parse_message


def registered(nick: str = "me", caps: str = "", **kwargs: Any) -> ClientProtocol:
    """A core through registration; ``caps`` is what the server offers and acknowledges."""
    proto = ClientProtocol(nick, **kwargs)
    proto.start()
    proto.receive_data(f"CAP * LS :{caps}\r\n".encode())
    if caps:
        names = " ".join(item.partition("=")[0] for item in caps.split())
        proto.receive_data(f"CAP * ACK :{names}\r\n".encode())
    proto.receive_data(f":irc 001 {nick} :Welcome\r\n".encode())
    proto.data_to_send()
    return proto


def feed(proto: ClientProtocol, *lines: str) -> list[Received]:
    return proto.receive_data("".join(line + "\r\n" for line in lines).encode())


def sent(proto: ClientProtocol) -> list[str]:
    return proto.data_to_send().decode().split("\r\n")[:-1]


def texts(items: list[Message | Batch]) -> list[str]:
    return [m.params[-1] if isinstance(m, Message) else f"<{m.ref}>" for m in items]


# -- grouping ---------------------------------------------------------------------------


def test_a_batch_comes_whole_when_it_ends_and_lines_outside_come_at_once() -> None:
    proto = registered()
    assert feed(proto, "@time=T1;msgid=b1 :irc BATCH +x netsplit irc.a irc.b") == []
    assert feed(proto, "@batch=x :u1!u@h QUIT :irc.a irc.b") == []
    (outside,) = feed(proto, ":bob!b@h PRIVMSG #c :meanwhile")
    assert outside.params[-1] == "meanwhile"
    assert feed(proto, "@batch=x :u2!u@h QUIT :irc.a irc.b") == []
    (batch,) = feed(proto, ":irc BATCH -x")
    assert isinstance(batch, Batch)
    assert (batch.ref, batch.type, batch.params) == ("x", "netsplit", ["irc.a", "irc.b"])
    assert batch.tags == {"time": "T1", "msgid": "b1"} and batch.msgid == "b1"
    assert batch.source == "irc" and batch.closed and batch.complete
    assert [m.source for m in batch.messages()] == ["u1!u@h", "u2!u@h"]
    assert proto.open_batches == 0


def test_nested_batches_sit_where_they_started() -> None:
    proto = registered()
    got = feed(
        proto,
        "@label=L1 :irc BATCH +out labeled-response",
        "@batch=out :irc 001 me :before",
        "@batch=out :irc BATCH +in example.com/inner p1",
        "@batch=in :irc 002 me :inside",
        "@batch=out :irc 003 me :after",
        "@batch=in :irc 004 me :inside, later",
        "@batch=out :irc BATCH -in",
        "@batch=out :irc 005 me :last",
        ":irc BATCH -out",
    )
    (outer,) = got
    assert isinstance(outer, Batch)
    assert texts(outer.items) == ["before", "<in>", "after", "last"]
    inner = outer.items[1]
    assert isinstance(inner, Batch)
    assert (inner.type, inner.params, inner.tags) == ("example.com/inner", ["p1"], {"batch": "out"})
    assert texts(inner.items) == ["inside", "inside, later"]
    assert [m.params[-1] for m in outer.messages()] == [
        "before",
        "inside",
        "inside, later",
        "after",
        "last",
    ]
    assert outer.complete


def test_interleaved_batches_keep_their_own_lines_and_come_as_each_ends() -> None:
    proto = registered()
    assert feed(proto, ":irc BATCH +a t", ":irc BATCH +b t") == []
    for i in range(3):
        assert feed(proto, f"@batch=a :x PRIVMSG #c :a{i}", f"@batch=b :x PRIVMSG #c :b{i}") == []
    (b,) = feed(proto, ":irc BATCH -b")
    (plain, a) = feed(proto, ":x PRIVMSG #c :plain", ":irc BATCH -a")
    assert isinstance(a, Batch) and isinstance(b, Batch) and isinstance(plain, Message)
    assert texts(a.items) == ["a0", "a1", "a2"] and texts(b.items) == ["b0", "b1", "b2"]


def test_a_parent_ending_first_ends_its_open_children_unfinished() -> None:
    proto = registered()
    (outer,) = feed(
        proto,
        ":irc BATCH +p t",
        "@batch=p :irc BATCH +k t",
        "@batch=k :x PRIVMSG #c :in child",
        ":irc BATCH -p",
    )
    assert isinstance(outer, Batch) and outer.closed and not outer.complete
    child = outer.items[0]
    assert isinstance(child, Batch) and not child.closed
    # the child's end and lines after it name a batch that is gone: delivered as they are
    late, end = feed(proto, "@batch=k :x PRIVMSG #c :late", ":irc BATCH -k")
    assert late.params[-1] == "late" and isinstance(end, Message) and end.command == "BATCH"


def test_batch_lines_that_open_or_close_nothing_are_delivered_as_they_are() -> None:
    proto = registered()
    got = feed(
        proto,
        ":irc BATCH -never",  # closes nothing open
        "@batch=nobody :x PRIVMSG #c :in no batch",  # names no open batch
        ":irc BATCH +",  # no reference
        ":irc BATCH +t",  # no type
        ":irc BATCH +d t",
        ":irc BATCH +d t",  # opened twice: the second start is a plain line
        "@batch=d :x PRIVMSG #c :in d",
        ":irc BATCH -d",
    )
    assert [m.command if isinstance(m, Message) else "batch" for m in got] == [
        "BATCH",
        "PRIVMSG",
        "BATCH",
        "BATCH",
        "BATCH",
        "batch",
    ]
    assert isinstance(got[-1], Batch) and texts(got[-1].items) == ["in d"]


def test_a_ping_inside_a_batch_is_answered_at_once() -> None:
    proto = registered()
    feed(proto, ":irc BATCH +x t", "@batch=x PING :now")
    assert sent(proto) == ["PONG now"]
    assert proto.open_batches == 1


# -- bounds -------------------------------------------------------------------------------


def test_batches_that_never_end_are_bounded_in_number() -> None:
    proto = registered(limits=ClientLimits(max_open_batches=4))
    delivered: list[Received] = []
    for i in range(100):
        delivered += feed(proto, f":irc BATCH +b{i} t", f"@batch=b{i} :x PRIVMSG #c :line {i}")
        assert proto.open_batches <= 4
    # the oldest went out unfinished, each with its line, in the order they started
    assert len(delivered) == 96
    assert all(isinstance(b, Batch) and not b.closed for b in delivered)
    assert [texts(b.items) for b in delivered if isinstance(b, Batch)][:2] == [
        ["line 0"],
        ["line 1"],
    ]
    # a line for a batch that was pushed out comes on its own
    (late,) = feed(proto, "@batch=b0 :x PRIVMSG #c :late")
    assert isinstance(late, Message) and late.params[-1] == "late"


def test_a_batch_that_never_ends_is_bounded_in_lines() -> None:
    proto = registered(limits=ClientLimits(max_batch_lines=100))
    feed(proto, ":irc BATCH +big t")
    got = feed(proto, *(f"@batch=big :x PRIVMSG #c :{i}" for i in range(1000)))
    first, *rest = got
    assert isinstance(first, Batch) and not first.closed and len(first.items) == 100
    assert [m.params[-1] for m in rest if isinstance(m, Message)] == [
        str(i) for i in range(100, 1000)
    ]
    assert proto.open_batches == 0  # nothing is held any more
    (end,) = feed(proto, ":irc BATCH -big")
    assert isinstance(end, Message)


def test_open_batches_together_are_bounded_in_bytes() -> None:
    proto = registered(limits=ClientLimits(max_batch_bytes=10_000))
    feed(proto, ":irc BATCH +a t", ":irc BATCH +b t")
    line = "x" * 900
    out = feed(proto, *(f"@batch={'ab'[i % 2]} :x PRIVMSG #c :{line}" for i in range(12)))
    # past 10,000 bytes the oldest batch (a) went out; b keeps its lines
    assert len(out) == 2
    a, later_a = out
    assert isinstance(a, Batch) and a.ref == "a" and not a.closed
    assert isinstance(later_a, Message)
    (b,) = feed(proto, ":irc BATCH -b")
    assert isinstance(b, Batch) and b.complete and len(b.items) == 6


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ClientLimits(max_open_batches=0)
    with pytest.raises(ValueError):
        ClientLimits(max_batch_bytes=0)


def test_eof_forgets_open_batches() -> None:
    proto = registered()
    feed(proto, ":irc BATCH +x t", "@batch=x :x PRIVMSG #c :held")
    proto.receive_eof()
    assert proto.open_batches == 0


# -- msgid ------------------------------------------------------------------------------


def test_msgid_is_a_property_of_messages() -> None:
    assert parse_message("@msgid=abc :x PRIVMSG #c :hi").msgid == "abc"
    assert parse_message(":x PRIVMSG #c :hi").msgid is None
    assert parse_message("@msgid= :x PRIVMSG #c :hi").msgid is None


def test_recent_msgids_drop_what_a_reconnect_plays_again() -> None:
    seen = RecentMsgids()
    first = registered(seen_msgids=seen)
    got = feed(first, "@msgid=1 :x PRIVMSG #c :one", "@msgid=2 :x PRIVMSG #c :two")
    assert len(got) == 2
    first.receive_eof()
    again = registered(seen_msgids=seen)  # the next connection, same memory
    got = feed(
        again,
        ":irc BATCH +h chathistory #c",
        "@batch=h;msgid=1 :x PRIVMSG #c :one",
        "@batch=h;msgid=2 :x PRIVMSG #c :two",
        "@batch=h;msgid=3 :x PRIVMSG #c :three",
        ":irc BATCH -h",
        "@msgid=2 :x PRIVMSG #c :two",
        "@msgid=4 :x PRIVMSG #c :four",
        ":x PRIVMSG #c :no msgid",
    )
    history, *rest = got
    assert isinstance(history, Batch) and texts(history.items) == ["three"]
    assert texts([m for m in rest if isinstance(m, Message)]) == ["four", "no msgid"]


def test_recent_msgids_forget_the_oldest() -> None:
    seen = RecentMsgids(size=3)
    assert [seen.is_duplicate(i) for i in "abcda"] == [False] * 5  # "a" fell out
    assert seen.is_duplicate("d") and len(seen) == 3 and "b" not in seen


def test_a_multiline_message_seen_before_is_dropped_whole() -> None:
    seen = RecentMsgids()
    proto = registered(seen_msgids=seen)
    lines = [
        "@msgid=m1 :bob!b@h BATCH +1 draft/multiline #c",
        "@batch=1 :bob!b@h PRIVMSG #c :a",
        "@batch=1 :bob!b@h PRIVMSG #c :b",
        ":bob!b@h BATCH -1",
    ]
    assert len(feed(proto, *lines)) == 1
    assert feed(proto, *lines) == []


# -- multi-line messages in ----------------------------------------------------------------


def test_a_multiline_batch_reads_as_one_message() -> None:
    proto = registered()
    (batch,) = feed(
        proto,
        "@msgid=xxx;account=acct;time=T :n!u@h BATCH +123 draft/multiline #channel",
        "@batch=123 :n!u@h PRIVMSG #channel hello",
        "@batch=123 :n!u@h PRIVMSG #channel :how is ",
        f"@batch=123;{MULTILINE_CONCAT} :n!u@h PRIVMSG #channel :everyone?",
        "@batch=123 :n!u@h PRIVMSG #channel :",
        "@batch=123 :n!u@h PRIVMSG #channel :after a blank line",
        ":irc BATCH -123",
    )
    assert isinstance(batch, Batch) and batch.msgid == "xxx"
    msg = batch.multiline()
    assert msg is not None
    assert msg.command == "PRIVMSG" and msg.source == "n!u@h"
    assert msg.params == ["#channel", "hello\nhow is everyone?\n\nafter a blank line"]
    assert msg.tags == {"msgid": "xxx", "account": "acct", "time": "T"} and msg.msgid == "xxx"


def test_multiline_of_other_batches_is_none() -> None:
    assert Batch("x", "netsplit", ["a", "b"]).multiline() is None
    assert Batch("x", "draft/multiline", ["#c"]).multiline() is None  # empty
    notice = Batch("x", "draft/multiline", ["#c"], items=[parse_message(":n NOTICE #c :hi")])
    multiline = notice.multiline()
    assert multiline is not None and multiline.command == "NOTICE" and multiline.source == "n"


# -- multi-line messages out ------------------------------------------------------------------

MULTILINE_CAPS = "batch draft/multiline=max-bytes=4096,max-lines=24"


def test_multiline_limits_parse() -> None:
    assert MultilineLimits.parse("max-bytes=4096,max-lines=24") == MultilineLimits(4096, 24)
    assert MultilineLimits.parse("max-bytes=40000,future=1") == MultilineLimits(40000, None)
    assert MultilineLimits.parse("max-lines=5") is None  # max-bytes is required
    assert MultilineLimits.parse("max-bytes=lots") is None
    assert MultilineLimits.parse("") is None


def test_the_multiline_cap_is_requested_and_its_limits_read() -> None:
    proto = ClientProtocol("me")
    proto.start()
    proto.data_to_send()
    proto.receive_data(f"CAP * LS :{MULTILINE_CAPS} echo-message sasl\r\n".encode())
    assert sent(proto) == ["CAP REQ :batch draft/multiline"]
    proto.receive_data(b"CAP * ACK :batch draft/multiline\r\n")
    assert proto.multiline_limits == MultilineLimits(4096, 24)


def test_several_lines_go_as_one_multiline_batch() -> None:
    proto = registered(caps=MULTILINE_CAPS)
    proto.send_text("PRIVMSG", "#c", "hello\nhow is everyone?\n\nbye")
    assert sent(proto) == [
        "BATCH +m1 draft/multiline #c",
        "@batch=m1 PRIVMSG #c hello",
        "@batch=m1 PRIVMSG #c :how is everyone?",
        "@batch=m1 PRIVMSG #c :",
        "@batch=m1 PRIVMSG #c bye",
        "BATCH -m1",
    ]


def test_one_short_line_goes_as_a_plain_message_even_with_multiline() -> None:
    proto = registered(caps=MULTILINE_CAPS)
    proto.send_text("NOTICE", "bob", "\n\njust this\n")
    assert sent(proto) == ["NOTICE bob :just this"]
    proto.send_text("PRIVMSG", "bob", "\n \n")
    assert sent(proto) == ["PRIVMSG bob : "]  # a space is text, not a blank line
    proto.send_text("PRIVMSG", "bob", "\n\n")
    assert sent(proto) == []


def test_without_multiline_each_non_empty_line_is_a_message() -> None:
    proto = registered(caps="batch")  # no draft/multiline
    proto.send_text("PRIVMSG", "#c", "one\n\ntwo\r\nthree")
    assert sent(proto) == ["PRIVMSG #c one", "PRIVMSG #c two", "PRIVMSG #c three"]


@pytest.mark.parametrize("caps", ["batch", MULTILINE_CAPS])
def test_only_cr_and_lf_break_lines_not_formatting_codes(caps: str) -> None:
    proto = registered(caps=caps)
    text = "\x1ditalic\x1d \x1estruck\x1e \x0b\x0c\x1c\x85\u2028\u2029"
    proto.send_text("PRIVMSG", "#c", text)
    (line,) = sent(proto)
    assert parse_message(line).params[-1] == text


def test_a_long_line_is_cut_between_words_and_joined_again() -> None:
    proto = registered(caps=MULTILINE_CAPS)
    words = " ".join(f"wörd{i:03d}" for i in range(120))  # about 1,100 bytes
    proto.send_text("PRIVMSG", "#c", words)
    lines = [parse_message(line) for line in sent(proto)]
    assert lines[0].params == ["+m1", "draft/multiline", "#c"]
    body = lines[1:-1]
    assert len(body) >= 3
    assert [MULTILINE_CONCAT in m.tags for m in body] == [False] + [True] * (len(body) - 1)
    assert all(m.params[-1].endswith(" ") for m in body[:-1])  # cut after a space
    assert "".join(m.params[-1] for m in body) == words
    nick_target = len("me") + len("#c")
    assert all(len(m.params[-1].encode()) <= 512 - 107 - nick_target for m in body)


def test_a_text_over_the_limits_becomes_several_batches() -> None:
    proto = registered(caps="batch draft/multiline=max-bytes=20,max-lines=3")
    proto.send_text("PRIVMSG", "#c", "l1\nl2\nl3\nl4\nsome longer line\nx")
    batches: list[list[str]] = []
    for line in sent(proto):
        msg = parse_message(line)
        if msg.command == "BATCH" and msg.params[0].startswith("+"):
            batches.append([])
        elif msg.command == "PRIVMSG":
            if "batch" in msg.tags:
                batches[-1].append(msg.params[-1])
            else:
                batches.append([msg.params[-1]])  # a batch of one line goes plain
    assert batches == [["l1", "l2", "l3"], ["l4", "some longer line"], ["x"]]


def test_an_unsendable_text_queues_nothing() -> None:
    proto = registered(caps=MULTILINE_CAPS)
    with pytest.raises(ValueError):
        proto.send_text("PRIVMSG", "#c", "fine\nnot\0fine")
    with pytest.raises(ValueError):
        proto.send_text("PRIVMSG", "bad target", "a\nb")
    assert sent(proto) == []


def joined(batch: list[tuple[str, bool]]) -> str:
    out = ""
    for i, (line, concat) in enumerate(batch):
        out += line if concat or i == 0 else "\n" + line
    return out


@given(
    st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60),
        max_size=12,
    ).map("\n".join),
    st.integers(8, 200),
    st.one_of(st.none(), st.integers(1, 6)),
    st.integers(4, 80),
)
def test_split_multiline_keeps_the_text_within_the_limits(
    text: str, max_bytes: int, max_lines: int | None, line_bytes: int
) -> None:
    limits = MultilineLimits(max_bytes, max_lines)
    batches = split_multiline(text, limits, line_bytes)
    for batch in batches:
        assert batch and batch[0][0] and batch[-1][0]  # no blank line at either end
        assert not batch[0][1]  # a batch never starts with a concat line
        assert len(joined(batch).encode()) <= max_bytes
        assert max_lines is None or len(batch) <= max_lines
        assert all(len(line.encode()) <= min(line_bytes, max_bytes) for line, _ in batch)
        assert all(line for line, concat in batch if concat)  # concat lines are never blank
    # nothing but blank lines (and where the batches were cut) is lost
    expected = [line for line in split_lines(text) if line]
    got = [line for batch in batches for line in joined(batch).split("\n") if line]
    assert "".join(got) == "".join(expected)


def test_a_batch_is_passed_over_by_code_that_picks_messages_by_command() -> None:
    batch = Batch("x", "draft/multiline", ["#c"])
    assert batch.command == "BATCH" and batch.command != "PRIVMSG"
