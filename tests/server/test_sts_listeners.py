"""STS decided from the listeners and their certificates, then seen over real
sockets in both engines: a plaintext session is told the TLS port (no
duration), a TLS session the duration; "auto" with a self-signed certificate
(``relaychat gencert``) advertises nothing, ``enabled = true`` does; CAP LS
without 302 shows the name only. The certificate check is tested against a CA
made by the test (the system's store cannot be made to trust one)."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ircutil import RawClient, make_config
from relaychat.config import Config, ListenConfig, StsConfig
from relaychat.protocol.caps import StsPolicy
from relaychat.server.runner import start_in_thread
from relaychat.server.sts import certificate_problem, sts_policy, system_roots
from relaychat.server.tls import write_self_signed

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


# ------------------------------------------------------------ certificates
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Test Root CA"))
        .issuer_name(_name("Test Root CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    path: Path,
    names: list[str],
    *,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 10 * DAY,
) -> Path:
    """A leaf for ``names`` signed by ``ca``, written (with the key) as PEM."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0] if names else "nameless"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return make_ca()


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(tmp_path / "tls", "localhost", days=2)


# -------------------------------------------------------- the certificate check
def test_a_certificate_from_a_trusted_ca_passes(ca: Any, tmp_path: Path) -> None:
    cert = issue(ca, tmp_path / "ok.pem", ["irc.example.test"])
    assert certificate_problem(str(cert), roots=[ca[0]]) is None
    wildcard = issue(ca, tmp_path / "wild.pem", ["*.example.test"])
    assert certificate_problem(str(wildcard), roots=[ca[0]]) is None
    by_ip = issue(ca, tmp_path / "ip.pem", ["192.0.2.1"])
    assert certificate_problem(str(by_ip), roots=[ca[0]]) is None


def test_a_certificate_the_roots_do_not_trust_fails(ca: Any, tmp_path: Path) -> None:
    cert = issue(ca, tmp_path / "ok.pem", ["irc.example.test"])
    other, _ = make_ca()
    problem = certificate_problem(str(cert), roots=[other])
    assert problem is not None and "does not verify" in problem


def test_a_self_signed_certificate_fails_against_the_system_store(
    pair: tuple[Path, Path],
) -> None:
    if not system_roots():
        pytest.skip("this system has no CA store")
    problem = certificate_problem(str(pair[0]))
    assert problem is not None and "does not verify against the system's CA store" in problem


@pytest.mark.parametrize(
    ("dates", "problem"),
    [
        ({"not_before": NOW - 20 * DAY, "not_after": NOW - DAY}, "has expired"),
        ({"not_before": NOW + DAY, "not_after": NOW + 5 * DAY}, "is not valid yet"),
    ],
)
def test_an_expired_or_future_certificate_fails(
    ca: Any, tmp_path: Path, dates: dict[str, datetime.datetime], problem: str
) -> None:
    cert = issue(ca, tmp_path / "c.pem", ["irc.example.test"], **dates)
    assert certificate_problem(str(cert), roots=[ca[0]]) == problem


def test_unreadable_unparsable_and_nameless_certificates_fail(ca: Any, tmp_path: Path) -> None:
    assert "cannot be read" in (certificate_problem(str(tmp_path / "missing.pem")) or "")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert certificate_problem(str(junk)) == "is not a PEM certificate"
    nameless = issue(ca, tmp_path / "n.pem", [])
    assert certificate_problem(str(nameless), roots=[ca[0]]) == (
        "names no host (no subjectAltName)"
    )


# ------------------------------------------------------------- the decision
def listeners(cert: str = "c.pem") -> tuple[ListenConfig, ...]:
    return (
        ListenConfig("127.0.0.1", 6667),
        ListenConfig("127.0.0.1", 6697, tls=True, cert=cert, key="k.pem"),
        ListenConfig("127.0.0.1", 7000, tls=True, cert=cert, key="k.pem"),
    )


def test_no_tls_listener_or_disabled_means_no_policy_and_nothing_to_log() -> None:
    plain = (ListenConfig("127.0.0.1", 6667),)
    assert sts_policy(StsConfig("true"), plain, [6667]) == (None, None)
    assert sts_policy(StsConfig("false"), listeners(), [6667, 6697, 7000]) == (None, None)


def test_forced_sts_uses_the_first_tls_listeners_bound_port_or_the_configured_one() -> None:
    policy, why = sts_policy(StsConfig("true"), listeners(), [6667, 40001, 40002])
    assert policy == StsPolicy(40001, 2592000, False) and why is not None
    policy, _ = sts_policy(
        StsConfig("true", port=7000, duration=60, preload=True), listeners(), [1, 2, 7000]
    )
    assert policy == StsPolicy(7000, 60, True)


def test_auto_checks_the_certificate_of_the_listener_clients_are_sent_to(
    ca: Any, tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    good = issue(ca, tmp_path / "good.pem", ["irc.example.test"])
    ports = [6667, 6697, 7000]
    policy, why = sts_policy(StsConfig(), listeners(str(good)), ports, roots=[ca[0]])
    assert policy == StsPolicy(6697, 2592000) and why == "advertised (port=6697, duration=2592000)"
    mixed = (listeners()[0], dataclasses.replace(listeners()[1], cert=str(pair[0])))
    mixed += (dataclasses.replace(listeners()[2], cert=str(good)),)
    policy, why = sts_policy(StsConfig(), mixed, ports, roots=[ca[0]])
    assert policy is None and why is not None and str(pair[0]) in why
    assert "enabled = true" in why  # the log line says how to force it
    policy, _ = sts_policy(StsConfig(port=7000), mixed, ports, roots=[ca[0]])
    assert policy == StsPolicy(7000, 2592000)


# ---------------------------------------------------------------- sockets
@pytest.fixture
def sts_server(
    engine: str, run_config: Callable[[Config], Any], pair: tuple[Path, Path]
) -> Callable[[str], Any]:
    """``sts_server(enabled)`` -> a server with a plaintext listener (``.port``)
    and a TLS one (``.server.ports[1]``, a self-signed certificate)."""

    def start(enabled: str) -> Any:
        cert, key = pair
        cfg = dataclasses.replace(
            make_config(engine),
            listen=(
                ListenConfig("127.0.0.1", 0),
                ListenConfig("127.0.0.1", 0, tls=True, cert=str(cert), key=str(key)),
            ),
            sts=StsConfig(enabled, duration=86400),
        )
        return run_config(cfg)

    return start


def cap_ls(c: RawClient, version: str = "302") -> list[str]:
    c.send(f"CAP LS {version}".rstrip())
    items: list[str] = []
    while True:
        m = c.expect("CAP")
        items += m.params[-1].split()
        if m.params[2] != "*":
            return [i for i in items if i == "sts" or i.startswith("sts=")]


def tls_client(server: Any, pair: tuple[Path, Path]) -> RawClient:
    return RawClient(server.server.ports[1], tls=ssl.create_default_context(cafile=str(pair[0])))


def test_forced_sts_gives_plaintext_the_port_and_tls_the_duration(
    sts_server: Callable[[str], Any], pair: tuple[Path, Path], no_server_errors: None
) -> None:
    server = sts_server("true")
    tls_port = server.server.ports[1]
    plain = RawClient(server.port)
    secure = tls_client(server, pair)
    old = RawClient(server.port)
    try:
        assert cap_ls(plain) == [f"sts=port={tls_port}"]
        assert cap_ls(secure) == ["sts=duration=86400"]
        assert cap_ls(old, "301") == ["sts"]
        plain.send("CAP REQ :sts")
        assert plain.expect("CAP").params[1:] == ["NAK", "sts"]
    finally:
        for c in (plain, secure, old):
            c.close()


def test_auto_with_a_self_signed_certificate_advertises_nothing(
    sts_server: Callable[[str], Any], pair: tuple[Path, Path], no_server_errors: None
) -> None:
    server = sts_server("auto")
    plain = RawClient(server.port)
    secure = tls_client(server, pair)
    try:
        assert cap_ls(plain) == []
        assert cap_ls(secure) == []
    finally:
        plain.close()
        secure.close()


def test_rehash_turns_sts_on_and_cap_notify_clients_hear_it(
    engine: str, pair: tuple[Path, Path], no_server_errors: None
) -> None:
    cert, key = pair
    base = dataclasses.replace(
        make_config(engine),
        listen=(
            ListenConfig("127.0.0.1", 0),
            ListenConfig("127.0.0.1", 0, tls=True, cert=str(cert), key=str(key)),
        ),
        sts=StsConfig("false"),
    )
    reloaded = dataclasses.replace(base, sts=StsConfig("true", duration=600))
    handle = start_in_thread(base, lambda: reloaded)
    clients: list[RawClient] = []
    try:
        plain = RawClient(handle.port)
        secure = tls_client(handle, pair)
        clients += [plain, secure]
        for c, nick in ((plain, "plain"), (secure, "secure")):
            assert cap_ls(c) == []  # 302: cap-notify
            c.send(f"NICK {nick}")
            c.send(f"USER {nick} 0 * :{nick}")
            c.send("CAP END")
            c.expect("001")
        handle.server.request_rehash()
        port = handle.server.ports[1]
        new = plain.expect(lambda m: m.command == "CAP" and m.params[1] == "NEW")
        assert new.params[-1] == f"sts=port={port}"
        new = secure.expect(lambda m: m.command == "CAP" and m.params[1] == "NEW")
        assert new.params[-1] == "sts=duration=600"
    finally:
        for c in clients:
            c.close()
        handle.stop()
