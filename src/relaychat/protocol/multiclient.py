"""Multiclient and always-on accounts, after Ergo's model.

Theory of operation
-------------------
*Multiclient* (``[accounts] multiclient``): the connections logged in to one
account share one :class:`~relaychat.protocol.state.User` (nick, channels,
modes, away); each connection is a :class:`~relaychat.protocol.state.Session`
of it with its own capabilities, labels, batches, flood bucket and SendQ.
``account_users`` maps a folded account name to the registered user that owns
it: the first one to be logged in to it (at registration or later). A
connection that logs in during registration (SASL, before ``CAP END``) to an
account whose user is online *attaches* (``attach`` in
:mod:`relaychat.protocol.handlers.registration`, with :func:`owner_to_attach`
and :func:`add_session`): it becomes one more session of that user, gets the welcome
burst with the shared nick (the nick it asked for is ignored), a JOIN, topic
and NAMES for each channel, and its own MODE; nobody else sees anything. A
login *after* registration (NickServ IDENTIFY) never merges two users: that
user is just logged in (it owns the account only if nobody did). At most
``max_sessions`` connections per account: the next one is refused with an
ERROR. Delivery already goes to every session of a user; a message from one
session is echoed to the user's other sessions (``Output.deliver``).

*Always-on* (``[accounts] always_on``: ``false``, ``opt-in``, ``opt-out``,
``true``; the account's own choice by NickServ ``SET ALWAYS-ON``): the owner
of such an account stays when its last session goes (no QUIT, its nick held,
in its channels, marked away with ``auto_away``) and a later login attaches to
it again. ``user.last_seen`` (wall time) is when the last session left: the
hook for the history store to replay what was missed. KILL and GHOST remove it
for real (:func:`remove_user`). Its state (nick, ident, host, channels with
status) is written to the store (``save_always_on``: one op per turn with the
last change per account, one op at a time in the ``always_on`` pool so writes
keep their order) when it becomes always-on, on
each channel change and when its last session leaves, and is restored by
:func:`restore` when the core starts, before any client connects.

Everything here runs on the core's thread; the store only inside ops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relaychat.protocol.accounts import store_call
from relaychat.protocol.events import PEERS
from relaychat.protocol.ops import Batcher
from relaychat.protocol.state import User
from relaychat.protocol.storage import AlwaysOnRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, Session
    from relaychat.protocol.storage import Store
    from relaychat.protocol.timebase import Now

__all__ = [
    "always_on_default",
    "add_session",
    "channels_changed",
    "detached",
    "logged_in",
    "logged_out",
    "owner_to_attach",
    "remove_user",
    "restore",
    "set_choice",
    "user_gone",
]

log = logging.getLogger("relaychat.core")


def always_on_default(core: ServerCore, folded: str) -> bool:
    """Whether the account's user is always-on: the server's setting and the
    account's own choice. Never without multiclient or a store."""
    cfg = core.config.accounts
    mode = cfg.always_on
    if not cfg.multiclient or core.store is None or mode == "false":
        return False
    if mode == "true":
        return True
    choice = core.always_on_choices.get(folded)
    return (mode == "opt-out") if choice is None else choice


# ------------------------------------------------------------------ attach
def owner_to_attach(core: ServerCore, sess: Session) -> User | None:
    """The user ``sess`` (logged in during registration) would attach to: the
    online (or always-on) user of its account, with multiclient on; else None."""
    account = sess.user.account
    if not core.config.accounts.multiclient or account is None:
        return None
    owner = core.account_users.get(core.fold(account))
    if owner is None or owner is sess.user or not owner.registered:
        return None
    return owner


def add_session(core: ServerCore, owner: User, sess: Session, now: Now) -> None:
    """Make ``sess`` one more session of ``owner`` (the caller checked
    ``max_sessions``); a returning always-on user is no longer away."""
    sess.user = owner
    owner.sessions = (*owner.sessions, sess)
    returning = owner.last_seen is not None
    owner.last_seen = None
    core.timers.check_at(sess, now.mono + core.limits.ping_interval)
    log.info("[%d] attached to %s (%d sessions)", sess.conn_id, owner.prefix, len(owner.sessions))
    if returning and owner.auto_away:
        _set_away(core, owner, None, now)


# ------------------------------------------------------------ login/logout
def logged_in(core: ServerCore, user: User) -> None:
    """A registered ``user`` is logged in (at registration or later): it owns
    the account unless another user does, and becomes always-on if the account is."""
    if user.account is None:
        return
    folded = core.fold(user.account)
    owner = core.account_users.setdefault(folded, user)
    if owner is user and always_on_default(core, folded) and not user.always_on:
        user.always_on = True
        _save(core, user)


def logged_out(core: ServerCore, user: User, account: str) -> None:
    """``user`` was logged out of ``account`` (dropped): no longer its owner,
    no longer always-on."""
    folded = core.fold(account)
    if core.account_users.get(folded) is user:
        del core.account_users[folded]
    if user.always_on:
        user.always_on = False
        _forget(core, folded)
        if not user.sessions:  # nothing keeps it here any more
            remove_user(core, user, "Account dropped", core.now)


def user_gone(core: ServerCore, user: User) -> None:
    """``user`` left the network (removed by the registry)."""
    if user.account is not None:
        folded = core.fold(user.account)
        if core.account_users.get(folded) is user:
            del core.account_users[folded]


def set_choice(core: ServerCore, folded: str, choice: bool) -> None:
    """The account chose (NickServ SET ALWAYS-ON, already stored): apply it to
    its user, if online."""
    core.always_on_choices[folded] = choice
    user = core.account_users.get(folded)
    if user is None:
        return
    on = always_on_default(core, folded)
    if on and not user.always_on:
        user.always_on = True
        _save(core, user)
    elif not on and user.always_on:
        user.always_on = False
        _forget(core, folded)
        if not user.sessions:  # turned off from a connection that is not its own
            remove_user(core, user, "Always-on turned off", core.now)


# -------------------------------------------------------------- leaving
def detached(core: ServerCore, user: User, now: Now) -> None:
    """The last session of always-on ``user`` went: it stays, away."""
    user.last_seen = now.wall
    text = core.config.accounts.auto_away
    if text and user.away is None:
        _set_away(core, user, text[: core.limits.awaylen], now)
    _save(core, user)
    log.info("%s stays (always-on) with no session", user.prefix)


def remove_user(core: ServerCore, user: User, reason: str, now: Now) -> None:
    """Take ``user`` off the network for real (KILL, GHOST), always-on or not:
    every session closes; with none left, the user quits as if one had."""
    if user.always_on:
        user.always_on = False
        if user.account is not None:
            _forget(core, core.fold(user.account))
    for s in list(user.sessions):
        core.disconnect(s, reason, now)
    if user.sessions or not user.registered:
        return
    core.emit(core.event(user, "QUIT", [reason], now, PEERS, trailing=True))
    nick, folded = user.nick, user.nick_folded
    core.registry.remove_user(user, now.wall)
    core.monitor.signed_off(folded, nick)
    user_gone(core, user)
    log.info("%s removed with no session: %s", user.prefix, reason)


def _set_away(core: ServerCore, user: User, text: str | None, now: Now) -> None:
    user.away = text
    user.auto_away = text is not None
    ev = core.event(
        user, "AWAY", [text] if text else [], now, PEERS, cap="away-notify", trailing=True
    )
    core.emit(ev)
    core.monitor.relay(ev)


# ---------------------------------------------------------------- storage
def channels_changed(core: ServerCore, user: User, leaving: Channel | None = None) -> None:
    """An always-on user joined a channel, or is leaving ``leaving``: save its state."""
    _save(core, user, leaving)


def _record(core: ServerCore, user: User, leaving: Channel | None = None) -> AlwaysOnRecord | None:
    if user.account is None or user.nick is None:
        return None
    return AlwaysOnRecord(
        core.fold(user.account),
        user.account,
        user.nick,
        user.ident or "~user",
        user.host,
        user.ip,
        user.realname,
        tuple(
            (chan.name, chan.members.get(user, ""))
            for chan in user.channels.values()
            if chan is not leaving
        ),
        user.last_seen,
    )


def _save(core: ServerCore, user: User, leaving: Channel | None = None) -> None:
    record = _record(core, user, leaving)
    if record is not None:
        _write(core, record.folded, record)


def _forget(core: ServerCore, folded: str) -> None:
    _write(core, folded, None)


def _write(core: ServerCore, folded: str, record: AlwaysOnRecord | None) -> None:
    """Queue a save (``record``) or a delete (None) of the account's saved user.
    The changes of one turn go to the store as one op, only the last per
    account (a JOIN of twenty channels is one write), and one op at a time in
    the ``always_on`` pool, so they commit in order."""
    if core.store is None:
        return
    batcher = core.always_on_writes
    if batcher is None:
        batcher = core.always_on_writes = Batcher(
            lambda items: _run_writes(core, items), pool="always_on"
        )
    core.add_to_batch(batcher, (folded, record))


def _run_writes(core: ServerCore, items: list[tuple[str, AlwaysOnRecord | None]]) -> None:
    """On a worker thread: the last change per account of one turn."""
    for folded, record in dict(items).items():
        if record is None:
            store_call(core, None, f"forgetting always-on {folded}", _forgetter(folded))
        else:
            store_call(core, None, f"saving always-on {record.account}", _saver(record))


def _saver(record: AlwaysOnRecord) -> Callable[[Store], None]:
    return lambda store: store.save_always_on(record)


def _forgetter(folded: str) -> Callable[[Store], None]:
    return lambda store: store.forget_always_on(folded)


# ---------------------------------------------------------------- restore
def restore(core: ServerCore, store: Store, now: Now) -> None:
    """At start: every saved always-on user back in its channels (before any
    client connects), away with ``auto_away``. A user whose account is no
    longer always-on, or whose nick is taken or invalid, is skipped."""
    reg = core.registry
    restored = 0
    for rec in store.always_on_users():
        if rec.folded not in core.account_names or not always_on_default(core, rec.folded):
            continue
        if not _plausible_nick(core, rec.nick) or reg.nick_holder(rec.nick) is not None:
            log.warning("store: always-on %s skipped: nick %r unusable", rec.account, rec.nick)
            continue
        uid = core.new_id()
        user = _user_from(uid, rec)
        if not reg.register(user, now.wall):
            continue
        for name, status in rec.channels:
            if len(user.channels) >= core.limits.chanlimit:
                break
            if not core.valid_channel_name(name) or core.fold(name) in user.channels:
                continue
            chan = reg.find_channel(name) or reg.create_channel(name, now.wall)
            reg.join(chan, user, "".join(c for c in "ov" if c in status))
        user.last_seen = rec.last_seen if rec.last_seen is not None else now.wall
        text = core.config.accounts.auto_away
        if text:
            user.away = text[: core.limits.awaylen]
            user.auto_away = True
        user.always_on = True
        core.account_users[rec.folded] = user
        restored += 1
    if restored:
        log.info("%d always-on user(s) restored from the store", restored)


def _plausible_nick(core: ServerCore, nick: str) -> bool:
    """A saved nick (valid when it was saved) that still fits this server's
    limits and the message grammar."""
    return (
        0 < len(nick) <= core.limits.nicklen
        and nick[0] not in ":#&0123456789-"
        and not any(c.isspace() or c in ",*?!@" or ord(c) < 32 for c in nick)
        and core.fold(nick) not in core.services
    )


def _user_from(uid: int, rec: AlwaysOnRecord) -> User:
    user = User(uid, rec.ip, rec.host)
    user.nick = rec.nick
    user.ident = rec.ident
    user.realname = rec.realname
    user.account = rec.account
    return user
