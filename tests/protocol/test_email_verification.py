"""Email verification in the core (``[accounts] email_verification``), with the
fake clock for expiry and a recording :class:`Mailer` (the SMTP path itself is
tested over sockets with a real SMTP server in tests/server). The store is a
real in-memory SQLite database."""

from __future__ import annotations

import base64
import logging
import re

import pytest

from coreharness import Clock, Peer, advance, new_core, numerics, one
from relaychat.config import AccountsConfig, Config, EmailConfig, LimitsConfig
from relaychat.protocol.core import ServerCore
from relaychat.protocol.mailer import MailError
from relaychat.protocol.message import Message
from scramclient import ScramClient

PW = "verify-password-1"


class RecordingMailer:
    """Keeps what it is asked to send; ``down`` makes it fail as SMTP would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.down = False

    def send(self, settings: EmailConfig, to: str, subject: str, body: str) -> None:
        if self.down:
            raise MailError(f"{settings.smtp_host}:{settings.smtp_port}: connection refused")
        self.sent.append((to, subject, body))

    def code(self) -> str:
        found = re.search(r"Verification code: (\S+)", self.sent[-1][2])
        assert found is not None
        return found.group(1)


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def core(clock: Clock, mailer: RecordingMailer) -> ServerCore:
    cfg = Config(
        limits=LimitsConfig(flood_rate=0.0),
        accounts=AccountsConfig(email_verification=True),
        email=EmailConfig(from_address="irc@example.org", max_attempts=3, code_lifetime=600.0),
    )
    c = new_core(cfg, clock)
    c.mailer = mailer
    return c


def fails(msgs: list[Message]) -> list[list[str]]:
    return [m.params for m in msgs if m.command == "FAIL"]


def sasl_peer(core: ServerCore, clock: Clock, nick: str = "client") -> Peer:
    p = Peer(core, clock)
    for line in ("CAP LS 302", "CAP REQ :sasl", f"NICK {nick}", f"USER {nick} 0 * :x"):
        p.send(line)
    p.take()
    return p


def authenticate_lines(p: Peer, payload: bytes) -> list[Message]:
    p.send("AUTHENTICATE " + (base64.b64encode(payload).decode() or "+"))  # < 400 bytes here
    return p.take()


def challenge(msgs: list[Message]) -> bytes:
    return base64.b64decode("".join(m.params[0] for m in msgs if m.command == "AUTHENTICATE"))


def pending_account(core: ServerCore, clock: Clock, name: str) -> Peer:
    p = Peer(core, clock)
    p.register(name)
    p.send(f"REGISTER * {name}@example.org :{PW}")
    assert one(p.take(), "REGISTER").params[:2] == ["VERIFICATION_REQUIRED", name]
    return p


def test_off_by_default_register_with_an_email_needs_no_code(
    clock: Clock, mailer: RecordingMailer
) -> None:
    plain = new_core(Config(limits=LimitsConfig(flood_rate=0.0)), clock)
    plain.mailer = mailer
    assert plain.caps_offered["draft/account-registration"] == "custom-account-name"
    p = Peer(plain, clock)
    p.register("olive")
    p.send(f"REGISTER * olive@example.org :{PW}")
    assert one(p.take(), "REGISTER").params[0] == "SUCCESS"
    assert mailer.sent == []


def test_the_mail_names_the_account_and_the_account_waits_unverified(
    core: ServerCore, clock: Clock, mailer: RecordingMailer
) -> None:
    pending_account(core, clock, "alice")
    [(to, subject, body)] = mailer.sent
    assert to == "alice@example.org" and "alice" in subject
    assert f"VERIFY alice {mailer.code()}" in body
    rec = core.store.get_account("alice")  # type: ignore[union-attr]
    assert rec is not None and not rec.verified and rec.email == "alice@example.org"


def test_scram_to_an_unverified_account_fails_like_an_unknown_one(
    core: ServerCore, clock: Clock, mailer: RecordingMailer
) -> None:
    owner = pending_account(core, clock, "scram")
    p = sasl_peer(core, clock)
    client = ScramClient("scram", PW)
    p.send("AUTHENTICATE SCRAM-SHA-256")
    p.take()
    first = challenge(authenticate_lines(p, client.first()))
    assert numerics(authenticate_lines(p, client.final(first))) == ["904"]
    owner.send(f"VERIFY scram {mailer.code()}")
    assert one(owner.take(), "VERIFY").params[:2] == ["SUCCESS", "scram"]
    advance(core, clock, 1.0)  # the failure above backed this address off for 1 s
    p = sasl_peer(core, clock, "client2")
    client = ScramClient("scram", PW)
    p.send("AUTHENTICATE SCRAM-SHA-256")
    p.take()
    first = challenge(authenticate_lines(p, client.first()))
    final = challenge(authenticate_lines(p, client.final(first)))
    assert client.check(final)
    assert numerics(authenticate_lines(p, b"")) == ["900", "903"]


def test_a_code_expires_with_the_clock(
    core: ServerCore, clock: Clock, mailer: RecordingMailer
) -> None:
    pending_account(core, clock, "bea")
    advance(core, clock, 601.0, step=60.0)
    p = Peer(core, clock)  # a new connection: the first one timed out meanwhile
    p.register("later")
    p.send(f"VERIFY bea {mailer.code()}")
    assert fails(p.take()) == [
        ["VERIFY", "INVALID_CODE", "bea", "That code has expired; register again"]
    ]
    # and it is gone: the name may be registered again
    p.send(f"REGISTER * bea2@example.org :{PW}")
    assert one(p.take(), "REGISTER").params[0] == "VERIFICATION_REQUIRED"


def test_hostile_codes_are_wrong_codes_and_count(
    core: ServerCore, clock: Clock, mailer: RecordingMailer
) -> None:
    p = pending_account(core, clock, "cat")
    code = mailer.code()
    p.send("VERIFY cat " + "x" * 400)  # over the input bound: hashed as nothing, wrong
    p.send("VERIFY cat :" + code.lower() + " ")  # compared stripped and upper-cased
    got = p.take()
    assert fails(got) == [["VERIFY", "INVALID_CODE", "cat", "That code is not right"]]
    assert one(got, "VERIFY").params[:2] == ["SUCCESS", "cat"]


def test_a_failed_mail_fails_register_and_leaves_no_account(
    core: ServerCore, clock: Clock, mailer: RecordingMailer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="relaychat")
    mailer.down = True
    p = Peer(core, clock)
    p.register("dan")
    p.send(f"REGISTER * dan@example.org :{PW}")
    assert fails(p.take()) == [
        [
            "REGISTER",
            "TEMPORARILY_UNAVAILABLE",
            "dan",
            "The verification email could not be sent; try again later",
        ]
    ]
    assert core.store.get_account("dan") is None  # type: ignore[union-attr]
    assert "dan" not in core.account_names
    [record] = caplog.records
    assert "localhost:25: connection refused" in record.getMessage()


def test_verify_of_an_unknown_or_verified_account_and_while_logged_in(
    core: ServerCore, clock: Clock, mailer: RecordingMailer
) -> None:
    p = pending_account(core, clock, "eve")
    p.send("VERIFY nobody ABCDEFGHJK")
    assert fails(p.take())[0][1:3] == ["INVALID_CODE", "nobody"]
    p.send(f"VERIFY eve {mailer.code()}")
    p.take()
    p.send(f"VERIFY eve {mailer.code()}")
    assert fails(p.take())[0][1:3] == ["ALREADY_AUTHENTICATED", "eve"]
    q = Peer(core, clock)
    q.register("fred")
    q.send(f"VERIFY eve {mailer.code()}")
    assert fails(q.take())[0][3] == "No verification is pending for that account"


def test_registering_the_name_of_a_pending_account_is_account_exists(
    core: ServerCore, clock: Clock, mailer: RecordingMailer
) -> None:
    pending_account(core, clock, "gil")
    p = Peer(core, clock)
    p.register("other")
    p.send(f"REGISTER gil gil@example.org :{PW}")
    assert fails(p.take())[0][:3] == ["REGISTER", "ACCOUNT_EXISTS", "gil"]
    assert len(mailer.sent) == 1  # no mail for a taken name


def test_too_many_wrong_codes(core: ServerCore, clock: Clock, mailer: RecordingMailer) -> None:
    p = pending_account(core, clock, "hal")
    code = mailer.code()
    for _ in range(2):
        p.send("VERIFY hal 2345678923")
    p.send("VERIFY hal 2345678923")
    p.send(f"VERIFY hal {code}")
    assert [f[3] for f in fails(p.take())] == [
        "That code is not right",
        "That code is not right",
        "Too many wrong codes; register again",
        "No verification is pending for that account",
    ]
