"""MODE: user modes and channel modes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from coreharness import Peer, numerics, one, only
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.handlers.modes import normalize_mask

Connect = Callable[..., Peer]


def mode_lines(peer: Peer) -> list[list[str]]:
    return [m.params for m in only(peer.take(), "MODE")]


@pytest.fixture
def room(connect: Connect) -> tuple[Peer, Peer]:
    """alice (op) and bob (plain member) in #x; inboxes emptied."""
    a = connect("alice")
    b = connect("bob")
    a.send("JOIN #x")
    b.send("JOIN #x")
    a.take()
    b.take()
    return a, b


# -------------------------------------------------------------- user modes
def test_user_mode_query_is_221(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE alice")
    assert one(a.take(), N.RPL_UMODEIS).params == ["alice", "+"]


def test_user_mode_set_i_and_w_is_echoed_and_shown_by_221(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE alice +iw")
    m = one(a.take(), "MODE")
    assert (m.source, m.params) == ("alice!~u@127.0.0.1", ["alice", "+iw"])
    a.send("MODE alice")
    assert one(a.take(), N.RPL_UMODEIS).params[1] == "+iw"
    a.send("MODE alice -i")
    assert mode_lines(a) == [["alice", "-i"]]
    assert a.user.modes == "w"


def test_user_mode_no_op_change_sends_nothing(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE alice -i")
    assert a.take() == []


def test_user_mode_for_another_user_is_502(connect: Connect) -> None:
    a = connect("alice")
    connect("bob")
    a.send("MODE bob +i")
    assert numerics(a.take()) == [N.ERR_USERSDONTMATCH]
    a.send("MODE bob")
    assert numerics(a.take()) == [N.ERR_USERSDONTMATCH]


def test_user_mode_for_unknown_nick_is_401(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE ghost +i")
    assert numerics(a.take()) == [N.ERR_NOSUCHNICK]


def test_user_mode_unknown_flag_is_501_and_known_ones_still_apply(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE alice +iQ")
    msgs = a.take()
    assert one(msgs, N.ERR_UMODEUNKNOWNFLAG)
    assert one(msgs, "MODE").params == ["alice", "+i"]
    assert a.user.modes == "i"


def test_user_cannot_give_themselves_the_tls_mode(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE alice +Z")  # the server's to set, on a TLS connection
    assert a.take() == []
    assert "Z" not in a.user.modes


def test_user_cannot_give_themselves_oper(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE alice +o")
    assert a.take() == []
    assert "o" not in a.user.modes
    assert a.user.oper_name is None


def test_user_can_drop_oper_with_minus_o(connect: Connect) -> None:
    a = connect("alice")
    a.user.modes = "o"
    a.user.oper_name = "admin"
    a.send("MODE alice -o")
    assert mode_lines(a) == [["alice", "-o"]]
    assert a.user.oper_name is None
    assert a.user.modes == ""


def test_mode_without_params_is_461(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE")
    assert numerics(a.take()) == [N.ERR_NEEDMOREPARAMS]


# ---------------------------------------------------------- channel queries
def test_channel_mode_query_is_324_then_329(room: tuple[Peer, Peer], core: ServerCore) -> None:
    a, _ = room
    a.send("MODE #x")
    msgs = a.take()
    assert numerics(msgs) == [N.RPL_CHANNELMODEIS, N.RPL_CREATIONTIME]
    assert msgs[0].params == ["alice", "#x", "+nt"]
    chan = core.find_channel("#x")
    assert chan is not None
    assert msgs[1].params == ["alice", "#x", str(int(chan.created))]


def test_channel_key_and_limit_params_are_shown_to_members_only(
    room: tuple[Peer, Peer], connect: Connect
) -> None:
    a, b = room
    a.send("MODE #x +kl sesame 10")
    b.send("MODE #x")
    assert one(b.take(), N.RPL_CHANNELMODEIS).params == ["bob", "#x", "+ntkl", "sesame", "10"]
    outsider = connect("carol")
    outsider.send("MODE #X")
    assert one(outsider.take(), N.RPL_CHANNELMODEIS).params == ["carol", "#x", "+ntkl"]


def test_channel_mode_on_unknown_channel_is_403(connect: Connect) -> None:
    a = connect("alice")
    a.send("MODE #nowhere +m")
    assert numerics(a.take()) == [N.ERR_NOSUCHCHANNEL]


# ---------------------------------------------------------- channel changes
def test_op_sets_flags_and_every_member_sees_one_mode_line(room: tuple[Peer, Peer]) -> None:
    a, b = room
    a.send("MODE #x +ims-t")
    for p in (a, b):
        msgs = only(p.take(), "MODE")
        assert [(m.source, m.params) for m in msgs] == [("alice!~u@127.0.0.1", ["#x", "+ims-t"])]
    a.send("MODE #x")
    assert one(a.take(), N.RPL_CHANNELMODEIS).params[2] == "+imns"


def test_setting_a_mode_already_set_is_ignored(room: tuple[Peer, Peer]) -> None:
    a, b = room
    a.send("MODE #x +nt")
    assert a.take() == []
    assert b.take() == []


def test_non_op_change_is_482_once_and_changes_nothing(
    room: tuple[Peer, Peer], core: ServerCore
) -> None:
    a, b = room
    b.send("MODE #x +mi")
    assert numerics(b.take()) == [N.ERR_CHANOPRIVSNEEDED]
    assert a.take() == []
    chan = core.find_channel("#x")
    assert chan is not None and chan.modes == {"n", "t"}


def test_non_member_change_is_482(room: tuple[Peer, Peer], connect: Connect) -> None:
    outsider = connect("carol")
    outsider.send("MODE #x +m")
    assert numerics(outsider.take()) == [N.ERR_CHANOPRIVSNEEDED]


def test_unknown_channel_mode_is_472_and_others_still_apply(room: tuple[Peer, Peer]) -> None:
    a, _ = room
    a.send("MODE #x +Zm")
    msgs = a.take()
    assert one(msgs, N.ERR_UNKNOWNMODE).params[1] == "Z"
    assert one(msgs, "MODE").params == ["#x", "+m"]


def test_op_and_voice_prefix_modes(room: tuple[Peer, Peer], core: ServerCore) -> None:
    a, b = room
    a.send("MODE #x +ov bob BOB")
    assert mode_lines(b) == [["#x", "+ov", "bob", "bob"]]
    chan = core.find_channel("#x")
    assert chan is not None and chan.members[b.user] == "ov"
    a.take()
    b.send("MODE #x -o alice")
    assert mode_lines(a) == [["#x", "-o", "alice"]]
    assert chan.members[a.user] == ""


def test_prefix_mode_for_unknown_nick_is_401(room: tuple[Peer, Peer]) -> None:
    a, _ = room
    a.send("MODE #x +o ghost")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_NOSUCHNICK]
    assert msgs[0].params[1] == "ghost"


def test_prefix_mode_for_non_member_is_441(room: tuple[Peer, Peer], connect: Connect) -> None:
    a, _ = room
    connect("carol")
    a.send("MODE #x +v carol")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_USERNOTINCHANNEL]
    assert msgs[0].params[1:3] == ["carol", "#x"]


def test_voice_then_voice_again_is_a_no_op(room: tuple[Peer, Peer]) -> None:
    a, b = room
    a.send("MODE #x +v bob")
    a.take()
    b.take()
    a.send("MODE #x +v bob")
    assert a.take() == [] and b.take() == []


def test_key_set_and_removed(room: tuple[Peer, Peer], core: ServerCore) -> None:
    a, b = room
    a.send("MODE #x +k sesame")
    assert mode_lines(b) == [["#x", "+k", "sesame"]]
    chan = core.find_channel("#x")
    assert chan is not None and chan.key == "sesame"
    a.send("MODE #x -k sesame")
    assert mode_lines(b) == [["#x", "-k", "*"]]
    assert chan.key is None


def test_invalid_key_is_525(room: tuple[Peer, Peer], core: ServerCore) -> None:
    a, _ = room
    a.send("MODE #x +k a,b")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_INVALIDKEY]
    assert msgs[0].params[1] == "#x"
    chan = core.find_channel("#x")
    assert chan is not None and chan.key is None


def test_limit_set_and_removed_without_param(room: tuple[Peer, Peer], core: ServerCore) -> None:
    a, b = room
    a.send("MODE #x +l 5")
    assert mode_lines(b) == [["#x", "+l", "5"]]
    a.send("MODE #x -l")
    assert mode_lines(b) == [["#x", "-l"]]
    chan = core.find_channel("#x")
    assert chan is not None and chan.limit is None


@pytest.mark.parametrize("value", ["0", "-3", "ten"])
def test_invalid_limit_is_696(room: tuple[Peer, Peer], value: str) -> None:
    a, b = room
    a.send(f"MODE #x +l {value}")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_INVALIDMODEPARAM]
    assert msgs[0].params[1:4] == ["#x", "l", value]
    assert b.take() == []


def test_mode_needing_a_missing_param_is_ignored(room: tuple[Peer, Peer]) -> None:
    a, _ = room
    a.send("MODE #x +lm")
    assert mode_lines(a) == [["#x", "+m"]]


def test_mixed_changes_are_announced_in_one_line(room: tuple[Peer, Peer]) -> None:
    a, b = room
    a.send("MODE #x +ov-t+b bob bob baddie")
    assert mode_lines(b) == [["#x", "+ov-t+b", "bob", "bob", "baddie!*@*"]]


def test_at_most_max_modes_parameterised_changes_per_command(
    room: tuple[Peer, Peer], core: ServerCore
) -> None:
    a, _ = room
    assert core.limits.max_modes == 4
    a.send("MODE #x +bbbbb a b c d e")
    assert mode_lines(a) == [["#x", "+bbbb", "a!*@*", "b!*@*", "c!*@*", "d!*@*"]]


# ---------------------------------------------------------------- list modes
def test_ban_list_query_is_367_then_368(room: tuple[Peer, Peer], clock: Any) -> None:
    a, b = room
    a.send("MODE #x +b *!*@evil.example")
    a.take()
    b.take()
    b.send("MODE #x +b")
    msgs = b.take()
    assert numerics(msgs) == [N.RPL_BANLIST, N.RPL_ENDOFBANLIST]
    assert msgs[0].params == [
        "bob",
        "#x",
        "*!*@evil.example",
        "alice!~u@127.0.0.1",
        str(int(clock.wall)),
    ]
    b.send("MODE #x b")
    assert numerics(b.take()) == [N.RPL_BANLIST, N.RPL_ENDOFBANLIST]


def test_exception_and_invite_lists_use_their_numerics(room: tuple[Peer, Peer]) -> None:
    a, _ = room
    a.send("MODE #x +eI friend trusted@*")
    assert mode_lines(a) == [["#x", "+eI", "friend!*@*", "*!trusted@*"]]
    a.send("MODE #x e")
    msgs = a.take()
    assert numerics(msgs) == [N.RPL_EXCEPTLIST, N.RPL_ENDOFEXCEPTLIST]
    assert msgs[0].params[2] == "friend!*@*"
    a.send("MODE #x I")
    msgs = a.take()
    assert numerics(msgs) == [N.RPL_INVITELIST, N.RPL_ENDOFINVITELIST]
    assert msgs[0].params[2] == "*!trusted@*"


def test_empty_list_query_is_just_the_end_numeric(room: tuple[Peer, Peer]) -> None:
    a, _ = room
    a.send("MODE #x +b")
    assert numerics(a.take()) == [N.RPL_ENDOFBANLIST]


def test_duplicate_ban_is_ignored_and_removal_matches_case_insensitively(
    room: tuple[Peer, Peer], core: ServerCore
) -> None:
    a, _ = room
    a.send("MODE #x +b Evil")
    a.take()
    a.send("MODE #x +b evil!*@*")
    assert a.take() == []
    a.send("MODE #x -b EVIL")
    assert mode_lines(a) == [["#x", "-b", "Evil!*@*"]]
    chan = core.find_channel("#x")
    assert chan is not None and chan.lists["b"] == []
    a.send("MODE #x -b evil")
    assert a.take() == []


def test_ban_list_full_is_478(room: tuple[Peer, Peer], core: ServerCore) -> None:
    core.rehash(
        dataclasses.replace(
            core.config, limits=dataclasses.replace(core.limits, max_list_entries=2)
        )
    )
    a, _ = room
    a.send("MODE #x +bb one two")
    a.take()
    a.send("MODE #x +b three")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_BANLISTFULL]
    assert msgs[0].params[1:3] == ["#x", "b"]


def test_banned_user_cannot_join(room: tuple[Peer, Peer], connect: Connect) -> None:
    a, _ = room
    a.send("MODE #x +b carol")
    c = connect("carol")
    c.send("JOIN #x")
    assert numerics(c.take()) == [N.ERR_BANNEDFROMCHAN]


def test_non_op_may_query_lists_but_not_change_them(room: tuple[Peer, Peer]) -> None:
    a, b = room
    b.send("MODE #x +b-b")
    assert numerics(b.take()) == [N.RPL_ENDOFBANLIST]
    b.send("MODE #x +b someone")
    assert numerics(b.take()) == [N.ERR_CHANOPRIVSNEEDED]
    assert a.take() == []


@pytest.mark.parametrize(
    ("given", "full"),
    [
        ("nick", "nick!*@*"),
        ("nick!user", "nick!user@*"),
        ("user@host", "*!user@host"),
        ("n!u@h", "n!u@h"),
        ("*", "*!*@*"),
        ("!@", "*!*@*"),
        ("@host", "*!*@host"),
    ],
)
def test_normalize_mask_fills_missing_parts(given: str, full: str) -> None:
    assert normalize_mask(given) == full


# ---------------------------------------------------- effects on other commands
def test_moderated_channel_needs_voice(room: tuple[Peer, Peer]) -> None:
    a, b = room
    a.send("MODE #x +m")
    a.take()
    b.take()
    b.send("PRIVMSG #x :hi")
    assert numerics(b.take()) == [N.ERR_CANNOTSENDTOCHAN]
    a.send("MODE #x +v bob")
    b.take()
    b.send("PRIVMSG #x :hi")
    assert b.take() == []
    assert [m.params for m in only(a.take(), "PRIVMSG")] == [["#x", "hi"]]


def test_key_and_limit_gate_join(room: tuple[Peer, Peer], connect: Connect) -> None:
    a, _ = room
    a.send("MODE #x +k sesame")
    c = connect("carol")
    c.send("JOIN #x")
    assert numerics(c.take()) == [N.ERR_BADCHANNELKEY]
    a.send("MODE #x -k+l * 2")
    c.send("JOIN #x")
    assert numerics(c.take()) == [N.ERR_CHANNELISFULL]
