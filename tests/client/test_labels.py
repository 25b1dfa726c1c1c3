"""Labeled requests: the sans-I/O core fed by hand, then ``Connection.request`` over real
sockets, against a scripted peer and against relaychat's server (both engines)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ircutil import wait_for
from relaychat.client import (
    Batch,
    ClientLimits,
    ClientProtocol,
    Connection,
    ConnectionClosed,
    NotSupported,
    PendingResponse,
    RecentMsgids,
    Response,
    TooManyRequests,
    connect,
)
from relaychat.protocol.message import Message, parse_message, split_source

HOST = "127.0.0.1"
LABELS = "batch labeled-response"


def registered(caps: str = LABELS, **kwargs: Any) -> ClientProtocol:
    proto = ClientProtocol("me", **kwargs)
    proto.start()
    proto.receive_data(f"CAP * LS :{caps}\r\n".encode())
    if caps:
        proto.receive_data(f"CAP * ACK :{caps}\r\n".encode())
    proto.receive_data(b":irc 001 me :Welcome\r\n")
    proto.data_to_send()
    return proto


def feed(proto: ClientProtocol, *lines: str) -> list[Any]:
    return proto.receive_data("".join(line + "\r\n" for line in lines).encode())


def sent(proto: ClientProtocol) -> list[str]:
    return proto.data_to_send().decode().split("\r\n")[:-1]


# -- the core, without sockets ------------------------------------------------------------


def test_a_request_carries_a_fresh_label() -> None:
    proto = registered()
    first = proto.send_request(Message("WHOIS", ["bob"]))
    second = proto.send_request(Message("TAGMSG", ["#c"], None, {"+typing": "active"}))
    assert first != second
    assert sent(proto) == [f"@label={first} WHOIS bob", f"@+typing=active;label={second} TAGMSG #c"]
    assert proto.pending_requests == 2


def test_without_labeled_response_and_batch_a_request_is_not_supported() -> None:
    for caps in ("", "labeled-response", "batch message-tags"):
        proto = registered(caps)
        with pytest.raises(NotSupported):
            proto.send_request(Message("WHOIS", ["bob"]))
        assert sent(proto) == [] and proto.pending_requests == 0


def test_ack_is_an_empty_response() -> None:
    proto = registered()
    label = proto.send_request(Message("PONG", ["x"]))
    (response,) = feed(proto, f"@label={label} :irc ACK")
    assert isinstance(response, Response)
    assert response.label == label and response.messages == [] and response.ack
    assert response.complete and response.error is None and len(response) == 0


def test_one_labeled_message_is_the_response() -> None:
    proto = registered()
    label = proto.send_request(Message("PRIVMSG", ["nobody", "hi"]))
    (response,) = feed(proto, f"@label={label} :irc 401 me nobody :No such nick/channel")
    assert isinstance(response, Response) and not response.ack
    assert [m.command for m in response] == ["401"]
    assert response.error is response.messages[0]


def test_a_labeled_batch_is_the_response_with_nested_batches_flattened() -> None:
    proto = registered()
    label = proto.send_request(Message("WHOIS", ["bob"]))
    got = feed(
        proto,
        f"@label={label} :irc BATCH +w labeled-response",
        "@batch=w :irc 311 me bob b h * :Bob",
        ":bob!b@h PRIVMSG me :not part of it",
        "@batch=w :irc BATCH +n example.com/nested",
        "@batch=n :irc 319 me bob :#c",
        "@batch=w :irc BATCH -n",
        "@batch=w :irc 318 me bob :End of /WHOIS list",
        ":irc BATCH -w",
    )
    plain, response = got
    assert isinstance(plain, Message) and plain.params[-1] == "not part of it"
    assert isinstance(response, Response) and response.complete
    assert [m.command for m in response.messages] == ["311", "319", "318"]
    assert isinstance(response.batch, Batch) and response.batch.type == "labeled-response"
    assert proto.pending_requests == 0


def test_a_label_is_resolved_exactly_once() -> None:
    proto = registered()
    label = proto.send_request(Message("PONG", ["x"]))
    first, again = feed(proto, f"@label={label} :irc ACK", f"@label={label} :irc ACK")
    assert isinstance(first, Response)
    assert isinstance(again, Message) and again.command == "ACK"  # not a second response
    (batch,) = feed(proto, f"@label={label} :irc BATCH +b labeled-response", ":irc BATCH -b")
    assert isinstance(batch, Batch)


def test_a_reply_to_an_unknown_or_cancelled_label_is_an_ordinary_message() -> None:
    proto = registered()
    label = proto.send_request(Message("WHOIS", ["bob"]))
    assert proto.cancel_request(label) and not proto.cancel_request(label)
    got = feed(
        proto,
        "@label=never-sent :irc 401 me x :No such nick",
        f"@label={label} :irc 318 me bob :End",
    )
    assert [type(item) for item in got] == [Message, Message]


def test_a_labeled_batch_pushed_out_by_the_limits_is_an_unfinished_response() -> None:
    proto = registered(limits=ClientLimits(max_batch_lines=3))
    label = proto.send_request(Message("LIST"))
    got = feed(
        proto,
        f"@label={label} :irc BATCH +l labeled-response",
        *(f"@batch=l :irc 322 me #c{i} 1 :topic" for i in range(5)),
        ":irc BATCH -l",
    )
    response, *rest = got
    assert isinstance(response, Response) and not response.complete
    assert len(response.messages) == 3
    assert [m.params[1] for m in rest[:2]] == ["#c3", "#c4"]  # the rest comes plain
    assert isinstance(rest[2], Message) and rest[2].command == "BATCH"


def test_pending_requests_are_bounded() -> None:
    proto = registered(limits=ClientLimits(max_pending_requests=2))
    a = proto.send_request(Message("PING", ["1"]))
    proto.send_request(Message("PING", ["2"]))
    with pytest.raises(TooManyRequests):
        proto.send_request(Message("PING", ["3"]))
    feed(proto, f"@label={a} :irc PONG irc 1")
    proto.send_request(Message("PING", ["3"]))  # room again


def test_a_bad_request_queues_nothing_and_waits_for_nothing() -> None:
    proto = registered()
    with pytest.raises(ValueError):
        proto.send_request(Message("PRIVMSG", ["a b", "text"]))
    with pytest.raises(ValueError):
        proto.send_request(Message("PING", ["x"], None, {"label": "mine"}))
    assert sent(proto) == [] and proto.pending_requests == 0


def test_eof_forgets_pending_requests() -> None:
    proto = registered()
    proto.send_request(Message("WHOIS", ["bob"]))
    proto.receive_eof()
    assert proto.pending_requests == 0


def test_the_labeled_echo_of_a_multiline_message_is_its_batch() -> None:
    proto = registered(LABELS + " echo-message draft/multiline=max-bytes=4096")
    label = proto.send_request(Message("PING", ["stand-in for a multiline batch"]))
    (response,) = feed(
        proto,
        f"@label={label};msgid=m :me!u@h BATCH +e draft/multiline #c",
        "@batch=e :me!u@h PRIVMSG #c :one",
        "@batch=e :me!u@h PRIVMSG #c :two",
        ":irc BATCH -e",
    )
    assert isinstance(response, Response) and response.batch is not None
    multiline = response.batch.multiline()
    assert multiline is not None and multiline.params == ["#c", "one\ntwo"]


def test_fail_is_an_error() -> None:
    response = Response("x", [parse_message(":irc FAIL BATCH MULTILINE_MAX_BYTES 4096 :too long")])
    assert response.error is not None and response.error.command == "FAIL"
    assert Response("x", [parse_message(":irc 352 me #c u h s n H :0 r")]).error is None


# -- Connection against a scripted peer -----------------------------------------------------


def register_with_labels(peer: Any, nick: str = "tester", offer: str = LABELS) -> None:
    peer.expect("CAP LS")
    peer.send_line(f":irc.test CAP * LS :{offer}")
    wanted = peer.expect("CAP REQ").partition(":")[2] or peer.expect("CAP REQ")
    peer.send_line(f":irc.test CAP {nick} ACK :{wanted}")
    peer.expect("CAP END")
    peer.send_line(f":irc.test 001 {nick} :Welcome")


def connected(scripted_peer: Any, **kwargs: Any) -> tuple[Connection, Any]:
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(connect, HOST, scripted_peer.port, "tester", **kwargs)
        peer = scripted_peer.accept()
        register_with_labels(peer)
        return future.result(10), peer


def test_request_times_out_and_the_late_reply_comes_as_an_ordinary_message(
    scripted_peer: Any,
) -> None:
    conn, peer = connected(scripted_peer)
    with conn:
        with pytest.raises(TimeoutError, match="WHOIS"):
            conn.request("WHOIS", "bob", timeout=0.2)
        label = parse_message(peer.expect("@label=")).tags["label"]
        peer.send_line(f"@label={label} :irc.test 318 tester bob :End of /WHOIS list")
        late = conn.wait_for(lambda m: isinstance(m, Message) and m.command == "318")
        assert isinstance(late, Message) and late.tags["label"] == label
        peer.close()


def test_disconnect_fails_every_waiting_request(scripted_peer: Any) -> None:
    conn, peer = connected(scripted_peer)
    try:
        with ThreadPoolExecutor(4) as pool:
            waits = [pool.submit(conn.request, "WHOIS", f"n{i}", timeout=30) for i in range(4)]
            for _ in range(4):
                peer.expect("@label=")  # all four are out and waiting
            peer.close()
            for wait in waits:
                with pytest.raises(ConnectionClosed):
                    wait.result(10)
        with pytest.raises(ConnectionClosed):
            conn.send_request("WHOIS", "late")
    finally:
        conn.close()


def test_send_request_resolves_on_the_reader_thread_in_order(scripted_peer: Any) -> None:
    conn, peer = connected(scripted_peer)
    order: list[str] = []
    threads: list[str] = []
    done = threading.Event()

    def on_item(item: Any) -> None:
        order.append(item.params[-1])

    def on_reply(future: Any) -> None:
        order.append("reply")
        threads.append(threading.current_thread().name)
        done.set()

    with conn:
        conn.on_message(on_item)
        future = conn.send_request("PING :x")
        assert isinstance(future, PendingResponse) and not future.done()
        future.add_done_callback(on_reply)
        label = parse_message(peer.expect("@label=")).tags["label"]
        peer.send_line(":bob!b@h PRIVMSG tester :before")
        peer.send_line(f"@label={label} :irc.test PONG irc.test x")
        peer.send_line(":bob!b@h PRIVMSG tester :after")
        assert done.wait(10)
        conn.wait_for(lambda m: m.params[-1] == "after")
        assert order == ["before", "reply", "after"]
        assert threads == [f"relaychat-reader-{conn.id}"]
        assert [m.command for m in future.result()] == ["PONG"]
        peer.close()


def test_request_in_a_callback_is_refused_send_request_works(scripted_peer: Any) -> None:
    conn, peer = connected(scripted_peer)
    errors: list[BaseException] = []
    futures: list[PendingResponse] = []

    def on_item(item: Any) -> None:
        if isinstance(item, Message) and item.command == "PRIVMSG":
            try:
                conn.request("WHOIS", "bob")
            except RuntimeError as exc:
                errors.append(exc)
            futures.append(conn.send_request("WHOIS", "bob"))

    with conn:
        conn.on_message(on_item)
        peer.send_line(":bob!b@h PRIVMSG tester :go")
        label = parse_message(peer.expect("@label=")).tags["label"]
        peer.send_line(f"@label={label} :irc.test 401 tester bob :No such nick")
        wait_for(lambda: futures, what="the callback's send_request returned")
        assert futures[0].result(10).error is not None
        assert len(errors) == 1
        peer.close()


def test_a_cancelled_request_gets_no_result(scripted_peer: Any) -> None:
    conn, peer = connected(scripted_peer)
    with conn:
        future = conn.send_request("WHOIS", "bob")
        assert future.cancel() and future.cancelled()
        label = parse_message(peer.expect("@label=")).tags["label"]
        peer.send_line(f"@label={label} :irc.test 401 tester bob :No such nick")
        assert conn.wait_for(lambda m: m.command == "401").tags["label"] == label
        peer.close()


def test_batches_come_through_the_connection_whole(scripted_peer: Any) -> None:
    conn, peer = connected(scripted_peer)
    with conn:
        peer.send_line("@msgid=m1 :bob!b@h BATCH +1 draft/multiline #c")
        peer.send_line("@batch=1 :bob!b@h PRIVMSG #c :first")
        peer.send_line(":carol!c@h PRIVMSG #c :outside")
        peer.send_line("@batch=1 :bob!b@h PRIVMSG #c :second")
        peer.send_line(":irc.test BATCH -1")
        outside = conn.wait_for(lambda m: isinstance(m, Message) and m.command == "PRIVMSG")
        batch = conn.get(10)  # the next thing after it
        assert isinstance(outside, Message) and outside.params[-1] == "outside"
        assert isinstance(batch, Batch) and batch.msgid == "m1"
        multiline = batch.multiline()
        assert multiline is not None and multiline.params == ["#c", "first\nsecond"]
        peer.close()


def test_privmsg_sends_a_multiline_batch_when_offered(scripted_peer: Any) -> None:
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(connect, HOST, scripted_peer.port, "tester")
        peer = scripted_peer.accept()
        register_with_labels(peer, offer="batch draft/multiline=max-bytes=100,max-lines=2")
        conn = future.result(10)
    with conn:
        assert conn.multiline_limits is not None and conn.multiline_limits.max_lines == 2
        conn.privmsg("#c", "one\ntwo\nthree")
        assert [peer.read_line() for _ in range(5)] == [
            "BATCH +m1 draft/multiline #c",
            "@batch=m1 PRIVMSG #c one",
            "@batch=m1 PRIVMSG #c two",
            "BATCH -m1",
            "PRIVMSG #c three",  # max-lines=2: the third line is a batch of its own
        ]
        peer.close()


def test_recent_msgids_across_a_reconnect(scripted_peer: Any) -> None:
    seen = RecentMsgids()
    first, peer = connected(scripted_peer, seen_msgids=seen)
    with first:
        peer.send_line("@msgid=a :bob!b@h PRIVMSG #c :one")
        first.wait_for(lambda m: m.params[-1:] == ["one"])
        peer.close()
        assert first.disconnected.wait(10)
    second, peer = connected(scripted_peer, seen_msgids=seen)  # the program reconnects
    with second:
        peer.send_line("@msgid=a :bob!b@h PRIVMSG #c :one")  # played again
        peer.send_line("@msgid=b :bob!b@h PRIVMSG #c :two")
        got = second.wait_for(lambda m: isinstance(m, Message) and m.command == "PRIVMSG")
        assert got.params[-1] == "two"  # "one" was seen before the reconnect
        peer.close()


# -- Connection against a real server ---------------------------------------------------------


def from_nick(nick: str, command: str) -> Callable[[Any], bool]:
    def match(item: Any) -> bool:
        return (
            isinstance(item, Message)
            and item.command == command
            and item.source is not None
            and split_source(item.source)[0].lower() == nick.lower()
        )

    return match


def test_request_is_not_supported_without_the_caps(irc_server: Any) -> None:
    with connect(HOST, irc_server.port, "plain", caps=()) as plain:
        assert not plain.supports_labels
        with pytest.raises(NotSupported):
            plain.request("WHOIS", "plain")


def test_concurrent_requests_while_messages_arrive(irc_server: Any, no_server_errors: None) -> None:
    """Eight threads make requests at once while another client floods a channel: each
    thread gets its own replies, and the flood reaches the stream, none of the replies."""
    threads, rounds, flood = 8, 15, 300
    alice = connect(HOST, irc_server.port, "alice")
    bob = connect(HOST, irc_server.port, "bob")
    others = [connect(HOST, irc_server.port, f"user{i}", caps=()) for i in range(threads)]
    streamed: list[Message | Batch] = []
    alice.on_message(streamed.append)
    try:
        for conn in (alice, bob):
            conn.request("JOIN", "#flood")
        for i, other in enumerate(others):
            other.send("AWAY", f"away {i}")

        def flooder() -> None:
            for n in range(flood):
                bob.privmsg("#flood", f"flood {n}")

        def asker(i: int) -> list[str]:
            problems = []
            for r in range(rounds):
                whois = alice.request("WHOIS", f"user{i}", timeout=30)
                codes = [m.command for m in whois]
                if (
                    codes[0] != "311"
                    or codes[-1] != "318"
                    or whois.messages[0].params[1] != f"user{i}"
                ):
                    problems.append(f"whois user{i}: {codes}")
                away = [m.params[-1] for m in whois if m.command == "301"]
                if away != [f"away {i}"]:
                    problems.append(f"away of user{i}: {away}")
                if not alice.request("PONG", f"t{i}-{r}", timeout=30).ack:
                    problems.append("PONG not an ACK")
                missing = alice.request(f"PRIVMSG nobody{i} :x", timeout=30)
                if [m.params[1] for m in missing] != [f"nobody{i}"]:
                    problems.append(f"401: {missing.messages}")
            return problems

        flood_thread = threading.Thread(target=flooder)
        flood_thread.start()
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(asker, range(threads)))
        flood_thread.join(30)
        assert results == [[]] * threads
        last = f"flood {flood - 1}"
        alice.wait_for(lambda m: isinstance(m, Message) and m.params[-1:] == [last], timeout=30)
        texts = [
            m.params[-1] for m in streamed if isinstance(m, Message) and m.command == "PRIVMSG"
        ]
        assert texts == [f"flood {n}" for n in range(flood)]
        labeled = [m for m in streamed if "label" in m.tags]
        assert labeled == []  # every labeled reply went to its requester
        assert not any(
            isinstance(m, Message) and m.command in ("311", "401", "ACK") for m in streamed
        )
    finally:
        for conn in (alice, bob, *others):
            conn.close()


def test_labeled_join_and_echo_carry_msgids(irc_server: Any) -> None:
    caps = ("batch", "labeled-response", "message-tags", "echo-message")
    with connect(HOST, irc_server.port, "alice", caps=caps) as alice:
        joined = alice.request("JOIN", "#m")
        assert [m.command for m in joined] == ["JOIN", "353", "366"]
        assert joined.batch is not None and joined.messages[0].msgid
        echo = alice.request("PRIVMSG", "#m", "hello")
        (msg,) = echo.messages
        assert msg.params == ["#m", "hello"] and msg.msgid and msg.msgid != joined.messages[0].msgid
