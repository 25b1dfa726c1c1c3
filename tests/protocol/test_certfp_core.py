"""Client certificate fingerprints in the core: WHOIS 276 (to the user and to
opers only), NickServ CERT ADD/DEL/LIST with its bounds and bad input, and SASL
EXTERNAL (an account whose list holds the connection's fingerprint). The
transport is played by the harness: ``Peer(..., certfp=...)`` is a connection
whose TLS handshake gave that fingerprint."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest

from coreharness import OPER_HASH, Clock, Peer, new_core, one, oper_up
from relaychat.config import Config, LimitsConfig, OperConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.accounts import CERTFP_MAX, normalize_certfp
from relaychat.protocol.core import ServerCore
from relaychat.protocol.handlers.accounts import NICKSERV
from relaychat.protocol.message import Message

PW = "certfp-password-1"


def fp(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


FP = fp(0)


@pytest.fixture
def core(clock: Clock) -> ServerCore:
    cfg = Config(
        limits=dataclasses.replace(LimitsConfig(), flood_rate=0.0),
        opers={"admin": OperConfig(password=OPER_HASH)},
    )
    return new_core(cfg, clock)


def ns(msgs: list[Message]) -> list[str]:
    return [m.params[-1] for m in msgs if m.command == "NOTICE" and m.source == NICKSERV]


def peer(core: ServerCore, clock: Clock, nick: str, certfp: str | None = None) -> Peer:
    p = Peer(core, clock, certfp=certfp)
    p.register(nick)
    p.take()
    return p


def account(core: ServerCore, clock: Clock, nick: str, certfp: str | None = None) -> Peer:
    """A registered, logged-in user whose account is its nick."""
    p = peer(core, clock, nick, certfp)
    p.send(f"REGISTER * * :{PW}")
    assert one(p.take(), "REGISTER").params[0] == "SUCCESS"
    return p


def whois(asker: Peer, nick: str) -> list[list[str]]:
    asker.send(f"WHOIS {nick}")
    return [m.params[1:] for m in asker.take() if m.command == N.RPL_WHOISCERTFP]


def test_whois_276_goes_to_the_user_itself_and_to_opers_only(
    core: ServerCore, clock: Clock
) -> None:
    me = peer(core, clock, "carrier", FP)
    stranger = peer(core, clock, "stranger")
    oper = peer(core, clock, "boss")
    oper_up(oper)
    shown = [["carrier", f"has client certificate fingerprint {FP}"]]
    assert whois(me, "carrier") == shown
    assert whois(oper, "carrier") == shown
    assert whois(stranger, "carrier") == []
    assert whois(me, "stranger") == []  # no certificate, no 276, even for an oper
    assert whois(oper, "stranger") == []


def test_a_plaintext_connection_has_no_fingerprint(core: ServerCore, clock: Clock) -> None:
    p = Peer(core, clock)
    assert p.session.certfp is None
    s = core.connect("127.0.0.1", clock.now, secure=False, certfp=FP)
    assert s.certfp is None  # only a TLS transport can vouch for one


def test_normalize_certfp_takes_colons_and_upper_case_and_refuses_the_rest() -> None:
    colons = ":".join(FP[i : i + 2] for i in range(0, 64, 2)).upper()
    assert normalize_certfp(colons) == FP
    assert normalize_certfp(FP.upper()) == FP
    for bad in ("", "xyz", FP[:-1], FP + "0", "g" * 64, FP[:-1] + "\x00", "a" * 10_000, "٣" * 64):
        assert normalize_certfp(bad) is None, bad


def test_cert_add_list_del_round_trip(core: ServerCore, clock: Clock) -> None:
    p = account(core, clock, "alice", FP)
    p.send("PRIVMSG NickServ :CERT ADD")
    assert ns(p.take()) == [f"Fingerprint {FP} added to alice"]
    p.send("PRIVMSG NickServ :CERT ADD " + FP.upper())
    assert ns(p.take()) == [f"Fingerprint {FP} is already on alice's list"]
    p.send(f"PRIVMSG NickServ :cert add {fp(1)}")
    assert ns(p.take()) == [f"Fingerprint {fp(1)} added to alice"]
    p.send("PRIVMSG NickServ :CERT LIST")
    assert ns(p.take()) == [
        "Client certificate fingerprints of alice: 2",
        f"- {FP}",
        f"- {fp(1)}",
    ]
    p.send(f"PRIVMSG NickServ :CERT DEL {FP}")
    assert ns(p.take()) == [f"Fingerprint {FP} removed from alice"]
    p.send(f"PRIVMSG NickServ :CERT DEL {FP}")
    assert ns(p.take()) == [f"Fingerprint {FP} is not on alice's list"]
    p.send("PRIVMSG NickServ :CERT LIST")
    assert ns(p.take()) == ["Client certificate fingerprints of alice: 1", f"- {fp(1)}"]


def test_cert_needs_a_login_and_good_input(core: ServerCore, clock: Clock) -> None:
    anon = peer(core, clock, "anon", FP)
    anon.send("PRIVMSG NickServ :CERT ADD")
    assert ns(anon.take()) == ["You are not logged in"]
    p = account(core, clock, "bob")  # no client certificate
    p.send("PRIVMSG NickServ :CERT ADD")
    assert ns(p.take()) == ["You are not using a client certificate: CERT ADD <fingerprint>"]
    syntax = "Syntax: CERT ADD [<fingerprint>] | CERT DEL <fingerprint> | CERT LIST"
    for bad in ("CERT", "CERT FROB", "CERT DEL", f"CERT ADD {FP} {FP}"):
        p.send(f"PRIVMSG NickServ :{bad}")
        assert ns(p.take()) == [syntax], bad
    hexless = "A fingerprint is the SHA-256 of a certificate: 64 hex digits"
    for bad in ("zz" * 32, FP[:40], "f" * 400, "\x01" * 64):
        p.send(f"PRIVMSG NickServ :CERT ADD {bad}")
        assert ns(p.take()) == [hexless], bad
        p.send(f"PRIVMSG NickServ :CERT DEL {bad}")
        assert ns(p.take()) == [hexless], bad
    p.send("PRIVMSG NickServ :CERT LIST")
    assert ns(p.take()) == ["Client certificate fingerprints of bob: 0"]


def test_cert_add_stops_at_the_bound_and_a_fingerprint_has_one_owner(
    core: ServerCore, clock: Clock
) -> None:
    p = account(core, clock, "carol")
    for i in range(CERTFP_MAX):
        p.send(f"PRIVMSG NickServ :CERT ADD {fp(i)}")
        assert ns(p.take()) == [f"Fingerprint {fp(i)} added to carol"]
    p.send(f"PRIVMSG NickServ :CERT ADD {fp(99)}")
    assert ns(p.take()) == [f"carol has {CERTFP_MAX} fingerprints already: CERT DEL one first"]
    other = account(core, clock, "dave")
    other.send(f"PRIVMSG NickServ :CERT ADD {fp(3)}")
    assert ns(other.take()) == [f"Fingerprint {fp(3)} belongs to another account"]


def sasl_external(p: Peer, response: str = "+") -> list[str]:
    p.send("AUTHENTICATE EXTERNAL")
    got = p.take()
    if any(m.command == "AUTHENTICATE" for m in got):
        assert one(got, "AUTHENTICATE").params == ["+"]
        p.send(f"AUTHENTICATE {response}")
        got = p.take()
    return [m.command for m in got if m.command.isdigit()]


def sasl_peer(core: ServerCore, clock: Clock, nick: str, certfp: str | None) -> Peer:
    p = Peer(core, clock, certfp=certfp)
    p.send("CAP LS 302")
    p.send("CAP REQ :sasl")
    p.send(f"NICK {nick}")
    p.send(f"USER {nick} 0 * :x")
    p.take()
    return p


def test_sasl_external_logs_in_the_account_listing_the_fingerprint(
    core: ServerCore, clock: Clock
) -> None:
    owner = account(core, clock, "erin", FP)
    owner.send("PRIVMSG NickServ :CERT ADD")
    owner.take()
    p = sasl_peer(core, clock, "erin2", FP)
    assert sasl_external(p) == [N.RPL_LOGGEDIN, N.RPL_SASLSUCCESS]
    assert p.user.account == "erin"
    p.send("CAP END")
    assert one(p.take(), N.RPL_WELCOME)
    # an authorization identity naming the account works, another one fails
    named = sasl_peer(core, clock, "erin3", FP)
    assert sasl_external(named, base64.b64encode(b"ERIN").decode()) == ["900", "903"]
    other = sasl_peer(core, clock, "erin4", FP)
    assert sasl_external(other, base64.b64encode(b"mallory").decode()) == ["904"]
    assert other.user.account is None


def test_sasl_external_fails_without_a_certificate_or_with_an_unknown_one(
    core: ServerCore, clock: Clock
) -> None:
    owner = account(core, clock, "fay", FP)
    owner.send("PRIVMSG NickServ :CERT ADD")
    owner.take()
    bare = sasl_peer(core, clock, "bare", None)
    assert sasl_external(bare) == ["904"]
    unknown = sasl_peer(core, clock, "unknown", fp(7))
    assert sasl_external(unknown) == ["904"]
    garbage = sasl_peer(core, clock, "garbage", FP)
    assert sasl_external(garbage, "!!!notbase64") == ["904"]
    control = sasl_peer(core, clock, "control", FP)
    assert sasl_external(control, base64.b64encode(b"fay\x00x").decode()) == ["904"]
    for p in (bare, unknown, garbage, control):
        assert p.user.account is None
    # after CERT DEL the certificate logs in no more
    owner.send(f"PRIVMSG NickServ :CERT DEL {FP}")
    owner.take()
    late = sasl_peer(core, clock, "late", FP)
    assert sasl_external(late) == ["904"]


def test_dropping_the_account_forgets_its_fingerprints(core: ServerCore, clock: Clock) -> None:
    owner = account(core, clock, "gil", FP)
    owner.send("PRIVMSG NickServ :CERT ADD")
    owner.take()
    owner.send(f"PRIVMSG NickServ :DROP {PW}")
    assert ns(owner.take())[0] == "Account gil dropped"
    again = account(core, clock, "hal")
    again.send(f"PRIVMSG NickServ :CERT ADD {FP}")
    assert ns(again.take()) == [f"Fingerprint {FP} added to hal"]
