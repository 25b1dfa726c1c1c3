"""Bot mode, chghost (with a real OPER), extended-join and no-implicit-names over
real sockets, for both engines."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ircutil import RawClient, make_config
from relaychat.config import OperConfig
from relaychat.passwords import hash_password
from relaychat.protocol import numerics as N
from relaychat.server.runner import start_in_thread

Connect = Callable[..., RawClient]


@pytest.fixture
def oper_server(engine: str) -> Iterator[Any]:
    """A server with an operator ``admin`` (password ``pw``, cheap hash)."""
    cfg = dataclasses.replace(
        make_config(engine), opers={"admin": OperConfig(hash_password("pw", n=2**10))}
    )
    handle = start_in_thread(cfg)
    yield handle
    handle.stop()


def test_bot_mode_shows_in_whois_and_who(irc_server: Any, connect: Connect) -> None:
    bot = connect(irc_server, "robo")
    alice = connect(irc_server, "alice")
    bot.send("MODE robo +B")
    assert bot.expect("MODE").params == ["robo", "+B"]
    alice.send("WHOIS robo")
    whois = alice.take_until(N.RPL_ENDOFWHOIS)
    assert [m.params for m in whois if m.command == N.RPL_WHOISBOT] == [
        ["alice", "robo", "is a Bot on RelayChat"]
    ]
    alice.send("WHO robo")
    (who,) = [m for m in alice.take_until(N.RPL_ENDOFWHO) if m.command == N.RPL_WHOREPLY]
    assert who.params[6] == "HB"


def test_chghost_with_and_without_the_capability(oper_server: Any, connect: Connect) -> None:
    op = connect(oper_server, "op")
    bob = connect(oper_server, "bob")
    modern = connect(oper_server, "modern", caps=("chghost",))
    legacy = connect(oper_server, "legacy")
    for c in (bob, modern, legacy):
        c.join("#c")
    for c in (bob, modern, legacy):
        c.sync()
    op.send("OPER admin pw")
    op.expect(N.RPL_YOUREOPER)
    op.send("CHGHOST bob ~b ckyard")
    notice = op.expect("NOTICE")
    assert notice.params[-1] == "CHGHOST: bob!~bob@127.0.0.1 is now bob!~b@ckyard"

    chg = modern.expect("CHGHOST")
    assert (chg.source, chg.params) == ("bob!~bob@127.0.0.1", ["~b", "ckyard"])
    got = [(m.source, m.command, m.params) for m in legacy.sync()]
    assert got == [
        ("bob!~bob@127.0.0.1", "QUIT", ["Changing hostname"]),
        ("bob!~b@ckyard", "JOIN", ["#c"]),
        (oper_server.core.server_name, "MODE", ["#c", "+o", "bob"]),
    ]
    assert bob.sync() == []  # no capability: bob is not told of its own QUIT
    bob.send("PRIVMSG #c :hi")
    assert modern.expect("PRIVMSG").source == "bob!~b@ckyard"


def test_chghost_needs_an_operator(irc_server: Any, connect: Connect) -> None:
    bob = connect(irc_server, "bob")
    bob.send("CHGHOST bob x y")
    assert bob.expect(lambda m: m.command.isdigit()).command == N.ERR_NOPRIVILEGES


def test_extended_join_and_no_implicit_names(irc_server: Any, connect: Connect) -> None:
    ext = connect(irc_server, "ext", caps=("extended-join", "no-implicit-names"))
    plain = connect(irc_server, "plain")
    ext.send("JOIN #c")
    assert [m.command for m in ext.sync()] == ["JOIN"]  # no 353/366
    plain.join("#c")
    join = ext.expect("JOIN")
    assert (join.source, join.params) == ("plain!~plain@127.0.0.1", ["#c", "*", "Test plain"])
    ext.send("NAMES #c")
    assert [m.command for m in ext.sync()] == [N.RPL_NAMREPLY, N.RPL_ENDOFNAMES]
    ext.send("PART #c")
    ext.sync()
    ext.send("JOIN #c")
    ext.sync()
    assert plain.expect(lambda m: m.command == "JOIN").params == ["#c"]
