"""Registered channels: who founded them, their access lists, and the state they
keep across restarts (topic, flag modes, key, limit, ban/except/invex lists).

Theory of operation
-------------------
A registered channel is a :class:`~relaychat.protocol.state.Channel` whose
``registration`` is a :class:`Registration`; the registry keeps it when its last
member leaves, and a first joiner gets no ``+o`` from being first (the access
list decides, :func:`auto_mode`). At start the core recreates every registered
channel from the store, empty (:func:`load_channels`, before the server listens).

The registry calls :meth:`ChannelWriter.changed` whenever a registered channel's
kept state changes; the writer takes a snapshot there, on the core's thread, and
collects the snapshots of one turn in a :class:`~relaychat.protocol.ops.Batcher`
whose op (unordered, in the one-at-a-time ``chanstate`` pool, so the writes keep
their order) saves the last snapshot of each channel. A failed write is logged
(:func:`~relaychat.protocol.accounts.store_failed`); the change stays in force.

Founder and access-list changes are made by ChanServ
(:mod:`relaychat.protocol.handlers.chanserv`) as ordered ops: the reply comes
after the commit, and the in-memory registration changes only then.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from relaychat.protocol.accounts import store_call
from relaychat.protocol.events import CHANNEL, build_event
from relaychat.protocol.message import truncate_utf8
from relaychat.protocol.ops import Batcher, Op
from relaychat.protocol.state import ListEntry
from relaychat.protocol.storage import AccessEntry, ChannelListEntry, ChannelRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, User
    from relaychat.protocol.storage import Store
    from relaychat.protocol.timebase import Now

__all__ = [
    "CHANSERV",
    "LEVELS",
    "ChannelWriter",
    "Registration",
    "auto_mode",
    "load_channels",
    "snapshot",
]

log = logging.getLogger("relaychat.chanreg")

CHANSERV = "ChanServ!ChanServ@services."
LEVELS = {"op": "o", "voice": "v"}  # access level -> the status it gives
FLAG_LETTERS = "imnst"  # the flag modes a registered channel keeps
MAX_ACCESS = 100  # entries per access list


class Registration:
    """A registered channel's founder (an account) and access list
    (folded account name -> entry)."""

    __slots__ = ("founder", "founder_folded", "registered_at", "access")

    def __init__(self, founder: str, founder_folded: str, registered_at: float) -> None:
        self.founder = founder
        self.founder_folded = founder_folded
        self.registered_at = registered_at
        self.access: dict[str, AccessEntry] = {}

    def level(self, account_folded: str) -> str | None:
        """``"founder"``, ``"op"``, ``"voice"`` or None for an account."""
        if account_folded == self.founder_folded:
            return "founder"
        entry = self.access.get(account_folded)
        return entry.level if entry is not None else None


def account_level(core: ServerCore, chan: Channel, user: User) -> str | None:
    """The access level of ``user`` (by the account it is logged in to) on ``chan``."""
    reg = chan.registration
    if reg is None or user.account is None:
        return None
    level: str | None = reg.level(core.fold(user.account))
    return level


def snapshot(chan: Channel, founder: str = "", registered_at: float = 0.0) -> ChannelRecord:
    """The kept state of ``chan`` now (on the core's thread: the record is immutable)."""
    return ChannelRecord(
        chan.name,
        chan.folded,
        founder,
        registered_at,
        chan.topic,
        chan.topic_setter,
        chan.topic_time,
        "".join(sorted(c for c in chan.modes if c in FLAG_LETTERS)),
        chan.key,
        chan.limit,
        tuple(
            ChannelListEntry(letter, e.mask, e.setter, e.set_at)
            for letter in ("b", "e", "I")
            for e in chan.lists[letter]
        ),
    )


def load_channels(core: ServerCore, store: Store) -> None:
    """At start: recreate every registered channel, empty, with its kept state.
    A name that is not a valid channel name here (or folds differently) is
    skipped with a warning; unknown mode letters, a limit below 1, access
    levels other than op/voice and list entries past ``max_list_entries`` are
    dropped. Runs on the core's thread before the server listens, as the
    server bans' load does."""
    reg = core.registry
    loaded = 0
    for rec in store.registered_channels():
        if not core.valid_channel_name(rec.name) or core.fold(rec.name) != rec.folded:
            log.warning("store: skipped registered channel %r (not a valid name)", rec.name)
            continue
        if rec.folded in reg.channels:
            continue
        chan = reg.create_channel(rec.name, rec.registered_at)
        apply_state(core, chan, rec)
        registration = Registration(rec.founder, core.fold(rec.founder), rec.registered_at)
        for a in rec.access[:MAX_ACCESS]:
            if a.level in LEVELS:
                registration.access[a.folded] = a
        chan.registration = registration
        loaded += 1
    if loaded:
        log.info("%d registered channel(s) loaded from the store", loaded)


def apply_state(core: ServerCore, chan: Channel, rec: ChannelRecord) -> None:
    """Give ``chan`` the kept state of ``rec`` (no write-through: direct)."""
    chan.topic = truncate_utf8(rec.topic, core.limits.topiclen)
    chan.topic_setter = rec.topic_setter
    chan.topic_time = rec.topic_time
    chan.modes = {c for c in rec.modes if c in FLAG_LETTERS}
    chan.key = rec.key or None
    chan.limit = rec.limit if rec.limit is not None and rec.limit > 0 else None
    capacity = core.limits.max_list_entries
    for letter in chan.lists:
        chan.lists[letter] = []
    for e in rec.lists:
        entries = chan.lists.get(e.letter)
        if entries is not None and len(entries) < capacity:
            entries.append(ListEntry(e.mask, core.fold(e.mask), e.setter, e.set_at))


class ChannelWriter:
    """Writes registered channels' state through to the store (see the module
    docstring). Made by the core; ``changed`` is the registry's callback."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.batcher = Batcher(self._save, pool="chanstate")

    def changed(self, chan: Channel) -> None:
        core = self.core
        if core.store is None:
            return
        core.add_to_batch(self.batcher, snapshot(chan))

    def _save(self, records: list[Any]) -> None:
        """On a worker thread: the last snapshot of each channel, in order."""
        last: dict[str, ChannelRecord] = {}
        for rec in records:
            last.pop(rec.folded, None)
            last[rec.folded] = rec
        for rec in last.values():
            store_call(
                self.core,
                None,
                f"saving the state of registered channel {rec.name}",
                _saver(rec),
            )


def _saver(rec: ChannelRecord) -> Callable[[Store], bool]:
    return lambda store: store.save_channel_state(rec)


def auto_mode(core: ServerCore, chan: Channel, user: User, now: Now) -> None:
    """Give ``user`` (a member of registered ``chan``) the status its account's
    access gives (founder and ``op``: ``+o``; ``voice``: ``+v``), as a MODE from
    ChanServ that every member sees. Nothing if it has it already."""
    level = account_level(core, chan, user)
    if level is None or user.nick is None or user not in chan.members:
        return
    letter = "o" if level == "founder" else LEVELS[level]
    set_status(core, chan, user, letter, True, now)


def set_status(
    core: ServerCore, chan: Channel, user: User, letter: str, on: bool, now: Now
) -> bool:
    """``+o``/``-o``/``+v``/``-v`` for a member, announced as a MODE from ChanServ;
    False if nothing changed."""
    if user.nick is None or not core.registry.set_status(chan, user, letter, on):
        return False
    core.emit(
        build_event(
            "MODE",
            CHANSERV,
            [chan.name, ("+" if on else "-") + letter, user.nick],
            time=now.wall,
            msgid=core.msgid(),
            audience=CHANNEL,
            channel=chan,
        )
    )
    return True


def account_dropped(core: ServerCore, folded: str) -> None:
    """Account ``folded`` was dropped: the channels it founded are dropped and
    its access entries removed, so that whoever registers the name next
    inherits nothing. In memory at once; in the store by unordered ops in the
    ``chanstate`` pool (a failure is logged)."""
    for chan in list(core.registry.channels.values()):
        reg = chan.registration
        if reg is None:
            continue
        if reg.founder_folded == folded:
            chan.registration = None
            core.registry.release_channel(chan)
            log.warning("channel %s dropped with its founder's account", chan.name)
            _write(core, f"dropping channel {chan.name}", _drop_channel(chan.folded))
        elif reg.access.pop(folded, None) is not None:
            what = f"removing a dropped account from the access list of {chan.name}"
            _write(core, what, _remove_access(chan.folded, folded))


def _drop_channel(chan_folded: str) -> Callable[[Store], bool]:
    return lambda store: store.drop_channel(chan_folded)


def _remove_access(chan_folded: str, folded: str) -> Callable[[Store], bool]:
    return lambda store: store.remove_channel_access(chan_folded, folded)


def _write(core: ServerCore, what: str, change: Callable[[Store], bool]) -> None:
    def run() -> None:
        store_call(core, None, what, change)

    run.__name__ = what
    core.submit(Op(run, None, None, ordered=False, pool="chanstate"))


def logged_in(core: ServerCore, user: User, now: Now) -> None:
    """``user`` just logged in: auto-modes on the registered channels it is in."""
    for chan in list(user.channels.values()):
        if chan.registration is not None:
            auto_mode(core, chan, user, now)
