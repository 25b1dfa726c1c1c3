"""SASL in the core (sasl-3.1/3.2): PLAIN, SCRAM-SHA-256 against a client written
here from RFC 5802 (not the server's code), chunking, abort, the numerics."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from coreharness import Clock, Peer, advance, numerics, one
from relaychat.config import Config, LimitsConfig
from relaychat.protocol.commands import build_core
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message
from scramclient import ScramClient

Connect = Callable[..., Peer]
PW = "sasl-password-1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make_account(core: ServerCore, clock: Clock, name: str, password: str = PW) -> None:
    p = Peer(core, clock)
    p.register(name + "reg")
    p.send(f"REGISTER {name} * :{password}")
    assert one(p.take(), "REGISTER").params[0] == "SUCCESS"
    p.send("QUIT")


def sasl_peer(core: ServerCore, clock: Clock, nick: str = "client") -> Peer:
    """A connection that asked for sasl and has not ended CAP negotiation."""
    p = Peer(core, clock)
    p.send("CAP LS 302")
    p.send("CAP REQ :sasl")
    p.send(f"NICK {nick}")
    p.send(f"USER {nick} 0 * :SASL test")
    got = p.take()
    assert [m.params[-1] for m in got if m.command == "CAP" and m.params[1] == "ACK"] == ["sasl"]
    return p


def authenticate_lines(p: Peer, payload: bytes) -> list[Message]:
    """Send ``payload`` the way sasl-3.1 says: 400-byte chunks, ``+`` after an
    exactly-400 last chunk or for an empty payload."""
    text = b64(payload)
    chunks = [text[i : i + 400] for i in range(0, len(text), 400)]
    if not chunks or len(chunks[-1]) == 400:
        chunks.append("+")
    for chunk in chunks:
        p.send(f"AUTHENTICATE {chunk}")
    return p.take()


def challenge(msgs: list[Message]) -> bytes:
    """The server's AUTHENTICATE data (its chunks joined)."""
    parts = [m.params[0] for m in msgs if m.command == "AUTHENTICATE"]
    text = "".join(p for p in parts if p != "+")
    return base64.b64decode(text)


def test_sasl_is_offered_with_its_mechanisms_only_with_a_store(
    core: ServerCore, clock: Clock
) -> None:
    assert core.caps_offered["sasl"] == "PLAIN,SCRAM-SHA-256,EXTERNAL"
    bare = build_core(Config(limits=LimitsConfig(flood_rate=0.0)), clock.now, "t")
    assert "sasl" not in bare.caps_offered
    p = Peer(bare, clock)
    p.send("CAP REQ :sasl")
    assert one(p.take(), "CAP").params[1] == "NAK"


def test_plain_logs_in_before_registration_and_cap_end_registers(
    core: ServerCore, clock: Clock
) -> None:
    make_account(core, clock, "alice")
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    assert [m.params for m in p.take()] == [["+"]]
    got = authenticate_lines(p, b"alice\x00alice\x00" + PW.encode())
    assert numerics(got) == ["900", "903"]
    assert got[0].params[1:] == [
        "client!~client@127.0.0.1",
        "alice",
        "You are now logged in as alice",
    ]
    assert not p.user.registered  # SASL holds registration until CAP END
    p.send("CAP END")
    assert "001" in numerics(p.take())
    assert p.user.account == "alice"


def test_plain_with_a_wrong_password_or_unknown_account_is_904(
    core: ServerCore, clock: Clock
) -> None:
    make_account(core, clock, "bob")
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    assert numerics(authenticate_lines(p, b"\x00bob\x00wrong-password")) == ["904"]
    p.send("AUTHENTICATE PLAIN")
    p.take()
    p.send("AUTHENTICATE " + b64(b"\x00nobody\x00wrong-password"))
    assert p.take() == []  # held by the backoff of this address
    advance(core, clock, 1.0)
    assert numerics(p.take()) == ["904"]
    assert p.user.account is None


def test_plain_with_another_authzid_is_904(core: ServerCore, clock: Clock) -> None:
    make_account(core, clock, "carl")
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    assert numerics(authenticate_lines(p, b"root\x00carl\x00" + PW.encode())) == ["904"]


def test_unknown_mechanism_is_908_then_904(core: ServerCore, clock: Clock) -> None:
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE GSSAPI")
    got = p.take()
    assert numerics(got) == ["908", "904"]
    assert got[0].params[1:] == ["PLAIN,SCRAM-SHA-256,EXTERNAL", "are available SASL mechanisms"]


def test_authenticate_without_the_capability_is_904(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    assert numerics(p.take()) == ["904"]


def test_abort_is_906_and_a_new_exchange_may_start(core: ServerCore, clock: Clock) -> None:
    make_account(core, clock, "dora")
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    p.send("AUTHENTICATE *")
    assert numerics(p.take()) == ["906"]
    p.send("AUTHENTICATE PLAIN")
    p.take()
    assert numerics(authenticate_lines(p, b"\x00dora\x00" + PW.encode())) == ["900", "903"]


def test_cap_end_during_an_exchange_aborts_it_and_registers(core: ServerCore, clock: Clock) -> None:
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    p.send("CAP END")
    got = numerics(p.take())
    assert got[0] == "906" and "001" in got
    assert p.user.account is None


def test_already_logged_in_is_907(core: ServerCore, clock: Clock) -> None:
    make_account(core, clock, "erin")
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    authenticate_lines(p, b"\x00erin\x00" + PW.encode())
    p.send("AUTHENTICATE PLAIN")
    assert numerics(p.take()) == ["907"]


def test_reauthentication_after_registration(core: ServerCore, clock: Clock) -> None:
    """sasl-3.2: a registered client that is not logged in may authenticate."""
    make_account(core, clock, "fred")
    p = Peer(core, clock)
    p.register("fred", caps=("sasl",))
    p.send("AUTHENTICATE PLAIN")
    assert [m.params for m in p.take()] == [["+"]]
    got = authenticate_lines(p, b"\x00fred\x00" + PW.encode())
    assert numerics(got) == ["900", "903"]
    assert p.user.account == "fred"


# ------------------------------------------------------------------ chunking
def test_a_chunk_of_exactly_400_bytes_waits_for_plus(core: ServerCore, clock: Clock) -> None:
    # a PLAIN payload whose base64 is exactly 400 characters: 300 bytes
    password = "p" * (300 - len(b"\x00gina\x00"))
    make_account(core, clock, "gina", password)
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    text = b64(b"\x00gina\x00" + password.encode())
    assert len(text) == 400
    p.send(f"AUTHENTICATE {text}")
    assert p.take() == []  # not the end yet
    p.send("AUTHENTICATE +")
    assert numerics(p.take()) == ["900", "903"]


def test_a_payload_over_two_chunks(core: ServerCore, clock: Clock) -> None:
    password = "q" * 295
    make_account(core, clock, "hugo", password)
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    # an authzid (the same account) and a long password take it past 400 base64 bytes
    payload = b"hugo" + b"\x00hugo\x00" + password.encode()
    assert len(b64(payload)) > 400
    assert numerics(authenticate_lines(p, payload)) == ["900", "903"]


def test_a_chunk_over_400_bytes_is_905(core: ServerCore, clock: Clock) -> None:
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    p.send("AUTHENTICATE " + "A" * 401)
    assert numerics(p.take()) == ["905"]
    p.send("AUTHENTICATE +")  # the exchange is over: this is a mechanism name
    assert numerics(p.take()) == ["908", "904"]


def test_a_response_over_the_total_limit_is_905(core: ServerCore, clock: Clock) -> None:
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    for _ in range(21):  # 8400 bytes: over the 8192-byte limit
        p.send("AUTHENTICATE " + "A" * 400)
    assert numerics(p.take()) == ["905"]


def test_a_response_that_is_not_base64_is_904(core: ServerCore, clock: Clock) -> None:
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE PLAIN")
    p.take()
    p.send("AUTHENTICATE !!!notbase64")
    assert numerics(p.take()) == ["904"]


# ------------------------------------------------------------- SCRAM-SHA-256
def test_scram_sha_256_exchange(core: ServerCore, clock: Clock) -> None:
    make_account(core, clock, "iris")
    p = sasl_peer(core, clock)
    client = ScramClient("iris", PW)
    p.send("AUTHENTICATE SCRAM-SHA-256")
    assert [m.params for m in p.take()] == [["+"]]
    server_first = challenge(authenticate_lines(p, client.first()))
    server_final = challenge(authenticate_lines(p, client.final(server_first)))
    assert client.check(server_final)  # the server proved it knows the ServerKey
    assert p.user.account is None  # not before the client's empty response
    assert numerics(authenticate_lines(p, b"")) == ["900", "903"]
    assert p.user.account == "iris"


@pytest.mark.parametrize("user", ["iris", "nobody"])
def test_scram_with_a_wrong_password_or_unknown_account_is_904(
    core: ServerCore, clock: Clock, user: str
) -> None:
    make_account(core, clock, "iris")
    p = sasl_peer(core, clock)
    client = ScramClient(user, "not-the-password")
    p.send("AUTHENTICATE SCRAM-SHA-256")
    p.take()
    server_first = challenge(authenticate_lines(p, client.first()))
    assert b",s=" in server_first and b",i=4096" in server_first  # same shape either way
    assert numerics(authenticate_lines(p, client.final(server_first))) == ["904"]
    assert p.user.account is None


def test_scram_salt_of_an_unknown_account_is_stable(core: ServerCore, clock: Clock) -> None:
    salts = []
    for _ in range(2):
        p = sasl_peer(core, clock)
        p.send("AUTHENTICATE SCRAM-SHA-256")
        p.take()
        first = challenge(authenticate_lines(p, ScramClient("ghost", "x").first()))
        salts.append(dict(i.split("=", 1) for i in first.decode().split(","))["s"])
        p.send("AUTHENTICATE *")
        p.take()
    assert salts[0] == salts[1]


def test_scram_with_a_tampered_nonce_or_channel_binding_is_904(
    core: ServerCore, clock: Clock
) -> None:
    make_account(core, clock, "jack")
    for tamper in (b"r=", b"c="):
        p = sasl_peer(core, clock)
        client = ScramClient("jack", PW)
        p.send("AUTHENTICATE SCRAM-SHA-256")
        p.take()
        server_first = challenge(authenticate_lines(p, client.first()))
        final = client.final(server_first)
        final = final.replace(tamper, tamper + b"x", 1)
        assert numerics(authenticate_lines(p, final)) == ["904"]
    p = sasl_peer(core, clock)
    p.send("AUTHENTICATE SCRAM-SHA-256")
    p.take()
    assert numerics(authenticate_lines(p, b"p=tls-unique,,n=jack,r=abc")) == ["904"]
