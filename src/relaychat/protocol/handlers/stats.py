"""STATS: what the server can say about itself.

``STATS <query> [<server>]``; the query is one letter, case-insensitive here
(``STATS K`` is ``STATS k``). Every answer ends with 219; an unknown letter gets
219 alone, as the Modern IRC document and every server do.

* ``u`` uptime (242), anyone;
* ``m`` how many times each command was dispatched (212, only those used), anyone;
* ``o`` configured operators (243 ``O <user@host> * <name>``), operators only;
* ``k`` server bans (216), operators only: RFC 1459's leading type letter (``K``
  or ``D``), then InspIRCd's fields: ``<mask> <set at> <duration> <setter>
  :<reason>`` (times in seconds, duration 0: permanent);
* ``l`` connections (211), operators only, one per connection, with InspIRCd's
  fields: ``<nick[user@ip]> <sendq> <sent lines> <sent bytes> <received lines>
  <received bytes> :<seconds open>``.

``l`` and ``k`` are for operators as in every server; ``o`` too, as InspIRCd,
Hybrid and UnrealIRCd have it by default (it names operators and the hosts they
may come from). A non-operator gets 481 then 219, as InspIRCd answers. ``STATS
l`` on a very busy server stops before the asker's SendQ would fill, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.casemap import mask_matches
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.message import truncate_utf8

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

__all__ = ["handle_stats"]

OPER_ONLY = "klo"


# STATS <query> [<server>]
def handle_stats(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    if len(msg.params) > 1 and not mask_matches(msg.params[1], core.server_name):
        core.reply(sess, N.ERR_NOSUCHSERVER, safe_param(msg.params[1]), "No such server")
        return
    letter = msg.params[0][:1]
    shown = safe_param(letter)
    query = _QUERIES.get(letter.lower())
    if query is not None:
        if letter.lower() in OPER_ONLY and sess.user.oper_name is None:
            core.reply(
                sess,
                N.ERR_NOPRIVILEGES,
                f"Permission Denied - STATS {shown} is for IRC operators only",
            )
        else:
            query(core, sess, now)
    core.reply(sess, N.RPL_ENDOFSTATS, shown, "End of /STATS report")


def _uptime(core: ServerCore, sess: Session, now: Now) -> None:
    up = max(0, int(now.mono - core.started))
    days, rest = divmod(up, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    core.reply(
        sess, N.RPL_STATSUPTIME, f"Server Up {days} days {hours}:{minutes:02d}:{seconds:02d}"
    )


def _commands(core: ServerCore, sess: Session, now: Now) -> None:
    for name, count in sorted(core.command_counts.items()):
        if count:
            core.reply(sess, N.RPL_STATSCOMMANDS, name, str(count))


def _opers(core: ServerCore, sess: Session, now: Now) -> None:
    for name, oper in sorted(core.config.opers.items()):
        core.reply(sess, N.RPL_STATSOLINE, "O", safe_param(oper.host), "*", name)


def _bans(core: ServerCore, sess: Session, now: Now) -> None:
    for ban in core.bans.entries():
        if ban.expires is not None and ban.expires <= now.mono:
            continue  # expired, about to be removed
        fields = [ban.kind, ban.mask, str(int(ban.set_at)), str(ban.duration), ban.setter]
        # long masks and reasons: the reason is cut so that the line fits in 512 bytes
        used = len(f":{core.server_name} 216 {sess.name} {' '.join(fields)} :".encode())
        reason = truncate_utf8(ban.reason, max(16, 510 - used))
        core.reply(sess, N.RPL_STATSKLINE, *fields, reason)


def _links(core: ServerCore, sess: Session, now: Now) -> None:
    room = core.limits.sendq // 2
    sessions = list(core.sessions.values())
    for i, s in enumerate(sessions):
        if sess.queued > room:
            core.server_notice(sess, f"STATS l stopped after {i} of {len(sessions)} connections")
            return
        user = s.user
        host = "0" + s.ip if s.ip.startswith(":") else s.ip
        core.reply(
            sess,
            N.RPL_STATSLINKINFO,
            f"{user.name}[{user.ident or '*'}@{host}]",
            str(s.queued + s.backlog),
            str(s.sent_lines),
            str(s.sent_bytes),
            str(s.recv_lines),
            str(s.recv_bytes),
            str(max(0, int(now.mono - s.connected_at))),
        )


_QUERIES: dict[str, Callable[[ServerCore, Session, Now], None]] = {
    "k": _bans,
    "l": _links,
    "m": _commands,
    "o": _opers,
    "u": _uptime,
}
