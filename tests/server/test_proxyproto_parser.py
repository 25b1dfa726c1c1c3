"""The PROXY protocol parser without sockets: good v1 and v2 headers, every
malformed one refused with a reason, bytes after the header kept, headers fed
a byte at a time, ``wanted`` never reading past the header, and arbitrary bytes
raising nothing but ProxyHeaderError."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaychat.server.proxy import (
    V1_MAX_LENGTH,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyParser,
    TrustedProxies,
)


def v2(
    command: int = 1,
    family: int = 0x11,
    body: bytes = b"",
    *,
    version: int = 2,
    length: int | None = None,
) -> bytes:
    size = len(body) if length is None else length
    return V2_SIGNATURE + bytes([version << 4 | command, family]) + struct.pack("!H", size) + body


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return a.packed + b.packed + struct.pack("!HH", sport, dport)


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def parse(data: bytes) -> ProxyHeader:
    header = ProxyParser().feed(data)
    assert header is not None
    return header


def parse_bytewise(data: bytes) -> ProxyHeader | None:
    """Feed one byte at a time; the header as soon as it completes."""
    parser = ProxyParser()
    for i in range(len(data)):
        header = parser.feed(data[i : i + 1])
        if header is not None:
            return ProxyHeader(header.version, header.source, header.port, data[i + 1 :])
    return None


def refused(data: bytes) -> str:
    with pytest.raises(ProxyHeaderError) as info:
        header = ProxyParser().feed(data)
        assert header is not None, "incomplete, not refused"
    return info.value.reason


# ---------------------------------------------------------------- version 1
@pytest.mark.parametrize(
    ("line", "source", "port"),
    [
        (b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 6667\r\n", "203.0.113.7", 56324),
        (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", "255.255.255.255", 65535),
        (b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", "0.0.0.0", 0),
        (b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 6697\r\n", "2001:db8::7", 4000),
        (b"PROXY TCP6 2001:DB8:0:0:0:0:0:7 ::1 1 2\r\n", "2001:db8::7", 1),
        (b"PROXY TCP6 ::ffff:198.51.100.4 ::1 1 2\r\n", "198.51.100.4", 1),
    ],
)
def test_v1_tcp_headers_give_the_source(line: bytes, source: str, port: int) -> None:
    assert parse(line) == ProxyHeader(1, source, port, b"")
    assert parse_bytewise(line) == ProxyHeader(1, source, port, b"")


def test_the_longest_v1_lines_are_accepted() -> None:
    addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {addr} {addr} 65535 65535\r\n".encode()
    assert parse(line).source == addr
    longest = f"PROXY UNKNOWN {addr} {addr} 65535 65535\r\n".encode()
    assert len(longest) == V1_MAX_LENGTH  # the spec's worst case
    assert parse(longest + b"x") == ProxyHeader(1, None, None, b"x")


@pytest.mark.parametrize(
    "line",
    [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", b"PROXY UNKNOWN whatever\r\n"],
)
def test_v1_unknown_keeps_the_connections_address(line: bytes) -> None:
    assert parse(line) == ProxyHeader(1, None, None, b"")


def test_bytes_after_a_v1_header_are_kept() -> None:
    data = b"PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\nNICK a\r\nUSER a 0 * :a\r\n"
    assert parse(data).leftover == b"NICK a\r\nUSER a 0 * :a\r\n"
    tls_hello = b"\x16\x03\x01\x02\x00\x01"
    assert parse(b"PROXY UNKNOWN\r\n" + tls_hello).leftover == tls_hello


@pytest.mark.parametrize(
    "data",
    [
        b"NICK alice\r\n",
        b"PRIVMSG #a :hi\r\n",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY\r\n",
        b"PROXY \r\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa3 2\r\n",  # an Arabic-Indic digit
        b"PROXY TCP4 1.2.3.\xc3\xa9 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n",
    ],
)
def test_malformed_v1_is_refused(data: bytes) -> None:
    assert refused(data)


def test_an_oversized_v1_line_is_refused_at_the_bound() -> None:
    parser = ProxyParser()
    assert parser.feed(b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 15)) is None
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parser.feed(b"x")
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parser.feed(b"\r\n")  # the error sticks


def test_non_proxy_input_is_refused_at_its_first_byte() -> None:
    with pytest.raises(ProxyHeaderError, match="not a PROXY header"):
        ProxyParser().feed(b"N")
    with pytest.raises(ProxyHeaderError, match="not a PROXY header"):
        ProxyParser().feed(b"\x16")  # a TLS ClientHello without a header
    parser = ProxyParser()
    assert parser.feed(b"PRO") is None
    with pytest.raises(ProxyHeaderError):
        parser.feed(b"Z")


def test_a_truncated_header_is_incomplete_not_accepted() -> None:
    for whole in (
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        v2(body=inet("1.2.3.4", "5.6.7.8", 1, 2)),
    ):
        for cut in range(len(whole)):
            parser = ProxyParser()
            assert parser.feed(whole[:cut]) is None
            assert parser.wanted() >= 1


# ---------------------------------------------------------------- version 2
def test_v2_ipv4_and_ipv6_give_the_source() -> None:
    four = v2(body=inet("203.0.113.9", "192.0.2.1", 40000, 6667))
    assert parse(four) == ProxyHeader(2, "203.0.113.9", 40000, b"")
    six = v2(family=0x21, body=inet("2001:db8::9", "2001:db8::1", 5, 6697))
    assert parse(six) == ProxyHeader(2, "2001:db8::9", 5, b"")
    assert parse_bytewise(six) == ProxyHeader(2, "2001:db8::9", 5, b"")


def test_v2_tlvs_are_skipped_and_bytes_after_are_kept() -> None:
    tlvs = tlv(0x01, b"irc") + tlv(0x04, b"\x00" * 40) + tlv(0x20, b"\x07" + b"\x00" * 4)
    data = v2(body=inet("198.51.100.2", "192.0.2.1", 1, 2) + tlvs) + b"NICK x\r\n"
    assert parse(data) == ProxyHeader(2, "198.51.100.2", 1, b"NICK x\r\n")
    assert parse_bytewise(data) == ProxyHeader(2, "198.51.100.2", 1, b"NICK x\r\n")


@pytest.mark.parametrize(
    "data",
    [
        v2(command=0, family=0x00),  # LOCAL: a health check by the proxy itself
        v2(command=0, family=0x11, body=inet("1.2.3.4", "5.6.7.8", 1, 2)),
        v2(command=0, family=0x11, body=b"junk that LOCAL tells us to ignore"),
        v2(command=1, family=0x00),  # PROXY with UNSPEC: keep the real address
        v2(command=1, family=0x00, body=tlv(0x04, b"")),
        v2(command=1, family=0x31, body=b"/run/a.sock".ljust(108, b"\0") + b"\0" * 108),
    ],
)
def test_v2_local_unspec_and_unix_keep_the_connections_address(data: bytes) -> None:
    header = parse(data + b"rest")
    assert (header.source, header.port, header.leftover) == (None, None, b"rest")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (V2_SIGNATURE[:5] + b"X" + V2_SIGNATURE[6:] + b"\x21\x11\x00\x00", "not a PROXY"),
        (v2(version=1, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "version 1"),
        (v2(version=3, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "version 3"),
        (v2(command=2, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "unknown command"),
        (v2(family=0x41, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "unknown family"),
        (v2(family=0x13, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "unknown family"),
        (v2(family=0x12, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "DGRAM"),
        (v2(family=0x11, body=b"\x01\x02\x03\x04"), "too short"),
        (v2(family=0x21, body=inet("1.2.3.4", "5.6.7.8", 1, 2)), "too short"),
        (v2(family=0x31, body=b"\0" * 100), "too short"),
        (v2(body=inet("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00"), "truncated TLV"),
        (v2(body=inet("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\x09abc"), "truncated TLV"),
        (v2(length=V2_MAX_LENGTH + 1), f"more than {V2_MAX_LENGTH}"),
        (v2(length=0xFFFF), "more than"),
    ],
)
def test_malformed_v2_is_refused(data: bytes, reason: str) -> None:
    assert reason in refused(data)


def test_an_oversized_v2_length_is_refused_before_its_body_arrives() -> None:
    parser = ProxyParser()
    with pytest.raises(ProxyHeaderError, match="more than"):
        parser.feed(v2(length=V2_MAX_LENGTH + 1)[:16])


def test_the_v2_bound_is_configurable() -> None:
    data = v2(body=inet("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0x04, b"\0" * 100))
    with pytest.raises(ProxyHeaderError):
        ProxyParser(max_v2_length=64).feed(data)
    assert ProxyParser(max_v2_length=200).feed(data) is not None


# ------------------------------------------------------------ wanted, errors
@pytest.mark.parametrize(
    "data",
    [
        b"PROXY UNKNOWN\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 6697\r\n",
        v2(command=0, family=0x00),
        v2(body=inet("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0x04, b"\0" * 30)),
    ],
)
def test_reading_what_wanted_says_never_reads_past_the_header(data: bytes) -> None:
    """The threads engine reads exactly the header and leaves the rest (a
    ClientHello) in the socket: ``wanted`` must never ask for a byte past it."""
    stream = data + b"\x16\x03\x01 the rest"
    parser = ProxyParser()
    pos = 0
    while True:
        want = parser.wanted()
        assert want >= 1
        chunk = stream[pos : pos + want]
        pos += len(chunk)
        header = parser.feed(chunk)
        if header is not None:
            break
    assert pos == len(data)
    assert header.leftover == b""


def test_feeding_after_the_header_is_a_programming_error() -> None:
    parser = ProxyParser()
    assert parser.feed(b"PROXY UNKNOWN\r\n") is not None
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_trusted_proxies_match_addresses_networks_and_mapped_ipv4() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
    assert trusted.trusts("10.1.2.3")
    assert trusted.trusts("::ffff:10.1.2.3")
    assert trusted.trusts("192.0.2.7")
    assert trusted.trusts("2001:db8::5")
    assert not trusted.trusts("192.0.2.8")
    assert not trusted.trusts("127.0.0.1")
    assert not trusted.trusts("unknown")
    assert not TrustedProxies([]).trusts("127.0.0.1")


# ---------------------------------------------------------------- properties
@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_raise_nothing_but_proxy_header_error(chunks: list[bytes]) -> None:
    parser = ProxyParser()
    for chunk in chunks:
        try:
            if parser.feed(chunk) is not None:
                return
        except ProxyHeaderError:
            return
        assert parser.wanted() >= 1


_PREFIXES = st.sampled_from([b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", V2_SIGNATURE, b""])


@settings(max_examples=400, deadline=None)
@given(_PREFIXES, st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_header_like_bytes_fed_in_pieces_end_or_wait_within_bounds(
    prefix: bytes, rest: bytes, step: int
) -> None:
    """Whatever follows a real prefix: a header, an error, or waiting for
    more; never more than the bounds buffered before an answer."""
    data = prefix + rest
    parser = ProxyParser()
    for pos in range(0, len(data), step):
        try:
            header = parser.feed(data[pos : pos + step])
        except ProxyHeaderError:
            return
        if header is not None:
            assert data.endswith(header.leftover)
            return
    assert len(data) < 16 + V2_MAX_LENGTH  # waiting: only while under the bound
