"""About users: AWAY, SETNAME, ISON, USERHOST."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.events import ECHO_ALWAYS, PEERS
from relaychat.protocol.message import truncate_utf8, valid_trailing

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

USERHOST_MAX = 5  # nicks answered per USERHOST
ISON_MAX = 64  # nicks looked up per ISON


# AWAY [<message>]
def handle_away(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    user = sess.user
    text = msg.params[0] if msg.params else ""
    was_away = user.away is not None
    if text:
        user.away = truncate_utf8(text, core.limits.awaylen)
        core.reply(sess, N.RPL_NOWAWAY, "You have been marked as being away")
        params = [user.away]
    else:
        user.away = None
        core.reply(sess, N.RPL_UNAWAY, "You are no longer marked as being away")
        if not was_away:
            return
        params = []
    user.auto_away = False
    ev = core.event(user, "AWAY", params, now, PEERS, cap="away-notify", trailing=True)
    core.emit(ev)
    core.monitor.relay(ev)  # extended-monitor watchers outside user's channels
    if len(user.sessions) > 1:  # multiclient: the user's other sessions see it too
        data = ev.for_variant(0)
        for other in user.sessions:
            if other is not sess and "away-notify" in other.caps:
                core.output.send_bytes(other, data)


# ISON <nickname>{ <nickname>}
def handle_ison(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    found: list[str] = []
    for nick in " ".join(msg.params).split()[:ISON_MAX]:
        target = core.find_user(nick)
        if target is not None and target.nick is not None:
            found.append(target.nick)
    core.reply(sess, N.RPL_ISON, " ".join(found))


# USERHOST <nickname>{ <nickname>}
def handle_userhost(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    replies: list[str] = []
    for nick in " ".join(msg.params).split()[:USERHOST_MAX]:
        t = core.find_user(nick)
        if t is None:
            continue
        oper = "*" if t.oper_name is not None else ""
        away = "-" if t.away is not None else "+"
        replies.append(f"{t.nick}{oper}={away}{t.ident}@{t.host}")
    core.reply(sess, N.RPL_USERHOST, " ".join(replies))


# SETNAME <realname>
def handle_setname(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    realname = msg.params[0]
    if (
        not realname
        or len(realname.encode("utf-8")) > core.limits.realnamelen
        or not valid_trailing(realname)
    ):
        core.fail(sess, "SETNAME", "INVALID_REALNAME", "Realname is not valid")
        return
    user = sess.user
    ev = core.event(
        user, "SETNAME", [realname], now, PEERS, cap="setname", echo=ECHO_ALWAYS, trailing=True
    )
    user.realname = realname
    core.emit(ev)
    core.monitor.relay(ev)
