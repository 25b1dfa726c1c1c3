"""Queries about users: WHO (with WHOX), WHOIS, WHOWAS.

A wildcard WHO walks every user: its cost in flood tokens grows with the
number of users it looks at, and it stops as soon as the asker's SendQ is full.
Masks are matched in linear time (``relaychat.protocol.masks``).

With IP cloaking, every reply shows the cloak; WHOIS adds the real address for
the user themself and for operators, as Ergo does: 378 RPL_WHOISHOST (``is
connecting from *@<ip> <ip>``) and 338 RPL_WHOISACTUALLY (``<user@ip> <ip>
:Actual user@host, Actual IP``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.caps import BOT_MODE, SECURE_MODE
from relaychat.protocol.casemap import mask_matches
from relaychat.protocol.handlers.common import (
    channel_visible,
    member_prefix,
    parse_int,
    safe_param,
    split_targets,
    visible,
)
from relaychat.protocol.timebase import ctime_utc

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Channel, Session, User
    from relaychat.protocol.timebase import Now

_WHOIS_CHANNELS_WIDTH = 400  # bytes of channel names per RPL_WHOISCHANNELS line
_WHO_PER_TOKEN = 200  # users looked at per extra flood token
WHOX_FIELDS = "tcuihsnfdlaor"


def _who_reply(
    core: ServerCore,
    sess: Session,
    target: User,
    chan: Channel | None,
    whox: tuple[str, str] | None,
    now: Now,
) -> None:
    """352, or 354 with the requested fields for a WHOX query (``WHO mask %fields``)."""
    flags = "G" if target.away is not None else "H"
    if target.oper_name is not None:
        flags += "*"
    if chan is not None:
        flags += member_prefix(chan.members.get(target, ""), "multi-prefix" in sess.caps)
    if BOT_MODE in target.modes:
        flags += BOT_MODE  # bot-mode: the ISUPPORT BOT letter, last (as Ergo)
    channel = chan.name if chan is not None else "*"
    ident = target.ident or "*"
    if whox is None:
        core.reply(
            sess,
            N.RPL_WHOREPLY,
            channel,
            ident,
            target.host,
            core.server_name,
            target.name,
            flags,
            f"0 {target.realname}",
        )
        return
    fields, token = whox
    values = {
        "t": token,
        "c": channel,
        "u": ident,
        "i": target.host,
        "h": target.host,
        "s": core.server_name,
        "n": target.name,
        "f": flags,
        "d": "0",
        "l": str(max(0, int(now.mono - target.idle_since))),
        "a": target.account or "0",  # "0": logged out, as the WHOX spec says
        "o": "n/a",
        "r": target.realname,
    }
    # the fields go out in this fixed order, whatever order they were asked in;
    # only the realname (last) may contain spaces
    params = [values[f] for f in WHOX_FIELDS if f in fields]
    core.reply(sess, N.RPL_WHOSPCRPL, *(params or ["*"]))


def _parse_whox(arg: str) -> tuple[str, str] | None:
    """``%fields[,token]`` (the WHOX spec) -> (field letters, token); None if no ``%``."""
    _, pct, rest = arg.partition("%")
    if not pct:
        return None
    fields, _, token = rest.partition(",")
    token = token[:3] if parse_int(token) is not None else "0"
    return "".join(f for f in fields if f in WHOX_FIELDS), token


def _who_channel_for(asker: User, target: User) -> Channel | None:
    """A channel of ``target`` that ``asker`` may see, preferring a shared one."""
    fallback: Channel | None = None
    for chan in target.channels.values():
        if asker in chan.members:
            return chan
        if fallback is None and "s" not in chan.modes:
            fallback = chan
    return fallback


def _who_matches(mask: str, target: User, cm: str) -> bool:
    fields = (target.name, target.ident or "", target.host, target.realname, target.prefix)
    return any(mask_matches(mask, f, cm) for f in fields)


# WHO [<mask> [o][%<fields>[,<token>]]]
def handle_who(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    mask = msg.params[0] if msg.params and msg.params[0] else "*"
    options = msg.params[1] if len(msg.params) > 1 else ""
    whox = _parse_whox(options)
    opers_only = "o" in options.partition("%")[0]
    asker = sess.user
    if core.is_channel_name(mask):
        chan = core.find_channel(mask)
        if chan is not None and channel_visible(asker, chan):
            on_channel = asker in chan.members
            members = list(chan.members)
            core.charge(sess, len(members) / _WHO_PER_TOKEN)
            for member in members:
                if opers_only and member.oper_name is None:
                    continue
                if on_channel or visible(asker, member):
                    _who_reply(core, sess, member, chan, whox, now)
                    if sess.closing is not None:
                        return
    elif not any(c in mask for c in "*?"):
        # an exact nick: shown whatever its modes, as WHOIS would show it
        target = core.find_user(mask)
        if target is not None and (not opers_only or target.oper_name is not None):
            _who_reply(core, sess, target, _who_channel_for(asker, target), whox, now)
    else:
        all_users = mask in ("*", "0")
        cm = core.config.server.casemapping
        users = list(core.registry.nicks.values())
        # a long mask with many '?' costs more per field (linear, but not free)
        core.charge(sess, len(users) * (1 + len(mask) / 50) / _WHO_PER_TOKEN)
        for target in users:
            if opers_only and target.oper_name is None:
                continue
            if not visible(asker, target):
                continue
            if all_users or _who_matches(mask, target, cm):
                _who_reply(core, sess, target, _who_channel_for(asker, target), whox, now)
                if sess.closing is not None:
                    return
    core.reply(sess, N.RPL_ENDOFWHO, safe_param(mask), "End of WHO list")


def _whois_channels(asker: Session, target: User) -> list[str]:
    multi = "multi-prefix" in asker.caps
    return [
        member_prefix(chan.members.get(target, ""), multi) + chan.name
        for chan in target.channels.values()
        if channel_visible(asker.user, chan)
    ]


# WHOIS [<server>] <nick>
def handle_whois(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    nick = (msg.params[1] if len(msg.params) > 1 else msg.params[0]).split(",")[0]
    target = core.find_user(nick) if nick else None
    if target is None or target.nick is None:
        core.reply(sess, N.ERR_NOSUCHNICK, safe_param(nick), "No such nick/channel")
        core.reply(sess, N.RPL_ENDOFWHOIS, safe_param(nick), "End of /WHOIS list")
        return
    tn = target.nick
    ident = target.ident or "*"
    core.reply(sess, N.RPL_WHOISUSER, tn, ident, target.host, "*", target.realname)
    line: list[str] = []
    width = 0
    for name in _whois_channels(sess, target):
        size = len(name.encode("utf-8")) + 1
        if line and width + size > _WHOIS_CHANNELS_WIDTH:
            core.reply(sess, N.RPL_WHOISCHANNELS, tn, " ".join(line))
            line, width = [], 0
        line.append(name)
        width += size
    if line:
        core.reply(sess, N.RPL_WHOISCHANNELS, tn, " ".join(line))
    core.reply(sess, N.RPL_WHOISSERVER, tn, core.server_name, core.config.server.description)
    if (target is sess.user or sess.user.oper_name is not None) and _cloaked(target):
        ip = "0" + target.ip if target.ip.startswith(":") else target.ip
        core.reply(sess, N.RPL_WHOISHOST, tn, f"is connecting from *@{target.ip} {target.ip}")
        core.reply(
            sess, N.RPL_WHOISACTUALLY, tn, f"{ident}@{ip}", ip, "Actual user@host, Actual IP"
        )
    if target.oper_name is not None:
        core.reply(sess, N.RPL_WHOISOPERATOR, tn, "is an IRC operator")
    if target.account is not None:
        core.reply(sess, N.RPL_WHOISACCOUNT, tn, target.account, "is logged in as")
    if SECURE_MODE in target.modes:
        core.reply(sess, N.RPL_WHOISSECURE, tn, "is using a secure connection")
    if target is sess.user or sess.user.oper_name is not None:  # as InspIRCd and Ergo
        for fp in dict.fromkeys(s.certfp for s in target.sessions if s.certfp):
            core.reply(sess, N.RPL_WHOISCERTFP, tn, f"has client certificate fingerprint {fp}")
    count = len(target.sessions)
    if count != 1 and target.registered:  # multiclient, or always-on with none
        text = f"is connected with {count} connections" if count else "is always-on, not connected"
        core.reply(sess, N.RPL_WHOISSPECIAL, tn, text)
    if BOT_MODE in target.modes:
        core.reply(sess, N.RPL_WHOISBOT, tn, f"is a Bot on {core.config.server.network}")
    if target.away is not None:
        core.reply(sess, N.RPL_AWAY, tn, target.away)
    idle = max(0, int(now.mono - target.idle_since))
    core.reply(
        sess,
        N.RPL_WHOISIDLE,
        tn,
        str(idle),
        str(int(target.signon)),
        "seconds idle, signon time",
    )
    core.reply(sess, N.RPL_ENDOFWHOIS, tn, "End of /WHOIS list")


def _cloaked(user: User) -> bool:
    """Whether others see a cloak instead of ``user``'s address."""
    return user.host != user.ip and user.host != "0" + user.ip


# WHOWAS <nick>{,<nick>} [<count>]
def handle_whowas(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    count = parse_int(msg.params[1]) if len(msg.params) > 1 else None
    for nick in split_targets(core, sess, msg.params[0], core.targets.whowas, "WHOWAS"):
        folded = core.fold(nick)
        found = 0
        shown = safe_param(nick)
        for entry in core.registry.whowas:
            if entry.folded != folded:
                continue
            core.reply(
                sess, N.RPL_WHOWASUSER, entry.nick, entry.ident, entry.host, "*", entry.realname
            )
            when = ctime_utc(entry.when, "%a %b %d %H:%M:%S %Y")
            core.reply(sess, N.RPL_WHOISSERVER, entry.nick, core.server_name, when)
            found += 1
            if count and found >= count:
                break
        if not found:
            core.reply(sess, N.ERR_WASNOSUCHNICK, shown, "There was no such nickname")
        core.reply(sess, N.RPL_ENDOFWHOWAS, shown, "End of WHOWAS")
