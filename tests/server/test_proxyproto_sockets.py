"""PROXY protocol listeners over real sockets, for both engines: v1 and v2
headers give the client's address (WHOIS, K-lines, cloaks, per-IP limits), a header and IRC lines in
one packet, a TLS listener behind a proxy (header, then the ClientHello; also in
one packet), and every refusal (untrusted peer, malformed, truncated, oversized,
stalled header) closing that one connection with one log line while a
bystander on another listener keeps chatting. A listener without ``proxy``
treats a PROXY line as an unknown command."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ircutil import DEFAULT_TIMEOUT, RawClient, make_config, wait_for
from relaychat.config import CloakingConfig, Config, ListenConfig, OperConfig
from relaychat.passwords import hash_password
from relaychat.protocol import numerics as N
from relaychat.protocol.cloaking import Cloaker
from relaychat.server.proxy import V2_MAX_LENGTH, V2_SIGNATURE
from relaychat.server.tls import write_self_signed

PROXY_TIMEOUT = 0.5
PASSWORD = "secret"
HASH = hash_password(PASSWORD, n=2**10)

# the server's listeners, in order
PLAIN, PROXIED, PROXIED_TLS, UNTRUSTED = range(4)


# ------------------------------------------------------------------ headers
def v1(source: str, port: int = 40000) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    dest = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {dest} {port} 6667\r\n".encode()


def v2(source: str | None, command: int = 1, tlvs: bytes = b"") -> bytes:
    if source is None:
        body, family = b"", 0x00
    else:
        addr = ipaddress.ip_address(source)
        dest = ipaddress.ip_address("::1" if addr.version == 6 else "127.0.0.1")
        body = addr.packed + dest.packed + struct.pack("!HH", 40000, 6667)
        family = 0x21 if addr.version == 6 else 0x11
    body += tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(tmp_path / "tls", "localhost", days=2)


@pytest.fixture
def srv(engine: str, run_config: Callable[[Config], Any], pair: tuple[Path, Path]) -> Any:
    """Four listeners: plaintext (``.port``), behind proxies on loopback,
    the same with TLS, and one whose proxies are elsewhere (10.0.0.0/8)."""
    cert, key = str(pair[0]), str(pair[1])
    cfg = dataclasses.replace(
        make_config(engine, proxy_timeout=PROXY_TIMEOUT),
        listen=(
            ListenConfig("127.0.0.1", 0),
            ListenConfig("127.0.0.1", 0, proxy=("127.0.0.0/8",)),
            ListenConfig("127.0.0.1", 0, tls=True, cert=cert, key=key, proxy=("127.0.0.1",)),
            ListenConfig("127.0.0.1", 0, proxy=("10.0.0.0/8",)),
        ),
        opers={"admin": OperConfig(HASH)},
    )
    return run_config(cfg)


def port_of(server: Any, which: int) -> int:
    port: int = server.server.ports[which]
    return port


@pytest.fixture
def made() -> Iterator[list[RawClient]]:
    clients: list[RawClient] = []
    yield clients
    for c in clients:
        c.close()


@pytest.fixture
def proxied(srv: Any, made: list[RawClient]) -> Callable[..., RawClient]:
    """``proxied(header, listener=PROXIED, first=b"")`` -> a RawClient that sent
    ``header`` (and ``first`` in the same packet) to that listener."""

    def make(header: bytes, listener: int = PROXIED, first: bytes = b"") -> RawClient:
        c = RawClient(port_of(srv, listener), keep_raw=True)
        made.append(c)
        c.sock.sendall(header + first)
        return c

    return make


@pytest.fixture
def bystander(srv: Any, made: list[RawClient]) -> RawClient:
    c = RawClient(srv.port)
    made.append(c)
    c.register("bystander")
    c.join("#room")
    return c


@pytest.fixture
def proxy_log(caplog: pytest.LogCaptureFixture, no_server_errors: None) -> Callable[[], list[str]]:
    """The server's PROXY log lines so far (and no error logged, as ever)."""
    caplog.set_level(logging.INFO, logger="relaychat.driver")  # after no_server_errors'
    return lambda: [r.getMessage() for r in caplog.records if "PROXY" in r.getMessage()]


def whois_host(asker: RawClient, nick: str) -> str:
    asker.send(f"WHOIS {nick}")
    reply = asker.take_until(N.RPL_ENDOFWHOIS)
    (user,) = [m for m in reply if m.command == N.RPL_WHOISUSER]
    return user.params[3]


def still_chatting(bystander: RawClient, made: list[RawClient], srv: Any) -> None:
    other = RawClient(srv.port)
    made.append(other)
    other.register("other")
    other.join("#room")
    other.send("PRIVMSG #room :still here")
    assert bystander.expect("PRIVMSG").params == ["#room", "still here"]


# -------------------------------------------------------------- good headers
@pytest.mark.parametrize(
    ("header", "host"),
    [
        (v1("203.0.113.7"), "203.0.113.7"),
        (v1("2001:db8::7"), "2001:db8::7"),
        (v2("198.51.100.7"), "198.51.100.7"),
        (v2("2001:db8::8", tlvs=tlv(0x01, b"irc") + tlv(0x04, b"\0" * 20)), "2001:db8::8"),
        (v1("::ffff:192.0.2.9"), "192.0.2.9"),
    ],
)
def test_the_header_source_is_the_clients_address(
    proxied: Callable[..., RawClient],
    bystander: RawClient,
    header: bytes,
    host: str,
    no_server_errors: None,
) -> None:
    c = proxied(header)
    c.register("far")
    assert whois_host(bystander, "far") == host
    c.join("#room")
    assert bystander.expect("JOIN").source == f"far!~far@{host}"


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", v2(None, command=0), v2(None)])
def test_unknown_and_local_keep_the_proxys_address(
    proxied: Callable[..., RawClient], bystander: RawClient, header: bytes
) -> None:
    proxied(header).register("near")
    assert whois_host(bystander, "near") == "127.0.0.1"


@pytest.mark.parametrize("header", [v1("203.0.113.20"), v2("203.0.113.20")])
def test_header_and_irc_lines_in_one_packet(
    proxied: Callable[..., RawClient], bystander: RawClient, header: bytes
) -> None:
    c = proxied(header, first=b"NICK fast\r\nUSER fast 0 * :fast\r\n")
    c.expect(N.RPL_WELCOME)
    assert whois_host(bystander, "fast") == "203.0.113.20"


def test_a_kline_on_the_forwarded_address_refuses_it(
    srv: Any, proxied: Callable[..., RawClient], made: list[RawClient]
) -> None:
    op = RawClient(srv.port)
    made.append(op)
    op.register("op")
    op.send(f"OPER admin {PASSWORD}")
    op.expect(N.RPL_YOUREOPER)
    victim = proxied(v2("203.0.113.66"))
    victim.register("victim")
    op.send("KLINE *@203.0.113.66 :go away")
    assert victim.expect(N.ERR_YOUREBANNEDCREEP).params[-1].endswith("go away")
    victim.wait_closed()
    again = proxied(v1("203.0.113.66"))
    again.send("NICK again")
    again.send("USER again 0 * :again")
    again.expect(N.ERR_YOUREBANNEDCREEP)
    again.wait_closed()
    # the proxy itself (another client behind it) is not banned
    proxied(v1("203.0.113.67")).register("fine")


def test_per_ip_limits_count_the_forwarded_address(
    engine: str, run_config: Callable[[Config], Any], made: list[RawClient]
) -> None:
    cfg = dataclasses.replace(
        make_config(engine, max_connections_per_ip=1),
        listen=(ListenConfig("127.0.0.1", 0, proxy=("127.0.0.1",)),),
    )
    server = run_config(cfg)
    for source in ("203.0.113.1", "203.0.113.2"):  # one proxy, two clients: both fit
        c = RawClient(server.port)
        made.append(c)
        c.send(v1(source))
        c.register("u" + source.rsplit(".", 1)[1])
    twice = RawClient(server.port)
    made.append(twice)
    twice.send(v1("203.0.113.1"))
    assert "Too many connections" in twice.expect("ERROR").params[-1]


# ---------------------------------------------------------------------- TLS
class _BioSocket:
    """A TLS client over memory BIOs, so that the test decides what goes in
    which packet; just enough of a socket for RawClient."""

    def __init__(self, raw: socket.socket, ctx: ssl.SSLContext, first: bytes) -> None:
        self.raw = raw
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="127.0.0.1")
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        raw.sendall(first + self.out.read())  # the header and the ClientHello: one packet
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = raw.recv(65536)
                if not data:
                    raise ConnectionResetError("closed during the handshake") from None
                self.inc.write(data)
        self._flush()

    def _flush(self) -> None:
        out = self.out.read()
        if out:
            self.raw.sendall(out)

    def fileno(self) -> int:
        return self.raw.fileno()

    def sendall(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def recv(self, size: int) -> bytes:
        """Plaintext, waiting past records that carry none (session tickets)."""
        chunks: list[bytes] = []
        while not chunks:
            data = self.raw.recv(65536)
            if not data:
                return b""
            self.inc.write(data)
            while True:
                try:
                    chunks.append(self.obj.read(size))
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
        return b"".join(chunks)

    def close(self) -> None:
        self.raw.close()


@pytest.mark.parametrize("same_packet", [False, True], ids=["header-then-hello", "one-packet"])
def test_a_tls_listener_behind_a_proxy_reads_the_header_then_the_handshake(
    srv: Any,
    pair: tuple[Path, Path],
    bystander: RawClient,
    made: list[RawClient],
    same_packet: bool,
    no_server_errors: None,
) -> None:
    ctx = ssl.create_default_context(cafile=str(pair[0]))
    c = RawClient(port_of(srv, PROXIED_TLS))
    made.append(c)
    if same_packet:
        c.sock = _BioSocket(c.sock, ctx, v2("203.0.113.44"))  # type: ignore[assignment]
    else:
        c.sock.sendall(v1("203.0.113.44"))
        c.sock = ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
    c.register("secure")
    assert c.expect("MODE").params == ["secure", "+Z"]
    assert whois_host(bystander, "secure") == "203.0.113.44"
    c.join("#room")
    c.send("PRIVMSG #room :over TLS, through a proxy")
    assert bystander.expect("PRIVMSG").params == ["#room", "over TLS, through a proxy"]


def test_a_tls_listener_behind_a_proxy_refuses_a_bare_client_hello(
    srv: Any, pair: tuple[Path, Path], proxy_log: Callable[[], list[str]]
) -> None:
    ctx = ssl.create_default_context(cafile=str(pair[0]))
    with pytest.raises((ssl.SSLError, OSError)):
        RawClient(port_of(srv, PROXIED_TLS), timeout=5, tls=ctx)
    wait_for(lambda: proxy_log(), what="the refusal's log line")
    assert proxy_log() == ["PROXY: closed the connection from 127.0.0.1: not a PROXY header"]


# ------------------------------------------------------------------ refusals
def refused_quietly(c: RawClient, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Closed, and not a byte (no ERROR, no numeric: no session was made)."""
    c.wait_closed(timeout)
    assert c.raw == b""


def test_an_untrusted_peer_is_closed_with_one_log_line(
    srv: Any,
    proxied: Callable[..., RawClient],
    bystander: RawClient,
    made: list[RawClient],
    proxy_log: Callable[[], list[str]],
) -> None:
    c = proxied(v1("203.0.113.5"), listener=UNTRUSTED, first=b"NICK x\r\nUSER x 0 * :x\r\n")
    refused_quietly(c)
    wait_for(lambda: proxy_log(), what="the refusal's log line")
    assert proxy_log() == [
        "PROXY: closed the connection from 127.0.0.1: not a trusted proxy of this listener"
    ]
    assert not [s for s in srv.core.sessions.values() if s.ip == "203.0.113.5"]
    still_chatting(bystander, made, srv)


BAD_HEADERS = {
    "irc-first": (b"NICK x\r\nUSER x 0 * :x\r\n", "not a PROXY header"),
    "bad-v1-address": (b"PROXY TCP4 1.2.3.999 127.0.0.1 1 2\r\n", "invalid address"),
    "bad-v1-port": (b"PROXY TCP4 1.2.3.4 127.0.0.1 99999 2\r\n", "invalid port"),
    "bad-v1-protocol": (b"PROXY UDP4 1.2.3.4 127.0.0.1 1 2\r\n", "unknown protocol"),
    "oversized-v1": (b"PROXY UNKNOWN " + b"x" * 200, "longer than 107"),
    "bad-v2-version": (V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12, "version 1"),
    "bad-v2-command": (V2_SIGNATURE + b"\x2f\x11\x00\x0c" + b"\0" * 12, "unknown command"),
    "short-v2-address": (V2_SIGNATURE + b"\x21\x21\x00\x0c" + b"\0" * 12, "too short"),
    "oversized-v2": (V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX_LENGTH + 1), "more"),
    "bad-v2-tlv": (v2("1.2.3.4", tlvs=b"\x01\x00\x10ab"), "truncated TLV"),
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
@pytest.mark.parametrize("listener", [PROXIED, PROXIED_TLS])
def test_a_bad_header_closes_that_connection_only(
    srv: Any,
    proxied: Callable[..., RawClient],
    bystander: RawClient,
    made: list[RawClient],
    proxy_log: Callable[[], list[str]],
    name: str,
    listener: int,
    no_server_errors: None,
) -> None:
    data, reason = BAD_HEADERS[name]
    c = proxied(data, listener=listener)
    refused_quietly(c)
    wait_for(lambda: proxy_log(), what="the refusal's log line")
    (line,) = proxy_log()
    assert line.startswith("PROXY: closed the connection from 127.0.0.1: ") and reason in line
    still_chatting(bystander, made, srv)


@pytest.mark.parametrize(
    "partial",
    [b"", b"PROXY TCP4 203.0.113.9 127.0.0.1", v2("203.0.113.9")[:20], V2_SIGNATURE[:7]],
    ids=["nothing", "half-v1", "half-v2", "half-signature"],
)
def test_a_stalled_header_is_closed_at_the_deadline(
    srv: Any,
    proxied: Callable[..., RawClient],
    bystander: RawClient,
    made: list[RawClient],
    proxy_log: Callable[[], list[str]],
    partial: bytes,
) -> None:
    started = time.monotonic()
    c = proxied(partial)
    refused_quietly(c, timeout=PROXY_TIMEOUT + 5)
    assert time.monotonic() - started >= PROXY_TIMEOUT * 0.8
    wait_for(lambda: proxy_log(), what="the refusal's log line")
    assert proxy_log() == [
        "PROXY: closed the connection from 127.0.0.1: no PROXY header by the deadline"
    ]
    still_chatting(bystander, made, srv)


def test_a_header_cut_short_by_the_peer_is_logged(
    srv: Any,
    proxied: Callable[..., RawClient],
    bystander: RawClient,
    made: list[RawClient],
    proxy_log: Callable[[], list[str]],
) -> None:
    c = proxied(b"PROXY TCP4 203.0.113.9")
    c.sock.shutdown(socket.SHUT_WR)
    refused_quietly(c)
    wait_for(lambda: proxy_log(), what="the log line")
    assert proxy_log() == ["PROXY: 127.0.0.1 closed the connection within its PROXY header"]
    still_chatting(bystander, made, srv)


def test_many_bad_headers_at_once_leave_no_session_and_no_thread_behind(
    srv: Any, bystander: RawClient, made: list[RawClient], proxy_log: Callable[[], list[str]]
) -> None:
    clients = []
    for i in range(30):
        c = RawClient(port_of(srv, PROXIED), keep_raw=True)
        made.append(c)
        clients.append(c)
        c.sock.sendall(b"GARBAGE %d\r\n" % i)
    for c in clients:
        refused_quietly(c)
    wait_for(lambda: len(proxy_log()) == 30, what="30 log lines")
    assert [s.user.nick for s in list(srv.core.sessions.values())] == ["bystander"]
    still_chatting(bystander, made, srv)


# ------------------------------------------------- a listener without proxy
def test_a_plain_listener_treats_a_proxy_line_as_an_unknown_command(
    srv: Any, bystander: RawClient, made: list[RawClient], no_server_errors: None
) -> None:
    c = RawClient(srv.port)
    made.append(c)
    line = v1("203.0.113.99").decode().rstrip("\r\n")
    c.send(line)
    assert c.expect(N.ERR_NOTREGISTERED).params[0] == "*"  # what any command gets so early
    c.register("direct")
    assert whois_host(bystander, "direct") == "127.0.0.1"
    c.send(line)
    assert c.expect(N.ERR_UNKNOWNCOMMAND).params[:2] == ["direct", "PROXY"]
    assert whois_host(bystander, "direct") == "127.0.0.1"


def test_the_cloak_is_made_from_the_forwarded_address(
    engine: str, run_config: Callable[[Config], Any], made: list[RawClient]
) -> None:
    secret = "a cloaking secret for the PROXY tests"
    cfg = dataclasses.replace(
        make_config(engine),
        listen=(
            ListenConfig("127.0.0.1", 0),
            ListenConfig("127.0.0.1", 0, proxy=("127.0.0.1",)),
        ),
        cloaking=CloakingConfig(enabled=True, secret=secret),
    )
    server = run_config(cfg)
    watcher = RawClient(server.port)
    made.append(watcher)
    watcher.register("watcher")
    far = RawClient(port_of(server, 1))
    made.append(far)
    far.send(v2("203.0.113.77"))
    far.register("far")
    cloaker = Cloaker(secret, "ip", 32, 64)
    assert whois_host(watcher, "far") == cloaker.cloak("203.0.113.77")
    assert whois_host(watcher, "watcher") == cloaker.cloak("127.0.0.1")
