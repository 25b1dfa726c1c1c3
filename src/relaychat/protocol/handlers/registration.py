"""Connection registration and upkeep: CAP, PASS, NICK, USER, PING, PONG, QUIT."""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.server import SUPPORTED_CAPS, VARIANT_CAPS, Outgoing
from relaychat.protocol.state import Session

if TYPE_CHECKING:
    from relaychat.protocol.message import Message
    from relaychat.protocol.server import ServerCore

# a nick starts with a letter or one of []\`_^{|} and goes on with those, digits and '-'
_NICK_RE = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}\-]*\Z")


def valid_nick(core: ServerCore, nick: str) -> bool:
    return len(nick) <= core.limits.nicklen and _NICK_RE.match(nick) is not None


# CAP <subcommand> [args]
def handle_cap(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    sub = msg.params[0].upper()
    handler = _CAP_SUBCOMMANDS.get(sub)
    if handler is None:
        core.reply(sess, N.ERR_INVALIDCAPCMD, msg.params[0], "Invalid CAP command")
        return
    handler(core, sess, msg.params[1:], now)


def _cap_reply(core: ServerCore, sess: Session, sub: str, *params: str) -> None:
    core.send_raw(sess, f":{core.server_name} CAP {sess.name} {sub} " + " ".join(params))


def _cap_ls(core: ServerCore, sess: Session, args: list[str], now: float) -> None:
    if not sess.registered:
        sess.cap_negotiating = True
    version = 0
    if args and args[0].isdigit():
        version = int(args[0])
    sess.cap_version = max(sess.cap_version, version)
    if sess.cap_version >= 302:
        # cap-notify is implicitly enabled for 302 clients
        _set_caps(sess, sess.caps | {"cap-notify"})
        items = [f"{k}={v}" if v else k for k, v in sorted(SUPPORTED_CAPS.items())]
    else:
        items = sorted(SUPPORTED_CAPS)
    _cap_reply(core, sess, "LS", ":" + " ".join(items))


def _cap_list(core: ServerCore, sess: Session, args: list[str], now: float) -> None:
    _cap_reply(core, sess, "LIST", ":" + " ".join(sorted(sess.caps)))


def _cap_req(core: ServerCore, sess: Session, args: list[str], now: float) -> None:
    if not sess.registered:
        sess.cap_negotiating = True
    wanted = " ".join(args).split()
    if not args:
        core.reply(sess, N.ERR_NEEDMOREPARAMS, "CAP", "Not enough parameters")
        return
    new = set(sess.caps)
    for item in wanted:
        name = item[1:] if item.startswith("-") else item
        if name not in SUPPORTED_CAPS:
            _cap_reply(core, sess, "NAK", ":" + " ".join(wanted))
            return
        if item.startswith("-"):
            new.discard(name)
        else:
            new.add(name)
    _set_caps(sess, frozenset(new))
    _cap_reply(core, sess, "ACK", ":" + " ".join(wanted))


def _cap_end(core: ServerCore, sess: Session, args: list[str], now: float) -> None:
    if sess.registered:
        return
    sess.cap_negotiating = False
    core.try_register(sess, now)


def _set_caps(sess: Session, caps: frozenset[str] | set[str]) -> None:
    sess.caps = frozenset(caps)
    variant = 0
    for name, bit in VARIANT_CAPS.items():
        if name in sess.caps:
            variant |= bit
    sess.variant = variant


_CAP_SUBCOMMANDS = {
    "LS": _cap_ls,
    "LIST": _cap_list,
    "REQ": _cap_req,
    "END": _cap_end,
}


# PASS <password>
def handle_pass(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    if sess.registered:
        core.reply(sess, N.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    expected = core.config.server.password
    if not expected:
        sess.password_ok = True
        return
    sess.password_ok = hmac.compare_digest(msg.params[0].encode(), expected.encode())


# NICK <nickname>
def handle_nick(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    if not msg.params or not msg.params[0]:
        core.reply(sess, N.ERR_NONICKNAMEGIVEN, "No nickname given")
        return
    nick = msg.params[0]
    if not valid_nick(core, nick):
        core.reply(sess, N.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
        return
    folded = core.fold(nick)
    holder = core.nicks.get(folded)
    if holder is not None and holder is not sess:
        core.reply(sess, N.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        return
    if sess.nick == nick:
        return
    old_folded = sess.nick_folded
    if sess.registered:
        out = Outgoing(f":{sess.prefix} NICK :{nick}", now)
        core.relay(core.common_peers(sess, include_self=True), out)
        core.remember_whowas(sess, now)
    if old_folded is not None and core.nicks.get(old_folded) is sess:
        del core.nicks[old_folded]
    sess.nick = nick
    sess.nick_folded = folded
    core.nicks[folded] = sess
    if not sess.registered:
        core.try_register(sess, now)


# USER <username> <mode> <unused> <realname>
def handle_user(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    if sess.registered or sess.got_user:
        core.reply(sess, N.ERR_ALREADYREGISTERED, "You may not reregister")
        return
    username = msg.params[0]
    if not username:
        core.reply(sess, N.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters")
        return
    cleaned = "".join(c for c in username if c.isprintable() and c not in " @!:")
    sess.user = ("~" + cleaned)[: core.limits.userlen] if cleaned else "~user"
    sess.realname = msg.params[3]
    sess.got_user = True
    core.try_register(sess, now)


# PING <token>
def handle_ping(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    core.send_raw(sess, f":{core.server_name} PONG {core.server_name} :{msg.params[0]}")


# PONG [<server>] <token>
def handle_pong(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    pass  # every line, this one included, already counts as activity (_handle_line)


# QUIT [<reason>]
def handle_quit(core: ServerCore, sess: Session, msg: Message, now: float) -> None:
    reason = msg.params[0] if msg.params else ""
    core.disconnect(sess, f"Quit: {reason}" if reason else "Quit", now)
