"""Persistent history: every relayed message written to the store, and relayed
only once it is committed.

Theory of operation
-------------------
* **Recording.** :class:`History` is an event consumer (``core.add_consumer``).
  A PRIVMSG or NOTICE to a channel or a user, and (for ``draft/event-playback``)
  a TAGMSG, JOIN, PART, KICK, QUIT, NICK, TOPIC or MODE in a channel, becomes a
  :class:`~relaychat.protocol.storage.HistoryRow` under its target's key, with
  the next ``seq`` of that target (numbered here, so rows of equal time keep the
  order in which they were relayed). A QUIT or NICK is kept in each channel of
  the user. Channel keys are folded channel names; a private conversation's key
  names both parties (:func:`conversation_key`).
* **Relayed after the commit.** The output of a turn that recorded rows is held
  (``gate``) until a store operation has committed them; output of later turns
  waits behind it, so every connection still gets its bytes in order. Up to
  :data:`COMMITS_IN_FLIGHT` commits are handed to the store at once (its writer
  groups what is queued into one transaction); output is released in commit
  order whatever order they finish in. Rows recorded while all are busy wait and
  go in the next one, so under load one commit carries the rows of many turns.
  A client therefore never receives a message that a ``kill -9``
  could take out of CHATHISTORY. If the store fails, the output is released all
  the same (the chat goes on) and the failure is logged loudly; held output over
  :data:`HELD_MAX` bytes (a stalled disk) is released too.
* **Retention.** A server timer prunes rows older than ``max_age`` days and all
  but the last ``max_lines`` of each target; channels matching
  ``exclude_channels`` are never recorded.

Private conversations: a party is ``a:<account>`` when logged in, else
``n:<nick>`` (both folded). A querier who is not logged in sees only rows from
after it connected, so a nick's next owner cannot read its predecessor's
messages.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from relaychat.protocol.events import CHANNEL, PEERS, USER, Event
from relaychat.protocol.masks import match_mask
from relaychat.protocol.message import escape_tag_value
from relaychat.protocol.ops import Op
from relaychat.protocol.state import CAP_ACCOUNT_TAG, CAP_MESSAGE_TAGS, CAP_SERVER_TIME
from relaychat.protocol.storage import HistoryRow, StoreError
from relaychat.protocol.timebase import server_time

if TYPE_CHECKING:
    from relaychat.config import HistoryConfig
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, Session, User
    from relaychat.protocol.storage import Store

__all__ = [
    "CHATHISTORY_CAP",
    "EVENT_PLAYBACK_CAP",
    "HELD_MAX",
    "History",
    "READ_MARKER_CAP",
    "REDACTION_CAP",
    "Conversation",
    "conversation",
    "conversation_key",
    "party",
    "replay_missed",
    "replay_on_join",
    "row_bytes",
]

log = logging.getLogger("relaychat.history")

CHATHISTORY_CAP = "draft/chathistory"
EVENT_PLAYBACK_CAP = "draft/event-playback"
READ_MARKER_CAP = "draft/read-marker"  # relaychat.protocol.readmarkers
REDACTION_CAP = "draft/message-redaction"  # relaychat.protocol.handlers.redaction

# command -> is it an event (sent only to event-playback clients)?
RECORDED: dict[str, bool] = {
    "PRIVMSG": False,
    "NOTICE": False,
    "TAGMSG": True,
    "JOIN": True,
    "PART": True,
    "KICK": True,
    "QUIT": True,
    "NICK": True,
    "TOPIC": True,
    "MODE": True,
}
PRIVATE = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})

COMMITS_IN_FLIGHT = 4  # commits handed to the store at once (it groups them) ...
PARALLEL_COMMIT_ROWS = 64  # ... beyond the first, each once this many rows wait
# held output past PAUSE_AT bytes pauses clients' input (it queues, bounded by
# recvq) until commits bring it under RESUME_AT: a flood faster than the disk is
# slowed down, never relayed uncommitted
PAUSE_AT = 8 << 20
RESUME_AT = 2 << 20
HELD_MAX = 64 << 20  # bytes of output held for a commit before it is released anyway

Out = list[tuple[Any, bytes, bool]]


def party(core: ServerCore, user: User) -> str:
    """One side of a private conversation: its account if logged in, else its nick."""
    if user.account is not None:
        return "a:" + core.fold(user.account)
    return "n:" + (user.nick_folded or "")


class Conversation(NamedTuple):
    """A user's private conversation with the nick ``shown``, as a command names
    it: ``key`` when the peer is online (its party is known), else ``lookup``
    ((owner, folded nick)) for :meth:`target` to find in the store."""

    key: str | None
    lookup: tuple[str, str] | None
    shown: str
    peer: User | None

    def target(self, store: Store) -> str | None:
        """The conversation's history key (on a worker thread), or None: none kept."""
        if self.key is not None:
            return self.key
        assert self.lookup is not None
        return store.history_conversation(*self.lookup)


def conversation(core: ServerCore, user: User, nick: str) -> Conversation:
    """``user``'s conversation with ``nick`` (a valid nick, online or not)."""
    me = party(core, user)
    peer = core.find_user(nick)
    if peer is not None:
        return Conversation(conversation_key(me, party(core, peer)), None, peer.name, peer)
    return Conversation(None, (me, core.fold(nick)), nick, None)


def conversation_key(a: str, b: str) -> str:
    """The history key of the conversation between parties ``a`` and ``b``."""
    return f"{a} {b}" if a <= b else f"{b} {a}"


def stamp_ms(wall: float) -> int:
    """Wall time in whole milliseconds, as server-time shows it."""
    return round(wall * 1_000_000) // 1000


def row_bytes(row: HistoryRow, sess: Session) -> bytes:
    """A stored row as ``sess`` would have received it (tags per its capabilities)."""
    variant = sess.variant
    tags: list[str] = []
    if variant & CAP_SERVER_TIME:
        tags.append("time=" + server_time(row.time / 1000))
    if variant & CAP_MESSAGE_TAGS:
        tags.append("msgid=" + row.msgid)
        if row.bot:
            tags.append("bot")
    if variant & CAP_ACCOUNT_TAG and row.account is not None:
        tags.append("account=" + escape_tag_value(row.account))
    if variant & CAP_MESSAGE_TAGS and row.tags:
        tags.append(row.tags)
    line = "@" + ";".join(tags) + " " + row.line if tags else row.line
    return (line + "\r\n").encode("utf-8", "replace")


def _size(out: Out) -> int:
    return sum(len(data) for _, data, _ in out)


class _Commit:
    """One commit handed to the store, and the output that waits for it."""

    __slots__ = ("done", "out")

    def __init__(self, out: Out) -> None:
        self.done = False
        self.out = out


class History:
    def __init__(self, core: ServerCore, store: Store, config: HistoryConfig) -> None:
        self.core = core
        self.store = store
        self.config = config
        self.heads: dict[str, int] = store.history_heads()  # target -> last seq
        self._excluded: dict[str, bool] = {}  # folded channel -> not recorded
        self._peers: dict[tuple[str, str], str] = {}  # (party, conversation) -> name written
        self.rows: list[HistoryRow] = []  # recorded, not yet handed to a commit
        self.inflight: deque[_Commit] = deque()  # commits running, oldest first
        self.next_out: Out = []  # output held for rows that wait for a free commit
        self.held_bytes = 0
        self.ready: Out = []  # released, for the next data_to_send
        self.stopped = False
        self._wall = -1.0  # the last event time converted to milliseconds ...
        self._ms = 0  # ... and what it became
        self.rows_committed = 0  # for STATS and the tests
        self.commits = 0

    def configure(self, config: HistoryConfig) -> None:
        self.config = config
        self._excluded.clear()
        if not config.relay_after_commit:
            self._release_all()  # nothing waits for a commit any more

    # ------------------------------------------------------------ recording
    def record(self, ev: Event) -> None:
        """The event consumer: turn a relayed event into rows."""
        event = RECORDED.get(ev.command)
        if event is None:
            return
        if ev.cap is not None and ev.command != "TAGMSG":
            return  # a rendering for some clients (extended-join's JOIN): the plain one is kept
        if "chghost" in ev.nocap:
            return  # chghost's QUIT/JOIN fallback: nobody left or joined
        audience = ev.audience
        if audience == CHANNEL:
            chan = ev.channel
            if chan is None or ev.status or self.excluded(chan):
                return
            self._add(chan.folded, ev, event, ())
        elif audience == USER:
            actor, target = ev.actor, ev.target
            if ev.command not in PRIVATE or actor is None or target is None:
                return
            if not self.config.private:
                return
            a, b = party(self.core, actor), party(self.core, target)
            key = conversation_key(a, b)
            # a conversation's parties are written when new or renamed, not per message
            seen = self._peers
            peers: tuple[tuple[str, str, str], ...] = ()
            if seen.get((a, key)) != target.name:
                seen[(a, key)] = target.name
                peers += ((a, target.name, target.nick_folded or ""),)
            if b != a and seen.get((b, key)) != actor.name:
                seen[(b, key)] = actor.name
                peers += ((b, actor.name, actor.nick_folded or ""),)
            if len(seen) > 100_000:
                seen.clear()
            self._add(key, ev, event, peers)
        elif audience == PEERS and ev.command in ("QUIT", "NICK"):
            actor = ev.actor
            if actor is None:
                return
            for chan in actor.channels.values():
                if not self.excluded(chan):
                    self._add(chan.folded, ev, True, ())

    def excluded(self, chan: Channel) -> bool:
        ex = self._excluded.get(chan.folded)
        if ex is None:
            masks = self.config.exclude_channels
            fold = self.core.fold
            ex = any(match_mask(fold(m), chan.folded) for m in masks)
            if len(self._excluded) > 100_000:
                self._excluded.clear()
            self._excluded[chan.folded] = ex
        return ex

    def _add(
        self, key: str, ev: Event, event: bool, peers: tuple[tuple[str, str, str], ...]
    ) -> None:
        heads = self.heads
        seq = heads[key] = heads.get(key, 0) + 1
        wall = ev.time
        if wall != self._wall:  # the events of a turn share their time: converted once
            self._wall = wall
            self._ms = stamp_ms(wall)
        actor = ev.actor
        tags = ev.tags
        self.rows.append(
            HistoryRow(
                key,
                seq,
                ev.msgid,
                self._ms,
                event,
                ev.line,
                actor.account if actor is not None else None,
                actor is not None and "B" in actor.modes,
                ";".join(k if v == "" else f"{k}={escape_tag_value(v)}" for k, v in tags.items())
                if tags
                else "",
                peers,
            )
        )

    # --------------------------------------------------------------- gating
    def gate(self, out: Out) -> Out:
        """The turn's output: what may go now (released earlier output first);
        the rest is held until the rows recorded before it are committed."""
        if self.stopped:
            return self.take_ready() + out
        inflight = self.inflight
        if not self.config.relay_after_commit:  # written behind the relay: faster, less safe
            if self.rows and self._may_start():
                self._start([])
            return self.take_ready() + out if self.ready else out
        if self.rows:
            if self._may_start():
                self.held_bytes += _size(out)
                if self.held_bytes > PAUSE_AT:
                    self.core.pause_input()
                self._start(self.next_out + out)
                self.next_out = []
            else:  # waits for a free commit, with the rows it follows
                self._hold(self.next_out, out)
        elif out:
            if self.next_out:
                self._hold(self.next_out, out)
            elif inflight:
                self._hold(inflight[-1].out, out)  # behind every commit before it
            else:
                return self.take_ready() + out if self.ready else out
        return self.take_ready()

    def _may_start(self) -> bool:
        """Whether the rows waiting may go in a commit of their own now: when none
        runs, or when enough wait to be worth a second one (small commits in
        parallel would cost an operation each for a row or two)."""
        n = len(self.inflight)
        return n == 0 or (n < COMMITS_IN_FLIGHT and len(self.rows) >= PARALLEL_COMMIT_ROWS)

    def _hold(self, into: Out, out: Out) -> None:
        into += out
        self.held_bytes += _size(out)
        if self.held_bytes > PAUSE_AT:
            self.core.pause_input()
        if self.held_bytes > HELD_MAX:
            log.error(
                "history: %d bytes of output waited for commits; released unwritten",
                self.held_bytes,
            )
            self._release_all()

    def take_ready(self) -> Out:
        ready = self.ready
        self.ready = []
        return ready

    def _start(self, out: Out) -> None:
        rows = self.rows
        self.rows = []
        commit = _Commit(out)
        self.inflight.append(commit)
        store = self.store

        def run() -> BaseException | None:
            try:
                store.append_history(rows)
            except Exception as exc:  # handed to then: the output goes all the same
                return exc
            return None

        def then(error: BaseException | None) -> None:
            self._committed(commit, len(rows), error)

        self.core.submit(Op(run, then, None, pool="history"))

    def _committed(self, commit: _Commit, count: int, error: BaseException | None) -> None:
        if error is not None:
            log.error("history: %d rows not written, relayed anyway: %s", count, error)
        else:
            self.rows_committed += count
            self.commits += 1
        commit.done = True
        inflight = self.inflight
        while inflight and inflight[0].done:  # in order: a commit's output waits for those before
            out = inflight.popleft().out
            self.held_bytes -= _size(out)
            self.ready += out
        if self.stopped:
            return
        if self.rows and self._may_start():
            nxt, self.next_out = self.next_out, []
            self._start(nxt)
        elif self.next_out and not self.rows:
            if inflight:
                inflight[-1].out += self.next_out
            else:
                self.ready += self.next_out
                self.held_bytes -= _size(self.next_out)
            self.next_out = []
        if self.held_bytes < RESUME_AT:
            self.core.resume_input()  # (if paused) queued lines run: their rows go next

    def _release_all(self) -> None:
        for commit in self.inflight:
            self.ready += commit.out
            commit.out = []
        self.ready += self.next_out
        self.next_out = []
        self.held_bytes = 0
        self.core.resume_input()

    def stop(self) -> None:
        """The server is stopping: output goes at once (rows still queued are
        committed by the store's close, before the process exits)."""
        self.stopped = True
        self._release_all()
        if self.rows:
            rows, self.rows = self.rows, []
            store = self.store
            self.core.submit(Op(lambda: store.append_history(rows), None, None, pool="history"))

    # ------------------------------------------------------------ retention
    def prune_op(self, wall: float, then: Callable[[int], None] | None = None) -> Op:
        cfg = self.config
        before = stamp_ms(wall - cfg.max_age * 86400.0) if cfg.max_age > 0 else None
        store = self.store
        max_lines = cfg.max_lines
        return Op(lambda: store.prune_history(before, max_lines), then, None, pool="prune")


def replay_on_join(core: ServerCore, sess: Session, chan: Channel, lines: int) -> None:
    """``[history] autoreplay_lines``: the channel's last messages to a client that
    joined without ``draft/chathistory`` (in a ``chathistory`` batch if it has
    ``batch``; with their original times if it has ``server-time``)."""
    key = chan.folded
    name = chan.name

    def run() -> list[HistoryRow]:
        store = core.store
        assert store is not None
        try:
            return store.history_window(key, None, None, lines, True, False)
        except StoreError:
            return []  # a replay is a courtesy: the join stands without it

    def then(rows: list[HistoryRow]) -> None:
        if rows:
            core.output.send_batch(sess, "chathistory", [name], [row_bytes(r, sess) for r in rows])

    core.submit(Op(run, then, sess, pool="history-read"))


def replay_missed(core: ServerCore, sess: Session, user: User, since: float) -> None:
    """An always-on user's connection came back after ``since`` (wall time): a
    client without ``draft/chathistory`` gets what was said meanwhile in each of
    its channels and private conversations (the latest ``chathistory_limit`` of
    each), one ``chathistory`` batch per target. Clients with the capability ask
    for it themselves (``CHATHISTORY AFTER <target> timestamp=...``)."""
    history = core.history
    if history is None:
        return
    after = stamp_ms(since)
    limit = history.config.chathistory_limit
    channels = [(chan.folded, chan.name) for chan in user.channels.values()]
    owner = party(core, user)

    def run() -> list[tuple[str, list[HistoryRow]]]:
        store = core.store
        assert store is not None
        try:
            targets = list(channels)
            found = store.history_targets([], owner, after, 1 << 62, 1000)
            targets += [(key, name) for key, name, _ in found]
            out = []
            for key, name in targets:
                rows = store.history_window(key, ("time", after, False), None, limit, True, False)
                if rows:
                    out.append((name, rows))
            return out
        except StoreError:
            return []  # a courtesy: the connection works without it

    def then(missed: list[tuple[str, list[HistoryRow]]]) -> None:
        for name, rows in missed:
            core.output.send_batch(sess, "chathistory", [name], [row_bytes(r, sess) for r in rows])

    core.submit(Op(run, then, sess, pool="history-read"))
