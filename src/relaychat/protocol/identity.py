"""How others see a user: its JOIN (extended-join), its host (chghost) and its
account (account-notify), and the events that tell them of a change.

Several events that share one ``msgid`` (and time) are *renderings* of one
happening for different capability sets: a JOIN is a plain ``JOIN #chan`` to the
members without ``extended-join`` (``nocap``) and ``JOIN #chan <account|*>
:<realname>`` to those with it (``cap``); a host change is ``CHGHOST`` to the
peers with ``chghost`` and, to those without it, the spec's fallback (a QUIT,
then in every shared channel a JOIN, the member's status back as a MODE from the
server, and AWAY for away-notify), none of it sent to the user itself. A
consumer that stores history keeps one event per msgid.

The functions here are what other code calls to change these (an oper's
CHGHOST, IP cloaking, an account system): ``change_host`` and
``account_changed`` (also ``ServerCore.change_host`` / ``account_changed``).
Before registration they only set the fields: nobody is told of a user that is
not on the network yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relaychat.protocol.events import CHANNEL, ECHO_ALWAYS, PEERS, Event, build_event

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, User
    from relaychat.protocol.timebase import Now

__all__ = ["account_changed", "change_host", "join_events"]

EXTENDED_JOIN = "extended-join"
CHGHOST = "chghost"
FALLBACK_QUIT = "Changing hostname"


def _rendering(
    core: ServerCore, of: Event, actor: User | None, command: str, params: list[str], **kw: Any
) -> Event:
    """Another rendering of ``of``: same msgid and time."""
    source = actor.source if actor is not None else core.server_name
    return build_event(command, source, params, time=of.time, msgid=of.msgid, actor=actor, **kw)


def join_events(core: ServerCore, user: User, chan: Channel, now: Now) -> None:
    """``user`` joined ``chan``: the plain JOIN to members without extended-join,
    the extended one to members with it (the user's own sessions included)."""
    plain = core.event(
        user,
        "JOIN",
        [chan.name],
        now,
        CHANNEL,
        channel=chan,
        echo=ECHO_ALWAYS,
        nocap=(EXTENDED_JOIN,),
    )
    core.emit(plain)
    core.emit(_extended_join(core, plain, user, chan, echo=ECHO_ALWAYS))


def _extended_join(core: ServerCore, of: Event, user: User, chan: Channel, **kw: Any) -> Event:
    """``JOIN #chan <account or *> :<realname>``, a rendering of ``of``."""
    params = [chan.name, user.account or "*", user.realname]
    return _rendering(
        core,
        of,
        user,
        "JOIN",
        params,
        audience=CHANNEL,
        channel=chan,
        cap=EXTENDED_JOIN,
        trailing=True,
        **kw,
    )


def change_host(core: ServerCore, user: User, ident: str, host: str, now: Now) -> bool:
    """Give ``user`` a new ident and host (both already checked) and tell those
    who see it; False if nothing changed.

    CHGHOST (from the old mask) goes to the peers with ``chghost``, the user's own
    sessions with it, and its extended-monitor watchers; the peers without it get
    the fallback. The user's own sessions without ``chghost`` get nothing (a QUIT
    of oneself would read as being disconnected). While users have one session,
    ``origin`` keeps the fallback's channel events from the user; a user with
    several sessions will need a "not the actor" audience for them."""
    if user.ident == ident and user.host == host:
        return False
    if not user.registered:
        user.ident = ident
        user.host = host
        user.update_prefix()
        return True
    ev = core.event(user, "CHGHOST", [ident, host], now, PEERS, cap=CHGHOST, echo=ECHO_ALWAYS)
    quit_ = _rendering(
        core, ev, user, "QUIT", [FALLBACK_QUIT], audience=PEERS, nocap=(CHGHOST,), trailing=True
    )
    user.ident = ident
    user.host = host
    user.update_prefix()
    core.emit(ev)
    core.monitor.relay(ev)
    if not user.channels:
        return True
    core.emit(quit_)
    # one session per user today: it is the one the channel events skip
    origin = user.sessions[0] if user.sessions else None
    for chan in list(user.channels.values()):
        core.emit(
            _rendering(
                core,
                ev,
                user,
                "JOIN",
                [chan.name],
                audience=CHANNEL,
                channel=chan,
                nocap=(EXTENDED_JOIN, CHGHOST),
                origin=origin,
            )
        )
        core.emit(_extended_join(core, ev, user, chan, nocap=(CHGHOST,), origin=origin))
        status = chan.members.get(user, "")
        if status:
            core.emit(
                _rendering(
                    core,
                    ev,
                    None,
                    "MODE",
                    [chan.name, "+" + status, *([user.name] * len(status))],
                    audience=CHANNEL,
                    channel=chan,
                    nocap=(CHGHOST,),
                    origin=origin,
                )
            )
        if user.away is not None:
            core.emit(
                _rendering(
                    core,
                    ev,
                    user,
                    "AWAY",
                    [user.away],
                    audience=CHANNEL,
                    channel=chan,
                    cap="away-notify",
                    nocap=(CHGHOST,),
                    origin=origin,
                    trailing=True,
                )
            )
    return True


def account_changed(core: ServerCore, user: User, account: str | None, now: Now) -> bool:
    """``user`` logged in to ``account`` (None: logged out): ``ACCOUNT <name>`` or
    ``ACCOUNT *`` to the peers with ``account-notify``, the user's own sessions
    with it, and its extended-monitor watchers. False if nothing changed.
    ``account`` is a name the account system checked: one word, not ``*``
    (anything else is a programming error, raised when the line is built)."""
    if user.account == account:
        return False
    user.account = account
    if not user.registered:
        return True
    ev = core.event(
        user, "ACCOUNT", [account or "*"], now, PEERS, cap="account-notify", echo=ECHO_ALWAYS
    )
    core.emit(ev)
    core.monitor.relay(ev)
    return True
