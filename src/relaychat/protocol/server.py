"""The server core: all IRC state and rules, with no I/O.

Theory of operation
-------------------
A transport (the asyncio engine, the thread-per-connection engine, a test)
drives one :class:`ServerCore`:

* ``connect(ip, now, handle)`` when a connection is accepted -> a :class:`Session`;
* ``receive_data(sess, data, now)`` with whatever bytes arrived;
* ``connection_lost(sess, reason, now)`` when the socket died;
* ``tick(now)`` about once a second (PING, timeouts, flood queues);
* then ``data_to_send()`` -> ``[(handle, bytes, close)]``: every connection that has
  output, its pending lines joined into one buffer (one write per connection
  per turn), and whether to close it after writing;
* ``jobs_to_run()`` -> blocking work (password hashes, reloading the config)
  that the transport runs in a worker thread and hands back with ``job_done``.

Nothing here touches a socket, thread, lock, clock or file: ``now`` comes in as
an argument (wall-clock seconds). The core is not thread-safe: the transport
must call it from one thread at a time (the threaded engine holds one lock
around every call).

Fan-out: a channel message is serialised once per *variant* (the set of
capabilities that change its bytes: server-time, message-tags), and the same
``bytes`` object is appended to every member's queue.
"""

from __future__ import annotations

import logging
import time as _time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from relaychat import __version__
from relaychat.config import Config
from relaychat.protocol import numerics as N
from relaychat.protocol.casemap import casefolder, mask_matches
from relaychat.protocol.framing import LineBuffer, TooLong
from relaychat.protocol.message import Message, MessageParseError, escape_tag_value, parse_message
from relaychat.protocol.state import (
    CAP_MESSAGE_TAGS,
    CAP_SERVER_TIME,
    Channel,
    Session,
    WhowasEntry,
)

__all__ = ["ServerCore", "Job", "Outgoing", "SUPPORTED_CAPS"]

log = logging.getLogger("relaychat.core")

# capability name -> value advertised in CAP LS 302 ("" for none)
SUPPORTED_CAPS: dict[str, str] = {
    "away-notify": "",
    "cap-notify": "",
    "echo-message": "",
    "invite-notify": "",
    "message-tags": "",
    "multi-prefix": "",
    "server-time": "",
    "setname": "",
    "userhost-in-names": "",
}

VARIANT_CAPS = {"server-time": CAP_SERVER_TIME, "message-tags": CAP_MESSAGE_TAGS}


def format_time(now: float) -> str:
    """IRCv3 server-time: ``YYYY-MM-DDThh:mm:ss.sssZ`` (UTC)."""
    secs = int(now)
    ms = int((now - secs) * 1000)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(secs)) + f".{ms:03d}Z"


class Outgoing:
    """A message to relay, serialised lazily once per variant.

    ``client_tags`` are the ``+tags`` a client attached; they reach only sessions
    that enabled message-tags. ``time`` is added for server-time sessions.
    """

    __slots__ = ("_line", "_variants", "client_tags", "now")

    def __init__(self, line: str, now: float, client_tags: dict[str, str] | None = None) -> None:
        self._line = line
        self.now = now
        self.client_tags = client_tags
        self._variants: list[bytes | None] = [None, None, None, None]

    def for_variant(self, variant: int) -> bytes:
        data = self._variants[variant]
        if data is None:
            tags: list[str] = []
            if variant & CAP_SERVER_TIME:
                tags.append("time=" + format_time(self.now))
            if variant & CAP_MESSAGE_TAGS and self.client_tags:
                tags.extend(
                    k if v == "" else f"{k}={escape_tag_value(v)}"
                    for k, v in self.client_tags.items()
                )
            line = "@" + ";".join(tags) + " " + self._line if tags else self._line
            data = (line + "\r\n").encode("utf-8", "replace")
            self._variants[variant] = data
        return data


class ChannelBatch:
    """The channel messages of one turn, shared by every member's queue.

    The first channel message of a turn attaches an open :class:`Slice` of the
    batch to each member's queue (one pass over the members); later messages in
    the same turn are appended to the batch alone, in O(1), and reach every
    attached member through its slice. Whatever else is queued to a member
    closes its slice first (so its output keeps its order) and leaves it
    *detached*; the next channel message attaches a new slice for it. The sender
    of a message is detached so that it does not get its own message back.
    At ``data_to_send`` each slice becomes bytes, joined once per (range, variant)
    and shared by every member with the same range: one serialisation, one join.
    """

    __slots__ = ("items", "attached", "detached", "_joined")

    def __init__(self) -> None:
        self.items: list[Outgoing] = []
        self.attached: dict[Session, Slice] = {}
        self.detached: set[Session] = set()
        self._joined: dict[tuple[int, int, int], bytes] = {}

    def join(self, start: int, end: int, variant: int) -> bytes:
        key = (start, end, variant)
        data = self._joined.get(key)
        if data is None:
            data = b"".join([o.for_variant(variant) for o in self.items[start:end]])
            self._joined[key] = data
        return data


class Slice:
    """Messages ``start:end`` of a batch for one session (``end`` None: still open)."""

    __slots__ = ("batch", "start", "end")

    def __init__(self, batch: ChannelBatch, start: int) -> None:
        self.batch = batch
        self.start = start
        self.end: int | None = None


@dataclass(slots=True)
class Job:
    """Blocking work for a worker thread: ``run()`` must not touch the core;
    its result goes back through ``ServerCore.job_done`` on the core's thread."""

    session: Session | None
    run: Callable[[], Any]
    then: Callable[[Any], None]
    result: Any = field(default=None)
    error: BaseException | None = field(default=None)


class ServerCore:
    def __init__(
        self,
        config: Config,
        now: float | None = None,
        config_loader: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.config_loader = config_loader
        self.created = _time.time() if now is None else now
        # folding is pure: cache it (every message folds its target's name)
        self.fold: Callable[[str], str] = lru_cache(maxsize=8192)(
            casefolder(config.server.casemapping)
        )
        self.sessions: dict[int, Session] = {}
        self.nicks: dict[str, Session] = {}  # folded nick -> registered or reserved session
        self.channels: dict[str, Channel] = {}  # folded name -> channel
        self.whowas: deque[WhowasEntry] = deque(maxlen=config.limits.whowas_size)
        self.per_ip: dict[str, int] = {}
        self._dirty: list[Session] = []
        self._batched: list[Channel] = []  # channels with an open batch this turn
        self._jobs: list[Job] = []
        self._throttled: set[Session] = set()
        self._next_id = 1
        self.stop_requested: str | None = None
        self.max_users_seen = 0
        # running counts for LUSERS (a pass over 10,000 sessions per registration would
        # make registering N clients cost N^2)
        self.registered_count = 0
        self.invisible_count = 0
        self.oper_count = 0
        self._isupport_lines: list[list[str]] = []
        self._apply_config(config)
        from relaychat.protocol.commands import COMMANDS  # the table imports the handlers

        self._commands = COMMANDS

    # ------------------------------------------------------------------ config
    def _apply_config(self, config: Config) -> None:
        self.config = config
        self.whowas = deque(self.whowas, maxlen=config.limits.whowas_size)
        self.limits = config.limits
        self._numeric_prefix = f":{config.server.name} "
        self.flood = config.limits.flood_rate > 0
        self._isupport_lines = _isupport(config)

    def rehash(self, config: Config) -> None:
        """Swap in a reloaded configuration. The casemapping stays as it started:
        changing it under live nick and channel tables would corrupt them."""
        if config.server.casemapping != self.config.server.casemapping:
            log.warning(
                "casemapping change needs a restart; keeping %s", self.config.server.casemapping
            )
            import dataclasses

            config = dataclasses.replace(
                config,
                server=dataclasses.replace(
                    config.server, casemapping=self.config.server.casemapping
                ),
            )
        self._apply_config(config)

    @property
    def server_name(self) -> str:
        return self.config.server.name

    # --------------------------------------------------------- transport side
    def connect(self, ip: str, now: float, handle: Any = None) -> Session:
        """A new connection. If it is over a limit, the session comes back
        already closing, with an ERROR queued."""
        conn_id = self._next_id
        self._next_id += 1
        lim = self.limits
        sess = Session(conn_id, ip, now, LineBuffer(lim.line_length, lim.tags_length))
        sess.handle = handle
        sess.tokens = float(lim.flood_burst)
        self.sessions[conn_id] = sess
        count = self.per_ip.get(ip, 0) + 1
        self.per_ip[ip] = count
        log.debug("[%d] connected from %s", conn_id, ip)
        if len(self.sessions) > lim.max_connections:
            self.disconnect(sess, "Server is full", now)
        elif 0 < lim.max_connections_per_ip < count and not lim.exempt_from_ip_limit(ip):
            self.disconnect(sess, "Too many connections from your IP address", now)
        return sess

    def receive_data(self, sess: Session, data: bytes, now: float) -> None:
        """Bytes from the peer, in any split. Complete lines are processed now,
        or queued when the session is over its flood budget."""
        if sess.closing is not None:
            return
        for frame in sess.framer.feed(data):
            if _closing(sess):  # a handler may have closed it
                return
            if isinstance(frame, TooLong):
                self.reply(sess, N.ERR_INPUTTOOLONG, "Input line was too long")
                continue
            if not frame:
                continue
            if sess.inq is not None or sess.busy or (self.flood and sess.oper_name is None):
                self._enqueue(sess, frame, now)
            else:
                self._handle_line(sess, frame, now)
        if sess.inq is not None and not sess.busy and sess.closing is None:
            self._drain(sess, now)
        if sess.closing is None and sess.framer.pending() > self.limits.recvq + 8704:
            self.disconnect(sess, "Excess Flood", now)

    def connection_lost(self, sess: Session, reason: str, now: float) -> None:
        """The socket closed or failed under us."""
        if sess.closing is None:
            self.disconnect(sess, reason, now)

    def tick(self, now: float) -> None:
        """Timers: registration timeout, PING, ping timeout, flood queues."""
        lim = self.limits
        for sess in list(self._throttled):
            if sess.closing is None and not sess.busy:
                self._drain(sess, now)
        for sess in list(self.sessions.values()):
            if sess.closing is not None:
                continue
            if not sess.registered:
                if now - sess.connected_at > lim.registration_timeout:
                    self.disconnect(sess, "Registration timed out", now)
                continue
            if sess.ping_sent is not None:
                if now - sess.ping_sent > lim.ping_timeout:
                    secs = int(now - sess.last_active)
                    self.disconnect(sess, f"Ping timeout: {secs} seconds", now)
            elif now - sess.last_active > lim.ping_interval:
                sess.ping_sent = now
                self.send_raw(sess, f"PING :{self.server_name}")

    def data_to_send(self) -> list[tuple[Any, bytes, bool]]:
        """Each connection with output: (handle, all its pending bytes, close after)."""
        dirty = self._dirty
        if not dirty:
            return []
        self._dirty = []
        out: list[tuple[Any, bytes, bool]] = []
        for sess in dirty:
            q = sess.out
            if len(q) == 1:
                item = q[0]
                if item.__class__ is Slice:
                    data = _resolve(item, sess.variant)
                else:
                    data = item
            else:
                v = sess.variant
                data = b"".join(_resolve(i, v) if i.__class__ is Slice else i for i in q)
            sess.out = []
            out.append((sess.handle, data, sess.closing is not None))
        for chan in self._batched:
            chan.batch = None
        self._batched = []
        return out

    def jobs_to_run(self) -> list[Job]:
        jobs = self._jobs
        self._jobs = []
        return jobs

    def job_done(self, job: Job, now: float) -> None:
        sess = job.session
        if sess is not None:
            sess.busy = False
            if sess.closing is not None:
                return
        if job.error is not None:
            log.error("job failed: %r", job.error)
            if sess is not None:
                self.reply(sess, N.ERR_UNKNOWNERROR, "*", "Internal error, try again")
        else:
            job.then(job.result)
        if sess is not None and sess.closing is None and sess.inq:
            self._drain(sess, now)

    def add_job(
        self, sess: Session | None, run: Callable[[], Any], then: Callable[[Any], None]
    ) -> None:
        """Run ``run()`` off the core's thread; the session's input waits until
        ``then(result)`` has run, so its commands keep their order."""
        if sess is not None:
            sess.busy = True
        self._jobs.append(Job(sess, run, then))

    def shutdown(self, reason: str, now: float) -> None:
        """Tell every client and close every connection (SIGINT/SIGTERM, DIE)."""
        for sess in list(self.sessions.values()):
            if sess.closing is None:
                self.disconnect(sess, reason, now, error=f"Server shutting down: {reason}")

    def set_user_modes(self, sess: Session, modes: str) -> None:
        """Change a session's user modes, keeping the LUSERS counts and the oper
        state in step (losing +o ends operator status)."""
        old = sess.modes
        if ("i" in old) != ("i" in modes):
            self.invisible_count += 1 if "i" in modes else -1
        if ("o" in old) != ("o" in modes):
            self.oper_count += 1 if "o" in modes else -1
        if "o" not in modes:
            sess.oper_name = None
        sess.modes = "".join(sorted(set(modes)))

    # --------------------------------------------------------------- output
    def send_bytes(self, sess: Session, data: bytes) -> None:
        if sess.closing is not None:
            return
        q = sess.out
        if not q:
            self._dirty.append(sess)
        elif q[-1].__class__ is Slice:
            _close_slice(sess, q[-1])
        q.append(data)

    def send_raw(self, sess: Session, line: str) -> None:
        self.send_bytes(sess, (line + "\r\n").encode("utf-8", "replace"))

    def reply(self, sess: Session, numeric: str, *params: str) -> None:
        """``:server NUMERIC nick params...`` (the last param gets a colon as needed)."""
        if params:
            *middle, last = params
            if not last or last[0] == ":" or " " in last:
                last = ":" + last
            line = " ".join((self._numeric_prefix + numeric, sess.nick or "*", *middle, last))
        else:
            line = f"{self._numeric_prefix}{numeric} {sess.nick or '*'}"
        self.send_bytes(sess, (line + "\r\n").encode("utf-8", "replace"))

    def server_notice(self, sess: Session, text: str) -> None:
        self.send_bytes(
            sess, Message("NOTICE", [sess.name, text], source=self.server_name).to_bytes()
        )

    def relay(
        self, targets: Iterable[Session], out: Outgoing, exclude: Session | None = None
    ) -> None:
        """Queue one relayed message to many sessions, serialised once per variant."""
        cache: list[bytes | None] = [None, None, None, None]
        dirty = self._dirty
        for sess in targets:
            if sess is exclude or sess.closing is not None:
                continue
            v = sess.variant
            data = cache[v]
            if data is None:
                data = cache[v] = out.for_variant(v)
            q = sess.out
            if not q:
                dirty.append(sess)
            elif q[-1].__class__ is Slice:
                _close_slice(sess, q[-1])
            q.append(data)

    def relay_channel(self, chan: Channel, out: Outgoing, exclude: Session | None = None) -> None:
        """Relay to every member of ``chan`` but ``exclude`` through the channel's
        batch for this turn (see :class:`ChannelBatch`): O(1) per message once the
        members are attached."""
        batch = chan.batch
        members = chan.members
        if batch is None:
            batch = chan.batch = ChannelBatch()
            self._batched.append(chan)
            batch.items.append(out)
            for sess in members:
                if sess is exclude or sess.closing is not None:
                    batch.detached.add(sess)
                else:
                    self._attach(sess, batch, 0)
            return
        if exclude is not None:
            sl = batch.attached.get(exclude)
            if sl is not None:
                _close_slice(exclude, sl)
        index = len(batch.items)
        batch.items.append(out)
        detached = batch.detached
        if detached:
            for sess in list(detached):
                if sess is not exclude and sess.closing is None:
                    self._attach(sess, batch, index)

    def _attach(self, sess: Session, batch: ChannelBatch, start: int) -> None:
        sl = Slice(batch, start)
        q = sess.out
        if not q:
            self._dirty.append(sess)
        elif q[-1].__class__ is Slice:
            _close_slice(sess, q[-1])
        q.append(sl)
        batch.attached[sess] = sl
        batch.detached.discard(sess)

    def relay_one(self, sess: Session, out: Outgoing) -> None:
        self.send_bytes(sess, out.for_variant(sess.variant))

    def common_peers(self, sess: Session, include_self: bool = False) -> set[Session]:
        peers: set[Session] = set()
        for chan in sess.channels.values():
            peers.update(chan.members)
        if include_self:
            peers.add(sess)
        else:
            peers.discard(sess)
        return peers

    # ---------------------------------------------------------------- lookups
    def find_nick(self, nick: str) -> Session | None:
        s = self.nicks.get(self.fold(nick))
        return s if s is not None and s.registered else None

    def find_channel(self, name: str) -> Channel | None:
        return self.channels.get(self.fold(name))

    def is_channel_name(self, name: str) -> bool:
        return bool(name) and name[0] in "#&"

    def valid_channel_name(self, name: str) -> bool:
        if not self.is_channel_name(name) or len(name) < 2:
            return False
        if len(name.encode("utf-8")) > self.limits.channellen:
            return False
        return not any(c in name for c in " ,\x07\x00\r\n")

    def matches_list(self, chan: Channel, mode: str, sess: Session) -> bool:
        if not chan.lists[mode]:
            return False
        full = sess.prefix
        cm = self.config.server.casemapping
        return any(mask_matches(e.mask, full, cm) for e in chan.lists[mode])

    def is_banned(self, chan: Channel, sess: Session) -> bool:
        return self.matches_list(chan, "b", sess) and not self.matches_list(chan, "e", sess)

    # ------------------------------------------------------------ lifecycle
    def disconnect(self, sess: Session, reason: str, now: float, error: str | None = None) -> None:
        """Remove a session everywhere, tell its channels (QUIT), queue ERROR and
        mark it for closing. Idempotent."""
        if sess.closing is not None:
            return
        if sess.registered and sess.nick is not None:
            out = Outgoing(f":{sess.prefix} QUIT :{reason}", now)
            self.relay(self.common_peers(sess), out)
            self.remember_whowas(sess, now)
        if sess.registered:
            self.registered_count -= 1
            self.set_user_modes(sess, "")
        for chan in list(sess.channels.values()):
            self.remove_member(chan, sess)
        if sess.nick_folded is not None and self.nicks.get(sess.nick_folded) is sess:
            del self.nicks[sess.nick_folded]
        # queued while not yet closing, so the session is in the dirty list
        self.send_raw(sess, f"ERROR :{error or f'Closing Link: {sess.host} ({reason})'}")
        sess.closing = reason
        self.sessions.pop(sess.conn_id, None)
        self._throttled.discard(sess)
        sess.inq = None
        left = self.per_ip.get(sess.ip, 1) - 1
        if left > 0:
            self.per_ip[sess.ip] = left
        else:
            self.per_ip.pop(sess.ip, None)
        log.info("[%d] closed %s: %s", sess.conn_id, sess.nick or "*", reason)

    def add_member(self, chan: Channel, sess: Session, status: str = "") -> None:
        chan.members[sess] = status
        sess.channels[chan.folded] = chan
        if chan.batch is not None:
            chan.batch.detached.add(sess)  # gets this turn's later messages only

    def remember_whowas(self, sess: Session, now: float) -> None:
        """Record a nick that is going away (QUIT, NICK change) for WHOWAS."""
        if sess.nick is not None:
            entry = WhowasEntry(
                sess.nick, sess.user or "", sess.host, sess.realname, self.server_name, now
            )
            self.whowas.appendleft(entry)

    def remove_member(self, chan: Channel, sess: Session) -> None:
        batch = chan.batch
        if batch is not None:
            sl = batch.attached.get(sess)
            if sl is not None:
                _close_slice(sess, sl)
            batch.detached.discard(sess)
        chan.members.pop(sess, None)
        sess.channels.pop(chan.folded, None)
        if not chan.members:
            self.channels.pop(chan.folded, None)

    # ------------------------------------------------------------ input path
    def _enqueue(self, sess: Session, line: bytes, now: float) -> None:
        if sess.inq is None:
            sess.inq = deque()
        sess.inq.append(line)
        sess.inq_bytes += len(line)
        if sess.inq_bytes > self.limits.recvq:
            self.disconnect(sess, "Excess Flood", now)

    def _drain(self, sess: Session, now: float) -> None:
        q = sess.inq
        if q is None:
            return
        flood = self.flood and sess.oper_name is None
        if flood:
            rate = self.limits.flood_rate
            sess.tokens = min(
                float(self.limits.flood_burst), sess.tokens + (now - sess.tokens_at) * rate
            )
            sess.tokens_at = now
        while q and not sess.busy and sess.closing is None:
            if flood:
                if sess.tokens < 1.0:
                    break
                sess.tokens -= 1.0
            line = q.popleft()
            sess.inq_bytes -= len(line)
            self._handle_line(sess, line, now)
        if sess.closing is not None:
            return
        if q:
            self._throttled.add(sess)
        else:
            self._throttled.discard(sess)
            if not flood or sess.tokens >= self.limits.flood_burst:
                sess.inq = None
                sess.inq_bytes = 0

    def _handle_line(self, sess: Session, raw: bytes, now: float) -> None:
        sess.last_active = now
        sess.ping_sent = None
        if b"\x00" in raw:
            self.reply(sess, N.ERR_UNKNOWNERROR, "*", "Message contains a NUL byte")
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.send_raw(
                sess,
                f":{self.server_name} FAIL * INVALID_UTF8 :Message rejected, "
                "your IRC software MUST use UTF-8 encoding on this network",
            )
            return
        try:
            msg = parse_message(line)
        except MessageParseError:
            return  # an empty or blank line is ignored, as the Modern IRC document says
        self.dispatch(sess, msg, now)

    def dispatch(self, sess: Session, msg: Message, now: float) -> None:
        """Check the command table once, then call the handler."""
        command = msg.command.upper()
        msg.command = command
        spec = self._commands.get(command)
        if spec is None:
            if sess.registered:
                self.reply(sess, N.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            else:
                self.reply(sess, N.ERR_NOTREGISTERED, "You have not registered")
            return
        if not sess.registered and not spec.before_registration:
            self.reply(sess, N.ERR_NOTREGISTERED, "You have not registered")
            return
        if len(msg.params) < spec.min_params:
            self.reply(sess, N.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
            return
        if spec.oper_only and sess.oper_name is None:
            self.reply(sess, N.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
            return
        if spec.resets_idle:
            sess.idle_since = now
        try:
            spec.handler(self, sess, msg, now)
        except Exception:
            log.exception("[%d] handler for %s failed", sess.conn_id, command)
            self.reply(sess, N.ERR_UNKNOWNERROR, command, "Internal server error")

    # ----------------------------------------------------------- registration
    def try_register(self, sess: Session, now: float) -> None:
        """Finish registration once NICK, USER, CAP END and PASS all allow it."""
        if sess.registered or sess.nick is None or not sess.got_user or sess.cap_negotiating:
            return
        if self.config.server.password and not sess.password_ok:
            self.reply(sess, N.ERR_PASSWDMISMATCH, "Password incorrect")
            self.disconnect(sess, "Bad password", now)
            return
        sess.registered = True
        sess.idle_since = now
        sess.last_active = now
        self.registered_count += 1
        self.max_users_seen = max(self.max_users_seen, self.registered_count)
        log.info("[%d] registered as %s", sess.conn_id, sess.prefix)
        self.send_welcome(sess)

    def send_welcome(self, sess: Session) -> None:
        cfg = self.config.server
        created = _time.strftime("%a %b %d %Y at %H:%M:%S UTC", _time.gmtime(self.created))
        self.reply(sess, N.RPL_WELCOME, f"Welcome to the {cfg.network} IRC Network {sess.prefix}")
        self.reply(
            sess,
            N.RPL_YOURHOST,
            f"Your host is {cfg.name}, running version relaychat-{__version__}",
        )
        self.reply(sess, N.RPL_CREATED, f"This server was created {created}")
        self.reply(
            sess,
            N.RPL_MYINFO,
            cfg.name,
            f"relaychat-{__version__}",
            "iow",
            "beIiklmnostv",
            "beIklov",
        )
        for tokens in self._isupport_lines:
            self.reply(sess, N.RPL_ISUPPORT, *tokens, "are supported by this server")
        from relaychat.protocol.handlers.info import send_lusers, send_motd

        send_lusers(self, sess)
        send_motd(self, sess)


def _close_slice(sess: Session, sl: Slice) -> None:
    """End an open slice at the batch's current length (more output follows it)."""
    if sl.end is None:
        batch = sl.batch
        sl.end = len(batch.items)
        batch.attached.pop(sess, None)
        batch.detached.add(sess)


def _resolve(sl: Slice, variant: int) -> bytes:
    batch = sl.batch
    end = len(batch.items) if sl.end is None else sl.end
    return batch.join(sl.start, end, variant)


def _closing(sess: Session) -> bool:
    return sess.closing is not None


def _isupport(config: Config) -> list[list[str]]:
    lim = config.limits
    tokens = [
        f"AWAYLEN={lim.awaylen}",
        f"CASEMAPPING={config.server.casemapping}",
        f"CHANLIMIT=#&:{lim.chanlimit}",
        "CHANMODES=beI,k,l,imnst",
        f"CHANNELLEN={lim.channellen}",
        "CHANTYPES=#&",
        "ELIST=CMNTU",
        "EXCEPTS=e",
        "INVEX=I",
        f"KICKLEN={lim.kicklen}",
        f"MAXLIST=beI:{lim.max_list_entries}",
        f"MAXTARGETS={lim.max_targets}",
        f"MODES={lim.max_modes}",
        f"NETWORK={config.server.network}",
        f"NICKLEN={lim.nicklen}",
        "PREFIX=(ov)@+",
        "SAFELIST",
        "STATUSMSG=@+",
        f"TARGMAX=JOIN:,KICK:1,LIST:1,NAMES:1,NOTICE:{lim.max_targets},"
        f"PRIVMSG:{lim.max_targets},TAGMSG:{lim.max_targets},WHOIS:1",
        f"TOPICLEN={lim.topiclen}",
        f"USERLEN={lim.userlen}",
        "UTF8ONLY",
        "WHOX",
    ]
    return [tokens[i : i + 12] for i in range(0, len(tokens), 12)]
