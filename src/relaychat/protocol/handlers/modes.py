"""MODE: user modes and channel modes.

Theory of operation
-------------------
Every mode letter has a *kind* in a table (:data:`CHANNEL_MODES`,
:data:`USER_MODES`); the kind says whether the letter takes a parameter when
set and when unset, and which function applies it. :func:`handle_mode` walks
the mode string once, takes parameters in order, applies each change to the
channel state, and finally announces the changes that took effect in one
``MODE`` line to every member. Changes that change nothing (setting a mode
already set, removing an absent ban) are dropped silently.

Channel state is changed only through the registry (``set_flag``, ``set_key``,
``set_limit``, ``add_list_entry``, ``set_status``...). Unknown letters get one
472 per command, whatever their number; a list mask that is not one word
(spaces, a leading colon, a comma) is refused; the announcement is split into
several MODE lines when its parameters would not fit in 512 bytes. The lists
of a secret (``+s``) channel are shown to its members only.

User mode ``+s`` (server notices, operators only) takes a snomask, as InspIRCd
has it: ``MODE me +s +cqkof`` sets those letters, ``MODE me +s -q`` takes one
away, ``*`` means every letter, and ``+s`` alone sets every letter (UnrealIRCd
gives a default set there; InspIRCd ignores it). ``-s``, or a snomask left
empty, ends it, and so does losing ``+o``. A non-operator's ``+s`` gets 481 once
per command (InspIRCd). The change is announced as ``MODE me +s +cfkoqx`` and
confirmed with 008 RPL_SNOMASK; ``MODE me`` shows the snomask after the modes.
Unknown snomask letters are ignored. The letters are in
:data:`~relaychat.protocol.registry.SNOMASK_LETTERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.caps import BOT_MODE, SECURE_MODE
from relaychat.protocol.events import CHANNEL, ECHO_ALWAYS, MAX_RELAY_LINE, SELF
from relaychat.protocol.handlers.common import channel_visible, parse_int, safe_param
from relaychat.protocol.message import valid_middle
from relaychat.protocol.registry import SNOMASK_LETTERS

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Channel, Session
    from relaychat.protocol.timebase import Now

__all__ = ["CHANNEL_MODES", "USER_MODES", "handle_mode", "normalize_mask"]

# channel mode kinds (the CHANMODES ISUPPORT groups, plus membership prefixes)
LIST = "A"  # a list of masks: parameter to add or remove, none to show the list
KEY = "B"  # a setting whose parameter goes both ways
LIMIT = "C"  # a setting with a parameter only when set
FLAG = "D"  # on or off
STATUS = "prefix"  # a member's status: parameter is a nick

CHANNEL_MODES: dict[str, str] = {
    "b": LIST,
    "e": LIST,
    "I": LIST,
    "k": KEY,
    "l": LIMIT,
    "i": FLAG,
    "m": FLAG,
    "n": FLAG,
    "s": FLAG,
    "t": FLAG,
    "o": STATUS,
    "v": STATUS,
}

# kind -> (takes a parameter when set, takes one when unset)
_TAKES_PARAM: dict[str, tuple[bool, bool]] = {
    LIST: (True, True),
    KEY: (True, True),
    LIMIT: (True, False),
    FLAG: (False, False),
    STATUS: (True, True),
}

# list letter -> (entry numeric, end numeric, end text)
_LIST_REPLIES: dict[str, tuple[str, str, str]] = {
    "b": (N.RPL_BANLIST, N.RPL_ENDOFBANLIST, "End of channel ban list"),
    "e": (N.RPL_EXCEPTLIST, N.RPL_ENDOFEXCEPTLIST, "End of channel exception list"),
    "I": (N.RPL_INVITELIST, N.RPL_ENDOFINVITELIST, "End of channel invite list"),
}

# user mode letter -> (a user may set it, a user may unset it); +o comes from OPER,
# +s (operators only, with a snomask parameter) is handled apart
USER_MODES: dict[str, tuple[bool, bool]] = {
    BOT_MODE: (True, True),  # bot mode (ISUPPORT BOT)
    "i": (True, True),
    "w": (True, True),
    "o": (False, True),
    "s": (True, True),
    SECURE_MODE: (False, False),  # set by the server on a TLS connection, fixed
}

KEY_MAX = 32  # characters in a channel key
MASK_MAX = 200  # bytes (UTF-8) in a list mode mask


# MODE <target> [<modestring> [<mode arguments>...]]
def handle_mode(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    target = msg.params[0]
    if core.is_channel_name(target):
        chan = core.find_channel(target)
        if chan is None:
            core.reply(sess, N.ERR_NOSUCHCHANNEL, safe_param(target), "No such channel")
        elif len(msg.params) < 2:
            _show_channel_modes(core, sess, chan)
        else:
            _change_channel_modes(core, sess, chan, msg.params[1], msg.params[2:], now)
        return
    user = core.find_user(target)
    if user is None:
        core.reply(sess, N.ERR_NOSUCHNICK, safe_param(target), "No such nick/channel")
    elif user is not sess.user:
        verb = "change" if len(msg.params) > 1 else "view"
        core.reply(sess, N.ERR_USERSDONTMATCH, f"Can't {verb} mode for other users")
    elif len(msg.params) < 2:
        snomask = core.registry.snomasks.get(user)
        extra = ["+" + snomask] if snomask else []
        core.reply(sess, N.RPL_UMODEIS, "+" + user.modes, *extra)
    else:
        _change_user_modes(core, sess, msg.params[1], msg.params[2:], now)


# ------------------------------------------------------------------ user modes
def apply_snomask(current: str, change: str | None) -> str:
    """The snomask after ``change`` (``+cq-f``, ``cq``, ``*``, ``-*``; None: every
    letter) is applied to ``current``; unknown letters are ignored."""
    if change is None:
        return SNOMASK_LETTERS
    letters = set(current)
    adding = True
    for c in change:
        if c in "+-":
            adding = c == "+"
        elif c == "*":
            letters = set(SNOMASK_LETTERS) if adding else set()
        elif c in SNOMASK_LETTERS:
            if adding:
                letters.add(c)
            else:
                letters.discard(c)
    return "".join(c for c in SNOMASK_LETTERS if c in letters)


def _change_user_modes(
    core: ServerCore, sess: Session, modestring: str, args: list[str], now: Now
) -> None:
    user = sess.user
    old = set(user.modes)
    current = set(old)
    old_snomask = core.registry.snomasks.get(user, "")
    snomask = old_snomask
    params = iter(args)
    seen: dict[str, int] = {}  # letter -> when it last changed (announcement order)
    step = 0
    unknown = False
    denied = False
    adding = True
    for letter in modestring:
        if letter in "+-":
            adding = letter == "+"
            continue
        rule = USER_MODES.get(letter)
        if rule is None:
            unknown = True
            continue
        if letter == "s" and adding:
            change = next(params, None)
            if user.oper_name is None:
                if not denied:
                    denied = True
                    core.reply(
                        sess,
                        N.ERR_NOPRIVILEGES,
                        "Permission Denied - Only operators may set user mode s",
                    )
                continue
            snomask = apply_snomask(snomask if "s" in current else "", change)
            if snomask:
                current.add("s")
            else:
                current.discard("s")
        elif not rule[0 if adding else 1] or adding == (letter in current):
            continue
        elif adding:
            current.add(letter)
        else:
            current.discard(letter)
        seen[letter] = step = step + 1
    if "o" not in current and "s" in current:
        current.discard("s")  # server notices are for operators only
        seen["s"] = step + 1
    if "s" not in current:
        snomask = ""
    if unknown:
        core.reply(sess, N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
    changed = [c for c in seen if (c in old) != (c in current)]
    if "s" in current and "s" in old and snomask != old_snomask:
        changed.append("s")  # the same mode with a new snomask
    if not changed:
        return
    changed.sort(key=seen.__getitem__)
    changes: list[Change] = [
        (c in current, c, "+" + snomask if c == "s" and c in current else None) for c in changed
    ]
    text, announced = _format_changes(changes)
    ev = core.event(user, "MODE", [user.name, text, *announced], now, SELF, trailing=True)
    core.registry.set_user_modes(user, "".join(current), snomask)
    core.emit(ev)
    if snomask and snomask != old_snomask:
        core.reply(sess, N.RPL_SNOMASK, "+" + snomask, "Server notice mask")


# --------------------------------------------------------------- channel modes
def _show_channel_modes(core: ServerCore, sess: Session, chan: Channel) -> None:
    letters = "".join(sorted(chan.modes))
    params: list[str] = []
    member = sess.user in chan.members
    if chan.key is not None:
        letters += "k"
        if member:
            params.append(chan.key)
    if chan.limit is not None:
        letters += "l"
        if member:
            params.append(str(chan.limit))
    core.reply(sess, N.RPL_CHANNELMODEIS, chan.name, "+" + letters, *params)
    core.reply(sess, N.RPL_CREATIONTIME, chan.name, str(int(chan.created)))


def _show_list(core: ServerCore, sess: Session, chan: Channel, letter: str) -> None:
    item, end, text = _LIST_REPLIES[letter]
    if channel_visible(sess.user, chan):
        for entry in chan.lists[letter]:
            if letter == "b":
                core.reply(sess, item, chan.name, entry.mask, entry.setter, str(int(entry.set_at)))
            else:
                core.reply(sess, item, chan.name, entry.mask)
    core.reply(sess, end, chan.name, text)


# A change that took effect: (set?, letter, parameter to announce)
Change = tuple[bool, str, str | None]


class _Context:
    """What one MODE command's appliers share."""

    __slots__ = ("core", "sess", "chan", "now")

    def __init__(self, core: ServerCore, sess: Session, chan: Channel, now: Now) -> None:
        self.core = core
        self.sess = sess
        self.chan = chan
        self.now = now


def _change_channel_modes(
    core: ServerCore,
    sess: Session,
    chan: Channel,
    modestring: str,
    args: list[str],
    now: Now,
) -> None:
    ctx = _Context(core, sess, chan, now)
    is_op = chan.is_op(sess.user)
    params = iter(args)
    changes: list[Change] = []
    listed: set[str] = set()
    unknown: str | None = None
    denied = False
    with_param = 0
    adding = True
    for letter in modestring:
        if letter in "+-":
            adding = letter == "+"
            continue
        kind = CHANNEL_MODES.get(letter)
        if kind is None:
            if unknown is None:
                unknown = letter
            continue
        param: str | None = None
        if _TAKES_PARAM[kind][0 if adding else 1]:
            param = next(params, None)
        if kind == LIST and param is None:
            if letter not in listed:
                listed.add(letter)
                _show_list(core, sess, chan, letter)
            continue
        if param is None and (kind == STATUS or (adding and kind in (KEY, LIMIT))):
            continue  # a parameter is required and missing: ignore the letter
        if param is not None:
            with_param += 1
            if with_param > core.limits.max_modes:
                continue
        if not is_op:
            if not denied:
                denied = True
                core.reply(sess, N.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
            continue
        change = _APPLIERS[kind](ctx, adding, letter, param)
        if change is not None:
            changes.append(change)
    if unknown is not None:
        core.reply(sess, N.ERR_UNKNOWNMODE, safe_param(unknown), "is unknown mode char to me")
    if changes:
        _announce(core, sess, chan, changes, now)


def _announce(
    core: ServerCore, sess: Session, chan: Channel, changes: list[Change], now: Now
) -> None:
    """One MODE line per group of changes that fits in 512 bytes."""
    user = sess.user
    room = MAX_RELAY_LINE - 2 - len(f":{user.source} MODE {chan.name} +".encode()) - 10
    start = 0
    while start < len(changes):
        end = start
        size = 0
        while end < len(changes):
            param = changes[end][2]
            cost = 2 + (len(param.encode()) + 1 if param is not None else 0)
            if end > start and size + cost > room:
                break
            size += cost
            end += 1
        text, announced = _format_changes(changes[start:end])
        core.emit(
            core.event(
                user,
                "MODE",
                [chan.name, text, *announced],
                now,
                CHANNEL,
                channel=chan,
                echo=ECHO_ALWAYS,
            )
        )
        start = end


def _format_changes(changes: list[Change]) -> tuple[str, list[str]]:
    """``+ov-b`` and its parameters, in order."""
    out: list[str] = []
    params: list[str] = []
    sign = ""
    for adding, letter, param in changes:
        s = "+" if adding else "-"
        if s != sign:
            out.append(s)
            sign = s
        out.append(letter)
        if param is not None:
            params.append(param)
    return "".join(out), params


def normalize_mask(mask: str) -> str:
    """A full ``nick!user@host`` mask: a bare nick becomes ``nick!*@*``,
    ``user@host`` becomes ``*!user@host``, and empty parts become ``*``."""
    nick, bang, rest = mask.partition("!")
    if bang:
        user, _, host = rest.partition("@")
    else:
        user_or_nick, at, host = mask.partition("@")
        nick, user = ("*", user_or_nick) if at else (user_or_nick, "*")
    return f"{nick or '*'}!{user or '*'}@{host or '*'}"


def valid_mask(raw: str) -> bool:
    """One word a list mode may hold: no space, comma, leading colon, CR/LF/NUL."""
    return valid_middle(raw) and "," not in raw and len(raw.encode("utf-8")) <= MASK_MAX


def _apply_list(ctx: _Context, adding: bool, letter: str, param: str | None) -> Change | None:
    assert param is not None
    core, chan = ctx.core, ctx.chan
    if not valid_mask(param):
        return None
    mask = normalize_mask(param)
    if adding:
        added = core.registry.add_list_entry(
            chan, letter, mask, ctx.sess.user.prefix, ctx.now.wall, core.limits.max_list_entries
        )
        if added is None:
            core.reply(ctx.sess, N.ERR_BANLISTFULL, chan.name, letter, "Channel list is full")
            return None
        return (True, letter, mask) if added else None
    removed = core.registry.remove_list_entry(chan, letter, mask)
    return (False, letter, removed.mask) if removed is not None else None


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= KEY_MAX and valid_mask(key) and key.isprintable()


def _apply_key(ctx: _Context, adding: bool, letter: str, param: str | None) -> Change | None:
    reg, chan = ctx.core.registry, ctx.chan
    if not adding:
        return (False, letter, "*") if reg.set_key(chan, None) else None
    assert param is not None
    if not _valid_key(param):
        ctx.core.reply(ctx.sess, N.ERR_INVALIDKEY, chan.name, "Key is not well-formed")
        return None
    return (True, letter, param) if reg.set_key(chan, param) else None


def _apply_limit(ctx: _Context, adding: bool, letter: str, param: str | None) -> Change | None:
    reg, chan = ctx.core.registry, ctx.chan
    if not adding:
        return (False, letter, None) if reg.set_limit(chan, None) else None
    assert param is not None
    limit = parse_int(param)
    if limit is None or not 0 < limit < 2**31:
        ctx.core.reply(
            ctx.sess,
            N.ERR_INVALIDMODEPARAM,
            chan.name,
            letter,
            safe_param(param),
            "Invalid limit: a positive number is required",
        )
        return None
    return (True, letter, str(limit)) if reg.set_limit(chan, limit) else None


def _apply_flag(ctx: _Context, adding: bool, letter: str, param: str | None) -> Change | None:
    return (adding, letter, None) if ctx.core.registry.set_flag(ctx.chan, letter, adding) else None


def _apply_status(ctx: _Context, adding: bool, letter: str, param: str | None) -> Change | None:
    assert param is not None
    core, chan = ctx.core, ctx.chan
    target = core.find_user(param)
    if target is None or target.nick is None:
        core.reply(ctx.sess, N.ERR_NOSUCHNICK, safe_param(param), "No such nick/channel")
        return None
    if target not in chan.members:
        core.reply(
            ctx.sess, N.ERR_USERNOTINCHANNEL, target.nick, chan.name, "They aren't on that channel"
        )
        return None
    if not core.registry.set_status(chan, target, letter, adding):
        return None
    return (adding, letter, target.nick)


_APPLIERS: dict[str, Callable[[_Context, bool, str, str | None], Change | None]] = {
    LIST: _apply_list,
    KEY: _apply_key,
    LIMIT: _apply_limit,
    FLAG: _apply_flag,
    STATUS: _apply_status,
}
