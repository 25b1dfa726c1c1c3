"""Multiline messages from clients: BATCH (IRCv3 ``draft/multiline``, with the
client-initiated batch framework it is built on).

Theory of operation
-------------------
A client that negotiated ``draft/multiline`` and ``batch`` sends::

    BATCH +<ref> draft/multiline <target>       (client-only tags go here)
    @batch=<ref> PRIVMSG <target> :<line>        (or NOTICE; every line the same)
    @batch=<ref>;draft/multiline-concat PRIVMSG <target> :<line continued>
    BATCH -<ref>

``BATCH +`` puts a :class:`_Batch` in ``Session.client_batch``; from then on
``ServerCore.dispatch`` hands it every line of the session first (one attribute
test per line while no batch is open: nothing else on the PRIVMSG path changes).
Lines of the batch are kept, checked as they come (target, command, the
``max-lines`` and ``max-bytes`` limits, concatenated blank lines), and relayed
only at ``BATCH -``, as one :class:`~relaychat.protocol.multiline.MultilineEvent`
after the same checks as a PRIVMSG to that target (``+n``, ``+m``, bans, the
numerics, RPL_AWAY).

Errors are ``FAIL BATCH <code>`` (``MULTILINE_MAX_BYTES``, ``MULTILINE_MAX_LINES``,
``MULTILINE_INVALID_TARGET``, ``MULTILINE_INVALID``), and nothing of the batch
is relayed. A batch that failed stays as a closed marker, so its remaining lines
and its ``BATCH -`` are dropped without a second error (as client-batch says of
a batch that timed out); the first line that is not the batch's clears it.

A line that is not part of the open batch (the client-batch framework forbids it)
fails the batch with ``MULTILINE_INVALID``. A line tagged with another batch is
dropped with it; an untagged command then runs as usual (a QUIT quits, a PONG
counts), as the batch is what was invalid, not the command.

Every line costs a flood token like any other (``inbound``); the text held by an
open batch counts toward the session's ``recvq`` with its queued lines, and is
bounded by ``max-bytes`` and ``max-lines`` as well. A batch still open when the
client goes is dropped.

Labels (labeled-response): the label of ``BATCH +`` answers for the whole
batch: nothing is sent for ``BATCH +`` itself, and the response at ``BATCH -``
(the echo with echo-message, which comes as one batch and so carries the label
on its start; numerics; or an ACK) or the ``FAIL`` carries it. Labels on the
lines inside are ignored (clients must not send tags there).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.caps import MULTILINE
from relaychat.protocol.events import ECHO_CAP, ECHO_NEVER
from relaychat.protocol.handlers.messaging import client_tags, resolve_target
from relaychat.protocol.multiline import (
    CONCAT,
    MultilineEvent,
    relay_room,
    split_for_relay,
)

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

__all__ = ["handle_batch"]

# a reference tag: ASCII letters, digits and hyphens (batch); bounded here
_REF = re.compile(r"[A-Za-z0-9-]{1,64}", re.ASCII)
_LINES = ("PRIVMSG", "NOTICE")
INVALID = "MULTILINE_INVALID"


# BATCH {+|-}<reference> [draft/multiline <target>]
def handle_batch(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    """``BATCH +ref draft/multiline <target>`` opens a batch; a ``BATCH -ref``
    that reaches this handler names no open batch."""
    params = msg.params
    sign, ref = params[0][:1], params[0][1:]
    if sign != "+":
        why = "Unknown batch reference" if sign == "-" else "Expected BATCH +<ref> or -<ref>"
        core.fail(sess, "BATCH", INVALID, why)
        return
    problem = _open_problem(sess, msg)
    if problem is None and (len(params) < 3 or params[1] != MULTILINE):
        problem = "Unsupported batch type"
    if problem is None:
        target = params[2]
        if not target or "," in target:
            problem = "A multiline batch has exactly one target"
    if problem is not None:
        core.fail(sess, "BATCH", INVALID, problem)
        if _REF.fullmatch(ref):
            sess.client_batch = _Batch(ref, "", None, None, False)  # its lines are dropped
        return
    output = core.output
    tags = client_tags(msg) if msg.tags and "message-tags" in sess.caps else None
    sess.client_batch = _Batch(ref, params[2], tags, output.label, True)
    output.label = None  # answered when the batch ends


def _open_problem(sess: Session, msg: Message) -> str | None:
    caps = sess.caps
    if MULTILINE not in caps or "batch" not in caps:
        return "Multiline batches need the draft/multiline and batch capabilities"
    if not _REF.fullmatch(msg.params[0][1:]):
        return "Invalid batch reference"
    if msg.tags and "batch" in msg.tags:
        return "Batches cannot be nested"
    return None


class _Batch:
    """A multiline batch the client has open (``open``), or one that failed and
    whose remaining lines are dropped."""

    __slots__ = ("ref", "target", "tags", "label", "open", "command", "lines", "held")

    def __init__(
        self,
        ref: str,
        target: str,
        tags: dict[str, str] | None,
        label: str | None,
        open_: bool,
    ) -> None:
        self.ref = ref
        self.target = target
        self.tags = tags  # client-only tags of BATCH +: they go with the message
        self.label = label  # of BATCH +: the whole batch's response carries it
        self.open = open_
        self.command: str | None = None  # PRIVMSG or NOTICE, set by the first line
        self.lines: list[tuple[str, bool]] = []  # (text, concatenated to the previous)
        self.held = 0  # bytes of text, each joining line feed counted: max-bytes

    def take(self, core: ServerCore, sess: Session, msg: Message, now: Now) -> bool:
        tags = msg.tags
        ref = tags.get("batch") if tags else None
        command = msg.command
        params = msg.params
        ends = command == "BATCH" and ref is None and params[:1] == ["-" + self.ref]
        if not self.open:
            if ref == self.ref and command != "BATCH":
                core.output.label = None
                return True  # a line of a failed batch: dropped, already answered
            sess.client_batch = None
            return ends  # its end is dropped too; anything else runs as usual
        if ends:
            self._finish(core, sess, now)
            return True
        if ref == self.ref and command in _LINES:
            core.output.label = None
            self._add(core, sess, msg, now)
            return True
        if ref is not None:
            # tagged with the batch but not a message, or with another batch
            what = "Unknown batch reference" if ref != self.ref else f"{command} in a batch"
            self._fail(core, sess, INVALID, what)
            return True
        if command == "BATCH" and params and params[0][:1] == "-":
            self._fail(core, sess, INVALID, "Unknown batch reference")  # another batch's end
            return True
        # a command outside the batch while it is open: the batch is invalid, the
        # command runs (its own response, with its own label)
        output = core.output
        label = output.label
        self._fail(core, sess, INVALID, f"{command} sent while a multiline batch is open")
        output.end_response()
        output.begin_response(sess)
        output.label = label
        return False

    def abandon(self, core: ServerCore, sess: Session, reason: str) -> None:
        if self.open:
            output = core.output
            output.begin_response(sess)  # its own response, with the batch's label
            self._fail(core, sess, INVALID, reason)
            output.end_response()

    def _add(self, core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
        params = msg.params
        command = msg.command
        if len(params) < 2:
            self._fail(core, sess, INVALID, "A multiline line needs a target and text")
            return
        target, text = params[0], params[1]
        if target != self.target and core.fold(target) != core.fold(self.target):
            code = "MULTILINE_INVALID_TARGET"
            self._fail(core, sess, code, self.target, target, "Invalid multiline target")
            return
        if self.command is None:
            self.command = command
        elif command != self.command:
            self._fail(core, sess, INVALID, "Invalid multiline batch mixing PRIVMSG and NOTICE")
            return
        concat = CONCAT in msg.tags
        if concat and not text:
            self._fail(core, sess, INVALID, "Invalid multiline batch with concatenated blank line")
            return
        lim = core.limits
        if len(self.lines) >= lim.multiline_max_lines:
            n = str(lim.multiline_max_lines)
            self._fail(core, sess, "MULTILINE_MAX_LINES", n, "Multiline batch max-lines exceeded")
            return
        size = len(text.encode("utf-8")) + (0 if concat or not self.lines else 1)
        if self.held + size > lim.multiline_max_bytes:
            n = str(lim.multiline_max_bytes)
            self._fail(core, sess, "MULTILINE_MAX_BYTES", n, "Multiline batch max-bytes exceeded")
            return
        self.lines.append((text, concat))
        self.held += size
        if sess.inq_bytes + self.held > lim.recvq:
            core.disconnect(sess, "Excess Flood", now)

    def _fail(self, core: ServerCore, sess: Session, code: str, *params: str) -> None:
        """The batch is invalid: FAIL (answering the batch's label), nothing relayed,
        and its remaining lines will be dropped."""
        core.output.label = self.label
        core.fail(sess, "BATCH", code, *params)
        self.open = False
        self.lines = []
        self.held = 0
        self.tags = None

    def _finish(self, core: ServerCore, sess: Session, now: Now) -> None:
        """``BATCH -ref``: relay the message, or say why not."""
        sess.client_batch = None
        output = core.output
        if self.label is not None:
            output.label = self.label
        lines = self.lines
        if not any(text for text, _ in lines):
            why = "with no lines" if not lines else "with blank lines only"
            core.fail(sess, "BATCH", INVALID, f"Invalid multiline batch {why}")
            return
        command = self.command
        assert command is not None
        errors = command == "PRIVMSG"  # NOTICE never gets an error reply
        found = resolve_target(core, sess, self.target, errors)
        if found is None:
            return
        shown, audience, chan, dest, status = found
        user = sess.user
        user.idle_since = now.mono
        source = user.source
        room = relay_room(source, command, shown)
        relayed: list[tuple[str, bool]] = []
        for text, concat in lines:
            relayed.extend(split_for_relay(text, concat, room))
        # to oneself with echo-message, the delivery and the echo are two batches,
        # each with its own reference: the echo is sent here, as the reply
        echo_self = dest is user and "echo-message" in sess.caps

        def event(echo: int) -> MultilineEvent:
            return MultilineEvent(
                command,
                source,
                shown,
                relayed,
                output.batch_ref().decode("ascii"),
                core.server_name,
                now.wall,
                msgid,
                audience,
                user,
                sess,
                chan,
                dest,
                self.tags,
                status,
                echo,
            )

        msgid = core.msgid()
        core.emit(event(ECHO_NEVER if echo_self else ECHO_CAP))
        if echo_self:
            output.send_bytes(sess, event(ECHO_NEVER).for_variant(sess.variant))
        if dest is not None and errors and dest.away is not None:
            core.reply(sess, N.RPL_AWAY, dest.name, dest.away)
