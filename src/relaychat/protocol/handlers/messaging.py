"""Messages between users: PRIVMSG, NOTICE, TAGMSG.

The hot path of the server: a channel message is built into one :class:`Outgoing`
and queued to every member with ``core.relay`` (serialised once per variant).
NOTICE never produces an error reply, as RFC 2812 requires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.server import Outgoing

if TYPE_CHECKING:
    from relaychat.protocol.message import Message
    from relaychat.protocol.server import ServerCore
    from relaychat.protocol.state import Channel, Session

_STATUS = {"@": "o", "+": "v"}  # STATUSMSG prefix -> lowest status that receives it


# PRIVMSG <target>{,<target>} <text to be sent>
def handle_privmsg(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    _deliver(core, sess, msg, now, "PRIVMSG", errors=True)


# NOTICE <target>{,<target>} <text to be sent>
def handle_notice(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    _deliver(core, sess, msg, now, "NOTICE", errors=False)


# TAGMSG <target>{,<target>}
def handle_tagmsg(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    _deliver(core, sess, msg, now, "TAGMSG", errors=True)


def _client_tags(msg: Message) -> dict[str, str] | None:
    if not msg.tags:
        return None
    tags = {k: v for k, v in msg.tags.items() if k.startswith("+")}
    return tags or None


def _deliver(
    core: ServerCore, sess: Session, msg: Message, now: float, command: str, errors: bool
) -> None:
    params = msg.params
    if not params or not params[0]:
        if errors:
            core.reply(sess, N.ERR_NORECIPIENT, f"No recipient given ({command})")
        return
    tagmsg = command == "TAGMSG"
    if not tagmsg and (len(params) < 2 or not params[1]):
        if errors:
            core.reply(sess, N.ERR_NOTEXTTOSEND, "No text to send")
        return
    text = "" if tagmsg else params[1]
    tags = _client_tags(msg) if "message-tags" in sess.caps else None
    if tagmsg and tags is None:
        return  # a TAGMSG without client tags carries nothing
    targets = params[0].split(",")
    if len(targets) > core.limits.max_targets:
        if errors:
            core.reply(sess, N.ERR_TOOMANYTARGETS, params[0], "Too many targets")
        return
    echo = "echo-message" in sess.caps
    for target in targets:
        status = ""
        name = target
        while name and name[0] in _STATUS:
            status = status or _STATUS[name[0]]
            name = name[1:]
        if name and name[0] in "#&":
            chan = core.find_channel(name)
            if chan is None:
                if errors:
                    core.reply(sess, N.ERR_NOSUCHCHANNEL, name, "No such channel")
                continue
            if not _may_send(core, chan, sess):
                if errors:
                    core.reply(sess, N.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel")
                continue
            shown = target if status else chan.name
            line = _line(sess, command, shown, text, tagmsg)
            out = Outgoing(line, now, tags)
            members = chan.members
            if tagmsg:
                recipients = [m for m in members if "message-tags" in m.caps]
                core.relay(recipients, out, exclude=sess)
            elif status:
                recipients = [m for m, st in members.items() if _has_status(st, status)]
                core.relay(recipients, out, exclude=sess)
            else:
                core.relay_channel(chan, out, exclude=sess)
            if echo:
                core.relay_one(sess, out)
            continue
        user = core.find_nick(name)
        if user is None or status:
            if errors:
                core.reply(sess, N.ERR_NOSUCHNICK, name, "No such nick/channel")
            continue
        out = Outgoing(_line(sess, command, user.name, text, tagmsg), now, tags)
        if not tagmsg or "message-tags" in user.caps:
            core.relay_one(user, out)
        if errors and not tagmsg and user.away is not None:
            core.reply(sess, N.RPL_AWAY, user.name, user.away)
        if echo and user is not sess:  # a message to oneself arrives once
            core.relay_one(sess, out)


def _line(sess: Session, command: str, target: str, text: str, tagmsg: bool) -> str:
    if tagmsg:
        return f":{sess.nick}!{sess.user}@{sess.host} TAGMSG {target}"
    return f":{sess.nick}!{sess.user}@{sess.host} {command} {target} :{text}"


def _has_status(status: str, wanted: str) -> bool:
    if wanted == "o":
        return "o" in status
    return bool(status)  # "+": voiced or higher


def _may_send(core: ServerCore, chan: Channel, sess: Session) -> bool:
    status = chan.members.get(sess)
    if status is None:
        if "n" in chan.modes:
            return False
        if "m" in chan.modes:
            return False
        return not core.is_banned(chan, sess)
    if status:
        return True  # ops and voiced users always speak
    if "m" in chan.modes:
        return False
    return not chan.lists["b"] or not core.is_banned(chan, sess)
