"""REDACT (IRCv3 ``draft/message-redaction``): delete a message from stored
history and tell the clients that support it.

``REDACT <target> <msgid> [:<reason>]``. Who may redact:

* in a channel: the message's sender, channel operators (``+o``) of that
  channel, and IRC operators (who need not be in the channel); anyone else
  must be in the channel, else the target is refused as if it did not exist;
* in a private conversation (``<target>`` is the other party's nick): the
  message's sender only;
* "the sender" is matched by *account*: a message sent while logged in can be
  redacted by any connection logged in to that account; a message sent while
  not logged in can be redacted only by a channel or IRC operator (a nick is
  no proof of being the same person).

``[history] redact_window`` (seconds, 0: no limit) bounds how long a sender may
redact its own message; channel and IRC operators have no window. Only
PRIVMSG, NOTICE and TAGMSG can be redacted. The row is deleted from the store
(CHATHISTORY no longer returns it); then ``:nick!user@host REDACT <target>
<msgid> [:<reason>]`` goes to the channel's members, or the two parties of the
conversation (all their sessions), that have ``draft/message-redaction``,
the redactor included; others get nothing. The REDACT itself is not kept.

Errors are standard replies: ``FAIL REDACT INVALID_TARGET`` (no such channel,
not in it, not a nick, or no history kept), ``REDACT_FORBIDDEN``,
``REDACT_WINDOW_EXPIRED`` (with the window in seconds), ``UNKNOWN_MSGID``
(not in this target's history, or not a message), ``INTERNAL_ERROR`` (the
store failed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from relaychat.protocol.events import CHANNEL, ECHO_ALWAYS, SELF, USER
from relaychat.protocol.handlers.chathistory import REF_MAX
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.handlers.registration import valid_nick
from relaychat.protocol.history import REDACTION_CAP, Conversation, conversation, stamp_ms
from relaychat.protocol.message import valid_middle
from relaychat.protocol.ops import Op
from relaychat.protocol.storage import StoreError

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Channel, Session, User
    from relaychat.protocol.storage import Store
    from relaychat.protocol.timebase import Now

__all__ = ["REDACTABLE", "handle_redact"]

CMD = "REDACT"
REDACTABLE = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})

# outcomes of the store op
_DONE = "done"
_UNKNOWN = "UNKNOWN_MSGID"
_FORBIDDEN = "REDACT_FORBIDDEN"
_EXPIRED = "REDACT_WINDOW_EXPIRED"
_ERROR = "INTERNAL_ERROR"
_NO_TARGET = "You cannot delete messages from this target"
_TEXT = {
    _UNKNOWN: "This message does not exist or is too old",
    _FORBIDDEN: "You are not authorised to delete this message",
    _EXPIRED: "You can no longer edit this message",
    _ERROR: "The message could not be deleted, try again",
}


# REDACT <target> <msgid> [:<reason>]
def handle_redact(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    params = msg.params
    name, msgid = params[0], params[1]
    reason = params[2] if len(params) > 2 else ""
    history = core.history
    user = sess.user
    shown = safe_param(name)
    if history is None:
        core.fail(sess, CMD, "INVALID_TARGET", shown, "Messages are not kept on this server")
        return
    is_oper = "o" in user.modes
    chan: Channel | None = None
    peer: User | None = None
    key: str | None = None
    conv: Conversation | None = None
    if core.is_channel_name(name):
        chan = core.find_channel(name)
        if chan is None or (user not in chan.members and not is_oper):
            core.fail(sess, CMD, "INVALID_TARGET", shown, _NO_TARGET)
            return
        may_any = is_oper or chan.is_op(user)
        key = chan.folded
        shown = chan.name
    else:
        if not valid_nick(core, name):
            core.fail(sess, CMD, "INVALID_TARGET", shown, _NO_TARGET)
            return
        may_any = False
        conv = conversation(core, user, name)
        peer = conv.peer
        shown = conv.shown
    if not msgid or len(msgid) > REF_MAX or not valid_middle(msgid):
        core.fail(sess, CMD, _UNKNOWN, shown, safe_param(msgid), "This message does not exist")
        return
    account = user.account
    if not may_any and account is None:  # nothing to prove the sender is this user
        core.fail(sess, CMD, _FORBIDDEN, shown, msgid, _TEXT[_FORBIDDEN])
        return
    mine = core.fold(account) if account is not None else None
    fold = core.fold
    window = history.config.redact_window
    oldest = stamp_ms(now.wall - window) if window > 0 and not may_any else None
    store = core.store
    assert store is not None  # history is kept: there is a store

    def run() -> str:
        try:
            target = key if conv is None else conv.target(store)
            if target is None:
                return _UNKNOWN
            return _redact(store, target, msgid, may_any, mine, oldest, fold)
        except StoreError:
            return _ERROR

    def then(outcome: str) -> None:
        if outcome == _DONE:
            _relay(core, sess, chan, peer, shown, msgid, reason)
        elif outcome == _EXPIRED:
            core.fail(sess, CMD, outcome, shown, msgid, f"{window:g}", _TEXT[outcome])
        else:
            core.fail(sess, CMD, outcome, shown, msgid, _TEXT[outcome])

    core.submit(Op(run, then, sess, pool="store"))


def _redact(
    store: Store,
    target: str,
    msgid: str,
    may_any: bool,
    mine: str | None,
    oldest: int | None,
    fold: Callable[[str], str],
) -> str:
    """On a worker thread: find the row, check the rights, delete it."""
    found = store.history_locate(target, msgid)
    if found is None:
        return _UNKNOWN
    seq, when = found
    rows = store.history_window(target, ("seq", seq, True), ("seq", seq, True), 1, False, True)
    if not rows or _command(rows[0].line) not in REDACTABLE:
        return _UNKNOWN
    row = rows[0]
    if not may_any:
        if mine is None or row.account is None or fold(row.account) != mine:
            return _FORBIDDEN
        if oldest is not None and when < oldest:
            return _EXPIRED
    return _DONE if store.delete_history(target, msgid) else _UNKNOWN


def _command(line: str) -> str:
    """The command of a stored line (``:source COMMAND ...``)."""
    parts = line.split(" ", 2)
    return parts[1] if len(parts) > 1 and line.startswith(":") else parts[0]


def _relay(
    core: ServerCore,
    sess: Session,
    chan: Channel | None,
    peer: User | None,
    shown: str,
    msgid: str,
    reason: str,
) -> None:
    """The REDACT to everyone who saw the message and has the capability."""
    user = sess.user
    now = core.now
    params = [shown, msgid, reason] if reason else [shown, msgid]
    kw = {"cap": REDACTION_CAP, "origin": sess, "echo": ECHO_ALWAYS, "trailing": bool(reason)}
    if chan is not None:
        ev = core.event(user, CMD, params, now, CHANNEL, channel=chan, **kw)
    elif (
        peer is not None
        and peer is not user
        and peer.registered
        and core.find_user(peer.name) is peer
    ):
        ev = core.event(user, CMD, params, now, USER, target=peer, **kw)
    else:  # a note to oneself, or the other party is gone: the redactor's own sessions
        ev = core.event(user, CMD, params, now, SELF, **kw)
    core.emit(ev)
