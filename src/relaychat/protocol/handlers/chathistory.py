"""CHATHISTORY (IRCv3 ``draft/chathistory``): stored messages of a channel or a
private conversation, in a ``chathistory`` batch, oldest first.

The query runs on a worker thread (an ordered op: the session's later commands
wait for it); only what the command asks for is read, at most
``[history] chathistory_limit`` rows. References: ``*`` (LATEST only),
``msgid=<id>`` and ``timestamp=<YYYY-MM-DDThh:mm:ss.sssZ>``. Without
``draft/event-playback`` only PRIVMSG and NOTICE are returned.

Errors are standard replies: ``FAIL CHATHISTORY NEED_MORE_PARAMS``,
``INVALID_PARAMS`` (a bad reference or limit), ``INVALID_TARGET`` (not a
channel the user is in, not a nick), ``UNKNOWN_COMMAND``, ``MESSAGE_ERROR`` (the
store failed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.handlers.registration import valid_nick
from relaychat.protocol.history import (
    EVENT_PLAYBACK_CAP,
    Conversation,
    History,
    conversation,
    party,
    row_bytes,
    stamp_ms,
)
from relaychat.protocol.ops import Op
from relaychat.protocol.storage import Bound, HistoryRow, StoreError
from relaychat.protocol.timebase import server_time

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.storage import Store
    from relaychat.protocol.timebase import Now

__all__ = ["handle_chathistory", "parse_reference", "query_rows"]

CMD = "CHATHISTORY"
REF_MAX = 100  # characters of a reference: a msgid or a timestamp is far shorter

# a parsed reference: ("msgid", id) or ("time", milliseconds)
Ref = tuple[str, str | int]
# subcommand -> how many references it takes
SUBCOMMANDS = {"LATEST": 1, "BEFORE": 1, "AFTER": 1, "AROUND": 1, "BETWEEN": 2}


def parse_reference(text: str, star: bool = False) -> Ref | None:
    """``msgid=...`` / ``timestamp=...`` (and ``*`` where ``star``); None if invalid."""
    if len(text) > REF_MAX:
        return None
    if star and text == "*":
        return ("*", "")
    kind, _, value = text.partition("=")
    if not value:
        return None
    if kind == "msgid":
        return ("msgid", value)
    if kind == "timestamp":
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        if when.tzinfo is None or not value.endswith("Z"):
            return None
        return ("time", stamp_ms(when.timestamp()))
    return None


def _limit(text: str, most: int) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:  # not '²', not '٣'
        return None
    return min(int(text), most) or most  # 0: as many as the server gives


def handle_chathistory(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    history = core.history
    params = msg.params
    if history is None:
        core.fail(sess, CMD, "MESSAGE_ERROR", "*", "History is not kept on this server")
        return
    if not params:
        core.fail(sess, CMD, "NEED_MORE_PARAMS", "*", "Missing parameters")
        return
    sub = params[0].upper()
    if sub == "TARGETS":
        _targets(core, sess, history, params, now)
        return
    nrefs = SUBCOMMANDS.get(sub)
    if nrefs is None:
        core.fail(sess, CMD, "UNKNOWN_COMMAND", safe_param(params[0]), "Unknown subcommand")
        return
    if len(params) < 3 + nrefs:
        core.fail(sess, CMD, "NEED_MORE_PARAMS", sub, "Missing parameters")
        return
    name = params[1]
    refs = [parse_reference(p, star=sub == "LATEST") for p in params[2 : 2 + nrefs]]
    limit = _limit(params[2 + nrefs], history.config.chathistory_limit)
    if any(r is None for r in refs) or limit is None or (sub != "LATEST" and refs[0] == ("*", "")):
        core.fail(sess, CMD, "INVALID_PARAMS", sub, "Invalid reference or limit")
        return
    user = sess.user
    events = EVENT_PLAYBACK_CAP in sess.caps
    since: int | None = None
    channel_key: str | None = None
    conv: Conversation | None = None
    if core.is_channel_name(name):
        chan = core.find_channel(name)
        if chan is None or user not in chan.members:
            core.fail(sess, CMD, "INVALID_TARGET", sub, safe_param(name), "No such channel")
            return
        channel_key = chan.folded
        shown = chan.name
    else:
        if not valid_nick(core, name):
            core.fail(sess, CMD, "INVALID_TARGET", sub, safe_param(name), "No such nick")
            return
        if user.account is None:
            since = stamp_ms(user.signon)  # a nick's earlier owner's messages are not ours
        conv = conversation(core, user, name)
        shown = conv.shown
    refs_ok: list[Ref] = [r for r in refs if r is not None]

    def run() -> list[HistoryRow] | None:
        store = core.store
        assert store is not None
        try:
            target = channel_key if conv is None else conv.target(store)
            if target is None:
                return []
            return query_rows(store, target, sub, refs_ok, limit, events, since)
        except StoreError:
            return None

    def then(rows: list[HistoryRow] | None) -> None:
        if rows is None:
            core.fail(sess, CMD, "MESSAGE_ERROR", sub, shown, "History is unavailable, try again")
            return
        lines = [row_bytes(r, sess) for r in rows]
        core.output.send_batch(sess, "chathistory", [shown], lines)

    core.submit(Op(run, then, sess, pool="history-read"))


def query_rows(
    store: Store,
    target: str,
    sub: str,
    refs: list[Ref],
    limit: int,
    events: bool,
    since: int | None,
) -> list[HistoryRow]:
    """The rows a subcommand selects (on a worker thread): the spec's windows,
    as one or two range queries on the target's sequence."""
    bounds: list[Bound | None] = []
    for kind, value in refs:
        if kind == "*":
            bounds.append(None)
        elif kind == "msgid":
            found = store.history_locate(target, str(value))
            if found is None:
                return []  # an unknown msgid: nothing around it
            bounds.append(("seq", found[0], False))
        else:
            bounds.append(("time", int(value), False))
    window: Callable[..., list[HistoryRow]] = store.history_window
    ref = bounds[0]
    if sub == "LATEST":
        return window(target, ref, None, limit, True, events, since)
    assert ref is not None
    if sub == "BEFORE":
        return window(target, None, ref, limit, True, events, since)
    if sub == "AFTER":
        return window(target, ref, None, limit, False, events, since)
    if sub == "AROUND":
        before = window(target, None, ref, limit // 2, True, events, since)
        at_or_after = (ref[0], ref[1], True)
        return before + window(target, at_or_after, None, limit - len(before), False, events, since)
    # BETWEEN: from the first reference towards the second, exclusive both ends
    other = bounds[1]
    assert other is not None
    if _order(store, target, ref) <= _order(store, target, other):
        return window(target, ref, other, limit, False, events, since)
    return window(target, other, ref, limit, True, events, since)


def _order(store: Store, target: str, bound: Bound) -> tuple[int, int]:
    """A bound's place for comparing two: (time, seq) of a msgid, (time, 0) else."""
    kind, value, _ = bound
    if kind == "time":
        return (value, 0)
    rows = store.history_window(target, ("seq", value, True), ("seq", value, True), 1, False, True)
    return (rows[0].time, value) if rows else (0, value)


def _targets(
    core: ServerCore, sess: Session, history: History, params: list[str], now: Now
) -> None:
    if len(params) < 4:
        core.fail(sess, CMD, "NEED_MORE_PARAMS", "TARGETS", "Missing parameters")
        return
    a = parse_reference(params[1])
    b = parse_reference(params[2])
    limit = _limit(params[3], history.config.chathistory_limit)
    if a is None or b is None or a[0] != "time" or b[0] != "time" or limit is None:
        core.fail(sess, CMD, "INVALID_PARAMS", "TARGETS", "Invalid timestamp or limit")
        return
    lo, hi = sorted((int(a[1]), int(b[1])))
    user = sess.user
    channels = {chan.folded: chan.name for chan in user.channels.values()}
    owner = party(core, user)
    since = stamp_ms(user.signon) if user.account is None else None
    if since is not None:
        lo = max(lo, since - 1)

    def run() -> list[tuple[str, str, int]] | None:
        store = core.store
        assert store is not None
        try:
            return store.history_targets(list(channels), owner, lo, hi, limit)
        except StoreError:
            return None

    def then(found: list[tuple[str, str, int]] | None) -> None:
        if found is None:
            core.fail(sess, CMD, "MESSAGE_ERROR", "TARGETS", "History is unavailable, try again")
            return
        prefix = core.output.numeric_prefix
        lines = []
        for key, name, when in found:
            shown = channels.get(key, name)
            text = server_time(when / 1000)
            lines.append(f"{prefix}CHATHISTORY TARGETS {shown} timestamp={text}\r\n".encode())
        core.output.send_batch(sess, "draft/chathistory-targets", [], lines)

    core.submit(Op(run, then, sess, pool="history-read"))
