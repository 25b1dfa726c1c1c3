"""JOIN, PART, TOPIC, NAMES, LIST, KICK, INVITE in the core (no sockets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relaychat.protocol import numerics as N

Peer = Any
Connect = Callable[..., Peer]


def cmds(peer: Peer) -> list[str]:
    return [m.command for m in peer.take()]


def pair(connect: Connect, channel: str = "#c") -> tuple[Peer, Peer]:
    a, b = connect("alice"), connect("bob")
    a.send(f"JOIN {channel}")
    b.send(f"JOIN {channel}")
    a.take()
    b.take()
    return a, b


def test_first_joiner_is_op_and_gets_join_names_end(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #Chan")
    got = a.take()
    assert [m.command for m in got] == ["JOIN", N.RPL_NAMREPLY, N.RPL_ENDOFNAMES]
    assert got[0].params == ["#Chan"]
    assert got[1].params[-1] == "@alice"


def test_join_is_broadcast_and_names_lists_everyone(connect: Connect) -> None:
    a, b = pair(connect)
    c = connect("carol")
    c.send("JOIN #C")  # channel names fold case
    assert a.take()[0].source == "carol!~u@127.0.0.1"
    names = [m for m in c.take() if m.command == N.RPL_NAMREPLY]
    assert set(names[0].params[-1].split()) == {"@alice", "bob", "carol"}


def test_join_several_channels_with_keys(connect: Connect) -> None:
    a, b = connect("alice"), connect("bob")
    a.send("JOIN #k1,#k2")
    a.send("MODE #k1 +k one")
    a.send("MODE #k2 +k two")
    a.take()
    b.send("JOIN #k1,#k2 one,wrong")
    got = b.take()
    assert [m.command for m in got] == [
        "JOIN",
        N.RPL_NAMREPLY,
        N.RPL_ENDOFNAMES,
        N.ERR_BADCHANNELKEY,
    ]


def test_join_0_parts_every_channel(connect: Connect) -> None:
    a, b = pair(connect, "#x")
    a.send("JOIN #y")
    a.take()
    a.send("JOIN 0")
    assert [m.command for m in a.take()] == ["PART", "PART"]
    assert a.user.channels == {}
    assert b.take()[0].command == "PART"


def test_join_bad_channel_name_is_403(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN nohash")
    a.send("JOIN #" + "x" * 60)
    assert cmds(a) == [N.ERR_NOSUCHCHANNEL, N.ERR_NOSUCHCHANNEL]


def test_join_more_than_chanlimit_is_405(make_core: Any, clock: Any) -> None:
    from coreharness import Peer as PeerCls

    core = make_core(chanlimit=2)
    a = PeerCls(core, clock)
    a.register("alice")
    a.send("JOIN #a,#b,#c")
    assert [m.command for m in a.take()][-1] == N.ERR_TOOMANYCHANNELS


def test_part_broadcasts_with_reason_and_empty_channel_disappears(connect: Connect) -> None:
    a, b = pair(connect)
    a.send("PART #c :bye now")
    msg = b.take()[0]
    assert (msg.command, msg.params) == ("PART", ["#c", "bye now"])
    b.send("PART #c")
    assert a.core.registry.channels == {}


def test_part_errors(connect: Connect) -> None:
    a, _ = pair(connect)
    c = connect("carol")
    c.send("PART #c")
    c.send("PART #nowhere")
    assert cmds(c) == [N.ERR_NOTONCHANNEL, N.ERR_NOSUCHCHANNEL]


def test_topic_set_query_and_protection(connect: Connect) -> None:
    a, b = pair(connect)
    a.send("TOPIC #c :hello world")
    for p in (a, b):
        msg = p.take()[0]
        assert (msg.command, msg.params) == ("TOPIC", ["#c", "hello world"])
    b.send("TOPIC #c")
    got = b.take()
    assert [m.command for m in got] == [N.RPL_TOPIC, N.RPL_TOPICWHOTIME]
    assert got[0].params[-1] == "hello world"
    b.send("TOPIC #c :mine")  # +t by default: only ops
    assert cmds(b) == [N.ERR_CHANOPRIVSNEEDED]
    a.send("MODE #c -t")
    a.take()
    b.take()
    b.send("TOPIC #c :mine")
    assert a.take()[0].params[-1] == "mine"


def test_topic_clear_and_notopic(connect: Connect) -> None:
    a, _ = pair(connect)
    a.send("TOPIC #c :")
    a.take()
    a.send("TOPIC #c")
    assert cmds(a) == [N.RPL_NOTOPIC]


def test_topic_sent_on_join(connect: Connect) -> None:
    a, _ = pair(connect)
    a.send("TOPIC #c :welcome")
    c = connect("carol")
    c.send("JOIN #c")
    assert [m.command for m in c.take()] == [
        "JOIN",
        N.RPL_TOPIC,
        N.RPL_TOPICWHOTIME,
        N.RPL_NAMREPLY,
        N.RPL_ENDOFNAMES,
    ]


def test_names_with_multi_prefix_and_userhost_in_names(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    a.send("MODE #c +v alice")
    b = connect("bob", caps=("multi-prefix", "userhost-in-names"))
    b.send("JOIN #c")
    names = [m for m in b.take() if m.command == N.RPL_NAMREPLY][0].params[-1].split()
    assert "@+alice!~u@127.0.0.1" in names
    c = connect("carol")
    c.send("NAMES #c")
    names = [m for m in c.take() if m.command == N.RPL_NAMREPLY][0].params[-1].split()
    assert "@alice" in names


def test_names_of_secret_channel_is_hidden_from_outsiders(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #s")
    a.send("MODE #s +s")
    c = connect("carol")
    c.send("NAMES #s")
    assert cmds(c) == [N.RPL_ENDOFNAMES]


def test_names_splits_long_lists_into_several_lines(connect: Connect) -> None:
    peers = [connect(f"user{i:03d}xxxxxxxxxxxxx") for i in range(60)]
    for p in peers:
        p.send("JOIN #big")
    peers[0].take()
    peers[0].send("NAMES #big")
    got = peers[0].take()
    lines = [m for m in got if m.command == N.RPL_NAMREPLY]
    assert len(lines) > 1
    assert sum(len(m.params[-1].split()) for m in lines) == 60
    assert all(len(m.serialize()) <= 510 for m in lines)


def test_list_shows_channels_with_counts_and_filters(connect: Connect) -> None:
    a, _ = pair(connect, "#two")
    a.send("JOIN #one")
    a.send("TOPIC #one :the topic")
    a.take()
    a.send("LIST")
    got = a.take()
    assert got[0].command == N.RPL_LISTSTART and got[-1].command == N.RPL_LISTEND
    rows = {m.params[1]: m for m in got if m.command == N.RPL_LIST}
    assert rows["#two"].params[2] == "2" and rows["#one"].params[2] == "1"
    assert rows["#one"].params[3].endswith("the topic")
    a.send("LIST >1")
    assert [m.params[1] for m in a.take() if m.command == N.RPL_LIST] == ["#two"]
    a.send("LIST #o*")
    assert [m.params[1] for m in a.take() if m.command == N.RPL_LIST] == ["#one"]
    a.send("LIST !#o*")  # ELIST N: a negated mask
    assert [m.params[1] for m in a.take() if m.command == N.RPL_LIST] == ["#two"]
    a.send("LIST C<5")  # created less than 5 minutes ago: both
    assert len([m for m in a.take() if m.command == N.RPL_LIST]) == 2


def test_list_hides_secret_channels(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #s")
    a.send("MODE #s +s")
    c = connect("carol")
    c.send("LIST")
    assert [m.command for m in c.take()] == [N.RPL_LISTSTART, N.RPL_LISTEND]


def test_kick_by_op_removes_the_user(connect: Connect) -> None:
    a, b = pair(connect)
    a.send("KICK #c bob :behave")
    for p in (a, b):
        msg = p.take()[0]
        assert (msg.command, msg.params) == ("KICK", ["#c", "bob", "behave"])
    assert b.user.channels == {}


def test_kick_errors(connect: Connect) -> None:
    a, b = pair(connect)
    b.send("KICK #c alice")
    a.send("KICK #c nobody")
    a.send("KICK #nope bob")
    assert cmds(b) == [N.ERR_CHANOPRIVSNEEDED]
    assert cmds(a) == [N.ERR_USERNOTINCHANNEL, N.ERR_NOSUCHCHANNEL]


def test_invite_lets_a_user_into_an_invite_only_channel(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #priv")
    a.send("MODE #priv +i")
    a.take()
    b = connect("bob", caps=())
    b.send("JOIN #priv")
    assert cmds(b) == [N.ERR_INVITEONLYCHAN]
    a.send("INVITE bob #priv")
    assert cmds(a) == [N.RPL_INVITING]
    inv = b.take()[0]
    assert (inv.command, inv.params) == ("INVITE", ["bob", "#priv"])
    b.send("JOIN #priv")
    assert cmds(b)[0] == "JOIN"


def test_invite_notify_tells_other_members(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    w = connect("watcher", caps=("invite-notify",))
    w.send("JOIN #c")
    w.take()
    connect("bob")
    a.send("INVITE bob #c")
    msg = w.take()[0]
    assert (msg.command, msg.params) == ("INVITE", ["bob", "#c"])


def test_invite_errors(connect: Connect) -> None:
    a, b = pair(connect)
    a.send("INVITE nobody #c")
    a.send("INVITE bob #c")
    c = connect("carol")
    c.send("INVITE bob #c")
    assert cmds(a) == [N.ERR_NOSUCHNICK, N.ERR_USERONCHANNEL]
    assert cmds(c) == [N.ERR_NOTONCHANNEL]


def test_banned_user_cannot_join_unless_excepted(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    a.send("MODE #c +b bob!*@*")
    b = connect("bob")
    b.send("JOIN #c")
    assert cmds(b) == [N.ERR_BANNEDFROMCHAN]
    a.send("MODE #c +e *!~u@127.0.0.1")
    b.send("JOIN #c")
    assert cmds(b)[0] == "JOIN"


def test_limit_mode_keeps_extra_users_out(connect: Connect) -> None:
    a = connect("alice")
    a.send("JOIN #c")
    a.send("MODE #c +l 1")
    b = connect("bob")
    b.send("JOIN #c")
    assert cmds(b) == [N.ERR_CHANNELISFULL]
