"""History and read markers in the sans-I/O client core, against scripted server lines
(IRCv3 draft/chathistory and draft/read-marker)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from relaychat.protocol.client import (
    CHATHISTORY,
    DEFAULT_CAPS,
    MAX_READ_MARKERS,
    READ_MARKER,
    ClientProtocol,
    History,
    NotSupported,
    Received,
    Response,
)
from relaychat.protocol.message import Message

HISTORY_CAPS = f"batch labeled-response message-tags server-time {CHATHISTORY}"


def registered(caps: str = HISTORY_CAPS, isupport: str = "", **kwargs: Any) -> ClientProtocol:
    proto = ClientProtocol("me", **kwargs)
    proto.start()
    proto.receive_data(f"CAP * LS :{caps}\r\n".encode())
    if caps:
        proto.receive_data(f"CAP * ACK :{caps}\r\n".encode())
    proto.receive_data(b":irc 001 me :Welcome\r\n")
    if isupport:
        proto.receive_data(f":irc 005 me {isupport} :are supported\r\n".encode())
    proto.data_to_send()
    return proto


def feed(proto: ClientProtocol, *lines: str) -> list[Received]:
    return proto.receive_data("".join(line + "\r\n" for line in lines).encode())


def sent(proto: ClientProtocol) -> list[str]:
    return proto.data_to_send().decode().split("\r\n")[:-1]


def history_batch(label: str, target: str, *rows: tuple[str, str]) -> list[str]:
    """A labeled chathistory batch of (msgid, text) rows from alice."""
    lines = [f"@label={label} :irc BATCH +h chathistory {target}"]
    for i, (msgid, text) in enumerate(rows):
        stamp = f"2026-01-01T00:00:{i:02d}.000Z"
        lines.append(f"@batch=h;time={stamp};msgid={msgid} :alice!a@h PRIVMSG {target} :{text}")
    return [*lines, ":irc BATCH -h"]


def test_chathistory_and_read_marker_are_requested_when_offered() -> None:
    assert CHATHISTORY in DEFAULT_CAPS and READ_MARKER in DEFAULT_CAPS
    proto = ClientProtocol("me")
    proto.start()
    proto.data_to_send()
    feed(proto, f"CAP * LS :batch labeled-response {CHATHISTORY} {READ_MARKER} sasl")
    (req,) = sent(proto)
    assert req == f"CAP REQ :batch {CHATHISTORY} {READ_MARKER} labeled-response"


@pytest.mark.parametrize(
    ("kwargs", "wire"),
    [
        ({}, "CHATHISTORY LATEST #t * 50"),
        ({"limit": 10}, "CHATHISTORY LATEST #t * 10"),
        ({"limit": 500}, "CHATHISTORY LATEST #t * 100"),  # the server's limit
        ({"before": "msgid=abc", "limit": 5}, "CHATHISTORY BEFORE #t msgid=abc 5"),
        (
            {"after": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)},
            "CHATHISTORY AFTER #t timestamp=2026-01-02T03:04:05.678Z 50",
        ),
        (
            {"before": Message("PRIVMSG", ["#t", "x"], None, {"msgid": "m9", "time": "T"})},
            "CHATHISTORY BEFORE #t msgid=m9 50",
        ),
        (
            {"before": Message("PRIVMSG", ["#t", "x"], None, {"time": "2026-01-01T00:00:00Z"})},
            "CHATHISTORY BEFORE #t timestamp=2026-01-01T00:00:00Z 50",
        ),
        (
            {"after": "msgid=a", "before": "msgid=b", "limit": 3},
            "CHATHISTORY BETWEEN #t msgid=a msgid=b 3",
        ),
    ],
)
def test_send_history_names_the_subcommand_and_caps_the_limit(
    kwargs: dict[str, Any], wire: str
) -> None:
    proto = registered(isupport="CHATHISTORY=100 MSGREFTYPES=msgid,timestamp")
    assert proto.history_limit == 100 and proto.history_enabled
    label = proto.send_history("#t", **kwargs)
    assert sent(proto) == [f"@label={label} {wire}"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"before": "msgid="},
        {"before": "timestamp=yesterday"},
        {"before": "msgid=a b"},
        {"before": Message("PRIVMSG", ["#t", "no tags"])},
        {"limit": 0},
    ],
)
def test_send_history_rejects_bad_references_and_sends_nothing(kwargs: dict[str, Any]) -> None:
    proto = registered()
    with pytest.raises(ValueError):
        proto.send_history("#t", **kwargs)
    with pytest.raises(ValueError):
        proto.send_history("#a b")
    assert sent(proto) == [] and proto.pending_requests == 0


def test_history_reply_is_a_response_with_history_and_no_live_duplicates() -> None:
    proto = registered()
    (live,) = feed(proto, "@msgid=m2 :alice!a@h PRIVMSG #t :two (live first)")
    assert isinstance(live, Message)
    label = proto.send_history("#t")
    sent(proto)
    assert proto.history_pending("#T")
    (response,) = feed(
        proto, *history_batch(label, "#t", ("m1", "one"), ("m2", "two"), ("m3", "3"))
    )
    assert isinstance(response, Response) and response.label == label
    history = response.history
    assert isinstance(history, History) and not history.auto and history.error is None
    assert [m.params[-1] for m in history] == ["one", "3"]  # m2 was shown live
    assert history.oldest is not None and history.oldest.msgid == "m1"
    assert history.oldest.tags["time"] == "2026-01-01T00:00:00.000Z"
    assert not proto.history_pending("#t")
    # a live message already delivered as history is not delivered again; a new one is
    assert feed(proto, "@msgid=m3 :alice!a@h PRIVMSG #t :3") == []
    (new,) = feed(proto, "@msgid=m4 :alice!a@h PRIVMSG #t :four")
    assert new.params[-1] == "four"
    # asking again gives the same history (no live duplicate in it)
    again = proto.send_history("#t")
    (response,) = feed(proto, *history_batch(again, "#t", ("m1", "one"), ("m3", "3")))
    assert isinstance(response, Response) and response.history is not None
    assert [m.msgid for m in response.history] == ["m1", "m3"]


def test_history_refused_carries_the_fail() -> None:
    proto = registered()
    label = proto.send_history("#nope")
    fail = f"@label={label} :irc FAIL CHATHISTORY INVALID_TARGET LATEST #nope :No such channel"
    (response,) = feed(proto, fail)
    assert isinstance(response, Response) and response.history is not None
    assert response.history.error is not None and response.history.messages == []
    assert response.error is response.history.error


def test_own_join_fetches_the_last_lines_as_one_history_item() -> None:
    proto = registered(isupport="CHATHISTORY=20", join_history=50)
    (join,) = feed(proto, ":me!u@h JOIN #t")
    assert isinstance(join, Message)
    (request,) = sent(proto)
    label = request.split()[0].removeprefix("@label=")
    assert request.endswith("CHATHISTORY LATEST #t * 20")  # capped by ISUPPORT
    assert proto.history_pending("#t")
    (live,) = feed(proto, "@msgid=m5 :bob!b@h PRIVMSG #t :live meanwhile")
    assert live.params[-1] == "live meanwhile"
    (item,) = feed(proto, *history_batch(label, "#t", ("m4", "old"), ("m5", "live meanwhile")))
    assert isinstance(item, History) and item.auto and item.target == "#t"
    assert [m.params[-1] for m in item] == ["old"]
    feed(proto, ":bob!b@h JOIN #t", ":me!u@h PART #t")
    assert sent(proto) == []  # only our own JOIN fetches


def test_no_history_without_the_capability() -> None:
    proto = registered(caps="batch labeled-response", join_history=50)
    assert not proto.history_enabled
    feed(proto, ":me!u@h JOIN #t")
    assert sent(proto) == []
    with pytest.raises(NotSupported):
        proto.send_history("#t")
    plain = registered(caps=CHATHISTORY, join_history=50)  # no labels: no history either
    feed(plain, ":me!u@h JOIN #t")
    assert sent(plain) == []


def test_markread_from_the_server_updates_the_markers_and_is_delivered() -> None:
    proto = registered(caps=f"{READ_MARKER} server-time")
    got = feed(
        proto,
        ":irc MARKREAD #Chan timestamp=2026-01-04T14:33:26.123Z",
        ":irc MARKREAD bob *",
        ":irc MARKREAD #bad timestamp=yesterday",
        ":irc MARKREAD #short",
    )
    assert [m.command for m in got if isinstance(m, Message)] == ["MARKREAD"] * 4
    assert proto.read_markers == {"#Chan": "2026-01-04T14:33:26.123Z", "bob": None}
    assert proto.read_marker("#chan") == "2026-01-04T14:33:26.123Z"
    assert proto.read_marker("#unknown") is None


def test_mark_read_sends_only_a_newer_marker() -> None:
    proto = registered(caps=READ_MARKER)
    feed(proto, ":irc MARKREAD #t timestamp=2026-01-04T14:33:26.123Z")
    assert not proto.mark_read("#t", "2026-01-04T14:33:26.123Z")
    assert not proto.mark_read("#t", "timestamp=2026-01-01T00:00:00.000Z")
    assert sent(proto) == []
    msg = Message("PRIVMSG", ["#t", "x"], None, {"time": "2026-01-05T00:00:00.000Z"})
    assert proto.mark_read("#t", msg)
    assert sent(proto) == ["MARKREAD #t timestamp=2026-01-05T00:00:00.000Z"]
    assert proto.read_marker("#t") == "2026-01-04T14:33:26.123Z"  # until the server says
    feed(proto, ":irc MARKREAD #t timestamp=2026-01-05T00:00:00.000Z")
    assert proto.read_marker("#t") == "2026-01-05T00:00:00.000Z"
    assert proto.mark_read("bob", datetime(2026, 2, 1, tzinfo=UTC))
    assert sent(proto) == ["MARKREAD bob timestamp=2026-02-01T00:00:00.000Z"]
    proto.request_read_marker("bob")
    assert sent(proto) == ["MARKREAD bob"]
    for bad in ("not a time", Message("PRIVMSG", ["#t", "no time"])):
        with pytest.raises(ValueError):
            proto.mark_read("#t", bad)
    with pytest.raises(ValueError):
        proto.mark_read("a b", "2026-01-01T00:00:00.000Z")
    assert sent(proto) == []


def test_mark_read_needs_the_capability() -> None:
    proto = registered(caps="server-time")
    with pytest.raises(NotSupported):
        proto.mark_read("#t", "2026-01-01T00:00:00.000Z")
    feed(proto, ":irc MARKREAD #t timestamp=2026-01-04T14:33:26.123Z")  # kept anyway
    assert proto.read_marker("#t") == "2026-01-04T14:33:26.123Z"


def test_read_markers_are_bounded() -> None:
    proto = registered(caps=READ_MARKER)
    lines = [f":irc MARKREAD #c{i} *" for i in range(MAX_READ_MARKERS + 5)]
    feed(proto, *lines)
    markers = proto.read_markers
    assert len(markers) == MAX_READ_MARKERS
    assert "#c0" not in markers and f"#c{MAX_READ_MARKERS + 4}" in markers
