"""msgid, account and bot tags on events; CAP LS over several lines; CAP NEW and
CAP DEL when a REHASH changes what is offered (ircv3 message-ids, account-tag,
bot-mode, capability-negotiation, cap-notify)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from coreharness import Clock, Peer, new_core
from relaychat.config import Config, ServerConfig
from relaychat.protocol.caps import cap_lines
from relaychat.protocol.core import ServerCore

Connect = Callable[..., Peer]


def test_every_relayed_event_has_a_unique_msgid_for_message_tags_clients(
    connect: Connect,
) -> None:
    a = connect("alice")
    b = connect("bob", caps=("message-tags",))
    c = connect("carol")
    for p in (a, b, c):
        p.send("JOIN #c")
    b.take()
    a.send("PRIVMSG #c :one")
    a.send("NOTICE #c :two")
    a.send("PRIVMSG bob :three")
    a.send("TOPIC #c :four")
    a.send("MODE #c +v carol")
    a.send("KICK #c carol :five")
    a.send("NICK alicia")
    a.send("PART #c :six")
    got = b.take()
    assert [m.command for m in got] == [
        "PRIVMSG", "NOTICE", "PRIVMSG", "TOPIC", "MODE", "KICK", "NICK", "PART",
    ]  # fmt: skip
    ids = [m.tags["msgid"] for m in got]
    assert len(set(ids)) == len(ids) and all(ids)
    assert all("msgid" not in m.tags for m in c.take())  # no message-tags: no tags


def test_account_tag_names_the_senders_account(core: ServerCore, connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob", caps=("account-tag",))
    c = connect("carol", caps=("message-tags",))
    for p in (a, b, c):
        p.send("JOIN #c")
    b.take()
    c.take()
    a.send("PRIVMSG #c :anonymous")
    assert "account" not in b.take()[0].tags
    a.user.account = "Alice"  # what a login (the accounts issue) sets
    a.send("PRIVMSG #c :known")
    assert b.take()[0].tags == {"account": "Alice"}
    assert "account" not in c.take()[-1].tags  # message-tags alone does not carry it


def test_bot_tag_marks_a_bots_messages(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob", caps=("message-tags",))
    a.send("PRIVMSG bob :human")
    assert "bot" not in b.take()[0].tags
    a.user.modes = "B"
    a.send("PRIVMSG bob :beep")
    assert b.take()[0].tags["bot"] == ""


def test_cap_ls_302_is_split_over_lines_that_fit(core: ServerCore, clock: Clock) -> None:
    items = [f"vendor.example/cap-{i}={'x' * 30}" for i in range(40)]
    lines = cap_lines(":irc.relaychat.local CAP * LS ", items)
    assert len(lines) > 1
    assert all(len(line.encode()) + 2 <= 512 for line in lines)
    assert all(" LS * :" in line for line in lines[:-1]) and " LS :" in lines[-1]
    joined = " ".join(line.split(" :", 1)[1] for line in lines).split()
    assert joined == items


def _rehashable(clock: Clock, configs: list[Config]) -> ServerCore:
    return new_core(configs[0], clock, loader=lambda: configs[-1])


def test_rehash_sends_cap_del_and_new_to_cap_notify_clients(clock: Clock) -> None:
    from relaychat.config import OperConfig
    from relaychat.passwords import hash_password

    base = Config(opers={"op": OperConfig(password=hash_password("pw"), host="*")})
    configs = [base]
    core = _rehashable(clock, configs)
    notify = Peer(core, clock)
    notify.send("CAP LS 302")  # cap-notify implied
    notify.send("CAP REQ :echo-message")
    notify.send("CAP END")
    notify.send("NICK n")
    notify.send("USER u 0 * :N")
    old = Peer(core, clock)
    old.register("old")
    old.send("CAP REQ echo-message")  # never said CAP LS 302: no cap-notify
    op = Peer(core, clock)
    op.register("op")
    op.send("OPER op pw")
    for p in (notify, old, op):
        p.take()
    disabled = dataclasses.replace(
        base, server=dataclasses.replace(ServerConfig(), disabled_caps=("echo-message",))
    )
    configs.append(disabled)
    op.send("REHASH")
    dels = [m.params for m in notify.take() if m.command == "CAP"]
    assert dels == [["n", "DEL", "echo-message"]]
    assert [m for m in old.take() if m.command == "CAP"] == []
    for p in (notify, old):
        assert "echo-message" not in p.session.caps  # disabled for everyone
        p.send("CAP REQ echo-message")
        assert [m.params[1] for m in p.take() if m.command == "CAP"] == ["NAK"]
    configs.append(base)
    op.send("REHASH")
    news = [m.params for m in notify.take() if m.command == "CAP"]
    assert news == [["n", "NEW", "echo-message"]]
    op.send("REHASH")  # nothing changed: nothing sent
    assert [m for m in notify.take() if m.command == "CAP"] == []


def test_disabled_caps_must_name_real_capabilities() -> None:
    import pytest

    from relaychat.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="not a capability"):
        parse_config({"server": {"disabled_caps": ["no-such-cap"]}}, "x.toml")
    cfg = parse_config({"server": {"disabled_caps": ["labeled-response"]}}, "x.toml")
    assert cfg.server.disabled_caps == ("labeled-response",)
