"""SILENCE: a server-side ignore list, as UnrealIRCd and InspIRCd have it.

``SILENCE`` lists the caller's masks (271 each, then 272). ``SILENCE
+mask,-mask,mask`` adds and removes; a mask without a sign is added (InspIRCd).
Masks are normalised like ban masks (``nick`` -> ``nick!*@*``, ``user@host`` ->
``*!user@host``) and matched case-insensitively, in linear time
(:mod:`relaychat.protocol.masks`), against the sender's ``nick!user@host`` as
everyone sees it (its cloak, when cloaking is on). Each change is echoed to the
caller as ``:you SILENCE +mask`` (UnrealIRCd). At most ``limits.max_silence``
masks (ISUPPORT ``SILENCE=<n>``).

One command is applied whole or not at all: a malformed mask (``FAIL SILENCE
INVALID_MASK``) or a list that would grow past the limit (511 for the first mask
that does not fit) changes nothing, so a client never has to guess what part of
its line took effect. A command with many masks costs flood tokens in
proportion (one per :data:`MASKS_PER_TOKEN`), as WHO and LIST do.

What it filters: private PRIVMSG, NOTICE and TAGMSG, and INVITE, from a
matching sender. They are dropped silently, as those servers do: the sender
sees what it would have seen had the message been delivered (its echo-message
copy, RPL_AWAY, 341 for an INVITE). Channel messages are not filtered: a channel
is shared, and hiding part of it from one member is a client's job (as with
UnrealIRCd's and InspIRCd's SILENCE, which filter private messages only by
default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.events import SELF
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.handlers.modes import normalize_mask, valid_mask
from relaychat.protocol.masks import compile_mask

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.masks import Mask
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session, User
    from relaychat.protocol.timebase import Now

__all__ = ["handle_silence", "silences"]

MASKS_PER_TOKEN = 50  # masks in one SILENCE command per extra flood token


def silences(core: ServerCore, target: User, sender: User) -> bool:
    """Whether ``target`` has silenced ``sender`` (never oneself)."""
    entries = target.silence
    if not entries or target is sender:
        return False
    source = core.fold(sender.source)
    return any(mask.matches(source) for _, mask in entries)


# SILENCE [[+|-]<mask>{,[+|-]<mask>}]
def handle_silence(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    user = sess.user
    if not msg.params or not msg.params[0]:
        for shown, _ in user.silence or ():
            core.reply(sess, N.RPL_SILELIST, shown)
        core.reply(sess, N.RPL_ENDOFSILELIST, "End of Silence List")
        return
    items = msg.params[0].split(",")
    core.charge(sess, len(items) / MASKS_PER_TOKEN)  # a long list is work: it waits longer
    changes: list[tuple[bool, str]] = []
    for item in items:
        if not item:
            continue
        adding = item[0] != "-"
        raw = item[1:] if item[0] in "+-" else item
        if not raw or not valid_mask(raw):
            core.fail(
                sess,
                "SILENCE",
                "INVALID_MASK",
                safe_param(item),
                "Invalid mask: use [+|-]nick!user@host",
            )
            return
        changes.append((adding, normalize_mask(raw)))
    entries: dict[str, tuple[str, Mask]] = {core.fold(m): (m, c) for m, c in user.silence or ()}
    applied: list[str] = []
    limit = core.limits.max_silence
    for adding, mask in changes:
        key = core.fold(mask)
        if adding:
            if key in entries:
                continue
            if len(entries) >= limit:
                core.reply(sess, N.ERR_SILELISTFULL, mask, "Your silence list is full")
                return
            entries[key] = (mask, compile_mask(key))
            applied.append("+" + mask)
        elif key in entries:
            applied.append("-" + entries.pop(key)[0])
    if not applied:
        return
    user.silence = list(entries.values()) or None
    for change in applied:
        core.emit(core.event(user, "SILENCE", [change], now, SELF))
