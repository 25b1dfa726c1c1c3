"""ChanServ over real sockets, for both engines: registration and its refusals,
access lists and auto-modes, hostile input, and a registered channel's topic,
modes, key and bans kept across a restart of ``relaychat serve`` (a real process
on a store file, stopped with SIGTERM)."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ircutil import RawClient, Server, wait_for
from relaychat.protocol import numerics as N
from relaychat.protocol.message import Message

Connect = Callable[..., RawClient]
CS = "ChanServ!ChanServ@services."
PW = "sockets-password"


def cs_says(c: RawClient, text: str) -> str:
    """The next notice from ChanServ to ``c``."""
    m = c.expect(lambda m: m.command == "NOTICE" and m.source == CS)
    got: str = m.params[1]
    assert got == text, got
    return got


def chanserv_mode(c: RawClient, params: list[str]) -> Message:
    return c.expect(lambda m: m.command == "MODE" and m.source == CS and m.params == params)


def account(c: RawClient) -> None:
    """Register an account named like ``c``'s nick (logs it in)."""
    c.send(f"REGISTER * * :{PW}")
    c.expect(N.RPL_LOGGEDIN)


def test_register_op_and_access_over_sockets(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    alice = connect(irc_server, "alice")
    account(alice)
    alice.join("#reg")
    alice.send("PRIVMSG ChanServ :REGISTER #reg")
    cs_says(alice, "#reg is now registered to alice")
    bob = connect(irc_server, "bob")
    account(bob)
    alice.send("PRIVMSG ChanServ :ACCESS #reg ADD bob voice")
    cs_says(alice, "bob now has voice access on #reg")
    bob.send("JOIN #reg")
    chanserv_mode(bob, ["#reg", "+v", "bob"])
    chanserv_mode(alice, ["#reg", "+v", "bob"])  # every member sees it
    alice.send("PRIVMSG ChanServ :OP #reg bob")
    chanserv_mode(bob, ["#reg", "+o", "bob"])
    alice.send("PRIVMSG ChanServ :INFO #reg")
    cs_says(alice, "Information on #reg:")
    cs_says(alice, "Founder: alice")


def test_non_members_and_unregistered_users_cannot_register_drop_or_op(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    alice = connect(irc_server, "alice")
    account(alice)
    alice.join("#own")
    alice.send("PRIVMSG ChanServ :REGISTER #own")
    cs_says(alice, "#own is now registered to alice")
    anon = connect(irc_server, "anon")  # no account
    anon.join("#free")
    anon.send("PRIVMSG ChanServ :REGISTER #free")
    cs_says(anon, "You must be logged in to an account to register a channel")
    outsider = connect(irc_server, "outsider")
    account(outsider)
    outsider.send("PRIVMSG ChanServ :REGISTER #free")  # not a member
    cs_says(outsider, "You are not on #free")
    for c in (anon, outsider):
        c.send("PRIVMSG ChanServ :DROP #own")
        cs_says(c, "Access denied: only the founder of #own may drop it")
        c.send("PRIVMSG ChanServ :OP #own")
        cs_says(c, "Access denied: you have no op access on #own")
    anon.send("JOIN #own")
    joined = anon.take_until(lambda m: m.command == N.RPL_ENDOFNAMES)
    assert not [m for m in joined if m.command == "MODE"]
    assert irc_server.core.find_channel("#own").registration.founder == "alice"


def test_hostile_chanserv_input_is_answered_only_to_the_sender(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    alice = connect(irc_server, "alice")
    account(alice)
    alice.join("#h")
    alice.send("PRIVMSG ChanServ :REGISTER #h")
    cs_says(alice, "#h is now registered to alice")
    bystander = connect(irc_server, "bystander")
    bystander.join("#h")
    mallory = connect(irc_server, "mallory")
    mallory.join("#h")
    alice.sync()
    bystander.sync()
    garbage = [
        "REGISTER #" + "h" * 480,
        "ACCESS #h ADD " + "a" * 470 + " op",
        "OP #h " + "\x01\x02\x03" * 100,
        "\xff\xfe" * 100,
        "DEOP #h alice",
        "DROP #h",
        "ACCESS #h DEL alice",
        "ACCESS #h LIST",
        "INFO #h extra words here",
    ]
    for line in garbage:
        mallory.send(f"PRIVMSG ChanServ :{line}".encode("utf-8", "surrogateescape")[:510] + b"\r\n")
    got = mallory.sync()
    notices = [m for m in got if m.command == "NOTICE"]
    assert len(notices) >= len(garbage) - 1, got
    assert all(m.source == CS and len(m.params[1]) < 200 for m in notices), got
    assert not [m for m in got if m.command == "MODE"]
    assert bystander.sync() == []
    assert alice.sync() == []
    chan = irc_server.core.find_channel("#h")
    assert chan.registration.founder == "alice"
    assert chan.is_op(irc_server.core.find_user("alice"))


# ------------------------------------------------------- restart, a real process
def _sasl_plain(port: int, nick: str) -> RawClient:
    c = RawClient(port)
    assert c.sasl_plain(nick, nick, PW) == N.RPL_SASLSUCCESS
    c.send("CAP END")
    c.expect("376")
    return c


def test_a_registered_channel_survives_a_restart_of_the_process(
    spawn: Callable[..., Server],
    engine: str,
    tmp_path: Path,
) -> None:
    db = tmp_path / "chanserv.db"
    conf = tmp_path / "chanserv.toml"
    conf.write_text(
        f'[server]\nlog_level = "WARNING"\n\n[accounts]\nregister_limit = 0\n\n'
        f'[store]\npath = "{db}"\n'
    )

    def stored() -> tuple[object, ...] | None:
        conn = sqlite3.connect(db)
        try:
            row = conn.execute(
                "SELECT founder, topic, modes, chan_key FROM registered_channels"
            ).fetchone()
            bans = conn.execute("SELECT mask FROM channel_lists WHERE letter = 'b'").fetchall()
            return None if row is None else (*row, [b for (b,) in bans])
        finally:
            conn.close()

    server = spawn(engine, "--config", str(conf))
    proc, port = server.proc, server.port
    founder = RawClient(port)
    founder.register("founder")
    try:
        account(founder)
        founder.join("#keep")
        founder.send("PRIVMSG ChanServ :REGISTER #keep")
        cs_says(founder, "#keep is now registered to founder")
        founder.send("TOPIC #keep :kept across restarts")
        founder.send("MODE #keep +mk sesame")
        founder.send("MODE #keep +b *!*@banned.example")
        founder.sync()
        # the state writes are asynchronous: wait until they are in the file
        wait_for(
            lambda: (
                stored()
                == ("founder", "kept across restarts", "mnt", "sesame", ["*!*@banned.example"])
            )
        )
    finally:
        founder.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0

    server = spawn(engine, "--config", str(conf))
    proc, port = server.proc, server.port
    newcomer = RawClient(port)
    newcomer.register("newcomer")
    try:
        newcomer.send("JOIN #keep")
        newcomer.expect(N.ERR_BADCHANNELKEY)  # the key came back
        newcomer.send("JOIN #keep sesame")
        got = newcomer.take_until(lambda m: m.command == N.RPL_ENDOFNAMES)
        assert [m.params[-1] for m in got if m.command == N.RPL_TOPIC] == ["kept across restarts"]
        assert not [m for m in got if m.command == "MODE"]  # first in: no ops
        assert [m.params[-1] for m in got if m.command == N.RPL_NAMREPLY] == ["newcomer"]
        newcomer.send("MODE #keep")
        assert newcomer.expect(N.RPL_CHANNELMODEIS).params[2:] == ["+mntk", "sesame"]
        newcomer.send("MODE #keep +b")
        assert newcomer.expect(N.RPL_BANLIST).params[2] == "*!*@banned.example"
        newcomer.expect(N.RPL_ENDOFBANLIST)
        # the founder logs in with SASL, joins, and ChanServ ops it
        founder = _sasl_plain(port, "founder")
        founder.send("JOIN #keep sesame")
        chanserv_mode(founder, ["#keep", "+o", "founder"])
        chanserv_mode(newcomer, ["#keep", "+o", "founder"])
        # and a second session logged in with NickServ IDENTIFY after joining
        again = RawClient(port)
        again.register("again")
        again.send("JOIN #keep sesame")
        again.expect(lambda m: m.command == N.RPL_ENDOFNAMES)
        again.send(f"PRIVMSG NickServ :IDENTIFY founder {PW}")
        chanserv_mode(again, ["#keep", "+o", "again"])
        again.close()
        founder.close()
    finally:
        newcomer.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_state_changed_just_before_sigterm_is_written(
    spawn: Callable[..., Server],
    engine: str,
    tmp_path: Path,
) -> None:
    """A registered channel's change acknowledged (relayed) right before a
    SIGTERM is in the file after the process exits."""
    db = tmp_path / "chanserv.db"
    conf = tmp_path / "chanserv.toml"
    conf.write_text(f'[server]\nlog_level = "WARNING"\n\n[store]\npath = "{db}"\n')
    server = spawn(engine, "--config", str(conf))
    proc, port = server.proc, server.port
    c = RawClient(port)
    c.register("founder")
    try:
        account(c)
        c.join("#last")
        c.send("PRIVMSG ChanServ :REGISTER #last")
        cs_says(c, "#last is now registered to founder")
        c.send(b"".join(f"TOPIC #last :topic {i}\r\n".encode() for i in range(20)))
        c.expect(lambda m: m.command == "TOPIC" and m.params[-1] == "topic 19")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        c.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT topic FROM registered_channels").fetchall() == [("topic 19",)]
    finally:
        conn.close()
