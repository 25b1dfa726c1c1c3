"""REDACT (draft/message-redaction) against the core, on an in-memory SQLite
store: who may redact what, the relay to clients with the capability only,
the row gone from CHATHISTORY, the window, errors and hostile input."""

from __future__ import annotations

import base64

from coreharness import OPER_HASH, Clock, Peer, new_core, one, only, oper_up
from relaychat.config import Config, HistoryConfig, LimitsConfig, OperConfig
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message

PW = "redaction-pw-1"
CAP = "draft/message-redaction"
CAPS = ("batch", "server-time", "message-tags", "echo-message", "draft/chathistory", CAP)


def cfg(**history: object) -> Config:
    return Config(
        limits=LimitsConfig(flood_rate=0.0),
        history=HistoryConfig(**history),  # type: ignore[arg-type]
        opers={"admin": OperConfig(password=OPER_HASH)},
    )


def account_user(core: ServerCore, clock: Clock, nick: str, caps: tuple[str, ...] = CAPS) -> Peer:
    """A registered connection that registered (and so is logged in to) account ``nick``."""
    p = Peer(core, clock)
    p.register(nick, caps=caps)
    p.send(f"REGISTER {nick} * :{PW}")
    assert one(p.take(), "REGISTER").params[0] == "SUCCESS"
    return p


def anon(core: ServerCore, clock: Clock, nick: str, caps: tuple[str, ...] = CAPS) -> Peer:
    p = Peer(core, clock)
    p.register(nick, caps=caps)
    return p


def setup(config: Config | None = None) -> tuple[Clock, ServerCore, Peer, Peer, Peer]:
    """alice (logged in), bob (logged in), plain (no capabilities), all in #c."""
    clock = Clock()
    core = new_core(config or cfg(), clock)
    alice = account_user(core, clock, "alice")
    bob = account_user(core, clock, "bob")
    plain = anon(core, clock, "plain", caps=("message-tags",))
    for p in (alice, bob, plain):
        p.send("JOIN #c")
    for p in (alice, bob, plain):
        p.take()
    return clock, core, alice, bob, plain


def say(peer: Peer, target: str, text: str) -> str:
    """Send a message (echo-message) and return its msgid."""
    peer.send(f"PRIVMSG {target} :{text}")
    echo = [m for m in peer.take() if m.command == "PRIVMSG" and m.params[-1] == text]
    return echo[0].tags["msgid"]


def history_texts(peer: Peer, target: str) -> list[str]:
    peer.take()
    peer.send(f"CHATHISTORY LATEST {target} * 50")
    return [m.params[-1] for m in peer.take() if m.command == "PRIVMSG"]


def fail(msgs: list[Message]) -> list[str]:
    f = one(msgs, "FAIL")
    assert f.params[0] == "REDACT"
    return f.params[1:]


def test_the_capability_is_offered_only_with_history() -> None:
    assert CAP in new_core(cfg(), Clock()).caps_offered
    assert CAP not in new_core(cfg(enabled=False), Clock()).caps_offered


def test_sender_redacts_its_own_message_relayed_to_cap_clients_only_and_gone_from_history() -> None:
    clock, core, alice, bob, plain = setup()
    keep = say(alice, "#c", "kept")
    gone = say(alice, "#c", "regretted")
    bob.take()
    plain.take()
    alice.send(f"REDACT #c {gone} :typo")
    echo = one(alice.take(), "REDACT")
    assert echo.params == ["#c", gone, "typo"]
    assert echo.source is not None and echo.source.startswith("alice!")
    assert echo.tags.get("msgid") and echo.tags["msgid"] not in (keep, gone)
    assert one(bob.take(), "REDACT").params == ["#c", gone, "typo"]
    assert plain.take() == []  # no capability: nothing at all
    assert history_texts(bob, "#c") == ["kept"]
    alice.send(f"REDACT #c {gone}")  # twice: it is gone
    assert fail(alice.take())[:3] == ["UNKNOWN_MSGID", "#c", gone]


def test_a_redact_without_reason_and_of_a_tagmsg() -> None:
    clock, core, alice, bob, plain = setup()
    alice.send("@+draft/react=x TAGMSG #c")
    tag = one(alice.take(), "TAGMSG").tags["msgid"]
    bob.take()
    alice.send(f"REDACT #c {tag}")
    assert one(alice.take(), "REDACT").params == ["#c", tag]
    assert one(bob.take(), "REDACT").params == ["#c", tag]


def test_a_member_may_not_redact_someone_elses_message() -> None:
    clock, core, alice, bob, plain = setup()
    msgid = say(alice, "#c", "alice's")
    bob.take()
    bob.send(f"REDACT #c {msgid} :mine now")
    assert fail(bob.take()) == [
        "REDACT_FORBIDDEN",
        "#c",
        msgid,
        "You are not authorised to delete this message",
    ]
    assert alice.take() == []
    assert history_texts(bob, "#c") == ["alice's"]


def test_a_sender_not_logged_in_may_not_redact_even_its_own() -> None:
    clock, core, alice, bob, plain = setup()
    carol = anon(core, clock, "carol")
    carol.send("JOIN #c")
    carol.take()
    msgid = say(carol, "#c", "anonymous")
    carol.send(f"REDACT #c {msgid}")
    assert fail(carol.take())[0] == "REDACT_FORBIDDEN"
    assert history_texts(bob, "#c") == ["anonymous"]


def test_another_connection_of_the_senders_account_may_redact() -> None:
    clock, core, alice, bob, plain = setup()
    msgid = say(alice, "#c", "from my phone")
    other = Peer(core, clock)
    other.register("alice_pc", caps=CAPS)
    other.send("JOIN #c")
    other.send(f"PRIVMSG NickServ :IDENTIFY alice {PW}")
    other.take()
    other.send(f"REDACT #c {msgid}")
    assert one(other.take(), "REDACT").params == ["#c", msgid]


def test_a_channel_operator_may_redact_anyones_message() -> None:
    clock, core, alice, bob, plain = setup()
    assert core.find_channel("#c").is_op(alice.session.user)  # type: ignore[union-attr]
    msgid = say(bob, "#c", "spam")
    alice.take()
    alice.send(f"REDACT #c {msgid} :spam")
    assert one(alice.take(), "REDACT").params == ["#c", msgid, "spam"]
    assert one(bob.take(), "REDACT").params == ["#c", msgid, "spam"]
    plain.send("PRIVMSG #c :plain's line")
    bob.take()
    mid = [m for m in alice.take() if m.command == "PRIVMSG"][0].tags["msgid"]
    alice.send(f"REDACT #c {mid}")  # a sender not logged in: the operator may
    assert one(alice.take(), "REDACT").params == ["#c", mid]
    assert history_texts(bob, "#c") == []


def test_an_irc_operator_may_redact_in_a_channel_it_is_not_in() -> None:
    clock, core, alice, bob, plain = setup()
    msgid = say(bob, "#c", "bad")
    alice.take()
    oper = anon(core, clock, "oper")
    oper_up(oper)
    oper.send(f"REDACT #c {msgid} :network policy")
    assert one(oper.take(), "REDACT").params == ["#c", msgid, "network policy"]
    assert one(alice.take(), "REDACT").source.startswith("oper!")  # type: ignore[union-attr]


def test_a_non_member_is_refused_as_if_the_channel_did_not_exist() -> None:
    clock, core, alice, bob, plain = setup()
    msgid = say(alice, "#c", "members only")
    dave = account_user(core, clock, "dave")
    for target in ("#c", "#nochan"):
        dave.send(f"REDACT {target} {msgid}")
        got = fail(dave.take())
        assert got[:2] == ["INVALID_TARGET", target], got
    # unknown or not: the same answer (no lookup), so nothing leaks
    dave.send("REDACT #c nosuchid")
    assert fail(dave.take())[:2] == ["INVALID_TARGET", "#c"]
    assert history_texts(bob, "#c") == ["members only"]


def test_a_msgid_of_another_channel_or_an_event_is_unknown() -> None:
    clock, core, alice, bob, plain = setup()
    alice.send("JOIN #d")
    join = one(alice.take(), "JOIN").tags["msgid"]
    elsewhere = say(alice, "#d", "in #d")
    for msgid in (elsewhere, join, "nosuchid"):
        alice.send(f"REDACT #c {msgid}")
        assert fail(alice.take())[:3] == ["UNKNOWN_MSGID", "#c", msgid]
    alice.send(f"REDACT #d {join}")  # a JOIN is not a message
    assert fail(alice.take())[0] == "UNKNOWN_MSGID"
    assert history_texts(alice, "#d") == ["in #d"]


def test_hostile_targets_and_msgids() -> None:
    clock, core, alice, bob, plain = setup()
    msgid = say(alice, "#c", "x")
    cases = {
        f"REDACT #{'x' * 300} {msgid}": "INVALID_TARGET",
        f"REDACT {'n' * 300} {msgid}": "INVALID_TARGET",
        f"REDACT bad!nick {msgid}": "INVALID_TARGET",
        f"REDACT #c,#d {msgid}": "INVALID_TARGET",
        f"REDACT #c {'m' * 300}": "UNKNOWN_MSGID",
        "REDACT #c :two words": "UNKNOWN_MSGID",
        "REDACT #c :": "UNKNOWN_MSGID",
        "REDACT #c \x01\x7f": "UNKNOWN_MSGID",
        "REDACT #c %_*": "UNKNOWN_MSGID",
    }
    for line, code in cases.items():
        alice.send(line)
        got = alice.take()
        assert fail(got)[0] == code, (line, got)
        assert only(got, "REDACT") == []
    alice.send("REDACT #c")
    assert [m.command for m in alice.take()] == ["461"]
    assert history_texts(bob, "#c") == ["x"]


def test_the_window_bounds_the_sender_not_the_operators() -> None:
    clock, core, alice, bob, plain = setup(cfg(redact_window=60.0))
    early = say(bob, "#c", "early")
    late = say(bob, "#c", "late")
    alice.take()
    clock.advance(61)
    bob.send(f"REDACT #c {early}")
    assert fail(bob.take()) == [
        "REDACT_WINDOW_EXPIRED",
        "#c",
        early,
        "60",
        "You can no longer edit this message",
    ]
    alice.send(f"REDACT #c {early}")  # the channel operator: no window
    assert one(alice.take(), "REDACT").params == ["#c", early]
    fresh = say(bob, "#c", "fresh")
    bob.send(f"REDACT #c {fresh}")
    assert one(bob.take(), "REDACT").params == ["#c", fresh]
    assert history_texts(bob, "#c") == ["late"]
    assert late


def test_private_messages_sender_only_both_parties_all_sessions() -> None:
    clock, core, alice, bob, plain = setup()
    bob2 = Peer(core, clock)
    for line in ("CAP LS 302", "CAP REQ :sasl " + " ".join(CAPS), "NICK b2", "USER b 0 * :b"):
        bob2.send(line)
    bob2.send("AUTHENTICATE PLAIN")
    bob2.send("AUTHENTICATE " + base64.b64encode(f"\0bob\0{PW}".encode()).decode())
    bob2.send("CAP END")
    assert bob2.session.user is bob.session.user
    mine = say(alice, "bob", "private oops")
    theirs = say(bob, "alice", "bob's reply")
    for p in (alice, bob, bob2):
        p.take()
    bob.send(f"REDACT alice {mine}")  # alice's message: not bob's to redact
    assert fail(bob.take())[0] == "REDACT_FORBIDDEN"
    alice.send(f"REDACT bob {mine} :sorry")
    assert one(alice.take(), "REDACT").params == ["bob", mine, "sorry"]
    assert one(bob.take(), "REDACT").params == ["bob", mine, "sorry"]
    assert one(bob2.take(), "REDACT").params == ["bob", mine, "sorry"]
    assert plain.take() == []
    assert history_texts(alice, "bob") == ["bob's reply"]
    assert history_texts(bob, "alice") == ["bob's reply"]
    plain.send(f"REDACT bob {theirs}")  # not a party: no such conversation for it
    assert fail(plain.take())[0] == "REDACT_FORBIDDEN"  # not logged in: refused before lookup
    dave = account_user(core, clock, "dave")
    dave.send(f"REDACT bob {theirs}")
    assert fail(dave.take())[:3] == ["UNKNOWN_MSGID", "bob", theirs]


def test_a_note_to_oneself_is_redacted_once() -> None:
    clock, core, alice, bob, plain = setup()
    msgid = say(alice, "alice", "note to self")
    alice.send(f"REDACT alice {msgid}")
    assert [m.params for m in only(alice.take(), "REDACT")] == [["alice", msgid]]
    assert history_texts(alice, "alice") == []


def test_private_message_to_a_party_now_offline_can_still_be_redacted() -> None:
    clock, core, alice, bob, plain = setup()
    msgid = say(alice, "bob", "while you were here")
    bob.send("QUIT")
    alice.send(f"REDACT bob {msgid}")
    assert one(alice.take(), "REDACT").params == ["bob", msgid]
    assert history_texts(alice, "bob") == []


def test_without_history_or_when_the_store_fails() -> None:
    clock = Clock()
    core = new_core(cfg(enabled=False), clock)
    a = anon(core, clock, "a", caps=("message-tags",))
    a.send("REDACT #c abc")
    assert fail(a.take())[:2] == ["INVALID_TARGET", "#c"]
    clock, core, alice, bob, plain = setup()
    msgid = say(alice, "#c", "x")
    assert core.store is not None
    core.store.close()
    alice.send(f"REDACT #c {msgid}")
    assert fail(alice.take())[:3] == ["INTERNAL_ERROR", "#c", msgid]
