"""Queries and information: AWAY, ISON, USERHOST, WHO, WHOIS, WHOWAS, SETNAME,
MOTD, LUSERS, VERSION, TIME, INFO, ADMIN, LINKS, HELP."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from coreharness import Clock, Peer, numerics, one, only
from relaychat.config import AdminConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.commands import COMMANDS
from relaychat.protocol.core import ServerCore

Connect = Callable[..., Peer]


def join(peer: Peer, *channels: str) -> None:
    for name in channels:
        peer.send(f"JOIN {name}")
    peer.take()


# --------------------------------------------------------------------- AWAY
def test_away_with_message_is_306_and_clears_with_305(connect: Connect) -> None:
    a = connect("alice")
    a.send("AWAY :gone fishing")
    assert numerics(a.take()) == [N.RPL_NOWAWAY]
    assert a.user.away == "gone fishing"
    a.send("AWAY")
    assert numerics(a.take()) == [N.RPL_UNAWAY]
    assert a.user.away is None


def test_away_message_is_truncated_to_awaylen(core: ServerCore, connect: Connect) -> None:
    core.rehash(
        dataclasses.replace(core.config, limits=dataclasses.replace(core.limits, awaylen=5))
    )
    a = connect("alice")
    a.send("AWAY :abcdefghij")
    assert a.user.away == "abcde"


def test_away_notify_reaches_common_channel_peers_with_the_cap(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob", caps=("away-notify",))
    c = connect("carol")
    outsider = connect("dave", caps=("away-notify",))
    for p in (a, b, c):
        join(p, "#x")
    for p in (a, b, c, outsider):
        p.take()
    a.send("AWAY :lunch")
    notes = only(b.take(), "AWAY")
    assert [(m.source, m.params) for m in notes] == [("alice!~u@127.0.0.1", ["lunch"])]
    assert only(c.take(), "AWAY") == []
    assert outsider.take() == []
    assert only(a.take(), "AWAY") == []
    a.send("AWAY")
    back = one(b.take(), "AWAY")
    assert back.params == []


def test_away_unset_when_not_away_sends_no_notify(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob", caps=("away-notify",))
    join(a, "#x")
    join(b, "#x")
    a.take()
    a.send("AWAY")
    assert numerics(a.take()) == [N.RPL_UNAWAY]
    assert b.take() == []


# -------------------------------------------------------- ISON / USERHOST
def test_ison_lists_the_online_nicks_in_their_own_case(connect: Connect) -> None:
    a = connect("alice")
    connect("Bob")
    a.send("ISON bob nobody ALICE")
    reply = one(a.take(), N.RPL_ISON)
    assert reply.params == ["alice", "Bob alice"]


def test_ison_with_nobody_online_is_an_empty_303(connect: Connect) -> None:
    a = connect("alice")
    a.send("ISON :ghost spectre")
    assert one(a.take(), N.RPL_ISON).params == ["alice", ""]


def test_userhost_marks_opers_and_away_users(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    b.user.oper_name = "admin"
    b.send("AWAY :brb")
    a.send("USERHOST alice bob ghost")
    reply = one(a.take(), N.RPL_USERHOST)
    assert reply.params[1].split() == ["alice=+~u@127.0.0.1", "bob*=-~u@127.0.0.1"]


def test_userhost_answers_at_most_five_nicks(connect: Connect) -> None:
    a = connect("alice")
    a.send("USERHOST alice alice alice alice alice alice alice")
    assert len(one(a.take(), N.RPL_USERHOST).params[1].split()) == 5


# ---------------------------------------------------------------------- WHO
def test_who_channel_lists_members_with_flags_then_315(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    join(a, "#x")
    join(b, "#x")
    b.send("AWAY :zzz")
    b.user.oper_name = "admin"
    a.send("WHO #x")
    msgs = a.take()
    rows = {m.params[5]: m.params for m in only(msgs, N.RPL_WHOREPLY)}
    assert rows["alice"] == [
        "alice",
        "#x",
        "~u",
        "127.0.0.1",
        "irc.relaychat.local",
        "alice",
        "H@",
        "0 Real alice",
    ]
    assert rows["bob"][6] == "G*"
    assert msgs[-1].command == N.RPL_ENDOFWHO
    assert msgs[-1].params[1:] == ["#x", "End of WHO list"]


def test_who_channel_multi_prefix_shows_every_status(connect: Connect) -> None:
    a = connect("alice", caps=("multi-prefix",))
    join(a, "#x")
    a.send("MODE #x +v alice")
    a.take()
    a.send("WHO #x")
    assert one(a.take(), N.RPL_WHOREPLY).params[6] == "H@+"


def test_who_channel_hides_invisible_members_from_outsiders(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    outsider = connect("carol")
    join(a, "#x")
    join(b, "#x")
    b.send("MODE bob +i")
    outsider.send("WHO #x")
    assert [m.params[5] for m in only(outsider.take(), N.RPL_WHOREPLY)] == ["alice"]
    a.send("WHO #x")
    assert sorted(m.params[5] for m in only(a.take(), N.RPL_WHOREPLY)) == ["alice", "bob"]


def test_who_secret_channel_shows_nothing_to_outsiders(connect: Connect) -> None:
    a = connect("alice")
    outsider = connect("carol")
    join(a, "#x")
    a.send("MODE #x +s")
    outsider.send("WHO #x")
    assert numerics(outsider.take()) == [N.RPL_ENDOFWHO]


def test_who_unknown_channel_is_just_315(connect: Connect) -> None:
    a = connect("alice")
    a.send("WHO #nowhere")
    assert numerics(a.take()) == [N.RPL_ENDOFWHO]


def test_who_wildcard_mask_skips_invisible_strangers(connect: Connect) -> None:
    a = connect("alice")
    connect("bob")
    hidden = connect("bobby")
    hidden.send("MODE bobby +i")
    connect("carol")
    a.send("WHO bob*")
    msgs = a.take()
    assert [m.params[5] for m in only(msgs, N.RPL_WHOREPLY)] == ["bob"]
    assert msgs[-1].params[1] == "bob*"


def test_who_wildcard_mask_shows_invisible_users_sharing_a_channel(connect: Connect) -> None:
    a = connect("alice")
    hidden = connect("bobby")
    hidden.send("MODE bobby +i")
    join(a, "#x")
    join(hidden, "#x")
    a.send("WHO bob*")
    rows = only(a.take(), N.RPL_WHOREPLY)
    assert [(m.params[1], m.params[5]) for m in rows] == [("#x", "bobby")]


def test_who_exact_nick_is_shown_even_when_invisible(connect: Connect) -> None:
    a = connect("alice")
    hidden = connect("bob")
    hidden.send("MODE bob +i")
    a.send("WHO BOB")
    row = one(a.take(), N.RPL_WHOREPLY)
    assert row.params[1] == "*"
    assert row.params[5] == "bob"


def test_who_o_flag_lists_only_operators(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    b.user.oper_name = "admin"
    a.send("WHO * o")
    assert [m.params[5] for m in only(a.take(), N.RPL_WHOREPLY)] == ["bob"]


def test_who_without_mask_lists_visible_users_and_ends_with_star(connect: Connect) -> None:
    a = connect("alice")
    connect("bob")
    a.send("WHO")
    msgs = a.take()
    assert sorted(m.params[5] for m in only(msgs, N.RPL_WHOREPLY)) == ["alice", "bob"]
    assert msgs[-1].params[1] == "*"


def test_who_matches_masks_against_host_and_realname(connect: Connect) -> None:
    a = connect("alice")
    a.send("WHO :*Real alice*")
    assert [m.params[5] for m in only(a.take(), N.RPL_WHOREPLY)] == ["alice"]
    a.send("WHO *!~u@127.0.0.*")
    assert [m.params[5] for m in only(a.take(), N.RPL_WHOREPLY)] == ["alice"]


# -------------------------------------------------------------------- WHOIS
def test_whois_reports_user_channels_server_idle_and_end(connect: Connect, clock: Clock) -> None:
    a = connect("alice")
    b = connect("bob")
    join(b, "#x", "#y")
    b.send("MODE #y +v bob")
    signon = int(b.user.signon)
    assert signon == int(clock.wall)  # the wall time of registration
    clock.advance(42)
    a.send("WHOIS bob")
    msgs = a.take()
    assert numerics(msgs) == [
        N.RPL_WHOISUSER,
        N.RPL_WHOISCHANNELS,
        N.RPL_WHOISSERVER,
        N.RPL_WHOISIDLE,
        N.RPL_ENDOFWHOIS,
    ]
    assert msgs[0].params == ["alice", "bob", "~u", "127.0.0.1", "*", "Real bob"]
    assert sorted(msgs[1].params[2].split()) == ["@#x", "@#y"]
    assert msgs[2].params[1:3] == ["bob", "irc.relaychat.local"]
    assert msgs[3].params[1:4] == ["bob", "42", str(signon)]
    assert msgs[4].params[1] == "bob"


def test_whois_unknown_nick_is_401_then_318(connect: Connect) -> None:
    a = connect("alice")
    a.send("WHOIS ghost")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_NOSUCHNICK, N.RPL_ENDOFWHOIS]
    assert msgs[0].params[1] == "ghost"


def test_whois_with_server_parameter_uses_the_second_one(connect: Connect) -> None:
    a = connect("alice")
    connect("bob")
    a.send("WHOIS irc.relaychat.local bob")
    assert one(a.take(), N.RPL_WHOISUSER).params[1] == "bob"


def test_whois_shows_operator_and_away(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    b.user.oper_name = "admin"
    b.send("AWAY :out")
    a.send("WHOIS bob")
    msgs = a.take()
    assert one(msgs, N.RPL_WHOISOPERATOR).params[1] == "bob"
    assert one(msgs, N.RPL_AWAY).params[1:] == ["bob", "out"]


def test_whois_hides_secret_channels_unless_shared(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    join(b, "#open", "#secret")
    b.send("MODE #secret +s")
    a.send("WHOIS bob")
    assert one(a.take(), N.RPL_WHOISCHANNELS).params[2] == "@#open"
    join(a, "#secret")
    a.send("WHOIS bob")
    assert one(a.take(), N.RPL_WHOISCHANNELS).params[2].split() == ["@#open", "@#secret"]


def test_whois_without_channels_has_no_319(connect: Connect) -> None:
    a = connect("alice")
    a.send("WHOIS alice")
    assert N.RPL_WHOISCHANNELS not in numerics(a.take())


def test_whois_idle_resets_on_privmsg_not_on_whois(connect: Connect, clock: Clock) -> None:
    a = connect("alice")
    b = connect("bob")
    clock.advance(100)
    b.send("PRIVMSG alice :hi")
    clock.advance(5)
    b.send("WHOIS bob")
    a.send("WHOIS bob")
    assert one(a.take(), N.RPL_WHOISIDLE).params[2] == "5"


def test_whois_splits_a_long_channel_list(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    names = [f"#{'c' * 45}{i:02d}" for i in range(12)]
    join(b, *names)
    a.send("WHOIS bob")
    lines = only(a.take(), N.RPL_WHOISCHANNELS)
    assert len(lines) > 1
    assert all(len(m.serialize()) < 510 for m in lines)
    assert sorted(c for m in lines for c in m.params[2].split()) == sorted("@" + n for n in names)


# ------------------------------------------------------------------- WHOWAS
def test_whowas_after_quit_is_314_312_369(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    b.send("QUIT :bye")
    a.send("WHOWAS bob")
    msgs = a.take()
    assert numerics(msgs) == [N.RPL_WHOWASUSER, N.RPL_WHOISSERVER, N.RPL_ENDOFWHOWAS]
    assert msgs[0].params == ["alice", "bob", "~u", "127.0.0.1", "*", "Real bob"]
    assert msgs[1].params[1:3] == ["bob", "irc.relaychat.local"]


def test_whowas_unknown_nick_is_406_then_369(connect: Connect) -> None:
    a = connect("alice")
    a.send("WHOWAS nobody")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_WASNOSUCHNICK, N.RPL_ENDOFWHOWAS]
    assert msgs[0].params[1] == "nobody"


def test_whowas_count_limits_the_entries(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    b.send("NICK bob2")
    b.send("NICK bob")
    b.send("NICK bob3")
    a.send("WHOWAS bob")
    assert len(only(a.take(), N.RPL_WHOWASUSER)) == 2
    a.send("WHOWAS bob 1")
    assert len(only(a.take(), N.RPL_WHOWASUSER)) == 1


# ------------------------------------------------------------------ SETNAME
def test_setname_reaches_self_and_peers_with_the_cap(connect: Connect) -> None:
    a = connect("alice", caps=("setname",))
    b = connect("bob", caps=("setname",))
    c = connect("carol")
    for p in (a, b, c):
        join(p, "#x")
    for p in (a, b, c):
        p.take()
    a.send("SETNAME :Alice Liddell")
    for p in (a, b):
        m = one(p.take(), "SETNAME")
        assert (m.source, m.params) == ("alice!~u@127.0.0.1", ["Alice Liddell"])
    assert c.take() == []
    assert a.user.realname == "Alice Liddell"


def test_setname_too_long_is_fail_invalid_realname(connect: Connect) -> None:
    a = connect("alice", caps=("setname",))
    a.send("SETNAME :" + "x" * 129)
    m = one(a.take(), "FAIL")
    assert m.params[:2] == ["SETNAME", "INVALID_REALNAME"]
    assert a.user.realname == "Real alice"


def test_setname_without_params_is_461(connect: Connect) -> None:
    a = connect("alice")
    a.send("SETNAME")
    assert numerics(a.take()) == [N.ERR_NEEDMOREPARAMS]


# ------------------------------------------------------------ MOTD / LUSERS
def set_motd(core: ServerCore, motd: str) -> None:
    server = dataclasses.replace(core.config.server, motd=motd)
    core.rehash(dataclasses.replace(core.config, server=server))


def test_motd_command_sends_each_line(core: ServerCore, connect: Connect) -> None:
    set_motd(core, "line one\nline two")
    a = connect("alice")
    a.send("MOTD")
    msgs = a.take()
    assert numerics(msgs) == [N.RPL_MOTDSTART, N.RPL_MOTD, N.RPL_MOTD, N.RPL_ENDOFMOTD]
    assert [m.params[1] for m in only(msgs, N.RPL_MOTD)] == ["- line one", "- line two"]


def test_empty_motd_is_422_at_registration_and_on_request(
    core: ServerCore, connect: Connect
) -> None:
    set_motd(core, "  \n")
    a = connect()
    a.send("NICK alice")
    a.send("USER u 0 * :Real")
    assert N.ERR_NOMOTD in numerics(a.take())
    a.send("MOTD")
    assert numerics(a.take()) == [N.ERR_NOMOTD]


def test_registration_burst_has_lusers_then_motd(connect: Connect) -> None:
    a = connect()
    a.send("NICK alice")
    a.send("USER u 0 * :Real")
    got = numerics(a.take())
    lusers = [
        N.RPL_LUSERCLIENT,
        N.RPL_LUSEROP,
        N.RPL_LUSERUNKNOWN,
        N.RPL_LUSERCHANNELS,
        N.RPL_LUSERME,
        N.RPL_LOCALUSERS,
        N.RPL_GLOBALUSERS,
    ]
    start = got.index(N.RPL_LUSERCLIENT)
    assert got[start : start + len(lusers)] == lusers
    assert got.index(N.RPL_MOTDSTART) > start
    assert got[-1] == N.RPL_ENDOFMOTD


def test_lusers_counts_users_invisible_opers_unknown_and_channels(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    connect()  # not registered
    b.send("MODE bob +i")
    b.core.registry.set_user_modes(b.user, b.user.modes + "o")
    b.user.oper_name = "admin"
    join(a, "#x", "#y")
    a.send("LUSERS")
    msgs = a.take()
    assert "There are 1 users and 1 invisible on 1 servers" in one(msgs, N.RPL_LUSERCLIENT).params
    assert one(msgs, N.RPL_LUSEROP).params[1] == "1"
    assert one(msgs, N.RPL_LUSERUNKNOWN).params[1] == "1"
    assert one(msgs, N.RPL_LUSERCHANNELS).params[1] == "2"
    assert one(msgs, N.RPL_LUSERME).params[1] == "I have 2 clients and 0 servers"
    assert one(msgs, N.RPL_LOCALUSERS).params[1:3] == ["2", "2"]
    assert one(msgs, N.RPL_GLOBALUSERS).params[1:3] == ["2", "2"]


def test_lusers_max_remembers_the_peak(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    b.send("QUIT")
    a.send("LUSERS")
    assert one(a.take(), N.RPL_LOCALUSERS).params[1:3] == ["1", "2"]


# -------------------------------------------- VERSION TIME INFO ADMIN LINKS
def test_version_is_351_then_isupport(connect: Connect) -> None:
    a = connect("alice")
    a.send("VERSION")
    msgs = a.take()
    assert msgs[0].command == N.RPL_VERSION
    assert msgs[0].params[1].startswith("relaychat-")
    assert msgs[0].params[2] == "irc.relaychat.local"
    isupport = only(msgs, N.RPL_ISUPPORT)
    assert isupport and len(isupport) == len(msgs) - 1
    assert any(p.startswith("CHANMODES=") for m in isupport for p in m.params)


def test_time_is_391_with_the_server_clock(connect: Connect, clock: Clock) -> None:
    a = connect("alice")
    a.send("TIME")
    m = one(a.take(), N.RPL_TIME)
    assert m.params[1:3] == ["irc.relaychat.local", str(int(clock.wall))]
    assert "2023" in m.params[-1]


def test_info_is_371_lines_then_374(connect: Connect) -> None:
    a = connect("alice")
    a.send("INFO")
    got = numerics(a.take())
    assert got[-1] == N.RPL_ENDOFINFO
    assert set(got[:-1]) == {N.RPL_INFO}
    assert len(got) > 1


def test_admin_reports_the_configured_admin(core: ServerCore, connect: Connect) -> None:
    admin = AdminConfig(location="Earth", location2="Moon", email="ops@example.org")
    core.rehash(dataclasses.replace(core.config, admin=admin))
    a = connect("alice")
    a.send("ADMIN")
    msgs = a.take()
    assert numerics(msgs) == [N.RPL_ADMINME, N.RPL_ADMINLOC1, N.RPL_ADMINLOC2, N.RPL_ADMINEMAIL]
    assert [m.params[-1] for m in msgs[1:]] == ["Earth", "Moon", "ops@example.org"]


def test_links_lists_only_this_server(connect: Connect) -> None:
    a = connect("alice")
    a.send("LINKS")
    msgs = a.take()
    assert numerics(msgs) == [N.RPL_LINKS, N.RPL_ENDOFLINKS]
    # Modern IRC: 364 <client> <server> <server> :<hopcount> <info>
    assert msgs[0].params[1:3] == ["irc.relaychat.local", "irc.relaychat.local"]
    assert msgs[0].params[3].startswith("0 ")


# --------------------------------------------------------------------- HELP
def test_every_command_in_the_table_has_help() -> None:
    assert all(spec.syntax and spec.help for spec in COMMANDS.values())


def test_help_on_a_command_is_704_705_706(connect: Connect) -> None:
    a = connect("alice")
    a.send("HELP privmsg")
    msgs = a.take()
    got = numerics(msgs)
    assert got[0] == N.RPL_HELPSTART and got[-1] == N.RPL_ENDOFHELP
    assert set(got[1:-1]) == {N.RPL_HELPTXT}
    assert all(m.params[1] == "privmsg" for m in msgs)
    assert any("PRIVMSG <target>" in m.params[2] for m in msgs)


def test_help_without_subject_lists_the_commands(connect: Connect) -> None:
    a = connect("alice")
    a.send("HELP")
    msgs = a.take()
    assert msgs[0].command == N.RPL_HELPSTART and msgs[0].params[1] == "*"
    text = " ".join(m.params[2] for m in msgs)
    assert all(name in text.split() for name in COMMANDS)


def test_help_unknown_subject_is_524(connect: Connect) -> None:
    a = connect("alice")
    a.send("HELP frobnicate")
    msgs = a.take()
    assert numerics(msgs) == [N.ERR_HELPNOTFOUND]
    assert msgs[0].params[1] == "frobnicate"


# ------------------------------------------------------------- registration
def test_info_commands_need_registration(connect: Connect) -> None:
    a = connect()
    for line in ("WHOIS bob", "WHO", "AWAY :x", "HELP", "LUSERS", "MOTD"):
        a.send(line)
        assert numerics(a.take()) == [N.ERR_NOTREGISTERED]


def test_whois_without_params_is_461(connect: Connect) -> None:
    a = connect("alice")
    a.send("WHOIS")
    assert numerics(a.take()) == [N.ERR_NEEDMOREPARAMS]


# --------------------------------------------------------------------- WHOX
def test_whox_returns_354_with_requested_fields_in_spec_order(connect: Connect) -> None:
    a = connect("alice")
    b = connect("bob")
    join(a, "#c")
    join(b, "#c")
    a.take()
    a.send("WHO #c %nuhcrft,042")
    got = a.take()
    rows = only(got, N.RPL_WHOSPCRPL)
    assert {tuple(m.params[1:]) for m in rows} == {
        ("042", "#c", "~u", "127.0.0.1", "alice", "H@", "Real alice"),
        ("042", "#c", "~u", "127.0.0.1", "bob", "H", "Real bob"),
    }
    assert got[-1].command == N.RPL_ENDOFWHO
    assert only(got, N.RPL_WHOREPLY) == []


def test_whox_is_advertised_and_plain_who_still_gives_352(connect: Connect) -> None:
    a = connect("alice")
    join(a, "#c")
    a.send("VERSION")
    tokens = [t for m in only(a.take(), N.RPL_ISUPPORT) for t in m.params]
    assert "WHOX" in tokens
    a.send("WHO alice")
    assert numerics(a.take()) == [N.RPL_WHOREPLY, N.RPL_ENDOFWHO]
    a.send("WHO alice o%n")  # the o flag before % still filters to opers
    assert numerics(a.take()) == [N.RPL_ENDOFWHO]
