"""TLS for the listeners marked ``tls = true``, the same for both engines.

Theory of operation
-------------------
Each TLS listener has a :class:`TlsListener`. Its ``context`` is what the
engine wraps connections with; it never changes. Its ``sni_callback`` (which
OpenSSL calls for every ClientHello, with or without a server name) points the
connection at ``current``: the context holding the newest certificate and key.
:meth:`TlsListener.reload` (REHASH, SIGHUP) builds a new context from the same
files and, only if that worked, swaps ``current``: one reference assignment,
safe from any thread. Connections already set up keep the pair they started
with; a broken new pair keeps the old one, with a log line.

Defaults: ``ssl.create_default_context(Purpose.CLIENT_AUTH)`` (no compression,
no renegotiation, the library's cipher list), TLS 1.2 at least. Client
certificates are not requested: the standard library cannot accept a
self-signed one (it has no verify callback), so certificate fingerprints wait
for another TLS backend.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaychat.config import ListenConfig

__all__ = ["TlsError", "TlsListener", "tls_listeners", "write_self_signed"]

log = logging.getLogger("relaychat.tls")


class TlsError(Exception):
    """A certificate or key cannot be used; the message names the file."""


def load_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for the pair, or TlsError naming the file at fault."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.verify_mode = ssl.CERT_NONE
    for label, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TlsError(f"TLS {label} {path}: cannot read: {exc.strerror}") from None
    try:
        ssl.create_default_context(cafile=cert)  # parses the certificate alone
    except ssl.SSLError:
        raise TlsError(f"TLS certificate {cert}: not a PEM certificate") from None
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(f"TLS key {key} does not match the certificate {cert}") from None
        raise TlsError(f"TLS key {key}: not an unencrypted PEM private key") from None
    return ctx


class TlsListener:
    """The TLS state of one listener (see the module's theory of operation)."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self.current = load_context(cert, key)
        self.context = load_context(cert, key)
        self.context.sni_callback = self._pick

    def _pick(self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> None:
        current = self.current
        if conn.context is not current:
            conn.context = current
        return None

    def reload(self) -> bool:
        """Read the pair again; on failure keep the old one (logged)."""
        try:
            self.current = load_context(self.cert, self.key)
        except TlsError as exc:
            log.error("%s; keeping the certificate loaded before", exc)
            return False
        log.info("TLS certificate reloaded: %s", self.cert)
        return True


def tls_listeners(listen: Sequence[ListenConfig]) -> list[TlsListener | None]:
    """One entry per listener, in order: its TLS state, or None for plaintext.
    Raises TlsError (naming the file) for a pair that cannot be used."""
    return [TlsListener(item.cert, item.key) if item.tls else None for item in listen]


def write_self_signed(directory: str | Path, host: str, days: int = 365) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (and localhost, 127.0.0.1, ::1)
    with its ECDSA P-256 key: ``relaychat.crt`` and ``relaychat.key`` in
    ``directory`` (the key readable by its owner only). Returns both paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    alt: list[x509.GeneralName] = []
    for entry in dict.fromkeys([host, "localhost", "127.0.0.1", "::1"]):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            alt.append(x509.DNSName(entry))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = out / "relaychat.crt"
    key_path = out / "relaychat.key"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
