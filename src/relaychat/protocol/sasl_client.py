"""SASL for clients, sans-I/O: credentials, the PLAIN and SCRAM-SHA-256 mechanisms,
and the AUTHENTICATE framing (base64, 400-byte chunks) of IRCv3 sasl-3.1.

Theory of operation
-------------------
A mechanism is a small state machine: :meth:`Mechanism.step` takes the server's
challenge (decoded bytes, ``b""`` for ``AUTHENTICATE +``) and returns the client's
response, or raises :class:`SaslError` when the server broke the mechanism (a bad
nonce, a server signature that does not verify). :func:`encode_response` turns a
response into the ``AUTHENTICATE`` parameters to send; :class:`ChallengeReader`
puts the server's chunks back together. :class:`~relaychat.protocol.client.ClientProtocol`
drives them during registration.

Secrets. A password lives in :class:`SaslCredentials` and in the mechanism objects
only; neither shows it in ``repr``, and no error message here contains it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_MECHANISMS",
    "ChallengeReader",
    "Mechanism",
    "Plain",
    "SaslCredentials",
    "SaslError",
    "ScramSha256",
    "encode_response",
    "make_mechanism",
    "saslprep",
]

#: Largest AUTHENTICATE parameter (base64 characters) per line.
CHUNK_BYTES = 400

#: Mechanisms the client knows, in the order it prefers them.
DEFAULT_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN")


class SaslError(Exception):
    """The server's side of a mechanism exchange is wrong (bad base64, a SCRAM
    message that does not parse, a nonce or server signature that does not match)."""


@dataclass(frozen=True)
class SaslCredentials:
    """An account name and its password for SASL. ``authzid`` (PLAIN only): log in
    as another identity; empty means the account itself. The password is never
    part of ``repr`` or ``str``."""

    account: str
    password: str = field(repr=False)
    authzid: str = ""

    def __post_init__(self) -> None:
        if not self.account:
            raise ValueError("empty account name")
        if "\0" in self.account or "\0" in self.authzid:
            raise ValueError("NUL in the account name")


class Mechanism(Protocol):
    name: str

    def step(self, challenge: bytes) -> bytes:
        """The response to the server's next challenge; raises :class:`SaslError`."""
        ...

    @property
    def done(self) -> bool:
        """Whether the mechanism has nothing more to say (and, for SCRAM, verified
        the server)."""
        ...


class Plain:
    """RFC 4616: one response, ``authzid NUL authcid NUL password``."""

    name = "PLAIN"

    def __init__(self, credentials: SaslCredentials) -> None:
        self._credentials = credentials
        self.done = False

    def __repr__(self) -> str:
        return f"<Plain {self._credentials.account!r}>"

    def step(self, challenge: bytes) -> bytes:
        if self.done:
            raise SaslError("PLAIN has no second step")
        if challenge:
            raise SaslError("PLAIN expects an empty challenge")
        self.done = True
        c = self._credentials
        return f"{c.authzid}\0{c.account}\0{c.password}".encode()


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep, the mapping and normalisation part: non-ASCII spaces
    become spaces, characters "commonly mapped to nothing" go, then NFKC. Raises
    :class:`SaslError` for prohibited characters (controls, private use...)."""
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    normal = unicodedata.normalize("NFKC", mapped)
    for ch in normal:
        if (
            stringprep.in_table_c12(ch)
            or stringprep.in_table_c21_c22(ch)
            or stringprep.in_table_c3(ch)
            or stringprep.in_table_c4(ch)
            or stringprep.in_table_c5(ch)
            or stringprep.in_table_c6(ch)
            or stringprep.in_table_c7(ch)
            or stringprep.in_table_c8(ch)
            or stringprep.in_table_c9(ch)
        ):
            raise SaslError("a prohibited character in a SCRAM name or password")
    return normal


def _scram_fields(message: bytes) -> dict[str, str]:
    try:
        text = message.decode()
    except UnicodeDecodeError:
        raise SaslError("SCRAM message is not UTF-8") from None
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if len(key) != 1 or not eq:
            raise SaslError("SCRAM message does not parse")
        fields.setdefault(key, value)
    return fields


class ScramSha256:
    """RFC 5802 / RFC 7677 SCRAM-SHA-256, client side, without channel binding
    (``n,,``). ``nonce`` is for tests; by default 24 random bytes, base64.

    Steps: ``b""`` -> client-first; server-first -> client-final (with the proof);
    server-final -> ``b""`` once the server signature verified (compared in
    constant time). A server error (``e=...``) or a bad signature is a :class:`SaslError`.
    """

    name = "SCRAM-SHA-256"

    def __init__(self, credentials: SaslCredentials, *, nonce: str | None = None) -> None:
        self._credentials = credentials
        self._nonce = nonce or base64.b64encode(secrets.token_bytes(24)).decode()
        if "," in self._nonce:
            raise ValueError("a SCRAM nonce may not contain a comma")
        name = saslprep(credentials.account).replace("=", "=3D").replace(",", "=2C")
        self._client_first_bare = f"n={name},r={self._nonce}"
        self._server_signature: bytes | None = None
        self._step = 0
        self.done = False

    def __repr__(self) -> str:
        return f"<ScramSha256 {self._credentials.account!r}>"

    def step(self, challenge: bytes) -> bytes:
        self._step += 1
        if self._step == 1:
            if challenge:
                raise SaslError("SCRAM is client-first; the server sent data first")
            return ("n,," + self._client_first_bare).encode()
        if self._step == 2:
            return self._client_final(challenge)
        if self._step == 3:
            self._verify(challenge)
            return b""
        raise SaslError("SCRAM exchange is over")

    def _client_final(self, server_first: bytes) -> bytes:
        fields = _scram_fields(server_first)
        if "m" in fields:
            raise SaslError("SCRAM extension the client does not support")
        nonce, salt_b64, iterations = fields.get("r"), fields.get("s"), fields.get("i")
        if nonce is None or salt_b64 is None or iterations is None:
            raise SaslError("SCRAM server-first message lacks r, s or i")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SaslError("SCRAM server nonce does not extend the client nonce")
        if (
            not (iterations.isascii() and iterations.isdigit())
            or not 1 <= int(iterations) <= 1_000_000
        ):
            raise SaslError("SCRAM iteration count is not a sensible number")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except binascii.Error:
            raise SaslError("SCRAM salt is not base64") from None
        password = saslprep(self._credentials.password).encode()
        salted = hashlib.pbkdf2_hmac("sha256", password, salt, int(iterations))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = ",".join(
            (self._client_first_bare, server_first.decode(), without_proof)
        ).encode()
        client_signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self._server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def _verify(self, server_final: bytes) -> None:
        fields = _scram_fields(server_final)
        if "e" in fields:
            raise SaslError(f"SCRAM server error: {fields['e']}")
        try:
            signature = base64.b64decode(fields.get("v", ""), validate=True)
        except binascii.Error:
            raise SaslError("SCRAM server signature is not base64") from None
        assert self._server_signature is not None
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslError("SCRAM server signature does not verify: not the real server")
        self.done = True


def make_mechanism(name: str, credentials: SaslCredentials) -> Mechanism:
    """A fresh mechanism object for ``name`` (one of :data:`DEFAULT_MECHANISMS`)."""
    if name == "PLAIN":
        return Plain(credentials)
    if name == "SCRAM-SHA-256":
        return ScramSha256(credentials)
    raise ValueError(f"unknown SASL mechanism {name!r}")


def encode_response(payload: bytes) -> list[str]:
    """The ``AUTHENTICATE`` parameters carrying ``payload``: base64 in chunks of
    400 characters, then ``+`` when the last chunk was exactly 400 long (or the
    payload is empty)."""
    encoded = base64.b64encode(payload).decode()
    chunks = [encoded[i : i + CHUNK_BYTES] for i in range(0, len(encoded), CHUNK_BYTES)]
    if not chunks or len(chunks[-1]) == CHUNK_BYTES:
        chunks.append("+")
    return chunks


@dataclass
class ChallengeReader:
    """Collects the server's ``AUTHENTICATE`` chunks into one challenge; at most
    ``max_bytes`` of base64 (a server cannot make the client hold more)."""

    max_bytes: int = 64 * 1024
    _parts: list[str] = field(default_factory=list)
    _size: int = 0

    def feed(self, param: str) -> bytes | None:
        """One chunk in; the decoded challenge once it is complete, else None.
        Raises :class:`SaslError` for bad base64 or an over-long challenge."""
        if param != "+":
            self._parts.append(param)
            self._size += len(param)
            if self._size > self.max_bytes:
                self._parts.clear()
                self._size = 0
                raise SaslError("SASL challenge too long")
            if len(param) == CHUNK_BYTES:
                return None
        encoded = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise SaslError("SASL challenge is not base64") from None
