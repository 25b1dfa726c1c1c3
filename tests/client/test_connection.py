"""The client library: the sans-I/O core fed by hand, then the threaded Connection over
real loopback sockets (a scripted peer for what a server will not do on demand, a real
server subprocess for the rest)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from relaychat.client import (
    ClientProtocol,
    Connection,
    ConnectionClosed,
    Phase,
    RegistrationError,
    connect,
)
from relaychat.protocol.message import Message, split_source

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def lines(proto: ClientProtocol) -> list[str]:
    return proto.data_to_send().decode().split("\r\n")[:-1]


def registering(nick: str = "alice", **kwargs: Any) -> ClientProtocol:
    proto = ClientProtocol(nick, **kwargs)
    proto.start()
    proto.data_to_send()
    return proto


def from_nick(nick: str, command: str) -> Callable[[Message], bool]:
    def match(msg: Message) -> bool:
        return (
            msg.command == command
            and msg.source is not None
            and split_source(msg.source)[0].lower() == nick.lower()
        )

    return match


def reader_threads(conn: Connection) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"relaychat-reader-{conn.id}"]


# -- the core, without sockets -------------------------------------------------


def test_start_sends_pass_cap_ls_nick_user_in_order() -> None:
    proto = ClientProtocol("alice", password="secret", realname="Alice Liddell")
    proto.start()
    assert lines(proto) == [
        "PASS secret",
        "CAP LS 302",
        "NICK alice",
        "USER alice 0 * :Alice Liddell",
    ]
    assert proto.phase is Phase.REGISTERING


def test_lines_are_framed_on_lf_or_crlf_across_chunks() -> None:
    proto = registering()
    assert proto.receive_data(b":a NOTICE x :one\r\n:a NOTICE x :t") != []
    got = proto.receive_data(b"wo\n\r\n\n:a NOTICE x :three\r\n")
    assert [m.params[-1] for m in got] == ["two", "three"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    proto = registering()
    (msg,) = proto.receive_data(b":a PRIVMSG #c :caf\xe9 ok\r\n")
    assert msg.params[-1] == "caf\ufffd ok"


def test_overlong_line_is_dropped_and_the_next_one_parsed() -> None:
    proto = registering()
    got = proto.receive_data(b":a NOTICE x :" + b"y" * 20000 + b"\r\n:a NOTICE x :after\r\n")
    assert [m.params[-1] for m in got] == ["after"]


def test_ping_is_answered_with_the_same_token() -> None:
    proto = registering()
    proto.receive_data(b"PING :abc 123\r\n")
    assert lines(proto) == ["PONG :abc 123"]


def test_multiline_cap_ls_then_req_ack_end() -> None:
    proto = registering(caps=["server-time", "echo-message", "not-offered"])
    proto.receive_data(b":irc CAP * LS * :multi-prefix server-time\r\n")
    assert lines(proto) == []  # more LS lines to come
    proto.receive_data(b":irc CAP * LS :echo-message sasl=PLAIN,EXTERNAL\r\n")
    assert lines(proto) == ["CAP REQ :echo-message server-time"]
    proto.receive_data(b":irc CAP alice ACK :echo-message server-time\r\n")
    assert lines(proto) == ["CAP END"]
    assert proto.enabled_caps == {"echo-message", "server-time"}
    assert proto.available_caps["sasl"] == "PLAIN,EXTERNAL"


def test_cap_nak_ends_negotiation_with_nothing_enabled() -> None:
    proto = registering(caps=["server-time"])
    proto.receive_data(b"CAP * LS :server-time\r\nCAP * NAK :server-time\r\n")
    assert lines(proto) == ["CAP REQ server-time", "CAP END"]
    assert proto.enabled_caps == set()


def test_server_without_cap_registers_without_cap_end() -> None:
    proto = registering()
    proto.receive_data(b":irc 421 * CAP :Unknown command\r\n:irc 001 alice :hi\r\n")
    assert lines(proto) == []
    assert proto.phase is Phase.REGISTERED


def test_nick_in_use_before_welcome_tries_alternates() -> None:
    proto = registering()
    proto.receive_data(b":irc 433 * alice :Nickname is already in use\r\n")
    assert lines(proto) == ["NICK alice_"]
    proto.receive_data(b":irc 432 * alice_ :Erroneous nickname\r\n")
    assert lines(proto) == ["NICK alice__"]
    proto.receive_data(b":irc 001 alice__ :Welcome\r\n")
    assert proto.nick == "alice__" and proto.phase is Phase.REGISTERED
    proto.receive_data(b":irc 433 alice__ bob :Nickname is already in use\r\n")
    assert lines(proto) == []  # after registration a 433 is the user's business


def test_running_out_of_nicks_fails_registration() -> None:
    proto = registering(alt_nicks=["b"])
    proto.receive_data(b":irc 433 * alice :in use\r\n:irc 433 * b :in use\r\n")
    assert proto.phase is Phase.FAILED
    assert proto.error is not None and "no usable nick" in proto.error


def test_own_nick_change_is_tracked_with_server_casemapping() -> None:
    proto = registering("Al[ice]")
    proto.receive_data(b":irc 001 Al[ice] :hi\r\n")
    proto.receive_data(b":AL{ICE}!u@h NICK :alice2\r\n")  # rfc1459: [] fold to {}
    assert proto.nick == "alice2"
    proto.receive_data(b":irc 005 alice2 CASEMAPPING=ascii CHANTYPES=# :are supported\r\n")
    assert proto.isupport == {"CASEMAPPING": "ascii", "CHANTYPES": "#"}
    proto.receive_data(b":bob!u@h NICK :carol\r\n")
    assert proto.nick == "alice2"


def test_error_before_welcome_fails_registration() -> None:
    proto = registering()
    proto.receive_data(b"ERROR :Closing link: banned\r\n")
    assert proto.phase is Phase.FAILED and proto.error == "Closing link: banned"
    proto.receive_eof()
    assert proto.phase is Phase.CLOSED


@pytest.mark.parametrize(
    "message",
    [
        Message("PRIVMSG", ["#c", "two\r\nQUIT"]),
        Message("PRIVMSG", ["#a b", "text"]),
        Message("PRIVMSG", ["", "text"]),
        Message("PRIVMSG", [":x", "text"]),
        Message("JOIN #c"),
    ],
)
def test_unserializable_messages_are_refused(message: Message) -> None:
    proto = registering()
    with pytest.raises(ValueError):
        proto.send(message)
    assert proto.data_to_send() == b""


# -- Connection against a scripted peer ---------------------------------------------


def connect_in_background(port: int, nick: str = "tester", **kwargs: Any) -> Future[Connection]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(connect, "127.0.0.1", port, nick, **kwargs)
    pool.shutdown(wait=False)
    return future


def test_ping_is_answered_before_and_after_registration(scripted_peer: Any) -> None:
    future = connect_in_background(scripted_peer.port)
    peer = scripted_peer.accept()
    peer.expect("USER")
    peer.send_line("PING :early")
    assert peer.expect("PONG") == "PONG early"
    peer.welcome()
    conn = future.result(10)
    try:
        peer.send_line(":irc.test PING :later token")
        assert peer.expect("PONG") == "PONG :later token"
        assert conn.wait_for(lambda m: m.params == ["later token"]).command == "PING"
    finally:
        conn.close()


def test_cap_negotiation_result_is_reported(scripted_peer: Any) -> None:
    future = connect_in_background(scripted_peer.port, caps=["server-time", "away-notify"])
    peer = scripted_peer.accept()
    peer.expect("CAP LS 302")
    peer.send_line(":irc.test CAP * LS * :multi-prefix server-time")
    peer.send_line(":irc.test CAP * LS :batch")
    assert peer.expect("CAP REQ") == "CAP REQ server-time"
    peer.send_line(":irc.test CAP tester ACK :server-time")
    peer.expect("CAP END")
    peer.send_line(":irc.test 001 tester :Welcome")
    with future.result(10) as conn:
        assert conn.enabled_caps == {"server-time"}
        assert set(conn.available_caps) == {"multi-prefix", "server-time", "batch"}
        peer.close()  # the server goes away; __exit__ must not hang on QUIT


def test_password_refused_raises_registration_error(scripted_peer: Any) -> None:
    future = connect_in_background(scripted_peer.port, password="wrong")
    peer = scripted_peer.accept()
    assert peer.read_line() == "PASS wrong"
    peer.expect("USER")
    peer.send_line(":irc.test 464 * :Password incorrect")
    peer.send_line("ERROR :Closing link")
    peer.close()
    with pytest.raises(RegistrationError, match="Password incorrect"):
        future.result(10)


def test_no_welcome_times_out_and_cleans_up(scripted_peer: Any) -> None:
    conn = Connection("127.0.0.1", scripted_peer.port, "slow")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(conn.connect, 0.5)
        peer = scripted_peer.accept()
        peer.expect("USER")
        with pytest.raises(TimeoutError):
            future.result(10)
    assert conn.disconnected.is_set()
    assert conn.wait_closed(5)
    with pytest.raises(EOFError):
        peer.read_line()  # the client closed its socket


def test_wait_for_times_out_and_get_sees_what_came_before(scripted_peer: Any) -> None:
    future = connect_in_background(scripted_peer.port)
    peer = scripted_peer.accept()
    peer.register()
    with future.result(10) as conn:
        with pytest.raises(TimeoutError):
            conn.wait_for(lambda m: m.command == "NOPE", timeout=0.2)
        peer.send_line(":bob!b@h PRIVMSG tester :first")
        peer.send_line(":bob!b@h PRIVMSG tester :second")
        assert conn.wait_for(lambda m: m.params[-1] == "second").command == "PRIVMSG"
        with pytest.raises(TimeoutError):
            conn.get(timeout=0.1)  # "first" was consumed by wait_for
        peer.close()


def test_send_after_server_closed_raises_connection_closed(scripted_peer: Any) -> None:
    future = connect_in_background(scripted_peer.port)
    peer = scripted_peer.accept()
    peer.register()
    conn = future.result(10)
    peer.close()
    assert conn.disconnected.wait(10)
    with pytest.raises(ConnectionClosed):
        conn.privmsg("#c", "hello?")
    list(conn)  # drains what is left and ends instead of blocking
    assert list(conn) == []
    conn.close()


# -- Connection against a real server -------------------------------------------------


def test_connect_registers_and_tracks_own_nick(irc_server: Any) -> None:
    with connect(HOST, irc_server.port, "alice") as alice:
        assert alice.registered and alice.nick == "alice"
        alice.send("NICK", "alice2")
        alice.wait_for(lambda m: m.command == "NICK")
        assert alice.nick == "alice2"


def test_nick_collision_on_registration_takes_alternate(irc_server: Any) -> None:
    with (
        connect(HOST, irc_server.port, "dup") as first,
        connect(HOST, irc_server.port, "dup") as second,
    ):
        assert first.nick == "dup"
        assert second.nick == "dup_"
        second.wait_for(lambda m: m.command == "433")  # the refusal is delivered too


def test_full_duplex_callback_delivery_while_another_thread_sends(irc_server: Any) -> None:
    alice = connect(HOST, irc_server.port, "alice")
    bob = connect(HOST, irc_server.port, "bob")
    try:
        alice.join("#t")
        alice.wait_for(from_nick("alice", "JOIN"))
        bob.join("#t")
        alice.wait_for(from_nick("bob", "JOIN"))

        stop = threading.Event()
        sending = threading.Event()
        sender_done = threading.Event()
        delivered: list[tuple[Message, bool, str]] = []
        got_it = threading.Event()
        sent = 0

        def sender() -> None:
            nonlocal sent
            try:
                while not stop.is_set() and sent < 100_000:
                    alice.send("PRIVMSG", "alice", f"note to self {sent}")
                    sent += 1
                    if sent == 50:
                        sending.set()
            finally:
                sender_done.set()

        @alice.on_message
        def on_message(msg: Message) -> None:
            if from_nick("bob", "PRIVMSG")(msg):
                name = threading.current_thread().name
                delivered.append((msg, not sender_done.is_set(), name))
                got_it.set()

        thread = threading.Thread(target=sender)
        thread.start()
        try:
            assert sending.wait(10)
            bob.privmsg("#t", "hello while you type")
            assert got_it.wait(15), "bob's message was not delivered while alice was sending"
        finally:
            stop.set()
            thread.join(15)
        msg, sender_still_running, thread_name = delivered[0]
        assert msg.params == ["#t", "hello while you type"]
        assert sender_still_running
        assert thread_name == f"relaychat-reader-{alice.id}"
    finally:
        alice.close()
        bob.close()


def test_quit_closes_cleanly_and_the_reader_thread_ends(irc_server: Any) -> None:
    alice = connect(HOST, irc_server.port, "alice")
    bob = connect(HOST, irc_server.port, "bob")
    try:
        for conn in (alice, bob):
            conn.join("#t")
            conn.wait_for(from_nick(conn.nick, "JOIN"))
        alice.quit("see you")
        assert alice.disconnected.is_set()
        assert alice.disconnect_error is None
        assert alice.wait_closed(0) and reader_threads(alice) == []
        quit_msg = bob.wait_for(from_nick("alice", "QUIT"))
        assert "see you" in quit_msg.params[-1]
        list(alice)  # the iterator drains and ends instead of blocking
        with pytest.raises(ConnectionClosed):
            alice.send("PING", "x")
    finally:
        alice.close()
        bob.close()


def test_server_death_ends_the_iterator_without_spinning(server_process: Any) -> None:
    conn = connect(server_process.host, server_process.port, "alice")
    ended = threading.Event()
    seen_disconnect: list[BaseException | None] = []
    conn.on_disconnect(seen_disconnect.append)

    def consume() -> None:
        for _ in conn:
            pass
        ended.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        server_process.kill()
        assert ended.wait(10), "iterator did not end when the server died"
        assert conn.disconnected.is_set()
        assert conn.wait_closed(10) and reader_threads(conn) == []
        assert len(seen_disconnect) == 1
    finally:
        conn.close()
        consumer.join(10)


def test_echo_bot_answers_in_channel_and_in_private(server_process: Any, child_env: Any) -> None:
    with connect(server_process.host, server_process.port, "alice") as alice:
        alice.join("#echo")
        alice.wait_for(from_nick("alice", "JOIN"))
        bot = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "echo_bot.py")]
            + [server_process.host, str(server_process.port), "echobot", "#echo"],
            env=child_env,
            stderr=subprocess.PIPE,
        )
        try:
            alice.wait_for(from_nick("echobot", "JOIN"), timeout=20)
            alice.privmsg("#echo", "hello bot")
            reply = alice.wait_for(from_nick("echobot", "PRIVMSG"))
            assert reply.params == ["#echo", "hello bot"]
            alice.privmsg("echobot", "psst")
            reply = alice.wait_for(from_nick("echobot", "PRIVMSG"))
            assert reply.params == ["alice", "psst"]
            server_process.kill()
            assert bot.wait(15) == 0, "the bot should end cleanly when the server goes away"
        finally:
            if bot.poll() is None:
                bot.kill()
            _, err = bot.communicate(timeout=10)
            assert b"Traceback" not in err, err.decode(errors="replace")
