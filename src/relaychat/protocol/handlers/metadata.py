"""IRCv3 metadata: the ``draft/metadata-2`` capability and the METADATA command.

Theory of operation
-------------------
The revision implemented is the published ``draft/metadata-2`` one (ircv3.net,
extensions/metadata): capability tokens ``before-connect``, ``max-subs``,
``max-keys``, ``max-value-bytes``; numerics 761 RPL_KEYVALUE, 766 RPL_KEYNOTSET,
770-772 (SUB OK, UNSUB OK, SUBS, keys in a trailing parameter), 774
RPL_METADATASYNCLATER; ``FAIL METADATA`` codes INVALID_TARGET, KEY_INVALID,
KEY_NO_PERMISSION, KEY_NOT_SET, LIMIT_REACHED, RATE_LIMITED, SUBCOMMAND_INVALID,
TOO_MANY_SUBS, VALUE_INVALID; ``metadata`` batches (parameter: the target) and a
``metadata-subs`` batch for SUBS; ``METADATA <target> <key> <visibility> [:<value>]``
notifications (no value: the key was removed).

State: a user's and a channel's keys are a dict on :class:`User` /
:class:`Channel` (None until the first key), changed only through the registry
(``set_metadata``/``clear_metadata``), dropped when the user leaves or the
channel is destroyed. What a connection subscribed to and its budgets are a
:class:`MetadataState` on its :class:`Session`, made by its first METADATA
command. Every key is visible to everyone who may see its target (visibility
``*``); a user's keys are set by that user, a channel's by its operators.

Bounds (every reply is bounded by its request and by the configuration):

* a key is ``[a-z0-9_./-]``, at most :data:`KEY_MAX_BYTES`; a value at most
  ``metadata.max_value_bytes`` and short enough that every line carrying it fits
  in 512 bytes (whatever the recipient's nick);
* at most ``metadata.max_keys`` keys per target and ``metadata.max_subs``
  subscriptions per connection, so LIST and SUBS are bounded; GET answers each
  key it was asked once;
* SETs spend a per-connection token bucket (``change_rate``/``change_burst``):
  past it, ``FAIL METADATA RATE_LIMITED`` with the seconds to wait, so one
  client cannot make its channels' members a fan-out target;
* a synchronisation (SYNC, the one a JOIN sends, the one a SUB sends) is counted
  before it is built and spends a per-connection budget of lines
  (``sync_rate``/``sync_burst``); over it, or over half the SendQ in bytes,
  ``774 RPL_METADATASYNCLATER <target> <seconds>`` instead. Walking a channel's
  members costs flood tokens as NAMES does.

Errors are checked before anything changes: a SET or CLEAR that fails changes
nothing. SUB applies the keys before the one that hit ``max-subs``, as the
specification says.

Notifications go to the sessions that get updates about the target (a
channel's members; the users who share a channel with a user, and the user's
other sessions), that have the capability and subscribed to the key, except
the session that made the change. They are built once as an
:class:`~relaychat.protocol.events.Event` and written by :func:`_deliver`
(serialised once per variant); that function is the seam to switch to
``core.emit`` once events can filter receivers by subscription.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.caps import METADATA_CAP
from relaychat.protocol.events import MAX_RELAY_LINE, USER, Event
from relaychat.protocol.handlers.common import channel_visible, safe_param
from relaychat.protocol.message import Message, pack
from relaychat.protocol.output import common_peers
from relaychat.protocol.state import Channel, MetadataState, User

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

__all__ = ["handle_metadata", "send_own_metadata", "sync_after_join", "valid_key"]

VISIBILITY = "*"  # every key is visible to everyone who may see its target
KEY_MAX_BYTES = 64  # a longer key is KEY_INVALID: key and value share one line
_KEY = re.compile(r"[a-z0-9_./-]+\Z")
_MEMBERS_PER_TOKEN = 200  # walking a channel's members costs flood tokens, as NAMES
_SYNC_LINE_OVERHEAD = 24  # bytes a synced line adds to its parts (tag, spaces, CRLF)

Owner = User | Channel


def valid_key(key: str) -> bool:
    """A key name: ``a-z``, ``0-9`` and ``_./-``, at most :data:`KEY_MAX_BYTES`."""
    return len(key) <= KEY_MAX_BYTES and _KEY.match(key) is not None


# METADATA <target> <subcommand> [<param>...]
def handle_metadata(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    if not sess.user.registered and not core.config.metadata.before_connect:
        core.reply(sess, N.ERR_NOTREGISTERED, "You have not registered")
        return
    target, sub = msg.params[0], msg.params[1]
    handler = _SUBCOMMANDS.get(sub.upper())
    if handler is None:
        core.fail(sess, "METADATA", "SUBCOMMAND_INVALID", safe_param(sub), "invalid subcommand")
        return
    handler(core, sess, target, msg.params[2:], now)


# ----------------------------------------------------------------- targets
def _resolve(core: ServerCore, sess: Session, target: str) -> Owner | None:
    """The user or channel ``target`` names, or None (INVALID_TARGET sent). ``*``
    is the asker; before registration it is the only valid target. A secret
    channel is no target for a non-member."""
    user = sess.user
    if target == "*":
        return user
    found: Owner | None = None
    if user.registered:
        if core.is_channel_name(target):
            chan = core.find_channel(target)
            if chan is not None and channel_visible(user, chan):
                found = chan
        else:
            found = core.find_user(target)
    if found is None:
        core.fail(sess, "METADATA", "INVALID_TARGET", safe_param(target), "invalid metadata target")
    return found


def _name(owner: Owner) -> str:
    return owner.name if isinstance(owner, Channel) else owner.nick or "*"


def _may_edit(user: User, owner: Owner) -> bool:
    """A user sets its own keys; a channel's operators set the channel's."""
    if isinstance(owner, Channel):
        return owner.is_op(user)
    return owner is user


def _state(core: ServerCore, sess: Session, now: Now) -> MetadataState:
    state = sess.metadata
    if state is None:
        meta = core.config.metadata
        state = sess.metadata = MetadataState(
            float(meta.change_burst), float(meta.sync_burst), now.mono
        )
    return state


def _subs(sess: Session) -> set[str] | frozenset[str]:
    state = sess.metadata
    subs = state.subs if state is not None else None
    return subs if subs is not None else frozenset()


def _need_params(core: ServerCore, sess: Session, args: list[str]) -> bool:
    if args:
        return True
    core.reply(sess, N.ERR_NEEDMOREPARAMS, "METADATA", "Not enough parameters")
    return False


def _send(core: ServerCore, sess: Session, line: Message) -> None:
    core.output.send_bytes(sess, line.to_bytes())


def _fail_line(core: ServerCore, code: str, *params: str) -> Message:
    return Message("FAIL", ["METADATA", code, *params], source=core.server_name)


def _numeric_line(core: ServerCore, sess: Session, numeric: str, *params: str) -> Message:
    return Message(numeric, [sess.name, *params], source=core.server_name)


def _keyvalue(core: ServerCore, sess: Session, name: str, key: str, value: str | None) -> Message:
    """761 with the value; without one (the key was removed or cleared)."""
    tail = [VISIBILITY] if value is None else [VISIBILITY, value]
    return _numeric_line(core, sess, N.RPL_KEYVALUE, name, key, *tail)


# ------------------------------------------------------------------ batches
def _send_batch(
    core: ServerCore, sess: Session, kind: str, params: list[str], lines: Iterable[Message]
) -> None:
    """``BATCH +ref <kind> <params>``, each line tagged ``batch=ref``, ``BATCH -ref``;
    the bare lines to a session without the ``batch`` capability. The one place
    this module opens a batch, to be switched to the output layer's batch helper.
    Stops as soon as the session is dropped (SendQ), so a long batch is never
    built for nobody."""
    send = core.output.send_bytes
    server = core.server_name
    if "batch" not in sess.caps:
        for line in lines:
            send(sess, line.to_bytes())
            if sess.closing is not None:
                return
        return
    ref = core.output.batch_ref().decode()
    send(sess, Message("BATCH", ["+" + ref, kind, *params], source=server).to_bytes())
    tag = {"batch": ref}
    for line in lines:
        line.tags = tag
        send(sess, line.to_bytes())
        if sess.closing is not None:
            return
    send(sess, Message("BATCH", ["-" + ref], source=server).to_bytes())


def _key_lists(core: ServerCore, sess: Session, numeric: str, keys: list[str]) -> list[Message]:
    """``numeric`` lines listing ``keys`` in a trailing parameter, each line within
    512 bytes."""
    room = MAX_RELAY_LINE - 2 - len(f":{core.server_name} {numeric} {sess.name} :".encode())
    return [_numeric_line(core, sess, numeric, chunk) for chunk in pack(keys, room)]


# ---------------------------------------------------------------- GET, LIST
# METADATA <target> GET <key> [<key>...]
def _get(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    if not _need_params(core, sess, args):
        return
    owner = _resolve(core, sess, target)
    if owner is None:
        return
    name = _name(owner)
    values = owner.metadata or {}
    lines: list[Message] = []
    for key in dict.fromkeys(args):  # each key once, in the order asked
        if not valid_key(key):
            lines.append(_fail_line(core, "KEY_INVALID", safe_param(key), "invalid key"))
        elif key in values:
            lines.append(_keyvalue(core, sess, name, key, values[key]))
        else:
            lines.append(_numeric_line(core, sess, N.RPL_KEYNOTSET, name, key, "key not set"))
    _send_batch(core, sess, "metadata", [name], lines)


# METADATA <target> LIST
def _list(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    owner = _resolve(core, sess, target)
    if owner is None:
        return
    name = _name(owner)
    values = owner.metadata or {}
    lines = [_keyvalue(core, sess, name, k, v) for k, v in values.items()]
    _send_batch(core, sess, "metadata", [name], lines)


# --------------------------------------------------------------- SET, CLEAR
# METADATA <target> SET <key> [:<value>]
def _set(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    if not _need_params(core, sess, args):
        return
    owner = _resolve(core, sess, target)
    if owner is None:
        return
    key = args[0]
    value = args[1] if len(args) > 1 else None
    name = _name(owner)
    if not valid_key(key):
        core.fail(sess, "METADATA", "KEY_INVALID", safe_param(key), "invalid key")
        return
    if not _may_edit(sess.user, owner):
        core.fail(sess, "METADATA", "KEY_NO_PERMISSION", name, key, "permission denied")
        return
    current = owner.metadata or {}
    if value is None:
        if key not in current:
            core.fail(sess, "METADATA", "KEY_NOT_SET", name, key, "key not set")
            return
    else:
        if not _value_fits(core, owner, key, value):
            core.fail(sess, "METADATA", "VALUE_INVALID", "value is too long")
            return
        if key not in current and len(current) >= core.config.metadata.max_keys:
            core.fail(sess, "METADATA", "LIMIT_REACHED", name, "metadata limit reached")
            return
    if current.get(key) == value:
        # already so: confirmed, nothing changes, nobody is told
        _send(core, sess, _keyvalue(core, sess, name, key, value))
        return
    wait = _spend_change(core, sess, now)
    if wait:
        shown = value if value is not None and _word_fits(value) else "*"
        core.fail(sess, "METADATA", "RATE_LIMITED", name, key, str(wait), shown, "too many changes")
        return
    core.registry.set_metadata(owner, key, value)
    _send(core, sess, _keyvalue(core, sess, name, key, value))
    _notify(core, sess, owner, key, value, now)


def _value_fits(core: ServerCore, owner: Owner, key: str, value: str) -> bool:
    """At most ``max_value_bytes``, and the longest line that will carry it fits:
    ``:server 761 <nick> <target> <key> * :<value>`` for a recipient with the
    longest nick possible (a user target's nick may grow to that too), or
    ``:server METADATA <target> <key> * :<value>`` when that is longer."""
    size = len(value.encode())
    if size > core.config.metadata.max_value_bytes:
        return False
    nicklen = core.limits.nicklen
    target = nicklen if isinstance(owner, User) else len(owner.name.encode())
    head = len(core.server_name.encode()) + len(key) + target + 12 + max(nicklen, 4)
    return head + size + 2 <= MAX_RELAY_LINE


def _word_fits(value: str) -> bool:
    """Whether a value may be echoed as a middle parameter of a short reply."""
    return bool(value) and " " not in value and value[0] != ":" and len(value) <= 100


def _spend_change(core: ServerCore, sess: Session, now: Now) -> int:
    """Take one change token: 0, or the whole seconds until one is there."""
    meta = core.config.metadata
    state = _state(core, sess, now)
    elapsed = now.mono - state.change_at
    state.change_at = now.mono
    tokens = min(
        float(meta.change_burst), state.change_tokens + max(elapsed, 0.0) * meta.change_rate
    )
    if tokens >= 1.0:
        state.change_tokens = tokens - 1.0
        return 0
    state.change_tokens = tokens
    return max(1, math.ceil((1.0 - tokens) / meta.change_rate))


# METADATA <target> CLEAR
def _clear(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    owner = _resolve(core, sess, target)
    if owner is None:
        return
    name = _name(owner)
    if not _may_edit(sess.user, owner):
        core.fail(sess, "METADATA", "KEY_NO_PERMISSION", name, "*", "permission denied")
        return
    removed = core.registry.clear_metadata(owner)
    _send_batch(
        core, sess, "metadata", [name], [_keyvalue(core, sess, name, k, None) for k in removed]
    )
    for key in removed:
        _notify(core, sess, owner, key, None, now)


# ----------------------------------------------------------- notifications
def _notify(
    core: ServerCore, origin: Session, owner: Owner, key: str, value: str | None, now: Now
) -> None:
    """``METADATA <target> <key> * [:<value>]`` to whoever gets updates about
    ``owner``, has the capability and subscribed to ``key``; never to ``origin``."""
    params = [_name(owner), key, VISIBILITY]
    if value is not None:
        params.append(value)
    ev = core.event(None, "METADATA", params, now, USER)
    users: Iterable[User]
    if isinstance(owner, Channel):
        users = owner.members
    else:
        users = common_peers(owner, include_self=True)
    _deliver(core, ev, users, lambda s: s is not origin and key in _subs(s))


def _deliver(
    core: ServerCore, ev: Event, users: Iterable[User], wants: Callable[[Session], bool]
) -> None:
    """Write ``ev`` to the sessions of ``users`` with the capability that ``wants``,
    serialised once per variant. Local delivery only, for now: the seam to
    replace with ``core.emit`` when an event can carry a receiver filter."""
    cache: list[bytes | None] = [None, None, None, None]
    send = core.output.send_bytes
    for user in users:
        for s in user.sessions:
            if s.closing is not None or METADATA_CAP not in s.caps or not wants(s):
                continue
            data = cache[s.variant]
            if data is None:
                data = cache[s.variant] = ev.for_variant(s.variant)
            send(s, data)


# -------------------------------------------------------------- SUB, UNSUB
# METADATA * SUB <key> [<key>...]
def _sub(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    if not _need_params(core, sess, args) or not _self_target(core, sess, target):
        return
    state = _state(core, sess, now)
    subs = state.subs if state.subs is not None else set()
    limit = core.config.metadata.max_subs
    ok: list[str] = []
    added: set[str] = set()
    for key in args:
        if not valid_key(key):
            core.fail(sess, "METADATA", "KEY_INVALID", safe_param(key), "invalid key")
            continue
        if key not in subs:
            if len(subs) >= limit:
                core.fail(sess, "METADATA", "TOO_MANY_SUBS", key, "too many subscriptions")
                break
            subs.add(key)
            added.add(key)
        ok.append(key)
    state.subs = subs or None
    for line in _key_lists(core, sess, N.RPL_METADATASUBOK, ok):
        _send(core, sess, line)
    if added and sess.user.registered:
        # "clients SHOULD receive the current value of that key for channels/users
        # they are receiving updates for": each channel, as its own batch
        for chan in list(sess.user.channels.values()):
            _sync(core, sess, chan, now, only=added, skip_empty=True)
            if sess.closing is not None:
                return


# METADATA * UNSUB <key> [<key>...]
def _unsub(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    if not _need_params(core, sess, args) or not _self_target(core, sess, target):
        return
    state = sess.metadata
    subs = state.subs if state is not None else None
    ok: list[str] = []
    for key in args:
        if not valid_key(key):
            core.fail(sess, "METADATA", "KEY_INVALID", safe_param(key), "invalid key")
            continue
        if subs is not None:
            subs.discard(key)
        ok.append(key)
    if state is not None and not subs:
        state.subs = None
    for line in _key_lists(core, sess, N.RPL_METADATAUNSUBOK, ok):
        _send(core, sess, line)


# METADATA * SUBS
def _subs_list(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    if not _self_target(core, sess, target):
        return
    keys = sorted(_subs(sess))
    _send_batch(core, sess, "metadata-subs", [], _key_lists(core, sess, N.RPL_METADATASUBS, keys))


def _self_target(core: ServerCore, sess: Session, target: str) -> bool:
    """SUB, UNSUB and SUBS are about the asker: ``*`` or its own nick."""
    nick = sess.user.nick_folded
    if target == "*" or (sess.user.registered and core.fold(target) == nick):
        return True
    core.fail(sess, "METADATA", "INVALID_TARGET", safe_param(target), "invalid metadata target")
    return False


# --------------------------------------------------------------------- SYNC
# METADATA <target> SYNC
def _sync_cmd(core: ServerCore, sess: Session, target: str, args: list[str], now: Now) -> None:
    owner = _resolve(core, sess, target)
    if owner is not None:
        _sync(core, sess, owner, now)


def sync_after_join(core: ServerCore, sess: Session, chan: Channel, now: Now) -> None:
    """After a JOIN: the channel's metadata and its members', for the keys the
    joiner subscribed to (a batch, or 774 when over budget). Nothing for a
    session without the capability or without subscriptions."""
    if METADATA_CAP in sess.caps and _subs(sess):
        _sync(core, sess, chan, now)


def _sync(
    core: ServerCore,
    sess: Session,
    owner: Owner,
    now: Now,
    only: set[str] | None = None,
    skip_empty: bool = False,
) -> None:
    """A ``metadata`` batch of ``METADATA`` lines: ``owner``'s subscribed keys and,
    for a channel, those of the members the asker may see. Counted first; over
    the connection's sync budget: 774 with the seconds to wait."""
    subs = _subs(sess)
    keys = subs if only is None else only
    name = _name(owner)
    if isinstance(owner, Channel):
        core.charge(sess, len(owner.members) / _MEMBERS_PER_TOKEN)
    count = size = 0
    if keys:
        for target, key, value in _entries(sess, owner, keys):
            count += 1
            size += len(target) + len(key) + len(value.encode()) + _SYNC_LINE_OVERHEAD
    if count == 0 and skip_empty:
        return
    if count:
        wait = _spend_sync(core, sess, count, size, now)
        if wait:
            core.reply(sess, N.RPL_METADATASYNCLATER, name, str(wait))
            return
    server = core.server_name
    lines = (
        Message("METADATA", [target, key, VISIBILITY, value], source=server)
        for target, key, value in _entries(sess, owner, keys)
    )
    _send_batch(core, sess, "metadata", [name], lines)


def _entries(
    sess: Session, owner: Owner, keys: set[str] | frozenset[str]
) -> Iterator[tuple[str, str, str]]:
    """(target, key, value) for ``keys`` set on ``owner`` and, for a channel, on
    its members (a non-member does not see invisible members, as with NAMES)."""
    yield from _pairs(_name(owner), owner.metadata, keys)
    if isinstance(owner, Channel):
        member_of = sess.user in owner.members
        for member in owner.members:
            if member.metadata and (member_of or "i" not in member.modes):
                yield from _pairs(member.nick or "*", member.metadata, keys)


def _pairs(
    name: str, values: dict[str, str] | None, keys: set[str] | frozenset[str]
) -> Iterator[tuple[str, str, str]]:
    if not values:
        return
    if len(keys) < len(values):
        for key in keys:
            value = values.get(key)
            if value is not None:
                yield name, key, value
    else:
        for key, value in values.items():
            if key in keys:
                yield name, key, value


def _spend_sync(core: ServerCore, sess: Session, count: int, size: int, now: Now) -> int:
    """Spend ``count`` lines of the sync budget: 0, or the seconds to wait. A sync
    larger than the burst goes when the budget is full; one over half the SendQ
    never does (the client is told to try later rather than dropped)."""
    meta = core.config.metadata
    state = _state(core, sess, now)
    elapsed = now.mono - state.sync_at
    state.sync_at = now.mono
    burst = float(meta.sync_burst)
    tokens = min(burst, state.sync_tokens + max(elapsed, 0.0) * meta.sync_rate)
    state.sync_tokens = tokens
    if size > core.limits.sendq // 2:
        return max(1, math.ceil(burst / meta.sync_rate))
    if count <= tokens or tokens >= burst:
        state.sync_tokens = tokens - count
        return 0
    return max(1, math.ceil((min(count, burst) - tokens) / meta.sync_rate))


# ------------------------------------------------------------- registration
def send_own_metadata(core: ServerCore, sess: Session) -> None:
    """Part of the welcome burst for a client with the capability: a ``metadata``
    batch with its own nick as target holding its keys (those set before
    registration completed), empty when there are none."""
    if METADATA_CAP not in sess.caps:
        return
    user = sess.user
    name = _name(user)
    server = core.server_name
    lines = [
        Message("METADATA", [name, key, VISIBILITY, value], source=server)
        for key, value in (user.metadata or {}).items()
    ]
    _send_batch(core, sess, "metadata", [name], lines)


_Subcommand = Callable[["ServerCore", "Session", str, list[str], "Now"], None]

_SUBCOMMANDS: dict[str, _Subcommand] = {
    "GET": _get,
    "LIST": _list,
    "SET": _set,
    "CLEAR": _clear,
    "SUB": _sub,
    "UNSUB": _unsub,
    "SUBS": _subs_list,
    "SYNC": _sync_cmd,
}
