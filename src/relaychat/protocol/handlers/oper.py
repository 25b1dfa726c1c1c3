"""Operator commands: OPER, KILL, CHGHOST, WALLOPS, REHASH, DIE.

OPER checks an scrypt hash (30 ms, 16 MiB): the check is an ordered operation
in the ``hash`` pool (at most two in flight server-wide), so the session's
later commands wait for it and a crowd of OPER attempts queues instead of
eating memory. An unknown name, a wrong password and a wrong host all get the
same 464 after the same work (a check against a dummy hash), so replies and
timing reveal nothing. Failures back off per address and per name (1 s,
doubling up to a minute): an attempt during a backoff is held until it ends,
then checked. Every success and failure is logged with the address.

CHGHOST gives a user another ident and host through ``core.change_host`` (the
function IP cloaking will call too): an ident is 1 to USERLEN ASCII letters,
digits and ``-._~[]\\`^{}|``; a host is 1 to 63 ASCII letters, digits and
``-.:/_``, not starting with ``-``, ``.``, ``:`` or ``/``. Anything else is a
``FAIL CHGHOST INVALID_USERNAME`` or ``INVALID_HOSTNAME``.

REHASH and DIE are requests to the transport (``core.requests``): the core reads
no files and stops nothing itself.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import TYPE_CHECKING

from relaychat.passwords import DUMMY_HASH, verify_password
from relaychat.protocol import numerics as N
from relaychat.protocol.casemap import mask_matches
from relaychat.protocol.events import OPERWALL, SELF, USER
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.message import truncate_utf8
from relaychat.protocol.multiclient import remove_user
from relaychat.protocol.ops import Op

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

log = logging.getLogger("relaychat.oper")

HOST_MAX = 63  # characters in a host set by CHGHOST (HOSTLEN of other servers)
_IDENT_RE = re.compile(r"[A-Za-z0-9\-._~\[\]\\`^{}|]+\Z")
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9\-.:/_]*\Z")


def valid_ident(core: ServerCore, ident: str) -> bool:
    return len(ident) <= core.limits.userlen and _IDENT_RE.match(ident) is not None


def valid_host(host: str) -> bool:
    return len(host) <= HOST_MAX and _HOST_RE.match(host) is not None


# OPER <name> <password>
def handle_oper(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    name, password = msg.params[0], msg.params[1]
    user = sess.user
    ip_key, name_key = "ip:" + sess.ip, "name:" + name[:64]
    backoff = core.auth_backoff
    oper = core.config.opers.get(name)
    # the host others see (a cloak when cloaking is on) or the real address
    host_ok = oper is not None and (
        mask_matches(oper.host, f"{user.ident}@{user.host}")
        or mask_matches(oper.host, f"{user.ident}@{sess.ip}")
    )
    stored = oper.password if oper is not None and host_ok else DUMMY_HASH
    real = oper is not None and host_ok

    def then(ok: object) -> None:
        mono = core.now.mono
        if not (ok and real):
            backoff.failed(ip_key, mono)
            backoff.failed(name_key, mono)
            why = "bad password" if real else "unknown name or host not allowed"
            log.warning("[%d] OPER %r from %s failed: %s", sess.conn_id, name, sess.ip, why)
            core.reply(sess, N.ERR_PASSWDMISMATCH, "Password incorrect")
            return
        backoff.succeeded(ip_key)
        backoff.succeeded(name_key)
        core.registry.set_user_modes(user, user.modes + "o")
        user.oper_name = name
        log.warning("[%d] %s (%s) is now operator %r", sess.conn_id, user.prefix, sess.ip, name)
        core.reply(sess, N.RPL_YOUREOPER, "You are now an IRC operator")
        core.emit(core.event(user, "MODE", [user.name, "+o"], core.now, SELF))
        core.snotice(
            "o",
            "%s (%s@%s) [%s] is now an IRC operator (%s)",
            user.nick,
            user.ident,
            user.host,
            sess.ip,
            name,
        )

    def check() -> None:
        sess.busy = False
        core.submit(Op(partial(verify_password, password, stored), then, sess, pool="hash"))

    wait = max(backoff.blocked(ip_key, now.mono), backoff.blocked(name_key, now.mono))
    if wait > 0:
        # held, not refused: the check runs when the backoff ends, and the
        # session's later commands wait for it (no thread is held meanwhile)
        sess.busy = True
        core.call_at(now.mono + wait, sess, check)
    else:
        check()


# KILL <nickname> <comment>
def handle_kill(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    nick, comment = msg.params[0], truncate_utf8(msg.params[1], 200)
    target = core.find_user(nick)
    if target is None:
        if core.fold(nick) == core.fold(core.server_name):
            core.reply(sess, N.ERR_CANTKILLSERVER, "You cannot kill a server!")
        else:
            core.reply(sess, N.ERR_NOSUCHNICK, safe_param(nick), "No such nick/channel")
        return
    log.warning(
        "[%d] KILL %s by %s (%s): %s",
        sess.conn_id,
        target.prefix,
        sess.user.prefix,
        sess.ip,
        comment,
    )
    core.emit(
        core.event(
            sess.user, "KILL", [target.name, comment], now, USER, target=target, trailing=True
        )
    )
    core.snotice(
        "k",
        "Received KILL message for %s (%s@%s) from %s: %s",
        target.nick,
        target.ident,
        target.host,
        sess.name,
        comment,
    )
    # every session, and an always-on user for real (it may have none)
    remove_user(core, target, f"Killed ({sess.name} ({comment}))", now)


# CHGHOST <nick> <user> <host>
def handle_chghost(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    nick, ident, host = msg.params[0], msg.params[1], msg.params[2]
    target = core.find_user(nick)
    if target is None:
        core.reply(sess, N.ERR_NOSUCHNICK, safe_param(nick), "No such nick/channel")
        return
    if not valid_ident(core, ident):
        core.fail(sess, "CHGHOST", "INVALID_USERNAME", ident, "Username is not valid")
        return
    if not valid_host(host):
        core.fail(sess, "CHGHOST", "INVALID_HOSTNAME", host, "Hostname is not valid")
        return
    old = target.prefix
    if not core.change_host(target, ident, host):
        core.server_notice(sess, f"CHGHOST: {target.name} already is {old}")
        return
    log.warning(
        "[%d] CHGHOST %s -> %s by %s (%s)",
        sess.conn_id,
        old,
        target.prefix,
        sess.user.prefix,
        sess.ip,
    )
    core.server_notice(sess, f"CHGHOST: {old} is now {target.prefix}")


# WALLOPS <text>
def handle_wallops(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    core.emit(core.event(sess.user, "WALLOPS", [msg.params[0]], now, OPERWALL, trailing=True))


# REHASH
def handle_rehash(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    log.warning("[%d] REHASH by %s (%s)", sess.conn_id, sess.user.prefix, sess.ip)
    core.reply(sess, N.RPL_REHASHING, core.config.path or "(embedded defaults)", "Rehashing")
    core.requests.append(("rehash", sess))


# DIE [<reason>]
def handle_die(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    reason = msg.params[0] if msg.params else f"DIE by {sess.name}"
    log.warning("[%d] DIE by %s (%s): %s", sess.conn_id, sess.user.prefix, sess.ip, reason)
    core.request_stop(truncate_utf8(reason, 200))
