"""Operator and user features over real sockets, for both engines: KNOCK, SILENCE,
STATS, server bans (a DLINE against a connected flood, a banned address coming
back), server notices and IP cloaking; and hostile clients spamming KNOCK and
SILENCE while a bystander is served as usual.

"Other hosts" are other loopback addresses (127.0.0.2, ...): a socket can be bound
to any address of 127.0.0.0/8."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ircutil import RawClient, make_config, wait_for
from relaychat.config import CloakingConfig, Config, OperConfig
from relaychat.passwords import hash_password
from relaychat.protocol.message import Message

PASSWORD = "secret"
HASH = hash_password(PASSWORD, n=2**10)  # cheap parameters: the test is about the flow
SECRET = "a cloaking secret for the tests"

Connect = Callable[..., RawClient]


@pytest.fixture
def server(engine: str, run_config: Callable[[Config], Any]) -> Callable[..., Any]:
    """``server(cloaking=False, **limits)`` -> a running server with an operator
    ``admin`` (password ``secret``, any host)."""

    def start(cloaking: bool = False, **limits: object) -> Any:
        return run_config(
            dataclasses.replace(
                make_config(engine, **limits),
                opers={"admin": OperConfig(HASH)},
                cloaking=CloakingConfig(enabled=cloaking, secret=SECRET if cloaking else ""),
            )
        )

    return start


def nick_of(msg: Message) -> str | None:
    return msg.source.split("!", 1)[0] if msg.source else None


def oper_up(c: RawClient) -> None:
    c.send(f"OPER admin {PASSWORD}")
    c.expect("381")


def rtt(c: RawClient, token: str = "rtt", timeout: float = 5.0) -> float:
    start = time.monotonic()
    c.send(f"PING :{token}")
    c.expect(lambda m: m.command == "PONG" and m.params[-1] == token, timeout=timeout)
    return time.monotonic() - start


# ---------------------------------------------------------------- features
def test_knock_reaches_the_operators(server: Callable[..., Any], connect: Connect) -> None:
    srv = server()
    op, member = connect(srv, "op"), connect(srv, "member")
    op.join("#c")
    member.join("#c")
    op.send("MODE #c +i")
    op.expect("MODE")
    knocker = connect(srv, "knocker")
    knocker.send("KNOCK #c :it is me")
    assert knocker.expect("711").params[1] == "#c"
    knock = op.expect("710")
    assert knock.params == [
        "#c",
        "#c",
        "knocker!~knocker@127.0.0.1",
        "has asked for an invite: it is me",
    ]
    assert not [m for m in member.sync() if m.command == "710"]
    knocker.send("KNOCK #c")
    assert knocker.expect("712").params[-1] == "Too many KNOCKs (user)"


def test_silence_drops_private_messages(server: Callable[..., Any], connect: Connect) -> None:
    srv = server()
    alice, bob, carol = (connect(srv, n) for n in ("alice", "bob", "carol"))
    alice.send("SILENCE +bob")
    assert alice.expect("SILENCE").params == ["+bob!*@*"]
    bob.send("PRIVMSG alice :you cannot hear me")
    assert bob.sync() == []
    carol.send("PRIVMSG alice :you can hear me")
    assert carol.sync() == []  # handled: alice has it, or will before her PONG
    got = [m for m in alice.sync() if m.command == "PRIVMSG"]
    assert [(nick_of(m), m.params[-1]) for m in got] == [("carol", "you can hear me")]


def test_stats_l_shows_the_traffic_the_engine_counted(
    server: Callable[..., Any], connect: Connect
) -> None:
    srv = server()
    op = connect(srv, "op")
    oper_up(op)
    alice = connect(srv, "alice")
    alice.send("PRIVMSG op :" + "x" * 400)
    op.expect("PRIVMSG")
    op.send("STATS l")
    rows = {
        m.params[1]: m.params[2:]
        for m in op.take_until(lambda m: m.command == "219")
        if m.command == "211"
    }
    sendq, sent_lines, sent_bytes, recv_lines, recv_bytes, _ = rows["alice[~alice@127.0.0.1]"]
    assert int(recv_bytes) > 400 and int(recv_lines) == 3  # NICK, USER, PRIVMSG
    assert int(sent_bytes) > 500 and int(sent_lines) >= 10  # the welcome burst
    op.send("STATS u")
    assert op.expect("242").params[-1].startswith("Server Up 0 days 0:00:")


def test_server_notices_reach_an_operator_with_plus_s(
    server: Callable[..., Any], connect: Connect
) -> None:
    srv = server()
    op = connect(srv, "op")
    oper_up(op)
    op.send("MODE op +s +cq")
    assert op.expect("008").params[1] == "+cq"
    bob = connect(srv, "bob")
    bob.send("QUIT :later")
    texts = [
        m.params[-1]
        for m in op.take_until(lambda m: m.command == "NOTICE" and "QUIT:" in m.params[-1])
        if m.command == "NOTICE"
    ]
    assert texts == [
        "*** CONNECT: Client connecting: bob (~bob@127.0.0.1) [127.0.0.1] [Test bob]",
        "*** QUIT: Client exiting: bob (~bob@127.0.0.1) [127.0.0.1] [Quit: later]",
    ]


def test_cloaked_hosts_never_show_the_address_to_others(
    server: Callable[..., Any], connect: Connect
) -> None:
    srv = server(cloaking=True)
    bob = connect(srv, keep_raw=True)
    bob.register("bob")
    alice = connect(srv, "alice")
    bob.join("#c")
    alice.join("#c")
    join = bob.expect(lambda m: m.command == "JOIN" and nick_of(m) == "alice")
    host = (join.source or "").split("@")[1]
    assert host.endswith(".ip") and host != "127.0.0.1"
    bob.send("WHOIS alice")
    bob.send("WHO #c")
    bob.sync()
    assert bob.raw is not None and b"127.0.0.1" not in bytes(bob.raw)
    alice.send("WHOIS alice")
    assert alice.expect("378").params[-1] == "is connecting from *@127.0.0.1 127.0.0.1"


# -------------------------------------------------------------- server bans
def test_dline_drops_a_connected_flood_and_the_address_stays_out(
    server: Callable[..., Any], connect: Connect, no_server_errors: None
) -> None:
    srv = server()
    op = connect(srv, "op")
    oper_up(op)
    op.send("MODE op +s +x")
    op.expect("008")
    watcher = connect(srv, "watcher")
    watcher.join("#c")
    bystander = connect(srv, source="127.0.0.3")
    bystander.register("bystander")
    flood = [connect(srv, f"flood{i:02d}", source="127.0.0.2") for i in range(15)]
    for c in flood:
        c.join("#c")
    half = [connect(srv, source="127.0.0.2") for _ in range(15)]  # connected, not registered
    for c in half:
        c.send("NICK half")
    wait_for(lambda: len(srv.core.sessions) == 33, what="every connection to be accepted")
    stop = threading.Event()

    def blast(c: RawClient) -> None:
        # input the server must read and parse, and that asks for no reply (the
        # blasters never read: output would drop them for SendQ before the DLINE)
        try:
            while not stop.is_set():
                c.send(b"PONG :flood flood flood\r\n" * 200)
        except OSError:
            pass  # disconnected: what the test is after

    blasters = [threading.Thread(target=blast, args=(c,), name="test-blast") for c in flood[:5]]
    for t in blasters:
        t.start()
    try:
        op.send("DLINE 127.0.0.2 :flood from .2")
        heard = op.take_until(lambda m: m.command == "NOTICE" and "disconnected" in m.params[-1])
        assert heard[-1].params[-1] == "D-line for 127.0.0.2 disconnected 30 client(s)"
        for c in flood + half:
            c.wait_closed()
    finally:
        stop.set()
        for t in blasters:
            t.join(10)
    quits = watcher.take_until(
        lambda m: m.command == "QUIT" and nick_of(m) == "flood14", timeout=10
    )
    reasons = {m.params[0] for m in quits if m.command == "QUIT"}
    assert reasons == {"D-Lined: flood from .2"}
    assert len(srv.core.sessions) == 3  # op, watcher, bystander
    assert rtt(bystander) < 2.0

    # the address comes back: refused at once, before it can register
    again = connect(srv, source="127.0.0.2")
    error = again.expect("ERROR")
    assert "D-Lined: flood from .2" in error.params[-1]
    again.wait_closed()
    assert not any(m.command == "001" for m in again.lines)
    # the operator heard of the first hit; the others (29 at the DLINE, this one)
    # are counted for the next notice instead of flooding it
    heard += op.sync()
    hits = [m for m in heard if m.command == "NOTICE" and "D-line hit" in m.params[-1]]
    assert len(hits) == 1 and "(1 since the last notice)" in hits[0].params[-1]
    ban = srv.core.bans.get("D", "127.0.0.2")
    assert ban is not None
    wait_for(lambda: ban.hits == 30, what="the refused reconnection to be counted")


def test_kline_by_duration_expires_over_the_wire(
    server: Callable[..., Any], connect: Connect
) -> None:
    srv = server()
    op = connect(srv, "op")
    oper_up(op)
    victim = connect(srv, source="127.0.0.4")
    victim.register("victim")
    op.send("KLINE 1 *@127.0.0.4 :one second")
    assert victim.expect("465").params[-1] == "You are banned from this server: one second"
    victim.wait_closed()
    retry = connect(srv, source="127.0.0.4")
    retry.send("NICK victim")
    retry.send("USER v 0 * :v")
    reply = retry.expect(lambda m: m.command in ("465", "001"))
    if reply.command == "465":  # still within the second: wait for the ban to go
        wait_for(lambda: len(srv.core.bans) == 0, timeout=5, what="the K-line to expire")
        retry = connect(srv, source="127.0.0.4")
        retry.register("victim")


# ---------------------------------------------------------------- hostile
# With flood control on, as the server's defence is: a client that turns it off
# trusts its clients (on the loop engine one busy connection can then hold the
# loop for a whole libuv read burst, whatever the command).
def spam(client: RawClient, line: bytes, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        chunk = line * max(1, 65536 // len(line))
        try:
            while not stop.is_set():
                client.sock.sendall(chunk)
        except OSError:
            pass  # the server hung up: allowed

    t = threading.Thread(target=run, name="test-spammer")
    t.start()
    return t


def test_knock_spam_neither_floods_the_operators_nor_stalls_a_bystander(
    server: Callable[..., Any], connect: Connect, no_server_errors: None
) -> None:
    srv = server(flood_rate=4.0, flood_burst=20)
    op = connect(srv, "op")
    op.join("#c")
    op.send("MODE #c +i")
    op.expect("MODE")
    attacker = connect(srv, "attacker")
    bystander = connect(srv, "bystander")
    stop = threading.Event()
    thread = spam(attacker, b"KNOCK #c :let me in\r\n", stop)
    try:
        times = [rtt(bystander, f"t{i}") for i in range(10)]
    finally:
        stop.set()
        thread.join(10)
    assert max(times) < 1.0, times
    knocks = [m for m in op.sync() if m.command == "710"]
    assert len(knocks) == 1  # one per channel per knock_channel_delay, however many were sent


def test_silence_with_thousands_of_masks_stays_bounded_and_others_are_served(
    server: Callable[..., Any], connect: Connect, no_server_errors: None
) -> None:
    # long lines, so that one SILENCE carries hundreds of masks; each one costs
    # flood tokens in proportion, so the spammer is slowed, then dropped
    srv = server(flood_rate=4.0, flood_burst=20, line_length=8192, recvq=65536)
    attacker = connect(srv, "attacker")
    bystander = connect(srv, "bystander")
    user = srv.core.find_user("attacker")
    assert user is not None
    masks = ",".join(f"+m{i}!*@*.example.org" for i in range(370))  # about 8 KB a line
    line = f"SILENCE {masks}\r\n".encode()
    assert len(line) < 8192
    stop = threading.Event()
    thread = spam(attacker, line, stop)
    try:
        times = [rtt(bystander, f"t{i}") for i in range(10)]
        assert len(user.silence or ()) <= srv.core.limits.max_silence
    finally:
        stop.set()
        thread.join(10)
    assert max(times) < 1.0, times
    assert user.silence is None  # each line is over the limit: none of it applied
