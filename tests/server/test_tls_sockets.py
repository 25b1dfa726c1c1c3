"""TLS listeners over real sockets, for both engines: a TLS and a plaintext
client in one channel, +Z and WHOIS 671, the wrong protocol on either port, a
stalled handshake, the certificate reloaded without dropping anyone (in this
process and by SIGHUP to ``relaychat serve``), start-up errors and ``relaychat
gencert``. Certificates are made by the test, with the code ``gencert`` uses."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from ircutil import RawClient, Server, child_cwd, child_env, make_config, wait_for
from relaychat.config import ListenConfig
from relaychat.protocol import numerics as N
from relaychat.server.tls import write_self_signed

HANDSHAKE_TIMEOUT = 0.5


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that verifies the server against ``cert`` (host 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(cert))


def any_cert() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(tmp_path / "tls", "localhost", days=2)


@pytest.fixture
def tls_server(engine: str, run_config: Callable[..., Any], pair: tuple[Path, Path]) -> Any:
    """A plaintext listener (``.port``) and a TLS one (``.server.ports[1]``)."""
    cert, key = pair
    cfg = dataclasses.replace(
        make_config(engine, tls_handshake_timeout=HANDSHAKE_TIMEOUT),
        listen=(
            ListenConfig("127.0.0.1", 0),
            ListenConfig("127.0.0.1", 0, tls=True, cert=str(cert), key=str(key)),
        ),
    )
    return run_config(cfg)


def tls_port(server: Any) -> int:
    port: int = server.server.ports[1]
    return port


def test_tls_and_plaintext_clients_chat_and_only_the_tls_user_is_secure(
    tls_server: Any,
    connect: Callable[..., RawClient],
    pair: tuple[Path, Path],
    no_server_errors: None,
) -> None:
    secure = RawClient(tls_port(tls_server), tls=trusting(pair[0]))
    try:
        secure.register("sec")
        mode = secure.expect("MODE")
        assert mode.params == ["sec", "+Z"]
        plain = connect(tls_server, "plain")
        for c in (secure, plain):
            c.join("#mixed")
        secure.send("PRIVMSG #mixed :over TLS")
        assert plain.expect("PRIVMSG").params == ["#mixed", "over TLS"]
        plain.send("PRIVMSG #mixed :in the clear")
        assert secure.expect("PRIVMSG").params == ["#mixed", "in the clear"]
        whois = {}
        for nick in ("sec", "plain"):
            plain.send(f"WHOIS {nick}")
            whois[nick] = plain.take_until(N.RPL_ENDOFWHOIS)
        assert [m.params[1:] for m in whois["sec"] if m.command == N.RPL_WHOISSECURE] == [
            ["sec", "is using a secure connection"]
        ]
        assert not [m for m in whois["plain"] if m.command == N.RPL_WHOISSECURE]
        secure.send("MODE sec -Z")  # the server's to set: unchanged
        secure.send("MODE sec")
        assert "Z" in secure.expect(N.RPL_UMODEIS).params[1]
        plain.send("MODE plain")
        assert "Z" not in plain.expect(N.RPL_UMODEIS).params[1]
    finally:
        secure.close()


def test_the_wrong_protocol_on_either_port_is_closed_and_a_bystander_keeps_chatting(
    tls_server: Any,
    connect: Callable[..., RawClient],
    pair: tuple[Path, Path],
    no_server_errors: None,
) -> None:
    bystander = connect(tls_server, "stays")
    # plaintext IRC to the TLS port: the handshake fails, the socket closes
    clear = RawClient(tls_port(tls_server))
    try:
        # one write: a second one could meet the server's reset (ECONNRESET in the test)
        clear.send(b"NICK clear\r\nUSER clear 0 * :clear\r\n")
        clear.wait_closed(timeout=5)
    finally:
        clear.close()
    # a TLS ClientHello to the plaintext port: refused, the handshake fails
    with pytest.raises((ssl.SSLError, OSError)):
        RawClient(tls_server.port, timeout=5, tls=trusting(pair[0]))
    assert [m.command for m in bystander.sync()] == []
    bystander.join("#still")


def test_a_stalled_handshake_is_dropped_at_the_deadline(
    tls_server: Any, connect: Callable[..., RawClient], no_server_errors: None
) -> None:
    staller = RawClient(tls_port(tls_server))
    try:
        staller.send(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        started = time.monotonic()
        staller.wait_closed(timeout=HANDSHAKE_TIMEOUT + 5)
        assert time.monotonic() - started >= HANDSHAKE_TIMEOUT * 0.8
    finally:
        staller.close()
    assert connect(tls_server, "after").sync() == []


def test_a_reloaded_pair_serves_new_clients_and_a_broken_one_keeps_the_old(
    tls_server: Any,
    pair: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cert, key = pair
    old = RawClient(tls_port(tls_server), tls=trusting(cert))
    try:
        old.register("old")
        old.expect("MODE")
        first = der(cert)
        write_self_signed(cert.parent, "renewed.example", days=2)
        second = der(cert)
        assert second != first

        def served() -> bytes:
            c = RawClient(tls_port(tls_server), tls=any_cert())
            try:
                got = c.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
                assert got is not None
                return bytes(got)
            finally:
                c.close()

        tls_server.server.request_rehash()
        wait_for(lambda: served() == second, what="the new certificate")
        assert old.sync() == []  # still connected, on the old pair
        caplog.set_level(logging.ERROR, logger="relaychat")
        key.write_text("not a key\n")
        tls_server.server.request_rehash()
        wait_for(lambda: "keeping the certificate" in caplog.text, what="the error line")
        assert served() == second
        assert str(key) in caplog.text
    finally:
        old.close()


# -------------------------------------------------------- relaychat serve
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaychat", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=child_cwd(),
    )


def tls_conf(path: Path, cert: Path, key: Path) -> Path:
    path.write_text(
        '[server]\nlog_level = "WARNING"\n'
        f'[[listen]]\nport = 0\ntls = true\ncert = "{cert}"\nkey = "{key}"\n'
    )
    return path


def test_sighup_reloads_the_certificate_without_dropping_a_client(
    spawn: Callable[..., Server], engine: str, pair: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = pair
    conf = tls_conf(tmp_path / "tls.toml", cert, key)
    server = spawn(engine, "--config", str(conf))  # --port P keeps the listener's TLS
    old = RawClient(server.port, tls=trusting(cert))
    try:
        old.register("kept")
        old.expect("MODE")
        write_self_signed(cert.parent, "renewed.example", days=2)
        renewed = der(cert)
        server.proc.send_signal(signal.SIGHUP)

        def served() -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                with any_cert().wrap_socket(raw) as s:
                    return bytes(s.getpeercert(binary_form=True) or b"")

        wait_for(lambda: served() == renewed, what="the new certificate after SIGHUP")
        assert old.sync() == []
        key.write_text("broken\n")
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the certificate" in server.stderr(), what="the error line")
        assert served() == renewed
        assert old.sync() == []
        assert "Traceback" not in server.stderr()
    finally:
        old.close()


@pytest.mark.parametrize("fault", ["missing certificate", "missing key", "mismatched key"])
def test_an_unusable_pair_stops_serve_with_one_line_naming_the_file(
    fault: str, tmp_path: Path
) -> None:
    cert, key = write_self_signed(tmp_path / "a", "localhost", days=2)
    _, other_key = write_self_signed(tmp_path / "b", "localhost", days=2)
    named = {
        "missing certificate": (tmp_path / "nope.crt", key, tmp_path / "nope.crt"),
        "missing key": (cert, tmp_path / "nope.key", tmp_path / "nope.key"),
        "mismatched key": (cert, other_key, other_key),
    }
    use_cert, use_key, culprit = named[fault]
    conf = tls_conf(tmp_path / "bad.toml", use_cert, use_key)
    result = run_cli("serve", "--config", str(conf))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(culprit) in lines[0]


def test_a_tls_listener_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "nocert.toml"
    conf.write_text("[[listen]]\nport = 0\ntls = true\n")
    result = run_cli("serve", "--config", str(conf))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"relaychat: {conf}: key 'listen.cert' (listener 1) is required when tls = true "
        "(relaychat gencert writes a self-signed pair)"
    ]


def test_gencert_writes_a_pair_a_server_context_accepts(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = run_cli("gencert", "--out", str(out), "--host", "irc.example.org")
    assert result.returncode == 0, result.stderr
    cert, key = out / "relaychat.crt", out / "relaychat.key"
    assert key.stat().st_mode & 0o077 == 0
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)  # raises on a mismatch
    alt = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "irc.example.org" in alt.value.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in alt.value.get_values_for_type(x509.IPAddress)


def test_a_tls_reader_that_lags_gets_every_line_in_order(
    tls_server: Any,
    connect: Callable[..., RawClient],
    pair: tuple[Path, Path],
    no_server_errors: None,
) -> None:
    """Output the kernel does not take at once (writes that would block, TLS
    records retried as they were) arrives whole and in order."""
    slow = RawClient(tls_port(tls_server), tls=trusting(pair[0]), rcvbuf=4096)
    try:
        slow.register("slow")
        slow.join("#bulk")
        sender = connect(tls_server, "sender")
        sender.join("#bulk")
        count, pad = 1500, "x" * 300
        for i in range(count):
            sender.send(f"PRIVMSG #bulk :{i} {pad}")
        sender.sync()  # all handled: most of it waits in the server for slow
        got = [
            int(m.params[1].split()[0])
            for m in slow.take_until(
                lambda m: m.command == "PRIVMSG" and m.params[1].startswith(f"{count - 1} ")
            )
            if m.command == "PRIVMSG"
        ]
        assert got == list(range(count))
        assert slow.sync() == []
    finally:
        slow.close()


def test_stopping_with_a_handshake_pending_leaves_nothing_behind(
    engine: str, run_config: Callable[..., Any], pair: tuple[Path, Path]
) -> None:
    cert, key = pair
    cfg = dataclasses.replace(
        make_config(engine),  # the default deadline: the stop comes first
        listen=(ListenConfig("127.0.0.1", 0, tls=True, cert=str(cert), key=str(key)),),
    )
    server = run_config(cfg)
    staller = RawClient(server.port)
    try:
        staller.send(b"\x16\x03\x01")
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3.0
        staller.wait_closed(timeout=5)
    finally:
        staller.close()
