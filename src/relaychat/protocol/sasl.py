"""SASL, server side and sans-I/O: AUTHENTICATE framing (IRCv3 sasl-3.1/3.2) and
the PLAIN (RFC 4616), SCRAM-SHA-256 (RFC 5802, RFC 7677) and EXTERNAL (RFC 4422
appendix A: the TLS client certificate's fingerprint) mechanisms.

Theory of operation
-------------------
:class:`Assembler` turns ``AUTHENTICATE`` parameters into whole client
responses: base64 in 400-byte chunks, a chunk shorter than 400 bytes (or ``+``)
ends a response, ``+`` alone is an empty one, ``*`` aborts. A chunk longer than
400 bytes or a response over :data:`MAX_RESPONSE` bytes is "too long" (905).

:class:`ScramServer` is the SCRAM-SHA-256 state machine, no I/O and no store:
``client_first`` parses the client-first-message and names the account to look
up; the caller looks it up (an op) and calls ``server_first`` with the
account's credentials (or None: an unknown account gets a salt made from the
name and a server secret, so the exchange looks the same and fails at the
proof); ``client_final`` checks the proof in constant time and returns the
server-final-message. Channel binding is not offered (``n`` or ``y`` GS2 flag).

The per-session state (:class:`SaslState`) and its transitions are in
``handlers/sasl.py``; nothing here touches a session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from enum import Enum

from relaychat.protocol.storage import ScramCredentials

__all__ = [
    "CHUNK",
    "MAX_RESPONSE",
    "MECHANISMS",
    "Assembler",
    "Piece",
    "SaslError",
    "SaslState",
    "ScramServer",
    "b64chunks",
    "parse_external",
    "parse_plain",
]

CHUNK = 400  # bytes of base64 per AUTHENTICATE line
MAX_RESPONSE = 8192  # bytes of base64 in one client response
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "EXTERNAL")


class SaslError(Exception):
    """The client's SASL message is malformed (answered with 904; no secret in it)."""


class Piece(Enum):
    MORE = "more"  # wait for the next chunk
    DONE = "done"  # a whole response is ready (``Assembler.take``)
    ABORT = "abort"  # the client sent ``*``
    TOO_LONG = "too_long"  # over a limit: 905


class Assembler:
    """Collects the chunks of one client response."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def feed(self, chunk: str) -> Piece:
        if chunk == "*":
            self.reset()
            return Piece.ABORT
        size = len(chunk.encode("utf-8"))
        if size > CHUNK or self._size + size > MAX_RESPONSE:
            self.reset()
            return Piece.TOO_LONG
        if chunk == "+":
            return Piece.DONE
        self._parts.append(chunk)
        self._size += size
        return Piece.MORE if size == CHUNK else Piece.DONE

    def take(self) -> bytes:
        """The response, decoded; raises :class:`SaslError` if it is not base64."""
        data = "".join(self._parts)
        self.reset()
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise SaslError("response is not base64") from None

    def reset(self) -> None:
        self._parts = []
        self._size = 0


def b64chunks(data: bytes) -> list[str]:
    """A server challenge as AUTHENTICATE parameters (``+`` for empty, and after
    a last chunk of exactly 400 bytes)."""
    text = base64.b64encode(data).decode("ascii")
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    if not chunks or len(chunks[-1]) == CHUNK:
        chunks.append("+")
    return chunks


def parse_plain(data: bytes) -> tuple[str, str, str]:
    """``authzid NUL authcid NUL passwd`` -> (authzid, authcid, password)."""
    parts = data.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SaslError("malformed PLAIN response")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise SaslError("PLAIN response is not UTF-8") from None
    return authzid, authcid, password


def parse_external(data: bytes) -> str:
    """An EXTERNAL response: the authorization identity ("" for none)."""
    if len(data) > 256:
        raise SaslError("EXTERNAL authorization identity too long")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("EXTERNAL response is not UTF-8") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SaslError("control character in the EXTERNAL response")
    return text


def _attributes(text: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split(","):
        if len(item) < 2 or item[1] != "=":
            raise SaslError("malformed SCRAM attribute")
        out.append((item[0], item[2:]))
    return out


def _saslname(value: str) -> str:
    """RFC 5802 saslname: ``=2C`` is ',' and ``=3D`` is '='; any other '=' is an error."""
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "=":
            code = value[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise SaslError("malformed SCRAM name")
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(slots=True)
class ScramServer:
    """One SCRAM-SHA-256 exchange, server side."""

    secret: bytes  # the server's secret for salts of unknown accounts
    username: str = ""
    gs2_header: str = ""
    client_first_bare: str = ""
    nonce: str = ""
    server_first: str = ""
    credentials: ScramCredentials | None = field(default=None, repr=False)
    verified: bool = False

    def client_first(self, data: bytes) -> str:
        """Parse the client-first-message; return the account name it names."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslError("SCRAM message is not UTF-8") from None
        flag, _, rest = text.partition(",")
        authzid, sep, bare = rest.partition(",")
        if not sep or flag not in ("n", "y"):  # "p=...": channel binding, not offered
            raise SaslError("unsupported GS2 header")
        if authzid and not authzid.startswith("a="):
            raise SaslError("malformed GS2 header")
        attrs = _attributes(bare)
        if attrs and attrs[0][0] == "m":
            raise SaslError("mandatory extension not supported")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise SaslError("malformed client-first-message")
        username = _saslname(attrs[0][1])
        if authzid and _saslname(authzid[2:]) != username:
            raise SaslError("authorization identity differs")
        if not username:
            raise SaslError("empty SCRAM name")
        self.username = username
        self.gs2_header = f"{flag},{authzid},"
        self.client_first_bare = bare
        self.nonce = attrs[1][1] + secrets.token_urlsafe(18)
        return username

    def server_first_message(
        self, credentials: ScramCredentials | None, folded: str, iterations: int
    ) -> bytes:
        """The server-first-message for the account's ``credentials`` (None: an
        unknown account, answered with a made-up salt that is the same every time)."""
        if credentials is None:
            salt = hmac.digest(self.secret, b"scram-salt:" + folded.encode(), "sha256")[:16]
            credentials = ScramCredentials(salt, iterations, b"", b"")
        else:
            self.credentials = credentials
        salt_b64 = base64.b64encode(credentials.salt).decode("ascii")
        self.server_first = f"r={self.nonce},s={salt_b64},i={credentials.iterations}"
        return self.server_first.encode("ascii")

    def client_final(self, data: bytes) -> bytes | None:
        """Check the client-final-message: the server-final-message if the proof
        is right, None if it is not (or the account is unknown)."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise SaslError("SCRAM message is not ASCII") from None
        without_proof, sep, proof_attr = text.rpartition(",")
        if not sep or not proof_attr.startswith("p="):
            raise SaslError("malformed client-final-message")
        attrs = dict(_attributes(without_proof))
        binding = base64.b64encode(self.gs2_header.encode("utf-8")).decode("ascii")
        if attrs.get("c") != binding:
            raise SaslError("channel binding mismatch")
        if not hmac.compare_digest(attrs.get("r", "").encode(), self.nonce.encode()):
            raise SaslError("nonce mismatch")
        try:
            proof = base64.b64decode(proof_attr[2:], validate=True)
        except (binascii.Error, ValueError):
            raise SaslError("proof is not base64") from None
        creds = self.credentials
        if creds is None or len(proof) != len(creds.stored_key):
            return None
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.digest(creds.stored_key, auth_message, "sha256")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), creds.stored_key):
            return None
        self.verified = True
        server_signature = hmac.digest(creds.server_key, auth_message, "sha256")
        return b"v=" + base64.b64encode(server_signature)


@dataclass(slots=True)
class SaslState:
    """One session's SASL exchange in progress.

    ``step``: "plain" (waiting for the PLAIN response), "external" (the
    EXTERNAL response: an authorization identity or none), "scram-first" (waiting
    for the client-first-message), "scram-final" (the client-final-message),
    "scram-ack" (the empty response after the server-final-message; the
    account is logged in when it comes)."""

    mechanism: str
    step: str
    assembler: Assembler = field(default_factory=Assembler)
    scram: ScramServer | None = None
    account: str | None = None  # the account a successful SCRAM proof is for
