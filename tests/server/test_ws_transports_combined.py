"""The listener options together, over real sockets, both engines: a wss://
client presenting a certificate has its fingerprint in WHOIS (276) and logs in
with SASL EXTERNAL, and a WebSocket listener behind a PROXY-protocol proxy takes
the header's address (the header first, then the HTTP upgrade) and refuses a
bare upgrade from its proxy."""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_certfp_sockets import client_cert
from test_proxyproto_sockets import v1, v2

from ircutil import RawClient, make_config, wait_for
from relaychat.config import ListenConfig
from relaychat.protocol import numerics as N
from relaychat.server.tls import write_self_signed
from wsutil import TEXT, WsClient

PW = "combined-password"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(tmp_path / "server", "localhost", days=2)


@pytest.fixture
def server(engine: str, run_config: Callable[..., Any], pair: tuple[Path, Path]) -> Any:
    """Listeners: plaintext IRC (``.port``), wss:// (1), ws:// behind a proxy on
    loopback (2)."""
    cert, key = str(pair[0]), str(pair[1])
    cfg = dataclasses.replace(
        make_config(engine, proxy_timeout=2.0),
        listen=(
            ListenConfig("127.0.0.1", 0),
            ListenConfig("127.0.0.1", 0, tls=True, cert=cert, key=key, websocket=True),
            ListenConfig("127.0.0.1", 0, websocket=True, proxy=("127.0.0.1",)),
        ),
    )
    return run_config(cfg)


@pytest.fixture
def made() -> Iterator[list[Any]]:
    clients: list[Any] = []
    yield clients
    for c in clients:
        c.close()


def whois(asker: RawClient, nick: str) -> list[Any]:
    asker.send(f"WHOIS {nick}")
    return asker.take_until(N.RPL_ENDOFWHOIS)


def test_wss_client_certificate_in_whois_and_sasl_external(
    server: Any, pair: tuple[Path, Path], tmp_path: Path, made: list[Any], no_server_errors: None
) -> None:
    cert, key, fingerprint = client_cert(tmp_path / "client", "alice")
    ctx = ssl.create_default_context(cafile=str(pair[0]))
    ctx.load_cert_chain(cert, key)
    alice = WsClient(server.server.ports[1], [TEXT], tls=ctx)
    made.append(alice)
    alice.register("alice")
    # her own WHOIS shows her fingerprint and that she is on a secure connection
    alice.send("WHOIS alice")
    replies = alice.take_until(N.RPL_ENDOFWHOIS)
    assert [m.params[-1].split()[-1] for m in replies if m.command == "276"] == [fingerprint]
    assert any(m.command == N.RPL_WHOISSECURE for m in replies)
    # a TCP user does not see it (not an oper), but sees her
    bob = RawClient(server.port)
    made.append(bob)
    bob.register("bob")
    seen = whois(bob, "alice")
    assert not [m for m in seen if m.command == "276"]
    assert any(m.command == N.RPL_WHOISUSER for m in seen)
    # an account with her certificate: a new wss:// connection logs in by it
    alice.send(f"REGISTER * * {PW}")
    alice.expect(lambda m: m.command == "REGISTER" and m.params[0] == "SUCCESS")
    alice.send("PRIVMSG NickServ :CERT ADD")
    added = alice.expect(lambda m: m.command == "NOTICE" and m.source.startswith("NickServ!"))
    assert fingerprint in added.params[1]
    again = WsClient(server.server.ports[1], [TEXT], tls=ctx)
    made.append(again)
    again.send("CAP LS 302")
    again.send("CAP REQ :sasl")
    again.send("NICK alice2")
    again.send("USER alice2 0 * :x")
    again.expect(lambda m: m.command == "CAP" and m.params[1] == "ACK")
    again.send("AUTHENTICATE EXTERNAL")
    assert again.expect("AUTHENTICATE").params == ["+"]
    again.send("AUTHENTICATE +")
    logged_in = again.expect(lambda m: m.command in ("900", "904"))
    assert logged_in.command == "900" and logged_in.params[2] == "alice"
    again.expect("903")
    again.send("CAP END")
    again.expect("001")


def proxied_ws(server: Any, header: bytes) -> WsClient:
    sock = socket.create_connection(("127.0.0.1", server.server.ports[2]), timeout=5)
    sock.sendall(header)
    return WsClient(server.server.ports[2], [TEXT], sock=sock)


@pytest.mark.parametrize("header", [v1("198.51.100.7"), v2("2001:db8::7")], ids=["v1", "v2"])
def test_a_websocket_listener_behind_a_proxy_uses_the_header_address(
    server: Any, made: list[Any], header: bytes, no_server_errors: None
) -> None:
    expected = "198.51.100.7" if header.startswith(b"PROXY") else "2001:db8::7"
    carol = proxied_ws(server, header)
    made.append(carol)
    carol.register("carol")
    bob = RawClient(server.port)
    made.append(bob)
    bob.register("bob")
    bob.send("JOIN #web")
    bob.expect(lambda m: m.command == "366")
    carol.join("#web")
    carol.send("PRIVMSG #web :through the proxy")
    got = bob.expect(lambda m: m.command == "PRIVMSG" and m.params[0] == "#web")
    assert got.params[1] == "through the proxy"
    user = next(m for m in whois(bob, "carol") if m.command == N.RPL_WHOISUSER)
    assert user.params[3] == expected, user  # the host is the forwarded address


def test_a_bare_upgrade_to_a_proxied_websocket_listener_is_refused(
    server: Any, made: list[Any], caplog: pytest.LogCaptureFixture, no_server_errors: None
) -> None:
    caplog.set_level(logging.INFO, logger="relaychat.driver")  # after no_server_errors'
    bob = RawClient(server.port)
    made.append(bob)
    bob.register("bob")
    with pytest.raises(Exception):  # noqa: B017 - the handshake fails as the server closes
        made.append(WsClient(server.server.ports[2], [TEXT]))
    wait_for(lambda: any("PROXY: closed the connection" in r.getMessage() for r in caplog.records))
    bob.send("PING :still")
    bob.expect(lambda m: m.command == "PONG")
