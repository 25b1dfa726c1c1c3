"""IRCv3 metadata (draft/metadata-2) on the core: every subcommand and error path,
notifications to subscribers with the capability only, channel permissions,
limits and budgets, before-connect, and cleanup (no sockets)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from coreharness import Clock, Peer, new_core
from relaychat.config import Config, LimitsConfig, MetadataConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message

Connect = Callable[..., Peer]
CAP = "draft/metadata-2"
META = ("batch", CAP)  # what a metadata-aware client negotiates


@pytest.fixture
def meta_core(clock: Clock) -> Callable[..., ServerCore]:
    """``meta_core(**metadata_settings)`` -> a core (flood control off) with those
    [metadata] settings."""

    def make(**settings: Any) -> ServerCore:
        cfg = Config(
            limits=LimitsConfig(flood_rate=0.0),
            metadata=dataclasses.replace(MetadataConfig(), **settings),
        )
        return new_core(cfg, clock)

    return make


def peers_on(core: ServerCore, clock: Clock) -> Connect:
    def make(nick: str | None = None, caps: tuple[str, ...] = ()) -> Peer:
        p = Peer(core, clock)
        if nick:
            p.register(nick, caps=caps)
        return p

    return make


def fails(msgs: list[Message]) -> list[list[str]]:
    return [m.params for m in msgs if m.command == "FAIL"]


def batches(msgs: list[Message]) -> list[tuple[list[str], list[Message]]]:
    """Each batch in ``msgs``: (its type and parameters, the messages tagged with it)."""
    found: list[tuple[list[str], list[Message]]] = []
    open_: dict[str, tuple[list[str], list[Message]]] = {}
    for m in msgs:
        if m.command == "BATCH" and m.params[0].startswith("+"):
            entry: tuple[list[str], list[Message]] = (m.params[1:], [])
            open_[m.params[0][1:]] = entry
            found.append(entry)
        elif m.command == "BATCH" and m.params[0].startswith("-"):
            del open_[m.params[0][1:]]
        elif "batch" in m.tags:
            open_[m.tags["batch"]][1].append(m)
    assert not open_, f"unterminated batches: {list(open_)}"
    return found


def one_batch(msgs: list[Message]) -> tuple[list[str], list[Message]]:
    found = batches(msgs)
    assert len(found) == 1, msgs
    assert all(m.command == "BATCH" or "batch" in m.tags for m in msgs), msgs
    return found[0]


def keyvalues(msgs: list[Message]) -> list[list[str]]:
    return [m.params[1:] for m in msgs if m.command == N.RPL_KEYVALUE]


def notes(msgs: list[Message]) -> list[list[str]]:
    return [m.params for m in msgs if m.command == "METADATA"]


def wire_lines(peer: Peer) -> list[bytes]:
    """Every line the peer received, without CRLF."""
    return [line for data in peer.raw for line in data.split(b"\r\n") if line]


def channel(connect: Connect, *peers: tuple[str, tuple[str, ...]]) -> list[Peer]:
    """Register and join #c in order (the first is its operator)."""
    made = [connect(nick, caps=caps) for nick, caps in peers]
    for p in made:
        p.send("JOIN #c")
    for p in made:
        p.take()
    return made


# ------------------------------------------------------------- capability
def test_cap_ls_302_advertises_the_metadata_limits_and_batch(connect: Connect) -> None:
    p = connect()
    p.send("CAP LS 302")
    caps = dict(
        item.partition("=")[::2]
        for m in p.take()
        if m.command == "CAP"
        for item in m.params[-1].split()
    )
    assert caps[CAP] == "before-connect,max-subs=50,max-keys=20,max-value-bytes=300"
    assert "batch" in caps


def test_cap_value_follows_the_configuration(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    p = Peer(meta_core(before_connect=False, max_keys=3, max_subs=7, max_value_bytes=99), clock)
    p.send("CAP LS 302")
    line = p.take()[0].params[-1]
    assert f"{CAP}=max-subs=7,max-keys=3,max-value-bytes=99" in line.split()
    p.send(f"CAP REQ :batch {CAP}")
    assert p.take()[0].params[1:] == ["ACK", f"batch {CAP}"]


def test_an_idle_user_holds_no_metadata_state(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("JOIN #c")
    a.send("PRIVMSG #c :hi")
    assert a.user.metadata is None and a.session.metadata is None
    assert a.session.user.channels["#c"].metadata is None


# --------------------------------------------------------------- SET, GET
def test_set_on_self_answers_761_and_get_lists_it_in_a_metadata_batch(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * SET url :http://example.com/a b")
    assert [(m.command, m.params) for m in a.take()] == [
        (N.RPL_KEYVALUE, ["alice", "alice", "url", "*", "http://example.com/a b"])
    ]
    a.send("METADATA alice GET url")
    params, inner = one_batch(a.take())
    assert params == ["metadata", "alice"]
    assert keyvalues(inner) == [["alice", "url", "*", "http://example.com/a b"]]


def test_get_answers_each_key_in_order_set_unset_or_invalid(connect: Connect) -> None:
    a, b = connect("alice", caps=META), connect("bob", caps=META)
    a.send("METADATA * SET pronouns :she/her")
    a.take()
    b.send("METADATA alice GET missing Bad:key pronouns missing")
    _, inner = one_batch(b.take())
    assert [(m.command, m.params) for m in inner] == [
        (N.RPL_KEYNOTSET, ["bob", "alice", "missing", "key not set"]),
        ("FAIL", ["METADATA", "KEY_INVALID", "Bad:key", "invalid key"]),
        (N.RPL_KEYVALUE, ["bob", "alice", "pronouns", "*", "she/her"]),
    ]


def test_without_the_batch_capability_the_same_lines_come_bare(connect: Connect) -> None:
    a = connect("alice")
    a.send("METADATA * SET k :v")
    a.take()
    a.send("METADATA * GET k other")
    got = a.take()
    assert [m.command for m in got] == [N.RPL_KEYVALUE, N.RPL_KEYNOTSET]
    assert all(not m.tags for m in got)


def test_list_shows_every_key_and_an_empty_batch_when_none(connect: Connect) -> None:
    a, b = connect("alice", caps=META), connect("bob", caps=META)
    b.send("METADATA bob LIST")
    assert one_batch(b.take()) == (["metadata", "bob"], [])
    for key in ("a", "b.c", "d-e_f/g"):
        a.send(f"METADATA * SET {key} :value {key}")
    a.take()
    b.send("METADATA Alice LIST")
    params, inner = one_batch(b.take())
    assert params == ["metadata", "alice"]
    assert keyvalues(inner) == [
        ["alice", "a", "*", "value a"],
        ["alice", "b.c", "*", "value b.c"],
        ["alice", "d-e_f/g", "*", "value d-e_f/g"],
    ]


@pytest.mark.parametrize("key", ["URL", "a:b", "a b", "caf\u00e9", "k" * 65, "a+b"])
def test_set_with_an_invalid_key_is_key_invalid_and_changes_nothing(
    connect: Connect, key: str
) -> None:
    a = connect("alice", caps=META)
    a.send(f"METADATA * SET {key} :v" if " " not in key else f"METADATA * SET :{key}")
    got = a.take()
    assert len(got) == 1 and fails(got)[0][:2] == ["METADATA", "KEY_INVALID"]
    assert a.user.metadata is None


def test_the_longest_valid_key_is_accepted(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send(f"METADATA * SET {'k' * 64} :v")
    assert a.take()[0].command == N.RPL_KEYVALUE


def test_removing_a_key_answers_761_without_a_value(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * SET k :v")
    a.send("METADATA * SET k")
    got = a.take()
    assert [m.params for m in got] == [
        ["alice", "alice", "k", "*", "v"],
        ["alice", "alice", "k", "*"],
    ]
    assert a.user.metadata is None  # the last key gone: no dict left


def test_removing_a_key_that_is_not_set_is_key_not_set(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * SET k")
    assert fails(a.take()) == [["METADATA", "KEY_NOT_SET", "alice", "k", "key not set"]]


def test_an_empty_value_is_a_value(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * SET k :")
    assert a.take()[0].params == ["alice", "alice", "k", "*", ""]
    assert a.user.metadata == {"k": ""}


def test_setting_another_users_key_is_key_no_permission(connect: Connect) -> None:
    a, b = connect("alice", caps=META), connect("bob", caps=META)
    b.send("METADATA alice SET url :http://evil")
    assert fails(b.take()) == [
        ["METADATA", "KEY_NO_PERMISSION", "alice", "url", "permission denied"]
    ]
    b.send("METADATA alice CLEAR")
    assert fails(b.take()) == [["METADATA", "KEY_NO_PERMISSION", "alice", "*", "permission denied"]]
    assert a.user.metadata is None


@pytest.mark.parametrize("sub", ["GET k", "LIST", "SET k :v", "CLEAR", "SYNC"])
@pytest.mark.parametrize("target", ["nobody", "#nowhere", "$a:user", "#secret"])
def test_unknown_or_hidden_targets_are_invalid_target_and_nothing_else(
    connect: Connect, sub: str, target: str
) -> None:
    owner = connect("owner", caps=META)
    owner.send("JOIN #secret")
    owner.send("MODE #secret +s")
    owner.send("METADATA #secret SET k :v")
    owner.take()
    b = connect("bob", caps=META)
    b.send(f"METADATA {target} {sub}")
    got = b.take()
    assert [m.params for m in got] == [
        ["METADATA", "INVALID_TARGET", target, "invalid metadata target"]
    ]


def test_an_unknown_subcommand_is_subcommand_invalid(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * DESTR0Y")
    assert fails(a.take()) == [["METADATA", "SUBCOMMAND_INVALID", "DESTR0Y", "invalid subcommand"]]
    a.send("metadata * list")  # command and subcommand are case-insensitive
    assert one_batch(a.take())[0] == ["metadata", "alice"]


@pytest.mark.parametrize(
    "line", ["METADATA *", "METADATA * GET", "METADATA * SET", "METADATA * SUB"]
)
def test_missing_parameters_are_461(connect: Connect, line: str) -> None:
    a = connect("alice", caps=META)
    a.send(line)
    got = a.take()
    assert [(m.command, m.params[1]) for m in got] == [(N.ERR_NEEDMOREPARAMS, "METADATA")]


# ------------------------------------------------------------------ limits
def test_max_keys_per_user_is_limit_reached_but_updates_still_work(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    a = peers_on(meta_core(max_keys=2), clock)("alice", caps=META)
    a.send("METADATA * SET one :1")
    a.send("METADATA * SET two :2")
    a.take()
    a.send("METADATA * SET three :3")
    assert fails(a.take()) == [["METADATA", "LIMIT_REACHED", "alice", "metadata limit reached"]]
    a.send("METADATA * SET two :22")
    assert a.take()[0].params[-1] == "22"
    assert a.user.metadata == {"one": "1", "two": "22"}


def test_max_keys_applies_to_channels_too(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    a = peers_on(meta_core(max_keys=1), clock)("alice", caps=META)
    a.send("JOIN #c")
    a.send("METADATA #c SET one :1")
    a.take()
    a.send("METADATA #c SET two :2")
    assert fails(a.take()) == [["METADATA", "LIMIT_REACHED", "#c", "metadata limit reached"]]


def test_a_value_over_max_value_bytes_is_value_invalid(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    a = peers_on(meta_core(max_value_bytes=10), clock)("alice", caps=META)
    a.send("METADATA * SET k :" + "\u00e9" * 5)  # 10 bytes
    assert a.take()[0].command == N.RPL_KEYVALUE
    a.send("METADATA * SET k :" + "\u00e9" * 5 + "x")  # 11 bytes
    assert fails(a.take()) == [["METADATA", "VALUE_INVALID", "value is too long"]]
    assert a.user.metadata == {"k": "\u00e9" * 5}


def test_a_value_that_would_not_fit_in_a_line_is_value_invalid(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    """max_value_bytes allows 400, but a 64-byte key on a 50-byte channel name leaves
    less room in ``:server 761 <longest nick> #chan key * :value``: every line
    that carries the value stays within 512 bytes."""
    core = meta_core(max_value_bytes=400)
    a = peers_on(core, clock)("alice", caps=META)
    chan = "#" + "c" * 49
    key = "k" * 64
    a.send(f"JOIN {chan}")
    a.take()
    head = f":{core.server_name} 761 {'n' * core.limits.nicklen} {chan} {key} * :"
    room = 510 - len(head)
    a.send(f"METADATA {chan} SET {key} :" + "v" * (room + 1))
    assert fails(a.take())[0][1] == "VALUE_INVALID"
    a.send(f"METADATA {chan} SET {key} :" + "v" * room)
    got = a.take()
    assert got[0].command == N.RPL_KEYVALUE
    assert max(len(line) for line in wire_lines(a)) <= 510


def test_sets_past_the_change_budget_are_rate_limited_with_a_retry_time(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = meta_core(change_burst=2, change_rate=0.5)
    a = peers_on(core, clock)("alice", caps=META)
    a.send("METADATA * SET k :1")
    a.send("METADATA * SET k :2")
    a.take()
    a.send("METADATA * SET k :3")
    assert fails(a.take()) == [
        ["METADATA", "RATE_LIMITED", "alice", "k", "2", "3", "too many changes"]
    ]
    a.send("METADATA * SET k :three and more")  # a value that is not one word is shown as *
    assert fails(a.take())[0][4:6] == ["2", "*"]
    assert a.user.metadata == {"k": "2"}
    clock.advance(2.0)
    a.send("METADATA * SET k :3")
    assert a.take()[0].params[-1] == "3"


def test_setting_the_same_value_again_costs_nothing_and_tells_nobody(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    connect = peers_on(meta_core(change_burst=1), clock)
    a, b = channel(connect, ("alice", META), ("bob", META))
    b.send("METADATA * SUB k")
    a.send("METADATA * SET k :v")
    b.take()
    for _ in range(3):
        a.send("METADATA * SET k :v")
        assert a.take()[0].command == N.RPL_KEYVALUE
    assert b.take() == []


# ---------------------------------------------------------------- channels
def test_channel_keys_are_set_by_channel_operators_only(connect: Connect) -> None:
    op, member = channel(connect, ("op", META), ("member", META))
    outsider = connect("outsider", caps=META)
    op.send("METADATA #c SET url :http://example.com")
    assert op.take()[0].params == ["op", "#c", "url", "*", "http://example.com"]
    for p in (member, outsider):
        p.send("METADATA #c SET url :mine")
        assert fails(p.take()) == [
            ["METADATA", "KEY_NO_PERMISSION", "#c", "url", "permission denied"]
        ]
        p.send("METADATA #c CLEAR")
        assert fails(p.take()) == [
            ["METADATA", "KEY_NO_PERMISSION", "#c", "*", "permission denied"]
        ]
    op.send("MODE #c +o member")
    member.take()
    member.send("METADATA #c SET url :mine")
    assert member.take()[0].command == N.RPL_KEYVALUE
    outsider.send("METADATA #C GET url")  # a visible channel can be read by anyone
    assert keyvalues(one_batch(outsider.take())[1]) == [["#c", "url", "*", "mine"]]


def test_a_destroyed_channel_takes_its_metadata_with_it(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("JOIN #c")
    a.send("METADATA #c SET k :v")
    old = a.user.channels["#c"]
    a.send("PART #c")
    assert old.metadata is None
    a.send("JOIN #c")
    a.take()
    a.send("METADATA #c LIST")
    assert one_batch(a.take())[1] == []


def test_a_user_who_quits_takes_their_metadata_with_them(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * SET k :v")
    user = a.user
    a.send("QUIT")
    assert user.metadata is None
    again = connect("alice", caps=META)
    again.send("METADATA * LIST")
    assert one_batch(again.take())[1] == []


# ----------------------------------------------------------------- CLEAR
def test_clear_answers_each_removed_key_in_a_batch_and_notifies(connect: Connect) -> None:
    a, b = channel(connect, ("alice", META), ("bob", META))
    b.send("METADATA * SUB one two")
    a.send("METADATA * SET one :1")
    a.send("METADATA * SET two :2")
    a.take()
    b.take()
    a.send("METADATA * CLEAR")
    params, inner = one_batch(a.take())
    assert params == ["metadata", "alice"]
    assert keyvalues(inner) == [["alice", "one", "*"], ["alice", "two", "*"]]
    assert notes(b.take()) == [["alice", "one", "*"], ["alice", "two", "*"]]
    assert a.user.metadata is None
    a.send("METADATA * CLEAR")
    assert one_batch(a.take())[1] == []


def test_channel_clear_by_its_operator(connect: Connect) -> None:
    (a,) = channel(connect, ("alice", META))
    a.send("METADATA #c SET k :v")
    a.send("METADATA #c CLEAR")
    got = a.take()
    assert keyvalues(one_batch(got[1:])[1]) == [["#c", "k", "*"]]
    assert a.user.channels["#c"].metadata is None


# ---------------------------------------------------------- notifications
def test_a_change_reaches_subscribers_with_the_cap_who_share_a_channel_only(
    connect: Connect,
) -> None:
    alice, bob, carol, dave = channel(
        connect,
        ("alice", META),
        ("bob", META),  # subscribed, with the cap: told
        ("carol", META),  # with the cap, not subscribed: not told
        ("dave", ("batch",)),  # subscribed, without the cap: not told
    )
    erin = connect("erin", caps=META)  # subscribed, with the cap, no common channel
    for p in (bob, dave, erin):
        p.send("METADATA * SUB status")
        p.take()
    alice.send("METADATA * SET status :away for lunch")
    assert [m.command for m in alice.take()] == [N.RPL_KEYVALUE]  # not her own change
    got = bob.take()
    assert [(m.source, m.command, m.params) for m in got] == [
        ("irc.relaychat.local", "METADATA", ["alice", "status", "*", "away for lunch"])
    ]
    assert carol.take() == [] and dave.take() == [] and erin.take() == []
    alice.send("METADATA * SET status")
    assert notes(bob.take()) == [["alice", "status", "*"]]
    alice.send("METADATA * SET other :x")  # bob did not subscribe to "other"
    assert bob.take() == []


def test_a_channel_change_reaches_its_subscribed_members(connect: Connect) -> None:
    op, member = channel(connect, ("op", META), ("member", META))
    outsider = connect("outsider", caps=META)
    for p in (member, outsider):
        p.send("METADATA * SUB url")
        p.take()
    op.send("METADATA #c SET url :https://example.org/")
    assert notes(member.take()) == [["#c", "url", "*", "https://example.org/"]]
    assert outsider.take() == []


def test_notifications_carry_server_time_to_those_who_asked(connect: Connect) -> None:
    a, b = channel(connect, ("alice", META), ("bob", (*META, "server-time")))
    b.send("METADATA * SUB k")
    b.take()
    a.send("METADATA * SET k :v")
    assert "time" in b.take()[0].tags


# -------------------------------------------------------- SUB, UNSUB, SUBS
def test_sub_unsub_subs(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * SUB avatar website foo bar")
    assert [(m.command, m.params) for m in a.take()] == [
        (N.RPL_METADATASUBOK, ["alice", "avatar website foo bar"])
    ]
    a.send("METADATA alice UNSUB foo bar nothere")
    assert [(m.command, m.params) for m in a.take()] == [
        (N.RPL_METADATAUNSUBOK, ["alice", "foo bar nothere"])
    ]
    a.send("METADATA * SUBS")
    params, inner = one_batch(a.take())
    assert params == ["metadata-subs"]
    assert [(m.command, m.params) for m in inner] == [
        (N.RPL_METADATASUBS, ["alice", "avatar website"])
    ]
    a.send("METADATA * UNSUB avatar website")
    a.take()
    assert a.session.metadata.subs is None
    a.send("METADATA * SUBS")
    assert one_batch(a.take()) == (["metadata-subs"], [])


def test_sub_reports_invalid_keys_and_goes_on(connect: Connect) -> None:
    a = connect("alice", caps=META)
    a.send("METADATA * SUB foo $url bar")
    got = a.take()
    assert fails(got) == [["METADATA", "KEY_INVALID", "$url", "invalid key"]]
    assert [m.params for m in got if m.command == N.RPL_METADATASUBOK] == [["alice", "foo bar"]]
    a.send("METADATA * UNSUB $url foo")
    got = a.take()
    assert fails(got) == [["METADATA", "KEY_INVALID", "$url", "invalid key"]]
    assert [m.params for m in got if m.command == N.RPL_METADATAUNSUBOK] == [["alice", "foo"]]


def test_too_many_subs_names_the_first_key_not_processed(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    a = peers_on(meta_core(max_subs=3), clock)("alice", caps=META)
    a.send("METADATA * SUB avatar website")
    a.take()
    a.send("METADATA * SUB website foo avatar bar baz")
    got = a.take()
    assert fails(got) == [["METADATA", "TOO_MANY_SUBS", "bar", "too many subscriptions"]]
    assert [m.params for m in got if m.command == N.RPL_METADATASUBOK] == [
        ["alice", "website foo avatar"]
    ]
    assert a.session.metadata.subs == {"avatar", "website", "foo"}


def test_sub_unsub_and_subs_only_target_oneself(connect: Connect) -> None:
    a = connect("alice", caps=META)
    connect("bob", caps=META)
    for line in ("METADATA bob SUB k", "METADATA bob UNSUB k", "METADATA #c SUBS"):
        a.send(line)
        assert fails(a.take())[0][:3] == ["METADATA", "INVALID_TARGET", line.split()[1]]
    assert a.session.metadata is None or a.session.metadata.subs is None


def test_subok_is_split_into_lines_of_512_bytes(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    a = peers_on(meta_core(max_subs=200), clock)("alice", caps=META)
    keys = [f"{i:02d}" + "k" * 60 for i in range(40)]
    for start in range(0, 40, 7):  # several lines (each within 512 bytes)
        a.send("METADATA * SUB " + " ".join(keys[start : start + 7]))
    got = [m for m in a.take() if m.command == N.RPL_METADATASUBOK]
    assert [k for m in got for k in m.params[-1].split()] == keys
    a.send("METADATA * SUBS")
    _, inner = one_batch(a.take())
    assert len(inner) > 1
    assert [k for m in inner for k in m.params[-1].split()] == sorted(keys)
    assert all(len(line) <= 510 for line in wire_lines(a))


# --------------------------------------------------------------------- SYNC
def test_sync_of_a_channel_sends_subscribed_keys_of_it_and_its_members(connect: Connect) -> None:
    a, b, c = channel(connect, ("alice", META), ("bob", META), ("carol", META))
    a.send("METADATA #c SET topic-url :https://x")
    a.send("METADATA * SET avatar :a.png")
    b.send("METADATA * SET avatar :b.png")
    b.send("METADATA * SET secret :not subscribed")
    c.send("METADATA * SUB avatar topic-url")
    for p in (a, b, c):
        p.take()
    c.send("METADATA #c SYNC")
    params, inner = one_batch(c.take())
    assert params == ["metadata", "#c"]
    assert sorted(m.params for m in inner) == [
        ["#c", "topic-url", "*", "https://x"],
        ["alice", "avatar", "*", "a.png"],
        ["bob", "avatar", "*", "b.png"],
    ]
    assert {m.command for m in inner} == {"METADATA"}


def test_sync_of_a_user_and_without_subscriptions(connect: Connect) -> None:
    a, b = connect("alice", caps=META), connect("bob", caps=META)
    a.send("METADATA * SET avatar :a.png")
    a.take()
    b.send("METADATA alice SYNC")
    assert one_batch(b.take()) == (["metadata", "alice"], [])
    b.send("METADATA * SUB avatar")
    b.take()
    b.send("METADATA alice SYNC")
    assert notes(one_batch(b.take())[1]) == [["alice", "avatar", "*", "a.png"]]


def test_an_outsider_does_not_sync_invisible_members(connect: Connect) -> None:
    a, b = channel(connect, ("alice", META), ("bob", META))
    b.send("MODE bob +i")
    for p in (a, b):
        p.send("METADATA * SET avatar :x")
        p.take()
    outsider = connect("outsider", caps=META)
    outsider.send("METADATA * SUB avatar")
    outsider.take()
    outsider.send("METADATA #c SYNC")
    assert notes(one_batch(outsider.take())[1]) == [["alice", "avatar", "*", "x"]]


def test_a_sync_over_the_budget_is_774_with_a_retry_time(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    connect = peers_on(meta_core(sync_burst=5, sync_rate=1.0), clock)
    members = channel(connect, *[(f"u{i}", META) for i in range(4)])
    asker = members[0]
    asker.send("METADATA * SUB avatar")
    for p in members:
        p.send("METADATA * SET avatar :x")
        p.take()
    asker.take()  # the notifications of those SETs
    asker.send("METADATA #c SYNC")  # 4 lines of 5
    assert len(one_batch(asker.take())[1]) == 4
    asker.send("METADATA #c SYNC")  # 1 left: come back in 3 seconds
    assert [(m.command, m.params) for m in asker.take()] == [
        (N.RPL_METADATASYNCLATER, ["u0", "#c", "3"])
    ]
    clock.advance(3.0)
    asker.send("METADATA #c SYNC")
    assert len(one_batch(asker.take())[1]) == 4


def test_a_sync_larger_than_the_burst_goes_when_the_budget_is_full(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    connect = peers_on(meta_core(sync_burst=2, sync_rate=1.0), clock)
    members = channel(connect, *[(f"u{i}", META) for i in range(4)])
    asker = members[0]
    asker.send("METADATA * SUB avatar")
    for p in members:
        p.send("METADATA * SET avatar :x")
        p.take()
    asker.take()  # the notifications of those SETs
    asker.send("METADATA #c SYNC")
    assert len(one_batch(asker.take())[1]) == 4
    asker.send("METADATA #c SYNC")
    # 4 lines of a budget of 2 left it at -2: full again in 4 seconds
    assert asker.take()[0].params == ["u0", "#c", "4"]
    clock.advance(4.0)
    asker.send("METADATA #c SYNC")
    assert len(one_batch(asker.take())[1]) == 4


# --------------------------------------------------------------------- JOIN
def test_joining_sends_the_channels_metadata_after_names(connect: Connect) -> None:
    (a,) = channel(connect, ("alice", META))
    a.send("METADATA #c SET url :https://c")
    a.send("METADATA * SET avatar :a.png")
    a.take()
    b = connect("bob", caps=META)
    b.send("METADATA * SUB url avatar")
    b.take()
    b.send("JOIN #c")
    got = b.take()
    commands = [m.command for m in got]
    assert commands[:1] == ["JOIN"] and N.RPL_ENDOFNAMES in commands
    after = got[commands.index(N.RPL_ENDOFNAMES) + 1 :]
    params, inner = one_batch(after)
    assert params == ["metadata", "#c"]
    assert notes(inner) == [["#c", "url", "*", "https://c"], ["alice", "avatar", "*", "a.png"]]


def test_joining_without_subscriptions_or_the_cap_sends_no_batch(connect: Connect) -> None:
    (a,) = channel(connect, ("alice", META))
    a.send("METADATA #c SET url :https://c")
    plain = connect("plain", caps=("batch",))
    plain.send("METADATA * SUB url")  # subscribed, but without the capability
    aware = connect("aware", caps=META)  # the capability, no subscriptions
    for p in (plain, aware):
        p.take()
        p.send("JOIN #c")
        assert "BATCH" not in [m.command for m in p.take()]


def test_joining_many_channels_past_the_budget_is_774_for_the_rest(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    connect = peers_on(meta_core(sync_burst=3, sync_rate=0.5), clock)
    owner = connect("owner", caps=META)
    for i in range(5):
        owner.send(f"JOIN #c{i}")
        owner.send(f"METADATA #c{i} SET url :u{i}")
    owner.take()
    b = connect("bob", caps=META)
    b.send("METADATA * SUB url")
    b.take()
    b.send("JOIN #c0,#c1,#c2,#c3,#c4")
    got = b.take()
    synced = [params[1] for params, _ in batches(got)]
    later = [m.params[1:] for m in got if m.command == N.RPL_METADATASYNCLATER]
    assert synced == ["#c0", "#c1", "#c2"]
    assert later == [["#c3", "2"], ["#c4", "2"]]


def test_subscribing_after_joining_sends_the_new_keys_current_values(connect: Connect) -> None:
    a, b = channel(connect, ("alice", META), ("bob", META))
    a.send("METADATA * SET avatar :a.png")
    a.send("METADATA * SET status :busy")
    a.take()
    b.send("METADATA * SUB avatar")
    got = b.take()
    assert got[0].command == N.RPL_METADATASUBOK
    assert notes(one_batch(got[1:])[1]) == [["alice", "avatar", "*", "a.png"]]
    b.send("METADATA * SUB avatar status")  # only status is new
    got = b.take()
    assert notes(one_batch(got[1:])[1]) == [["alice", "status", "*", "busy"]]
    b.send("METADATA * SUB avatar nothing-set")  # nothing new is set: no batch
    assert [m.command for m in b.take()] == [N.RPL_METADATASUBOK]


# ----------------------------------------------------------- before-connect
def test_before_connect_keys_set_during_registration_come_back_in_the_burst(
    connect: Connect,
) -> None:
    p = connect()
    p.send("CAP LS 302")
    p.send(f"CAP REQ :batch {CAP}")
    p.take()
    p.send("METADATA * SUB display-name")
    p.send("METADATA * SET display-name :a b c")
    assert [(m.command, m.params) for m in p.take()] == [
        (N.RPL_METADATASUBOK, ["*", "display-name"]),
        (N.RPL_KEYVALUE, ["*", "*", "display-name", "*", "a b c"]),
    ]
    p.send("NICK abc")
    p.send("USER u 0 * :U")
    p.send("CAP END")
    got = p.take()
    commands = [m.command for m in got]
    assert commands[0] == N.RPL_WELCOME and commands[-1] == N.RPL_ENDOFMOTD
    start = commands.index("BATCH")
    params, inner = one_batch(got[start : start + 3])
    assert params == ["metadata", "abc"]
    assert notes(inner) == [["abc", "display-name", "*", "a b c"]]
    assert start < commands.index(N.RPL_MOTDSTART)
    p.send("METADATA * LIST")
    assert keyvalues(one_batch(p.take())[1]) == [["abc", "display-name", "*", "a b c"]]
    p.send("METADATA * SUBS")
    assert one_batch(p.take())[1][0].params == ["abc", "display-name"]


def test_the_burst_has_an_empty_batch_when_there_is_no_metadata(connect: Connect) -> None:
    p = connect()
    p.send(f"CAP REQ :batch {CAP}")
    p.send("NICK abc")
    p.send("USER u 0 * :U")
    p.send("CAP END")
    assert batches(p.take()) == [(["metadata", "abc"], [])]
    q = connect()
    q.send("NICK plain")
    q.send("USER u 0 * :U")
    assert "BATCH" not in [m.command for m in q.take()]


def test_before_registration_only_star_is_a_target(connect: Connect) -> None:
    connect("bob", caps=META)
    p = connect()
    p.send("NICK abc")
    for line in ("METADATA bob GET k", "METADATA abc SET k :v", "METADATA #c LIST"):
        p.send(line)
        assert fails(p.take())[0][:3] == ["METADATA", "INVALID_TARGET", line.split()[1]]


def test_without_before_connect_metadata_waits_for_registration(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    p = Peer(meta_core(before_connect=False), clock)
    p.send("METADATA * SET k :v")
    assert [m.command for m in p.take()] == [N.ERR_NOTREGISTERED]
    assert p.user.metadata is None


def test_metadata_limits_apply_before_registration_too(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    p = Peer(meta_core(max_keys=1, max_subs=1), clock)
    p.send("METADATA * SET a :1")
    p.send("METADATA * SET b :2")
    p.send("METADATA * SUB x y")
    got = p.take()
    assert [f[1] for f in fails(got)] == ["LIMIT_REACHED", "TOO_MANY_SUBS"]


def test_help_describes_metadata(connect: Connect) -> None:
    a = connect("alice")
    a.send("HELP METADATA")
    text = " ".join(m.params[-1] for m in a.take())
    assert "METADATA <target>" in text and "draft/metadata-2" in text


def test_every_metadata_line_fits_512_bytes_with_the_longest_names(
    meta_core: Callable[..., ServerCore], clock: Clock
) -> None:
    """Longest nick, channel name, key and value: every reply, notification and
    synced line is within 512 bytes (tags aside)."""
    core = meta_core(max_value_bytes=400)
    connect = peers_on(core, clock)
    nick = "n" * core.limits.nicklen
    watcher_nick = "w" * core.limits.nicklen
    chan = "#" + "c" * (core.limits.channellen - 1)
    key = "k" * 64
    a, w = connect(nick, caps=META), connect(watcher_nick, caps=META)
    for p in (a, w):
        p.send(f"JOIN {chan}")
    w.send(f"METADATA * SUB {key}")
    value = "v" * 400
    while True:  # the longest value the server takes for the channel
        a.send(f"METADATA {chan} SET {key} :{value}")
        if a.take()[0].command == N.RPL_KEYVALUE:
            break
        value = value[:-1]
    a.send(f"METADATA * SET {key} :{value}")
    w.send(f"METADATA {chan} SYNC")
    w.send(f"METADATA {chan} GET {key}")
    w.send(f"METADATA {nick} LIST")
    a.take()
    w.take()
    for peer in (a, w):
        for line in wire_lines(peer):
            body = line.split(b" ", 1)[1] if line.startswith(b"@") else line
            assert len(body) <= 510, line
