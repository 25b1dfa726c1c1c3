"""The server core: all IRC state and rules, with no I/O.

Theory of operation
-------------------
A transport driver (``relaychat.server.driver``) or a test drives one
:class:`ServerCore`, always from one thread at a time:

* ``connect(ip, now, handle)`` when a connection is accepted -> a :class:`Session`;
* ``receive_lines(sess, lines, now)`` with the lines the transport framed
  (``bytes`` without CR/LF, or ``TooLong``);
* ``connection_lost(sess, reason, now)`` when the socket died;
* ``handle_timers(now)`` when ``next_deadline()`` (monotonic) has come;
* then ``data_to_send()`` -> ``[(handle, bytes, close)]``: one buffer per
  connection with output, and whether to close it after writing; the transport
  reports what it could not write yet with ``note_backlog``;
* ``ops_to_run()`` -> operations to run on a worker thread, handed back with
  ``op_done`` (store calls run there: ``core.store``, given by the driver, is
  never called on the core's thread); ``requests`` -> what the core asks of
  the transport (stop, rehash).

``now`` is a :class:`~relaychat.protocol.timebase.Now` (monotonic and wall time);
nothing here reads a clock, touches a socket, a thread or a file. The pieces:
:mod:`~relaychat.protocol.inbound` (lines, flood control, dispatch to the
command table), :mod:`~relaychat.protocol.output` (replies, local delivery,
SendQ), :mod:`~relaychat.protocol.registry` (nicks, channels, invites),
:mod:`~relaychat.protocol.ops` (asynchronous operations),
:mod:`~relaychat.protocol.timers` (deadlines), :mod:`~relaychat.protocol.events`
(what handlers emit). The command table is given to the constructor: the core
imports no handler.

A handler that raises is contained: the session that sent the command is closed
with ``Internal error`` (its user leaves every channel through the same path as
a QUIT, so nothing stays half-joined), everyone else goes on, and the log says
so at most a few times a minute.

Operator features the core owns because they sit on its entry points: server
bans (``bans``: a D-line refuses a connection in ``connect``; expiry runs from a
server timer; with a store they are loaded from it at start and every change is
written through to it by an unordered op in the one-at-a-time ``bans`` pool, so
the writes keep their order), registered channels (loaded at start, their state
written through the same way: :mod:`~relaychat.protocol.chanreg`), IP
cloaking (``cloaker``: the host others see is fixed in ``connect``), server
notices (``snotice``: a no-op while no operator has ``+s`` for that letter),
and the counters STATS reads (``command_counts``: one dict increment per
dispatched command; lines received per session).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from relaychat.protocol import multiclient
from relaychat.protocol import numerics as N
from relaychat.protocol.accounts import UNAVAILABLE, store_call
from relaychat.protocol.backoff import Backoff, Throttle, WindowLimit
from relaychat.protocol.caps import (
    StsPolicy,
    cap_changes,
    cap_lines,
    isupport_lines,
    offered_caps,
    offers,
    set_caps,
    target_limits,
)
from relaychat.protocol.casemap import casefolder, mask_matches
from relaychat.protocol.chanreg import ChannelWriter, load_channels, logged_in
from relaychat.protocol.cloaking import Cloaker
from relaychat.protocol.events import PEERS, Event, build_event, msgid_source
from relaychat.protocol.history import (
    CHATHISTORY_CAP,
    COMMITS_IN_FLIGHT,
    EVENT_PLAYBACK_CAP,
    READ_MARKER_CAP,
    REDACTION_CAP,
    History,
)
from relaychat.protocol.identity import account_changed, change_host
from relaychat.protocol.inbound import Inbound, Line
from relaychat.protocol.message import Message, sanitize_text, truncate_utf8
from relaychat.protocol.monitor import Monitor
from relaychat.protocol.ops import Batcher, Op, Ops
from relaychat.protocol.output import Output
from relaychat.protocol.registry import Registry
from relaychat.protocol.serverbans import (
    DLINE,
    KLINE,
    ServerBan,
    ServerBans,
    format_duration,
    normalize_dline,
    normalize_kline,
)
from relaychat.protocol.state import Channel, Session, User
from relaychat.protocol.storage import ServerBanRecord
from relaychat.protocol.timebase import ctime_utc
from relaychat.protocol.timers import Timers

if TYPE_CHECKING:
    from relaychat.config import Config
    from relaychat.protocol.mailer import Mailer
    from relaychat.protocol.storage import Store
    from relaychat.protocol.timebase import Now

__all__ = ["CommandSpec", "Handler", "ServerCore"]

log = logging.getLogger("relaychat.core")

Handler = Callable[["ServerCore", Session, Message, "Now"], None]
# a service (NickServ): a PRIVMSG to it is a command line for it
Service = Callable[["ServerCore", Session, str, "Now"], None]
EventConsumer = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of the command table (``relaychat.protocol.commands``)."""

    handler: Handler
    min_params: int = 0
    before_registration: bool = False
    oper_only: bool = False
    resets_idle: bool = False  # counts as activity for WHOIS idle time
    syntax: str = ""
    help: str = ""


class RateLimitedLog:
    """At most ``burst`` records per ``window`` seconds; then one summary line."""

    def __init__(self, burst: int = 5, window: float = 60.0) -> None:
        self.burst = burst
        self.window = window
        self._start = -1e18
        self._count = 0
        self._suppressed = 0

    def allow(self, mono: float) -> bool:
        if mono - self._start >= self.window:
            if self._suppressed:
                log.error("%d more internal errors were not logged", self._suppressed)
            self._start = mono
            self._count = 0
            self._suppressed = 0
        self._count += 1
        if self._count <= self.burst:
            return True
        self._suppressed += 1
        return False


class ServerCore:
    def __init__(
        self,
        config: Config,
        commands: Mapping[str, CommandSpec],
        now: Now,
        msgid_prefix: str = "rc",
        store: Store | None = None,
    ) -> None:
        self.config = config
        # accounts (and later history) live here; called only from Ops, on
        # worker threads. None: a core without storage (account commands say so)
        self.store = store
        # sends verification mails (email_verification); called only from Ops.
        # The driver sets it (relaychat.mail.SmtpMailer); None: mail cannot be sent
        self.mailer: Mailer | None = None
        # every account's folded name (the store's, loaded at start, kept up to
        # date here): nick protection checks a nick without a store query
        self.account_names: set[str] = set(store.account_names()) if store is not None else set()
        # multiclient (relaychat.protocol.multiclient): folded account -> the user
        # that owns it; each account's own always-on choice (loaded at start)
        self.account_users: dict[str, User] = {}
        self.always_on_choices: dict[str, bool] = (
            store.always_on_choices() if store is not None else {}
        )
        self.always_on_writes: Batcher | None = None  # made by the first write
        self.commands = commands
        self.services: dict[str, Service] = {}  # folded nick -> service (build_core fills it)
        self.created = now.wall
        # folding is pure: cache it (every message folds its target's name)
        self.fold: Callable[[str], str] = lru_cache(maxsize=8192)(
            casefolder(config.server.casemapping)
        )
        self.sessions: dict[int, Session] = {}
        self.per_ip: dict[str, int] = {}
        # registered channels' kept state is written through to the store
        self.channel_writer = ChannelWriter(self)
        self.registry = Registry(
            self.fold,
            config.limits.whowas_size,
            self._member_added,
            self._member_removed,
            self.channel_writer.changed,
        )
        self.output = Output(
            config.server.name, config.limits.sendq, self._overflow, self._wallops_users
        )
        # the two calls every handler makes, bound once (no extra call level)
        self.reply: Callable[..., None] = self.output.reply
        self.send_line: Callable[[Session, str], None] = self.output.send_line
        self.monitor = Monitor(self.output)
        self.created_text = ctime_utc(now.wall)
        self.timers = Timers()
        # "bans", "chanstate" (registered channels) and "always_on": writes one at
        # a time, so that they commit in order; "history": the commits of
        # history rows (see protocol/history.py)
        self.ops = Ops(
            {
                "hash": 2,
                "store": 16,
                "bans": 1,
                "chanstate": 1,
                "history": COMMITS_IN_FLIGHT,
                "history-read": 4,
                "prune": 1,
                "mail": 4,
                "always_on": 1,
            }
        )
        self.msgid = msgid_source(msgid_prefix)
        # BATCH references: unique per core, so per connection
        self.consumers: list[EventConsumer] = []
        self.emit: EventConsumer = self.output.deliver
        self.add_consumer(self.output.deliver)
        self.requests: list[tuple[str, Any]] = []  # ("stop", reason), ("rehash", session)
        self.stop_requested: str | None = None
        self.error_log = RateLimitedLog()
        self.auth_backoff = Backoff()
        self.registrations = WindowLimit()  # accounts registered per address
        self.knock_users = Throttle()
        self.knock_channels = Throttle()
        self.started = now.mono  # STATS u
        # STATS m: every command of the table, so a client cannot grow this dict
        self.command_counts: dict[str, int] = dict.fromkeys(commands, 0)
        self.bans = ServerBans(self.fold, config.limits.max_server_bans)
        self.cloaker: Cloaker | None = None
        # the STS policy (the transport side decides it: set_sts) and the offer
        # of capabilities to (plaintext, TLS) sessions: caps_for
        self.sts: StsPolicy | None = None
        self.cap_offers: tuple[dict[str, str], dict[str, str]] = ({}, {})
        self._ban_timer_at: float | None = None
        self._next_id = 1
        self._now = now
        self._overflowed: list[Session] = []
        # input is paused (queued per session) while history commits are too far
        # behind the relay; the sessions with queued input resume when they catch up
        self.input_paused = False
        self.paused_sessions: set[Session] = set()
        # message history: kept when there is a store and [history] enabled says so
        self.history: History | None = None
        if store is not None and config.history.enabled:
            self.history = History(self, store, config.history)
            self.add_consumer(self.history.record)
        self._apply_config(config)
        self.inbound = Inbound(self)
        if store is not None:
            self._load_bans(store, now)
            multiclient.restore(self, store, now)
            load_channels(self, store)
        if self.history is not None:
            self._prune_history(now)

    # ------------------------------------------------------------ config
    def _apply_config(self, config: Config) -> None:
        self.config = config
        self.limits = config.limits
        self.server_name = config.server.name
        self.targets = target_limits(config)
        self.isupport = isupport_lines(config, self.targets)
        self.caps_offered = offered_caps(config)
        if self.store is None:  # no authentication layer: neither is offered (sasl-3.2)
            self.caps_offered.pop("sasl", None)
            self.caps_offered.pop("draft/account-registration", None)
        if self.history is None:
            self.caps_offered.pop(CHATHISTORY_CAP, None)
            self.caps_offered.pop(EVENT_PLAYBACK_CAP, None)
            self.caps_offered.pop(READ_MARKER_CAP, None)
            self.caps_offered.pop(REDACTION_CAP, None)
        self.cap_offers = offers(self.caps_offered, self.sts)
        if self.history is not None:
            if config.history.enabled != self.history.config.enabled:
                log.warning("turning history on or off needs a restart")
            self.history.configure(config.history)
            self.isupport = [
                *self.isupport,
                [f"CHATHISTORY={config.history.chathistory_limit}", "MSGREFTYPES=msgid,timestamp"],
            ]
        self.registry.resize_whowas(config.limits.whowas_size)
        self.output.configure(config.server.name, config.limits.sendq)
        self.bans.capacity = config.limits.max_server_bans
        ck = config.cloaking
        if not ck.enabled:
            self.cloaker = None
        elif (
            self.cloaker is None
            or self.cloaker.netname != ck.netname
            or (self.cloaker.v4_bits, self.cloaker.v6_bits) != (ck.cidr_len_ipv4, ck.cidr_len_ipv6)
            or not self.cloaker.same_secret(ck.secret)
        ):
            # users already connected keep the cloak they have
            self.cloaker = Cloaker(ck.secret, ck.netname, ck.cidr_len_ipv4, ck.cidr_len_ipv6)
        if hasattr(self, "inbound"):
            self.inbound.configure()

    def rehash(self, config: Config) -> None:
        """Swap in a reloaded configuration (already validated as a whole). The
        casemapping stays as it started: changing it under live nick and
        channel tables would corrupt them."""
        if config.server.casemapping != self.config.server.casemapping:
            log.warning(
                "casemapping change needs a restart; keeping %s", self.config.server.casemapping
            )
            config = dataclasses.replace(
                config,
                server=dataclasses.replace(
                    config.server, casemapping=self.config.server.casemapping
                ),
            )
        before = self.cap_offers
        self._apply_config(config)
        self._notify_caps(before)

    def set_sts(self, policy: StsPolicy | None) -> None:
        """The STS policy to advertise (the transport side decides it, from the
        listeners and their certificates); cap-notify clients hear the change."""
        if policy == self.sts:
            return
        before = self.cap_offers
        self.sts = policy
        self.cap_offers = offers(self.caps_offered, policy)
        self._notify_caps(before)

    def caps_for(self, sess: Session) -> dict[str, str]:
        """What ``CAP LS`` offers ``sess``: name -> value (``sts`` differs for TLS)."""
        return self.cap_offers[sess.secure]

    def _notify_caps(self, before: tuple[dict[str, str], dict[str, str]]) -> None:
        """The offer changed at runtime: cap-notify clients hear ``CAP NEW`` and
        ``CAP DEL``; a removed capability is disabled for every client that had
        it (cap-notify or not: the server no longer does it)."""
        changes = [cap_changes(old, new) for old, new in zip(before, self.cap_offers, strict=True)]
        if not any(added or removed for added, removed in changes):
            return
        for sess in self.sessions.values():
            if sess.closing is not None:
                continue
            added, removed = changes[sess.secure]
            gone = frozenset(removed)
            if gone & sess.caps:
                set_caps(sess, sess.caps - gone)
            if "cap-notify" in sess.caps:
                head = f":{self.server_name} CAP {sess.name} "
                lines = cap_lines(head + "DEL ", removed) if removed else []
                if added:
                    lines += cap_lines(head + "NEW ", added)
                for line in lines:
                    self.send_line(sess, line)

    @property
    def now(self) -> Now:
        """The time of the call being handled (entry points set it)."""
        return self._now

    def rehash_result(self, sess: Session | None, result: Config | Exception, now: Now) -> None:
        """The transport loaded the configuration file (REHASH, SIGHUP): apply it
        whole, or keep the running one and say why."""
        self._now = now
        if isinstance(result, Exception):
            log.error("REHASH failed, keeping the running configuration: %s", result)
            if sess is not None and sess.closing is None:
                self.server_notice(sess, f"REHASH failed, nothing changed: {result}")
            return
        self.rehash(result)
        log.info("configuration reloaded from %s", result.path or "(embedded defaults)")
        if sess is not None and sess.closing is None:
            self.server_notice(sess, f"Configuration reloaded from {result.path}")

    # ------------------------------------------------------- transport side
    def connect(
        self,
        ip: str,
        now: Now,
        handle: Any = None,
        *,
        secure: bool = False,
        certfp: str | None = None,
    ) -> Session:
        """A new connection. Over a limit, the session comes back already
        closing, with an ERROR queued. ``secure``: the transport is TLS (the
        user gets mode +Z, WHOIS shows 671); ``certfp``: the SHA-256
        fingerprint of its client certificate (lowercase hex; WHOIS 276 to
        itself and opers, SASL EXTERNAL)."""
        self._now = now
        ip = normalize_ip(ip)
        conn_id = self.new_id()
        lim = self.limits
        if self.cloaker is not None:
            host = self.cloaker.cloak(ip)  # the real address reaches no other user
        else:
            # a host that starts with ':' (IPv6 "::1") would break the message grammar
            host = "0" + ip if ip.startswith(":") else ip
        user = User(conn_id, ip, host)
        sess = Session(conn_id, ip, user, now.mono)
        user.sessions = (sess,)
        sess.handle = handle
        sess.secure = secure
        sess.certfp = certfp if secure else None
        sess.tokens = float(lim.flood_burst)
        self.sessions[conn_id] = sess
        count = self.per_ip.get(ip, 0) + 1
        self.per_ip[ip] = count
        log.debug("[%d] connected from %s", conn_id, ip)
        ban = self.bans.match_ip(ip, now.mono) if self.bans.has_dlines else None
        if ban is not None:
            log.info("[%d] refused %s: D-lined (%s)", conn_id, ip, ban.mask)
            self.ban_hit(ban, ip, now)
            self.disconnect(sess, f"D-Lined: {ban.reason}", now)
        elif len(self.sessions) > lim.max_connections:
            log.info("[%d] refused %s: server is full", conn_id, ip)
            self.disconnect(sess, "Server is full", now)
        elif (
            lim.max_connections_per_ip
            and count > lim.max_connections_per_ip
            and not lim.exempt_from_ip_limit(ip)
        ):
            log.info("[%d] refused %s: too many connections from this address", conn_id, ip)
            self.disconnect(sess, "Too many connections from your IP address", now)
        else:
            self.timers.check_at(sess, now.mono + lim.registration_timeout)
        return sess

    def new_id(self) -> int:
        """A connection id, also the uid of the user it starts with (a restored
        always-on user takes one too)."""
        conn_id = self._next_id
        self._next_id += 1
        return conn_id

    def receive_lines(self, sess: Session, lines: list[Line], now: Now, blank: int = 0) -> None:
        """Framed lines from the peer: processed now, or queued when the session
        is over its flood budget or waiting for an operation. ``blank`` empty
        lines came too: they carry nothing but cost flood tokens like any line."""
        self._now = now
        if blank:
            lines = [*lines, *([b""] * min(blank, 1 + self.limits.recvq // 32))]
        sess.recv_lines += len(lines) + blank
        self.inbound.receive_lines(sess, lines, now)
        if self._overflowed:
            self.settle()

    def connection_lost(self, sess: Session, reason: str, now: Now) -> None:
        """The socket closed or failed under us."""
        self._now = now
        if sess.closing is None:
            self.disconnect(sess, reason, now)

    def next_deadline(self) -> float | None:
        """Monotonic time at which ``handle_timers`` has work, or None."""
        return self.timers.next_deadline()

    def handle_timers(self, now: Now) -> None:
        self._now = now
        for item in self.timers.pop_due(now.mono):
            if item.__class__ is tuple:
                sess, fn = item
                if sess is None:  # a server task (ban expiry)
                    try:
                        fn()
                    except Exception:
                        if self.error_log.allow(now.mono):
                            log.exception("server timer %r failed", fn)
                    continue
                if sess.closing is not None:
                    continue
                self.output.begin_response(sess)
                try:
                    fn()
                except Exception:
                    self.output.end_response()
                    self._internal_error(sess, repr(fn), now)
                else:
                    self.output.end_response()
                continue
            if item.closing is not None:
                continue
            try:
                self._check_session(item, now)
            except Exception:
                self._internal_error(item, "session timer", now)
        if self._overflowed:
            self.settle()

    def _check_session(self, sess: Session, now: Now) -> None:
        """Whatever is due for ``sess``: its queued lines, its registration
        deadline, a PING or a ping timeout; then its next check."""
        lim = self.limits
        mono = now.mono
        if sess.drain_at is not None and sess.drain_at <= mono:
            sess.drain_at = None
            self.inbound.drain(sess, now)
            if _closed(sess):
                return
        due: float | None
        if not sess.user.registered:
            due = sess.connected_at + lim.registration_timeout
            if mono >= due:
                self.disconnect(sess, "Registration timed out", now)
                return
        else:
            due = self._ping_due(sess, now)
        if due is None:
            return
        if sess.drain_at is not None:
            due = min(due, sess.drain_at)
        self.timers.check_at(sess, due)

    def _ping_due(self, sess: Session, now: Now) -> float | None:
        """PING an idle client, drop one that did not answer; the next check time
        (None: dropped)."""
        lim = self.limits
        mono = now.mono
        sent = sess.ping_sent
        if sent is not None:
            if sess.last_active >= sent:
                sess.ping_sent = None  # answered (any line counts)
            elif mono - sent >= lim.ping_timeout:
                secs = int(mono - sess.last_active)
                self.disconnect(sess, f"Ping timeout: {secs} seconds", now)
                return None
            else:
                return sent + lim.ping_timeout
        due = sess.last_active + lim.ping_interval
        if mono >= due:
            sess.ping_sent = mono
            self.send_line(sess, f"PING :{self.server_name}")
            return mono + lim.ping_timeout
        return due

    def data_to_send(self) -> list[tuple[Any, bytes, bool]]:
        """Each connection with output: (handle, all its pending bytes, close after)."""
        if self._overflowed:
            self.settle()
        out = self.output.data_to_send()
        history = self.history
        if history is not None:
            return history.gate(out)  # held until the turn's history rows are committed
        return out

    def note_backlog(self, sess: Session, nbytes: int, now: Now) -> None:
        """The transport holds ``nbytes`` unsent for ``sess``; past SendQ it is dropped."""
        self._now = now
        sess.backlog = nbytes
        if nbytes > self.limits.sendq and sess.closing is None:
            self._overflow(sess)

    def ops_to_run(self) -> list[Op]:
        return self.ops.to_run()

    def op_done(self, op: Op, now: Now) -> None:
        """An operation came back from its worker thread."""
        self._now = now
        if not self.ops.finished(op):
            return  # cancelled: its session is gone
        sess = op.session
        if sess is not None:
            self.output.begin_response(sess)  # resumes the command's held response
        try:
            if op.error is not None:
                if self.error_log.allow(now.mono):
                    log.error(
                        "[%s] operation %r failed",
                        sess.conn_id if sess is not None else "-",
                        op,
                        exc_info=op.error,
                    )
                if sess is not None:
                    self.reply(sess, N.ERR_UNKNOWNERROR, "*", "Internal error, try again")
            elif op.then is not None:
                op.then(op.result)
        except Exception:
            if sess is not None:
                self.output.end_response()
                self._internal_error(sess, repr(op), now)
                return
            if self.error_log.allow(now.mono):
                log.exception("completion of %r failed", op)
        if sess is not None:
            self.output.end_response()
        if sess is not None and sess.closing is None and sess.inq:
            self.inbound.drain(sess, now)

    def submit(self, op: Op) -> None:
        self.ops.submit(op)

    def add_to_batch(self, batcher: Batcher, item: Any) -> None:
        self.ops.add_to_batch(batcher, item)

    def request_stop(self, reason: str) -> None:
        if self.stop_requested is None:
            self.stop_requested = reason
            self.requests.append(("stop", reason))

    def take_requests(self) -> list[tuple[str, Any]]:
        reqs = self.requests
        self.requests = []
        return reqs

    def shutdown(self, reason: str, now: Now) -> None:
        """Tell every client and close every connection (SIGINT/SIGTERM, DIE)."""
        self._now = now
        for sess in list(self.sessions.values()):
            if sess.closing is None:
                self.disconnect(sess, reason, now, error=reason)
        if self.history is not None:
            self.history.stop()

    # -------------------------------------------------------------- output
    def server_notice(self, sess: Session, text: str) -> None:
        self.output.send_bytes(
            sess,
            Message("NOTICE", [sess.name, sanitize_text(text)], source=self.server_name).to_bytes(),
        )

    def standard_reply(
        self, sess: Session, kind: str, command: str, code: str, *params: str
    ) -> None:
        """``:server FAIL|WARN|NOTE <command> <code> [<context>...] :<description>``
        (IRCv3 standard-replies; sent to every client, no capability needed).
        ``command`` is ``*`` when the reply belongs to no command; context
        parameters that came from the client are made safe here."""
        *context, description = params
        words = [_word(c) for c in context]
        self.output.send_bytes(
            sess,
            Message(
                kind,
                [command, code, *words, sanitize_text(description) or "-"],
                source=self.server_name,
            ).to_bytes(),
        )

    def fail(self, sess: Session, command: str, code: str, *params: str) -> None:
        self.standard_reply(sess, "FAIL", command, code, *params)

    def warn(self, sess: Session, command: str, code: str, *params: str) -> None:
        self.standard_reply(sess, "WARN", command, code, *params)

    def note(self, sess: Session, command: str, code: str, *params: str) -> None:
        self.standard_reply(sess, "NOTE", command, code, *params)

    def add_consumer(self, consumer: EventConsumer, first: bool = False) -> None:
        """Every event emitted from now on reaches ``consumer`` too (a history
        writer, a publisher to other nodes); local delivery is the first."""
        if first:
            self.consumers.insert(0, consumer)
        else:
            self.consumers.append(consumer)
        self._rebind_emit()

    def remove_consumer(self, consumer: EventConsumer) -> None:
        self.consumers.remove(consumer)
        self._rebind_emit()

    def _rebind_emit(self) -> None:
        consumers = tuple(self.consumers)
        if len(consumers) == 1:
            self.emit = consumers[0]  # the usual case: no loop, no extra call
            return

        def emit(ev: Event) -> None:
            for consumer in consumers:
                consumer(ev)

        self.emit = emit

    def event(
        self,
        actor: User | None,
        command: str,
        params: Sequence[str],
        now: Now,
        audience: int,
        **kw: Any,
    ) -> Event:
        """An event from ``actor`` (None: from the server), stamped and given a msgid."""
        source = actor.source if actor is not None else self.server_name
        return build_event(
            command,
            source,
            params,
            time=now.wall,
            msgid=self.msgid(),
            audience=audience,
            actor=actor,
            **kw,
        )

    def charge(self, sess: Session, tokens: float) -> None:
        self.inbound.charge(sess, tokens)

    def call_at(self, when: float, sess: Session | None, fn: Callable[[], None]) -> None:
        """Run ``fn`` at monotonic time ``when`` unless ``sess`` has closed by then
        (``sess`` None: a server task, run whatever happens; an exception in it is
        logged and stops nothing else)."""
        self.timers.call_at(when, sess, fn)

    # ------------------------------------------------------- server notices
    def snotice(self, letter: str, fmt: str, *args: object) -> None:
        """``:server NOTICE <nick> :*** <LABEL>: <text>`` to every operator whose
        snomask has ``letter`` (see ``registry.SNOMASK_LETTERS``). ``fmt % args`` is
        only formatted when someone gets it: free while nobody watches."""
        watchers = self.registry.sno_watchers[letter]
        if not watchers:
            return
        text = f"*** {_SNO_LABELS[letter]}: {fmt % args if args else fmt}"
        text = truncate_utf8(text, SNOTICE_MAX)  # masks and reasons are long: the line fits
        for user in list(watchers):
            for sess in user.sessions:
                self.server_notice(sess, text)

    # ---------------------------------------------------------- server bans
    def ban_hit(self, ban: ServerBan, who: str, now: Now) -> None:
        """A ban refused someone: tell the ``x`` watchers, at most once per ban
        every ``BAN_HIT_NOTICE_INTERVAL`` seconds (a banned address reconnecting in
        a loop must not flood them), with the count of refusals meanwhile."""
        ban.hits += 1
        if now.mono - ban.noticed_at < BAN_HIT_NOTICE_INTERVAL:
            return
        self.snotice(
            "x",
            "%s-line hit for %s by %s (%d since the last notice): %s",
            ban.kind,
            ban.mask,
            who,
            ban.hits,
            ban.reason,
        )
        ban.noticed_at = now.mono
        ban.hits = 0

    def watch_ban_expiry(self) -> None:
        """Make sure a server timer runs when the next ban ends."""
        when = self.bans.next_expiry()
        if when is None or (self._ban_timer_at is not None and self._ban_timer_at <= when):
            return
        self._ban_timer_at = when

        def expire() -> None:
            if self._ban_timer_at != when:
                return  # superseded by an earlier deadline, which re-armed the timer
            self._ban_timer_at = None
            now = self._now
            for ban in self.bans.expire(now.mono):
                log.info("%s-line for %s expired", ban.kind, ban.mask)
                self.unpersist_ban(ban, None)
                self.snotice(
                    "x",
                    "%s-line for %s expired (set by %s, %s): %s",
                    ban.kind,
                    ban.mask,
                    ban.setter,
                    format_duration(ban.duration),
                    ban.reason,
                )
            self.watch_ban_expiry()

        self.call_at(when, None, expire)

    def _load_bans(self, store: Store, now: Now) -> None:
        """At start: the bans the store holds (it drops those that ended), with
        their wall-time ends turned into monotonic deadlines."""
        loaded = 0
        for rec in store.server_bans(now.wall):
            normalize = {KLINE: normalize_kline, DLINE: normalize_dline}.get(rec.kind)
            mask = normalize(rec.mask) if normalize is not None else None
            if mask is None:
                log.warning("store: skipped a server ban of kind %r on %r", rec.kind, rec.mask)
                continue
            duration = 0 if rec.expires is None else max(1, round(rec.expires - rec.set_at))
            mono = now.mono + (rec.set_at - now.wall)  # so that it ends at rec.expires
            added = self.bans.add(
                rec.kind, mask, duration, rec.reason, rec.setter, mono, rec.set_at
            )
            if added is None:
                log.warning("store: the server ban list is full; later bans were not loaded")
                break
            loaded += 1
        if loaded:
            log.info("%d server ban(s) loaded from the store", loaded)
            self.watch_ban_expiry()

    def persist_ban(self, ban: ServerBan, replaced: ServerBan | None, sess: Session | None) -> None:
        """Write a new (or replacing) ban to the store, if there is one; ``sess``
        (the operator) hears if that failed. The ban is in force either way."""
        record = ServerBanRecord(
            ban.kind,
            ban.mask,
            ban.reason,
            ban.setter,
            ban.set_at,
            ban.set_at + ban.duration if ban.duration else None,
        )
        # a K-line replaced under another spelling (*@Host for *@host) is another row
        stale = replaced.mask if replaced is not None and replaced.mask != ban.mask else None

        def change(store: Store) -> None:
            if stale is not None:
                store.remove_server_ban(ban.kind, stale)
            store.add_server_ban(record)

        self._store_ban_change(sess, f"storing the {ban.kind}-line for {ban.mask}", change)

    def unpersist_ban(self, ban: ServerBan, sess: Session | None) -> None:
        """Delete a removed or expired ban from the store, if there is one."""

        def change(store: Store) -> None:
            store.remove_server_ban(ban.kind, ban.mask)

        self._store_ban_change(sess, f"deleting the {ban.kind}-line for {ban.mask}", change)

    def _store_ban_change(
        self, sess: Session | None, what: str, change: Callable[[Store], None]
    ) -> None:
        store = self.store
        if store is None:
            return

        def run() -> bool:
            return store_call(self, sess, what, change) is not UNAVAILABLE

        def then(ok: bool) -> None:
            if not ok and sess is not None and sess.closing is None:
                self.server_notice(
                    sess,
                    truncate_utf8(
                        f"The store failed {what}: the change is in force but not persisted "
                        "(it is lost at a restart; see the server log)",
                        400,
                    ),
                )

        run.__name__ = what
        # no session on the op: a write is not cancelled when the operator leaves
        self.submit(Op(run, then, None, ordered=False, pool="bans"))

    def pause_input(self) -> None:
        """Stop running clients' lines (they queue, bounded by recvq) until
        :meth:`resume_input`: history's commits are behind the relay."""
        if not self.input_paused:
            self.input_paused = True
            log.warning("history commits are behind: input paused")

    def resume_input(self) -> None:
        if not self.input_paused:
            return
        self.input_paused = False
        sessions, self.paused_sessions = self.paused_sessions, set()
        now = self._now
        for sess in sessions:
            if sess.closing is None and sess.inq:
                self.inbound.drain(sess, now)

    def _prune_history(self, now: Now) -> None:
        """Apply history retention now and every ``prune_interval`` seconds."""
        history = self.history
        assert history is not None

        def done(count: int) -> None:
            if count:
                log.info("history: %d rows past retention deleted", count)

        def again() -> None:
            self._prune_history(self._now)

        self.submit(history.prune_op(now.wall, done))
        self.call_at(now.mono + history.config.prune_interval, None, again)

    def registered(self, sess: Session, now: Now) -> None:
        """Registration completed: the PING clock starts (its pending check, the
        registration deadline, does when that comes first: no second entry), and
        the nick's MONITOR watchers are told."""
        self.timers.check_at(sess, now.mono + self.limits.ping_interval)
        self.monitor.signed_on(sess.user)

    # ------------------------------------------------------ user identity
    def change_host(self, user: User, ident: str, host: str) -> bool:
        """Give ``user`` a new ident and host (checked by the caller) and tell
        everyone who sees it (CHGHOST, or the fallback); False if unchanged."""
        return change_host(self, user, ident, host, self._now)

    def account_changed(self, user: User, account: str | None) -> bool:
        """``user`` logged in to ``account`` (None: out): ACCOUNT to those who
        see it; False if unchanged. A login gives the auto-modes of the
        registered channels the user is in."""
        if not account_changed(self, user, account, self._now):
            return False
        if account is not None and user.registered:
            logged_in(self, user, self._now)
        return True

    # ------------------------------------------------------------- lookups
    def find_user(self, nick: str) -> User | None:
        return self.registry.nicks.get(self.fold(nick))

    def find_channel(self, name: str) -> Channel | None:
        return self.registry.channels.get(self.fold(name))

    def is_channel_name(self, name: str) -> bool:
        return bool(name) and name[0] in "#&"

    def valid_channel_name(self, name: str) -> bool:
        if not self.is_channel_name(name) or len(name) < 2:
            return False
        if len(name.encode("utf-8")) > self.limits.channellen:
            return False
        return not any(c in name for c in " ,\x07\x00\r\n:")

    def matches_list(self, chan: Channel, mode: str, user: User) -> bool:
        entries = chan.lists[mode]
        if not entries:
            return False
        full = user.source
        cm = self.config.server.casemapping
        return any(mask_matches(e.mask, full, cm) for e in entries)

    def is_banned(self, chan: Channel, user: User) -> bool:
        return self.matches_list(chan, "b", user) and not self.matches_list(chan, "e", user)

    def _wallops_users(self) -> list[User]:
        return list(self.registry.wallops)

    # ----------------------------------------------------------- lifecycle
    def disconnect(self, sess: Session, reason: str, now: Now, error: str | None = None) -> None:
        """Remove a session everywhere, tell its channels (QUIT), queue ERROR and
        mark it for closing. Idempotent."""
        if sess.closing is not None:
            return
        sess.closing = reason  # from here on nothing more is queued for it ...
        self._teardown(sess, reason, now, error)

    def _teardown(self, sess: Session, reason: str, now: Now, error: str | None = None) -> None:
        user = sess.user
        self.monitor.forget(sess)
        was_online = user.registered
        # the last session of an always-on user goes: the user stays (multiclient)
        stays = was_online and user.always_on and len(user.sessions) <= 1
        if was_online and len(user.sessions) == 1 and not stays:
            self.emit(self.event(user, "QUIT", [reason], now, PEERS, trailing=True))
        if len(user.sessions) <= 1 and not stays:
            self.registry.remove_user(user, now.wall)
            if was_online:
                self.monitor.signed_off(user.nick_folded, user.nick)
                multiclient.user_gone(self, user)
        if was_online:
            self.snotice(
                "q",
                "Client exiting: %s (%s@%s) [%s] [%s]",
                user.nick,
                user.ident,
                user.host,
                sess.ip,
                reason,
            )
        # ... but its ERROR
        self.output.final_line(sess, f"ERROR :{error or f'Closing Link: {user.host} ({reason})'}")
        user.sessions = tuple(s for s in user.sessions if s is not sess)
        if stays and not user.sessions:
            multiclient.detached(self, user, now)
        self.sessions.pop(sess.conn_id, None)
        sess.inq = None
        sess.client_batch = None  # an unfinished batch is dropped, never relayed
        left = self.per_ip.get(sess.ip, 1) - 1
        if left > 0:
            self.per_ip[sess.ip] = left
        else:
            self.per_ip.pop(sess.ip, None)
        log.info("[%d] closed %s (%s): %s", sess.conn_id, user.nick or "*", sess.ip, reason)

    def _overflow(self, sess: Session) -> None:
        """SendQ exceeded while output was built or waited: the client is dropped.
        Output to it stops at once; its QUIT and removal wait for the end of the
        current call (``settle``), because we may be in the middle of delivering
        an event to a channel it is a member of."""
        if sess.closing is not None:
            return
        self.output.discard(sess)
        sess.backlog = 0
        sess.closing = "Max SendQ exceeded"
        self._overflowed.append(sess)

    def settle(self) -> None:
        """Finish what had to wait for the end of a call (SendQ drops)."""
        while self._overflowed:
            pending, self._overflowed = self._overflowed, []
            for sess in pending:
                self.snotice("f", "Max SendQ exceeded: %s (%s) dropped", sess.user.prefix, sess.ip)
                self._teardown(sess, "Max SendQ exceeded", self._now)

    def _internal_error(self, sess: Session, what: str, now: Now) -> None:
        if self.error_log.allow(now.mono):
            log.exception("[%d] %s failed; closing the session", sess.conn_id, what)
        self.disconnect(sess, "Internal error", now)

    def _member_added(self, chan: Channel, user: User) -> None:
        self.output.member_added(chan, user)
        if user.always_on:
            multiclient.channels_changed(self, user)

    def _member_removed(self, chan: Channel, user: User) -> None:
        self.output.member_removed(chan, user)
        if user.always_on:
            multiclient.channels_changed(self, user, leaving=chan)

    # ------------------------------------------------------------ dispatch
    def dispatch(self, sess: Session, msg: Message, now: Now) -> None:
        """Check the command table once, then call the handler inside the
        session's response buffer (labeled when the command has a label). While
        the session has a batch open, the batch sees the line first."""
        command = msg.command
        spec = self.commands.get(command)
        if spec is None and not command.isupper():
            command = msg.command = command.upper()  # commands are case-insensitive
            spec = self.commands.get(command)
        output = self.output
        output.responding = sess  # the response buffer (see Output)
        if msg.tags and "label" in msg.tags:
            output.label = _label(sess, msg.tags["label"])
        user = sess.user
        try:
            batch = sess.client_batch
            if batch is not None and batch.take(self, sess, msg, now):
                pass  # a line of the batch the client has open (draft/multiline)
            elif spec is None:
                if user.registered:
                    self.reply(sess, N.ERR_UNKNOWNCOMMAND, _word(command), "Unknown command")
                else:
                    self.reply(sess, N.ERR_NOTREGISTERED, "You have not registered")
            else:
                self.command_counts[command] += 1  # STATS m: known commands only
                if not user.registered and not spec.before_registration:
                    self.reply(sess, N.ERR_NOTREGISTERED, "You have not registered")
                elif len(msg.params) < spec.min_params:
                    self.reply(sess, N.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
                elif spec.oper_only and user.oper_name is None:
                    self.reply(
                        sess, N.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator"
                    )
                else:
                    if spec.resets_idle:
                        user.idle_since = now.mono
                    spec.handler(self, sess, msg, now)
        except Exception:
            output.end_response()
            self._internal_error(sess, f"handler for {command}", now)
            return
        if output._response or output.label is not None or sess.busy:
            output.end_response()
        else:
            output.responding = None


def _label(sess: Session, label: str) -> str | None:
    """A command's label, used when the session negotiated labeled-response and
    batch (which it depends on) and the label is a valid one: not empty and at
    most 64 bytes, as the specification bounds it. Otherwise the command runs
    unlabeled."""
    caps = sess.caps
    if "labeled-response" not in caps or "batch" not in caps:
        return None
    if not label or len(label) > 64 or len(label.encode("utf-8")) > 64:
        return None
    return label


BAN_HIT_NOTICE_INTERVAL = 10.0  # seconds between two "ban hit" notices for one ban
SNOTICE_MAX = 400  # bytes of a server notice's text

_SNO_LABELS = {
    "c": "CONNECT",
    "f": "FLOOD",
    "k": "KILL",
    "o": "OPER",
    "q": "QUIT",
    "x": "BANS",
}


def _word(text: str) -> str:
    """Client input echoed as a middle parameter, made safe."""
    return "*" if not text or " " in text or text[0] == ":" else text


def normalize_ip(ip: str) -> str:
    """``::ffff:1.2.3.4`` -> ``1.2.3.4`` (a dual-stack listener's IPv4 clients),
    so masks and per-IP limits see the same address either way."""
    if ip.startswith("::ffff:") and "." in ip:
        try:
            mapped = ipaddress.IPv6Address(ip).ipv4_mapped
        except ValueError:
            return ip
        if mapped is not None:
            return str(mapped)
    return ip


def _closed(sess: Session) -> bool:
    """Whether a call closed the session (a call, so type narrowing forgets)."""
    return sess.closing is not None
