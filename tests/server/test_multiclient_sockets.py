"""Multiclient and always-on accounts over real sockets, for both engines: two
connections logged in to one account share one nick and its channels, a third
client sees one of everything; one session's QUIT is invisible; an always-on
user stays (NAMES, 433) and a new login re-attaches; sessions are bounded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from ircutil import RawClient, make_config, wait_for
from relaychat.config import AccountsConfig, Config
from relaychat.protocol import numerics as N
from relaychat.protocol.message import Message

Connect = Callable[..., RawClient]
PW = "multiclient-sockets-pw"


@pytest.fixture
def server(engine: str, run_config: Callable[[Config], Any]) -> Callable[..., Any]:
    """``server(**accounts)`` -> a running server with those ``[accounts]`` keys."""

    def start(**accounts: Any) -> Any:
        return run_config(
            dataclasses.replace(make_config(engine), accounts=AccountsConfig(**accounts))
        )

    return start


def make_account(srv: Any, connect: Connect, name: str) -> None:
    """``name`` registered from a connection with that nick, which then quits."""
    c = connect(srv, name)
    c.send(f"REGISTER {name} * :{PW}")
    assert c.expect("REGISTER").params[0] == "SUCCESS"
    c.send("QUIT")
    c.wait_closed()


def login(srv: Any, connect: Connect, account: str, nick: str, caps: str = "") -> RawClient:
    """A connection logged in to ``account`` with SASL PLAIN during registration;
    returns once the welcome burst is in (001 to 376), not consumed past that."""
    c = connect(srv)
    assert c.sasl_plain(nick, account, PW, tuple(caps.split())) == N.RPL_SASLSUCCESS
    c.send("CAP END")
    return c


def burst(c: RawClient) -> list[Message]:
    """Everything up to the end of the welcome and what the server sends with it."""
    return c.take_until("001") + c.sync("burst")


def commands(msgs: list[Message], command: str) -> list[Message]:
    return [m for m in msgs if m.command == command]


def test_two_logins_share_the_nick_and_channel_and_a_third_client_sees_one_of_everything(
    server: Callable[..., Any], connect: Connect, no_server_errors: None
) -> None:
    srv = server()
    make_account(srv, connect, "alice")
    s1 = login(srv, connect, "alice", "alice")
    burst(s1)
    s1.join("#c")
    bob = connect(srv, "bob")
    bob.join("#c")
    s1.expect("JOIN")
    s2 = login(srv, connect, "alice", "somebody")
    got = burst(s2)
    assert commands(got, "001")[0].params[0] == "alice"
    assert [m.params for m in commands(got, "JOIN")] == [["#c"]]
    assert "bob" in commands(got, N.RPL_NAMREPLY)[0].params[-1]
    # bob saw no JOIN, no NICK; one message from session 1 reaches bob and session 2 once
    s1.send("PRIVMSG #c :hello from 1")
    s1.send("PRIVMSG bob :private from 1")
    assert commands(s1.sync(), "PRIVMSG") == []  # handled: the others' copies are queued
    seen = bob.sync()
    assert [m.command for m in seen] == ["PRIVMSG", "PRIVMSG"]
    assert [m.params for m in commands(s2.sync(), "PRIVMSG")] == [
        ["#c", "hello from 1"],
        ["bob", "private from 1"],
    ]
    bob.send("PRIVMSG alice :to both")
    bob.sync()
    assert len(commands(s1.sync(), "PRIVMSG")) == 1
    assert len(commands(s2.sync(), "PRIVMSG")) == 1
    # one session's QUIT is invisible; the last one is a normal QUIT
    s1.send("QUIT :phone off")
    s1.wait_closed()
    s2.send("PRIVMSG #c :still here")
    s2.sync()
    assert [m.command for m in bob.sync()] == ["PRIVMSG"]
    s2.close()
    quit_ = bob.expect("QUIT")
    assert quit_.source is not None and quit_.source.startswith("alice!")


def test_sessions_per_account_are_bounded(
    server: Callable[..., Any], connect: Connect, no_server_errors: None
) -> None:
    srv = server(max_sessions=3)
    make_account(srv, connect, "carol")
    for i in range(3):
        burst(login(srv, connect, "carol", f"c{i}"))
    extra = login(srv, connect, "carol", "c9")
    err = extra.expect("ERROR")
    assert "Too many connections for account carol" in err.params[0]
    extra.wait_closed()
    watcher = connect(srv, "watcher")
    watcher.send("WHOIS c0")  # the nick of the first login
    text = [m.params[-1] for m in watcher.take_until(N.RPL_ENDOFWHOIS)]
    assert "is connected with 3 connections" in text


def test_always_on_user_stays_holds_its_nick_and_reattaches(
    server: Callable[..., Any], connect: Connect, no_server_errors: None
) -> None:
    srv = server(always_on="true")
    make_account(srv, connect, "dora")  # always-on: the registering user stays
    s1 = login(srv, connect, "dora", "dora")
    burst(s1)
    s1.join("#c")
    bob = connect(srv, "bob")
    bob.join("#c")
    s1.close()
    seen: list[Message] = []

    def detached() -> bool:
        bob.send("WHOIS dora")
        seen.extend(bob.take_until(N.RPL_ENDOFWHOIS))
        return any(m.params[-1] == "is always-on, not connected" for m in seen)

    wait_for(detached, what="the server to see the connection close")
    bob.send("NAMES #c")
    names = bob.take_until(N.RPL_ENDOFNAMES)
    assert "dora" in commands(names, N.RPL_NAMREPLY)[0].params[-1]
    assert all(m.command != "QUIT" for m in seen + names)
    other = connect(srv)
    other.send("NICK dora")
    assert other.expect(N.ERR_NICKNAMEINUSE).params[1] == "dora"
    s2 = login(srv, connect, "dora", "x")
    got = burst(s2)  # the attach happened before this sync's PONG
    assert commands(got, "001")[0].params[0] == "dora"
    assert [m.params for m in commands(got, "JOIN")] == [["#c"]]
    assert all(m.command not in ("JOIN", "QUIT", "NICK") for m in bob.sync())
