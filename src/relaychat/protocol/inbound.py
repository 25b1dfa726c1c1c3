"""Input: lines in, flood control, decoding, then the command table.

Theory of operation
-------------------
The transport frames its byte stream (or takes whole messages from WebSocket)
and hands the core *lines*: ``bytes`` without CR/LF, or :class:`TooLong` for a
line that broke a length limit. Each line costs one flood token, whatever it
is: a command, an empty line, an over-long one, garbage. Tokens refill at
``flood_rate`` per second up to ``flood_burst``; a line that finds a token runs
at once, so a burst of up to ``flood_burst`` lines is accepted however the
network packs it. A line that finds none waits in the session's input queue,
and only waiting lines count toward ``recvq``, with the text of a multiline batch
the client has open: past it, ``Excess Flood``.
Costly queries (WHO, LIST, NAMES over many channels) charge extra tokens for the
work they cause (``charge``), which delays the client's later lines.

While an ordered operation runs for a session (an OPER's password check) its
later lines wait in the same queue, so commands keep their order.
Operators are exempt from flood control (not from ``recvq``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.framing import TooLong
from relaychat.protocol.message import MessageParseError, parse_message

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

__all__ = ["Inbound", "Line"]

Line = bytes | TooLong
_QUEUED_COST = 64  # bytes charged to recvq for a queued line, on top of its length


class Inbound:
    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.configure()

    def configure(self) -> None:
        lim = self.core.limits
        self.rate = lim.flood_rate
        self.burst = float(lim.flood_burst)
        self.flood = self.rate > 0
        self.recvq = lim.recvq

    def receive_lines(self, sess: Session, lines: list[Line], now: Now) -> None:
        if _closed(sess) or not lines:
            return
        sess.last_active = now.mono
        if sess.inq is not None or sess.busy or self.core.input_paused:
            for line in lines:
                self._enqueue(sess, line, now)
                if _closed(sess):
                    return
            self.drain(sess, now)
            return
        exempt = not self.flood or sess.user.oper_name is not None
        if not exempt:
            self._refill(sess, now.mono)
        core = self.core
        dispatch = core.dispatch
        for i, line in enumerate(lines):
            if sess.closing is not None:
                return
            if sess.busy or core.input_paused or (not exempt and sess.tokens < 1.0):
                for rest in lines[i:]:
                    self._enqueue(sess, rest, now)
                    if _closed(sess):
                        return
                if core.input_paused:
                    core.paused_sessions.add(sess)
                else:
                    self._schedule_drain(sess, now.mono)
                return
            if not exempt:
                sess.tokens -= 1.0
            # the usual line, inline: bytes, not empty, no NUL, UTF-8, parses
            if isinstance(line, bytes) and line and b"\x00" not in line:
                try:
                    msg = parse_message(line.decode("utf-8"))
                except (UnicodeDecodeError, MessageParseError):
                    self._handle(sess, line, now)
                    continue
                dispatch(sess, msg, now)
            else:
                self._handle(sess, line, now)

    def _refill(self, sess: Session, mono: float) -> None:
        elapsed = mono - sess.tokens_at
        if elapsed > 0:
            sess.tokens = min(self.burst, sess.tokens + elapsed * self.rate)
        sess.tokens_at = mono

    def _enqueue(self, sess: Session, line: Line, now: Now) -> None:
        q = sess.inq
        if q is None:
            q = sess.inq = deque()
        q.append(line if isinstance(line, bytes) else None)
        sess.inq_bytes += (len(line) if isinstance(line, bytes) else 512) + _QUEUED_COST
        batch = sess.client_batch  # an open batch is input held too
        if sess.inq_bytes + (batch.held if batch is not None else 0) > self.recvq:
            self.core.snotice("f", "Excess Flood: %s (%s) dropped", sess.user.prefix, sess.ip)
            self.core.disconnect(sess, "Excess Flood", now)

    def drain(self, sess: Session, now: Now) -> None:
        """Run queued lines while tokens last and no ordered op is running."""
        q = sess.inq
        if q is None or sess.closing is not None:
            return
        exempt = not self.flood or sess.user.oper_name is not None
        if not exempt:
            self._refill(sess, now.mono)
        core = self.core
        while q and not sess.busy and sess.closing is None:
            if core.input_paused:  # history commits are behind: resumed when they catch up
                core.paused_sessions.add(sess)
                return
            if not exempt:
                if sess.tokens < 1.0:
                    break
                sess.tokens -= 1.0
            item = q.popleft()
            sess.inq_bytes -= (len(item) if item is not None else 512) + _QUEUED_COST
            self._handle(sess, item if item is not None else TooLong(tags=False), now)
        if _closed(sess):
            return
        if not q:
            sess.inq = None
            sess.inq_bytes = 0
        elif not sess.busy:
            self._schedule_drain(sess, now.mono)

    def _schedule_drain(self, sess: Session, mono: float) -> None:
        need = 1.0 - sess.tokens
        when = mono + (need / self.rate if need > 0 and self.rate > 0 else 0.0)
        if sess.drain_at is None or when < sess.drain_at:
            sess.drain_at = when
            self.core.timers.check_at(sess, when)

    def charge(self, sess: Session, tokens: float) -> None:
        """Extra cost of a command, in lines' worth of tokens (may go negative:
        the client's next lines then wait)."""
        if self.flood and sess.user.oper_name is None:
            sess.tokens -= tokens

    def _handle(self, sess: Session, raw: Line, now: Now) -> None:
        core = self.core
        if isinstance(raw, TooLong):
            core.reply(sess, N.ERR_INPUTTOOLONG, "Input line was too long")
            _unreadable(core, sess, "A line of the batch was too long")
            return
        if not raw:
            return  # an empty line is ignored (it already cost a token)
        if b"\x00" in raw:
            core.reply(sess, N.ERR_UNKNOWNERROR, "*", "Message contains a NUL byte")
            _unreadable(core, sess, "A line of the batch had a NUL byte")
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            core.fail(
                sess,
                "*",
                "INVALID_UTF8",
                "Message rejected, your IRC software MUST use UTF-8 encoding on this network",
            )
            _unreadable(core, sess, "A line of the batch was not UTF-8")
            return
        try:
            msg = parse_message(line)
        except MessageParseError:
            return  # a blank line is ignored, as the Modern IRC document says
        core.dispatch(sess, msg, now)


def _unreadable(core: ServerCore, sess: Session, reason: str) -> None:
    """A line that never reaches the command table may have been part of the
    multiline batch the client has open: the batch fails rather than go out
    with a line missing."""
    batch = sess.client_batch
    if batch is not None:
        batch.abandon(core, sess, reason)


def _closed(sess: Session) -> bool:
    """Whether a handler closed the session (a call, so type narrowing forgets)."""
    return sess.closing is not None
