"""Read markers (IRCv3 ``draft/read-marker``): what the user has read, per
target, shared by the connections of an account.

Theory of operation
-------------------
* **Key.** A marker belongs to (account folded, target key); the target key is
  the folded name *as the user names it*: a channel's folded name, or the
  folded nick of a private conversation (as Ergo does). A marker on a nick
  therefore follows the nick, not the person behind it; it is private to the
  account and never shown to anyone else.
* **Logged in.** Markers live in the store (``read_markers`` table). At each
  login (:func:`logged_in`) an ordered op loads the account's markers into
  ``user.read_markers``, so the session's later commands (its JOINs) wait for
  them and a JOIN can send the channel's marker before ``RPL_ENDOFNAMES``
  without waiting on the store. A MARKREAD set is an op too: the store keeps
  the later of the two times in one statement and says what it holds; the
  reply (and the copy to the user's other sessions) comes from its ``then``,
  once committed, and the cache takes the later time. MARKREAD get reads the
  store. A session attaching to its account's user (multiclient) keeps the
  user's cache (:func:`adopt`).
* **Not logged in.** Nothing is stored: ``user.read_markers`` is the only copy,
  in memory, gone with the user (and replaced by the account's markers at a
  login).
* **Bounds.** At most :data:`MAX_MARKERS` per account or user: past it the
  markers read longest ago go. A time in the future is clamped to now.

Everything here runs on the core's thread; the store only inside ops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relaychat.protocol.history import READ_MARKER_CAP
from relaychat.protocol.message import Message
from relaychat.protocol.ops import Op
from relaychat.protocol.storage import StoreError
from relaychat.protocol.timebase import server_time

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, Session, User

__all__ = [
    "MAX_MARKERS",
    "adopt",
    "logged_in",
    "marker_text",
    "remember",
    "send_on_join",
    "send_marker",
]

log = logging.getLogger("relaychat.history")

MAX_MARKERS = 1000  # read markers kept per account (store) or per user (memory)


def marker_text(when: int | None) -> str:
    """The marker parameter: ``timestamp=YYYY-MM-DDThh:mm:ss.sssZ``, or ``*`` for none."""
    return "*" if when is None else "timestamp=" + server_time(when / 1000)


def send_marker(core: ServerCore, sess: Session, target: str, when: int | None) -> None:
    """``:server MARKREAD <target> <timestamp|*>`` to ``sess`` (``target`` is valid)."""
    line = Message("MARKREAD", [target, marker_text(when)], source=core.server_name)
    core.output.send_bytes(sess, line.to_bytes())


def send_on_join(
    core: ServerCore, user: User, chan: Channel, sessions: tuple[Session, ...]
) -> None:
    """After the JOIN of ``user`` to ``chan``: the channel's marker to each of
    ``sessions`` (those that got the JOIN) with the capability, before NAMES."""
    if core.history is None:
        return
    markers = user.read_markers
    when = markers.get(chan.folded) if markers is not None else None
    for sess in sessions:
        if READ_MARKER_CAP in sess.caps and sess.closing is None:
            send_marker(core, sess, chan.name, when)


def remember(markers: dict[str, int], key: str, when: int) -> None:
    """Keep ``when`` as the marker of ``key`` if it is later; bounded."""
    if markers.get(key, -1) >= when:
        return
    markers[key] = when
    if len(markers) > MAX_MARKERS:
        oldest = min(markers, key=markers.__getitem__)
        del markers[oldest]


def logged_in(core: ServerCore, sess: Session) -> None:
    """``sess``'s user was just logged in: its markers are the account's now,
    loaded by an ordered op (the session's next commands wait for them)."""
    user = sess.user
    user.read_markers = None
    store = core.store
    account = user.account
    if core.history is None or store is None or account is None:
        return
    folded = core.fold(account)

    def run() -> dict[str, int] | None:
        try:
            return store.read_markers(folded)
        except StoreError as exc:
            log.error("[%d] read markers of %s not loaded: %s", sess.conn_id, account, exc)
            return None

    def then(loaded: dict[str, int] | None) -> None:
        owner = sess.user
        if loaded is None or owner.account is None or core.fold(owner.account) != folded:
            return
        if owner.read_markers is None:
            owner.read_markers = loaded
        else:  # set meanwhile by another session of the user: the later time wins
            for key, when in loaded.items():
                remember(owner.read_markers, key, when)

    core.submit(Op(run, then, sess, pool="store"))


def adopt(owner: User, temporary: User) -> None:
    """A session attaches to ``owner`` (multiclient) from ``temporary``, the
    user it logged in as: ``owner`` keeps its markers, or takes those loaded
    for the session (an always-on user restored with none loaded)."""
    if owner.read_markers is None:
        owner.read_markers = temporary.read_markers
