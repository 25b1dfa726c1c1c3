"""Helpers shared by the handlers: guards, visibility, targets, numbers.

Visibility rules shared by WHO, WHOIS, NAMES and LIST: a user with ``+i`` is
hidden from wildcard queries unless the asker shares a channel with them; a
``+s`` channel (and its lists) is hidden unless the asker is on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.message import truncate_utf8

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, Session, User

__all__ = [
    "PREFIXES",
    "channel_visible",
    "is_chanop",
    "member_channel",
    "member_prefix",
    "on_channel",
    "parse_int",
    "safe_param",
    "shares_channel",
    "split_targets",
    "visible",
]

# status letter -> prefix character, highest rank first
PREFIXES = (("o", "@"), ("v", "+"))


def safe_param(text: str) -> str:
    """A client-supplied word echoed as a middle parameter: ``*`` if it would
    break the line (empty, has a space, starts with ``:``, CR/LF/NUL)."""
    if not text or " " in text or text[0] == ":" or "\r" in text or "\n" in text:
        return "*"
    return truncate_utf8(text, 200) if len(text) > 50 else text


def parse_int(text: str) -> int | None:
    """A non-negative decimal number in ASCII digits only (``"²"`` is not one)."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    return int(text)


def split_targets(
    core: ServerCore, sess: Session, param: str, limit: int, command: str
) -> list[str]:
    """A comma list of targets, deduplicated (case-folded) and capped at
    ``limit`` (0: no cap); over the cap, 407 once and the rest are dropped."""
    seen: set[str] = set()
    out: list[str] = []
    for item in param.split(","):
        if not item:
            continue
        key = core.fold(item)
        if key in seen:
            continue
        seen.add(key)
        if limit and len(out) >= limit:
            core.reply(
                sess, N.ERR_TOOMANYTARGETS, safe_param(item), f"Too many targets for {command}"
            )
            break
        out.append(item)
    return out


def member_prefix(status: str, multi: bool) -> str:
    """The NAMES/WHO prefix for a member's status letters (all of them with multi-prefix)."""
    if not status:
        return ""
    chars = [p for letter, p in PREFIXES if letter in status]
    return "".join(chars) if multi else chars[0] if chars else ""


def on_channel(core: ServerCore, sess: Session, chan: Channel) -> bool:
    """Whether ``sess``'s user is on ``chan``; 442 if not."""
    if sess.user in chan.members:
        return True
    core.reply(sess, N.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
    return False


def is_chanop(core: ServerCore, sess: Session, chan: Channel) -> bool:
    """Whether ``sess``'s user is an operator on ``chan``; 482 if not."""
    if chan.is_op(sess.user):
        return True
    core.reply(sess, N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
    return False


def member_channel(core: ServerCore, sess: Session, name: str) -> Channel | None:
    """The channel ``name`` if ``sess`` is on it; otherwise 403 or 442 and None."""
    chan = core.find_channel(name)
    if chan is None:
        core.reply(sess, N.ERR_NOSUCHCHANNEL, safe_param(name), "No such channel")
        return None
    return chan if on_channel(core, sess, chan) else None


def shares_channel(a: User, b: User) -> bool:
    small, other = (a, b) if len(a.channels) <= len(b.channels) else (b, a)
    return any(other in chan.members for chan in small.channels.values())


def visible(asker: User, target: User) -> bool:
    """Whether a wildcard query by ``asker`` may list ``target`` (``+i`` hides)."""
    return target is asker or "i" not in target.modes or shares_channel(asker, target)


def channel_visible(asker: User, chan: Channel) -> bool:
    return "s" not in chan.modes or asker in chan.members
