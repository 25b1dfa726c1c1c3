"""How others see a user: its JOIN (extended-join) and its account
(account-notify), and the events that tell them of a change.

Several events that share one ``msgid`` (and time) are *renderings* of one
happening for different capability sets: a JOIN is a plain ``JOIN #chan`` to the
members without ``extended-join`` (``nocap``) and ``JOIN #chan <account|*>
:<realname>`` to those with it (``cap``). A consumer that stores history keeps
one event per msgid.

``account_changed`` (also ``ServerCore.account_changed``) is what an account
system calls. Before registration it only sets the field: nobody is told of a
user that is not on the network yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relaychat.protocol.events import CHANNEL, ECHO_ALWAYS, PEERS, Event, build_event

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Channel, User
    from relaychat.protocol.timebase import Now

__all__ = ["account_changed", "join_events"]

EXTENDED_JOIN = "extended-join"


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


def account_changed(core: ServerCore, user: User, account: str | None, now: Now) -> bool:
    """``user`` logged in to ``account`` (None: logged out): ``ACCOUNT <name>`` or
    ``ACCOUNT *`` to the peers with ``account-notify`` and the user's own
    sessions with it. False if nothing changed.
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
    return True
