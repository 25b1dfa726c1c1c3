"""Attacks over real sockets, for both engines, with other clients watching: forged
lines, stale or borrowed privileges, peers that stop reading or flood, inputs made
to multiply output or work. Each test states what the attacker gets (nothing) and
what everyone else sees (business as usual)."""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Callable
from typing import Any

from ircutil import RawClient, wait_for
from relaychat.protocol.message import Message
from relaychat.server.driver import CLOSE_DEADLINE

Connect = Callable[..., RawClient]


def nick_of(msg: Message) -> str | None:
    return msg.source.split("!", 1)[0] if msg.source else None


def from_(nick: str, command: str) -> Callable[[Message], bool]:
    return lambda m: m.command == command and nick_of(m) == nick


def commands(msgs: list[Message]) -> list[str]:
    return [m.command for m in msgs]


# --------------------------------------------------------------- forged lines
def test_lone_cr_ends_the_line_so_a_forged_source_is_never_relayed(
    irc_server: Any, connect: Connect
) -> None:
    bob = connect(irc_server, keep_raw=True)
    bob.register("bob")
    alice = connect(irc_server, "alice")
    bob.join("#c")
    alice.join("#c")
    bob.expect(from_("alice", "JOIN"))

    alice.send(b"PRIVMSG #c :hi\r:root!root@server PRIVMSG #c :forged\r\n")
    assert alice.sync() == []  # two lines, both handled, nothing to answer

    got = [m for m in bob.sync() if m.command == "PRIVMSG"]
    assert [(nick_of(m), m.params) for m in got] == [
        ("alice", ["#c", "hi"]),
        ("alice", ["#c", "forged"]),
    ]
    assert all(m.source is not None and m.source.startswith("alice!") for m in got)
    assert bob.raw is not None
    stream = bytes(bob.raw)
    assert stream.endswith(b"\r\n")
    assert b"\r" not in stream.replace(b"\r\n", b""), "a CR outside CRLF reached bob"
    assert b"\n" not in stream.replace(b"\r\n", b""), "an LF outside CRLF reached bob"
    assert b"root!root@server" not in stream


# -------------------------------------------------------------------- invites
def test_invite_dies_with_the_channel_it_was_made_for(irc_server: Any, connect: Connect) -> None:
    alice, bob, carol = (connect(irc_server, n) for n in ("alice", "bob", "carol"))
    alice.join("#c")
    alice.send("MODE #c +i")
    alice.expect("MODE")
    alice.send("INVITE bob #c")
    assert alice.expect("341").params[1:3] == ["bob", "#c"]
    bob.expect(lambda m: m.command == "INVITE" and m.params == ["bob", "#c"])
    alice.send("PART #c")
    alice.expect("PART")  # the last member left: #c is gone

    carol.join("#c")  # a new #c, of which carol is the operator
    carol.send("MODE #c +i")
    assert carol.expect("MODE").params[:2] == ["#c", "+i"]
    bob.send("JOIN #c")
    reply = bob.expect(lambda m: m.command in ("473", "JOIN"))
    assert reply.command == "473" and reply.params[1] == "#c"
    assert not any(from_("bob", "JOIN")(m) for m in carol.sync())


def test_invite_is_used_up_by_the_join_it_allows(irc_server: Any, connect: Connect) -> None:
    alice, bob = (connect(irc_server, n) for n in ("alice", "bob"))
    alice.join("#c")
    alice.send("MODE #c +i")
    alice.expect("MODE")
    alice.send("INVITE bob #c")
    bob.expect("INVITE")
    bob.join("#c")
    bob.send("PART #c")
    bob.expect("PART")
    alice.expect(from_("bob", "PART"))

    bob.send("JOIN #c")
    reply = bob.expect(lambda m: m.command in ("473", "JOIN"))
    assert reply.command == "473" and reply.params[1] == "#c"
    assert not any(from_("bob", "JOIN")(m) for m in alice.sync())


def test_invite_from_a_non_operator_is_delivered_but_grants_nothing(
    irc_server: Any, connect: Connect
) -> None:
    alice, dave, bob = (connect(irc_server, n) for n in ("alice", "dave", "bob"))
    alice.join("#c")
    dave.join("#c")
    alice.send("MODE #c +b bob!*@*")
    assert dave.expect("MODE").params == ["#c", "+b", "bob!*@*"]

    dave.send("INVITE bob #c")  # #c is -i, so any member may send an INVITE
    assert dave.expect("341").params[1:3] == ["bob", "#c"]
    invite = bob.expect("INVITE")
    assert nick_of(invite) == "dave" and invite.params == ["bob", "#c"]

    bob.send("JOIN #c")
    reply = bob.expect(lambda m: m.command in ("474", "JOIN"))
    assert reply.command == "474" and reply.params[1] == "#c"
    assert not any(from_("bob", "JOIN")(m) for m in alice.sync())


def test_operator_invite_passes_ban_limit_and_invite_only_but_not_key(
    irc_server: Any, connect: Connect
) -> None:
    alice, bob = (connect(irc_server, n) for n in ("alice", "bob"))
    alice.join("#c")
    alice.send("MODE #c +ilb 1 bob!*@*")  # full, invite-only, and bob banned
    assert alice.expect("MODE").params == ["#c", "+ilb", "1", "bob!*@*"]
    bob.send("JOIN #c")
    assert bob.expect(lambda m: m.command in ("471", "473", "474", "JOIN")).command != "JOIN"

    alice.send("INVITE bob #c")
    bob.expect("INVITE")
    bob.join("#c")
    assert alice.expect(from_("bob", "JOIN")).params == ["#c"]

    alice.join("#k")
    alice.send("MODE #k +ik sesame")
    alice.expect("MODE")
    alice.send("INVITE bob #k")
    bob.expect("INVITE")
    bob.send("JOIN #k")
    reply = bob.expect(lambda m: m.command in ("475", "JOIN"))
    assert reply.command == "475" and reply.params[1] == "#k"
    bob.send("JOIN #k sesame")  # the key, and the invite (still unused) for +i
    bob.expect(lambda m: m.command == "366" and m.params[1] == "#k")
    assert alice.expect(from_("bob", "JOIN")).params == ["#k"]


# ---------------------------------------------------- peers that stop reading
def held_by_engine(server: Any, engine: str) -> set[Any]:
    """The connection objects the engine itself still holds."""
    return set(server.server.conns if engine == "threads" else server.server.connections)


def live_thread_names() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive()}


def test_client_that_quits_without_reading_is_gone_within_the_close_deadline(
    start_server: Callable[..., Any], engine: str, connect: Connect
) -> None:
    server = start_server(sendq=8 * 1024 * 1024)  # the close deadline ends it, not SendQ
    watcher = connect(server, "watcher")
    hog = connect(server, rcvbuf=4096)
    hog.register("hog")
    watcher.join("#c")
    hog.join("#c")
    watcher.expect(from_("hog", "JOIN"))
    user = server.core.find_user("hog")
    assert user is not None
    sess = user.sessions[0]
    conn = sess.handle
    assert conn in held_by_engine(server, engine)

    # about 900 KB of replies, far more than the kernel buffers hold; hog never reads
    hog.send(b"HELP\r\n" * 1500)
    wait_for(lambda: sess.backlog > 0, what="the server to hold output hog has not read")
    hog.send("QUIT :bye")
    quit_ = watcher.expect(from_("hog", "QUIT"))
    assert quit_.params == ["Quit: bye"]

    wait_for(
        lambda: conn not in held_by_engine(server, engine),
        timeout=CLOSE_DEADLINE + 8.0,
        what="the engine to let go of the connection",
    )
    if engine == "threads":
        name = f"relaychat-conn-{sess.conn_id}"
        wait_for(lambda: name not in live_thread_names(), what=f"{name} to end")
    assert sess.conn_id not in server.core.sessions
    watcher.send("PRIVMSG #c :still here")
    assert watcher.sync() == []


# ------------------------------------------------------------------- flooding
def test_flood_budget_counts_lines_not_reads(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    server = start_server(flood_rate=4.0, flood_burst=20, recvq=8192)
    member = connect(server, "member")
    sender = connect(server, "sender")  # NICK, USER: 2 of its 20 tokens
    member.join("#c")
    sender.join("#c")  # 1 more: 17 left
    member.expect(from_("sender", "JOIN"))

    # 486 bytes a line: short enough to be relayed uncut with sender's longer prefix
    texts = [f"{i:02d} " + "x" * 469 for i in range(17)]
    payload = "".join(f"PRIVMSG #c :{t}\r\n" for t in texts).encode()
    assert len(payload) > server.core.limits.recvq  # more than recvq in one write
    sender.send(payload)

    got = [member.expect(from_("sender", "PRIVMSG")).params for _ in texts]
    assert got == [["#c", t] for t in texts]
    sender.send("PING :kept")  # waits for a token, then answers
    reply = sender.expect(lambda m: m.command in ("PONG", "ERROR"))
    assert reply.command == "PONG" and not sender.closed
    assert not any(m.command == "QUIT" for m in member.sync())


def test_empty_lines_cost_flood_tokens_so_a_stream_of_them_is_excess_flood(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    server = start_server(flood_rate=4.0, flood_burst=20)
    watcher = connect(server, "watcher")
    streamer = connect(server, "streamer")
    watcher.join("#c")
    streamer.join("#c")
    watcher.expect(from_("streamer", "JOIN"))

    try:
        streamer.send(b"\n" * 100000 + b"PING :after\r\n")
    except OSError:
        pass  # cut off mid-way: what is being tested
    reply = streamer.expect(lambda m: m.command in ("ERROR", "PONG"))
    assert reply.command == "ERROR" and "Excess Flood" in reply.params[-1]
    quit_ = watcher.expect(from_("streamer", "QUIT"))
    assert quit_.params == ["Excess Flood"]


def test_a_client_streaming_empty_lines_does_not_hold_up_a_bystander(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    server = start_server(flood_rate=4.0, flood_burst=20)
    streamer = connect(server, "streamer")
    stop = threading.Event()

    def stream() -> None:
        chunk = b"\n" * 100000
        try:
            while not stop.is_set():
                streamer.sock.sendall(chunk)
        except OSError:
            pass  # the server hung up: allowed

    sending = threading.Thread(target=stream, name="test-streamer")
    sending.start()
    try:
        bystander = connect(server)
        bystander.register("bystander", timeout=5.0)
        bystander.join("#c")
        bystander.send("PING :fast")
        assert bystander.expect("PONG", timeout=5.0).params[-1] == "fast"
    finally:
        stop.set()
        sending.join(10)
    assert not sending.is_alive()


# ------------------------------------------------- output multiplied by input
def test_duplicate_targets_are_served_once(irc_server: Any, connect: Connect) -> None:
    alice, bob = (connect(irc_server, n) for n in ("alice", "bob"))
    alice.join("#c")
    bob.join("#c")
    alice.expect(from_("bob", "JOIN"))

    alice.send("PRIVMSG #c,#c,#C,#c :x")
    alice.send("PRIVMSG bob,BOB,bob :y")
    assert alice.sync() == []
    got = [m.params for m in bob.sync() if m.command == "PRIVMSG"]
    assert got == [["#c", "x"], ["bob", "y"]]

    bob.send("NAMES #c,#c")
    replies = bob.sync()
    assert commands(replies) == ["353", "366"]
    assert sorted(replies[0].params[-1].split()) == ["@alice", "bob"]
    assert replies[1].params[1] == "#c"


def test_names_over_targmax_is_407_for_the_extra_target(irc_server: Any, connect: Connect) -> None:
    alice, bob = (connect(irc_server, n) for n in ("alice", "bob"))
    bob.send("VERSION")
    tokens = [t for m in bob.sync() if m.command == "005" for t in m.params[1:-1]]
    targmax = next(t for t in tokens if t.startswith("TARGMAX="))
    assert "NAMES:1" in targmax.removeprefix("TARGMAX=").split(",")
    alice.join("#a")
    alice.join("#b")

    bob.send("NAMES #a,#b")
    replies = bob.sync()
    assert commands(replies) == ["407", "353", "366"]
    assert replies[0].params[1] == "#b"
    assert replies[2].params[1] == "#a"


def test_any_number_of_unknown_mode_letters_gets_one_error(
    irc_server: Any, connect: Connect
) -> None:
    alice, bob = (connect(irc_server, n) for n in ("alice", "bob"))
    alice.join("#c")
    bob.join("#c")
    alice.expect(from_("bob", "JOIN"))
    known = set("beIklimnstov")  # CHANMODES=beI,k,l,imnst and PREFIX=(ov)
    unknown = [c for c in string.ascii_letters if c not in known]
    letters = "".join(unknown[i % len(unknown)] for i in range(240))

    for who in (alice, bob):  # the operator, and a plain member
        who.send("MODE #c +" + letters)
        replies = who.sync()
        assert commands(replies) == ["472"], commands(replies)
        assert replies[0].params[1] == letters[0]
    assert not any(m.command == "MODE" for m in bob.sync())

    user_letters = "".join(c for c in letters if c not in "BiosZw")  # the user modes
    alice.send("MODE alice +" + user_letters)
    assert commands(alice.sync()) == ["501"]


# ------------------------------------------------------ escaping restrictions
def test_banned_member_cannot_change_nick_unless_voiced(irc_server: Any, connect: Connect) -> None:
    alice, bob, carol = (connect(irc_server, n) for n in ("alice", "bob", "carol"))
    for c in (alice, bob, carol):
        c.join("#c")
    alice.send("MODE #c +v carol")
    alice.send("MODE #c +bb bob!*@* carol!*@*")
    alice.sync()
    bob.sync()

    bob.send("NICK bob2")
    reply = bob.expect(lambda m: m.command in ("435", "NICK"))
    assert reply.command == "435"
    assert reply.params[:3] == ["bob", "bob2", "#c"]
    alice.send("ISON bob bob2")
    assert alice.expect("303").params[-1] == "bob"
    assert not any(m.command == "NICK" for m in alice.sync())

    carol.send("NICK carol2")  # voiced: may change nick while banned
    assert carol.expect(from_("carol", "NICK")).params == ["carol2"]
    assert alice.expect(from_("carol", "NICK")).params == ["carol2"]


def test_unregistered_connection_cannot_camp_on_a_nick(irc_server: Any, connect: Connect) -> None:
    camper = connect(irc_server)
    camper.send("NICK alice")
    assert camper.sync() == []  # accepted for now: nobody holds it

    alice = connect(irc_server, "alice")
    camper.send("USER x 0 * :x")
    reply = camper.expect(lambda m: m.command in ("433", "001"))
    assert reply.command == "433" and reply.params[1] == "alice"
    alice.send("ISON alice")
    assert alice.expect("303").params[-1] == "alice"

    camper.send("NICK alice2")  # may go on with another nick
    assert camper.expect(lambda m: m.command in ("433", "001")).command == "001"


def test_lists_of_a_secret_channel_are_shown_to_members_only(
    irc_server: Any, connect: Connect
) -> None:
    alice, bob = (connect(irc_server, n) for n in ("alice", "bob"))
    alice.join("#s")
    alice.join("#p")
    alice.send("MODE #s +s")
    for chan in ("#s", "#p"):
        alice.send(f"MODE {chan} +beI evil!*@* friend!*@* pal!*@*")
    alice.sync()

    for query, end in (("+b", "368"), ("b", "368"), ("e", "349"), ("I", "347")):
        bob.send(f"MODE #s {query}")
        assert commands(bob.sync()) == [end], query
        bob.send(f"MODE #p {query}")  # the same lists on a channel that is not +s
        assert len(bob.sync()) == 2, query
    alice.send("MODE #s +b")
    replies = alice.sync()
    assert commands(replies) == ["367", "368"]
    assert replies[0].params[1:3] == ["#s", "evil!*@*"]


# --------------------------------------------------------------- line lengths
def assert_lines_fit_512(stream: bytes) -> list[bytes]:
    lines = stream.split(b"\r\n")
    assert lines.pop() == b""
    for line in lines:
        assert len(line) + 2 <= 512, line
        line.decode("utf-8")  # never cut inside a character
    return lines


LONG_NICK = "L" + "o" * 28 + "g"  # NICKLEN=30


def test_relayed_message_from_a_long_nick_is_cut_to_512_bytes(
    irc_server: Any, connect: Connect
) -> None:
    bob = connect(irc_server, keep_raw=True)
    bob.register("bob")
    sender = connect(irc_server, LONG_NICK)
    bob.join("#c")
    sender.join("#c")
    bob.expect(from_(LONG_NICK, "JOIN"))

    texts = ["a" * 498, "é" * 249]  # 498 bytes each: lines of exactly 512 bytes
    for text in texts:
        line = f"PRIVMSG #c :{text}\r\n".encode()
        assert len(line) == 512
        sender.send(line)
    assert sender.sync() == []  # accepted (no 417)

    got = [m.params for m in bob.sync() if m.command == "PRIVMSG"]
    assert len(got) == 2
    for (target, text), sent in zip(got, texts, strict=True):
        assert target == "#c"
        assert text and sent.startswith(text) and len(text) < len(sent)
    assert bob.raw is not None
    assert_lines_fit_512(bytes(bob.raw))


def test_mode_with_long_masks_is_announced_in_lines_of_512_bytes(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    # a longer input line, so that four 200-character masks fit in one MODE command
    server = start_server(line_length=1024)
    op = connect(server, LONG_NICK)
    bob = connect(server, keep_raw=True)
    bob.register("bob")
    op.join("#c")
    bob.join("#c")
    op.expect(from_("bob", "JOIN"))
    masks = [c * 196 + "!*@*" for c in "abcd"]
    assert all(len(m) == 200 for m in masks)

    op.send("MODE #c +bbbb " + " ".join(masks))
    op.sync()
    modes = [m for m in bob.sync() if m.command == "MODE"]
    assert len(modes) >= 2
    announced = [p for m in modes for p in m.params[2:]]
    assert announced == masks
    assert all(set(m.params[1]) == {"+", "b"} for m in modes)
    assert bob.raw is not None
    assert_lines_fit_512(bytes(bob.raw))
    op.send("MODE #c b")
    assert [m.params[2] for m in op.sync() if m.command == "367"] == masks


def test_mode_announcement_fits_512_bytes_with_a_multibyte_source_and_channel(
    irc_server: Any, connect: Connect
) -> None:
    op = connect(irc_server)
    op.send(f"NICK {LONG_NICK}")
    op.send("USER " + "\U0001d538" * 17 + " 0 * :x")  # ident: 17 four-byte characters
    op.expect("376")
    bob = connect(irc_server, keep_raw=True)
    bob.register("bob")
    chan = "#" + "é" * 24  # CHANNELLEN=50 bytes: 49 of them, in 25 characters
    op.join(chan)
    bob.join(chan)
    op.expect(from_("bob", "JOIN"))
    masks = [c * 196 + "!*@*" for c in "ab"]

    op.send(f"MODE {chan} +bb {' '.join(masks)}")
    op.sync()
    modes = [m for m in bob.sync() if m.command == "MODE"]
    assert [p for m in modes for p in m.params[2:]] == masks
    assert bob.raw is not None
    assert_lines_fit_512(bytes(bob.raw))


def test_multibyte_ban_mask_never_makes_a_line_over_512_bytes(
    irc_server: Any, connect: Connect
) -> None:
    op = connect(irc_server, LONG_NICK)
    bob = connect(irc_server, keep_raw=True)
    bob.register("bob")
    op.join("#c")
    bob.join("#c")
    op.expect(from_("bob", "JOIN"))
    mask = "\U0001d538" * 120  # 120 characters, 480 bytes
    line = f"MODE #c +b {mask}\r\n".encode()
    assert len(line) <= 512

    op.send(line)  # refused or announced: either way in lines that fit
    op.sync()
    bob.sync()
    bob.send("MODE #c b")
    bob.sync()
    assert bob.raw is not None
    assert_lines_fit_512(bytes(bob.raw))


# -------------------------------------------------------------------- details
def test_joining_while_away_tells_away_notify_members_at_once(
    irc_server: Any, connect: Connect
) -> None:
    alice = connect(irc_server, "alice", caps=("away-notify",))
    carol = connect(irc_server, "carol")
    bob = connect(irc_server, "bob")
    alice.join("#c")
    carol.join("#c")
    bob.send("AWAY :gone fishing")
    bob.expect("306")

    bob.join("#c")
    seen = [(m.command, m.params) for m in alice.sync() if nick_of(m) == "bob"]
    assert seen == [("JOIN", ["#c"]), ("AWAY", ["gone fishing"])]
    seen = [(m.command, m.params) for m in carol.sync() if nick_of(m) == "bob"]
    assert seen == [("JOIN", ["#c"])]  # no away-notify: no AWAY


def test_user_with_an_empty_realname_is_461(irc_server: Any, connect: Connect) -> None:
    c = connect(irc_server)
    c.send("NICK nameless")
    c.send("USER x 0 * :")
    reply = c.expect(lambda m: m.command in ("461", "001"))
    assert reply.command == "461" and reply.params[:2] == ["nameless", "USER"]
    c.send("USER x 0 * :Named After All")
    assert c.expect(lambda m: m.command in ("461", "001")).command == "001"


def test_unicode_digits_are_not_numbers_and_crash_nothing(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    c = connect(irc_server, "digits")
    c.join("#c")
    cases: list[tuple[str, Callable[[list[Message]], bool]]] = [
        ("CAP LS ²", lambda r: commands(r) == ["CAP"] and r[0].params[1] == "LS"),
        ("CAP LS ³⁰²", lambda r: commands(r) == ["CAP"]),
        ("LIST >²", lambda r: commands(r) == ["321", "323"]),
        ("LIST C<²,T>٣", lambda r: commands(r) == ["321", "323"]),
        ("MODE #c +l ²", lambda r: commands(r) == ["696"]),
        ("MODE #c +l ١٢", lambda r: commands(r) == ["696"]),
        ("WHOWAS x ²", lambda r: commands(r)[-1] == "369"),
        ("WHO #c %n,²", lambda r: commands(r) == ["354", "315"]),
    ]
    for line, ok in cases:
        c.send(line)
        replies = c.sync()
        assert ok(replies), (line, [str(m) for m in replies])
    c.send("MODE #c")
    assert "l" not in c.expect("324").params[2]
    assert not c.closed


# ------------------------------------------------------------- costly queries
def test_names_flood_past_sendq_is_dropped_while_others_chat(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    server = start_server(sendq=8192)
    members = [connect(server, f"member{i:02d}" + "x" * 22) for i in range(30)]  # NICKLEN
    for m in members:
        m.join("#big")
    attacker = connect(server, rcvbuf=4096)
    attacker.register("attacker", caps=("userhost-in-names",))
    attacker.join("#big")
    watcher, talker = members[0], members[1]
    watcher.sync()
    talker.sync()

    # about 2 KB of names per NAMES, 500 of them in one write, never read
    attacker.send(b"NAMES #big\r\n" * 500)
    quit_ = watcher.expect(from_("attacker", "QUIT"))
    assert quit_.params == ["Max SendQ exceeded"]
    assert talker.expect(from_("attacker", "QUIT")).params == ["Max SendQ exceeded"]

    talker.send("PRIVMSG #big :still chatting")
    assert watcher.expect(from_(talker.nick or "", "PRIVMSG")).params[-1] == "still chatting"
    watcher.send("PRIVMSG #big :me too")
    assert talker.expect(from_(watcher.nick or "", "PRIVMSG")).params[-1] == "me too"
    assert server.core.find_user("attacker") is None
    attacker.wait_closed()


def test_list_with_more_than_eight_masks_is_407(irc_server: Any, connect: Connect) -> None:
    c = connect(irc_server, "lister")
    c.join("#m1")
    c.send("LIST " + ",".join(f"#m{i}" for i in range(1, 10)))
    replies = c.sync()
    assert commands(replies) == ["407"]
    assert replies[0].params[1] == "LIST"
    c.send("LIST " + ",".join(f"#m{i}" for i in range(1, 9)))
    assert commands(c.sync()) == ["321", "322", "323"]


def test_list_over_many_channels_costs_flood_tokens_and_others_stay_responsive(
    start_server: Callable[..., Any], connect: Connect
) -> None:
    channels = 1000
    server = start_server(flood_rate=4.0, flood_burst=20, chanlimit=channels)
    builder = connect(server, "builder")
    names = [f"#ch{i:04d}" for i in range(channels)]
    builder.send("".join(f"JOIN {','.join(names[i : i + 50])}\r\n" for i in range(0, channels, 50)))
    builder.expect(lambda m: m.command == "366" and m.params[1] == names[-1], timeout=30)
    attacker = connect(server, "attacker")
    bystander = connect(server, "bystander")

    # 8 masks over 1,000 channels: 1 + 1000 * 9 / 2000 = 5.5 tokens a LIST
    masks = ",".join(f"#nomatch{i}*" for i in range(8))
    lists = 5
    answered: list[float] = []

    def attacker_done() -> None:
        attacker.expect(lambda m: m.command == "PONG" and m.params[-1] == "done", timeout=30)
        answered.append(time.monotonic())

    sent_at = time.monotonic()
    attacker.send(f"LIST {masks}\r\n".encode() * lists + b"PING :done\r\n")
    waiting = threading.Thread(target=attacker_done, name="test-attacker")
    waiting.start()
    rtts: list[float] = []
    try:
        while waiting.is_alive():
            start = time.monotonic()
            bystander.send("PING :rtt")
            bystander.expect("PONG", timeout=5)
            rtts.append(time.monotonic() - start)
            waiting.join(0.3)  # at most ~3 PINGs a second: under the bystander's own budget
    finally:
        waiting.join(30)
    assert answered, "the attacker's LISTs were never answered"
    # 6 lines fit in the burst: were the work free, the PING would be answered at once;
    # at 5.5 tokens a LIST it needs 28.5, so it waits at least (28.5 - 20) / 4 = 2.1 s
    assert answered[0] - sent_at >= 1.0
    assert len(rtts) >= 3 and max(rtts) < 1.0, rtts
    assert not attacker.closed
