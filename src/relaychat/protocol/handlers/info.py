"""Queries and information: AWAY, ISON, USERHOST, WHO, WHOIS, WHOWAS, SETNAME,
MOTD, LUSERS, VERSION, TIME, INFO, ADMIN, LINKS, HELP.

Also the welcome-burst pieces the core calls after registration
(:func:`send_lusers`, :func:`send_motd`).

Visibility rules shared by WHO and WHOIS: a user with ``+i`` is hidden from
wildcard WHO unless the asker shares a channel with them; a ``+s`` channel is
hidden (from WHOIS channel lists, from WHO) unless the asker is on it.
"""

from __future__ import annotations

import time as _time
from typing import TYPE_CHECKING

from relaychat import __version__
from relaychat.protocol import numerics as N
from relaychat.protocol.casemap import mask_matches
from relaychat.protocol.handlers.channel import member_prefix
from relaychat.protocol.message import truncate_utf8
from relaychat.protocol.server import Outgoing

if TYPE_CHECKING:
    from relaychat.protocol.message import Message
    from relaychat.protocol.server import ServerCore
    from relaychat.protocol.state import Channel, Session

__all__ = [
    "HELP_TOPICS",
    "REALNAME_LEN",
    "safe_param",
    "send_lusers",
    "send_motd",
    "shares_channel",
]

REALNAME_LEN = 128  # characters; SETNAME refuses longer
USERHOST_MAX = 5  # nicks answered per USERHOST
_WHOIS_CHANNELS_WIDTH = 400  # bytes of channel names per RPL_WHOISCHANNELS line


# ----------------------------------------------------------------- helpers
def safe_param(text: str) -> str:
    """A client-supplied word echoed as a middle parameter: ``*`` if it would
    break the line (empty, has a space, starts with ``:``)."""
    return "*" if not text or " " in text or text[0] == ":" else text


def shares_channel(a: Session, b: Session) -> bool:
    small, other = (a, b) if len(a.channels) <= len(b.channels) else (b, a)
    return any(other in chan.members for chan in small.channels.values())


def _visible(asker: Session, target: Session) -> bool:
    """Whether a wildcard query by ``asker`` may list ``target`` (``+i`` hides)."""
    return target is asker or "i" not in target.modes or shares_channel(asker, target)


def _channel_visible(asker: Session, chan: Channel) -> bool:
    return "s" not in chan.modes or asker in chan.members


def _is_oper(sess: Session) -> bool:
    return sess.oper_name is not None


# ------------------------------------------------------- welcome burst parts
def send_lusers(core: ServerCore, sess: Session) -> None:
    """251-255, 265, 266, from the core's running counts."""
    users = core.registered_count
    invisible = core.invisible_count
    opers = core.oper_count
    unknown = len(core.sessions) - users
    top = max(core.max_users_seen, users)
    core.reply(
        sess,
        N.RPL_LUSERCLIENT,
        f"There are {users - invisible} users and {invisible} invisible on 1 servers",
    )
    core.reply(sess, N.RPL_LUSEROP, str(opers), "operator(s) online")
    core.reply(sess, N.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)")
    core.reply(sess, N.RPL_LUSERCHANNELS, str(len(core.channels)), "channels formed")
    core.reply(sess, N.RPL_LUSERME, f"I have {users} clients and 0 servers")
    core.reply(
        sess, N.RPL_LOCALUSERS, str(users), str(top), f"Current local users {users}, max {top}"
    )
    core.reply(
        sess, N.RPL_GLOBALUSERS, str(users), str(top), f"Current global users {users}, max {top}"
    )


def send_motd(core: ServerCore, sess: Session) -> None:
    """375, 372 per line, 376; or 422 when the configured MOTD is empty."""
    text = core.config.server.motd
    if not text.strip():
        core.reply(sess, N.ERR_NOMOTD, "MOTD File is missing")
        return
    core.reply(sess, N.RPL_MOTDSTART, f"- {core.server_name} Message of the day - ")
    for line in text.splitlines():
        core.reply(sess, N.RPL_MOTD, f"- {line}")
    core.reply(sess, N.RPL_ENDOFMOTD, "End of /MOTD command.")


# ------------------------------------------------------------------ handlers
# AWAY [<message>]
def handle_away(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    text = msg.params[0] if msg.params else ""
    was_away = sess.away is not None
    if text:
        sess.away = truncate_utf8(text, core.limits.awaylen)
        core.reply(sess, N.RPL_NOWAWAY, "You have been marked as being away")
        line = f":{sess.prefix} AWAY :{sess.away}"
    else:
        sess.away = None
        core.reply(sess, N.RPL_UNAWAY, "You are no longer marked as being away")
        if not was_away:
            return
        line = f":{sess.prefix} AWAY"
    peers = [p for p in core.common_peers(sess) if "away-notify" in p.caps]
    if peers:
        core.relay(peers, Outgoing(line, now))


# ISON <nickname>{ <nickname>}
def handle_ison(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    found: list[str] = []
    for nick in " ".join(msg.params).split():
        target = core.find_nick(nick)
        if target is not None and target.nick is not None:
            found.append(target.nick)
    core.reply(sess, N.RPL_ISON, " ".join(found))


# USERHOST <nickname>{ <nickname>}
def handle_userhost(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    replies: list[str] = []
    for nick in " ".join(msg.params).split()[:USERHOST_MAX]:
        t = core.find_nick(nick)
        if t is None:
            continue
        oper = "*" if _is_oper(t) else ""
        away = "-" if t.away is not None else "+"
        replies.append(f"{t.nick}{oper}={away}{t.user}@{t.host}")
    core.reply(sess, N.RPL_USERHOST, " ".join(replies))


def _who_reply(
    core: ServerCore,
    sess: Session,
    target: Session,
    chan: Channel | None,
    whox: tuple[str, str] | None = None,
    now: float = 0.0,
) -> None:
    """352, or 354 with the requested fields for a WHOX query (``WHO mask %fields``)."""
    flags = "G" if target.away is not None else "H"
    if _is_oper(target):
        flags += "*"
    if chan is not None:
        flags += member_prefix(chan.members.get(target, ""), "multi-prefix" in sess.caps)
    channel = chan.name if chan is not None else "*"
    if whox is None:
        core.reply(
            sess,
            N.RPL_WHOREPLY,
            channel,
            target.user or "*",
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
        "u": target.user or "*",
        "i": target.ip if ":" not in target.ip[:1] else target.host,
        "h": target.host,
        "s": core.server_name,
        "n": target.name,
        "f": flags,
        "d": "0",
        "l": str(max(0, int(now - target.idle_since))),
        "a": "0",  # no accounts yet: "0" means logged out, as the WHOX spec says
        "o": "n/a",
        "r": target.realname,
    }
    # the fields go out in this fixed order, whatever order they were asked in
    params = [values[f] for f in WHOX_FIELDS if f in fields]
    core.reply(sess, N.RPL_WHOSPCRPL, *(params or ["*"]))


WHOX_FIELDS = "tcuihsnfdlaor"


def _parse_whox(arg: str) -> tuple[str, str] | None:
    """``%fields[,token]`` (the WHOX spec) -> (field letters, token); None if no ``%``."""
    _, pct, rest = arg.partition("%")
    if not pct:
        return None
    fields, _, token = rest.partition(",")
    token = token[:3] if token.isdigit() else "0"
    return "".join(f for f in fields if f in WHOX_FIELDS), token


def _who_channel_for(sess: Session, target: Session) -> Channel | None:
    """A channel of ``target`` that ``sess`` may see, preferring a shared one."""
    fallback: Channel | None = None
    for chan in target.channels.values():
        if sess in chan.members:
            return chan
        if fallback is None and "s" not in chan.modes:
            fallback = chan
    return fallback


def _who_matches(core: ServerCore, mask: str, target: Session) -> bool:
    cm = core.config.server.casemapping
    fields = (target.name, target.user or "", target.host, target.realname, target.prefix)
    return any(mask_matches(mask, f, cm) for f in fields)


# WHO [<mask> [o][%<fields>[,<token>]]]
def handle_who(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    mask = msg.params[0] if msg.params and msg.params[0] else "*"
    options = msg.params[1] if len(msg.params) > 1 else ""
    whox = _parse_whox(options)
    opers_only = "o" in options.partition("%")[0]
    if core.is_channel_name(mask):
        chan = core.find_channel(mask)
        if chan is not None and _channel_visible(sess, chan):
            on_channel = sess in chan.members
            for member in list(chan.members):
                if opers_only and not _is_oper(member):
                    continue
                if on_channel or _visible(sess, member):
                    _who_reply(core, sess, member, chan, whox, now)
    elif not any(c in mask for c in "*?"):
        # an exact nick: shown whatever its modes, as WHOIS would show it
        target = core.find_nick(mask)
        if target is not None and (not opers_only or _is_oper(target)):
            _who_reply(core, sess, target, _who_channel_for(sess, target), whox, now)
    else:
        all_users = mask in ("*", "0")
        for target in list(core.sessions.values()):
            if not target.registered or (opers_only and not _is_oper(target)):
                continue
            if not _visible(sess, target):
                continue
            if all_users or _who_matches(core, mask, target):
                _who_reply(core, sess, target, _who_channel_for(sess, target), whox, now)
    core.reply(sess, N.RPL_ENDOFWHO, safe_param(mask), "End of WHO list")


def _whois_channels(sess: Session, target: Session) -> list[str]:
    multi = "multi-prefix" in sess.caps
    return [
        member_prefix(chan.members.get(target, ""), multi) + chan.name
        for chan in target.channels.values()
        if _channel_visible(sess, chan)
    ]


# WHOIS [<server>] <nick>
def handle_whois(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    nick = (msg.params[1] if len(msg.params) > 1 else msg.params[0]).split(",")[0]
    target = core.find_nick(nick) if nick else None
    if target is None or target.nick is None:
        core.reply(sess, N.ERR_NOSUCHNICK, safe_param(nick), "No such nick/channel")
        core.reply(sess, N.RPL_ENDOFWHOIS, safe_param(nick), "End of /WHOIS list")
        return
    tn = target.nick
    core.reply(sess, N.RPL_WHOISUSER, tn, target.user or "*", target.host, "*", target.realname)
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
    if _is_oper(target):
        core.reply(sess, N.RPL_WHOISOPERATOR, tn, "is an IRC operator")
    if target.away is not None:
        core.reply(sess, N.RPL_AWAY, tn, target.away)
    idle = max(0, int(now - target.idle_since))
    core.reply(
        sess,
        N.RPL_WHOISIDLE,
        tn,
        str(idle),
        str(int(target.connected_at)),
        "seconds idle, signon time",
    )
    core.reply(sess, N.RPL_ENDOFWHOIS, tn, "End of /WHOIS list")


# WHOWAS <nick>{,<nick>} [<count>]
def handle_whowas(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    count = 0
    if len(msg.params) > 1 and msg.params[1].isascii() and msg.params[1].isdigit():
        count = int(msg.params[1])
    for nick in msg.params[0].split(",")[: core.limits.max_targets]:
        if not nick:
            continue
        folded = core.fold(nick)
        found = 0
        for entry in core.whowas:
            if core.fold(entry.nick) != folded:
                continue
            core.reply(
                sess, N.RPL_WHOWASUSER, entry.nick, entry.user, entry.host, "*", entry.realname
            )
            when = _time.strftime("%a %b %d %H:%M:%S %Y", _time.gmtime(entry.when))
            core.reply(sess, N.RPL_WHOISSERVER, entry.nick, entry.server, when)
            found += 1
            if count > 0 and found >= count:
                break
        if not found:
            core.reply(sess, N.ERR_WASNOSUCHNICK, safe_param(nick), "There was no such nickname")
        core.reply(sess, N.RPL_ENDOFWHOWAS, safe_param(nick), "End of WHOWAS")


# SETNAME <realname>
def handle_setname(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    realname = msg.params[0]
    if len(realname) > REALNAME_LEN or any(c in realname for c in "\r\n\x00"):
        core.send_raw(
            sess,
            f":{core.server_name} FAIL SETNAME INVALID_REALNAME :Realname is not valid",
        )
        return
    sess.realname = realname
    targets = [p for p in core.common_peers(sess, include_self=True) if "setname" in p.caps]
    if targets:
        core.relay(targets, Outgoing(f":{sess.prefix} SETNAME :{realname}", now))


# MOTD [<target>]
def handle_motd(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    send_motd(core, sess)


# LUSERS
def handle_lusers(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    send_lusers(core, sess)


# VERSION [<target>]
def handle_version(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    core.reply(sess, N.RPL_VERSION, f"relaychat-{__version__}", core.server_name, "")
    for tokens in core._isupport_lines:
        core.reply(sess, N.RPL_ISUPPORT, *tokens, "are supported by this server")


# TIME [<server>]
def handle_time(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    human = _time.strftime("%A %B %d %Y -- %H:%M:%S +00:00", _time.gmtime(now))
    core.reply(sess, N.RPL_TIME, core.server_name, str(int(now)), "0", human)


# INFO [<target>]
def handle_info(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    started = _time.strftime("%a %b %d %Y at %H:%M:%S UTC", _time.gmtime(core.created))
    for line in (
        f"relaychat {__version__}",
        "An IRC server written in Python, with a sans-I/O protocol core.",
        f"Online since {started}",
    ):
        core.reply(sess, N.RPL_INFO, line)
    core.reply(sess, N.RPL_ENDOFINFO, "End of INFO list")


# ADMIN [<target>]
def handle_admin(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    admin = core.config.admin
    core.reply(sess, N.RPL_ADMINME, core.server_name, "Administrative info")
    core.reply(sess, N.RPL_ADMINLOC1, admin.location)
    core.reply(sess, N.RPL_ADMINLOC2, admin.location2)
    core.reply(sess, N.RPL_ADMINEMAIL, admin.email)


# LINKS [[<remote server>] <server mask>]
def handle_links(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    core.reply(sess, N.RPL_LINKS, "*", core.server_name, f"0 {core.config.server.description}")
    core.reply(sess, N.RPL_ENDOFLINKS, "*", "End of /LINKS list")


# ---------------------------------------------------------------------- HELP
# command -> (syntax, what it does); one entry per command in the command table
HELP_TOPICS: dict[str, tuple[str, str]] = {
    "ADMIN": ("ADMIN [<server>]", "Show who runs this server and how to reach them."),
    "AWAY": ("AWAY [<message>]", "Mark yourself away with a message; without one, back."),
    "CAP": ("CAP <LS|LIST|REQ|END> [...]", "Negotiate IRCv3 client capabilities."),
    "DIE": ("DIE", "Operators only: shut the server down."),
    "HELP": ("HELP [<subject>]", "Show help on a command, or list the commands."),
    "INFO": ("INFO", "Show information about this server software."),
    "INVITE": ("INVITE <nick> <channel>", "Invite a user to a channel."),
    "ISON": ("ISON <nick>{ <nick>}", "Ask which of the given nicks are online."),
    "JOIN": ("JOIN <channel>{,<channel>} [<key>{,<key>}]", "Join channels; JOIN 0 parts all."),
    "KICK": ("KICK <channel> <nick> [<reason>]", "Remove a user from a channel (ops)."),
    "KILL": ("KILL <nick> <reason>", "Operators only: disconnect a user."),
    "LINKS": ("LINKS", "List the servers of this network (just this one)."),
    "LIST": ("LIST [<channel>{,<channel>}]", "List channels with their user counts and topics."),
    "LUSERS": ("LUSERS", "Show how many users, operators and channels there are."),
    "MODE": (
        "MODE <target> [<modes> [<args>...]]",
        "Show or change user modes (+i +w) or channel modes (+beIklmnstov).",
    ),
    "MOTD": ("MOTD [<server>]", "Show the message of the day."),
    "NAMES": ("NAMES [<channel>{,<channel>}]", "List the users of channels."),
    "NICK": ("NICK <nick>", "Set or change your nick."),
    "NOTICE": ("NOTICE <target>{,<target>} <text>", "Send a notice; never auto-answered."),
    "OPER": ("OPER <name> <password>", "Become an IRC operator."),
    "PART": ("PART <channel>{,<channel>} [<reason>]", "Leave channels."),
    "PASS": ("PASS <password>", "Give the connection password before registering."),
    "PING": ("PING <token>", "Ask the server to answer PONG with the token."),
    "PONG": ("PONG [<server>] <token>", "Answer a PING from the server."),
    "PRIVMSG": ("PRIVMSG <target>{,<target>} <text>", "Send a message to users or channels."),
    "QUIT": ("QUIT [<reason>]", "Disconnect from the server."),
    "REHASH": ("REHASH", "Operators only: reload the configuration file."),
    "SETNAME": ("SETNAME <realname>", "Change your real name (setname capability)."),
    "TAGMSG": ("TAGMSG <target>", "Send only message tags (message-tags capability)."),
    "TIME": ("TIME [<server>]", "Show the server's local time."),
    "TOPIC": ("TOPIC <channel> [<topic>]", "Show or set a channel's topic."),
    "USER": ("USER <username> 0 * <realname>", "Give your username and real name."),
    "USERHOST": ("USERHOST <nick>{ <nick>}", "Show user@host of up to five nicks."),
    "VERSION": ("VERSION [<server>]", "Show the server version and its ISUPPORT tokens."),
    "WALLOPS": ("WALLOPS <text>", "Operators only: message every user with +w."),
    "WHO": ("WHO <mask> [o]", "List users matching a channel or a mask; o: operators only."),
    "WHOIS": ("WHOIS [<server>] <nick>", "Show details about a user."),
    "WHOWAS": ("WHOWAS <nick> [<count>]", "Show details about a nick no longer in use."),
}


def _help_lines(subject: str) -> list[str] | None:
    if not subject:
        names = sorted(HELP_TOPICS)
        lines = ["** Help System **", ""]
        for i in range(0, len(names), 10):
            lines.append(" ".join(names[i : i + 10]))
        lines += ["", "Try HELP <command> for help on one command."]
        return lines
    topic = HELP_TOPICS.get(subject.upper())
    if topic is None:
        return None
    syntax, text = topic
    return [f"** The {subject.upper()} command **", "", syntax, text]


# HELP [<subject>]
def handle_help(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    subject = msg.params[0] if msg.params else ""
    lines = _help_lines(subject)
    shown = safe_param(subject)
    if lines is None:
        core.reply(sess, N.ERR_HELPNOTFOUND, shown, "No help available on this topic")
        return
    core.reply(sess, N.RPL_HELPSTART, shown, lines[0])
    for line in lines[1:-1]:
        core.reply(sess, N.RPL_HELPTXT, shown, line)
    core.reply(sess, N.RPL_ENDOFHELP, shown, lines[-1])
