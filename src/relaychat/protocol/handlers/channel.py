"""Channel membership and metadata: JOIN, PART, TOPIC, NAMES, LIST, KICK, INVITE.

Invites (Modern IRC, following InspIRCd and Ergo): an invite is recorded only
when the inviter is a channel operator (any member may still *send* an INVITE
on a ``-i`` channel; it grants nothing). It is bound to the channel instance it
was made for (a channel destroyed and re-created is a new instance), used up by
the join it allows, expires after ``limits.invite_expiry`` seconds, and a user
holds at most ``limits.max_invites`` (the oldest is dropped). A valid invite
lets its holder past ``+i``, ``+l`` and ``+b``, not past ``+k``: the key is a
secret of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.casemap import mask_matches
from relaychat.protocol.chanreg import auto_mode
from relaychat.protocol.events import CHANNEL, ECHO_ALWAYS, USER
from relaychat.protocol.handlers.common import (
    channel_visible,
    is_chanop,
    member_channel,
    member_prefix,
    on_channel,
    parse_int,
    safe_param,
    split_targets,
)
from relaychat.protocol.handlers.metadata import sync_after_join
from relaychat.protocol.handlers.silence import silences
from relaychat.protocol.history import CHATHISTORY_CAP, replay_on_join
from relaychat.protocol.identity import join_events
from relaychat.protocol.message import pack, truncate_utf8
from relaychat.protocol.readmarkers import send_on_join

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Channel, Session
    from relaychat.protocol.timebase import Now

_NAMES_PER_TOKEN = 200  # NAMES/LIST/WHO cost one extra flood token per this many entries
_LIST_WORK_PER_TOKEN = 2000  # (channels x masks) checked per extra flood token


# JOIN <channel>{,<channel>} [<key>{,<key>}]  |  JOIN 0
def handle_join(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    if msg.params[0] == "0":
        for chan in list(sess.user.channels.values()):
            _part(core, sess, chan, "", now)
        return
    names = msg.params[0].split(",")
    keys = msg.params[1].split(",") if len(msg.params) > 1 else []
    key_of = {core.fold(n): keys[i] for i, n in enumerate(names) if i < len(keys)}
    for name in split_targets(core, sess, msg.params[0], core.targets.join, "JOIN"):
        _join_one(core, sess, name, key_of.get(core.fold(name)), now)
        if sess.closing is not None:
            return


def _join_one(core: ServerCore, sess: Session, name: str, key: str | None, now: Now) -> None:
    if not core.valid_channel_name(name):
        core.reply(sess, N.ERR_NOSUCHCHANNEL, safe_param(name), "No such channel")
        return
    user = sess.user
    reg = core.registry
    folded = core.fold(name)
    if folded in user.channels:
        return
    if len(user.channels) >= core.limits.chanlimit:
        core.reply(sess, N.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
        return
    chan = reg.channels.get(folded)
    if chan is None:
        chan = reg.create_channel(name, now.wall)
        reg.join(chan, user, "o")
    else:
        invited = reg.has_invite(user, chan, now.mono)
        error = _join_error(core, chan, sess, key, invited)
        if error is not None:
            numeric, text = error
            core.reply(sess, numeric, chan.name, text)
            return
        if invited:
            reg.take_invite(user, chan, now.mono)
        reg.join(chan, user)
    join_events(core, user, chan, now)  # extended-join: account and realname to those who asked
    if chan.registration is not None:
        auto_mode(core, chan, user, now)  # ChanServ's +o/+v for the access list
    if user.away is not None:
        # away-notify: members learn at once that the newcomer is away
        core.emit(
            core.event(
                user,
                "AWAY",
                [user.away],
                now,
                CHANNEL,
                channel=chan,
                cap="away-notify",
                origin=sess,
                trailing=True,
            )
        )
    send_on_join(core, user, chan, user.sessions)  # draft/read-marker: before NAMES
    if chan.topic:
        _send_topic(core, sess, chan)
    if "no-implicit-names" not in sess.caps:
        send_names(core, sess, chan)
    if sess.metadata is not None and sess.closing is None:
        sync_after_join(core, sess, chan, now)
    history = core.history
    if history is not None and history.config.autoreplay_lines and CHATHISTORY_CAP not in sess.caps:
        replay_on_join(core, sess, chan, history.config.autoreplay_lines)


def _join_error(
    core: ServerCore, chan: Channel, sess: Session, key: str | None, invited: bool
) -> tuple[str, str] | None:
    user = sess.user
    if chan.key is not None and key != chan.key:
        return N.ERR_BADCHANNELKEY, "Cannot join channel (+k)"
    if invited:
        return None
    if chan.limit is not None and len(chan.members) >= chan.limit:
        return N.ERR_CHANNELISFULL, "Cannot join channel (+l)"
    if "i" in chan.modes and not core.matches_list(chan, "I", user):
        return N.ERR_INVITEONLYCHAN, "Cannot join channel (+i)"
    if core.is_banned(chan, user):
        return N.ERR_BANNEDFROMCHAN, "Cannot join channel (+b)"
    return None


def _send_topic(core: ServerCore, sess: Session, chan: Channel) -> None:
    core.reply(sess, N.RPL_TOPIC, chan.name, chan.topic)
    setter = safe_param(chan.topic_setter)
    core.reply(sess, N.RPL_TOPICWHOTIME, chan.name, setter, str(int(chan.topic_time)))


send_topic = _send_topic  # 332 and 333 (a session attaching to its user gets them too)


def send_names(core: ServerCore, sess: Session, chan: Channel) -> None:
    """353 lines (as many names as fit in 512 bytes) then 366."""
    multi = "multi-prefix" in sess.caps
    uhnames = "userhost-in-names" in sess.caps
    symbol = "@" if "s" in chan.modes else "="
    asker = sess.user
    member_of = asker in chan.members
    head = f":{core.server_name} {N.RPL_NAMREPLY} {sess.name} {symbol} {chan.name} :"
    items = (
        member_prefix(status, multi) + (member.prefix if uhnames else member.name)
        for member, status in chan.members.items()
        if member_of or "i" not in member.modes
    )
    for names in pack(items, 510 - len(head.encode())):
        core.send_line(sess, head + names)
        if sess.closing is not None:
            return
    core.reply(sess, N.RPL_ENDOFNAMES, chan.name, "End of /NAMES list")


# PART <channel>{,<channel>} [<reason>]
def handle_part(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    reason = msg.params[1] if len(msg.params) > 1 else ""
    for name in split_targets(core, sess, msg.params[0], core.targets.part, "PART"):
        chan = member_channel(core, sess, name)
        if chan is not None:
            _part(core, sess, chan, reason, now)


def _part(core: ServerCore, sess: Session, chan: Channel, reason: str, now: Now) -> None:
    params = [chan.name, reason] if reason else [chan.name]
    core.emit(
        core.event(
            sess.user,
            "PART",
            params,
            now,
            CHANNEL,
            channel=chan,
            echo=ECHO_ALWAYS,
            trailing=bool(reason),
        )
    )
    core.registry.part(chan, sess.user)


# TOPIC <channel> [<topic>]
def handle_topic(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    name = msg.params[0]
    chan = core.find_channel(name)
    if chan is None:
        core.reply(sess, N.ERR_NOSUCHCHANNEL, safe_param(name), "No such channel")
        return
    if len(msg.params) == 1:
        if "s" in chan.modes and not on_channel(core, sess, chan):
            return
        if chan.topic:
            _send_topic(core, sess, chan)
        else:
            core.reply(sess, N.RPL_NOTOPIC, chan.name, "No topic is set")
        return
    if not on_channel(core, sess, chan) or ("t" in chan.modes and not is_chanop(core, sess, chan)):
        return
    topic = truncate_utf8(msg.params[1], core.limits.topiclen)
    ev = core.event(
        sess.user,
        "TOPIC",
        [chan.name, topic],
        now,
        CHANNEL,
        channel=chan,
        echo=ECHO_ALWAYS,
        trailing=True,
    )
    core.registry.set_topic(chan, ev.params[-1], sess.user.prefix, now.wall)
    core.emit(ev)


# NAMES [<channel>{,<channel>}]
def handle_names(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    if not msg.params:
        core.reply(sess, N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return
    for name in split_targets(core, sess, msg.params[0], core.targets.names, "NAMES"):
        chan = core.find_channel(name)
        if chan is None or not channel_visible(sess.user, chan):
            core.reply(sess, N.RPL_ENDOFNAMES, safe_param(name), "End of /NAMES list")
        else:
            core.charge(sess, len(chan.members) / _NAMES_PER_TOKEN)
            send_names(core, sess, chan)
        if sess.closing is not None:
            return


# LIST [<channel or mask>{,...}] [<elistcond>{,<elistcond>}]   (ELIST C M N T U)
def handle_list(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    filters: list[tuple[str, str, int]] = []
    masks: list[str] = []  # ELIST M: channels matching any of these
    negated: list[str] = []  # ELIST N: "!mask", channels matching none of these
    bad_filter = False
    for param in msg.params[:2]:
        for item in param.split(","):
            cond = _parse_elist(item)
            if cond is not None:
                filters.append(cond)
            elif item[:1] in ("<", ">") or (item[:1] in "CTU" and item[1:2] in ("<", ">")):
                bad_filter = True  # malformed: matches nothing
            elif item[:1] == "!" and len(item) > 1:
                negated.append(item[1:])
            elif item:
                masks.append(item)
    cap = core.targets.list  # TARGMAX LIST: the same number
    if len(masks) + len(negated) > cap:
        core.reply(sess, N.ERR_TOOMANYTARGETS, "LIST", f"Too many masks (at most {cap})")
        return
    cm = core.config.server.casemapping
    asker = sess.user
    channels = list(core.registry.channels.values())
    core.charge(sess, len(channels) * (1 + len(masks) + len(negated)) / _LIST_WORK_PER_TOKEN)
    core.reply(sess, N.RPL_LISTSTART, "Channel", "Users  Name")
    if not bad_filter:
        for chan in channels:
            if "s" in chan.modes and asker not in chan.members:
                continue
            if masks and not any(mask_matches(m, chan.name, cm) for m in masks):
                continue
            if negated and any(mask_matches(m, chan.name, cm) for m in negated):
                continue
            if filters and not all(_elist_ok(f, chan, now) for f in filters):
                continue
            modes = "+" + "".join(sorted(chan.modes))
            core.reply(
                sess, N.RPL_LIST, chan.name, str(len(chan.members)), f"[{modes}] {chan.topic}"
            )
            if sess.closing is not None:
                return
    core.reply(sess, N.RPL_LISTEND, "End of /LIST")


def _parse_elist(item: str) -> tuple[str, str, int] | None:
    """``>n``/``<n`` (users), ``C>m``/``C<m`` (created), ``T>m``/``T<m`` (topic age
    in minutes) -> (kind, op, value); None if ``item`` is not a valid condition."""
    kind = "U"
    cond = item
    if cond[:1] in ("C", "T", "U") and cond[1:2] in ("<", ">"):
        kind, cond = cond[0], cond[1:]
    if cond[:1] not in ("<", ">"):
        return None
    value = parse_int(cond[1:])
    if value is None:
        return None
    return kind, cond[0], value


def _elist_ok(cond: tuple[str, str, int], chan: Channel, now: Now) -> bool:
    kind, op, value = cond
    if kind == "U":
        n = len(chan.members)
    elif kind == "C":
        n = int((now.wall - chan.created) // 60)
    else:
        if not chan.topic:
            return False
        n = int((now.wall - chan.topic_time) // 60)
    # "C<m": created less than m minutes ago; "U>n": more than n users
    return n > value if op == ">" else n < value


# KICK <channel> <user>{,<user>} [<comment>]
def handle_kick(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    chan = member_channel(core, sess, msg.params[0])
    if chan is None or not is_chanop(core, sess, chan):
        return
    comment = msg.params[2] if len(msg.params) > 2 and msg.params[2] else sess.name
    comment = truncate_utf8(comment, core.limits.kicklen)
    for nick in split_targets(core, sess, msg.params[1], core.targets.kick, "KICK"):
        target = core.find_user(nick)
        if target is None or target not in chan.members:
            core.reply(
                sess,
                N.ERR_USERNOTINCHANNEL,
                safe_param(nick),
                chan.name,
                "They aren't on that channel",
            )
            continue
        core.emit(
            core.event(
                sess.user,
                "KICK",
                [chan.name, target.name, comment],
                now,
                CHANNEL,
                channel=chan,
                echo=ECHO_ALWAYS,
                trailing=True,
            )
        )
        core.registry.part(chan, target)
        if core.registry.channels.get(chan.folded) is not chan:
            break  # the channel is gone (its last member was kicked)


# INVITE <nickname> <channel>
def handle_invite(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    nick, name = msg.params[0], msg.params[1]
    target = core.find_user(nick)
    if target is None:
        core.reply(sess, N.ERR_NOSUCHNICK, safe_param(nick), "No such nick/channel")
        return
    chan = member_channel(core, sess, name)
    if chan is None or ("i" in chan.modes and not is_chanop(core, sess, chan)):
        return
    if target in chan.members:
        core.reply(sess, N.ERR_USERONCHANNEL, target.name, chan.name, "is already on channel")
        return
    user = sess.user
    if chan.is_op(user):
        lim = core.limits
        core.registry.invite(
            target,
            chan,
            user.prefix,
            now.mono + lim.invite_expiry,
            lim.max_invites,
        )
    core.reply(sess, N.RPL_INVITING, target.name, chan.name)
    if not silences(core, target, user):  # dropped without a word, like a private message
        core.emit(core.event(user, "INVITE", [target.name, chan.name], now, USER, target=target))
    if target.away is not None:
        core.reply(sess, N.RPL_AWAY, target.name, target.away)
    core.emit(
        core.event(
            user,
            "INVITE",
            [target.name, chan.name],
            now,
            CHANNEL,
            channel=chan,
            cap="invite-notify",
            origin=sess,
        )
    )
