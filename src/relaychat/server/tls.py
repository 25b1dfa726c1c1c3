"""TLS for the listeners marked ``tls = true``, the same for both engines (pyOpenSSL).

Theory of operation
-------------------
Each TLS listener has a :class:`TlsListener`; its ``current`` is the
``OpenSSL.SSL.Context`` holding the newest certificate and key. Every new
connection gets a :class:`TlsSession` made with the ``current`` context of
that moment. :meth:`TlsListener.reload` (REHASH, SIGHUP) builds a new context
from the same files and, only if that worked, swaps ``current``: one reference
assignment, safe from any thread. Connections already set up keep the context
they started with; a broken new pair keeps the old one, with a log line.

:class:`TlsSession` is sans-I/O: an ``OpenSSL.SSL.Connection`` over two memory
BIOs. The engine feeds it the ciphertext it read (:meth:`~TlsSession.feed`,
which does the handshake first and returns the plaintext), sends what
:meth:`~TlsSession.outgoing` hands back, and encrypts its output with
:meth:`~TlsSession.encrypt`. It touches no socket and takes no lock: one
session must not be used by two threads at once (the threads engine holds the
connection's ``tls_lock``), and the ciphertext must leave in the order it was
made (``encrypt`` returns what earlier calls left in the BIO first).

Defaults: TLS 1.2 at least, no compression, no renegotiation, forward-secret
AEAD ciphers only (TLS 1.3's suites as OpenSSL has them). A client certificate
is *requested* but optional, and any certificate is accepted, self-signed ones
included (a verify callback that says yes): what matters is its SHA-256
fingerprint (:attr:`TlsSession.certfp`, lowercase hex without colons, as Ergo
and InspIRCd show it), for WHOIS 276 and SASL EXTERNAL.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from OpenSSL import SSL

if TYPE_CHECKING:
    from relaychat.config import ListenConfig

__all__ = [
    "TlsError",
    "TlsListener",
    "TlsSession",
    "load_context",
    "tls_listeners",
    "write_self_signed",
]

log = logging.getLogger("relaychat.tls")

# TLS 1.2: ECDHE (or DHE) key exchange and an AEAD cipher only; TLS 1.3 suites are
# all AEAD and keep OpenSSL's defaults
CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"
_READ_SIZE = 65536


class TlsError(Exception):
    """A certificate or key cannot be used; the message names the file."""


def _accept_any(conn: SSL.Connection, cert: object, errno: int, depth: int, ok: int) -> bool:
    """The verify callback: every client certificate is accepted (self-signed
    too); only its fingerprint is used."""
    return True


def _read(label: str, path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise TlsError(f"TLS {label} {path}: cannot read: {exc.strerror}") from None


def load_context(cert: str, key: str) -> SSL.Context:
    """A server context for the pair, or TlsError naming the file at fault. The
    files are parsed with ``cryptography`` (an encrypted key is refused here,
    never prompted for on the terminal)."""
    cert_pem, key_pem = _read("certificate", cert), _read("key", key)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TlsError(f"TLS certificate {cert}: not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):  # TypeError: it is encrypted
        raise TlsError(f"TLS key {key}: not an unencrypted PEM private key") from None
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_SINGLE_ECDH_USE
    )
    ctx.set_cipher_list(CIPHERS)
    # a client certificate is asked for, optional, and any one is taken
    ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    ctx.set_session_id(b"relaychat")  # resumption works with VERIFY_PEER
    try:
        ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)
    except SSL.Error:
        raise TlsError(f"TLS certificate {cert}: not a usable certificate") from None
    try:
        ctx.use_privatekey(private)  # type: ignore[arg-type]
        ctx.check_privatekey()
    except (SSL.Error, TypeError):
        raise TlsError(f"TLS key {key} does not match the certificate {cert}") from None
    return ctx


def _reason(exc: SSL.Error) -> str:
    """OpenSSL's reason of an error (``wrong version number``), or its class."""
    details = exc.args[0] if exc.args else None
    if isinstance(details, list) and details and isinstance(details[-1], tuple):
        return str(details[-1][-1]) or exc.__class__.__name__
    if isinstance(exc, SSL.SysCallError):
        return "unexpected end of the TLS stream"
    return str(exc) or exc.__class__.__name__


class TlsSession:
    """One server-side TLS connection, sans-I/O (see the module's theory).

    After :meth:`feed`: ``handshake_done`` (the fingerprint is in ``certfp``,
    None without a client certificate), ``error`` (a reason: the handshake
    failed, or the stream is broken; the caller sends :meth:`outgoing`, the
    alert, and closes), ``peer_closed`` (close_notify received)."""

    __slots__ = ("_conn", "_held", "handshake_done", "error", "peer_closed", "certfp")

    def __init__(self, context: SSL.Context) -> None:
        conn = SSL.Connection(context, None)
        conn.set_accept_state()
        self._conn = conn
        self._held = b""  # ciphertext made by ``feed``, not taken yet
        self.handshake_done = False
        self.error: str | None = None
        self.peer_closed = False
        self.certfp: str | None = None

    def feed(self, data: bytes) -> bytes:
        """Take ciphertext from the peer; the plaintext it completes (the
        handshake comes first: b"" until it is done). What it makes to send
        (handshake records, an alert) waits for :meth:`outgoing` or the next
        :meth:`encrypt`, which hand it out first (``wants_write``)."""
        if self.error is not None or self.peer_closed:
            return b""
        plain = self._feed(data)
        out = self._drain()
        if out:
            self._held += out
        return plain

    def _feed(self, data: bytes) -> bytes:
        conn = self._conn
        conn.bio_write(data)
        if not self.handshake_done:
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                return b""
            except SSL.Error as exc:  # plaintext sent to a TLS port, say
                self.error = _reason(exc)
                return b""
            self.handshake_done = True
            cert = conn.get_peer_certificate(as_cryptography=True)
            if cert is not None:
                self.certfp = cert.fingerprint(hashes.SHA256()).hex()
        chunks = []
        while True:
            try:
                chunks.append(conn.recv(_READ_SIZE))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify: the peer is done
                self.peer_closed = True
                break
            except SSL.Error as exc:
                self.error = _reason(exc)
                break
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    @property
    def wants_write(self) -> bool:
        """``feed`` made ciphertext that nobody has taken yet."""
        return bool(self._held)

    def encrypt(self, data: bytes | memoryview) -> bytes:
        """The ciphertext of ``data``, after whatever the session had left to
        send (raises ``OpenSSL.SSL.Error`` on a failed session)."""
        if data:
            self._conn.sendall(data)  # a memory BIO takes it all
        return self.outgoing()

    def outgoing(self) -> bytes:
        """The ciphertext waiting to be sent (handshake records, alerts, ...)."""
        held = self._held
        if held:
            self._held = b""
            return held + self._drain()
        return self._drain()

    def _drain(self) -> bytes:
        conn = self._conn
        chunks = []
        while True:
            try:
                chunk = conn.bio_read(_READ_SIZE)
            except SSL.WantReadError:  # empty
                break
            chunks.append(chunk)
            if len(chunk) < _READ_SIZE:  # a memory BIO gives all it has: empty now
                break
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def close_notify(self) -> bytes:
        """Our close_notify alert (b"" if the session cannot send one)."""
        if not self.handshake_done or self.error is not None:
            return b""
        try:
            self._conn.shutdown()
        except SSL.Error:
            return b""
        return self.outgoing()

    @property
    def cipher(self) -> str:
        """The protocol and cipher in use, for a log line."""
        conn = self._conn
        return f"{conn.get_protocol_version_name()} {conn.get_cipher_name() or '-'}"


class TlsListener:
    """The TLS state of one listener (see the module's theory of operation)."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self.current = load_context(cert, key)

    def session(self) -> TlsSession:
        """A session for a new connection, with the newest certificate."""
        return TlsSession(self.current)

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
