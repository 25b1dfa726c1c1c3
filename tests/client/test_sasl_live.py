"""The client library against relaychat's own server (both engines): register an
account with draft/account-registration, then log in with SASL, SCRAM-SHA-256 and
PLAIN, and be refused with a wrong password."""

from __future__ import annotations

from typing import Any

import pytest

from relaychat.client import AuthenticationFailed, connect
from relaychat.protocol.sasl_client import SaslCredentials

HOST = "127.0.0.1"
CAPS = ("batch", "labeled-response", "message-tags", "draft/account-registration")


def test_register_then_log_in_with_each_mechanism(irc_server: Any) -> None:
    with connect(HOST, irc_server.port, "alice", caps=CAPS) as conn:
        reply = conn.register_account("correct horse battery")
        assert reply.error is None, reply.messages
        assert conn.account == "alice" or any(m.command == "900" for m in reply.messages)
    for mechanism in ("SCRAM-SHA-256", "PLAIN"):
        creds = SaslCredentials("alice", "correct horse battery")
        with connect(
            HOST, irc_server.port, "alice2", sasl=creds, sasl_mechanisms=(mechanism,)
        ) as conn:
            assert conn.account == "alice", mechanism
            whois = conn.request("WHOIS", "alice2") if conn.supports_labels else None
            if whois is not None:
                assert any(m.command == "330" and m.params[2] == "alice" for m in whois.messages)


def test_a_wrong_password_fails_the_connect(irc_server: Any) -> None:
    with connect(HOST, irc_server.port, "bob", caps=CAPS) as conn:
        assert conn.register_account("the right one").error is None
    with pytest.raises(AuthenticationFailed) as failed:
        connect(HOST, irc_server.port, "bob2", sasl=SaslCredentials("bob", "the wrong one"))
    assert "the wrong one" not in str(failed.value)
    assert failed.value.numeric == "904"
