"""MONITOR: a connection's list of nicks to be told about when they come online
or go offline (IRCv3 monitor; the lists live in ``relaychat.protocol.monitor``).

Targets are nicks as ``NICK`` would accept them, compared case-folded; anything
else in a list is skipped without a word, as is a target already listed. At most
``limits.monitor_limit`` (ISUPPORT ``MONITOR``) per connection: past it, 734 names
the limit and the targets of that command not added, and the command stops.
Replies carry as many targets per line as fit in 512 bytes. ``L`` and ``S`` cost
flood tokens in proportion to the list's length, as NAMES does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.handlers.registration import valid_nick
from relaychat.protocol.monitor import MAX_NUMERIC_LINE, reply_joined

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session, User
    from relaychat.protocol.timebase import Now

_TARGETS_PER_TOKEN = 200  # targets listed (L, S) per extra flood token
_FULL_TEXT = "Monitor list is full."


# MONITOR + <target>{,<target>} | MONITOR - <target>{,<target>} | MONITOR C | MONITOR L | MONITOR S
def handle_monitor(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    sub = msg.params[0]
    handler = _SUBCOMMANDS.get(sub.upper())
    if handler is None:
        core.reply(
            sess, N.ERR_UNKNOWNERROR, "MONITOR", safe_param(sub), "Unknown MONITOR subcommand"
        )
        return
    handler(core, sess, msg.params[1:])


def _targets(core: ServerCore, sess: Session, args: list[str]) -> list[str] | None:
    """The comma list of ``+``/``-``; None (and 461) when there is none."""
    if not args or not args[0]:
        core.reply(sess, N.ERR_NEEDMOREPARAMS, "MONITOR", "Not enough parameters")
        return None
    return args[0].split(",")


def _add(core: ServerCore, sess: Session, args: list[str]) -> None:
    items = _targets(core, sess, args)
    if items is None:
        return
    monitor = core.monitor
    limit = core.limits.monitor_limit
    online: list[str] = []
    offline: list[str] = []
    full_at: int | None = None
    for i, target in enumerate(items):
        if not target or not valid_nick(core, target):
            continue
        folded = core.fold(target)
        if folded in monitor.listed(sess):
            continue
        if len(monitor.listed(sess)) >= limit:
            full_at = i
            break
        monitor.add(sess, folded, target)
        user = core.registry.nicks.get(folded)
        if user is not None:
            online.append(user.prefix)
        else:
            offline.append(target)
    core.charge(sess, len(items) / _TARGETS_PER_TOKEN)
    if online:
        reply_joined(core.output, sess, N.RPL_MONONLINE, online)
    if offline:
        reply_joined(core.output, sess, N.RPL_MONOFFLINE, offline)
    if full_at is not None:
        _list_full(core, sess, limit, items[full_at:])


def _list_full(core: ServerCore, sess: Session, limit: int, rest: list[str]) -> None:
    """734 with the targets not added, as the client sent them: each one a word
    (one with a space could not be a parameter), as many as fit in the line."""
    shown = str(limit)
    fixed = f"{core.output.numeric_prefix}{N.ERR_MONLISTFULL} {sess.name} {shown}  :{_FULL_TEXT}"
    room = MAX_NUMERIC_LINE - len(fixed.encode("utf-8"))
    words: list[str] = []
    size = -1
    for item in rest:
        if not item or " " in item:
            continue
        n = len(item.encode("utf-8")) + 1
        if size + n > room:
            break
        words.append(item)
        size += n
    # the first is the target that did not fit: a valid nick, so never empty
    core.reply(sess, N.ERR_MONLISTFULL, shown, ",".join(words), _FULL_TEXT)


def _remove(core: ServerCore, sess: Session, args: list[str]) -> None:
    items = _targets(core, sess, args)
    if items is None:
        return
    monitor = core.monitor
    for target in items:
        if target:
            monitor.remove(sess, core.fold(target))


def _clear(core: ServerCore, sess: Session, args: list[str]) -> None:
    core.monitor.forget(sess)


def _list(core: ServerCore, sess: Session, args: list[str]) -> None:
    listed = core.monitor.listed(sess)
    core.charge(sess, len(listed) / _TARGETS_PER_TOKEN)
    reply_joined(core.output, sess, N.RPL_MONLIST, list(listed.values()))
    core.reply(sess, N.RPL_ENDOFMONLIST, "End of MONITOR list")


def _status(core: ServerCore, sess: Session, args: list[str]) -> None:
    listed = core.monitor.listed(sess)
    core.charge(sess, len(listed) / _TARGETS_PER_TOKEN)
    nicks = core.registry.nicks
    online: list[str] = []
    offline: list[str] = []
    for folded, shown in listed.items():
        user: User | None = nicks.get(folded)
        if user is not None:
            online.append(user.prefix)
        else:
            offline.append(shown)
    if online:
        reply_joined(core.output, sess, N.RPL_MONONLINE, online)
    if offline and sess.closing is None:
        reply_joined(core.output, sess, N.RPL_MONOFFLINE, offline)


_SUBCOMMANDS: dict[str, Callable[[ServerCore, Session, list[str]], None]] = {
    "+": _add,
    "-": _remove,
    "C": _clear,
    "L": _list,
    "S": _status,
}
