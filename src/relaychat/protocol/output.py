"""Output: replies, local delivery of events, the per-command response buffer, SendQ.

Theory of operation
-------------------
Every byte the core sends goes through :class:`Output`. Each session has an
``out`` list (bytes, or slices of a channel batch); a session with output is in
the *dirty* list; ``data_to_send()`` joins each dirty session's list into one
buffer: one write per connection per turn.

*Local delivery* is the consumer of :class:`~relaychat.protocol.events.Event` that
turns an event into bytes for the local sessions in its audience (``cap``: only
sessions with that capability; ``nocap``: none with any of those). An event is
serialised once per capability variant. Unfiltered channel events go through
the channel's :class:`ChannelBatch` for this turn: the first message of a turn
attaches an open :class:`Slice` of the batch to each member's queue (one pass
over the members); later messages are appended to the batch alone, in O(1),
and reach every attached member through its slice. Whatever else is queued to a
member closes its slice first, so its output keeps its order; the next channel
message attaches a new slice. At ``data_to_send`` each slice becomes bytes,
joined once per (range, variant) and shared by every member with that range.

*The response buffer*: while a command runs, everything for the session that
sent it (numerics, its own JOIN, an echo) is collected in one list and moved to
its queue when the command ends, so a later layer (labeled-response, batch)
can wrap one command's replies as a unit.

*SendQ* is checked while output is built: ``queued`` (bytes waiting in the core)
plus ``backlog`` (bytes the transport holds, as it last reported) past
``sendq`` calls ``overflow(session)``, which drops the client at once; nothing
more is queued for a closing session, so a reply that would be huge stops
growing as soon as it passes the limit.

Only the core's thread calls this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from relaychat.protocol.events import (
    CHANNEL,
    ECHO_ALWAYS,
    ECHO_CAP,
    OPERWALL,
    PEERS,
    SELF,
    USER,
    Event,
)
from relaychat.protocol.message import escape_tag_value
from relaychat.protocol.state import VARIANTS, Channel, Session, User

__all__ = ["ChannelBatch", "Output", "Slice", "common_peers"]


class ChannelBatch:
    """The channel messages of one turn, shared by every member's queue."""

    __slots__ = ("items", "attached", "detached", "_joined")

    def __init__(self) -> None:
        self.items: list[Event] = []
        self.attached: dict[Session, Slice] = {}
        self.detached: set[Session] = set()
        self._joined: dict[tuple[int, int, int], bytes] = {}

    def join(self, start: int, end: int, variant: int) -> bytes:
        key = (start, end, variant)
        data = self._joined.get(key)
        if data is None:
            data = b"".join([e.for_variant(variant) for e in self.items[start:end]])
            self._joined[key] = data
        return data


class Slice:
    """Messages ``start:end`` of a batch for one session (``end`` None: still open)."""

    __slots__ = ("batch", "start", "end")

    def __init__(self, batch: ChannelBatch, start: int) -> None:
        self.batch = batch
        self.start = start
        self.end: int | None = None


def common_peers(user: User, include_self: bool = False) -> set[User]:
    """Every user who shares a channel with ``user``."""
    peers: set[User] = set()
    for chan in user.channels.values():
        peers.update(chan.members)
    if include_self:
        peers.add(user)
    else:
        peers.discard(user)
    return peers


class Output:
    def __init__(
        self,
        server_name: str,
        sendq: int,
        overflow: Callable[[Session], None],
        opers_wall: Callable[[], Iterable[User]],
    ) -> None:
        self.numeric_prefix = f":{server_name} "
        self.sendq = sendq
        self._overflow = overflow
        self._wall_users = opers_wall
        self._dirty: list[Session] = []
        self._batched: list[Channel] = []
        self.responding: Session | None = None
        self._response: list[bytes] = []
        self.label: str | None = None  # the responding command's label (labeled-response)
        self._ack = f" :{server_name} ACK\r\n".encode()
        self._batches = 0

    def configure(self, server_name: str, sendq: int) -> None:
        self.numeric_prefix = f":{server_name} "
        self._ack = f" :{server_name} ACK\r\n".encode()
        self.sendq = sendq

    # ------------------------------------------------------------ raw output
    def send_bytes(self, sess: Session, data: bytes) -> None:
        if sess.closing is not None:
            return
        if sess is self.responding:
            self._response.append(data)
        else:
            self._queue(sess, data)
        sess.queued += len(data)
        if sess.queued + sess.backlog > self.sendq:
            self._overflow(sess)

    def _queue(self, sess: Session, item: bytes | Slice) -> None:
        """Append to ``sess``'s queue: the first item puts it in the dirty list; an
        open slice before it is closed (output keeps its order)."""
        q = sess.out
        if not q:
            self._dirty.append(sess)
            sess.out = [item]  # created on demand: an idle session holds no list
            return
        if q[-1].__class__ is Slice:
            _close_slice(sess, q[-1])
        q.append(item)

    def send_line(self, sess: Session, line: str) -> None:
        self.send_bytes(sess, (line + "\r\n").encode("utf-8", "replace"))

    def reply(self, sess: Session, numeric: str, *params: str) -> None:
        """``:server NUMERIC nick params...`` (the last param gets a colon as needed).

        Middle parameters must be valid words (handlers pass names they checked,
        or ``safe_param`` of client input); the last may be any text."""
        nick = sess.user.nick or "*"
        if params:
            *middle, last = params
            if not last or last[0] == ":" or " " in last:
                last = ":" + last
            line = " ".join((self.numeric_prefix + numeric, nick, *middle, last))
        else:
            line = f"{self.numeric_prefix}{numeric} {nick}"
        self.send_bytes(sess, (line + "\r\n").encode("utf-8", "replace"))

    def discard(self, sess: Session) -> None:
        """Forget everything queued for ``sess`` (it is being dropped)."""
        if sess is self.responding:
            self._response = []
            self.label = None
        sess.held_response = None
        q = sess.out
        if q:
            if q[-1].__class__ is Slice:
                _close_slice(sess, q[-1])
            q.clear()  # stays in the dirty list if it was: an empty write is harmless
        sess.queued = 0

    # ------------------------------------------------------ response buffer
    def begin_response(self, sess: Session) -> None:
        """Collect ``sess``'s output as one response; a response suspended while
        an operation ran (see :meth:`end_response`) resumes with its label."""
        self.responding = sess
        held = sess.held_response
        if held is not None:
            sess.held_response = None
            self._response, self.label = held

    def end_response(self) -> None:
        """The command is done: queue its response, labeled when it had a label
        (labeled-response). A session still waiting for an ordered operation
        keeps its response (and label) until the operation completes."""
        sess = self.responding
        self.responding = None
        response = self._response
        label = self.label
        self.label = None
        if sess is None:
            return
        if sess.busy and sess.closing is None and (response or label is not None):
            sess.held_response = (response, label)
            self._response = []
            return
        if label is not None:
            self._response = []
            if sess.closing is None or response:
                self._queue(sess, self._labeled(label, response))
            return
        if not response:
            return
        self._response = []
        self._queue(sess, response[0] if len(response) == 1 else b"".join(response))

    def _labeled(self, label: str, response: list[bytes]) -> bytes:
        """One labeled logical message (labeled-response): ``ACK`` for no
        reply, the one reply tagged, a reply that is one batch with the label on
        its start, or else every line wrapped in a ``labeled-response`` batch
        (nested batches keep their own lines; their start and end lines get the
        outer batch's tag)."""
        tag = b"label=" + escape_tag_value(label).encode("utf-8", "replace")
        if not response:
            return b"@" + tag + self._ack

        lines = b"".join(response).split(b"\r\n")
        lines.pop()  # after the last CRLF
        if len(lines) == 1 or _one_batch(lines):
            lines[0] = _add_tag(lines[0], tag)
            return b"\r\n".join(lines) + b"\r\n"
        ref = self.batch_ref()
        prefix = self.numeric_prefix.encode()
        out = [_add_tag(prefix + b"BATCH +" + ref + b" labeled-response", tag)]
        out.extend(_in_batch(lines, b"batch=" + ref))
        out.append(prefix + b"BATCH -" + ref)
        out.append(b"")
        return b"\r\n".join(out)

    def batch_ref(self) -> bytes:
        """A batch reference tag unique on this server for its lifetime."""
        self._batches += 1
        return b"%x" % self._batches

    def send_batch(self, sess: Session, kind: str, params: list[str], lines: list[bytes]) -> None:
        """Send ``lines`` (each ending with CRLF) to ``sess`` as one batch of type
        ``kind`` when it has the ``batch`` capability, as plain lines otherwise."""
        if "batch" not in sess.caps:
            if lines:
                self.send_bytes(sess, b"".join(lines))
            return
        ref = self.batch_ref()
        head = self.numeric_prefix.encode() + b"BATCH "
        start = head + b"+" + ref + b" " + " ".join([kind, *params]).encode("utf-8", "replace")
        body = b"".join(lines).split(b"\r\n")
        body.pop()
        out = [start, *_in_batch(body, b"batch=" + ref), head + b"-" + ref, b""]
        self.send_bytes(sess, b"\r\n".join(out))

    def send_direct(self, sess: Session, data: bytes) -> None:
        """To ``sess``'s queue even while it is the one responding: a message it
        sent to itself arrives as a delivery, not as a reply to its command."""
        if sess.closing is not None:
            return
        self._queue(sess, data)
        sess.queued += len(data)
        if sess.queued + sess.backlog > self.sendq:
            self._overflow(sess)

    # -------------------------------------------------------- local delivery
    def deliver(self, ev: Event) -> None:
        """Queue an event to the local sessions in its audience."""
        audience = ev.audience
        origin = ev.origin
        skip = origin
        if origin is not None and (
            ev.echo == ECHO_ALWAYS or (ev.echo == ECHO_CAP and "echo-message" in origin.caps)
        ):
            skip = None
        cap = ev.cap
        if audience == CHANNEL:
            chan = ev.channel
            assert chan is not None
            members = chan.members
            if ev.status or cap is not None or ev.nocap:
                if ev.status:
                    want = ev.status
                    users: Iterable[User] = [
                        u for u, st in members.items() if st and (want == "v" or "o" in st)
                    ]
                else:
                    users = members
                self._relay(users, ev, skip)
            else:
                self._relay_channel(chan, ev, skip)
            if skip is None and origin is not None and origin.user not in members:
                self._relay_session(origin, ev)  # an echo to a non-member sender
        elif audience == USER:
            target = ev.target
            assert target is not None
            if origin is not None and origin.user is target:
                # a message to oneself: delivered (never labeled) and, with
                # echo-message, echoed too as the reply to the command
                self._to_self(origin, ev, skip is None)
                skip = origin
            sessions = target.sessions
            if len(sessions) == 1 and cap is None and not ev.nocap:
                sess = sessions[0]  # the usual case: one connection, no filter
                if sess is not skip and sess.closing is None:
                    self.send_bytes(sess, ev.for_variant(sess.variant))
            else:
                self._relay((target,), ev, skip)
            if skip is None and origin is not None:
                self._relay_session(origin, ev)  # the echo to a sender elsewhere
            if origin is not None and origin.user is not target and len(origin.user.sessions) > 1:
                # multiclient: the sender's other sessions see what it sent
                self._relay((origin.user,), ev, origin)
        elif audience == PEERS:
            actor = ev.actor
            assert actor is not None
            self._relay(common_peers(actor, include_self=ev.echo == ECHO_ALWAYS), ev, None)
        elif audience == SELF:
            actor = ev.actor
            assert actor is not None
            self._relay((actor,), ev, None)
        elif audience == OPERWALL:
            self._relay(self._wall_users(), ev, None)

    def _to_self(self, sess: Session, ev: Event, echo: bool) -> None:
        if (ev.cap is not None and ev.cap not in sess.caps) or _excluded(ev.nocap, sess.caps):
            return
        data = ev.for_variant(sess.variant)
        self.send_direct(sess, data)
        if echo:
            self.send_bytes(sess, data)

    def _relay_session(self, sess: Session, ev: Event) -> None:
        if (ev.cap is None or ev.cap in sess.caps) and not _excluded(ev.nocap, sess.caps):
            self.send_bytes(sess, ev.for_variant(sess.variant))

    def _relay(self, users: Iterable[User], ev: Event, skip: Session | None) -> None:
        """Serialise once per variant; append the same bytes to every session."""
        cache: list[bytes | None] = [None] * VARIANTS
        cap = ev.cap
        nocap = ev.nocap
        send = self.send_bytes
        for user in users:
            for sess in user.sessions:
                if sess is skip or sess.closing is not None:
                    continue
                if cap is not None and cap not in sess.caps:
                    continue
                if nocap and _excluded(nocap, sess.caps):
                    continue
                v = sess.variant
                data = cache[v]
                if data is None:
                    data = cache[v] = ev.for_variant(v)
                send(sess, data)

    def _relay_channel(self, chan: Channel, ev: Event, skip: Session | None) -> None:
        """Through the channel's batch for this turn: O(1) per message once the
        members are attached."""
        batch = chan.batch
        if batch is None:
            batch = chan.batch = ChannelBatch()
            self._batched.append(chan)
            batch.items.append(ev)
            detached = batch.detached
            for user in chan.members:
                for sess in user.sessions:
                    if sess is skip or sess.closing is not None:
                        detached.add(sess)
                    else:
                        self._attach(sess, batch, 0, ev)
            return
        # the sender's own copy (an echo) is a reply to its command, never in a slice
        sender = skip if skip is not None else self.responding
        if sender is not None:
            sl = batch.attached.get(sender)
            if sl is not None:
                _close_slice(sender, sl)
        index = len(batch.items)
        batch.items.append(ev)
        detached = batch.detached
        if detached:
            for sess in list(detached):
                if sess is not skip and sess.closing is None:
                    self._attach(sess, batch, index, ev)

    def _attach(self, sess: Session, batch: ChannelBatch, start: int, ev: Event) -> None:
        if sess is self.responding:
            # the commander's own copy goes into its response, as bytes
            batch.detached.add(sess)
            self.send_bytes(sess, ev.for_variant(sess.variant))
            return
        sl = Slice(batch, start)
        self._queue(sess, sl)
        batch.attached[sess] = sl
        batch.detached.discard(sess)

    # --------------------------------------------------- membership changes
    def member_added(self, chan: Channel, user: User) -> None:
        batch = chan.batch
        if batch is not None:
            for sess in user.sessions:
                batch.detached.add(sess)  # gets this turn's later messages only

    def member_removed(self, chan: Channel, user: User) -> None:
        batch = chan.batch
        if batch is not None:
            for sess in user.sessions:
                sl = batch.attached.get(sess)
                if sl is not None:
                    _close_slice(sess, sl)
                batch.detached.discard(sess)

    # ----------------------------------------------------------- the turn
    def data_to_send(self) -> list[tuple[Any, bytes, bool]]:
        """Each connection with output: (handle, all its pending bytes, close after)."""
        dirty = self._dirty
        if not dirty:
            return []
        self._dirty = []
        out: list[tuple[Any, bytes, bool]] = []
        for sess in dirty:
            q = sess.out
            if not q:
                sess.out = None
                if sess.closing is not None:
                    out.append((sess.handle, b"", True))
                continue
            # STATS l counts messages: a slice's by its length (never by scanning
            # the shared bytes), other items by their line ends (they are short)
            if len(q) == 1:
                item = q[0]
                if item.__class__ is Slice:
                    data = _resolve(item, sess.variant)
                    sess.sent_lines += _length(item)
                else:
                    data = item
                    sess.sent_lines += item.count(b"\n")
            else:
                v = sess.variant
                parts = []
                lines = 0
                for i in q:
                    if i.__class__ is Slice:
                        parts.append(_resolve(i, v))
                        lines += _length(i)
                    else:
                        parts.append(i)
                        lines += i.count(b"\n")
                data = b"".join(parts)
                sess.sent_lines += lines
            sess.out = None
            sess.queued = 0
            sess.sent_bytes += len(data)
            out.append((sess.handle, data, sess.closing is not None))
        for chan in self._batched:
            chan.batch = None
        self._batched = []
        return out

    def final_line(self, sess: Session, line: str) -> None:
        """The last line to a closing session (its ERROR): past the closing and
        SendQ checks, and it makes sure ``data_to_send`` visits the session."""
        data = (line + "\r\n").encode("utf-8", "replace")
        if sess is self.responding:
            self._response.append(data)
            if not sess.out:
                self._dirty.append(sess)
                sess.out = [b""]
        else:
            self._queue(sess, data)


def _excluded(nocap: tuple[str, ...], caps: frozenset[str]) -> bool:
    """Whether a session with ``caps`` is left out by an event's ``nocap``."""
    return any(c in caps for c in nocap)


def _close_slice(sess: Session, sl: Slice) -> None:
    """End an open slice at the batch's current length (more output follows it)."""
    if sl.end is None:
        batch = sl.batch
        sl.end = len(batch.items)
        batch.attached.pop(sess, None)
        batch.detached.add(sess)


def _length(sl: Slice) -> int:
    """How many messages ``sl`` holds."""
    return (len(sl.batch.items) if sl.end is None else sl.end) - sl.start


def _resolve(sl: Slice, variant: int) -> bytes:
    batch = sl.batch
    end = len(batch.items) if sl.end is None else sl.end
    return batch.join(sl.start, end, variant)


def _add_tag(line: bytes, tag: bytes) -> bytes:
    """``line`` with one more tag (``tag`` is ``key=value``, already escaped)."""
    if line[:1] == b"@":
        return b"@" + tag + b";" + line[1:]
    return b"@" + tag + b" " + line


def _batch_sign(line: bytes) -> int:
    """+1 for a ``BATCH +ref`` line, -1 for ``BATCH -ref``, 0 for any other."""
    rest = line
    if rest[:1] == b"@":
        rest = rest[rest.find(b" ") + 1 :]
    if rest[:1] == b":":
        rest = rest[rest.find(b" ") + 1 :]
    if rest[:6] != b"BATCH " or len(rest) < 7:
        return 0
    return 1 if rest[6:7] == b"+" else -1 if rest[6:7] == b"-" else 0


def _in_batch(lines: list[bytes], tag: bytes) -> list[bytes]:
    """``lines`` as the content of a batch: each top-level line, and the start
    and end lines of a nested batch, get ``tag``; lines inside a nested batch
    keep theirs."""
    out = []
    depth = 0
    for line in lines:
        sign = _batch_sign(line)
        if depth == 0 or (sign < 0 and depth == 1):
            out.append(_add_tag(line, tag))
        else:
            out.append(line)
        depth = max(depth + sign, 0)
    return out


def _one_batch(lines: list[bytes]) -> bool:
    """Whether ``lines`` are exactly one batch, from its start to its end."""
    depth = 0
    last = len(lines) - 1
    for i, line in enumerate(lines):
        depth += _batch_sign(line)
        if depth <= 0:
            return i == last and i > 0
    return False
