"""Hostile and broken peers over real sockets, for both engines: a slow reader,
a vanished client, bad input, floods, garbage, connection and registration limits.
In every case the server keeps serving everyone else."""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ircutil import RawClient, wait_for


def conn_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("relaychat-conn-"))


def open_connections(server: Any, engine: str) -> int:
    """What the engine itself holds per connection (sockets, reader threads)."""
    if engine == "threads":
        return len(server.server.conns)
    return len(server.server.connections)


def drain_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the server closes the connection; everything read."""
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if not ready:
            continue
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not data:
            return got
        got += data
    raise AssertionError(f"server did not close the connection; read {got[-300:]!r}")


# ------------------------------------------------------------- slow reader
class SmallWindowClient(RawClient):
    """A RawClient whose receive buffer is set small before connecting, so the
    kernel cannot hide a client that stops reading."""

    def __init__(self, port: int, rcvbuf: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.buf = b""
        self.lines = []
        self.closed = False
        self.nick = None


def test_slow_reader_is_dropped_while_others_keep_receiving(
    start_server: Callable[..., Any],
) -> None:
    server = start_server(sendq=65536)
    slow = SmallWindowClient(server.port, rcvbuf=4096)
    flooder = RawClient(server.port)
    watcher = RawClient(server.port)
    try:
        slow.register("slow")
        flooder.register("flooder")
        watcher.register("watcher")
        for c in (slow, flooder, watcher):
            c.join("#flood")
        flooder.expect(lambda m: m.command == "JOIN" and m.source.startswith("watcher!"))
        # from here on, slow never reads again

        text = "x" * 400
        seq = 0
        dropped = False
        deadline = time.monotonic() + 30
        while not dropped:
            assert time.monotonic() < deadline, "the slow reader was never dropped"
            batch = [f"PRIVMSG #flood :{seq + i} {text}" for i in range(50)]
            flooder.sock.sendall("".join(line + "\r\n" for line in batch).encode())
            for i in range(50):
                msg = watcher.expect(lambda m: m.command in ("PRIVMSG", "QUIT"))
                if msg.command == "QUIT":
                    assert msg.source is not None and msg.source.startswith("slow!")
                    assert msg.params[-1] == "Max SendQ exceeded"
                    dropped = True
                    msg = watcher.expect("PRIVMSG")
                assert msg.params[-1].split()[0] == str(seq + i), "watcher missed a message"
            seq += 50

        quit_ = flooder.expect("QUIT")
        assert quit_.source is not None and quit_.source.startswith("slow!")
        assert quit_.params[-1] == "Max SendQ exceeded"
        # everyone else goes on as before
        flooder.send(f"PRIVMSG #flood :{seq} after")
        assert watcher.expect("PRIVMSG").params[-1] == f"{seq} after"
        wait_for(lambda: server.core.find_user("slow") is None, what="slow to be gone")
        drain_until_closed(slow.sock)
    finally:
        for c in (slow, flooder, watcher):
            c.close()


# ------------------------------------------------------------ vanished client
@pytest.mark.parametrize("how", ["reset", "eof"])
def test_vanished_client_is_cleaned_up_and_peers_see_quit(
    start_server: Callable[..., Any], engine: str, how: str
) -> None:
    server = start_server()
    peer = RawClient(server.port)
    try:
        peer.register("peer")
        peer.join("#room")
        sessions_before = len(server.core.sessions)
        registered_before = server.core.registry.registered_count
        conns_before = open_connections(server, engine)
        threads_before = conn_threads()

        gone = RawClient(server.port)
        gone.register("gone")
        gone.join("#room")
        peer.expect("JOIN")
        wait_for(lambda: open_connections(server, engine) == conns_before + 1)
        if engine == "threads":
            assert conn_threads() == threads_before + 1
        if how == "reset":  # RST instead of FIN: close with a zero linger time
            gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()

        quit_ = peer.expect("QUIT")
        assert quit_.source is not None and quit_.source.startswith("gone!")
        wait_for(lambda: len(server.core.sessions) == sessions_before, what="session removal")
        assert server.core.registry.registered_count == registered_before
        assert server.core.find_user("gone") is None
        wait_for(lambda: open_connections(server, engine) == conns_before, what="socket closed")
        # a reader thread that spun on a dead socket would never end
        wait_for(lambda: conn_threads() == threads_before, what="the reader thread to end")

        peer.send("PRIVMSG #room :anyone?")
        peer.send("PING :alive")
        assert peer.expect("PONG").params[-1] == "alive"
    finally:
        peer.close()


# ----------------------------------------------------------------- bad input
def test_overlong_line_is_417_and_the_connection_stays_usable(
    client: Callable[..., RawClient],
) -> None:
    c = client("longer")
    c.send("PRIVMSG longer :" + "x" * 600)
    assert c.expect("417").params[0] == "longer"
    c.send("PING :still-usable")
    assert c.expect("PONG").params[-1] == "still-usable"


def test_invalid_utf8_is_fail_invalid_utf8(client: Callable[..., RawClient]) -> None:
    c = client("bytes")
    c.send(b"PRIVMSG bytes :caf\xe9 \xff\xfe\r\n")
    fail = c.expect("FAIL")
    assert fail.params[:2] == ["*", "INVALID_UTF8"]
    c.send("PING :after")
    assert c.expect("PONG").params[-1] == "after"


def test_nul_byte_is_400(client: Callable[..., RawClient]) -> None:
    c = client("nul")
    c.send(b"PRIVMSG nul :a\x00b\r\n")
    reply = c.expect(lambda m: m.command in ("400", "PRIVMSG"))
    assert reply.command == "400" and reply.params[0] == "nul"
    c.send("PING :after")
    assert c.expect(lambda m: m.command in ("PONG", "PRIVMSG")).command == "PONG"


def test_unknown_command_is_421(client: Callable[..., RawClient]) -> None:
    c = client("curious")
    c.send("FROBNICATE now")
    assert c.expect("421").params[:2] == ["curious", "FROBNICATE"]


def test_command_before_registration_is_451(client: Callable[..., RawClient]) -> None:
    c = client()
    c.send("JOIN #early")
    assert c.expect("451").params[0] == "*"
    c.send("PRIVMSG someone :hi")
    c.expect("451")
    c.register("late")  # and registering afterwards still works


def test_missing_parameters_is_461(client: Callable[..., RawClient]) -> None:
    c = client("terse")
    for command in ("JOIN", "KICK #c", "OPER admin", "TOPIC", "INVITE someone"):
        c.send(command)
        reply = c.expect("461")
        assert reply.params[:2] == ["terse", command.split()[0]]
    c.send("PING :fine")
    assert c.expect("PONG").params[-1] == "fine"


def test_flood_is_delayed_then_disconnected_while_others_notice_nothing(
    start_server: Callable[..., Any],
) -> None:
    server = start_server(flood_rate=5.0, flood_burst=10, recvq=2048)
    flooder, bystander, talker = (RawClient(server.port) for _ in range(3))
    try:
        for c, nick in ((flooder, "flooder"), (bystander, "bystander"), (talker, "talker")):
            c.register(nick)
            c.join("#f")

        # 1. a burst over the budget is delayed, not dropped: 15 lines on at most 10
        #    tokens, refilled at 5/s, take at least 1 s
        sent_at = time.monotonic()
        flooder.send("".join(f"PING :p{i}\r\n" for i in range(15)).encode())
        tokens = [flooder.expect("PONG", timeout=10).params[-1] for _ in range(15)]
        elapsed = time.monotonic() - sent_at
        assert tokens == [f"p{i}" for i in range(15)]
        assert elapsed >= 0.8, f"15 lines answered in {elapsed:.2f}s: not rate limited"
        assert not flooder.closed

        # 2. more unprocessed input than recvq: Excess Flood
        line = "PRIVMSG #f :" + "y" * 80 + "\r\n"
        flooder.send((line * 40).encode())  # 3,720 bytes > recvq 2,048
        error = flooder.expect("ERROR")
        assert "Excess Flood" in error.params[-1]
        flooder.wait_closed()

        quit_ = bystander.expect("QUIT")
        assert quit_.source is not None and quit_.source.startswith("flooder!")
        assert quit_.params[-1] == "Excess Flood"
        talker.send("PRIVMSG #f :business as usual")
        msg = bystander.expect(lambda m: m.command == "PRIVMSG" and m.source.startswith("talker!"))
        assert msg.params[-1] == "business as usual"
        bystander.send("PING :unaffected")
        assert bystander.expect("PONG", timeout=2).params[-1] == "unaffected"
    finally:
        for c in (flooder, bystander, talker):
            c.close()


def test_endless_line_without_newline_is_cut_off_and_server_survives(
    irc_server: Any, client: Callable[..., RawClient]
) -> None:
    c = client("endless")
    chunk = b"A" * 8192
    try:
        for _ in range(64):  # 512 KiB with no newline
            c.sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # disconnected mid-way: acceptable
    answer = c.expect(lambda m: m.command in ("417", "ERROR"))
    if answer.command == "417":
        c.send(b"\r\nPING :recovered\r\n")
        assert c.expect("PONG").params[-1] == "recovered"
    fresh = client("fresh")
    fresh.send("PING :alive")
    assert fresh.expect("PONG").params[-1] == "alive"


def test_random_garbage_never_crashes_the_server(
    irc_server: Any, client: Callable[..., RawClient], no_server_errors: None
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    witness = client("witness")
    witness.join("#g")
    noisy = [client() for _ in range(4)] + [client(f"noisy{i}") for i in range(4)]
    for c in noisy[4:]:
        c.join("#g")
    for c in noisy:
        for _ in range(16):
            data = bytearray(rng.randbytes(rng.randrange(1, 2048)))
            for _ in range(rng.randrange(0, 8)):  # some line breaks, so lines get parsed
                data[rng.randrange(len(data))] = 10
            try:
                c.sock.sendall(bytes(data))
            except OSError:
                break  # the server hung up on this one: allowed
    for c in noisy:
        try:
            c.send(b"\r\nPING :fence\r\n")  # end any partial garbage line first
        except OSError:
            continue
        try:
            c.expect(lambda m: m.command == "PONG" and m.params[-1] == "fence")
        except AssertionError:
            assert c.closed, f"seed {seed}: a garbage client neither answered nor was closed"

    fresh = client("fresh")
    fresh.join("#g")
    witness.send("PRIVMSG #g :still serving")
    msg = fresh.expect("PRIVMSG")
    assert msg.params == ["#g", "still serving"], f"seed {seed}"


# -------------------------------------------------------------------- limits
def test_connections_over_the_per_ip_limit_get_error_and_are_closed(
    start_server: Callable[..., Any],
) -> None:
    server = start_server(max_connections_per_ip=3)
    allowed = [RawClient(server.port) for _ in range(3)]
    extra: list[RawClient] = []
    try:
        for i, c in enumerate(allowed):
            c.register(f"ok{i}")
        fourth = RawClient(server.port)
        extra.append(fourth)
        error = fourth.expect("ERROR")
        assert "Too many connections" in error.params[-1]
        fourth.wait_closed()

        allowed[0].send("QUIT :making room")
        allowed[0].wait_closed()
        wait_for(lambda: server.core.per_ip.get("127.0.0.1") == 2, what="the slot to free up")
        again = RawClient(server.port)
        extra.append(again)
        again.register("again")
        for c in allowed[1:]:
            c.send("PING :kept")
            assert c.expect("PONG").params[-1] == "kept"
    finally:
        for c in allowed + extra:
            c.close()


def test_registration_timeout_closes_a_client_that_never_registers(
    start_server: Callable[..., Any],
) -> None:
    server = start_server(registration_timeout=1.0)
    lurker = RawClient(server.port)
    member = RawClient(server.port)
    try:
        member.register("member")
        lurker.send("NICK lurker")  # NICK without USER: never registered
        error = lurker.expect("ERROR", timeout=5)
        assert "Registration timed out" in error.params[-1]
        lurker.wait_closed()
        assert server.core.registry.nicks.get("lurker") is None
        member.send("PING :registered-stay")
        assert member.expect("PONG").params[-1] == "registered-stay"
    finally:
        lurker.close()
        member.close()
