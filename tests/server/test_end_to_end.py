"""End to end over real loopback sockets, for both engines: registration, chat,
CAP, NICK, the server's PING and ping timeout, and 200 clients in one channel."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from ircutil import RawClient
from relaychat.protocol.message import Message


def expect_answering_pings(
    c: RawClient, pred: Callable[[Message], bool], timeout: float = 10.0
) -> Message:
    """Like ``c.expect(pred)``, but answers every PING the server sends meanwhile,
    so ``c`` itself is never timed out while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        for i, msg in enumerate(c.lines):
            if msg.command == "PING":
                c.send(f"PONG :{msg.params[-1]}")
                del c.lines[i]
                break
            if pred(msg):
                del c.lines[: i + 1]
                return msg
        else:
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching message; got {[str(m) for m in c.lines]}")
            if c.closed:
                raise AssertionError(f"connection closed; got {[str(m) for m in c.lines]}")
            c._read(0.2)


def test_two_clients_register_and_chat_in_a_channel(client: Callable[..., RawClient]) -> None:
    alice = client("alice")
    bob = client("bob")
    alice.join("#chat")
    bob.join("#chat")
    joined = alice.expect("JOIN")
    assert joined.source is not None and joined.source.startswith("bob!")
    assert joined.params[0] == "#chat"

    alice.send("PRIVMSG #chat :hello bob")
    msg = bob.expect("PRIVMSG")
    assert msg.source is not None and msg.source.startswith("alice!")
    assert msg.params == ["#chat", "hello bob"]

    bob.send("PRIVMSG alice :hi in private")
    msg = alice.expect("PRIVMSG")
    assert msg.source is not None and msg.source.startswith("bob!")
    assert msg.params == ["alice", "hi in private"]


def test_welcome_names_the_nick_and_ends_with_the_motd(client: Callable[..., RawClient]) -> None:
    c = client()
    c.send("NICK carol")
    c.send("USER carol 0 * :Carol C")
    welcome = c.expect("001")
    assert welcome.params[0] == "carol"
    assert "carol!" in welcome.params[-1]
    for numeric in ("002", "003", "004", "005", "375", "372", "376"):
        c.expect(numeric)


def test_cap_negotiation_holds_registration_until_cap_end(
    client: Callable[..., RawClient],
) -> None:
    c = client()
    c.send("CAP LS 302")
    ls = c.expect("CAP")
    assert ls.params[1] == "LS"
    offered = ls.params[-1].split()
    assert "server-time" in offered and "message-tags" in offered

    c.send("NICK capper")
    c.send("USER capper 0 * :Cap Per")
    c.send("PING :negotiating")
    held = c.expect(lambda m: m.command in ("001", "PONG"))
    assert held.command == "PONG", "registered before CAP END"
    c.send("CAP REQ :server-time message-tags")
    ack = c.expect(lambda m: m.command in ("001", "CAP"))
    assert ack.command == "CAP" and ack.params[1] == "ACK"
    assert set(ack.params[-1].split()) == {"server-time", "message-tags"}

    c.send("CAP REQ :no-such-capability")
    nak = c.expect("CAP")
    assert nak.params[1] == "NAK"
    c.send("CAP END")
    c.expect("001")
    c.expect("376")

    c.send("CAP LIST")
    listed = c.expect("CAP")
    assert listed.params[1] == "LIST"
    assert {"server-time", "message-tags"} <= set(listed.params[-1].split())

    other = client("other", caps=("message-tags",))
    plain = client("plain")
    for member in (c, other, plain):
        member.join("#caps")
    other.send("@+example=yes PRIVMSG #caps :tagged")
    msg = c.expect("PRIVMSG")
    assert msg.params == ["#caps", "tagged"]
    assert "time" in msg.tags
    assert msg.tags.get("+example") == "yes"
    msg = plain.expect("PRIVMSG")
    assert msg.params == ["#caps", "tagged"]
    assert msg.tags == {}, "tags reached a client that did not ask for them"


def test_nick_change_is_seen_by_channel_peers(client: Callable[..., RawClient]) -> None:
    alice = client("alice")
    bob = client("bob")
    outsider = client("outsider")
    alice.join("#nicks")
    bob.join("#nicks")

    alice.send("NICK alicia")
    seen = bob.expect("NICK")
    assert seen.source is not None and seen.source.startswith("alice!")
    assert seen.params == ["alicia"]
    own = alice.expect("NICK")
    assert own.params == ["alicia"]

    bob.send("PRIVMSG alicia :found you")
    assert alice.expect("PRIVMSG").params == ["alicia", "found you"]
    outsider.send("PING :fence")
    fence = outsider.expect(lambda m: m.command in ("NICK", "PONG"))
    assert fence.command == "PONG", "a NICK change reached a client in no common channel"


def test_server_pings_an_idle_client_and_an_answer_keeps_it_connected(
    start_server: Callable[..., Any],
) -> None:
    server = start_server(ping_interval=1.0, ping_timeout=1.5)
    c = RawClient(server.port)
    try:
        c.register("idler")
        for _ in range(2):  # two rounds: longer than interval + timeout in total
            ping = c.expect("PING", timeout=5)
            c.send(f"PONG :{ping.params[-1]}")
        c.send("PING :still-here")
        assert c.expect("PONG").params[-1] == "still-here"
        assert not c.closed
    finally:
        c.close()


def test_ping_timeout_disconnects_a_silent_client_and_peers_see_quit(
    start_server: Callable[..., Any],
) -> None:
    server = start_server(ping_interval=1.0, ping_timeout=1.0)
    silent = RawClient(server.port)
    peer = RawClient(server.port)
    try:
        silent.register("silent")
        peer.register("peer")
        silent.join("#room")
        peer.join("#room")

        quit_ = expect_answering_pings(peer, lambda m: m.command == "QUIT", timeout=8)
        assert quit_.source is not None and quit_.source.startswith("silent!")
        assert quit_.params[-1].startswith("Ping timeout")

        silent.expect("PING")  # it was asked, and never answered
        error = silent.expect("ERROR")
        assert "Ping timeout" in error.params[-1]
        silent.wait_closed()
        assert server.core.find_user("silent") is None
    finally:
        silent.close()
        peer.close()


# ---------------------------------------------------------------- many clients
class Crowd:
    """Many raw client sockets read from one thread with a selector."""

    def __init__(self, port: int, count: int) -> None:
        self.socks: list[socket.socket] = []
        self.bufs: list[bytes] = [b""] * count
        self.lines: list[list[bytes]] = [[] for _ in range(count)]
        self.sel = selectors.DefaultSelector()
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            self.socks.append(s)
            self.sel.register(s, selectors.EVENT_READ, i)

    def send(self, i: int, data: bytes) -> None:
        s = self.socks[i]
        s.setblocking(True)
        try:
            s.sendall(data)
        finally:
            s.setblocking(False)

    def pump_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            for key, _ in self.sel.select(min(left, 0.5)):
                i = key.data
                try:
                    data = self.socks[i].recv(262144)
                except BlockingIOError:
                    continue
                if not data:
                    raise AssertionError(f"client {i} was disconnected: {self.lines[i][-3:]}")
                *complete, self.bufs[i] = (self.bufs[i] + data).split(b"\r\n")
                self.lines[i].extend(complete)

    def close(self) -> None:
        self.sel.close()
        for s in self.socks:
            s.close()


def test_200_clients_in_one_channel_see_every_message_once_in_order(
    irc_server: Any,
) -> None:
    clients, senders, per_sender = 200, 10, 20
    crowd = Crowd(irc_server.port, clients)
    try:
        for i in range(clients):
            crowd.send(i, f"NICK u{i}\r\nUSER u{i} 0 * :u{i}\r\nJOIN #crowd\r\n".encode())

        joined = [False] * clients
        scanned = [0] * clients

        def all_joined() -> bool:
            for i in range(clients):
                if not joined[i]:
                    lines = crowd.lines[i]
                    joined[i] = any(b" 366 " in ln for ln in lines[scanned[i] :])
                    scanned[i] = len(lines)
            return all(joined)

        crowd.pump_until(all_joined, 30, "every client to join #crowd")
        assert irc_server.core.find_channel("#crowd") is not None
        for lines in crowd.lines:
            lines.clear()

        for n in range(per_sender):
            for s in range(senders):
                crowd.send(s, f"PRIVMSG #crowd :m {s} {n}\r\n".encode())

        marker = b" PRIVMSG #crowd :m "
        expected = [
            (senders - 1) * per_sender if i < senders else senders * per_sender
            for i in range(clients)
        ]

        def count(i: int) -> int:
            return sum(1 for ln in crowd.lines[i] if marker in ln)

        crowd.pump_until(
            lambda: all(count(i) >= expected[i] for i in range(clients)),
            30,
            "every message to reach every client",
        )
        # a PONG is queued after everything the server sent before it: any duplicate
        # of a message would arrive before it
        for i in range(clients):
            crowd.send(i, b"PING :fence\r\n")
        crowd.pump_until(
            lambda: all(
                any(b" PONG " in ln and ln.endswith(b":fence") for ln in crowd.lines[i])
                for i in range(clients)
            ),
            30,
            "every client's PONG",
        )

        for i in range(clients):
            got: dict[int, list[int]] = {}
            for ln in crowd.lines[i]:
                if b" PONG " in ln:
                    break
                if marker not in ln:
                    continue
                prefix, _, text = ln.partition(marker)
                sender, seq = (int(x) for x in text.split())
                assert prefix.startswith(b":u%d!" % sender), ln
                got.setdefault(sender, []).append(seq)
            want = {s: list(range(per_sender)) for s in range(senders) if s != i}
            assert got == want, f"client u{i} got {got}"
    finally:
        crowd.close()
