"""SASL login in the client (IRCv3 sasl-3.1/3.2): the mechanisms against RFC test
vectors and an independent server-side SCRAM, the core fed by hand, and the threaded
Connection against a scripted peer playing a server written from the specification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from ircutil import wait_for
from relaychat.client import (
    AuthenticationFailed,
    ClientProtocol,
    Connection,
    NotSupported,
    Phase,
    RegistrationError,
    SaslCredentials,
)
from relaychat.protocol.message import parse_message
from relaychat.protocol.sasl_client import (
    ChallengeReader,
    Plain,
    SaslError,
    ScramSha256,
    encode_response,
)

HOST = "127.0.0.1"
PASSWORD = "correct horse battery staple"
CREDS = SaslCredentials("alice", PASSWORD)

# RFC 7677, section 3
RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class ScramServer:
    """The server's side of SCRAM-SHA-256 (RFC 5802 section 3), written apart from
    the client's: it stores only StoredKey and ServerKey, checks the proof, signs."""

    def __init__(
        self, password: str, salt: bytes, iterations: int = 4096, nonce: str = "srvnonce"
    ) -> None:
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        self.stored_key = hashlib.sha256(client_key).digest()
        self.server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.salt, self.iterations, self.server_nonce = salt, iterations, nonce

    def first(self, client_first: str) -> str:
        assert client_first.startswith("n,,")
        self.client_first_bare = client_first[3:]
        attrs = dict(a.split("=", 1) for a in self.client_first_bare.split(","))
        self.username = attrs["n"]
        self.nonce = attrs["r"] + self.server_nonce
        self.server_first = f"r={self.nonce},s={b64(self.salt)},i={self.iterations}"
        return self.server_first

    def final(self, client_final: str) -> str | None:
        """The server-final message, or None when the proof is wrong."""
        without_proof, _, proof = client_final.rpartition(",p=")
        assert without_proof == f"c=biws,r={self.nonce}"
        auth = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.new(self.stored_key, auth, hashlib.sha256).digest()
        client_key = bytes(a ^ b for a, b in zip(unb64(proof), signature, strict=True))
        if hashlib.sha256(client_key).digest() != self.stored_key:
            return None
        return "v=" + b64(hmac.new(self.server_key, auth, hashlib.sha256).digest())


# -- mechanisms and framing ---------------------------------------------------------


def test_plain_response_is_authzid_nul_authcid_nul_password() -> None:
    plain = Plain(SaslCredentials("jilles", "sesame", authzid="jilles"))
    assert b64(plain.step(b"")) == "amlsbGVzAGppbGxlcwBzZXNhbWU="  # the sasl-3.1 example
    assert plain.done


def test_scram_sha256_rfc7677_test_vector() -> None:
    scram = ScramSha256(SaslCredentials("user", "pencil"), nonce=RFC_NONCE)
    assert scram.step(b"") == b"n,,n=user,r=" + RFC_NONCE.encode()
    assert scram.step(RFC_SERVER_FIRST.encode()).decode() == RFC_CLIENT_FINAL
    assert not scram.done
    assert scram.step(RFC_SERVER_FINAL.encode()) == b""
    assert scram.done


def test_independent_scram_server_reproduces_the_rfc_vector() -> None:
    server = ScramServer(
        "pencil", unb64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    assert server.first(f"n,,n=user,r={RFC_NONCE}") == RFC_SERVER_FIRST
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL


def test_scram_rejects_a_wrong_server_signature_and_a_foreign_nonce() -> None:
    scram = ScramSha256(SaslCredentials("user", "pencil"), nonce=RFC_NONCE)
    scram.step(b"")
    scram.step(RFC_SERVER_FIRST.encode())
    with pytest.raises(SaslError, match="signature"):
        scram.step(b"v=" + base64.b64encode(bytes(32)))
    assert not scram.done
    other = ScramSha256(SaslCredentials("user", "pencil"), nonce=RFC_NONCE)
    other.step(b"")
    with pytest.raises(SaslError, match="nonce"):
        other.step(b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_scram_escapes_comma_and_equals_in_the_name() -> None:
    scram = ScramSha256(SaslCredentials("a=b,c", "pw"), nonce="n0nce")
    assert scram.step(b"") == b"n,,n=a=3Db=2Cc,r=n0nce"


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (0, ["+"]),
        (3, ["AAAA"]),
        (300, ["A" * 400, "+"]),
        (303, ["A" * 400, "AAAA"]),
        (600, ["A" * 400, "A" * 400, "+"]),
    ],
)
def test_encode_response_chunks_at_400_with_a_final_plus(size: int, chunks: list[str]) -> None:
    assert encode_response(bytes(size)) == chunks


def test_challenge_reader_joins_chunks_until_short_or_plus() -> None:
    reader = ChallengeReader()
    payload = bytes(range(256)) * 3  # 768 bytes: 1024 base64 characters
    encoded = b64(payload)
    assert reader.feed(encoded[:400]) is None
    assert reader.feed(encoded[400:800]) is None
    assert reader.feed(encoded[800:]) == payload
    exact = b64(bytes(300))
    assert reader.feed(exact) is None
    assert reader.feed("+") == bytes(300)
    assert reader.feed("+") == b""
    with pytest.raises(SaslError):
        reader.feed("not base64!")


def test_credentials_never_show_the_password() -> None:
    creds = SaslCredentials("alice", "hunter2-secret")
    for text in (repr(creds), str(creds), repr(Plain(creds)), repr(ScramSha256(creds))):
        assert "hunter2-secret" not in text


# -- the core, without sockets ---------------------------------------------------------


def out(proto: ClientProtocol) -> list[str]:
    return proto.data_to_send().decode().split("\r\n")[:-1]


def feed(proto: ClientProtocol, *lines: str) -> None:
    proto.receive_data("".join(line + "\r\n" for line in lines).encode())


def core(**kwargs: Any) -> ClientProtocol:
    proto = ClientProtocol("alice", caps=(), **kwargs)
    proto.start()
    proto.data_to_send()
    return proto


def test_core_plain_login_holds_cap_end_until_903() -> None:
    proto = core(
        sasl=SaslCredentials("jilles", "sesame", authzid="jilles"), sasl_mechanisms=["PLAIN"]
    )
    feed(proto, ":irc CAP * LS :multi-prefix sasl")
    assert out(proto) == ["CAP REQ sasl"]
    feed(proto, ":irc CAP alice ACK :sasl")
    assert out(proto) == ["AUTHENTICATE PLAIN"]
    feed(proto, "AUTHENTICATE +")
    assert out(proto) == ["AUTHENTICATE amlsbGVzAGppbGxlcwBzZXNhbWU="]
    feed(proto, ":irc 900 alice alice!a@h jilles :You are now logged in as jilles")
    assert out(proto) == []  # no CAP END before 903
    assert proto.account == "jilles"
    feed(proto, ":irc 903 alice :SASL authentication successful")
    assert out(proto) == ["CAP END"]
    feed(proto, ":irc 001 alice :Welcome")
    assert proto.phase is Phase.REGISTERED and proto.sasl_failure is None
    feed(proto, ":irc 901 alice alice!a@h :You are now logged out")
    assert proto.account is None


def test_core_sasl_value_limits_the_mechanisms() -> None:
    proto = core(sasl=CREDS)
    feed(proto, ":irc CAP * LS :sasl=PLAIN,EXTERNAL")
    out(proto)
    feed(proto, ":irc CAP alice ACK :sasl")
    assert out(proto) == ["AUTHENTICATE PLAIN"]  # SCRAM-SHA-256 is not offered


def test_core_sasl_value_without_our_mechanisms_fails() -> None:
    proto = core(sasl=CREDS)
    feed(proto, ":irc CAP * LS :sasl=EXTERNAL")
    out(proto)
    feed(proto, ":irc CAP alice ACK :sasl")
    assert out(proto) == []
    assert proto.phase is Phase.FAILED
    assert proto.sasl_failure is not None and "EXTERNAL" in proto.sasl_failure[1]


def test_core_falls_back_after_908_and_904() -> None:
    proto = core(sasl=CREDS)
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl")
    assert out(proto)[-1] == "AUTHENTICATE SCRAM-SHA-256"
    feed(proto, ":irc 908 alice PLAIN,EXTERNAL :are available SASL mechanisms")
    feed(proto, ":irc 904 alice :SASL authentication failed")
    assert out(proto) == ["AUTHENTICATE PLAIN"]
    assert proto.sasl_server_mechanisms == ("PLAIN", "EXTERNAL")
    feed(proto, "AUTHENTICATE +")
    assert out(proto) == ["AUTHENTICATE " + b64(f"\0alice\0{PASSWORD}")]


def test_core_904_after_the_response_fails_without_another_mechanism() -> None:
    proto = core(sasl=CREDS, sasl_mechanisms=["PLAIN"])
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl", "AUTHENTICATE +")
    out(proto)
    feed(proto, ":irc 904 alice :SASL authentication failed")
    assert proto.phase is Phase.FAILED
    assert proto.sasl_failure == ("904", "SASL authentication failed")
    assert out(proto) == []  # no CAP END: the login was required


@pytest.mark.parametrize("numeric", ["902", "904", "905", "906"])
def test_core_failure_numerics_with_continue_without_login(numeric: str) -> None:
    proto = core(sasl=CREDS, sasl_mechanisms=["PLAIN"], sasl_required=False)
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl", "AUTHENTICATE +")
    out(proto)
    feed(proto, f":irc {numeric} alice :nope")
    assert out(proto) == ["CAP END"]
    feed(proto, ":irc 001 alice :Welcome")
    assert proto.phase is Phase.REGISTERED
    assert proto.sasl_failure == (numeric, "nope") and proto.account is None


def test_core_no_sasl_offered_fails_or_continues() -> None:
    required = core(sasl=CREDS)
    feed(required, ":irc CAP * LS :multi-prefix")
    assert out(required) == []
    assert required.phase is Phase.FAILED
    assert required.sasl_failure == (None, "the server does not offer SASL")
    optional = core(sasl=CREDS, sasl_required=False)
    feed(optional, ":irc CAP * LS :multi-prefix")
    assert out(optional) == ["CAP END"]


def test_core_welcome_without_login_fails_when_required() -> None:
    proto = core(sasl=CREDS)
    feed(proto, ":irc 001 alice :Welcome")  # a server that ignored CAP LS
    assert proto.phase is Phase.FAILED


def test_core_scram_bad_server_signature_aborts() -> None:
    proto = core(sasl=SaslCredentials("user", "pencil"), sasl_mechanisms=["SCRAM-SHA-256"])
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl")
    out(proto)
    feed(proto, "AUTHENTICATE +")
    first = unb64(out(proto)[0].split()[1]).decode()
    client_nonce = first.split("r=")[1]
    feed(proto, "AUTHENTICATE " + b64(f"r={client_nonce}xyz,s={b64(b'salt')},i=4096"))
    out(proto)
    feed(proto, "AUTHENTICATE " + b64("v=" + b64(bytes(32))))
    assert out(proto) == ["AUTHENTICATE *"]
    feed(proto, ":irc 906 alice :SASL authentication aborted")
    assert proto.phase is Phase.FAILED
    assert proto.sasl_failure is not None and "signature" in proto.sasl_failure[1]


def test_core_903_before_scram_server_proof_is_a_failure() -> None:
    proto = core(sasl=SaslCredentials("user", "pencil"), sasl_mechanisms=["SCRAM-SHA-256"])
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl", "AUTHENTICATE +")
    out(proto)
    feed(proto, ":irc 903 alice :SASL authentication successful")
    assert proto.phase is Phase.FAILED


# -- the threaded Connection against a scripted peer -------------------------------------


class SaslPeer:
    """A scripted peer playing a server from sasl-3.1/3.2: reads AUTHENTICATE chunks
    the way the specification frames them."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def offer(self, value: str = "sasl") -> None:
        self.peer.expect("CAP LS")
        self.peer.send_line(f":irc.test CAP * LS :{value}")
        req = self.peer.expect("CAP REQ")
        assert "sasl" in req.split(":")[-1].split() or req.endswith(" sasl")
        self.peer.send_line(":irc.test CAP alice ACK :sasl")

    def read_response(self) -> tuple[bytes, list[str]]:
        """One client response, put together from its chunks; and the raw chunks."""
        chunks: list[str] = []
        while True:
            line = self.peer.expect("AUTHENTICATE")
            param = parse_message(line).params[0]
            chunks.append(param)
            assert len(param) <= 400
            if param != "+" and len(param) == 400:
                continue
            joined = "".join(c for c in chunks if c != "+")
            return unb64(joined), chunks

    def challenge(self, data: bytes) -> None:
        for chunk in encode_response(data):
            self.peer.send_line(f"AUTHENTICATE {chunk}")

    def success(self, account: str = "alice") -> None:
        self.peer.send_line(f":irc.test 900 alice alice!a@h {account} :You are now logged in")
        self.peer.send_line(":irc.test 903 alice :SASL authentication successful")
        self.peer.expect("CAP END")
        self.peer.send_line(":irc.test 001 alice :Welcome")


def run_connect(conn: Connection) -> Future[Connection]:
    future: Future[Connection] = Future()

    def run() -> None:
        try:
            future.set_result(conn.connect(timeout=10))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


@pytest.fixture
def conns() -> Iterator[list[Connection]]:
    made: list[Connection] = []
    yield made
    for conn in made:
        conn.close()


def test_connection_plain_login_exact_bytes(scripted_peer: Any, conns: list[Connection]) -> None:
    conn = Connection(
        HOST, scripted_peer.port, "alice", caps=(), sasl=CREDS, sasl_mechanisms=["PLAIN"]
    )
    conns.append(conn)
    done = run_connect(conn)
    server = SaslPeer(scripted_peer.accept())
    server.offer()
    assert server.peer.expect("AUTHENTICATE") == "AUTHENTICATE PLAIN"
    server.peer.send_line("AUTHENTICATE +")
    line = server.peer.expect("AUTHENTICATE")
    assert line == "AUTHENTICATE " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    server.success()
    assert done.result(10) is conn
    assert conn.account == "alice" and conn.registered


@pytest.mark.parametrize(("raw", "lines"), [(300, 2), (600, 3)])
def test_connection_chunks_a_response_of_400_and_800_bytes(
    scripted_peer: Any, conns: list[Connection], raw: int, lines: int
) -> None:
    account = "a" * 20
    password = "p" * (raw - len(account) - 2)  # \0account\0password: exactly raw bytes
    conn = Connection(
        HOST,
        scripted_peer.port,
        "alice",
        caps=(),
        sasl_mechanisms=["PLAIN"],
        sasl=SaslCredentials(account, password),
    )
    conns.append(conn)
    done = run_connect(conn)
    server = SaslPeer(scripted_peer.accept())
    server.offer()
    server.peer.expect("AUTHENTICATE PLAIN")
    server.peer.send_line("AUTHENTICATE +")
    payload, chunks = server.read_response()
    assert payload == f"\0{account}\0{password}".encode()
    assert len(chunks) == lines and chunks[-1] == "+"
    assert all(len(c) == 400 for c in chunks[:-1])
    server.success(account)
    done.result(10)
    assert conn.account == account


def test_connection_scram_against_an_independent_server(
    scripted_peer: Any, conns: list[Connection], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn = Connection(HOST, scripted_peer.port, "alice", caps=(), sasl=CREDS)
    conns.append(conn)
    done = run_connect(conn)
    server = SaslPeer(scripted_peer.accept())
    server.offer("sasl=SCRAM-SHA-256,PLAIN")
    assert server.peer.expect("AUTHENTICATE") == "AUTHENTICATE SCRAM-SHA-256"
    server.peer.send_line("AUTHENTICATE +")
    scram = ScramServer(PASSWORD, b"pepper and salt", 4096)
    client_first, _ = server.read_response()
    server.challenge(scram.first(client_first.decode()).encode())
    client_final, _ = server.read_response()
    server_final = scram.final(client_final.decode())
    assert server_final is not None, "the client's proof did not verify"
    server.challenge(server_final.encode())
    assert server.read_response()[0] == b""  # AUTHENTICATE + after verifying us
    server.success()
    done.result(10)
    assert conn.account == "alice"
    assert PASSWORD not in caplog.text


def test_connection_scram_fake_server_is_refused(
    scripted_peer: Any, conns: list[Connection]
) -> None:
    conn = Connection(
        HOST, scripted_peer.port, "alice", caps=(), sasl=CREDS, sasl_mechanisms=["SCRAM-SHA-256"]
    )
    conns.append(conn)
    done = run_connect(conn)
    server = SaslPeer(scripted_peer.accept())
    server.offer()
    server.peer.expect("AUTHENTICATE SCRAM-SHA-256")
    server.peer.send_line("AUTHENTICATE +")
    scram = ScramServer("a different password", b"salt", 4096)  # does not know ours
    client_first, _ = server.read_response()
    server.challenge(scram.first(client_first.decode()).encode())
    server.read_response()
    server.challenge(b"v=" + base64.b64encode(bytes(32)))
    assert server.peer.expect("AUTHENTICATE") == "AUTHENTICATE *"
    server.peer.send_line(":irc.test 906 alice :SASL authentication aborted")
    with pytest.raises(AuthenticationFailed, match="signature") as info:
        done.result(10)
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)


def test_connection_failure_raises_with_the_numeric(
    scripted_peer: Any, conns: list[Connection]
) -> None:
    conn = Connection(HOST, scripted_peer.port, "alice", caps=(), sasl=CREDS)
    conns.append(conn)
    done = run_connect(conn)
    server = SaslPeer(scripted_peer.accept())
    server.offer()
    server.peer.expect("AUTHENTICATE SCRAM-SHA-256")
    server.peer.send_line(":irc.test 908 alice PLAIN :are available SASL mechanisms")
    server.peer.send_line(":irc.test 904 alice :SASL authentication failed")
    server.peer.expect("AUTHENTICATE PLAIN")  # 908 fallback
    server.peer.send_line("AUTHENTICATE +")
    server.peer.expect("AUTHENTICATE ")
    server.peer.send_line(":irc.test 904 alice :SASL authentication failed")
    with pytest.raises(AuthenticationFailed) as info:
        done.result(10)
    assert (info.value.numeric, info.value.text) == ("904", "SASL authentication failed")
    assert isinstance(info.value, RegistrationError)
    assert str(info.value) == "SASL 904: SASL authentication failed"
    assert conn.disconnected.wait(10)


def test_connection_no_sasl_offered(scripted_peer: Any, conns: list[Connection]) -> None:
    conn = Connection(HOST, scripted_peer.port, "alice", caps=(), sasl=CREDS)
    conns.append(conn)
    done = run_connect(conn)
    peer = scripted_peer.accept()
    peer.expect("CAP LS")
    peer.send_line(":irc.test CAP * LS :multi-prefix")
    with pytest.raises(AuthenticationFailed, match="does not offer SASL"):
        done.result(10)


def test_connection_continues_without_login_when_asked(
    scripted_peer: Any, conns: list[Connection]
) -> None:
    conn = Connection(HOST, scripted_peer.port, "alice", caps=(), sasl=CREDS, sasl_required=False)
    conns.append(conn)
    done = run_connect(conn)
    peer = scripted_peer.accept()
    peer.expect("CAP LS")
    peer.welcome("alice")  # no caps at all
    assert done.result(10).registered
    assert conn.account is None
    assert conn.sasl_failure == (None, "the server does not offer SASL")


def test_core_cap_new_during_login_does_not_end_caps() -> None:
    proto = core(sasl=CREDS, sasl_mechanisms=["PLAIN"])
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl")
    out(proto)
    feed(proto, ":irc CAP alice NEW :away-notify")
    assert out(proto) == []
    feed(proto, "AUTHENTICATE +")
    out(proto)
    feed(proto, ":irc 903 alice :SASL authentication successful")
    assert out(proto) == ["CAP END"]


# -- account registration (draft/account-registration) ------------------------------------


def registered_with_registration_cap(
    scripted_peer: Any, conns: list[Connection]
) -> tuple[Connection, Any]:
    conn = Connection(
        HOST,
        scripted_peer.port,
        "alice",
        caps=("batch", "labeled-response", "draft/account-registration"),
    )
    conns.append(conn)
    done = run_connect(conn)
    peer = scripted_peer.accept()
    peer.expect("CAP LS")
    peer.send_line(":irc.test CAP * LS :batch labeled-response draft/account-registration")
    assert peer.expect("CAP REQ") == "CAP REQ :batch draft/account-registration labeled-response"
    peer.send_line(":irc.test CAP alice ACK :batch labeled-response draft/account-registration")
    peer.expect("CAP END")
    peer.send_line(":irc.test 001 alice :Welcome")
    done.result(10)
    return conn, peer


def test_register_account_sends_register_and_returns_the_labeled_reply(
    scripted_peer: Any, conns: list[Connection]
) -> None:
    conn, peer = registered_with_registration_cap(scripted_peer, conns)
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(conn.register_account, PASSWORD, email="a@example.org")
        line = parse_message(peer.expect("@label="))
        assert line.command == "REGISTER"
        assert line.params == ["alice", "a@example.org", PASSWORD]
        label = line.tags["label"]
        peer.send_line(f"@label={label} :irc.test REGISTER SUCCESS alice :Account created")
        peer.send_line(":irc.test 900 alice alice!a@h alice :You are now logged in as alice")
        response = reply.result(10)
    assert [m.params for m in response] == [["SUCCESS", "alice", "Account created"]]
    assert response.error is None
    wait_for(lambda: conn.account == "alice")


def test_register_account_failure_is_the_fail_reply(
    scripted_peer: Any, conns: list[Connection]
) -> None:
    conn, peer = registered_with_registration_cap(scripted_peer, conns)
    future = conn.send_register_account(PASSWORD, account="bob")
    line = parse_message(peer.expect("@label="))
    assert line.params == ["bob", "*", PASSWORD]
    peer.send_line(f"@label={line.tags['label']} :irc.test FAIL REGISTER ACCOUNT_EXISTS bob :Taken")
    response = future.result(10)
    assert response.error is not None and response.error.params[:2] == [
        "REGISTER",
        "ACCOUNT_EXISTS",
    ]


def test_register_account_needs_the_cap_and_keeps_the_password_out_of_errors(
    scripted_peer: Any, conns: list[Connection]
) -> None:
    conn = Connection(HOST, scripted_peer.port, "alice", caps=())
    conns.append(conn)
    done = run_connect(conn)
    scripted_peer.accept().register("alice")
    done.result(10)
    with pytest.raises(NotSupported):
        conn.register_account(PASSWORD)
    with pytest.raises(ValueError) as info:
        conn.register_account("bad\r\npassword")
    assert "password" in str(info.value) and "bad\r\n" not in str(info.value)


def test_scram_saslprep_maps_non_ascii_spaces_and_refuses_controls() -> None:
    def final(password: str) -> bytes:
        scram = ScramSha256(SaslCredentials("user", password), nonce=RFC_NONCE)
        scram.step(b"")
        return scram.step(RFC_SERVER_FIRST.encode())

    assert final("pen\u00a0cil") == final("pen cil") != final("pencil")
    assert final("pen\u00adcil") == final("pencil")  # soft hyphen: mapped to nothing
    with pytest.raises(SaslError):
        final("pen\x07cil")


def test_core_unusable_name_for_scram_falls_back_to_plain() -> None:
    proto = core(sasl=SaslCredentials("us\x07er", "pw"))
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl")
    assert out(proto)[-1] == "AUTHENTICATE PLAIN"


def test_core_welcome_during_optional_login_gives_up_on_it() -> None:
    proto = core(sasl=CREDS, sasl_mechanisms=["PLAIN"], sasl_required=False)
    feed(proto, ":irc CAP * LS :sasl", ":irc CAP alice ACK :sasl")
    out(proto)
    feed(proto, ":irc 001 alice :Welcome")
    assert proto.phase is Phase.REGISTERED and not proto.sasl_in_progress
    assert out(proto) == []
    assert proto.sasl_failure == (None, "the server registered us before the login ended")
