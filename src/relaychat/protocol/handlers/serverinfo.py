"""About the server: MOTD, LUSERS, VERSION, TIME, INFO, ADMIN, LINKS, HELP.

Also the welcome-burst pieces registration sends (:func:`send_lusers`,
:func:`send_motd`). HELP reads the syntax and text from the command table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat import __version__
from relaychat.protocol import numerics as N
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.timebase import ctime_utc

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now


def send_lusers(core: ServerCore, sess: Session) -> None:
    """251-255, 265, 266, from the registry's running counts."""
    reg = core.registry
    users = reg.registered_count
    invisible = reg.invisible_count
    unknown = len(core.sessions) - users
    top = max(reg.max_users_seen, users)
    core.reply(
        sess,
        N.RPL_LUSERCLIENT,
        f"There are {users - invisible} users and {invisible} invisible on 1 servers",
    )
    core.reply(sess, N.RPL_LUSEROP, str(reg.oper_count), "operator(s) online")
    core.reply(sess, N.RPL_LUSERUNKNOWN, str(max(unknown, 0)), "unknown connection(s)")
    core.reply(sess, N.RPL_LUSERCHANNELS, str(len(reg.channels)), "channels formed")
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


# MOTD [<target>]
def handle_motd(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    send_motd(core, sess)


# LUSERS
def handle_lusers(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    send_lusers(core, sess)


# VERSION [<target>]
def handle_version(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    core.reply(sess, N.RPL_VERSION, f"relaychat-{__version__}", core.server_name, "")
    for tokens in core.isupport:
        core.reply(sess, N.RPL_ISUPPORT, *tokens, "are supported by this server")


# TIME [<server>]
def handle_time(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    human = ctime_utc(now.wall, "%A %B %d %Y -- %H:%M:%S +00:00")
    core.reply(sess, N.RPL_TIME, core.server_name, str(int(now.wall)), "0", human)


# INFO [<target>]
def handle_info(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    started = core.created_text
    for line in (
        f"relaychat {__version__}",
        "An IRC server written in Python, with a sans-I/O protocol core.",
        f"Online since {started}",
    ):
        core.reply(sess, N.RPL_INFO, line)
    core.reply(sess, N.RPL_ENDOFINFO, "End of INFO list")


# ADMIN [<target>]
def handle_admin(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    admin = core.config.admin
    core.reply(sess, N.RPL_ADMINME, core.server_name, "Administrative info")
    core.reply(sess, N.RPL_ADMINLOC1, admin.location)
    core.reply(sess, N.RPL_ADMINLOC2, admin.location2)
    core.reply(sess, N.RPL_ADMINEMAIL, admin.email)


# LINKS [[<remote server>] <server mask>]
def handle_links(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    name = core.server_name
    core.reply(sess, N.RPL_LINKS, name, name, f"0 {core.config.server.description}")
    core.reply(sess, N.RPL_ENDOFLINKS, "*", "End of /LINKS list")


def _help_lines(core: ServerCore, subject: str) -> list[str] | None:
    table = core.commands
    if not subject:
        names = sorted(table)
        lines = ["** Help System **", ""]
        for i in range(0, len(names), 10):
            lines.append(" ".join(names[i : i + 10]))
        lines += ["", "Try HELP <command> for help on one command."]
        return lines
    spec = table.get(subject.upper())
    if spec is None or not spec.syntax:
        return None
    return [f"** The {subject.upper()} command **", "", spec.syntax, spec.help]


# HELP [<subject>]
def handle_help(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    subject = msg.params[0] if msg.params else ""
    lines = _help_lines(core, subject)
    shown = safe_param(subject)
    if lines is None:
        core.reply(sess, N.ERR_HELPNOTFOUND, shown, "No help available on this topic")
        return
    core.reply(sess, N.RPL_HELPSTART, shown, lines[0])
    for line in lines[1:-1]:
        core.reply(sess, N.RPL_HELPTXT, shown, line)
    core.reply(sess, N.RPL_ENDOFHELP, shown, lines[-1])
