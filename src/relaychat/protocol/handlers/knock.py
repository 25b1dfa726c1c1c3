"""KNOCK: ask a closed channel's operators for an invitation.

``KNOCK <channel> [<message>]``, with ratbox/charybdis's numerics (ISUPPORT
``KNOCK``). In order, as charybdis checks:

* no such channel: 403; already on it: 714 ERR_KNOCKONCHAN;
* a channel one could simply join (not ``+i``, no ``+k``, not full under ``+l``):
  713 ERR_CHANOPEN;
* banned (``+b`` not excepted by ``+e``): 474, as Hybrid answers (charybdis sends
  404);
* rate limits: one KNOCK per user every ``limits.knock_delay`` seconds, one per
  channel every ``limits.knock_channel_delay`` seconds (Hybrid's and charybdis's
  ``knock_delay`` and ``knock_delay_channel``): 712 ERR_TOOMANYKNOCK, naming
  which. Only a delivered KNOCK counts.

Delivered: the channel's operators get ``:server 710 <channel> <channel>
<nick!user@host> :has asked for an invite`` (RPL_KNOCK as charybdis sends it,
with the channel where a nick usually is, so it is one line for all of them),
with the message appended when one was given; the knocker gets 711
RPL_KNOCKDLVR. A ``+s`` channel can be knocked on by a user who knows its name:
JOIN already tells such a user that it exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.events import CHANNEL
from relaychat.protocol.handlers.common import safe_param
from relaychat.protocol.message import truncate_utf8

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

__all__ = ["handle_knock"]

MESSAGE_MAX = 200  # bytes of a KNOCK's message


# KNOCK <channel> [<message>]
def handle_knock(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    name = msg.params[0]
    chan = core.find_channel(name)
    if chan is None:
        core.reply(sess, N.ERR_NOSUCHCHANNEL, safe_param(name), "No such channel")
        return
    user = sess.user
    if user in chan.members:
        core.reply(sess, N.ERR_KNOCKONCHAN, chan.name, "You are already on that channel")
        return
    full = chan.limit is not None and len(chan.members) >= chan.limit
    if "i" not in chan.modes and chan.key is None and not full:
        core.reply(sess, N.ERR_CHANOPEN, chan.name, "Channel is open")
        return
    if core.is_banned(chan, user):
        core.reply(sess, N.ERR_BANNEDFROMCHAN, chan.name, "Cannot knock on channel (+b)")
        return
    lim = core.limits
    mono = now.mono
    if core.knock_users.wait(user.uid, mono, lim.knock_delay) > 0:
        core.reply(sess, N.ERR_TOOMANYKNOCK, chan.name, "Too many KNOCKs (user)")
        return
    if core.knock_channels.wait(chan.cid, mono, lim.knock_channel_delay) > 0:
        core.reply(sess, N.ERR_TOOMANYKNOCK, chan.name, "Too many KNOCKs (channel)")
        return
    core.knock_users.hit(user.uid, mono, lim.knock_delay)
    core.knock_channels.hit(chan.cid, mono, lim.knock_channel_delay)
    text = "has asked for an invite"
    if len(msg.params) > 1 and msg.params[1].strip():
        text += ": " + truncate_utf8(msg.params[1], MESSAGE_MAX)
    core.emit(
        core.event(
            None,
            N.RPL_KNOCK,
            [chan.name, chan.name, user.source, text],
            now,
            CHANNEL,
            channel=chan,
            status="o",
            trailing=True,
        )
    )
    core.reply(sess, N.RPL_KNOCKDLVR, chan.name, "Your KNOCK has been delivered")
