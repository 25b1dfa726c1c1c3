"""Messages between users: PRIVMSG, NOTICE, TAGMSG.

The hot path of the server: each target gets one :class:`Event`; local delivery
serialises it once per variant and shares one batch per channel per turn.
Targets are deduplicated (case-folded) and capped at ``MAXTARGETS``; the text
is cut so that the relayed line fits in 512 bytes. NOTICE never produces an
error reply, as RFC 2812 requires. A private message from a sender the target
has silenced (SILENCE) is dropped without a word: the sender gets only what a
delivery would have given it (its echo-message copy, RPL_AWAY).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.events import CHANNEL, ECHO_CAP, USER, Event, fit_text
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.handlers.silence import silences

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Channel, Session, User
    from relaychat.protocol.timebase import Now

_STATUS = {"@": "o", "+": "v"}  # STATUSMSG prefix -> lowest status that receives it


# PRIVMSG <target>{,<target>} <text to be sent>
def handle_privmsg(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    _deliver(core, sess, msg, now, "PRIVMSG", True)


# NOTICE <target>{,<target>} <text to be sent>
def handle_notice(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    _deliver(core, sess, msg, now, "NOTICE", False)


# TAGMSG <target>{,<target>}
def handle_tagmsg(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    _deliver(core, sess, msg, now, "TAGMSG", True)


def client_tags(msg: Message) -> dict[str, str] | None:
    if not msg.tags:
        return None
    tags = {k: v for k, v in msg.tags.items() if k.startswith("+")}
    return tags or None


def _deliver(
    core: ServerCore, sess: Session, msg: Message, now: Now, command: str, errors: bool
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
    tags = None
    if msg.tags:
        if "batch" in msg.tags:
            # a line of a batch the client has not opened (or that ended)
            core.fail(sess, "BATCH", "MULTILINE_INVALID", "Unknown batch reference")
            return
        if "message-tags" in sess.caps:
            tags = client_tags(msg)
    if tagmsg and tags is None:
        return  # a TAGMSG without client tags carries nothing
    raw = params[0]
    targets = raw.split(",") if "," in raw else [raw]
    if len(targets) > 1:
        targets = _dedup(core, targets)
        if len(targets) > core.targets.privmsg:
            if errors:
                core.reply(sess, N.ERR_TOOMANYTARGETS, safe_param(raw), "Too many targets")
            return
    user = sess.user
    prefix = user.source
    text = "" if tagmsg else params[1]
    cap = "message-tags" if tagmsg else None
    wall = now.wall
    for target in targets:
        # resolve_target's checks, inline: this loop is the hot path, and a call
        # per target would cost 2% of a private message (the tests compare the two)
        status = ""
        name = target
        while name and name[0] in _STATUS:
            status = status or _STATUS[name[0]]
            name = name[1:]
        if name and name[0] in "#&":
            chan = core.find_channel(name)
            if chan is None:
                if errors:
                    core.reply(sess, N.ERR_NOSUCHCHANNEL, safe_param(name), "No such channel")
                continue
            if not _may_send(core, chan, user):
                if errors:
                    core.reply(sess, N.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel")
                continue
            shown = (("@" if status == "o" else "+") + chan.name) if status else chan.name
            dest = None
            audience = CHANNEL
        else:
            dest = core.find_user(name)
            if dest is None or status:
                service = core.services.get(core.fold(name)) if dest is None else None
                if service is not None:
                    if command == "PRIVMSG":  # a NOTICE or TAGMSG to a service is dropped
                        service(core, sess, text, now)
                elif errors:
                    core.reply(sess, N.ERR_NOSUCHNICK, safe_param(name), "No such nick/channel")
                continue
            chan = None
            shown = dest.name
            audience = USER
        # the text came through the parser (no CR, LF or NUL); names are valid words
        if tagmsg:
            line = f":{prefix} TAGMSG {shown}"
            ev_params = [shown]
        else:
            head = f":{prefix} {command} {shown} :"
            body = text if (len(head) + len(text)) * 4 <= 510 else fit_text(head, text)
            line = head + body
            ev_params = [shown, body]
        ev = Event(
            command,
            prefix,
            ev_params,
            line,
            wall,
            core.msgid(),
            audience,
            user,
            sess,
            chan,
            dest,
            tags,
            status,
            cap,
            ECHO_CAP,
        )
        if dest is not None and dest.silence is not None and silences(core, dest, user):
            if "echo-message" in sess.caps:
                core.output.send_bytes(sess, ev.for_variant(sess.variant))
        else:
            core.emit(ev)
        if dest is not None and errors and not tagmsg and dest.away is not None:
            core.reply(sess, N.RPL_AWAY, dest.name, dest.away)


Target = tuple[str, int, "Channel | None", "User | None", str]


def resolve_target(core: ServerCore, sess: Session, target: str, errors: bool) -> Target | None:
    """One message target (``#chan``, ``@#chan``, ``nick``) as (shown, audience,
    channel, user, status), checked as PRIVMSG checks it: the channel exists and
    ``sess``'s user may speak there (``+n``, ``+m``, bans), the nick exists. None
    when it may not be sent to; then, with ``errors``, the numeric is sent."""
    status = ""
    name = target
    while name and name[0] in _STATUS:
        status = status or _STATUS[name[0]]
        name = name[1:]
    if name and name[0] in "#&":
        chan = core.find_channel(name)
        if chan is None:
            if errors:
                core.reply(sess, N.ERR_NOSUCHCHANNEL, safe_param(name), "No such channel")
            return None
        if not _may_send(core, chan, sess.user):
            if errors:
                core.reply(sess, N.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel")
            return None
        shown = (("@" if status == "o" else "+") + chan.name) if status else chan.name
        return shown, CHANNEL, chan, None, status
    dest = core.find_user(name)
    if dest is None or status:
        if errors:
            core.reply(sess, N.ERR_NOSUCHNICK, safe_param(name), "No such nick/channel")
        return None
    return dest.name, USER, None, dest, ""


def _dedup(core: ServerCore, targets: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for t in targets:
        key = core.fold(t)
        if t and key not in seen:
            seen.add(key)
            out.append(t)
    return out


def _may_send(core: ServerCore, chan: Channel, user: User) -> bool:
    status = chan.members.get(user)
    if status is None:
        if "n" in chan.modes or "m" in chan.modes:
            return False
        return not core.is_banned(chan, user)
    if status:
        return True  # ops and voiced users always speak
    if "m" in chan.modes:
        return False
    return not chan.lists["b"] or not core.is_banned(chan, user)
