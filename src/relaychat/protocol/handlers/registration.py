"""Connection registration and upkeep: CAP, PASS, NICK, USER, PING, PONG, QUIT,
and the welcome burst that ends registration."""

from __future__ import annotations

import hmac
import logging
import re
from typing import TYPE_CHECKING

from relaychat import __version__
from relaychat.protocol import numerics as N
from relaychat.protocol.accounts import check_nick
from relaychat.protocol.caps import INFORMATIONAL_CAPS, SECURE_MODE, cap_lines, set_caps
from relaychat.protocol.events import ECHO_ALWAYS, PEERS
from relaychat.protocol.handlers.channel import send_names, send_topic
from relaychat.protocol.handlers.common import parse_int, safe_param
from relaychat.protocol.handlers.metadata import send_own_metadata
from relaychat.protocol.handlers.serverbans import refuse_if_klined
from relaychat.protocol.handlers.serverinfo import send_lusers, send_motd
from relaychat.protocol.history import CHATHISTORY_CAP, replay_missed
from relaychat.protocol.message import Message, truncate_utf8
from relaychat.protocol.multiclient import add_session, logged_in, owner_to_attach
from relaychat.protocol.readmarkers import adopt, send_on_join

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Session, User
    from relaychat.protocol.timebase import Now

log = logging.getLogger("relaychat.core")

# a nick starts with a letter or one of []\`_^{|} and goes on with those, digits and '-'
_NICK_RE = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}\-]*\Z")
_USER_DROP = str.maketrans("", "", " @!:*?,")


def valid_nick(core: ServerCore, nick: str) -> bool:
    return len(nick) <= core.limits.nicklen and _NICK_RE.match(nick) is not None


# CAP <subcommand> [args]
def handle_cap(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    sub = msg.params[0].upper()
    handler = _CAP_SUBCOMMANDS.get(sub)
    if handler is None:
        core.reply(sess, N.ERR_INVALIDCAPCMD, safe_param(msg.params[0]), "Invalid CAP command")
        return
    handler(core, sess, msg.params[1:], now)


def _cap_reply(core: ServerCore, sess: Session, sub: str, text: str) -> None:
    core.send_line(sess, f":{core.server_name} CAP {sess.name} {sub} :{text}")


def _cap_lines(core: ServerCore, sess: Session, sub: str, items: list[str]) -> None:
    for line in cap_lines(f":{core.server_name} CAP {sess.name} {sub} ", items):
        core.send_line(sess, line)


def _cap_ls(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if not sess.registered:
        sess.cap_negotiating = True
    version = parse_int(args[0]) if args else None
    sess.cap_version = max(sess.cap_version, min(version or 0, 999))
    offered = core.caps_for(sess)
    if sess.cap_version >= 302:
        # cap-notify is implicitly enabled for 302 clients
        set_caps(sess, sess.caps | {"cap-notify"})
        items = [f"{k}={v}" if v else k for k, v in sorted(offered.items())]
    else:
        items = sorted(offered)
    if sess.cap_version >= 302:
        _cap_lines(core, sess, "LS", items)
    else:
        _cap_reply(core, sess, "LS", " ".join(items))


def _cap_list(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    _cap_lines(core, sess, "LIST", sorted(sess.caps))


def _cap_req(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if not args:
        core.reply(sess, N.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
        return
    if not sess.registered:
        sess.cap_negotiating = True
    wanted = " ".join(args).split()
    shown = truncate_utf8(" ".join(wanted), 400)
    new = set(sess.caps)
    offered = core.caps_for(sess)
    for item in wanted:
        name = item[1:] if item.startswith("-") else item
        if name not in offered or name in INFORMATIONAL_CAPS:
            _cap_reply(core, sess, "NAK", shown)
            return
        if item.startswith("-"):
            new.discard(name)
        else:
            new.add(name)
    set_caps(sess, frozenset(new))
    _cap_reply(core, sess, "ACK", shown)


def _cap_end(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if sess.registered:
        return
    sess.cap_negotiating = False
    if sess.sasl is not None:  # registration goes on without it (sasl-3.1)
        sess.sasl = None
        core.reply(sess, N.ERR_SASLABORTED, "SASL authentication aborted")
    try_register(core, sess, now)


_CAP_SUBCOMMANDS = {
    "LS": _cap_ls,
    "LIST": _cap_list,
    "REQ": _cap_req,
    "END": _cap_end,
}


# PASS <password>
def handle_pass(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    if sess.registered:
        core.reply(sess, N.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    expected = core.config.server.password
    if not expected:
        sess.password_ok = True
        return
    sess.password_ok = hmac.compare_digest(msg.params[0].encode(), expected.encode())


# NICK <nickname>
def handle_nick(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    if not msg.params or not msg.params[0]:
        core.reply(sess, N.ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    nick = msg.params[0]
    if not valid_nick(core, nick):
        core.reply(sess, N.ERR_ERRONEUSNICKNAME, safe_param(nick), "Erroneous nickname")
        return
    if core.fold(nick) in core.services:
        core.reply(sess, N.ERR_ERRONEUSNICKNAME, nick, "Reserved for services")
        return
    user = sess.user
    holder = core.registry.nick_holder(nick)
    if holder is not None and holder is not user and not _may_attach(core, sess, holder):
        core.reply(sess, N.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        return
    if user.nick == nick:
        return
    if not user.registered:
        # not claimed until registration completes: nobody can camp on a nick
        user.nick = nick
        user.update_prefix()
        try_register(core, sess, now)
        return
    if user.nick_folded != core.fold(nick):
        for chan in user.channels.values():
            if not chan.members[user] and core.is_banned(chan, user):
                core.reply(
                    sess,
                    N.ERR_BANONCHAN,
                    nick,
                    chan.name,
                    "Cannot change nickname while banned on channel",
                )
                return
    old_nick, old_folded = user.nick, user.nick_folded
    ev = core.event(user, "NICK", [nick], now, PEERS, echo=ECHO_ALWAYS, trailing=True)
    if core.registry.change_nick(user, nick, now.wall):
        core.emit(ev)
        core.monitor.nick_changed(user, old_nick, old_folded)
        if old_folded != user.nick_folded:
            check_nick(core, sess)


def _may_attach(core: ServerCore, sess: Session, holder: User) -> bool:
    """A connection still negotiating capabilities asks for the nick of a user
    logged in to an account: it may log in to that account with SASL and attach
    (multiclient), so the nick is kept for now; if it does not attach,
    registration answers 433 (as when two connections race for a nick)."""
    return (
        not sess.registered
        and sess.cap_negotiating
        and holder.account is not None
        and core.config.accounts.multiclient
    )


# USER <username> <mode> <unused> <realname>
def handle_user(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    if sess.registered or sess.got_user:
        core.reply(sess, N.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    username, realname = msg.params[0], msg.params[3]
    if not username or not realname:
        core.reply(sess, N.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        return
    # an ident is ASCII letters, digits and a few marks, as identd answers go
    cleaned = "".join(c for c in username.translate(_USER_DROP) if c.isascii() and c.isprintable())
    user = sess.user
    user.ident = ("~" + cleaned)[: core.limits.userlen] if cleaned else "~user"
    user.realname = truncate_utf8(realname, core.limits.realnamelen)
    user.update_prefix()
    sess.got_user = True
    try_register(core, sess, now)


def try_register(core: ServerCore, sess: Session, now: Now) -> None:
    """Finish registration once NICK, USER, CAP END and PASS all allow it."""
    user = sess.user
    if user.registered or user.nick is None or not sess.got_user or sess.cap_negotiating:
        return
    if core.config.server.password and not sess.password_ok:
        core.reply(sess, N.ERR_PASSWDMISMATCH, "Password incorrect")
        core.disconnect(sess, "Bad password", now)
        return
    if refuse_if_klined(core, sess, now):
        return
    if attach(core, sess, now):
        return  # one more session of the account's user (multiclient), or refused
    user.idle_since = now.mono
    if not core.registry.register(user, now.wall):
        core.reply(sess, N.ERR_NICKNAMEINUSE, user.nick, "Nickname is already in use")
        user.nick = None
        user.update_prefix()
        return
    core.registered(sess, now)
    log.info("[%d] registered as %s", sess.conn_id, user.prefix)
    send_welcome(core, sess)
    if sess.secure:
        core.registry.set_user_modes(user, user.modes + SECURE_MODE)
        mode = Message("MODE", [user.name, "+" + SECURE_MODE], source=user.name)
        core.output.send_bytes(sess, mode.to_bytes())
    if user.account is not None:
        logged_in(core, user)  # owns its account; always-on if that is
    check_nick(core, sess)
    core.snotice(
        "c",
        "Client connecting: %s (%s@%s) [%s] [%s]",
        user.nick,
        user.ident,
        user.host,
        sess.ip,
        user.realname,
    )


def attach(core: ServerCore, sess: Session, now: Now) -> bool:
    """Multiclient: registration is completing for ``sess``, logged in (SASL) to
    an account whose user is online or always-on. ``sess`` becomes one more
    session of that user and gets the welcome with the shared nick, its user
    modes, a JOIN, topic and NAMES for each of its channels; nobody else sees
    anything. True: done (attached, or refused over ``max_sessions``); False:
    register as usual."""
    owner = owner_to_attach(core, sess)
    if owner is None:
        return False
    limit = core.config.accounts.max_sessions
    if len(owner.sessions) >= limit:
        log.info("[%d] refused: %s has %d sessions", sess.conn_id, owner.prefix, limit)
        core.disconnect(
            sess,
            "Too many connections for this account",
            now,
            error=f"Too many connections for account {owner.account} (at most {limit})",
        )
        return True
    missed_since = owner.last_seen  # an always-on user coming back: since when
    adopt(owner, sess.user)  # the read markers loaded at its login, if the owner has none
    add_session(core, owner, sess, now)
    send_welcome(core, sess)
    send = core.output.send_bytes
    if owner.modes:
        send(sess, Message("MODE", [owner.name, "+" + owner.modes], source=owner.name).to_bytes())
    extended = "extended-join" in sess.caps
    for chan in list(owner.channels.values()):
        if sess.closing is not None:
            break
        params = [chan.name, owner.account or "*", owner.realname] if extended else [chan.name]
        send(sess, Message("JOIN", params, source=owner.source).to_bytes())
        send_on_join(core, owner, chan, (sess,))
        if chan.topic:
            send_topic(core, sess, chan)
        if "no-implicit-names" not in sess.caps:
            send_names(core, sess, chan)
    if owner.away is not None:
        core.reply(sess, N.RPL_NOWAWAY, "You have been marked as being away")
    if missed_since is not None and CHATHISTORY_CAP not in sess.caps:
        replay_missed(core, sess, owner, missed_since)
    return True


def send_welcome(core: ServerCore, sess: Session) -> None:
    cfg = core.config.server
    created = core.created_text
    core.reply(sess, N.RPL_WELCOME, f"Welcome to the {cfg.network} IRC Network {sess.user.prefix}")
    core.reply(
        sess,
        N.RPL_YOURHOST,
        f"Your host is {cfg.name}, running version relaychat-{__version__}",
    )
    core.reply(sess, N.RPL_CREATED, f"This server was created {created}")
    core.reply(
        sess,
        N.RPL_MYINFO,
        cfg.name,
        f"relaychat-{__version__}",
        "BiosZw",
        "beIiklmnostv",
        "beIklov",
    )
    for tokens in core.isupport:
        core.reply(sess, N.RPL_ISUPPORT, *tokens, "are supported by this server")
    send_lusers(core, sess)
    send_own_metadata(core, sess)
    send_motd(core, sess)


# PING <token>
def handle_ping(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    token = truncate_utf8(msg.params[0], 400)
    core.send_line(sess, f":{core.server_name} PONG {core.server_name} :{token}")


# PONG [<server>] <token>
def handle_pong(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    pass  # every line, this one included, already counts as activity


# QUIT [<reason>]
def handle_quit(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    reason = truncate_utf8(msg.params[0], 300) if msg.params else ""
    core.disconnect(sess, f"Quit: {reason}" if reason else "Quit", now)
