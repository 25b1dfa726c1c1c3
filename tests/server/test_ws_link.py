"""The WebSocket link without sockets: bytes from a ``websockets`` sans-I/O client
in, IRC lines out; the core's output in, frames out; the client address."""

from __future__ import annotations

import pytest
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from relaychat.config import WebSocketConfig
from relaychat.server.websocket import WebSocketLink, client_address


def pair(
    settings: WebSocketConfig | None = None, offer: tuple[str, ...] = ("text.ircv3.net",)
) -> tuple[ClientProtocol, WebSocketLink]:
    client = ClientProtocol(
        parse_uri("ws://127.0.0.1/"), subprotocols=[Subprotocol(p) for p in offer]
    )
    link = WebSocketLink(settings or WebSocketConfig(), "127.0.0.1", False, None)
    client.send_request(client.connect())
    lines, _ = link.receive_data(b"".join(client.data_to_send()))
    assert link.open and lines == []
    client.receive_data(link.data_to_send())
    assert client.handshake_exc is None
    client.events_received()
    return client, link


def frames(client: ClientProtocol, data: bytes) -> list[Frame]:
    client.receive_data(data)
    return [e for e in client.events_received() if isinstance(e, Frame)]


def send(client: ClientProtocol, link: WebSocketLink, *texts: str) -> tuple[list[bytes], int]:
    for text in texts:
        client.send_text(text.encode())
    return link.receive_data(b"".join(client.data_to_send()))


def test_each_message_is_one_line_and_empty_ones_are_counted() -> None:
    client, link = pair()
    assert send(client, link, "NICK a", "", "USER a 0 * :a\r\n") == (
        [b"NICK a", b"USER a 0 * :a"],
        1,
    )


def test_a_fragmented_message_is_one_line() -> None:
    client, link = pair()
    client.send_text(b"PRIVMSG #c ", fin=False)
    client.send_continuation(b":split ", fin=False)
    client.send_continuation(b"in three", fin=True)
    lines, _ = link.receive_data(b"".join(client.data_to_send()))
    assert lines == [b"PRIVMSG #c :split in three"]


def test_output_lines_become_one_text_frame_each_with_bad_utf8_replaced() -> None:
    client, link = pair()
    out = link.send_lines(b":a PRIVMSG b :caf\xc3\xa9\r\n:a PRIVMSG b :\xff!\r\n", False)
    got = frames(client, out)
    assert [f.opcode for f in got] == [Opcode.TEXT, Opcode.TEXT]
    assert [bytes(f.data).decode() for f in got] == [
        ":a PRIVMSG b :caf\u00e9",
        ":a PRIVMSG b :\ufffd!",
    ]


def test_binary_output_keeps_the_bytes_and_close_sends_1000() -> None:
    client, link = pair(offer=("binary.ircv3.net",))
    got = frames(client, link.send_lines(b"ERROR :\xff bye\r\n", True))
    assert [f.opcode for f in got] == [Opcode.BINARY, Opcode.CLOSE]
    assert bytes(got[0].data) == b"ERROR :\xff bye"
    assert got[1].data[:2] == (1000).to_bytes(2, "big")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_every_payload_length_encoding_parses_and_a_pending_pong_goes_first(size: int) -> None:
    client, link = pair(WebSocketConfig(max_message=1 << 20))
    client.send_ping(b"p")
    assert link.receive_data(b"".join(client.data_to_send())) == ([], 0)
    line = b"x" * size
    got = frames(client, link.send_lines(line + b"\r\n:s NOTICE a :b\r\n", False))
    assert [(f.opcode, bytes(f.data)) for f in got] == [
        (Opcode.PONG, b"p"),
        (Opcode.TEXT, line),
        (Opcode.TEXT, b":s NOTICE a :b"),
    ]
    assert all(f.fin for f in got)


def test_a_peer_close_fails_the_link_as_a_plain_close() -> None:
    client, link = pair()
    client.send_close(1001, "going away")
    lines, _ = link.receive_data(b"".join(client.data_to_send()))
    assert lines == [] and link.failed == "Connection closed"
    assert link.data_to_send() and link.eof


def test_a_ping_before_the_sweep_and_none_after_traffic() -> None:
    client, link = pair()
    link.active = False
    assert link.keepalive()
    assert [f.opcode for f in frames(client, link.data_to_send())] == [Opcode.PING]
    link.send_lines(b"PING :x\r\n", False)
    link.data_to_send()
    assert not link.keepalive()  # traffic since: no ping this round


TRUSTED = ("127.0.0.0/8", "10.0.0.0/8", "2001:db8::/32")


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected"),
    [
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.5")], (), "127.0.0.1"),
        ("192.0.2.1", [("X-Forwarded-For", "203.0.113.5")], TRUSTED, "192.0.2.1"),
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.5")], TRUSTED, "203.0.113.5"),
        (
            "127.0.0.1",
            [("X-Forwarded-For", "6.6.6.6, 203.0.113.5, 10.1.1.1")],
            TRUSTED,
            "203.0.113.5",
        ),
        (
            "127.0.0.1",
            [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "10.1.1.1")],
            TRUSTED,
            "6.6.6.6",
        ),
        ("127.0.0.1", [("X-Forwarded-For", "10.2.2.2, 10.1.1.1")], TRUSTED, "10.2.2.2"),
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.5:4711")], TRUSTED, "203.0.113.5"),
        ("127.0.0.1", [("X-Forwarded-For", "junk, 10.1.1.1")], TRUSTED, "10.1.1.1"),
        ("127.0.0.1", [("X-Forwarded-For", "")], TRUSTED, "127.0.0.1"),
        (
            "127.0.0.1",
            [("Forwarded", 'for="[2001:db9::1]:80", for=10.0.0.1')],
            TRUSTED,
            "2001:db9::1",
        ),
        (
            "127.0.0.1",
            [("Forwarded", "for=_hidden"), ("X-Forwarded-For", "6.6.6.6")],
            TRUSTED,
            "127.0.0.1",
        ),
        ("127.0.0.1", [("Forwarded", "For=198.51.100.17;proto=https")], TRUSTED, "198.51.100.17"),
        ("::ffff:127.0.0.1", [("X-Forwarded-For", "::ffff:203.0.113.5")], TRUSTED, "203.0.113.5"),
        ("127.0.0.1", [], TRUSTED, "127.0.0.1"),
    ],
)
def test_client_address(
    peer: str, headers: list[tuple[str, str]], trusted: tuple[str, ...], expected: str
) -> None:
    assert client_address(peer, Headers(headers), trusted) == expected
