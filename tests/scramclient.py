"""A SCRAM-SHA-256 client for tests, written from RFC 5802 section 3 and RFC 7677,
independently of the server's code (relaychat.protocol.sasl)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ScramClient:
    """A SCRAM-SHA-256 client written from RFC 5802 section 3 and RFC 7677,
    independently of the server's code."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.cnonce = b64(os.urandom(18))
        self.bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={self.cnonce}"

    def first(self) -> bytes:
        return ("n,," + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
        nonce, salt, rounds = fields["r"], base64.b64decode(fields["s"]), int(fields["i"])
        assert nonce.startswith(self.cnonce) and len(nonce) > len(self.cnonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, rounds)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c={b64(b'n,,')},r={nonce}"
        self.auth_message = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_verifier = hmac.new(server_key, self.auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={b64(proof)}".encode()

    def check(self, server_final: bytes) -> bool:
        return server_final == b"v=" + base64.b64encode(self.expected_verifier)
