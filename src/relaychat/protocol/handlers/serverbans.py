"""Server bans: KLINE, UNKLINE, DLINE, UNDLINE (operators only), and the K-line
check at registration.

Syntax as Ergo's, the duration first and optional::

    KLINE [<duration>] <user@host> [<reason>]     UNKLINE <user@host>
    DLINE [<duration>] <ip>[/<prefix>] [<reason>] UNDLINE <ip>[/<prefix>]

A duration is ``0`` (permanent, the default without one, as in Ergo), a bare
number of seconds (as InspIRCd reads one), or units: ``30m``, ``1h30m``, ``2d``,
``1w`` (see :func:`~relaychat.protocol.serverbans.parse_duration`). A K-line's
host part may be a glob (matched against both the host others see, a cloak when
cloaking is on, and the real address) or a CIDR network; a D-line is an address
or a network (IPv4-mapped IPv6 counts as IPv4).

Where the servers differ:

* a new ban takes effect at once, as in InspIRCd: every connected client it
  covers gets 465 and is disconnected (its channels see ``QUIT :K-Lined:
  <reason>`` or ``D-Lined``). Ergo does that only with ``ANDKILL``;
* a ban that would cover the operator who sets it is refused, as in Ergo
  (which allows it with ``MYSELF``; there is no such override here);
* a ban on a mask that is already banned replaces it (new duration and reason),
  as in Ergo; InspIRCd refuses the duplicate.

A D-line is checked when a connection is accepted (``ServerCore.connect``: it
gets ``ERROR`` and is closed before it can register); a K-line when
registration completes (:func:`refuse_if_klined`). Errors are IRCv3 standard
replies (``FAIL KLINE INVALID_DURATION|INVALID_MASK|MATCHES_YOU|LIST_FULL``,
``FAIL UNKLINE NOT_FOUND``); on an error nothing changes. Every change is
logged, told to the operator (NOTICE) and to the ``x`` snomask, and written
through to the store when there is one (``ServerCore.persist_ban``; the ban is
in force at once, and the operator gets a NOTICE if the write failed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.message import truncate_utf8
from relaychat.protocol.serverbans import (
    DLINE,
    KLINE,
    ServerBan,
    format_duration,
    normalize_dline,
    normalize_kline,
    parse_duration,
)

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

__all__ = [
    "handle_dline",
    "handle_kline",
    "handle_undline",
    "handle_unkline",
    "refuse_if_klined",
]

log = logging.getLogger("relaychat.oper")

REASON_MAX = 200  # bytes of a ban reason
_LOOKS_LIKE_DURATION = re.compile(r"[0-9][0-9a-z]*", re.ASCII)
_LABEL = {KLINE: "K-Lined", DLINE: "D-Lined"}
_MASK_HELP = {
    KLINE: "A K-line mask is user@host, such as *@192.0.2.7, ~bot@*.example.org or *@10.0.0.0/8",
    DLINE: "A D-line mask is an IP address or a CIDR network, such as 192.0.2.7 or 2001:db8::/32",
}


# KLINE [<duration>] <user@host> [<reason>]
def handle_kline(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    _add(core, sess, msg, now, KLINE, "KLINE", normalize_kline)


# DLINE [<duration>] <ip>[/<prefix>] [<reason>]
def handle_dline(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    _add(core, sess, msg, now, DLINE, "DLINE", normalize_dline)


# UNKLINE <user@host>
def handle_unkline(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    _remove(core, sess, msg, KLINE, "UNKLINE", normalize_kline)


# UNDLINE <ip>[/<prefix>]
def handle_undline(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    _remove(core, sess, msg, DLINE, "UNDLINE", normalize_dline)


def _add(
    core: ServerCore,
    sess: Session,
    msg: Message,
    now: Now,
    kind: str,
    command: str,
    normalize: Callable[[str], str | None],
) -> None:
    params = msg.params
    duration = 0
    rest = params
    if len(params) >= 2:
        parsed = parse_duration(params[0])
        if parsed is not None:
            duration, rest = parsed, params[1:]
        elif _LOOKS_LIKE_DURATION.fullmatch(params[0]) and normalize(params[0]) is None:
            core.fail(
                sess,
                command,
                "INVALID_DURATION",
                safe_param(params[0]),
                "Invalid duration: 0 (permanent), seconds, or units such as 30m, 1h30m, 2d, 1w "
                "(at most ten years)",
            )
            return
    raw = rest[0]
    mask = normalize(raw)
    if mask is None:
        core.fail(
            sess, command, "INVALID_MASK", safe_param(raw), f"Invalid mask. {_MASK_HELP[kind]}"
        )
        return
    reason = truncate_utf8(rest[1], REASON_MAX) if len(rest) > 1 and rest[1].strip() else ""
    reason = reason or "No reason given"
    user = sess.user
    covers = core.bans.matcher(kind, mask)
    if covers(user.ident or "", user.host, sess.ip):
        core.fail(sess, command, "MATCHES_YOU", mask, "This ban would match you; it was not set")
        return
    added = core.bans.add(kind, mask, duration, reason, user.prefix, now.mono, now.wall)
    if added is None:
        core.fail(
            sess,
            command,
            "LIST_FULL",
            mask,
            f"The server ban list is full ({core.bans.capacity} bans); remove one first",
        )
        return
    ban, replaced = added
    verb = "updated" if replaced is not None else "added"
    shown = format_duration(duration)
    log.warning(
        "[%d] %s (%s) %s %s-line for %s (%s): %s",
        sess.conn_id,
        user.prefix,
        sess.ip,
        verb,
        kind,
        mask,
        shown,
        reason,
    )
    core.server_notice(
        sess, truncate_utf8(f"{kind}-line for {mask} {verb} ({shown}): {reason}", 400)
    )
    core.snotice("x", "%s %s %s-line for %s (%s): %s", user.name, verb, kind, mask, shown, reason)
    core.watch_ban_expiry()
    core.persist_ban(ban, replaced, sess)
    dropped = _enforce(core, ban, covers, now)
    if dropped:
        core.server_notice(sess, f"{kind}-line for {mask} disconnected {dropped} client(s)")


def _enforce(
    core: ServerCore, ban: ServerBan, covers: Callable[[str, str, str], bool], now: Now
) -> int:
    """Disconnect every connected client the new ban covers; how many. A K-line
    spares connections still registering (their ident is not final: they are
    checked when they register)."""
    victims = [
        s
        for s in core.sessions.values()
        if s.closing is None
        and (ban.kind == DLINE or s.user.registered)
        and covers(s.user.ident or "", s.user.host, s.ip)
    ]
    for victim in victims:
        user = victim.user
        core.ban_hit(ban, f"{user.name}!{user.ident or '*'}@{victim.ip}", now)
        _disconnect(core, victim, ban, now)
    return len(victims)


def _disconnect(core: ServerCore, sess: Session, ban: ServerBan, now: Now) -> None:
    log.info(
        "[%d] %s (%s): %s-lined (%s)", sess.conn_id, sess.user.prefix, sess.ip, ban.kind, ban.mask
    )
    core.reply(sess, N.ERR_YOUREBANNEDCREEP, f"You are banned from this server: {ban.reason}")
    core.disconnect(sess, f"{_LABEL[ban.kind]}: {ban.reason}", now)


def refuse_if_klined(core: ServerCore, sess: Session, now: Now) -> bool:
    """At registration: a client that matches a K-line gets 465 and is
    disconnected (True); otherwise False."""
    bans = core.bans
    if not bans.has_klines:
        return False
    user = sess.user
    ban = bans.match_user(user.ident or "", user.host, sess.ip, now.mono)
    if ban is None:
        return False
    core.ban_hit(ban, f"{user.name}!{user.ident or '*'}@{sess.ip}", now)
    _disconnect(core, sess, ban, now)
    return True


def _remove(
    core: ServerCore,
    sess: Session,
    msg: Message,
    kind: str,
    command: str,
    normalize: Callable[[str], str | None],
) -> None:
    raw = msg.params[0]
    mask = normalize(raw)
    if mask is None:
        core.fail(
            sess, command, "INVALID_MASK", safe_param(raw), f"Invalid mask. {_MASK_HELP[kind]}"
        )
        return
    ban = core.bans.remove(kind, mask)
    if ban is None:
        core.fail(sess, command, "NOT_FOUND", mask, f"There is no {kind}-line for {mask}")
        return
    user = sess.user
    log.warning(
        "[%d] %s (%s) removed %s-line for %s", sess.conn_id, user.prefix, sess.ip, kind, ban.mask
    )
    core.server_notice(sess, f"{kind}-line for {ban.mask} removed")
    core.unpersist_ban(ban, sess)
    core.snotice("x", "%s removed %s-line for %s", user.name, kind, ban.mask)
