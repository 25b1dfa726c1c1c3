"""MONITOR: who watches which nick, both ways, and the notifications it sends.

Theory of operation
-------------------
:class:`Monitor` owns every watch list. A list belongs to a *session* (a
connection asked for it, and only that connection is told), and is kept twice:

* ``watching``: session -> {folded nick: the target as the client gave it};
* ``watchers``: folded nick -> the sessions watching it (the reverse index).

So telling the watchers of a nick costs O(watchers), whoever else is online, and
a session's list is dropped in O(its length) when it closes (``forget``, called
from the core's teardown). Every change goes through a method here, which keeps
the two in step; an entry of ``watchers`` with no session left is deleted.

Notifications: ``signed_on`` (registration, the new nick of a NICK) sends
``730 <watcher> nick!user@host``, ``signed_off`` (QUIT, any disconnect, the old
nick of a NICK) ``731 <watcher> nick``; a nick change that only changes case
tells nobody (the folded nick is still online). ``relay`` is extended-monitor:
a PEERS event about a user's own state (AWAY, SETNAME, CHGHOST, ACCOUNT) also
reaches the watchers of that user that negotiated ``extended-monitor`` and the
event's capability, unless they share a channel with the user (they got it as
peers) or are the user (its own sessions follow the capability's own rule).
Those copies are the same event's bytes, not a new event.

Bounds: a list holds at most ``limits.monitor_limit`` targets (the handler
refuses more); each target is a valid nick, so at most NICKLEN characters.

Only the core's thread calls this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.message import pack

if TYPE_CHECKING:
    from relaychat.protocol.events import Event
    from relaychat.protocol.output import Output
    from relaychat.protocol.state import Session, User

__all__ = ["EXTENDED_MONITOR", "MAX_NUMERIC_LINE", "Monitor", "reply_joined"]

EXTENDED_MONITOR = "extended-monitor"
MAX_NUMERIC_LINE = 510  # bytes of a numeric line before CRLF

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Monitor:
    def __init__(self, output: Output) -> None:
        self.output = output
        self.watching: dict[Session, dict[str, str]] = {}
        self.watchers: dict[str, set[Session]] = {}

    # ----------------------------------------------------------- the lists
    def listed(self, sess: Session) -> Mapping[str, str]:
        """``sess``'s list: folded nick -> the target as the client gave it."""
        return self.watching.get(sess, _EMPTY)

    def add(self, sess: Session, folded: str, shown: str) -> bool:
        """Watch ``folded`` (shown as ``shown``); False if it already was."""
        targets = self.watching.get(sess)
        if targets is None:
            targets = self.watching[sess] = {}
        elif folded in targets:
            return False
        targets[folded] = shown
        sessions = self.watchers.get(folded)
        if sessions is None:
            sessions = self.watchers[folded] = set()
        sessions.add(sess)
        return True

    def remove(self, sess: Session, folded: str) -> None:
        targets = self.watching.get(sess)
        if targets is None or targets.pop(folded, None) is None:
            return
        if not targets:
            del self.watching[sess]
        self._unwatch(sess, folded)

    def forget(self, sess: Session) -> None:
        """Drop ``sess``'s whole list (MONITOR C, the session closing)."""
        targets = self.watching.pop(sess, None)
        if targets:
            for folded in targets:
                self._unwatch(sess, folded)

    def _unwatch(self, sess: Session, folded: str) -> None:
        sessions = self.watchers.get(folded)
        if sessions is not None:
            sessions.discard(sess)
            if not sessions:
                del self.watchers[folded]

    # ------------------------------------------------------- notifications
    def signed_on(self, user: User) -> None:
        """``user`` is online under its nick: 730 to its watchers."""
        folded = user.nick_folded
        sessions = self.watchers.get(folded) if folded is not None else None
        if sessions:
            mask = (user.prefix,)
            for sess in list(sessions):
                reply_joined(self.output, sess, N.RPL_MONONLINE, mask)

    def signed_off(self, folded: str | None, nick: str | None) -> None:
        """The nick ``nick`` (folded: ``folded``) went offline: 731 to its watchers."""
        sessions = self.watchers.get(folded) if folded is not None else None
        if sessions and nick:
            for sess in list(sessions):
                reply_joined(self.output, sess, N.RPL_MONOFFLINE, (nick,))

    def nick_changed(self, user: User, old_nick: str | None, old_folded: str | None) -> None:
        """``user`` changed nick: the old one went offline, the new one came
        online (nothing when only its case changed)."""
        if old_folded == user.nick_folded:
            return
        self.signed_off(old_folded, old_nick)
        self.signed_on(user)

    def relay(self, ev: Event) -> None:
        """extended-monitor: ``ev`` (a PEERS event about its actor) to the actor's
        watchers with ``extended-monitor`` and ``ev.cap`` that did not get it as
        peers."""
        actor = ev.actor
        folded = actor.nick_folded if actor is not None else None
        sessions = self.watchers.get(folded) if folded is not None else None
        if not sessions or actor is None:
            return
        cap = ev.cap
        send = self.output.send_bytes
        for sess in list(sessions):
            caps = sess.caps
            if EXTENDED_MONITOR not in caps or (cap is not None and cap not in caps):
                continue
            watcher = sess.user
            if watcher is actor or sess.closing is not None:
                continue
            if _shares_channel(watcher, actor):
                continue  # a peer: local delivery gave it the event already
            send(sess, ev.for_variant(sess.variant))


def reply_joined(
    output: Output, sess: Session, numeric: str, items: Iterable[str], sep: str = ","
) -> None:
    """``:server <numeric> <nick> :a,b,c`` with as many items per line as fit in
    512 bytes (an item is a nick or a mask, far shorter than a line)."""
    head = f"{output.numeric_prefix}{numeric} {sess.name} :"
    for line in pack(items, MAX_NUMERIC_LINE - len(head.encode("utf-8")), sep):
        output.send_line(sess, head + line)
        if sess.closing is not None:
            return


def _shares_channel(a: User, b: User) -> bool:
    small, other = (a, b) if len(a.channels) <= len(b.channels) else (b, a)
    return any(other in chan.members for chan in small.channels.values())
