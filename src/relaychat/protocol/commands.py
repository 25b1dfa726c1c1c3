"""The command table: for each command, its handler, how many parameters it
needs, whether it is allowed before registration, whether only operators may
run it, and its HELP text. ``ServerCore.dispatch`` checks these once for every
command, so handlers start from a message that already passed them.

This is where the core meets the handlers: :func:`build_core` gives a core its
table (the core module itself imports no handler).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol.core import CommandSpec, Handler, ServerCore, Service
from relaychat.protocol.handlers import (
    accounts,
    channel,
    chanserv,
    chathistory,
    knock,
    messaging,
    metadata,
    modes,
    monitor,
    multiline,
    oper,
    readmarker,
    redaction,
    registration,
    sasl,
    serverbans,
    serverinfo,
    silence,
    stats,
    users,
    who,
)

if TYPE_CHECKING:
    from relaychat.config import Config
    from relaychat.protocol.storage import Store
    from relaychat.protocol.timebase import Now

__all__ = ["COMMANDS", "SERVICES", "build_core"]


def _c(
    handler: Handler,
    min_params: int,
    syntax: str,
    help: str,
    *,
    pre: bool = False,
    oper_only: bool = False,
    idle: bool = False,
) -> CommandSpec:
    return CommandSpec(handler, min_params, pre, oper_only, idle, syntax, help)


COMMANDS: dict[str, CommandSpec] = {
    # connection registration
    "CAP": _c(
        registration.handle_cap,
        1,
        "CAP <LS|LIST|REQ|END> [...]",
        "Negotiate IRCv3 client capabilities.",
        pre=True,
    ),
    "PASS": _c(
        registration.handle_pass,
        1,
        "PASS <password>",
        "Give the connection password before registering.",
        pre=True,
    ),
    "NICK": _c(registration.handle_nick, 0, "NICK <nick>", "Set or change your nick.", pre=True),
    "USER": _c(
        registration.handle_user,
        4,
        "USER <username> 0 * <realname>",
        "Give your username and real name.",
        pre=True,
    ),
    "PING": _c(
        registration.handle_ping,
        1,
        "PING <token>",
        "Ask the server to answer PONG with the token.",
        pre=True,
    ),
    "PONG": _c(
        registration.handle_pong,
        0,
        "PONG [<server>] <token>",
        "Answer a PING from the server.",
        pre=True,
    ),
    "QUIT": _c(
        registration.handle_quit, 0, "QUIT [<reason>]", "Disconnect from the server.", pre=True
    ),
    # accounts
    "AUTHENTICATE": _c(
        sasl.handle_authenticate,
        1,
        "AUTHENTICATE <mechanism|base64|+|*>",
        "Log in with SASL (PLAIN, SCRAM-SHA-256, EXTERNAL); needs the sasl capability.",
        pre=True,
    ),
    "REGISTER": _c(
        accounts.handle_register,
        3,
        "REGISTER <account|*> <email|*> <password>",
        "Register an account (draft/account-registration); you are logged in to it.",
        pre=True,
    ),
    "VERIFY": _c(
        accounts.handle_verify,
        2,
        "VERIFY <account> <code>",
        "Complete a registration with the code mailed to you (email_verification).",
        pre=True,
    ),
    # channels
    "JOIN": _c(
        channel.handle_join,
        1,
        "JOIN <channel>{,<channel>} [<key>{,<key>}]",
        "Join channels; JOIN 0 parts all.",
        idle=True,
    ),
    "PART": _c(channel.handle_part, 1, "PART <channel>{,<channel>} [<reason>]", "Leave channels."),
    "TOPIC": _c(
        channel.handle_topic, 1, "TOPIC <channel> [<topic>]", "Show or set a channel's topic."
    ),
    "NAMES": _c(channel.handle_names, 0, "NAMES [<channel>]", "List the users of a channel."),
    "LIST": _c(
        channel.handle_list,
        0,
        "LIST [<mask>{,<mask>}] [<condition>{,<condition>}]",
        "List channels with their user counts and topics (ELIST C M N T U).",
    ),
    "KICK": _c(
        channel.handle_kick,
        2,
        "KICK <channel> <nick>{,<nick>} [<reason>]",
        "Remove users from a channel (ops).",
    ),
    "INVITE": _c(
        channel.handle_invite,
        2,
        "INVITE <nick> <channel>",
        "Invite a user to a channel (ops: lets them past +i, +l and +b, once).",
    ),
    "KNOCK": _c(
        knock.handle_knock,
        1,
        "KNOCK <channel> [<message>]",
        "Ask the operators of an invite-only, keyed or full channel to invite you.",
    ),
    "MODE": _c(
        modes.handle_mode,
        1,
        "MODE <target> [<modes> [<args>...]]",
        "Show or change user modes (+B +i +w; +s <snomask> for operators) or channel modes "
        "(+beIklmnstov).",
    ),
    # messages
    "PRIVMSG": _c(
        messaging.handle_privmsg,
        0,
        "PRIVMSG <target>{,<target>} <text>",
        "Send a message to users or channels.",
        idle=True,
    ),
    "NOTICE": _c(
        messaging.handle_notice,
        0,
        "NOTICE <target>{,<target>} <text>",
        "Send a notice; never auto-answered.",
        idle=True,
    ),
    "TAGMSG": _c(
        messaging.handle_tagmsg,
        1,
        "TAGMSG <target>",
        "Send only message tags (message-tags capability).",
    ),
    "BATCH": _c(
        multiline.handle_batch,
        1,
        "BATCH {+|-}<ref> [draft/multiline <target>]",
        "Send one message of several lines (draft/multiline capability): open a batch, "
        "send its PRIVMSG or NOTICE lines tagged batch=<ref>, close it.",
    ),
    # users
    "AWAY": _c(
        users.handle_away,
        0,
        "AWAY [<message>]",
        "Mark yourself away with a message; without one, back.",
    ),
    "ISON": _c(
        users.handle_ison, 1, "ISON <nick>{ <nick>}", "Ask which of the given nicks are online."
    ),
    "USERHOST": _c(
        users.handle_userhost, 1, "USERHOST <nick>{ <nick>}", "Show user@host of up to five nicks."
    ),
    "SILENCE": _c(
        silence.handle_silence,
        0,
        "SILENCE [[+|-]<mask>{,[+|-]<mask>}]",
        "Without a mask, list your ignore list; +mask ignores private messages and invites "
        "from matching users, -mask stops.",
    ),
    "SETNAME": _c(
        users.handle_setname, 1, "SETNAME <realname>", "Change your real name (setname capability)."
    ),
    "METADATA": _c(
        metadata.handle_metadata,
        2,
        "METADATA <target> <GET|LIST|SET|CLEAR|SUB|UNSUB|SUBS|SYNC> [...]",
        "Read or set key:value metadata on yourself (*) or a channel, and subscribe to"
        " changes (draft/metadata-2 capability).",
        pre=True,
    ),
    "CHATHISTORY": _c(
        chathistory.handle_chathistory,
        0,
        "CHATHISTORY <LATEST|BEFORE|AFTER|AROUND> <target> <ref> <limit> |"
        " BETWEEN <target> <ref> <ref> <limit> | TARGETS <timestamp> <timestamp> <limit>",
        "Stored messages of a channel you are in or of a conversation (draft/chathistory);"
        " ref: msgid=<id>, timestamp=<YYYY-MM-DDThh:mm:ss.sssZ> or * (LATEST).",
    ),
    "MARKREAD": _c(
        readmarker.handle_markread,
        0,
        "MARKREAD <target> [timestamp=<YYYY-MM-DDThh:mm:ss.sssZ>]",
        "Get, or move forward, what you have read in a channel or conversation"
        " (draft/read-marker); shared by the connections of your account.",
    ),
    "REDACT": _c(
        redaction.handle_redact,
        2,
        "REDACT <target> <msgid> [:<reason>]",
        "Delete a message from history and from the clients that support it"
        " (draft/message-redaction): your own (logged in), or any as a channel or IRC operator.",
    ),
    "MONITOR": _c(
        monitor.handle_monitor,
        1,
        "MONITOR <+|-> <nick>{,<nick>} | MONITOR <C|L|S>",
        "Be told when nicks come online or go offline: + adds, - removes, C clears, "
        "L lists, S shows who is online.",
    ),
    "WHO": _c(
        who.handle_who,
        0,
        "WHO <mask> [o][%<fields>[,<token>]]",
        "List users matching a channel or a mask; o: operators only.",
    ),
    "WHOIS": _c(who.handle_whois, 1, "WHOIS [<server>] <nick>", "Show details about a user."),
    "WHOWAS": _c(
        who.handle_whowas,
        1,
        "WHOWAS <nick> [<count>]",
        "Show details about a nick no longer in use.",
    ),
    # the server
    "MOTD": _c(serverinfo.handle_motd, 0, "MOTD [<server>]", "Show the message of the day."),
    "LUSERS": _c(
        serverinfo.handle_lusers,
        0,
        "LUSERS",
        "Show how many users, operators and channels there are.",
    ),
    "VERSION": _c(
        serverinfo.handle_version,
        0,
        "VERSION [<server>]",
        "Show the server version and its ISUPPORT tokens.",
    ),
    "TIME": _c(serverinfo.handle_time, 0, "TIME [<server>]", "Show the server's local time."),
    "INFO": _c(serverinfo.handle_info, 0, "INFO", "Show information about this server software."),
    "ADMIN": _c(
        serverinfo.handle_admin,
        0,
        "ADMIN [<server>]",
        "Show who runs this server and how to reach them.",
    ),
    "LINKS": _c(
        serverinfo.handle_links, 0, "LINKS", "List the servers of this network (just this one)."
    ),
    "STATS": _c(
        stats.handle_stats,
        1,
        "STATS <query> [<server>]",
        "Server statistics: u uptime, m command counts; operators: l connections, "
        "o operators, k server bans.",
    ),
    "HELP": _c(
        serverinfo.handle_help,
        0,
        "HELP [<subject>]",
        "Show help on a command, or list the commands.",
    ),
    # operators
    "OPER": _c(oper.handle_oper, 2, "OPER <name> <password>", "Become an IRC operator."),
    "KILL": _c(
        oper.handle_kill,
        2,
        "KILL <nick> <reason>",
        "Operators only: disconnect a user.",
        oper_only=True,
    ),
    "CHGHOST": _c(
        oper.handle_chghost,
        3,
        "CHGHOST <nick> <user> <host>",
        "Operators only: change a user's username and host.",
        oper_only=True,
    ),
    "WALLOPS": _c(
        oper.handle_wallops,
        1,
        "WALLOPS <text>",
        "Operators only: message every user with +w.",
        oper_only=True,
    ),
    "KLINE": _c(
        serverbans.handle_kline,
        1,
        "KLINE [<duration>] <user@host> [<reason>]",
        "Operators only: ban a user@host mask from the server (duration: 0 permanent, "
        "30m, 1h30m, 2d...); matching clients are disconnected.",
        oper_only=True,
    ),
    "UNKLINE": _c(
        serverbans.handle_unkline,
        1,
        "UNKLINE <user@host>",
        "Operators only: remove a K-line.",
        oper_only=True,
    ),
    "DLINE": _c(
        serverbans.handle_dline,
        1,
        "DLINE [<duration>] <ip>[/<prefix>] [<reason>]",
        "Operators only: ban an IP address or network from connecting at all; matching "
        "clients are disconnected.",
        oper_only=True,
    ),
    "UNDLINE": _c(
        serverbans.handle_undline,
        1,
        "UNDLINE <ip>[/<prefix>]",
        "Operators only: remove a D-line.",
        oper_only=True,
    ),
    "REHASH": _c(
        oper.handle_rehash,
        0,
        "REHASH",
        "Operators only: reload the configuration file.",
        oper_only=True,
    ),
    "DIE": _c(
        oper.handle_die,
        0,
        "DIE [<reason>]",
        "Operators only: shut the server down.",
        oper_only=True,
    ),
}

# services: a PRIVMSG to one of these nicks is a command for it
SERVICES: dict[str, Service] = {"NickServ": accounts.nickserv, "ChanServ": chanserv.chanserv}


def build_core(
    config: Config, now: Now, msgid_prefix: str = "rc", store: Store | None = None
) -> ServerCore:
    """A core with the full command table (and ``store``, if given, as ``core.store``)."""
    core = ServerCore(config, COMMANDS, now, msgid_prefix, store)
    for name, service in SERVICES.items():
        core.services[core.fold(name)] = service
    return core
