"""The ChanServ service: channel registration by a founder (``/msg ChanServ
REGISTER|INFO|DROP|OP|DEOP|ACCESS|HELP``). Replies are NOTICEs from
``ChanServ!ChanServ@services.`` to the sender only; status changes are MODEs
from ChanServ that every member sees.

Who may do what: REGISTER needs a login and channel operator status on the
channel (the founder is the account); DROP the founder or an IRC operator;
OP/DEOP the founder or an ``op`` entry of the access list; ACCESS ADD/DEL the
founder; ACCESS LIST and the access part of INFO anyone with access (or an IRC
operator). The writes the user waits for (REGISTER, DROP, ACCESS ADD/DEL) are
ordered ops in the ``store`` pool: the reply comes after the commit, and the
in-memory state changes only then; a store failure is a notice and changes
nothing. The kept state itself (topic, modes, lists) is written through by
:mod:`relaychat.protocol.chanreg`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relaychat.protocol.accounts import UNAVAILABLE, store_call
from relaychat.protocol.chanreg import (
    CHANSERV,
    LEVELS,
    MAX_ACCESS,
    Registration,
    account_level,
    apply_state,
    set_status,
    snapshot,
)
from relaychat.protocol.handlers.registration import valid_nick
from relaychat.protocol.message import sanitize_text
from relaychat.protocol.ops import Op
from relaychat.protocol.storage import AccessEntry, AccountRecord
from relaychat.protocol.timebase import ctime_utc

if TYPE_CHECKING:
    from collections.abc import Callable

    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, Session
    from relaychat.protocol.storage import Store
    from relaychat.protocol.timebase import Now

__all__ = ["chanserv"]

log = logging.getLogger("relaychat.chanserv")

_SHOWN = 64  # characters of a name from the user echoed back
_UNAVAILABLE_TEXT = "Channel registration is temporarily unavailable; try again later"


def _cs(core: ServerCore, sess: Session, text: str) -> None:
    core.send_line(sess, f":{CHANSERV} NOTICE {sess.name} :{sanitize_text(text) or '-'}")


def _shown(text: str) -> str:
    return text[:_SHOWN]


def chanserv(core: ServerCore, sess: Session, text: str, now: Now) -> None:
    """A PRIVMSG to ChanServ: ``text`` is the command line."""
    words = [w for w in text.split(" ") if w]
    if not words:
        _cs(core, sess, "Commands: " + ", ".join(_CS_COMMANDS) + ". /msg ChanServ HELP")
        return
    handler = _CS_COMMANDS.get(words[0].upper())
    if handler is None:
        _cs(core, sess, f"Unknown command {_shown(words[0])[:32]}. /msg ChanServ HELP")
        return
    if core.store is None:
        _cs(core, sess, "Channel registration is not available on this server")
        return
    handler(core, sess, words[1:], now)


def _registered(core: ServerCore, sess: Session, name: str) -> Channel | None:
    """The registered channel ``name``, or a notice and None."""
    chan = core.find_channel(name) if core.valid_channel_name(name) else None
    if chan is None or chan.registration is None:
        _cs(core, sess, f"{_shown(name)} is not a registered channel")
        return None
    return chan


def _is_oper(sess: Session) -> bool:
    return "o" in sess.user.modes


def _cs_help(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    for line in (
        "REGISTER <#channel>: register a channel you are an operator on (log in first)",
        "INFO <#channel>: show a registered channel",
        "DROP <#channel>: drop a registration (founder or IRC operator)",
        "OP <#channel> [<nick>]: give channel operator status (access: op)",
        "DEOP <#channel> [<nick>]: take channel operator status (access: op)",
        "ACCESS <#channel> ADD <account> <op|voice>: add to the access list (founder)",
        "ACCESS <#channel> DEL <account>: remove from the access list (founder)",
        "ACCESS <#channel> LIST: show the access list",
        "The founder and op entries get +o, voice entries +v, when they join or log in.",
    ):
        _cs(core, sess, line)


# REGISTER <#channel>
def _cs_register(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if len(args) != 1:
        _cs(core, sess, "Syntax: REGISTER <#channel>")
        return
    user = sess.user
    name = args[0]
    account = user.account
    if account is None:
        _cs(core, sess, "You must be logged in to an account to register a channel")
        return
    chan = core.find_channel(name) if core.valid_channel_name(name) else None
    if chan is None or user not in chan.members:
        _cs(core, sess, f"You are not on {_shown(name)}")
        return
    if chan.registration is not None:
        _cs(core, sess, f"{chan.name} is already registered")
        return
    if not chan.is_op(user):
        _cs(core, sess, f"You must be a channel operator on {chan.name} to register it")
        return
    record = snapshot(chan, account, now.wall)
    founder_folded = core.fold(account)

    def run() -> object:
        return store_call(
            core, sess, f"ChanServ REGISTER {record.name}", lambda s: s.register_channel(record)
        )

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            _cs(core, sess, _UNAVAILABLE_TEXT)
            return
        if not result:
            _cs(core, sess, f"{record.name} is already registered")
            return
        # the channel may have emptied (and gone) while the write ran: a
        # registered channel exists whatever happens, so make it again
        current = core.find_channel(record.name)
        if current is None:
            current = core.registry.create_channel(record.name, now.wall)
            apply_state(core, current, record)
        current.registration = Registration(account, founder_folded, record.registered_at)
        core.channel_writer.changed(current)  # what changed while the write ran
        log.info(
            "[%d] channel %s registered by %s (account %s)",
            sess.conn_id,
            record.name,
            user.prefix,
            account,
        )
        _cs(core, sess, f"{record.name} is now registered to {account}")

    core.submit(Op(run, then, sess, pool="store"))


# INFO <#channel>
def _cs_info(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if len(args) != 1:
        _cs(core, sess, "Syntax: INFO <#channel>")
        return
    chan = _registered(core, sess, args[0])
    if chan is None:
        return
    reg: Registration = chan.registration
    _cs(core, sess, f"Information on {chan.name}:")
    _cs(core, sess, f"Founder: {reg.founder}")
    _cs(core, sess, f"Registered: {ctime_utc(reg.registered_at)}")
    if account_level(core, chan, sess.user) is not None or _is_oper(sess):
        _send_access(core, sess, chan)


def _send_access(core: ServerCore, sess: Session, chan: Channel) -> None:
    reg: Registration = chan.registration
    entries = sorted(reg.access.values(), key=lambda e: e.folded)
    _cs(core, sess, f"Access list of {chan.name} ({len(entries)} entries):")
    for i, e in enumerate(entries, 1):
        _cs(core, sess, f"{i}. {e.account} {e.level}")
    _cs(core, sess, "End of the access list")


# DROP <#channel>
def _cs_drop(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if len(args) != 1:
        _cs(core, sess, "Syntax: DROP <#channel>")
        return
    chan = _registered(core, sess, args[0])
    if chan is None:
        return
    if account_level(core, chan, sess.user) != "founder" and not _is_oper(sess):
        _cs(core, sess, f"Access denied: only the founder of {chan.name} may drop it")
        return
    name, folded = chan.name, chan.folded

    def run() -> object:
        return store_call(core, sess, f"ChanServ DROP {name}", lambda s: s.drop_channel(folded))

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            _cs(core, sess, _UNAVAILABLE_TEXT)
            return
        current = core.registry.channels.get(folded)
        if current is not None:
            current.registration = None
            core.registry.release_channel(current)  # gone now if nobody is in it
        if not result:
            _cs(core, sess, f"{name} is not a registered channel")
            return
        log.warning("[%d] channel %s dropped by %s", sess.conn_id, name, sess.user.prefix)
        _cs(core, sess, f"{name} is no longer registered")

    core.submit(Op(run, then, sess, pool="store"))


# OP <#channel> [<nick>]  |  DEOP <#channel> [<nick>]
def _status_command(adding: bool) -> Callable[[ServerCore, Session, list[str], Now], None]:
    command = "OP" if adding else "DEOP"

    def handle(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
        if not 1 <= len(args) <= 2:
            _cs(core, sess, f"Syntax: {command} <#channel> [<nick>]")
            return
        chan = _registered(core, sess, args[0])
        if chan is None:
            return
        if account_level(core, chan, sess.user) not in ("founder", "op"):
            _cs(core, sess, f"Access denied: you have no op access on {chan.name}")
            return
        target = core.find_user(args[1]) if len(args) == 2 else sess.user
        if target is None or target not in chan.members:
            nick = args[1] if len(args) == 2 else sess.name
            _cs(core, sess, f"{_shown(nick)} is not on {chan.name}")
            return
        set_status(core, chan, target, "o", adding, now)

    return handle


# ACCESS <#channel> ADD <account> <op|voice>  |  DEL <account>  |  LIST
def _cs_access(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    sub = args[1].upper() if len(args) >= 2 else ""
    shape = {"ADD": 4, "DEL": 3, "LIST": 2}.get(sub)
    if shape is None or len(args) != shape:
        _cs(core, sess, "Syntax: ACCESS <#channel> ADD <account> <op|voice> | DEL <account> | LIST")
        return
    chan = _registered(core, sess, args[0])
    if chan is None:
        return
    reg: Registration = chan.registration
    level = account_level(core, chan, sess.user)
    if sub == "LIST":
        if level is None and not _is_oper(sess):
            _cs(core, sess, f"Access denied: you have no access on {chan.name}")
        else:
            _send_access(core, sess, chan)
        return
    if level != "founder":
        _cs(core, sess, f"Access denied: only the founder of {chan.name} may change its access")
        return
    account = args[2]
    if not valid_nick(core, account):
        _cs(core, sess, f"{_shown(account)} is not a valid account name")
        return
    folded = core.fold(account)
    if folded == reg.founder_folded:
        _cs(core, sess, f"{account} is the founder of {chan.name}")
        return
    if sub == "DEL":
        _access_del(core, sess, chan, account, folded)
        return
    wanted = args[3].lower()
    if wanted not in LEVELS:
        _cs(core, sess, "The level is op or voice")
        return
    if folded not in reg.access and len(reg.access) >= MAX_ACCESS:
        _cs(core, sess, f"The access list of {chan.name} is full ({MAX_ACCESS} entries)")
        return
    _access_add(core, sess, chan, account, folded, wanted)


def _access_add(
    core: ServerCore, sess: Session, chan: Channel, account: str, folded: str, level: str
) -> None:
    name, chan_folded = chan.name, chan.folded

    def run() -> object:
        def add(s: Store) -> AccessEntry | bool | None:
            record = s.get_account(folded)
            if not isinstance(record, AccountRecord):
                return None
            entry = AccessEntry(record.name, folded, level)
            return entry if s.set_channel_access(chan_folded, entry) else False

        return store_call(core, sess, f"ChanServ ACCESS ADD on {name}", add)

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            _cs(core, sess, _UNAVAILABLE_TEXT)
        elif result is None:
            _cs(core, sess, f"{account} is not a registered account")
        elif not isinstance(result, AccessEntry):
            _cs(core, sess, f"{name} is not a registered channel")
        else:
            current = core.registry.channels.get(chan_folded)
            if current is not None and current.registration is not None:
                current.registration.access[folded] = result
                for member in list(current.members):
                    if member.account is not None and core.fold(member.account) == folded:
                        set_status(core, current, member, LEVELS[level], True, core.now)
            _cs(core, sess, f"{result.account} now has {level} access on {name}")

    core.submit(Op(run, then, sess, pool="store"))


def _access_del(core: ServerCore, sess: Session, chan: Channel, account: str, folded: str) -> None:
    name, chan_folded = chan.name, chan.folded

    def run() -> object:
        return store_call(
            core,
            sess,
            f"ChanServ ACCESS DEL on {name}",
            lambda s: s.remove_channel_access(chan_folded, folded),
        )

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            _cs(core, sess, _UNAVAILABLE_TEXT)
            return
        current = core.registry.channels.get(chan_folded)
        if current is not None and current.registration is not None:
            current.registration.access.pop(folded, None)
        if result:
            _cs(core, sess, f"{account} was removed from the access list of {name}")
        else:
            _cs(core, sess, f"{account} is not on the access list of {name}")

    core.submit(Op(run, then, sess, pool="store"))


_CS_COMMANDS = {
    "HELP": _cs_help,
    "REGISTER": _cs_register,
    "INFO": _cs_info,
    "DROP": _cs_drop,
    "OP": _status_command(True),
    "DEOP": _status_command(False),
    "ACCESS": _cs_access,
}
