"""Email verification of new accounts over real sockets, for both engines: an
SMTP sink (aiosmtpd) on loopback port 0 receives the mail, the test reads the
code from it and VERIFYs; wrong, expired and exhausted codes, logins refused
before verification, a mail server that is down, and NickServ REGISTER/VERIFY."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message as EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from ircutil import RawClient, free_port, make_config
from relaychat.config import AccountsConfig, Config, EmailConfig
from relaychat.protocol import numerics as N

Connect = Callable[..., RawClient]
PW = "verify-password"
CODE = re.compile(r"Verification code: ([A-Z0-9]+)")


class SmtpSink:
    """An SMTP server on 127.0.0.1, port 0, in its own thread and event loop:
    every mail it accepts goes to ``mails`` as (recipients, parsed message)."""

    def __init__(self) -> None:
        self.mails: queue.Queue[tuple[list[str], EmailMessage]] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10), "the SMTP sink did not start"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            self.loop.create_server(lambda: SMTP(self), "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.mails.put((list(envelope.rcpt_tos), message_from_bytes(content)))
        return "250 OK"

    def code_for(self, to: str) -> str:
        """The code of the next mail, which must be to ``to``."""
        rcpt, mail = self.mails.get(timeout=10)
        assert rcpt == [to] and mail["To"] == to
        body = mail.get_payload(decode=True)
        assert isinstance(body, bytes)
        found = CODE.search(body.decode())
        assert found is not None, body
        return found.group(1)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    s = SmtpSink()
    yield s
    s.close()


@pytest.fixture
def verifying(
    engine: str, sink: SmtpSink, run_config: Callable[[Config], Any]
) -> Callable[..., Any]:
    """``verifying(**email)`` -> a server with email verification on, mailing to
    the sink unless ``email`` says otherwise."""

    def start(**email: Any) -> Any:
        settings = {"smtp_host": "127.0.0.1", "smtp_port": sink.port, **email}
        return run_config(
            dataclasses.replace(
                make_config(engine),
                accounts=AccountsConfig(email_verification=True),
                email=EmailConfig(from_address="irc@relaychat.test", **settings),
            )
        )

    return start


def _sasl_plain(c: RawClient, nick: str, account: str, password: str) -> str:
    """SASL PLAIN before registration: the numeric that ends it (903 or 904)."""
    return c.sasl_plain(nick, account, password)


def _ns(c: RawClient) -> str:
    return c.expect(lambda m: m.command == "NOTICE" and m.source.startswith("NickServ!")).params[1]


def test_cap_value_says_email_required_and_register_needs_an_email(
    verifying: Callable[..., Any], connect: Connect, no_server_errors: None
) -> None:
    server = verifying()
    c = connect(server)
    c.send("CAP LS 302")
    ls = c.expect("CAP")
    offered = dict(t.partition("=")[::2] for t in ls.params[-1].split())
    assert offered["draft/account-registration"] == "custom-account-name,email-required"
    c.send("CAP END")
    c.register("amy")
    c.send(f"REGISTER * * :{PW}")
    assert c.expect("FAIL").params[:3] == ["REGISTER", "INVALID_EMAIL", "amy"]


def test_the_mailed_code_verifies_and_logs_in_and_no_login_before(
    verifying: Callable[..., Any],
    sink: SmtpSink,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="relaychat")
    server = verifying()
    alice = connect(server, "alice")
    alice.send(f"REGISTER * alice@mail.test :{PW}")
    reg = alice.expect("REGISTER")
    assert reg.params[:2] == ["VERIFICATION_REQUIRED", "alice"]
    code = sink.code_for("alice@mail.test")
    # not logged in by REGISTER, and not by the right password either
    alice.send("WHOIS alice")
    assert N.RPL_WHOISACCOUNT not in [m.command for m in alice.take_until(N.RPL_ENDOFWHOIS)]
    assert _sasl_plain(connect(server), "bob", "alice", PW) == N.ERR_SASLFAIL
    other = connect(server, "carl")
    other.send(f"PRIVMSG NickServ :IDENTIFY alice {PW}")
    assert _ns(other) == "Invalid account or password"
    # a wrong code, then the right one (lower case is fine)
    alice.send("VERIFY alice WRONGCODE1")
    assert alice.expect("FAIL").params[:3] == ["VERIFY", "INVALID_CODE", "alice"]
    alice.send(f"VERIFY alice {code.lower()}")
    assert alice.expect("VERIFY").params[:2] == ["SUCCESS", "alice"]
    assert alice.expect(N.RPL_LOGGEDIN).params[2] == "alice"
    # a code works once
    other.send(f"VERIFY alice {code}")
    assert other.expect("FAIL").params[:3] == ["VERIFY", "INVALID_CODE", "alice"]
    assert _sasl_plain(connect(server), "dora", "alice", PW) == N.RPL_SASLSUCCESS
    assert all(code not in r.getMessage() for r in caplog.records)
    assert all(PW not in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_too_many_wrong_codes_void_the_code_and_free_the_name(
    verifying: Callable[..., Any], sink: SmtpSink, connect: Connect, no_server_errors: None
) -> None:
    server = verifying(max_attempts=2)
    c = connect(server, "erin")
    c.send(f"REGISTER erin erin@mail.test :{PW}")
    assert c.expect("REGISTER").params[0] == "VERIFICATION_REQUIRED"
    code = sink.code_for("erin@mail.test")
    c.send("VERIFY erin AAAAAAAAAA")
    assert c.expect("FAIL").params[3] == "That code is not right"
    c.send("VERIFY erin BBBBBBBBBB")
    assert c.expect("FAIL").params[3] == "Too many wrong codes; register again"
    c.send(f"VERIFY erin {code}")  # the right code, too late
    assert c.expect("FAIL").params[1:3] == ["INVALID_CODE", "erin"]
    # the unverified name may be registered again, with a new code
    c.send(f"REGISTER erin erin2@mail.test :{PW}")
    assert c.expect("REGISTER").params[0] == "VERIFICATION_REQUIRED"
    code2 = sink.code_for("erin2@mail.test")
    c.send(f"VERIFY erin {code2}")
    assert c.expect("VERIFY").params[0] == "SUCCESS"


def test_an_expired_code_is_refused(
    verifying: Callable[..., Any], sink: SmtpSink, connect: Connect, no_server_errors: None
) -> None:
    server = verifying()
    c = connect(server, "fay")
    c.send(f"REGISTER * fay@mail.test :{PW}")
    assert c.expect("REGISTER").params[0] == "VERIFICATION_REQUIRED"
    code = sink.code_for("fay@mail.test")
    # age the code past its lifetime (an hour) in the store itself: no sleep
    server.core.store._write(lambda db: db.execute("UPDATE account_verifications SET expires = 0"))
    c.send(f"VERIFY fay {code}")
    assert c.expect("FAIL").params[1:] == [
        "INVALID_CODE",
        "fay",
        "That code has expired; register again",
    ]
    assert _sasl_plain(connect(server), "gus", "fay", PW) == N.ERR_SASLFAIL


def test_mail_server_down_fails_and_leaves_no_account(
    verifying: Callable[..., Any], connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="relaychat")
    server = verifying(smtp_port=free_port(), timeout=5.0)  # nothing listens there
    c = connect(server, "hank")
    c.send(f"REGISTER * hank@mail.test :{PW}")
    fail = c.expect("FAIL")
    assert fail.params[:3] == ["REGISTER", "TEMPORARILY_UNAVAILABLE", "hank"]
    assert "email could not be sent" in fail.params[3]
    assert any("could not be sent, account not created" in r.getMessage() for r in caplog.records)
    c.send("PRIVMSG NickServ :INFO hank")
    assert _ns(c) == "hank is not a registered account"
    assert server.core.store.get_account("hank") is None


def test_nickserv_register_with_an_email_then_verify(
    verifying: Callable[..., Any], sink: SmtpSink, connect: Connect, no_server_errors: None
) -> None:
    server = verifying()
    c = connect(server, "iris")
    c.send(f"PRIVMSG NickServ :REGISTER {PW}")
    assert _ns(c) == "An email address is required: REGISTER <password> <email>"
    c.send(f"PRIVMSG NickServ :REGISTER {PW} iris@mail.test")
    assert _ns(c).startswith("Account iris created; a verification code was sent to iris@mail.test")
    code = sink.code_for("iris@mail.test")
    c.send(f"PRIVMSG NickServ :IDENTIFY {PW}")
    assert _ns(c) == "Invalid account or password"
    c.send("PRIVMSG NickServ :VERIFY iris 2222222222")
    assert _ns(c) == "That code is not right"
    c.send(f"PRIVMSG NickServ :VERIFY iris {code}")
    assert _ns(c) == "Account iris verified"
    assert c.expect(N.RPL_LOGGEDIN).params[2] == "iris"
