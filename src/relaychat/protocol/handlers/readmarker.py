"""MARKREAD (IRCv3 ``draft/read-marker``): get or set what the user has read
in a channel or a conversation (see :mod:`relaychat.protocol.readmarkers`).

``MARKREAD <target>`` answers ``MARKREAD <target> timestamp=...`` (``*``: none);
``MARKREAD <target> timestamp=YYYY-MM-DDThh:mm:ss.sssZ`` moves the marker
forward (an older or equal time is ignored) and answers with the marker the
server holds; when it moved, the user's other sessions with the capability get
the same line. The command works with or without the capability (the
capability only asks for the markers on JOIN and from other sessions).

Errors are standard replies: ``FAIL MARKREAD NEED_MORE_PARAMS``,
``INVALID_PARAMS`` (not a channel or nick name, not a timestamp, ``*`` in a
set), ``INTERNAL_ERROR`` (the store failed, or the server keeps no history).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol.handlers.chathistory import parse_reference
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.handlers.registration import valid_nick
from relaychat.protocol.history import READ_MARKER_CAP, stamp_ms
from relaychat.protocol.ops import Op
from relaychat.protocol.readmarkers import MAX_MARKERS, remember, send_marker
from relaychat.protocol.storage import StoreError

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

__all__ = ["handle_markread"]

CMD = "MARKREAD"


# MARKREAD <target> [<timestamp>]
def handle_markread(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    params = msg.params
    if not params or not params[0]:
        core.fail(sess, CMD, "NEED_MORE_PARAMS", "Missing parameters")
        return
    name = params[0]
    if core.is_channel_name(name):
        if not core.valid_channel_name(name):
            core.fail(sess, CMD, "INVALID_PARAMS", safe_param(name), "Invalid target")
            return
        chan = core.find_channel(name)
        shown = chan.name if chan is not None else name
    elif valid_nick(core, name):
        peer = core.find_user(name)
        shown = peer.name if peer is not None else name
    else:
        core.fail(sess, CMD, "INVALID_PARAMS", safe_param(name), "Invalid target")
        return
    if core.history is None:
        core.fail(sess, CMD, "INTERNAL_ERROR", shown, "Read markers are not kept on this server")
        return
    key = core.fold(name)
    when: int | None = None
    if len(params) > 1:
        ref = parse_reference(params[1])
        if ref is None or ref[0] != "time" or int(ref[1]) < 0:
            core.fail(sess, CMD, "INVALID_PARAMS", safe_param(params[1]), "Invalid timestamp")
            return
        when = min(int(ref[1]), stamp_ms(now.wall))  # never ahead of the server's clock
    user = sess.user
    account = user.account
    if account is None:  # kept in memory, for this user only
        if when is not None:
            if user.read_markers is None:
                user.read_markers = {}
            before = user.read_markers.get(key)
            remember(user.read_markers, key, when)
            moved = before is None or when > before
            _answer(core, sess, shown, user.read_markers.get(key), moved)
        else:
            markers = user.read_markers
            send_marker(core, sess, shown, markers.get(key) if markers is not None else None)
        return
    folded = core.fold(account)
    store = core.store
    assert store is not None  # logged in: there is a store

    if when is None:

        def get() -> int | None | StoreError:
            try:
                return store.read_marker(folded, key)
            except StoreError as exc:
                return exc

        def got(result: int | None | StoreError) -> None:
            if isinstance(result, StoreError):
                core.fail(sess, CMD, "INTERNAL_ERROR", shown, "The read timestamp is unavailable")
                return
            send_marker(core, sess, shown, result)

        core.submit(Op(get, got, sess, pool="store"))
        return
    at = when

    def put() -> tuple[int, bool] | StoreError:
        try:
            return store.set_read_marker(folded, key, at, MAX_MARKERS)
        except StoreError as exc:
            return exc

    def done(result: tuple[int, bool] | StoreError) -> None:
        if isinstance(result, StoreError):
            core.fail(sess, CMD, "INTERNAL_ERROR", shown, "The read timestamp could not be set")
            return
        stored, moved = result
        owner = sess.user
        if owner.read_markers is not None and owner.account == account:
            remember(owner.read_markers, key, stored)
        _answer(core, sess, shown, stored, moved)

    core.submit(Op(put, done, sess, pool="store"))


def _answer(core: ServerCore, sess: Session, shown: str, when: int | None, moved: bool) -> None:
    """The reply to a set; when the marker moved, the same line to the user's
    other sessions that have the capability."""
    send_marker(core, sess, shown, when)
    if not moved:
        return
    for other in sess.user.sessions:
        if other is not sess and other.closing is None and READ_MARKER_CAP in other.caps:
            send_marker(core, other, shown, when)
