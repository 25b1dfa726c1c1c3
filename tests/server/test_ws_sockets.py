"""IRC over WebSocket, end to end over real sockets, for both engines, with the
``websockets`` library's client (a client this project did not write): the
subprotocols, WebSocket and TCP users together, origins, forwarded addresses,
the refusals (1009, 1007, 400, 403), a client that stops reading, pings, wss://."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from ircutil import RawClient, wait_for
from relaychat.config import WebSocketConfig
from relaychat.protocol import numerics as N
from relaychat.server.tls import write_self_signed
from wsutil import BINARY, TEXT, WsClient, WsRawClient, make_ws_config, ws_port


@pytest.fixture
def ws_with(engine: str, run_config: Callable[..., Any]) -> Callable[..., Any]:
    """``ws_with(websocket=WebSocketConfig(...), **limits)`` -> a running server."""

    def start(websocket: WebSocketConfig | None = None, **limits: Any) -> Any:
        return run_config(make_ws_config(engine, websocket, **limits))

    return start


@pytest.fixture
def clients() -> Any:
    made: list[Any] = []
    yield made
    for c in made:
        c.close()


def whois_host(asker: RawClient, nick: str) -> str:
    asker.send(f"WHOIS {nick}")
    reply = asker.take_until(N.RPL_ENDOFWHOIS)
    [user] = [m for m in reply if m.command == N.RPL_WHOISUSER]
    return user.params[3]


# ------------------------------------------------------------- subprotocols
@pytest.mark.parametrize(
    ("offer", "chosen", "kind"),
    [
        ([TEXT], TEXT, str),
        ([BINARY], BINARY, bytes),
        ([BINARY, TEXT], BINARY, bytes),  # the client's order of preference
        ([TEXT, BINARY], TEXT, str),
        (None, None, str),  # none asked: default_subprotocol ("text")
        (["chat.example.org"], None, str),  # none we speak: served without one
    ],
    ids=["text", "binary", "binary-first", "text-first", "none", "unknown"],
)
def test_a_websocket_user_and_a_tcp_user_chat_in_one_channel(
    ws_server: Any,
    connect: Callable[..., RawClient],
    clients: list[Any],
    offer: list[str] | None,
    chosen: str | None,
    kind: type,
    no_server_errors: None,
) -> None:
    ws = WsClient(ws_port(ws_server), offer)
    clients.append(ws)
    assert ws.subprotocol == chosen
    ws.register("webby")
    tcp = connect(ws_server, "tcpy")
    ws.join("#both")
    tcp.join("#both")
    ws.expect(lambda m: m.command == "JOIN" and m.source.startswith("tcpy!"))
    tcp.send("PRIVMSG #both :from tcp, caf\u00e9")
    msg = ws.expect("PRIVMSG")
    assert msg.source.startswith("tcpy!") and msg.params == ["#both", "from tcp, caf\u00e9"]
    ws.send("PRIVMSG #both :from the web")
    msg = tcp.expect("PRIVMSG")
    assert msg.source == "webby!~webby@127.0.0.1" and msg.params == ["#both", "from the web"]
    assert set(ws.kinds) == {kind}
    # QUIT: the ERROR line, then a close frame 1000
    ws.send("QUIT :bye now")
    assert ws.expect("ERROR").params[0].endswith("(Quit: bye now)")
    assert ws.wait_closed() == 1000
    assert tcp.expect("QUIT").params == ["Quit: bye now"]


def test_binary_default_for_clients_that_ask_for_none(
    ws_with: Callable[..., Any], clients: list[Any]
) -> None:
    server = ws_with(WebSocketConfig(default_subprotocol="binary"))
    ws = WsClient(ws_port(server))
    clients.append(ws)
    assert ws.subprotocol is None
    ws.register("bin")
    # binary mode: lines need not be UTF-8; the core answers as it does on TCP
    ws.send(b"PRIVMSG bin :\xff\xfe")
    assert ws.expect("FAIL").params[1] == "INVALID_UTF8"
    assert set(ws.kinds) == {bytes}


# ------------------------------------------------------------------- origins
def test_the_origin_allow_list(
    ws_with: Callable[..., Any],
    connect: Callable[..., RawClient],
    clients: list[Any],
    no_server_errors: None,
) -> None:
    server = ws_with(WebSocketConfig(origins=("https://chat.example.org",)))
    bystander = connect(server, "stays")
    ok = WsClient(ws_port(server), [TEXT], origin="https://chat.example.org")
    clients.append(ok)
    ok.register("allowed")
    for origin in ("https://evil.example.org", None):
        with pytest.raises(InvalidStatus) as info:
            WsClient(ws_port(server), [TEXT], origin=origin)
        assert info.value.response.status_code == 403
    assert bystander.sync() == []
    bystander.send("PRIVMSG allowed :still here")
    assert ok.expect("PRIVMSG").params == ["allowed", "still here"]


def test_any_origin_and_none_when_the_list_is_empty(ws_server: Any, clients: list[Any]) -> None:
    for origin in ("https://anywhere.example", None):
        ws = WsClient(ws_port(ws_server), [TEXT], origin=origin)
        clients.append(ws)
        ws.register("o" + str(len(clients)))


# ------------------------------------------------------- forwarded addresses
@pytest.mark.parametrize(
    ("header", "value", "shown"),
    [
        ("X-Forwarded-For", "203.0.113.9", "203.0.113.9"),
        # the rightmost hop that is not a trusted proxy: 127.0.0.5 is one
        ("X-Forwarded-For", "198.51.100.1, 203.0.113.9, 127.0.0.5", "203.0.113.9"),
        ("Forwarded", 'for="[2001:db8::7]:4711";proto=https', "2001:db8::7"),
        ("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ("X-Forwarded-For", "unknown", "127.0.0.1"),  # not an address: the peer's
    ],
    ids=["xff", "xff-chain", "forwarded-v6", "forwarded", "garbage"],
)
def test_a_trusted_proxy_gives_the_client_address(
    ws_with: Callable[..., Any],
    connect: Callable[..., RawClient],
    clients: list[Any],
    header: str,
    value: str,
    shown: str,
) -> None:
    server = ws_with(WebSocketConfig(trusted_proxies=("127.0.0.0/8",)))
    ws = WsClient(ws_port(server), [TEXT], headers={header: value})
    clients.append(ws)
    ws.register("proxied")
    asker = connect(server, "asker")
    assert whois_host(asker, "proxied") == shown


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    ws_with: Callable[..., Any], connect: Callable[..., RawClient], clients: list[Any]
) -> None:
    server = ws_with(WebSocketConfig(trusted_proxies=("10.0.0.0/8",)))
    ws = WsClient(ws_port(server), [TEXT], headers={"X-Forwarded-For": "203.0.113.9"})
    clients.append(ws)
    ws.register("direct")
    asker = connect(server, "asker")
    assert whois_host(asker, "direct") == "127.0.0.1"


def test_the_forwarded_address_counts_for_the_per_ip_limit(
    ws_with: Callable[..., Any], clients: list[Any]
) -> None:
    server = ws_with(WebSocketConfig(trusted_proxies=("127.0.0.1",)), max_connections_per_ip=1)
    for i, ip in enumerate(("203.0.113.1", "203.0.113.2")):
        ws = WsClient(ws_port(server), [TEXT], headers={"X-Forwarded-For": ip})
        clients.append(ws)
        ws.register(f"user{i}")
    again = WsClient(ws_port(server), [TEXT], headers={"X-Forwarded-For": "203.0.113.1"})
    clients.append(again)
    error = again.expect("ERROR").params[0]
    assert error == "Closing Link: 203.0.113.1 (Too many connections from your IP address)"
    assert again.wait_closed() == 1000


def test_the_cloak_is_made_from_the_forwarded_address(
    engine: str,
    run_config: Callable[..., Any],
    connect: Callable[..., RawClient],
    clients: list[Any],
) -> None:
    from relaychat.config import CloakingConfig
    from relaychat.protocol.cloaking import Cloaker

    cloaking = CloakingConfig(enabled=True, secret="s" * 32)
    cfg = make_ws_config(engine, WebSocketConfig(trusted_proxies=("127.0.0.1",)))
    server = run_config(dataclasses.replace(cfg, cloaking=cloaking))
    ws = WsClient(ws_port(server), [TEXT], headers={"X-Forwarded-For": "203.0.113.77"})
    clients.append(ws)
    ws.register("cloaked")
    asker = connect(server, "asker")
    cloaker = Cloaker(cloaking.secret, cloaking.netname)
    assert (
        whois_host(asker, "cloaked") == cloaker.cloak("203.0.113.77") != cloaker.cloak("127.0.0.1")
    )


# ------------------------------------------------------------------ refusals
def test_an_oversized_message_is_closed_with_1009(
    ws_server: Any, connect: Callable[..., RawClient], clients: list[Any], no_server_errors: None
) -> None:
    watcher = connect(ws_server, "watcher")
    watcher.join("#big")
    for how in ("frame", "fragments"):
        ws = WsClient(ws_port(ws_server), [TEXT])
        clients.append(ws)
        ws.register(f"big{how}")
        ws.join("#big")
        watcher.expect("JOIN")
        line = "PRIVMSG #big :" + "x" * 9000
        # the server may close while the fragments are still going out: that is
        # its answer, not the test's failure
        with contextlib.suppress(ConnectionClosed):
            ws.send(
                line if how == "frame" else iter([line[i : i + 1000] for i in range(0, 9014, 1000)])
            )
        assert ws.wait_closed() == 1009
        quit_ = watcher.expect("QUIT")
        assert quit_.source.startswith(f"big{how}!") and "1009" in quit_.params[0]
    watcher.send("PING :alive")
    watcher.expect("PONG")


def test_a_line_over_the_irc_limit_is_417_like_on_tcp(ws_server: Any, clients: list[Any]) -> None:
    ws = WsClient(ws_port(ws_server), [TEXT])
    clients.append(ws)
    ws.register("longish")
    ws.send("PRIVMSG longish :" + "y" * 600)  # fits a WebSocket message, not an IRC line
    assert ws.expect(N.ERR_INPUTTOOLONG).params[-1] == "Input line was too long"
    ws.sync()


@pytest.mark.parametrize("frame", ["text", "binary"])
def test_invalid_utf8_in_text_mode_is_closed_with_1007(
    ws_server: Any, connect: Callable[..., RawClient], clients: list[Any], frame: str
) -> None:
    watcher = connect(ws_server, "watcher")
    ws = WsClient(ws_port(ws_server), [TEXT])
    clients.append(ws)
    ws.register("badutf")
    ws.send(b"PRIVMSG watcher :\xff\xfe", text=frame == "text")
    assert ws.wait_closed() == 1007
    assert watcher.sync() == []  # nothing relayed


def test_a_line_break_inside_a_message_is_closed_with_1007(
    ws_server: Any, connect: Callable[..., RawClient], clients: list[Any]
) -> None:
    watcher = connect(ws_server, "watcher")
    ws = WsClient(ws_port(ws_server), [TEXT])
    clients.append(ws)
    ws.register("smuggler")
    ws.send("PING :trailing CRLF is dropped\r\n")
    assert ws.expect("PONG").params[-1] == "trailing CRLF is dropped"
    ws.send("PRIVMSG watcher :one\r\nPRIVMSG watcher :two")
    assert ws.wait_closed() == 1007
    quit_ = watcher.sync()
    assert [m.command for m in quit_] == []  # neither line was relayed
    watcher.send("WHOIS smuggler")
    assert watcher.expect(lambda m: m.command in (N.ERR_NOSUCHNICK, N.RPL_WHOISUSER)).command == (
        N.ERR_NOSUCHNICK
    )


def test_a_nul_is_refused_as_on_tcp(ws_server: Any, clients: list[Any]) -> None:
    ws = WsClient(ws_port(ws_server), [TEXT])
    clients.append(ws)
    ws.register("nul")
    ws.send("PRIVMSG nul :a\x00b")
    assert ws.expect(N.ERR_UNKNOWNERROR).params[-1] == "Message contains a NUL byte"
    ws.sync()


def raw_http(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` on a new connection; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS to a plain port
        (UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"") + b"\r\n", 400),
        (UPGRADE + b"Sec-WebSocket-Key: short\r\n\r\n", 400),  # a second key
        (UPGRADE + b"Sec-WebSocket-Version: 8\r\n\r\n", 400),
        (UPGRADE + b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ,,\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "tls", "no-key", "two-keys", "version", "subprotocol", "post", "header"],
)
def test_a_bad_request_gets_its_status_and_a_bystander_is_unaffected(
    ws_server: Any,
    connect: Callable[..., RawClient],
    clients: list[Any],
    request_bytes: bytes,
    status: int,
    no_server_errors: None,
) -> None:
    bystander = WsClient(ws_port(ws_server), [TEXT])
    clients.append(bystander)
    bystander.register("bystander")
    tcp = connect(ws_server, "tcp")
    reply = raw_http(ws_port(ws_server), request_bytes)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    tcp.send("PRIVMSG bystander :unaffected")
    assert bystander.expect("PRIVMSG").params == ["bystander", "unaffected"]
    assert ws_server.core.find_user("bystander") is not None


def test_a_stalled_upgrade_is_closed_at_the_deadline(
    engine: str, run_config: Callable[..., Any], connect: Callable[..., RawClient]
) -> None:
    server = run_config(make_ws_config(engine, tls_handshake_timeout=0.5))
    bystander = connect(server, "bystander")
    with socket.create_connection(("127.0.0.1", ws_port(server)), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed, without a session
        assert 0.4 <= time.monotonic() - started < 5
    assert bystander.sync() == []
    assert len(server.core.sessions) == 1


# ------------------------------------------------------- a client stops reading
def test_a_websocket_client_that_stops_reading_is_dropped_at_sendq(
    ws_with: Callable[..., Any], connect: Callable[..., RawClient], no_server_errors: None
) -> None:
    server = ws_with(sendq=65536)
    slow = WsRawClient(ws_port(server), rcvbuf=4096)
    flooder = connect(server, "flooder")
    watcher = connect(server, "watcher")
    try:
        slow.send("NICK slow")
        slow.send("USER slow 0 * :slow")
        slow.send("JOIN #flood")
        slow.wait_line(" 366 ")
        for c in (flooder, watcher):
            c.join("#flood")
        # from here on, slow never reads again
        text = "x" * 400
        seq = 0
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the slow reader was never dropped"
            batch = "".join(f"PRIVMSG #flood :{seq + i} {text}\r\n" for i in range(50))
            flooder.send(batch.encode())
            last = f"{seq + 49} "
            got = watcher.take_until(
                lambda m, last=last: m.command == "QUIT" or m.params[-1].startswith(last)
            )
            seq += 50
            if got[-1].command == "QUIT":
                assert got[-1].source.startswith("slow!")
                assert got[-1].params == ["Max SendQ exceeded"]
                break
        flooder.send(f"PRIVMSG #flood :{seq} after")
        assert watcher.expect(lambda m: m.params[-1:] == [f"{seq} after"])
        wait_for(lambda: server.core.find_user("slow") is None, what="slow to be gone")
    finally:
        slow.close()


# ------------------------------------------------------------- flood control
@pytest.mark.parametrize("what", ["lines", "empty messages"])
def test_a_websocket_flood_is_excess_flood_as_on_tcp(
    ws_with: Callable[..., Any], connect: Callable[..., RawClient], what: str
) -> None:
    server = ws_with(flood_rate=4.0, flood_burst=20)
    watcher = connect(server, "watcher")
    flooder = WsRawClient(ws_port(server))
    try:
        flooder.send_many(["NICK flooder", "USER f 0 * :f", "JOIN #c"])
        flooder.wait_line(" 366 ")
        watcher.join("#c")
        line = "PRIVMSG #c :" + "z" * 300 if what == "lines" else ""
        try:
            flooder.send_many([line] * 20000 + ["PING :after"])
        except OSError:
            pass  # cut off mid-way: what is being tested
        got = watcher.take_until(lambda m: m.command == "QUIT")
        assert got[-1].source.startswith("flooder!") and got[-1].params == ["Excess Flood"]
        relayed = [m for m in got if m.command == "PRIVMSG"]
        assert len(relayed) < 100  # the burst and what the tokens refilled, no more
    finally:
        flooder.close()


# ------------------------------------------------------------------ pings
def test_idle_websocket_clients_get_pings(ws_with: Callable[..., Any]) -> None:
    server = ws_with(WebSocketConfig(ping_interval=0.2))
    ws = WsRawClient(ws_port(server))
    try:
        ws.send("NICK pinged")
        ws.send("USER pinged 0 * :p")
        ws.wait_line(" 376 ")
        ping = ws.wait_for(lambda f: f.opcode is Opcode.PING, timeout=5)
        assert bytes(ping.data) == b"relaychat"
        # the pong went back (the protocol answers): the user is still there
        ws.send("PING :after")
        ws.wait_line("PONG")
    finally:
        ws.close()


# --------------------------------------------------------------------- wss://
def test_wss_over_a_tls_listener(
    engine: str,
    run_config: Callable[..., Any],
    connect: Callable[..., RawClient],
    clients: list[Any],
    tmp_path: Path,
    no_server_errors: None,
) -> None:
    cert, key = write_self_signed(tmp_path / "tls", "localhost", days=2)
    server = run_config(make_ws_config(engine, tls=(cert, key)))
    ctx = ssl.create_default_context(cafile=str(cert))
    ws = WsClient(ws_port(server), [TEXT], tls=ctx)
    clients.append(ws)
    ws.register("secure")
    assert ws.expect("MODE").params == ["secure", "+Z"]
    tcp = connect(server, "plain")
    tcp.send("WHOIS secure")
    reply = tcp.take_until(N.RPL_ENDOFWHOIS)
    assert [m.command for m in reply if m.command == N.RPL_WHOISSECURE] == [N.RPL_WHOISSECURE]
    tcp.send("PRIVMSG secure :over wss")
    assert ws.expect("PRIVMSG").params == ["secure", "over wss"]
    # plain ws:// to the wss:// port: the TLS handshake fails, no session
    with pytest.raises(Exception):  # noqa: B017 - the library's error for a failed handshake
        WsClient(ws_port(server), [TEXT])
    assert tcp.sync() == []
