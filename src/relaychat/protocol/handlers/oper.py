"""Operator commands: OPER, KILL, WALLOPS, REHASH, DIE.

OPER checks an scrypt hash, which is slow: the check runs as a core *job* in a
worker thread, and the session's later commands wait for it so their order holds.
REHASH reads the configuration file in a job too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relaychat.passwords import verify_password
from relaychat.protocol import numerics as N
from relaychat.protocol.casemap import mask_matches
from relaychat.protocol.server import Outgoing

if TYPE_CHECKING:
    from relaychat.protocol.message import Message
    from relaychat.protocol.server import ServerCore
    from relaychat.protocol.state import Session

log = logging.getLogger("relaychat.core")


# OPER <name> <password>
def handle_oper(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    name, password = msg.params[0], msg.params[1]
    oper = core.config.opers.get(name)
    if oper is None:
        # the same answer as a bad password: no oracle for operator names
        core.reply(sess, N.ERR_PASSWDMISMATCH, "Password incorrect")
        return
    if not mask_matches(oper.host, f"{sess.user}@{sess.host}"):
        core.reply(sess, N.ERR_NOOPERHOST, "No O-lines for your host")
        return
    stored = oper.password

    def then(ok: object) -> None:
        if not ok:
            core.reply(sess, N.ERR_PASSWDMISMATCH, "Password incorrect")
            return
        core.set_user_modes(sess, sess.modes + "o")
        sess.oper_name = name
        core.reply(sess, N.RPL_YOUREOPER, "You are now an IRC operator")
        core.send_raw(sess, f":{sess.prefix} MODE {sess.nick} +o")

    core.add_job(sess, lambda: verify_password(password, stored), then)


# KILL <nickname> <comment>
def handle_kill(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    nick, comment = msg.params[0], msg.params[1]
    target = core.find_nick(nick)
    if target is None:
        if core.fold(nick) == core.fold(core.server_name):
            core.reply(sess, N.ERR_CANTKILLSERVER, "You cannot kill a server!")
        else:
            core.reply(sess, N.ERR_NOSUCHNICK, nick, "No such nick/channel")
        return
    core.send_raw(target, f":{sess.prefix} KILL {target.name} :{comment}")
    core.disconnect(target, f"Killed ({sess.name} ({comment}))", now)


# WALLOPS <text>
def handle_wallops(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    out = Outgoing(f":{sess.prefix} WALLOPS :{msg.params[0]}", now)
    core.relay((s for s in core.sessions.values() if s.registered and "w" in s.modes), out)


# REHASH
def handle_rehash(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    core.reply(sess, N.RPL_REHASHING, core.config.path or "(embedded defaults)", "Rehashing")
    start_rehash(core, sess)


def start_rehash(core: ServerCore, sess: Session | None) -> None:
    """Reload the config file in a job (REHASH, SIGHUP); clients stay connected.
    A broken file keeps the running configuration and says why."""
    loader = core.config_loader
    if loader is None:
        return

    def run() -> object:
        try:
            return loader()
        except Exception as exc:  # noqa: BLE001 - reported, the old config stays
            return exc

    def then(result: object) -> None:
        if isinstance(result, Exception):
            log.error("REHASH failed: %s", result)
            if sess is not None:
                core.server_notice(sess, f"REHASH failed: {result}")
            return
        core.rehash(result)  # type: ignore[arg-type]
        log.info("configuration reloaded from %s", core.config.path)
        if sess is not None:
            core.server_notice(sess, f"Configuration reloaded from {core.config.path}")

    core.add_job(sess, run, then)


# DIE [<reason>]
def handle_die(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    reason = msg.params[0] if msg.params else f"DIE by {sess.name}"
    core.stop_requested = reason
