"""Masks built to make a backtracking glob matcher take exponential time, sent over
real sockets to both engines: WHO against a long realname, LIST against long
channel names, and ban, exception and invite-exception lists checked on JOIN and
PRIVMSG. The command takes effect within half a second (normally a millisecond)
and everyone else is still served at once: meanwhile, a bystander's PINGs are
answered within 100 ms of being sent.

With the old regex matcher (``.*`` per ``*``) each of these froze the server for
longer than anyone waits. The server runs in this process and a regex match
holds the GIL, so such a regression hangs this test (pytest-timeout cannot
interrupt it either) rather than failing it; a shorter stall, of half a second,
fails it."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from ircutil import RawClient
from relaychat.protocol import numerics as N
from relaychat.protocol.message import Message

PONG_WITHIN = 0.1  # seconds from sending PING to receiving its PONG
ANSWER_WITHIN = 0.5  # seconds from the attacked command to its effect (normally ~1 ms)


def starry(segment: str, count: int, tail: str, length: int = 400) -> str:
    """``count`` copies of ``segment``, each after a run of ``*``, then ``tail``:
    about ``length`` characters long, yet only its non-``*`` characters must fit
    in the subject. (A backtracking matcher rejects a mask at once when they
    cannot, so masks for short subjects get their length from stars.)"""
    stars = (length - len(tail)) // count - len(segment)
    return ("*" * stars + segment) * count + tail


# Each mask needs a "b" after many "a"s; the subjects are runs of "a" only.
ISSUE_MASK = "*a" * 12 + "*b"  # the reported 30-byte line: WHO *a*a*a*a*a*a*a*a*a*a*a*a*b
# against a 400-character realname: masks of about 400 characters
WHO_MASKS = [
    ISSUE_MASK,
    "*a" * 199 + "*b",
    "*a" * 198 + "*b*",  # "b" in the middle: every "a" segment is searched
    "*a?" * 132 + "*b*",  # "?" in every segment
]
MASK_IDS = ["issue", "long", "long-middle", "long-qmark"]
# against channel names of up to 50 characters: as long, but needing at most 45
LIST_MASKS = [
    ISSUE_MASK,
    starry("a", 44, "*b"),
    starry("a", 44, "*b*"),
    starry("a?", 22, "*b*"),
]


def assert_ping_answered_promptly(c: RawClient, token: str) -> None:
    start = time.monotonic()
    c.send(f"PING :{token}")
    c.expect(lambda m: m.command == "PONG" and m.params[-1] == token)
    elapsed = time.monotonic() - start
    assert elapsed < PONG_WITHIN, f"PONG took {elapsed * 1000:.0f} ms"


def send_while_serving(
    sender: RawClient,
    line: str,
    bystander: RawClient,
    wanted: Callable[[Message], bool],
    target: RawClient | None = None,
) -> Message:
    """Send ``line``; the first message that ``target`` (the sender unless given)
    then receives that ``wanted`` accepts, which must come within ``ANSWER_WITHIN``
    of sending. Meanwhile the bystander keeps pinging, each PING answered within
    ``PONG_WITHIN``.

    Both bounds matter: the threads engine may serve a PING just before it starts
    on the line, and a server in this process that hogs the GIL freezes this
    thread too, so a stall shows up in whichever wait it overlaps (hence the
    clock starts before sending)."""
    start = time.monotonic()
    sender.send(line)
    for i in itertools.count():
        assert_ping_answered_promptly(bystander, f"meanwhile-{i}")
        try:
            found = (target or sender).expect(wanted, timeout=0.01)
        except AssertionError:  # not yet
            if time.monotonic() - start > ANSWER_WITHIN:
                raise
            continue
        elapsed = time.monotonic() - start
        assert elapsed < ANSWER_WITHIN, f"answered after {elapsed * 1000:.0f} ms"
        return found
    raise AssertionError("unreachable")


def commands(*names: str) -> Callable[[Message], bool]:
    return lambda m: m.command in names


@pytest.mark.parametrize("mask", WHO_MASKS, ids=MASK_IDS)
def test_who_with_adversarial_mask_against_long_realname(
    client: Callable[..., RawClient], mask: str
) -> None:
    victim = client()
    victim.send("NICK victim")
    victim.send("USER victim 0 * :" + "a" * 400)
    victim.expect(N.RPL_WELCOME)
    attacker, bystander = client("attacker"), client("bystander")
    assert_ping_answered_promptly(bystander, "before")

    reply = send_while_serving(
        attacker, f"WHO {mask}", bystander, commands(N.RPL_WHOREPLY, N.RPL_ENDOFWHO)
    )
    assert reply.command == N.RPL_ENDOFWHO  # no one has a "b" after those "a"s
    assert_ping_answered_promptly(victim, "victim-still-served")


@pytest.mark.parametrize("mask", LIST_MASKS, ids=MASK_IDS)
def test_list_with_adversarial_mask_against_long_channel_names(
    client: Callable[..., RawClient], mask: str
) -> None:
    founder, attacker, bystander = client("founder"), client("attacker"), client("bystander")
    for length in (47, 48, 49):  # "#" + 49 is the longest name (CHANNELLEN=50)
        founder.join("#" + "a" * length)
    assert_ping_answered_promptly(bystander, "before")

    reply = send_while_serving(
        attacker, f"LIST {mask}", bystander, commands(N.RPL_LIST, N.RPL_LISTEND)
    )
    assert reply.command == N.RPL_LISTEND


LONG_NICK = "a" * 30  # NICKLEN; the username becomes "~" + 17 "a"s
# against "a" * 30 + "!~" + "a" * 17 + "@127.0.0.1": up to 200 characters (the
# most MODE accepts in a list entry), needing at most 41
BAN_MASKS = ["*a" * 12 + "*b!*@*", starry("a", 38, "*b!*@*", length=200)]
BAN_MASK_IDS = ["short", "longest"]


@pytest.mark.parametrize("mask", BAN_MASKS, ids=BAN_MASK_IDS)
def test_ban_with_adversarial_mask_on_join_and_privmsg(
    client: Callable[..., RawClient], mask: str
) -> None:
    op, bystander = client("op"), client("bystander")
    op.join("#c")
    op.send(f"MODE #c +b {mask}")
    op.expect(lambda m: m.command == "MODE" and m.params[-1] == mask)
    member = client(LONG_NICK)
    assert_ping_answered_promptly(bystander, "before")

    # JOIN is checked against the ban list
    joined = commands(N.RPL_ENDOFNAMES, N.ERR_BANNEDFROMCHAN)
    reply = send_while_serving(member, "JOIN #c", bystander, joined)
    assert reply.command == N.RPL_ENDOFNAMES  # the mask does not match: not banned

    # and so is PRIVMSG from a member without voice
    msg = send_while_serving(member, "PRIVMSG #c :hello", bystander, commands("PRIVMSG"), op)
    assert msg.params == ["#c", "hello"]


@pytest.mark.parametrize("mask", BAN_MASKS, ids=BAN_MASK_IDS)
@pytest.mark.parametrize(
    ("modes", "refused"),
    [("+be *!*@* {mask}", N.ERR_BANNEDFROMCHAN), ("+iI {mask}", N.ERR_INVITEONLYCHAN)],
    ids=["exception", "invite-exception"],
)
def test_exception_lists_with_adversarial_mask_on_join(
    client: Callable[..., RawClient], mask: str, modes: str, refused: str
) -> None:
    # +e is consulted once a ban matches, +I once the channel is invite-only;
    # the adversarial entry does not match, so the member is refused.
    op, bystander = client("op"), client("bystander")
    op.join("#c")
    op.send(f"MODE #c {modes.format(mask=mask)}")
    op.expect(lambda m: m.command == "MODE" and m.params[-1] == mask)
    member = client(LONG_NICK)
    assert_ping_answered_promptly(bystander, "before")

    reply = send_while_serving(member, "JOIN #c", bystander, commands(N.RPL_ENDOFNAMES, refused))
    assert reply.command == refused
