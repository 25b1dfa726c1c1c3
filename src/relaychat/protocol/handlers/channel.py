"""Channel membership and metadata: JOIN, PART, TOPIC, NAMES, LIST, KICK, INVITE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.casemap import mask_matches
from relaychat.protocol.message import truncate_utf8
from relaychat.protocol.server import Outgoing
from relaychat.protocol.state import Channel

if TYPE_CHECKING:
    from relaychat.protocol.message import Message
    from relaychat.protocol.server import ServerCore
    from relaychat.protocol.state import Session

# status letter -> prefix character, highest rank first
PREFIXES = (("o", "@"), ("v", "+"))


def member_prefix(status: str, multi: bool) -> str:
    """The NAMES/WHO prefix for a member's status letters (all of them with multi-prefix)."""
    if not status:
        return ""
    chars = [p for letter, p in PREFIXES if letter in status]
    return "".join(chars) if multi else chars[0] if chars else ""


def on_channel(core: ServerCore, sess: Session, chan: Channel) -> bool:
    """Whether ``sess`` is on ``chan``; 442 if not."""
    if sess in chan.members:
        return True
    core.reply(sess, N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
    return False


def is_chanop(core: ServerCore, sess: Session, chan: Channel) -> bool:
    """Whether ``sess`` is an operator on ``chan``; 482 if not."""
    if chan.is_op(sess):
        return True
    core.reply(sess, N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
    return False


def member_channel(core: ServerCore, sess: Session, name: str) -> Channel | None:
    """The channel ``name`` if ``sess`` is on it; otherwise 403 or 442 and None."""
    chan = core.find_channel(name)
    if chan is None:
        core.reply(sess, N.ERR_NOSUCHCHANNEL, name, "No such channel")
        return None
    return chan if on_channel(core, sess, chan) else None


# JOIN <channel>{,<channel>} [<key>{,<key>}]  |  JOIN 0
def handle_join(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    if msg.params[0] == "0":
        for chan in list(sess.channels.values()):
            _part(core, sess, chan, "", now)
        return
    names = msg.params[0].split(",")
    keys = msg.params[1].split(",") if len(msg.params) > 1 else []
    for i, name in enumerate(names):
        if not name:
            continue
        key = keys[i] if i < len(keys) else None
        _join_one(core, sess, name, key, now)


def _join_one(core: ServerCore, sess: Session, name: str, key: str | None, now: float) -> None:
    if not core.valid_channel_name(name):
        core.reply(sess, N.ERR_NOSUCHCHANNEL, name, "No such channel")
        return
    folded = core.fold(name)
    if folded in sess.channels:
        return
    if len(sess.channels) >= core.limits.chanlimit:
        core.reply(sess, N.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
        return
    chan = core.channels.get(folded)
    creating = chan is None
    if chan is None:
        chan = Channel(name, folded, now)
    else:
        invited = sess.invited is not None and folded in sess.invited
        error = _join_error(core, chan, sess, key, invited)
        if error is not None:
            numeric, text = error
            core.reply(sess, numeric, chan.name, text)
            return
    if creating:
        core.channels[folded] = chan
    core.add_member(chan, sess, "o" if creating else "")
    if sess.invited is not None:
        sess.invited.discard(folded)
    core.relay(chan.members, Outgoing(f":{sess.prefix} JOIN {chan.name}", now))
    if chan.topic:
        _send_topic(core, sess, chan)
    send_names(core, sess, chan)


def _join_error(
    core: ServerCore, chan: Channel, sess: Session, key: str | None, invited: bool
) -> tuple[str, str] | None:
    if chan.key is not None and key != chan.key:
        return N.ERR_BADCHANNELKEY, "Cannot join channel (+k)"
    if chan.limit is not None and len(chan.members) >= chan.limit and not invited:
        return N.ERR_CHANNELISFULL, "Cannot join channel (+l)"
    if "i" in chan.modes and not invited and not core.matches_list(chan, "I", sess):
        return N.ERR_INVITEONLYCHAN, "Cannot join channel (+i)"
    if core.is_banned(chan, sess) and not invited:
        return N.ERR_BANNEDFROMCHAN, "Cannot join channel (+b)"
    return None


def _send_topic(core: ServerCore, sess: Session, chan: Channel) -> None:
    core.reply(sess, N.RPL_TOPIC, chan.name, chan.topic)
    core.reply(sess, N.RPL_TOPICWHOTIME, chan.name, chan.topic_setter, str(int(chan.topic_time)))


def send_names(core: ServerCore, sess: Session, chan: Channel) -> None:
    """353 lines (as many as fit in 512 bytes) then 366."""
    multi = "multi-prefix" in sess.caps
    uhnames = "userhost-in-names" in sess.caps
    symbol = "@" if "s" in chan.modes else "="
    visible = sess in chan.members
    items: list[str] = []
    for member, status in chan.members.items():
        if not visible and "i" in member.modes:
            continue
        who = member.prefix if uhnames else member.name
        items.append(member_prefix(status, multi) + who)
    head = f":{core.server_name} {N.RPL_NAMREPLY} {sess.name} {symbol} {chan.name} :"
    room = 510 - len(head.encode())
    line: list[str] = []
    size = 0
    for item in items:
        n = len(item.encode()) + 1
        if line and size + n > room:
            core.send_raw(sess, head + " ".join(line))
            line, size = [], 0
        line.append(item)
        size += n
    if line:
        core.send_raw(sess, head + " ".join(line))
    core.reply(sess, N.RPL_ENDOFNAMES, chan.name, "End of /NAMES list")


# PART <channel>{,<channel>} [<reason>]
def handle_part(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    reason = msg.params[1] if len(msg.params) > 1 else ""
    for name in msg.params[0].split(","):
        if not name:
            continue
        chan = member_channel(core, sess, name)
        if chan is not None:
            _part(core, sess, chan, reason, now)


def _part(core: ServerCore, sess: Session, chan: Channel, reason: str, now: float) -> None:
    line = f":{sess.prefix} PART {chan.name}" + (f" :{reason}" if reason else "")
    core.relay(chan.members, Outgoing(line, now))
    core.remove_member(chan, sess)


# TOPIC <channel> [<topic>]
def handle_topic(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    name = msg.params[0]
    chan = core.find_channel(name)
    if chan is None:
        core.reply(sess, N.ERR_NOSUCHCHANNEL, name, "No such channel")
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
    chan.topic = topic
    chan.topic_setter = sess.prefix
    chan.topic_time = now
    core.relay(chan.members, Outgoing(f":{sess.prefix} TOPIC {chan.name} :{topic}", now))


# NAMES [<channel>{,<channel>}]
def handle_names(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    if not msg.params:
        core.reply(sess, N.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return
    for name in msg.params[0].split(","):
        chan = core.find_channel(name)
        if chan is None or ("s" in chan.modes and sess not in chan.members):
            core.reply(sess, N.RPL_ENDOFNAMES, name, "End of /NAMES list")
        else:
            send_names(core, sess, chan)


# LIST [<channel or mask>{,...}] [<elistcond>{,<elistcond>}]   (ELIST C M N T U)
def handle_list(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    filters: list[str] = []
    masks: list[str] = []  # ELIST M: channels matching any of these
    negated: list[str] = []  # ELIST N: "!mask", channels matching none of these
    for param in msg.params:
        for item in param.split(","):
            if item[:1] in ("<", ">") or (item[:1] in ("C", "T", "U") and item[1:2] in ("<", ">")):
                filters.append(item)
            elif item[:1] == "!" and len(item) > 1:
                negated.append(item[1:])
            elif item:
                masks.append(item)
    cm = core.config.server.casemapping
    core.reply(sess, N.RPL_LISTSTART, "Channel", "Users  Name")
    for chan in list(core.channels.values()):
        if "s" in chan.modes and sess not in chan.members:
            continue
        if masks and not any(mask_matches(m, chan.name, cm) for m in masks):
            continue
        if any(mask_matches(m, chan.name, cm) for m in negated):
            continue
        if not all(_elist_ok(f, chan, now) for f in filters):
            continue
        modes = "+" + "".join(sorted(chan.modes))
        core.reply(sess, N.RPL_LIST, chan.name, str(len(chan.members)), f"[{modes}] {chan.topic}")
    core.reply(sess, N.RPL_LISTEND, "End of /LIST")


def _elist_ok(cond: str, chan: Channel, now: float) -> bool:
    """ELIST filters: >n / <n users (U), C>m / C<m created minutes ago, T>m / T<m
    topic set minutes ago. A malformed filter matches nothing."""
    kind = "U"
    if cond[0] in "CTU":
        kind, cond = cond[0], cond[1:]
    if len(cond) < 2 or cond[0] not in "<>" or not cond[1:].isdigit():
        return False
    op, value = cond[0], int(cond[1:])
    if kind == "U":
        n = len(chan.members)
    elif kind == "C":
        n = int((now - chan.created) // 60)
    else:
        if not chan.topic:
            return False
        n = int((now - chan.topic_time) // 60)
    # "C<m": created less than m minutes ago; "U>n": more than n users
    return n > value if op == ">" else n < value


# KICK <channel> <user>{,<user>} [<comment>]
def handle_kick(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    chan = member_channel(core, sess, msg.params[0])
    if chan is None or not is_chanop(core, sess, chan):
        return
    comment = msg.params[2] if len(msg.params) > 2 and msg.params[2] else sess.name
    comment = truncate_utf8(comment, core.limits.kicklen)
    for nick in msg.params[1].split(","):
        target = core.find_nick(nick)
        if target is None or target not in chan.members:
            core.reply(sess, N.ERR_USERNOTINCHANNEL, nick, chan.name, "They aren't on that channel")
            continue
        line = f":{sess.prefix} KICK {chan.name} {target.name} :{comment}"
        core.relay(chan.members, Outgoing(line, now))
        core.remove_member(chan, target)
        if chan.folded not in core.channels:
            break


# INVITE <nickname> <channel>
def handle_invite(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    nick, name = msg.params[0], msg.params[1]
    target = core.find_nick(nick)
    if target is None:
        core.reply(sess, N.ERR_NOSUCHNICK, nick, "No such nick/channel")
        return
    chan = member_channel(core, sess, name)
    if chan is None or ("i" in chan.modes and not is_chanop(core, sess, chan)):
        return
    if target in chan.members:
        core.reply(sess, N.ERR_USERONCHANNEL, target.name, chan.name, "is already on channel")
        return
    if target.invited is None:
        target.invited = set()
    target.invited.add(chan.folded)
    core.reply(sess, N.RPL_INVITING, target.name, chan.name)
    core.send_raw(target, f":{sess.prefix} INVITE {target.name} {chan.name}")
    if target.away is not None:
        core.reply(sess, N.RPL_AWAY, target.name, target.away)
    notify = [m for m in chan.members if "invite-notify" in m.caps and m is not sess]
    if notify:
        out = Outgoing(f":{sess.prefix} INVITE {target.name} {chan.name}", now)
        core.relay(notify, out)
