"""Client certificate fingerprints over real sockets, for both engines: a client
certificate made here with ``cryptography`` (self-signed, as most IRC users'
are) presented by the standard library's TLS client; WHOIS 276 seen by its
owner and an oper and not by a stranger; none without a certificate; NickServ
CERT ADD/DEL/LIST with bounds and hostile input; SASL EXTERNAL; the server's
certificate reloaded under connected clients; failed handshakes next to a
bystander who keeps chatting."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from coreharness import OPER_HASH, OPER_PASSWORD
from ircutil import RawClient, make_config, wait_for
from relaychat.config import ListenConfig, OperConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.accounts import CERTFP_MAX
from relaychat.server.tls import write_self_signed

PW = "certfp-sockets-password"
NICKSERV = "NickServ!NickServ@services."


def client_cert(directory: Path, name: str, kind: str = "ec") -> tuple[Path, Path, str]:
    """A self-signed client certificate and its key (EC P-256 or RSA 2048), and
    the certificate's SHA-256 fingerprint computed here from its DER bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    return cert_path, key_path, hashlib.sha256(der).hexdigest()


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(tmp_path / "server", "localhost", days=2)


@pytest.fixture
def server(engine: str, run_config: Callable[..., Any], pair: tuple[Path, Path]) -> Any:
    """A plaintext listener (``.port``) and a TLS one (``.server.ports[1]``), an oper."""
    cert, key = pair
    cfg = dataclasses.replace(
        make_config(engine, tls_handshake_timeout=1.0),
        listen=(
            ListenConfig("127.0.0.1", 0),
            ListenConfig("127.0.0.1", 0, tls=True, cert=str(cert), key=str(key)),
        ),
        opers={"admin": OperConfig(password=OPER_HASH)},
    )
    return run_config(cfg)


@pytest.fixture
def tls_connect(server: Any, pair: tuple[Path, Path]) -> Any:
    """``tls_connect(nick=None, cert=None)`` -> a RawClient over TLS (presenting
    ``cert``: (cert path, key path, ...)), registered when ``nick`` is given."""
    made: list[RawClient] = []

    def make(nick: str | None = None, cert: tuple[Path, Path, str] | None = None) -> RawClient:
        ctx = ssl.create_default_context(cafile=str(pair[0]))
        if cert is not None:
            ctx.load_cert_chain(cert[0], cert[1])
        c = RawClient(server.server.ports[1], tls=ctx)
        made.append(c)
        if nick:
            c.register(nick)
        return c

    yield make
    for c in made:
        c.close()


def whois_certfp(asker: RawClient, nick: str) -> list[list[str]]:
    asker.send(f"WHOIS {nick}")
    return [m.params[1:] for m in asker.take_until(N.RPL_ENDOFWHOIS) if m.command == "276"]


def ns(c: RawClient, command: str, count: int = 1) -> list[str]:
    """NickServ's answers (``count`` notices) to ``command``."""
    c.send(f"PRIVMSG NickServ :{command}")
    got = []
    for _ in range(count):
        m = c.expect(lambda m: m.command == "NOTICE" and m.source == NICKSERV)
        got.append(m.params[1])
    return got


def sasl_external(c: RawClient, nick: str, response: str = "+") -> str:
    """Register with SASL EXTERNAL: the numeric that ends the exchange."""
    c.send("CAP LS 302")
    c.send("CAP REQ :sasl")
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :x")
    ack = c.expect(lambda m: m.command == "CAP" and m.params[1] == "ACK")
    assert ack.params[-1].strip() == "sasl"
    c.send("AUTHENTICATE EXTERNAL")
    m = c.expect(lambda m: m.command in ("AUTHENTICATE", "904"))
    if m.command == "904":
        return "904"
    assert m.params == ["+"]
    c.send(f"AUTHENTICATE {response}")
    return c.expect(lambda m: m.command in ("903", "904")).command


def test_whois_276_is_seen_by_its_owner_and_an_oper_not_by_a_stranger(
    server: Any,
    tls_connect: Any,
    connect: Callable[..., RawClient],
    tmp_path: Path,
    no_server_errors: None,
) -> None:
    cert = client_cert(tmp_path / "c", "carrier")
    owner = tls_connect("carrier", cert)
    stranger = connect(server, "stranger")
    oper = tls_connect("boss")
    oper.send(f"OPER admin {OPER_PASSWORD}")
    oper.expect(N.RPL_YOUREOPER)
    shown = [["carrier", f"has client certificate fingerprint {cert[2]}"]]
    assert whois_certfp(owner, "carrier") == shown
    assert whois_certfp(oper, "carrier") == shown
    assert whois_certfp(stranger, "carrier") == []
    # a TLS user without a client certificate, and a plaintext one: no 276 at all
    assert whois_certfp(oper, "boss") == []
    assert whois_certfp(oper, "stranger") == []


def test_an_rsa_certificate_works_too_and_each_connection_has_its_own(
    tls_connect: Any, tmp_path: Path, no_server_errors: None
) -> None:
    a = client_cert(tmp_path / "a", "rsa-user", kind="rsa")
    b = client_cert(tmp_path / "b", "ec-user")
    first = tls_connect("first", a)
    second = tls_connect("second", b)
    assert whois_certfp(first, "first") == [["first", f"has client certificate fingerprint {a[2]}"]]
    assert whois_certfp(second, "second") == [
        ["second", f"has client certificate fingerprint {b[2]}"]
    ]


def test_sasl_external_after_cert_add_and_refused_otherwise(
    tls_connect: Any, tmp_path: Path, no_server_errors: None
) -> None:
    cert = client_cert(tmp_path / "c", "erin")
    other = client_cert(tmp_path / "o", "mallory")
    owner = tls_connect("erin", cert)
    owner.send(f"REGISTER * * :{PW}")
    assert owner.expect("REGISTER").params[0] == "SUCCESS"
    # not yet on the account's list: refused
    assert sasl_external(tls_connect(cert=cert), "early") == "904"
    assert ns(owner, "CERT ADD") == [f"Fingerprint {cert[2]} added to erin"]
    again = tls_connect(cert=cert)
    assert sasl_external(again, "erin2") == "903"
    again.send("CAP END")
    # logged in to erin: by default (multiclient) the connection joins erin's user
    assert again.expect(N.RPL_WELCOME).params[0] == "erin"
    again.send("WHOIS erin")
    account = [
        m.params[1:] for m in again.take_until(N.RPL_ENDOFWHOIS) if m.command == N.RPL_WHOISACCOUNT
    ]
    assert account == [["erin", "erin", "is logged in as"]]
    named = tls_connect(cert=cert)
    assert sasl_external(named, "erin3", base64.b64encode(b"erin").decode()) == "903"
    # an unknown certificate, none at all, another account as authzid: 904
    assert sasl_external(tls_connect(cert=other), "intruder") == "904"
    assert sasl_external(tls_connect(), "nocert") == "904"
    wrong = tls_connect(cert=cert)
    assert sasl_external(wrong, "erin4", base64.b64encode(b"someone").decode()) == "904"
    # taken off the list: it logs in no more
    assert ns(owner, f"CERT DEL {cert[2]}") == [f"Fingerprint {cert[2]} removed from erin"]
    assert sasl_external(tls_connect(cert=cert), "erin5") == "904"


def test_cert_add_del_list_bounds_and_hostile_input(
    server: Any,
    tls_connect: Any,
    connect: Callable[..., RawClient],
    tmp_path: Path,
    no_server_errors: None,
) -> None:
    bystander = connect(server, "bystander")
    bystander.join("#calm")
    cert = client_cert(tmp_path / "c", "lister")
    p = tls_connect("lister", cert)
    assert ns(p, "CERT ADD") == ["You are not logged in"]
    p.send(f"REGISTER * * :{PW}")
    p.expect(N.RPL_LOGGEDIN)
    assert ns(p, "CERT LIST") == ["Client certificate fingerprints of lister: 0"]
    hexless = "A fingerprint is the SHA-256 of a certificate: 64 hex digits"
    for bad in ("nothex" * 10 + "zzzz", "0" * 63, "0" * 65, "é" * 64):
        assert ns(p, f"CERT ADD {bad}") == [hexless], bad
    # a 10 KB fingerprint: the line is too long (417) and nothing is added
    p.send("PRIVMSG NickServ :CERT ADD " + "a" * 10_240)
    p.expect(N.ERR_INPUTTOOLONG)
    added = [hashlib.sha256(bytes([i])).hexdigest() for i in range(CERTFP_MAX)]
    assert ns(p, "CERT ADD") == [f"Fingerprint {cert[2]} added to lister"]
    for fp in added[1:]:
        assert ns(p, f"CERT ADD {fp.upper()}") == [f"Fingerprint {fp} added to lister"]
    assert ns(p, f"CERT ADD {added[0]}") == [
        f"lister has {CERTFP_MAX} fingerprints already: CERT DEL one first"
    ]
    listed = ns(p, "CERT LIST", CERTFP_MAX + 1)
    assert listed[0] == f"Client certificate fingerprints of lister: {CERTFP_MAX}"
    assert listed[1:] == [f"- {fp}" for fp in [cert[2], *added[1:]]]
    assert ns(p, f"CERT DEL {cert[2]}") == [f"Fingerprint {cert[2]} removed from lister"]
    assert ns(p, "CERT LIST")[0] == f"Client certificate fingerprints of lister: {CERTFP_MAX - 1}"
    assert bystander.sync() == []
    bystander.send("PRIVMSG #calm :still here")
    assert bystander.sync() == []


def test_a_reloaded_server_certificate_keeps_client_fingerprints_working(
    server: Any,
    tls_connect: Any,
    pair: tuple[Path, Path],
    tmp_path: Path,
    no_server_errors: None,
) -> None:
    cert = client_cert(tmp_path / "c", "keeper")
    old = tls_connect("keeper", cert)
    write_self_signed(pair[0].parent, "localhost", days=2)
    renewed = ssl.PEM_cert_to_DER_cert(pair[0].read_text())
    server.server.request_rehash()

    def served() -> bytes:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(cert[0], cert[1])
        with socket.create_connection(("127.0.0.1", server.server.ports[1]), timeout=5) as raw:
            with ctx.wrap_socket(raw) as s:
                return bytes(s.getpeercert(binary_form=True) or b"")

    wait_for(lambda: served() == renewed, what="the new server certificate")
    new = tls_connect("newcomer", cert)  # trusts the renewed certificate
    shown = f"has client certificate fingerprint {cert[2]}"
    assert whois_certfp(new, "newcomer") == [["newcomer", shown]]
    assert whois_certfp(old, "keeper") == [["keeper", shown]]  # not dropped


def test_failed_handshakes_leave_a_bystander_chatting(
    server: Any, tls_connect: Any, tmp_path: Path, no_server_errors: None
) -> None:
    cert = client_cert(tmp_path / "c", "calm")
    bystander = tls_connect("calm", cert)
    bystander.join("#quiet")
    port = server.server.ports[1]
    hostile = [
        b"NICK plain\r\nUSER plain 0 * :plain\r\n",  # plaintext IRC to the TLS port
        b"\x16\x03\x01\x00\x05garbage",  # a ClientHello header with garbage inside
        b"\x16\x03\x03\xff\xff" + b"\x00" * 4096,  # a record longer than allowed
        b"\x15\x03\x03\x00\x02\x02\x28",  # an alert before any hello
    ]
    for data in hostile:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(data)
            raw.settimeout(5)
            try:
                while raw.recv(4096):
                    pass  # the alert, if any, then the close
            except ConnectionResetError:
                pass
    # a client that gives up in the middle of its handshake
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"\x16\x03\x01")
    half.close()
    # a client that refuses the server's certificate (it does not trust it)
    with pytest.raises(ssl.SSLError):
        RawClient(port, tls=ssl.create_default_context())
    assert bystander.sync() == []
    assert whois_certfp(bystander, "calm") == [
        ["calm", f"has client certificate fingerprint {cert[2]}"]
    ]
    bystander.send("PRIVMSG #quiet :fine")
    assert bystander.sync() == []
