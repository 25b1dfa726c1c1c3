"""Accounts over real sockets, for both engines: REGISTER, NickServ, SASL (PLAIN,
SCRAM-SHA-256), the account on messages (account-tag) and in WHOIS, and
accounts kept in the SQLite file across a restart."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ircutil import RawClient, make_config
from relaychat.config import Config, StoreConfig
from relaychat.protocol import numerics as N
from scramclient import ScramClient

Connect = Callable[..., RawClient]
PW = "sockets-password"


@pytest.fixture
def file_server(
    engine: str, tmp_path: Path, run_config: Callable[[Config], Any]
) -> Callable[[], Any]:
    """``file_server()`` -> a server whose store is ``tmp_path/accounts.db``;
    each call starts a new one on the same file (stop the previous first)."""
    cfg = dataclasses.replace(
        make_config(engine), store=StoreConfig(path=str(tmp_path / "accounts.db"))
    )
    return lambda: run_config(cfg)


def test_register_then_the_account_tags_messages_and_shows_in_whois(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    alice = connect(irc_server, "alice")
    bob = connect(irc_server, "bob", caps=("account-tag", "message-tags"))
    alice.send(f"REGISTER * * :{PW}")
    reg = alice.expect("REGISTER")
    assert reg.params == ["SUCCESS", "alice", "Account created"]
    assert alice.expect(N.RPL_LOGGEDIN).params[2] == "alice"
    alice.send("PRIVMSG bob :hi")
    msg = bob.expect("PRIVMSG")
    assert msg.tags.get("account") == "alice"
    bob.send("WHOIS alice")
    whois = bob.take_until(N.RPL_ENDOFWHOIS)
    assert [m.params[1:] for m in whois if m.command == N.RPL_WHOISACCOUNT] == [
        ["alice", "alice", "is logged in as"]
    ]
    bob.send(f"REGISTER alice * :{PW}")
    assert bob.expect("FAIL").params[:3] == ["REGISTER", "ACCOUNT_EXISTS", "alice"]


def test_nickserv_identify_and_a_wrong_password(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    owner = connect(irc_server, "carol")
    owner.send(f"PRIVMSG NickServ :REGISTER {PW}")
    notice = owner.expect("NOTICE")
    assert notice.source == "NickServ!NickServ@services."
    assert notice.params[1] == "Account carol registered"
    other = connect(irc_server, "dave")
    other.send("PRIVMSG NickServ :IDENTIFY carol not-the-password")
    assert other.expect("NOTICE").params[1] == "Invalid account or password"
    # held for the backoff (1 s), then checked: no sleep here, the server waits
    other.send(f"PRIVMSG NickServ :IDENTIFY carol {PW}")
    assert other.expect("NOTICE").params[1] == "You are now identified for carol"
    assert other.expect(N.RPL_LOGGEDIN).params[2] == "carol"


def test_accounts_survive_a_restart(
    file_server: Callable[[], Any], connect: Connect, tmp_path: Path
) -> None:
    first = file_server()
    c = connect(first, "erin")
    c.send(f"REGISTER * * :{PW}")
    assert c.expect("REGISTER").params[0] == "SUCCESS"  # answered after the commit
    c.close()
    first.stop()
    assert (tmp_path / "accounts.db").exists()
    second = file_server()
    d = connect(second, "frank")
    d.send(f"PRIVMSG NickServ :IDENTIFY erin {PW}")
    assert d.expect("NOTICE").params[1] == "You are now identified for erin"


def _authenticate(c: RawClient, payload: bytes) -> None:
    text = base64.b64encode(payload).decode()
    chunks = [text[i : i + 400] for i in range(0, len(text), 400)]
    if not chunks or len(chunks[-1]) == 400:
        chunks.append("+")
    for chunk in chunks:
        c.send(f"AUTHENTICATE {chunk}")


def _challenge(c: RawClient) -> bytes:
    parts = []
    while True:
        chunk = c.expect("AUTHENTICATE").params[0]
        if chunk != "+":
            parts.append(chunk)
        if len(chunk) < 400:
            return base64.b64decode("".join(parts))


def _start_sasl(c: RawClient, nick: str, mechanism: str) -> None:
    c.send("CAP LS 302")
    c.send("CAP REQ :sasl")
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :SASL")
    c.expect(lambda m: m.command == "CAP" and m.params[1] == "ACK")
    c.send(f"AUTHENTICATE {mechanism}")
    assert c.expect("AUTHENTICATE").params == ["+"]


def _make_account(server: Any, connect: Connect, name: str) -> None:
    """Register ``name`` from a connection that then quits (a SASL login to an
    account whose user is online would attach to that user: multiclient)."""
    c = connect(server, name + "reg")
    c.send(f"REGISTER {name} * :{PW}")
    assert c.expect("REGISTER").params[0] == "SUCCESS"
    c.send("QUIT")
    c.wait_closed()


def test_sasl_plain_before_registration(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    _make_account(irc_server, connect, "gwen")
    c = connect(irc_server)
    _start_sasl(c, "gwen", "PLAIN")
    _authenticate(c, b"\x00gwen\x00" + PW.encode())
    assert c.expect(N.RPL_LOGGEDIN).params[2] == "gwen"
    c.expect(N.RPL_SASLSUCCESS)
    c.send("CAP END")
    c.expect("001")
    c.send("WHOIS gwen")
    assert [m.params[2] for m in c.take_until(N.RPL_ENDOFWHOIS) if m.command == "330"] == ["gwen"]


def test_sasl_plain_wrong_password_is_904(irc_server: Any, connect: Connect) -> None:
    _make_account(irc_server, connect, "hal")
    c = connect(irc_server)
    _start_sasl(c, "hal", "PLAIN")
    _authenticate(c, b"\x00hal\x00wrong-password")
    c.expect(N.ERR_SASLFAIL)
    c.send("AUTHENTICATE *")
    c.expect(N.ERR_SASLABORTED)


def test_sasl_scram_sha_256(irc_server: Any, connect: Connect, no_server_errors: None) -> None:
    _make_account(irc_server, connect, "ivy")
    c = connect(irc_server)
    client = ScramClient("ivy", PW)
    _start_sasl(c, "ivy", "SCRAM-SHA-256")
    _authenticate(c, client.first())
    server_first = _challenge(c)
    _authenticate(c, client.final(server_first))
    assert client.check(_challenge(c))
    _authenticate(c, b"")
    assert c.expect(N.RPL_LOGGEDIN).params[2] == "ivy"
    c.expect(N.RPL_SASLSUCCESS)
    c.send("CAP END")
    c.expect("001")
