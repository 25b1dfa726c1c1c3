"""Server bans on the core: KLINE, UNKLINE, DLINE, UNDLINE, their checks at connect
and registration, their expiry, and the ServerBans class on its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coreharness import OPER_HASH, Clock, Peer, advance, new_core, only, oper_up, user
from relaychat.config import Config, LimitsConfig, OperConfig
from relaychat.protocol import numerics as N
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message
from relaychat.protocol.serverbans import (
    DLINE,
    KLINE,
    MAX_DURATION,
    ServerBans,
    format_duration,
    normalize_dline,
    normalize_kline,
    parse_duration,
)
from relaychat.store.sqlite import SQLiteStore

OPERS = {"admin": OperConfig(OPER_HASH)}


@pytest.fixture
def core(make_core: Callable[..., ServerCore]) -> ServerCore:
    # no PINGs while the clock jumps by hours (nobody here answers them)
    return make_core(
        Config(opers=OPERS), flood_rate=0.0, max_connections_per_ip=0, ping_interval=86400.0
    )


def fails(msgs: list[Message]) -> list[list[str]]:
    return [m.params for m in msgs if m.command == "FAIL"]


def notices(msgs: list[Message]) -> list[str]:
    return [m.params[-1] for m in msgs if m.command == "NOTICE"]


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("30m", 1800),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1y", 365 * 86400),
        ("1d12h", 129600),
        ("45s", 45),
    ],
)
def test_durations_in_seconds_or_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "1x", "h", "-5", "1.5h", "²", "1h 30m", "1H", "11y", "99999999999", "m30"]
)
def test_malformed_or_too_long_durations_are_refused(text: str) -> None:
    assert parse_duration(text) is None


def test_durations_up_to_ten_years() -> None:
    assert parse_duration(str(MAX_DURATION)) == MAX_DURATION
    assert parse_duration(str(MAX_DURATION + 1)) is None


def test_format_duration() -> None:
    assert format_duration(0) == "permanent"
    assert format_duration(5400) == "1h30m"
    assert format_duration(8 * 86400 + 1) == "1w1d1s"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("*@*.example.org", "*@*.example.org"),
        ("~bot@192.0.2.7", "~bot@192.0.2.7"),
        ("*@10.1.2.3/8", "*@10.0.0.0/8"),
        ("*@2001:db8::5/32", "*@2001:db8::/32"),
        ("u?er@h*", "u?er@h*"),
    ],
)
def test_kline_masks_are_normalised(text: str, canonical: str) -> None:
    assert normalize_kline(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nick!user@host",
        "user@",
        "@host",
        "a@b@c",
        "no-at-sign",
        "u h@x",
        "u,v@x",
        ":u@x",
        "*@10.0.0.0/33",
        "*@not/a/net",
        "u@" + "h" * 200,
        "u@\x01host",
    ],
)
def test_malformed_kline_masks_are_refused(text: str) -> None:
    assert normalize_kline(text) is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("192.0.2.7/24", "192.0.2.0/24"),
        ("192.0.2.7/32", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("2001:DB8::1", "2001:db8::1"),
    ],
)
def test_dline_masks_are_normalised(text: str, canonical: str) -> None:
    assert normalize_dline(text) == canonical


@pytest.mark.parametrize(
    "text", ["", "nope", "192.0.2.7/33", "1.2.3", "*@1.2.3.4", "1.2.3.4/24/1", "٣.1.1.1"]
)
def test_malformed_dline_masks_are_refused(text: str) -> None:
    assert normalize_dline(text) is None


# --------------------------------------------------------------- the class
def fold(text: str) -> str:
    return text.lower()


def test_ban_list_add_replace_remove_and_capacity() -> None:
    bans = ServerBans(fold, capacity=2)
    first = bans.add(KLINE, "*@h", 0, "r1", "op", 0.0, 100.0)
    assert first is not None and first[1] is None
    again = bans.add(KLINE, "*@H", 60, "r2", "op", 0.0, 100.0)  # the same mask, folded
    assert again is not None and again[1] is first[0]
    assert len(bans) == 1 and bans.get(KLINE, "*@h") is again[0]
    assert bans.add(DLINE, "192.0.2.0/24", 0, "r", "op", 0.0, 0.0) is not None
    assert bans.add(DLINE, "192.0.2.9", 0, "r", "op", 0.0, 0.0) is None  # full
    assert bans.add(DLINE, "192.0.2.0/24", 5, "new", "op", 0.0, 0.0) is not None  # replaces
    assert [b.mask for b in bans.entries()] == ["*@H", "192.0.2.0/24"]
    removed = bans.remove(DLINE, "192.0.2.0/24")
    assert removed is not None and removed.reason == "new"
    assert bans.remove(DLINE, "192.0.2.0/24") is None
    assert not bans.has_dlines and bans.has_klines


def test_dline_lookup_by_prefix_for_v4_and_v6() -> None:
    bans = ServerBans(fold, capacity=100)
    for mask in ("192.0.2.0/24", "198.51.100.7", "2001:db8:1::/48", "2001:db8:2::9"):
        bans.add(DLINE, mask, 0, "r", "op", 0.0, 0.0)
    hit = bans.match_ip("192.0.2.200", 0.0)
    assert hit is not None and hit.mask == "192.0.2.0/24"
    assert bans.match_ip("::ffff:198.51.100.7", 0.0) is not None
    assert bans.match_ip("198.51.100.8", 0.0) is None
    assert bans.match_ip("2001:db8:1:ff::1", 0.0) is not None
    assert bans.match_ip("2001:db8:2::9", 0.0) is not None
    assert bans.match_ip("2001:db8:2::a", 0.0) is None
    assert bans.match_ip("unknown", 0.0) is None


def test_kline_matches_user_at_host_or_at_ip() -> None:
    bans = ServerBans(fold, capacity=100)
    bans.add(KLINE, "~evil@*.example.org", 0, "r", "op", 0.0, 0.0)
    bans.add(KLINE, "*@10.0.0.0/8", 0, "r", "op", 0.0, 0.0)
    bans.add(KLINE, "~x@192.0.2.1", 0, "exact", "op", 0.0, 0.0)
    assert bans.match_user("~EVIL", "box.EXAMPLE.org", "203.0.113.1", 0.0) is not None
    assert bans.match_user("~good", "box.example.org", "203.0.113.1", 0.0) is None
    assert bans.match_user("~any", "cloak.ip", "10.20.30.40", 0.0) is not None
    hit = bans.match_user("~x", "abcd.efgh.ip", "192.0.2.1", 0.0)  # by the real address
    assert hit is not None and hit.reason == "exact"
    assert bans.match_user("~x", "192.0.2.1", "192.0.2.1", 0.0) is not None


def test_expiry_is_lazy_on_lookup_and_removes_on_expire() -> None:
    bans = ServerBans(fold, capacity=100)
    bans.add(DLINE, "192.0.2.1", 60, "r", "op", 1000.0, 0.0)
    bans.add(KLINE, "*@h", 30, "r", "op", 1000.0, 0.0)
    bans.add(KLINE, "*@p", 0, "r", "op", 1000.0, 0.0)
    assert bans.next_expiry() == 1030.0
    assert bans.match_user("u", "h", "1.1.1.1", 1031.0) is None  # expired, not yet removed
    assert [b.mask for b in bans.expire(1031.0)] == ["*@h"]
    assert bans.next_expiry() == 1060.0
    assert bans.match_ip("192.0.2.1", 1059.0) is not None
    assert bans.match_ip("192.0.2.1", 1060.0) is None
    bans.remove(DLINE, "192.0.2.1")  # removed before its time: its deadline is dropped
    assert bans.next_expiry() is None
    assert bans.expire(2000.0) == []
    assert [b.mask for b in bans.entries()] == ["*@p"]


# ------------------------------------------------------------ permissions
@pytest.mark.parametrize(
    "command", ["KLINE *@h", "UNKLINE *@h", "DLINE 1.2.3.4", "UNDLINE 1.2.3.4"]
)
def test_ban_commands_are_for_operators(core: ServerCore, clock: Clock, command: str) -> None:
    a = user(core, clock, "alice")
    a.send(command)
    assert [m.command for m in a.take()] == [N.ERR_NOPRIVILEGES]
    assert len(core.bans) == 0


@pytest.mark.parametrize("command", ["KLINE", "UNKLINE", "DLINE", "UNDLINE"])
def test_ban_commands_without_a_mask_are_461(oper: Peer, command: str) -> None:
    oper.send(command)
    got = oper.take()
    assert [(m.command, m.params[1]) for m in got] == [(N.ERR_NEEDMOREPARAMS, command)]


# ------------------------------------------------------------------ KLINE
def test_kline_disconnects_matching_clients_and_channels_see_quit(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    victim = user(core, clock, "victim", "10.0.0.5")
    other = user(core, clock, "other", "10.0.0.6")
    watcher = user(core, clock, "watcher")
    for p in (victim, other, watcher):
        p.send("JOIN #c")
    watcher.take()
    victim.take()

    oper.send("KLINE *@10.0.0.5 :spamming the channel")
    got = victim.take()
    assert [m.command for m in got] == [N.ERR_YOUREBANNEDCREEP, "ERROR"]
    assert "spamming the channel" in only(got, N.ERR_YOUREBANNEDCREEP)[0].params[-1]
    assert victim.closed
    quits = only(watcher.take(), "QUIT")
    assert [(q.source or "").split("!")[0] for q in quits] == ["victim"]
    assert quits[0].params == ["K-Lined: spamming the channel"]
    assert not other.closed and core.find_user("other") is not None
    said = notices(oper.take())
    assert any("K-line for *@10.0.0.5 added (permanent): spamming the channel" in n for n in said)
    assert any("disconnected 1 client" in n for n in said)


def test_kline_is_checked_when_registration_completes(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    early = Peer(core, clock, "10.0.0.7")
    early.send("NICK early")  # registering, not yet done: a K-line spares it for now
    oper.send("KLINE ~early@10.0.0.7 :go away")
    assert not early.closed
    early.send("USER early 0 * :Early")
    got = early.take()
    assert [m.command for m in got] == [N.ERR_YOUREBANNEDCREEP, "ERROR"]
    assert early.closed and core.find_user("early") is None
    late = Peer(core, clock, "10.0.0.7")
    late.send("NICK late")
    late.send("USER other 0 * :x")  # another ident: not covered
    assert any(m.command == N.RPL_WELCOME for m in late.take())


def test_kline_with_a_duration_expires_and_says_so(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    oper.send("MODE oper +s +x")
    oper.send("KLINE 1h *@10.0.0.8 :cool off")
    oper.take()
    assert [(b.mask, b.duration) for b in core.bans.entries()] == [("*@10.0.0.8", 3600)]
    refused = Peer(core, clock, "10.0.0.8")
    refused.send("NICK a")
    refused.send("USER a 0 * :a")
    assert refused.closed
    advance(core, clock, 3599, step=600)
    assert len(core.bans) == 1
    advance(core, clock, 2)
    assert len(core.bans) == 0
    assert any("K-line for *@10.0.0.8 expired" in n for n in notices(oper.take()))
    welcome = Peer(core, clock, "10.0.0.8")
    welcome.register("back")


def test_kline_with_a_bad_duration_is_refused_and_adds_nothing(
    oper: Peer, core: ServerCore
) -> None:
    oper.send("KLINE 1x *@h :r")
    oper.send("KLINE 99y *@h")
    assert [f[:3] for f in fails(oper.take())] == [
        ["KLINE", "INVALID_DURATION", "1x"],
        ["KLINE", "INVALID_DURATION", "99y"],
    ]
    assert len(core.bans) == 0


@pytest.mark.parametrize("mask", ["nick!u@h", "justanick", "u@", "1h", "*@10.0.0.0/40"])
def test_kline_with_a_bad_mask_is_refused_and_adds_nothing(
    oper: Peer, core: ServerCore, mask: str
) -> None:
    oper.send(f"KLINE {mask}")
    oper.send(f"KLINE 1h {mask} :reason")
    assert [f[:2] for f in fails(oper.take())] == [["KLINE", "INVALID_MASK"]] * 2
    assert len(core.bans) == 0


def test_kline_that_would_match_its_setter_is_refused(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    bystander = user(core, clock, "bystander")
    oper.send("KLINE *@127.0.0.1 :oops")
    oper.send("KLINE *@* :everyone")
    assert [f[:3] for f in fails(oper.take())] == [
        ["KLINE", "MATCHES_YOU", "*@127.0.0.1"],
        ["KLINE", "MATCHES_YOU", "*@*"],
    ]
    assert len(core.bans) == 0 and not bystander.closed


def test_full_ban_list_refuses_new_bans_but_replaces_old_ones(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(Config(opers=OPERS), flood_rate=0.0, max_server_bans=2)
    op = user(core, clock, "oper")
    oper_up(op)
    op.send("KLINE *@a")
    op.send("DLINE 192.0.2.1")
    op.take()
    op.send("KLINE *@b")
    assert [f[:3] for f in fails(op.take())] == [["KLINE", "LIST_FULL", "*@b"]]
    op.send("KLINE 2h *@a :new reason")
    got = notices(op.take())
    assert any("K-line for *@a updated (2h): new reason" in n for n in got)
    assert [(b.mask, b.reason) for b in core.bans.entries()] == [
        ("*@a", "new reason"),
        ("192.0.2.1", "No reason given"),
    ]


def test_unkline_removes_and_unknown_or_bad_masks_fail(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    oper.send("KLINE *@10.0.0.9")
    oper.take()
    oper.send("UNKLINE *@10.0.0.10")
    oper.send("UNKLINE not-a-mask")
    assert [f[:3] for f in fails(oper.take())] == [
        ["UNKLINE", "NOT_FOUND", "*@10.0.0.10"],
        ["UNKLINE", "INVALID_MASK", "not-a-mask"],
    ]
    assert len(core.bans) == 1
    oper.send("UNKLINE *@10.0.0.9")
    assert any("removed" in n for n in notices(oper.take()))
    assert len(core.bans) == 0
    user(core, clock, "free", "10.0.0.9")


# ------------------------------------------------------------------ DLINE
def test_dline_refuses_a_connection_before_registration(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    oper.send("DLINE 192.0.2.0/24 :bad network")
    oper.take()
    refused = Peer(core, clock, "192.0.2.77")
    assert refused.closed
    got = refused.take()
    assert [m.command for m in got] == ["ERROR"]
    assert "D-Lined: bad network" in got[0].params[-1]
    assert refused.session.conn_id not in core.sessions
    assert core.per_ip.get("192.0.2.77") is None
    refused.send("NICK late")  # anything it sends now is ignored
    assert refused.take() == []
    ok = Peer(core, clock, "192.0.3.1")
    ok.register("neighbour")


def test_dline_drops_connected_clients_registered_or_not(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    watcher = user(core, clock, "watcher")
    watcher.send("JOIN #c")
    members = [user(core, clock, f"m{i}", f"2001:db8::{i + 1}") for i in range(3)]
    for m in members:
        m.send("JOIN #c")
    half = Peer(core, clock, "2001:db8::99")
    half.send("NICK half")
    outside = user(core, clock, "outside", "2001:db9::1")
    watcher.take()

    oper.send("DLINE 1d 2001:db8::/32 :bad net")
    assert all(m.closed for m in members) and half.closed
    assert not outside.closed
    quits = only(watcher.take(), "QUIT")
    assert sorted((q.source or "").split("!")[0] for q in quits) == ["m0", "m1", "m2"]
    assert {q.params[0] for q in quits} == {"D-Lined: bad net"}
    assert any("disconnected 4 client(s)" in n for n in notices(oper.take()))


def test_dline_errors_add_nothing(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("DLINE 192.0.2.1/33")
    oper.send("DLINE 5q 192.0.2.1 :r")
    oper.send("DLINE 127.0.0.0/8 :me too")
    oper.send("DLINE 0::ffff:127.0.0.1")
    assert [f[:3] for f in fails(oper.take())] == [
        ["DLINE", "INVALID_MASK", "192.0.2.1/33"],
        ["DLINE", "INVALID_DURATION", "5q"],
        ["DLINE", "MATCHES_YOU", "127.0.0.0/8"],
        ["DLINE", "MATCHES_YOU", "127.0.0.1"],
    ]
    assert len(core.bans) == 0


def test_dline_with_a_number_first_takes_it_as_seconds(oper: Peer, core: ServerCore) -> None:
    oper.send("DLINE 90 192.0.2.1")
    oper.send("DLINE 192.0.2.2 :no duration")
    oper.take()
    assert [(b.mask, b.duration, b.reason) for b in core.bans.entries()] == [
        ("192.0.2.1", 90, "No reason given"),
        ("192.0.2.2", 0, "no duration"),
    ]


def test_timed_dline_lets_the_address_back_in_after_it_expires(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    oper.send("DLINE 30m 198.51.100.4")
    oper.take()
    assert Peer(core, clock, "198.51.100.4").closed
    advance(core, clock, 1801, step=300)
    back = Peer(core, clock, "198.51.100.4")
    back.register("back")


def test_undline(core: ServerCore, clock: Clock, oper: Peer) -> None:
    oper.send("DLINE 198.51.100.0/24")
    oper.send("UNDLINE 198.51.100.0/25")
    oper.send("UNDLINE 198.51.100.300")
    assert [f[:3] for f in fails(oper.take())] == [
        ["UNDLINE", "NOT_FOUND", "198.51.100.0/25"],
        ["UNDLINE", "INVALID_MASK", "198.51.100.300"],
    ]
    oper.send("UNDLINE 198.51.100.9/24")  # the same network, written another way
    assert any("198.51.100.0/24 removed" in n for n in notices(oper.take()))
    Peer(core, clock, "198.51.100.9").register("free")


def test_expired_ban_timer_survives_removal_and_replacement(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    """Deadlines move (a ban replaced by a shorter one, a ban removed early): the
    expiry timer follows, and a stale deadline does nothing."""
    oper.send("KLINE 1h *@192.0.2.50")
    oper.send("KLINE 10m *@192.0.2.50")  # replaced: now ends sooner
    oper.send("DLINE 20m 192.0.2.51")
    oper.send("UNDLINE 192.0.2.51")
    oper.take()
    advance(core, clock, 601, step=60)
    assert len(core.bans) == 0
    advance(core, clock, 3600, step=600)
    assert len(core.bans) == 0


def test_long_masks_and_reasons_keep_every_line_within_512_bytes(
    make_core: Callable[..., ServerCore], clock: Clock
) -> None:
    core = make_core(Config(opers=OPERS), flood_rate=0.0, line_length=2048)
    op = Peer(core, clock)
    op.register("o" * 30)
    oper_up(op, "admin")
    op.send(f"MODE {'o' * 30} +s +x")
    mask = "~" + "u" * 17 + "@" + "h" * 169 + ".example.org"  # 200 bytes
    reason = "é" * 300  # cut to 200 bytes
    victim = Peer(core, clock, "192.0.2.1")
    victim.send("NICK " + "v" * 30)
    victim.send("USER " + "u" * 17 + " 0 * :x")
    victim.user.host = "h" * 169 + ".example.org"  # as a long host would be
    op.send(f"KLINE 1w {mask} :{reason}")
    op.send(f"KLINE 1x{'1' * 1000} {mask}")  # a long bad duration, echoed cut
    op.send("KLINE " + "x" * 1500)  # a long bad mask, echoed cut
    op.send("STATS k")
    op.send(f"UNKLINE {mask}")
    lines = b"".join(op.raw).split(b"\r\n")
    assert lines.pop() == b""
    assert all(len(line) + 2 <= 512 for line in lines), max(lines, key=len)
    assert victim.closed
    for line in lines:
        line.decode("utf-8")  # never cut inside a character


# ------------------------------------------------------------ persistence
@pytest.fixture
def file_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "bans.db"), commit_ms=0.0)
    yield s
    s.close()


def start(store: SQLiteStore, clock: Clock) -> ServerCore:
    """A core on ``store``: a second one on the same store is a restart."""
    limits = dataclasses.replace(
        LimitsConfig(), flood_rate=0.0, max_connections_per_ip=0, ping_interval=86400.0
    )
    return new_core(Config(opers=OPERS, limits=limits), clock, store=store)


def oper_on(core: ServerCore, clock: Clock) -> Peer:
    p = user(core, clock, "oper")
    oper_up(p)
    p.take()
    return p


def test_bans_survive_a_restart_on_the_same_store(clock: Clock, file_store: SQLiteStore) -> None:
    first = start(file_store, clock)
    oper = oper_on(first, clock)
    oper.send("KLINE ~bot@10.0.0.* :no bots")
    oper.send("DLINE 1h 192.0.2.0/24 :bad network")
    assert not any("not persisted" in n for n in notices(oper.take()))

    clock.advance(600)  # down for ten minutes
    second = start(file_store, clock)
    got = [(b.kind, b.mask, b.reason, b.setter) for b in second.bans.entries()]
    assert got == [
        (KLINE, "~bot@10.0.0.*", "no bots", oper.user.prefix),
        (DLINE, "192.0.2.0/24", "bad network", oper.user.prefix),
    ]
    refused = Peer(second, clock, "192.0.2.5")
    assert refused.closed
    bot = Peer(second, clock, "10.0.0.1")
    bot.send("NICK bot")
    bot.send("USER bot 0 * :b")
    assert bot.closed
    # the D-line ends when it would have: at 1h after it was set, not 1h after the restart
    dline = second.bans.get(DLINE, "192.0.2.0/24")
    assert dline is not None and dline.expires == pytest.approx(clock.mono + 3000)
    advance(second, clock, 3001, step=600)
    assert second.bans.get(DLINE, "192.0.2.0/24") is None
    # and its expiry deleted it from the store
    assert [r.mask for r in file_store.server_bans(clock.wall - 3600)] == ["~bot@10.0.0.*"]


def test_unkline_and_undline_persist(clock: Clock, file_store: SQLiteStore) -> None:
    first = start(file_store, clock)
    oper = oper_on(first, clock)
    oper.send("KLINE *@10.0.0.9 :x")
    oper.send("DLINE 198.51.100.7 :y")
    oper.send("UNKLINE *@10.0.0.9")
    oper.send("UNDLINE 198.51.100.7")
    assert len(first.bans) == 0
    assert len(start(file_store, clock).bans) == 0
    assert file_store.server_bans(clock.wall) == []


def test_a_ban_replaced_under_another_spelling_is_one_row(
    clock: Clock, file_store: SQLiteStore
) -> None:
    oper = oper_on(start(file_store, clock), clock)
    oper.send("KLINE *@Host.Example :first")
    oper.send("KLINE 1d *@host.example :second")
    rows = file_store.server_bans(clock.wall)
    assert [(r.mask, r.reason, r.expires) for r in rows] == [
        ("*@host.example", "second", clock.wall + 86400)
    ]


def test_an_expired_ban_is_not_loaded(clock: Clock, file_store: SQLiteStore) -> None:
    oper = oper_on(start(file_store, clock), clock)
    oper.send("DLINE 60 192.0.2.1 :short")
    oper.send("KLINE *@kept :long")
    clock.advance(120)  # the server was down when the D-line ended
    second = start(file_store, clock)
    assert [b.mask for b in second.bans.entries()] == ["*@kept"]
    assert not Peer(second, clock, "192.0.2.1").closed
    assert [r.mask for r in file_store.server_bans(0.0)] == ["*@kept"]  # the row is gone


def test_a_ban_the_store_cannot_write_is_in_force_and_the_oper_is_told(
    core: ServerCore, clock: Clock, oper: Peer
) -> None:
    assert core.store is not None
    core.store.close()
    oper.send("KLINE *@10.0.0.10 :unsaved")
    assert core.bans.get(KLINE, "*@10.0.0.10") is not None
    said = notices(oper.take())
    assert any("K-line for *@10.0.0.10 added" in n for n in said)
    assert any("not persisted" in n for n in said), said
