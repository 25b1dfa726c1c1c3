"""Account commands: REGISTER and VERIFY (IRCv3 ``draft/account-registration``),
and the NickServ service (``/msg NickServ REGISTER|IDENTIFY|INFO|SET PASSWORD|
DROP|GHOST|CERT|HELP``), whose replies are NOTICEs from ``NickServ!NickServ@services.``.

The slow work (hashing, the store) is in :mod:`relaychat.protocol.accounts`;
this module checks the input, words the replies, and logs in. REGISTER is only
taken after connection registration (``FAIL REGISTER
COMPLETE_CONNECTION_REQUIRED`` before; the capability does not advertise
``before-connect``); the account name may differ from the nick
(``custom-account-name``) and must be a valid nick.

Email verification is off by default. With ``[accounts] email_verification``
the capability says ``email-required``, REGISTER (and NickServ REGISTER) needs
an email address, the account is created unverified and ``REGISTER
VERIFICATION_REQUIRED`` is answered once the code was mailed; ``VERIFY
<account> <code>`` (or ``/msg NickServ VERIFY <account> <code>``) verifies it
and logs the client in. Without it, VERIFY always answers ``INVALID_CODE``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relaychat.protocol.accounts import (
    CERTFP_MAX,
    MAIL_FAILED,
    UNAVAILABLE,
    authenticate,
    check_new_password,
    create_account,
    create_unverified_account,
    is_service_name,
    log_in,
    log_out,
    new_credentials,
    normalize_certfp,
    registration_wait,
    store_call,
    verify_code,
)
from relaychat.protocol.chanreg import account_dropped
from relaychat.protocol.handlers.registration import valid_nick
from relaychat.protocol.message import sanitize_text
from relaychat.protocol.multiclient import always_on_default, remove_user, set_choice
from relaychat.protocol.ops import Op
from relaychat.protocol.storage import AccountRecord
from relaychat.protocol.timebase import ctime_utc

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

log = logging.getLogger("relaychat.accounts")

NICKSERV = "NickServ!NickServ@services."
EMAIL_MAX = 254


_UNAVAILABLE_TEXT = "Accounts are temporarily unavailable; try again later"


def _valid_email(email: str) -> bool:
    local, at, domain = email.partition("@")
    return bool(
        at
        and local
        and "." in domain
        and len(email) <= EMAIL_MAX
        and not any(c in email for c in " ,:\x00\r\n")
    )


def _account_name_problem(core: ServerCore, name: str) -> str | None:
    if not valid_nick(core, name):
        return "Account names follow the rules of nicks"
    if is_service_name(core, name):
        return "That name is reserved for services"
    return None


# REGISTER <account|*> <email|*> <password>
def handle_register(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    user = sess.user
    if not user.registered:
        core.fail(
            sess, "REGISTER", "COMPLETE_CONNECTION_REQUIRED", "Register your connection first"
        )
        return
    account, email, password = msg.params[0], msg.params[1], msg.params[2]
    name = user.name if account == "*" else account
    if user.account is not None:
        core.fail(
            sess, "REGISTER", "ALREADY_AUTHENTICATED", user.account, "You are already logged in"
        )
        return
    if not core.config.accounts.registration or core.store is None:
        core.fail(
            sess,
            "REGISTER",
            "TEMPORARILY_UNAVAILABLE",
            name,
            "Account registration is not available",
        )
        return
    problem = _account_name_problem(core, name)
    if problem is not None:
        core.fail(sess, "REGISTER", "BAD_ACCOUNT_NAME", name, problem)
        return
    verifying = core.config.accounts.email_verification
    if email == "*" and verifying:
        core.fail(sess, "REGISTER", "INVALID_EMAIL", name, "An email address is required")
        return
    if email != "*" and not _valid_email(email):
        core.fail(sess, "REGISTER", "INVALID_EMAIL", name, "That is not an email address")
        return
    why = check_new_password(core, password)
    if why is not None:
        core.fail(sess, "REGISTER", why, name, _PASSWORD_TEXT[why])
        return
    wait = registration_wait(core, sess)
    if wait > 0:
        core.fail(sess, "REGISTER", "TEMPORARILY_UNAVAILABLE", name, _too_many(wait))
        return
    if verifying:

        def pending(result: object) -> None:
            if result is UNAVAILABLE:
                core.fail(sess, "REGISTER", "TEMPORARILY_UNAVAILABLE", name, "Try again later")
            elif result == MAIL_FAILED:
                core.fail(sess, "REGISTER", "TEMPORARILY_UNAVAILABLE", name, _MAIL_FAILED_TEXT)
            elif not result:
                core.fail(sess, "REGISTER", "ACCOUNT_EXISTS", name, "That account already exists")
            else:
                log.info(
                    "[%d] account %r registered (unverified) from %s", sess.conn_id, name, sess.ip
                )
                core.send_line(
                    sess,
                    f":{core.server_name} REGISTER VERIFICATION_REQUIRED {name} "
                    f":A verification code was sent to {email}: VERIFY {name} <code>",
                )

        create_unverified_account(core, sess, name, password, email, pending)
        return

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            core.fail(sess, "REGISTER", "TEMPORARILY_UNAVAILABLE", name, "Try again later")
        elif not result:
            core.fail(sess, "REGISTER", "ACCOUNT_EXISTS", name, "That account already exists")
        else:
            log.info("[%d] account %r registered from %s", sess.conn_id, name, sess.ip)
            core.send_line(sess, f":{core.server_name} REGISTER SUCCESS {name} :Account created")
            log_in(core, sess, name)

    create_account(core, sess, name, password, None if email == "*" else email, then)


def _too_many(wait: float) -> str:
    return f"Too many accounts registered from your address; try again in {int(wait) + 1} s"


_MAIL_FAILED_TEXT = "The verification email could not be sent; try again later"

_PASSWORD_TEXT = {
    "WEAK_PASSWORD": "That password is too short",
    "UNACCEPTABLE_PASSWORD": "Passwords are at most 300 bytes, without control characters",
}


# VERIFY <account> <code>
def handle_verify(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    account, code = msg.params[0], msg.params[1]
    if not sess.user.registered:
        core.fail(sess, "VERIFY", "COMPLETE_CONNECTION_REQUIRED", "Register your connection first")
    elif sess.user.account is not None:
        core.fail(
            sess, "VERIFY", "ALREADY_AUTHENTICATED", sess.user.account, "You are already logged in"
        )
    elif not core.config.accounts.email_verification or core.store is None:
        core.fail(sess, "VERIFY", "INVALID_CODE", account, "No verification is pending")
    else:

        def then(result: AccountRecord | str | object) -> None:
            if isinstance(result, AccountRecord):
                core.send_line(
                    sess, f":{core.server_name} VERIFY SUCCESS {result.name} :Account verified"
                )
                if sess.user.account is None:
                    log_in(core, sess, result.name)
            elif result is UNAVAILABLE:
                core.fail(sess, "VERIFY", "TEMPORARILY_UNAVAILABLE", account, "Try again later")
            else:
                core.fail(sess, "VERIFY", "INVALID_CODE", account, _VERIFY_TEXT[str(result)])

        verify_code(core, sess, account, code, then)


_VERIFY_TEXT = {
    "none": "No verification is pending for that account",
    "expired": "That code has expired; register again",
    "too_many": "Too many wrong codes; register again",
    "wrong": "That code is not right",
}


# --------------------------------------------------------------- NickServ
def _ns(core: ServerCore, sess: Session, text: str) -> None:
    core.send_line(sess, f":{NICKSERV} NOTICE {sess.name} :{sanitize_text(text) or '-'}")


def nickserv(core: ServerCore, sess: Session, text: str, now: Now) -> None:
    """A PRIVMSG to NickServ: ``text`` is the command line."""
    words = [w for w in text.split(" ") if w]  # IRC spaces only: a password may hold U+00A0
    if not words:
        _ns(core, sess, "Commands: " + ", ".join(_NS_COMMANDS) + ". /msg NickServ HELP")
        return
    command = words[0].upper()
    if command == "SET" and len(words) > 1:
        command = "SET " + words[1].upper()
        words = [command, *words[2:]]
    handler = _NS_COMMANDS.get(command)
    if handler is None:
        _ns(core, sess, f"Unknown command {words[0][:32]}. /msg NickServ HELP")
        return
    if core.store is None:
        _ns(core, sess, "Accounts are not available on this server")
        return
    handler(core, sess, words[1:], now)


def _ns_help(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    for line in (
        "REGISTER <password> [<email>]: register your current nick as an account",
        "VERIFY <account> <code>: complete a registration with the code mailed to you",
        "IDENTIFY [<account>] <password>: log in",
        "INFO [<account>]: show an account",
        "SET PASSWORD <new password>: change your password (logged in)",
        "SET ALWAYS-ON ON|OFF: stay in your channels with no connection open (logged in)",
        "DROP <password>: delete the account you are logged in to",
        "GHOST <nick> [<password>]: disconnect a session using your account's nick",
        "CERT ADD [<fingerprint>] | CERT DEL <fingerprint> | CERT LIST: the client "
        "certificates that log you in with SASL EXTERNAL (logged in; ADD alone adds "
        "the one you are connected with)",
    ):
        _ns(core, sess, line)


def _ns_register(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    user = sess.user
    if not args:
        _ns(core, sess, "Syntax: REGISTER <password> [<email>]")
        return
    if user.account is not None:
        _ns(core, sess, f"You are already logged in as {user.account}")
        return
    if not core.config.accounts.registration:
        _ns(core, sess, "Account registration is disabled")
        return
    name = user.name
    problem = _account_name_problem(core, name)
    if problem is not None:
        _ns(core, sess, problem)
        return
    password, email = args[0], args[1] if len(args) > 1 else None
    verifying = core.config.accounts.email_verification
    if email is None and verifying:
        _ns(core, sess, "An email address is required: REGISTER <password> <email>")
        return
    if email is not None and not _valid_email(email):
        _ns(core, sess, "That is not an email address")
        return
    why = check_new_password(core, password)
    if why is not None:
        _ns(core, sess, _PASSWORD_TEXT[why])
        return
    wait = registration_wait(core, sess)
    if wait > 0:
        _ns(core, sess, _too_many(wait))
        return

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        elif not result:
            _ns(core, sess, f"Account {name} already exists")
        else:
            log.info("[%d] account %r registered from %s", sess.conn_id, name, sess.ip)
            _ns(core, sess, f"Account {name} registered")
            log_in(core, sess, name)

    def pending(result: object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        elif result == MAIL_FAILED:
            _ns(core, sess, _MAIL_FAILED_TEXT)
        elif not result:
            _ns(core, sess, f"Account {name} already exists")
        else:
            log.info("[%d] account %r registered (unverified) from %s", sess.conn_id, name, sess.ip)
            _ns(
                core,
                sess,
                f"Account {name} created; a verification code was sent to {email}: "
                f"/msg NickServ VERIFY {name} <code>",
            )

    if verifying:
        assert email is not None
        create_unverified_account(core, sess, name, password, email, pending)
    else:
        create_account(core, sess, name, password, email, then)


def _ns_verify(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if len(args) != 2:
        _ns(core, sess, "Syntax: VERIFY <account> <code>")
        return
    if sess.user.account is not None:
        _ns(core, sess, f"You are already logged in as {sess.user.account}")
        return
    account, code = args
    if not core.config.accounts.email_verification:
        _ns(core, sess, "No verification is pending for that account")
        return

    def then(result: AccountRecord | str | object) -> None:
        if isinstance(result, AccountRecord):
            _ns(core, sess, f"Account {result.name} verified")
            if sess.user.account is None:
                log_in(core, sess, result.name)
        elif result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        else:
            _ns(core, sess, _VERIFY_TEXT[str(result)])

    verify_code(core, sess, account, code, then)


def _ns_identify(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if not args or len(args) > 2:
        _ns(core, sess, "Syntax: IDENTIFY [<account>] <password>")
        return
    user = sess.user
    if user.account is not None:
        _ns(core, sess, f"You are already logged in as {user.account}")
        return
    name, password = (args[0], args[1]) if len(args) == 2 else (user.name, args[0])

    def then(result: AccountRecord | None | object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        elif isinstance(result, AccountRecord):
            _ns(core, sess, f"You are now identified for {result.name}")
            log_in(core, sess, result.name)
        else:
            _ns(core, sess, "Invalid account or password")

    authenticate(core, sess, name, password, then, "NickServ IDENTIFY")


def _ns_info(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    name = args[0] if args else (sess.user.account or sess.user.name)
    folded = core.fold(name)

    def run() -> AccountRecord | None | object:
        return store_call(core, sess, "NickServ INFO", lambda s: s.get_account(folded))

    def then(result: AccountRecord | None | object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        elif not isinstance(result, AccountRecord):
            _ns(core, sess, f"{name[:64]} is not a registered account")
        else:
            _ns(core, sess, f"Information on {result.name}:")
            _ns(core, sess, f"Registered: {ctime_utc(result.created)}")
            own = sess.user.account is not None and core.fold(sess.user.account) == folded
            if own and result.email:
                _ns(core, sess, f"Email: {result.email}")
            online = sorted(
                u.nick
                for u in core.registry.nicks.values()
                if u.nick and u.account is not None and core.fold(u.account) == folded
            )
            if online:
                _ns(core, sess, "Logged in now: " + " ".join(online[:20]))

    core.submit(Op(run, then, sess, pool="store"))


def _ns_set_always_on(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    account = sess.user.account
    if account is None:
        _ns(core, sess, "You are not logged in")
        return
    mode = core.config.accounts.always_on
    folded = core.fold(account)
    if mode not in ("opt-in", "opt-out") or not core.config.accounts.multiclient:
        state = "on" if always_on_default(core, folded) else "off"
        _ns(core, sess, f"Always-on is {state} for every account on this server")
        return
    if len(args) != 1 or args[0].upper() not in ("ON", "OFF"):
        state = "ON" if always_on_default(core, folded) else "OFF"
        _ns(core, sess, f"Syntax: SET ALWAYS-ON ON|OFF (yours is {state})")
        return
    choice = args[0].upper() == "ON"

    def run() -> object:
        return store_call(
            core,
            sess,
            "NickServ SET ALWAYS-ON",
            lambda s: s.set_always_on_choice(folded, choice),
        )

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
            return
        set_choice(core, folded, choice)
        _ns(core, sess, f"Always-on is now {'ON' if choice else 'OFF'} for {account}")

    core.submit(Op(run, then, sess, pool="store"))


def _ns_set_password(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    account = sess.user.account
    if account is None:
        _ns(core, sess, "You are not logged in")
        return
    if len(args) != 1:
        _ns(core, sess, "Syntax: SET PASSWORD <new password>")
        return
    why = check_new_password(core, args[0])
    if why is not None:
        _ns(core, sess, _PASSWORD_TEXT[why])
        return
    password = args[0]
    folded = core.fold(account)
    iterations = core.config.accounts.scram_iterations

    def run() -> object:
        if core.store is None:
            return UNAVAILABLE
        pw_hash, scram = new_credentials(password, iterations)
        return store_call(
            core, sess, "NickServ SET PASSWORD", lambda s: s.set_password(folded, pw_hash, scram)
        )

    def then(result: object) -> None:
        if result is True:
            log.info("[%d] password of %r changed from %s", sess.conn_id, account, sess.ip)
            _ns(core, sess, "Password changed")
        elif result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        else:
            _ns(core, sess, f"Account {account} no longer exists")

    core.submit(Op(run, then, sess, pool="hash"))


def _ns_drop(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    account = sess.user.account
    if account is None:
        _ns(core, sess, "You are not logged in")
        return
    if len(args) != 1:
        _ns(core, sess, "Syntax: DROP <password> (drops the account you are logged in to)")
        return
    folded = core.fold(account)

    def dropped(result: object) -> None:
        if result is True:
            core.account_names.discard(folded)
            account_dropped(core, folded)  # its channels and access entries go too
            log.warning("[%d] account %r dropped from %s", sess.conn_id, account, sess.ip)
            _ns(core, sess, f"Account {account} dropped")
            for user in list(core.registry.nicks.values()):
                if user.account is not None and core.fold(user.account) == folded:
                    log_out(core, user)
        elif result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        else:
            _ns(core, sess, f"Account {account} no longer exists")

    def drop() -> object:
        return store_call(core, sess, "NickServ DROP", lambda s: s.drop_account(folded))

    def then(result: AccountRecord | None | object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        elif not isinstance(result, AccountRecord):
            _ns(core, sess, "Invalid account or password")
        else:
            core.submit(Op(drop, dropped, sess, pool="store"))

    authenticate(core, sess, account, args[0], then, "NickServ DROP")


def _ns_ghost(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    if not args or len(args) > 2:
        _ns(core, sess, "Syntax: GHOST <nick> [<password>]")
        return
    nick = args[0]
    target = core.find_user(nick)
    me = sess.user
    if target is None or target.nick is None:
        _ns(core, sess, f"{nick[:64]} is not online")
        return
    if target is me:
        _ns(core, sess, "You cannot ghost yourself")
        return

    def kill() -> None:
        victim = core.find_user(nick)
        if victim is not target:
            _ns(core, sess, f"{nick[:64]} is not online")
            return
        log.info("[%d] GHOST %s by %s (%s)", sess.conn_id, target.prefix, me.prefix, sess.ip)
        remove_user(core, target, f"GHOST command used by {me.name}", core.now)
        _ns(core, sess, f"{nick} has been ghosted")

    # logged in to the account the target uses, or to the account named like the nick
    mine = me.account is not None and (
        (target.account is not None and core.fold(target.account) == core.fold(me.account))
        or core.fold(me.account) == core.fold(target.nick)
    )
    if mine:
        kill()
        return
    if len(args) < 2:
        _ns(core, sess, "Access denied: log in, or give the account's password")
        return

    def then(result: AccountRecord | None | object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        elif isinstance(result, AccountRecord):
            kill()
        else:
            _ns(core, sess, "Invalid account or password")

    authenticate(core, sess, target.nick, args[1], then, "NickServ GHOST")


# CERT ADD [<fingerprint>] | CERT DEL <fingerprint> | CERT LIST
def _ns_cert(core: ServerCore, sess: Session, args: list[str], now: Now) -> None:
    account = sess.user.account
    sub = args[0].upper() if args else ""
    if sub not in ("ADD", "DEL", "LIST") or len(args) > 2 or (sub == "DEL" and len(args) != 2):
        _ns(core, sess, "Syntax: CERT ADD [<fingerprint>] | CERT DEL <fingerprint> | CERT LIST")
        return
    if account is None:
        _ns(core, sess, "You are not logged in")
        return
    folded = core.fold(account)
    if sub == "LIST":
        _cert_list(core, sess, account, folded)
        return
    if len(args) == 2:
        fp = normalize_certfp(args[1])
        if fp is None:
            _ns(core, sess, "A fingerprint is the SHA-256 of a certificate: 64 hex digits")
            return
    elif sess.certfp is None:
        _ns(core, sess, "You are not using a client certificate: CERT ADD <fingerprint>")
        return
    else:
        fp = sess.certfp
    if sub == "ADD":
        _cert_add(core, sess, account, folded, fp)
    else:
        _cert_del(core, sess, account, folded, fp)


def _cert_list(core: ServerCore, sess: Session, account: str, folded: str) -> None:
    def run() -> object:
        return store_call(core, sess, "NickServ CERT LIST", lambda s: s.account_certfps(folded))

    def then(result: object) -> None:
        if not isinstance(result, list):
            _ns(core, sess, _UNAVAILABLE_TEXT)
            return
        _ns(core, sess, f"Client certificate fingerprints of {account}: {len(result)}")
        for fp in result:
            _ns(core, sess, f"- {fp}")

    core.submit(Op(run, then, sess, pool="store"))


_CERT_ADDED = {
    "added": "Fingerprint {fp} added to {account}",
    "exists": "Fingerprint {fp} is already on {account}'s list",
    "taken": "Fingerprint {fp} belongs to another account",
    "full": "{account} has " + str(CERTFP_MAX) + " fingerprints already: CERT DEL one first",
    "no_account": "Account {account} no longer exists",
}


def _cert_add(core: ServerCore, sess: Session, account: str, folded: str, fp: str) -> None:
    def run() -> object:
        return store_call(
            core, sess, "NickServ CERT ADD", lambda s: s.add_certfp(folded, fp, CERTFP_MAX)
        )

    def then(result: object) -> None:
        if not isinstance(result, str) or result not in _CERT_ADDED:
            _ns(core, sess, _UNAVAILABLE_TEXT)
            return
        if result == "added":
            log.info("[%d] fingerprint %s added to %r from %s", sess.conn_id, fp, account, sess.ip)
        _ns(core, sess, _CERT_ADDED[result].format(fp=fp, account=account))

    core.submit(Op(run, then, sess, pool="store"))


def _cert_del(core: ServerCore, sess: Session, account: str, folded: str, fp: str) -> None:
    def run() -> object:
        return store_call(core, sess, "NickServ CERT DEL", lambda s: s.remove_certfp(folded, fp))

    def then(result: object) -> None:
        if result is UNAVAILABLE:
            _ns(core, sess, _UNAVAILABLE_TEXT)
        elif result is True:
            log.info("[%d] fingerprint %s removed from %r", sess.conn_id, fp, account)
            _ns(core, sess, f"Fingerprint {fp} removed from {account}")
        else:
            _ns(core, sess, f"Fingerprint {fp} is not on {account}'s list")

    core.submit(Op(run, then, sess, pool="store"))


_NS_COMMANDS = {
    "HELP": _ns_help,
    "REGISTER": _ns_register,
    "VERIFY": _ns_verify,
    "IDENTIFY": _ns_identify,
    "INFO": _ns_info,
    "SET PASSWORD": _ns_set_password,
    "SET ALWAYS-ON": _ns_set_always_on,
    "DROP": _ns_drop,
    "GHOST": _ns_ghost,
    "CERT": _ns_cert,
}
