"""The command table: for each command, its handler, how many parameters it
needs, whether it is allowed before registration and whether only operators may
run it. ``ServerCore.dispatch`` checks these once for every command, so handlers
start from a message that already passed them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaychat.protocol.handlers import channel, info, messaging, modes, oper, registration

if TYPE_CHECKING:
    from relaychat.protocol.message import Message
    from relaychat.protocol.server import ServerCore
    from relaychat.protocol.state import Session

Handler = Callable[["ServerCore", "Session", "Message", float], None]

__all__ = ["COMMANDS", "CommandSpec"]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    handler: Handler
    min_params: int = 0
    before_registration: bool = False
    oper_only: bool = False
    resets_idle: bool = False  # counts as activity for WHOIS idle time


def _c(
    handler: Handler,
    min_params: int = 0,
    *,
    pre: bool = False,
    oper_only: bool = False,
    idle: bool = False,
) -> CommandSpec:
    return CommandSpec(handler, min_params, pre, oper_only, idle)


COMMANDS: dict[str, CommandSpec] = {
    # connection registration
    "CAP": _c(registration.handle_cap, 1, pre=True),
    "PASS": _c(registration.handle_pass, 1, pre=True),
    "NICK": _c(registration.handle_nick, 0, pre=True),
    "USER": _c(registration.handle_user, 4, pre=True),
    "PING": _c(registration.handle_ping, 1, pre=True),
    "PONG": _c(registration.handle_pong, 0, pre=True),
    "QUIT": _c(registration.handle_quit, 0, pre=True),
    # channels
    "JOIN": _c(channel.handle_join, 1, idle=True),
    "PART": _c(channel.handle_part, 1),
    "TOPIC": _c(channel.handle_topic, 1),
    "NAMES": _c(channel.handle_names, 0),
    "LIST": _c(channel.handle_list, 0),
    "KICK": _c(channel.handle_kick, 2),
    "INVITE": _c(channel.handle_invite, 2),
    "MODE": _c(modes.handle_mode, 1),
    # messages
    "PRIVMSG": _c(messaging.handle_privmsg, 0, idle=True),
    "NOTICE": _c(messaging.handle_notice, 0, idle=True),
    "TAGMSG": _c(messaging.handle_tagmsg, 1),
    # queries and information
    "AWAY": _c(info.handle_away, 0),
    "ISON": _c(info.handle_ison, 1),
    "USERHOST": _c(info.handle_userhost, 1),
    "WHO": _c(info.handle_who, 0),
    "WHOIS": _c(info.handle_whois, 1),
    "WHOWAS": _c(info.handle_whowas, 1),
    "SETNAME": _c(info.handle_setname, 1),
    "MOTD": _c(info.handle_motd, 0),
    "LUSERS": _c(info.handle_lusers, 0),
    "VERSION": _c(info.handle_version, 0),
    "TIME": _c(info.handle_time, 0),
    "INFO": _c(info.handle_info, 0),
    "ADMIN": _c(info.handle_admin, 0),
    "LINKS": _c(info.handle_links, 0),
    "HELP": _c(info.handle_help, 0),
    # operators
    "OPER": _c(oper.handle_oper, 2),
    "KILL": _c(oper.handle_kill, 2, oper_only=True),
    "WALLOPS": _c(oper.handle_wallops, 1, oper_only=True),
    "REHASH": _c(oper.handle_rehash, 0, oper_only=True),
    "DIE": _c(oper.handle_die, 0, oper_only=True),
}
