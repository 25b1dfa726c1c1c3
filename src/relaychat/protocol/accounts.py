"""Accounts: credentials, password checks, login and logout, shared by REGISTER,
NickServ and SASL.

Theory of operation
-------------------
Everything slow runs as an ordered :class:`~relaychat.protocol.ops.Op` in the
``hash`` pool (at most two in flight server-wide, as OPER): the store read and
the scrypt check of a login are one op; the scrypt hash and PBKDF2 of a new
password and the store write are one op. The session's later commands wait for
it, so they keep their order; the reply comes from the op's ``then`` on the
core's thread, after the store committed.

An unknown account and a wrong password get the same failure after the same
work (a check against :data:`~relaychat.passwords.DUMMY_HASH`). Failures back off
per address and per account (``core.auth_backoff``: 1 s, doubling up to a
minute); an attempt during a backoff is held until it ends, then checked.
Passwords are never logged and never put in an exception: the ops' functions
catch the store's errors and return a marker instead.

Email verification (``[accounts] email_verification``, off by default): a
registration hashes the password and makes a code (one ``hash`` op), then
inserts the account, unverified, with the code's SHA-256 (salted with the
account name), its expiry and a count of tries, and mails the code (one op in
the ``mail`` pool, so a slow mail server never holds the hash pool). A taken
name gets no mail; a mail that fails deletes the account again (a loud log
line, a FAIL to the client); if even that delete fails, the unverified
account frees its name when its code ends. An unverified account cannot log in (the
same failure as a wrong password) until :func:`verify_code` matches
(``hmac.compare_digest``) before the code expires and within
``[email] max_attempts`` tries; an expired or exhausted code is deleted and the
name may then be registered again. Codes are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from relaychat.passwords import DUMMY_HASH, hash_password, verify_password
from relaychat.protocol import numerics as N
from relaychat.protocol import readmarkers
from relaychat.protocol.events import ECHO_ALWAYS, PEERS
from relaychat.protocol.mailer import MailError
from relaychat.protocol.ops import Op
from relaychat.protocol.storage import (
    AccountRecord,
    PendingVerification,
    ScramCredentials,
    Store,
    StoreClosed,
    StoreError,
)

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.state import Session, User

__all__ = [
    "UNAVAILABLE",
    "saslprep",
    "after_backoff",
    "note_attempt",
    "registration_wait",
    "authenticate",
    "check_nick",
    "check_new_password",
    "create_account",
    "create_unverified_account",
    "verify_code",
    "log_in",
    "log_out",
    "new_credentials",
    "normalize_certfp",
    "scram_credentials",
    "store_call",
    "store_failed",
]

T = TypeVar("T")

log = logging.getLogger("relaychat.accounts")

PASSWORD_MAX = 300  # bytes: a password must fit in a PRIVMSG to NickServ
CERTFP_MAX = 16  # client certificate fingerprints on one account (NickServ CERT ADD)
CERTFP_HEX = 64  # a SHA-256 fingerprint: 64 hex digits
SERVICE_NAMES = ("NickServ", "ChanServ")


class _Unavailable:
    """What an op returns when the store failed (logged there, without secrets)."""

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE = _Unavailable()
MAIL_FAILED = "MAIL_FAILED"  # create_unverified_account: the code could not be mailed

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read from a mail
CODE_LENGTH = 10  # 50 bits
CODE_INPUT_MAX = 64


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep of a password (stored-string rules: unassigned code
    points are refused too). Raises ValueError, without the text, when it is
    not allowed."""
    if text.isascii() and all(32 <= ord(c) < 127 for c in text):
        return text  # the common case: printable ASCII is left as it is
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    out = unicodedata.normalize("NFKC", mapped)
    for c in out:
        if (
            stringprep.in_table_c12(c)
            or stringprep.in_table_c21_c22(c)
            or stringprep.in_table_c3(c)
            or stringprep.in_table_c4(c)
            or stringprep.in_table_c5(c)
            or stringprep.in_table_c6(c)
            or stringprep.in_table_c7(c)
            or stringprep.in_table_c8(c)
            or stringprep.in_table_c9(c)
            or stringprep.in_table_a1(c)
        ):
            raise ValueError("prohibited character")
    if any(stringprep.in_table_d1(c) for c in out):
        if any(stringprep.in_table_d2(c) for c in out):
            raise ValueError("mixed bidirectional text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ValueError("bidirectional text must start and end right-to-left")
    return out


def _prepared(password: str) -> str:
    """The password as hashed: SASLprep'd, or as given when SASLprep refuses it
    (new passwords are checked first, so only a login can get here; it fails)."""
    try:
        return saslprep(password)
    except ValueError:
        return password


_NOT_VERIFIED = "NOT_VERIFIED"  # authenticate: the right password, an unverified account


def normalize_certfp(text: str) -> str | None:
    """A SHA-256 fingerprint as stored and shown (64 lowercase hex digits)
    from what a user typed (upper or lower case, colons allowed), or None."""
    if len(text) > 2 * CERTFP_HEX:
        return None
    fp = text.replace(":", "").lower()
    if len(fp) != CERTFP_HEX or not all(c in "0123456789abcdef" for c in fp):
        return None
    return fp


def store_failed(sess: Session | None, what: str, exc: StoreError) -> None:
    """Log a store failure loudly (the affected command gets an error; the
    server goes on), or quietly when the store was closed because the server
    is stopping. ``sess`` None: a server task (a ban expiring)."""
    conn = "-" if sess is None else str(sess.conn_id)
    if isinstance(exc, StoreClosed):
        log.info("[%s] %s: %s", conn, what, exc)
    else:
        log.error("[%s] %s failed: %s", conn, what, exc)


def store_call(
    core: ServerCore, sess: Session | None, what: str, call: Callable[[Store], T]
) -> T | _Unavailable:
    """``call(core.store)`` on a worker thread: its result, or UNAVAILABLE when
    there is no store or it failed (logged by :func:`store_failed`)."""
    store = core.store
    if store is None:
        return UNAVAILABLE
    try:
        return call(store)
    except StoreError as exc:
        store_failed(sess, what, exc)
        return UNAVAILABLE


def scram_credentials(
    password: str, iterations: int, salt: bytes | None = None
) -> ScramCredentials:
    """RFC 5802 section 3: SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i);
    StoredKey = H(HMAC(SaltedPassword, "Client Key")); ServerKey =
    HMAC(SaltedPassword, "Server Key"), with the password SASLprep'd (RFC 7677)."""
    salt = os.urandom(16) if salt is None else salt
    prepared = _prepared(password).encode("utf-8")
    salted = hashlib.pbkdf2_hmac("sha256", prepared, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return ScramCredentials(salt, iterations, hashlib.sha256(client_key).digest(), server_key)


def new_credentials(password: str, iterations: int) -> tuple[str, ScramCredentials]:
    """The scrypt hash (PLAIN, NickServ) and the SCRAM-SHA-256 keys of a new
    password. Slow: call it from an op."""
    return hash_password(_prepared(password)), scram_credentials(password, iterations)


def check_new_password(core: ServerCore, password: str) -> str | None:
    """Why ``password`` may not be set: "WEAK_PASSWORD" (too short),
    "UNACCEPTABLE_PASSWORD" (too long, control characters); None if fine."""
    if len(password.encode("utf-8")) > PASSWORD_MAX or any(
        ord(c) < 32 or ord(c) == 127 for c in password
    ):
        return "UNACCEPTABLE_PASSWORD"
    try:
        password = saslprep(password)
    except ValueError:
        return "UNACCEPTABLE_PASSWORD"
    if len(password) < core.config.accounts.password_min:
        return "WEAK_PASSWORD"
    return None


def is_service_name(core: ServerCore, name: str) -> bool:
    folded = core.fold(name)
    return any(folded == core.fold(s) for s in SERVICE_NAMES)


def create_account(
    core: ServerCore,
    sess: Session,
    name: str,
    password: str,
    email: str | None,
    then: Callable[[bool | _Unavailable], None],
) -> None:
    """Hash ``password`` and insert the account (an ordered op); ``then(True)``
    once committed, ``then(False)`` if the name is taken, ``then(UNAVAILABLE)``
    if the store failed."""
    store = core.store
    folded = core.fold(name)
    created = core.now.wall
    settings = core.config.accounts
    iterations = core.config.accounts.scram_iterations
    path = getattr(store, "path", "store")

    def run() -> bool | _Unavailable:
        if store is None:
            return UNAVAILABLE
        pw_hash, scram = new_credentials(password, iterations)
        record = AccountRecord(name, folded, pw_hash, scram, created, email)
        return store_call(core, sess, "account registration", lambda s: s.create_account(record))

    def done(result: bool | _Unavailable) -> None:
        if result is True:
            core.account_names.add(folded)
            core.registrations.hit("ip:" + sess.ip, core.now.mono, settings.register_window)
        then(result)

    run.__name__ = f"create_account {name!r} ({path})"
    core.submit(Op(run, done, sess, pool="hash"))


def code_hash(folded: str, code: str) -> bytes:
    """What is stored of a verification code: SHA-256 over the folded account
    name and the code (upper case, as typed codes are compared)."""
    return hashlib.sha256(f"{folded}\0{code.strip().upper()}".encode()).digest()


_Prepared = tuple[AccountRecord, PendingVerification, str]  # the record, its code's hash, the code


def create_unverified_account(
    core: ServerCore,
    sess: Session,
    name: str,
    password: str,
    email: str,
    then: Callable[[bool | _Unavailable | str], None],
) -> None:
    """Register ``name`` pending email verification (see the module docstring):
    ``then(True)`` once the account is committed and the code mailed,
    ``then(False)`` if the name is taken (no mail), ``then(MAIL_FAILED)`` if
    the mail could not be sent (the account is deleted again),
    ``then(UNAVAILABLE)`` if the store failed."""
    store = core.store
    mailer = core.mailer
    folded = core.fold(name)
    created = core.now.wall
    settings = core.config.accounts
    email_settings = core.config.email
    iterations = settings.scram_iterations
    expires = created + email_settings.code_lifetime
    lifetime = _duration(email_settings.code_lifetime)
    subject = f"Your verification code for {name} on {core.server_name}"

    def prepare() -> _Prepared | _Unavailable:
        if store is None or mailer is None:
            return UNAVAILABLE
        pw_hash, scram = new_credentials(password, iterations)
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        record = AccountRecord(name, folded, pw_hash, scram, created, email, verified=False)
        return record, PendingVerification(code_hash(folded, code), expires), code

    def insert_and_mail(
        record: AccountRecord, pending: PendingVerification, code: str
    ) -> bool | _Unavailable | str:
        assert mailer is not None
        made = store_call(
            core, sess, "account registration", lambda s: s.create_account(record, pending)
        )
        if made is not True:
            return made
        body = (
            f"Someone (hopefully you) registered the account {name} on the IRC server "
            f"{core.server_name} with this address.\n\n"
            f"Verification code: {code}\n\n"
            f"To complete the registration, send\n    VERIFY {name} {code}\n"
            f"or\n    /msg NickServ VERIFY {name} {code}\n"
            f"within {lifetime}. If it was not you, ignore this mail.\n"
        )
        try:
            mailer.send(email_settings, email, subject, body)
        except MailError as exc:
            log.error(
                "[%d] verification mail for account %r could not be sent, account not created: %s",
                sess.conn_id,
                name,
                exc,
            )
            # if this fails too, the unverified account frees its name when the code ends
            store_call(core, sess, "account registration undo", lambda s: s.drop_account(folded))
            return MAIL_FAILED
        return True

    def prepared(result: _Prepared | _Unavailable) -> None:
        if not isinstance(result, tuple):
            then(result)
            return
        record, pending, code = result

        def send() -> bool | _Unavailable | str:
            return insert_and_mail(record, pending, code)

        send.__name__ = f"register and mail {name!r}"
        core.submit(Op(send, done, sess, pool="mail"))

    def done(result: bool | _Unavailable | str) -> None:
        if result is True:
            core.account_names.add(folded)
            core.registrations.hit("ip:" + sess.ip, core.now.mono, settings.register_window)
        then(result)

    prepare.__name__ = f"create_account {name!r} (unverified)"
    core.submit(Op(prepare, prepared, sess, pool="hash"))


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        n, unit = int(seconds // 86400), "day"
    elif seconds >= 3600 and seconds % 3600 == 0:
        n, unit = int(seconds // 3600), "hour"
    elif seconds >= 60 and seconds % 60 == 0:
        n, unit = int(seconds // 60), "minute"
    else:
        n, unit = int(seconds), "second"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def verify_code(
    core: ServerCore,
    sess: Session,
    name: str,
    code: str,
    then: Callable[[AccountRecord | str | _Unavailable], None],
) -> None:
    """Check ``code`` for account ``name`` (an ordered op): ``then(record)`` once
    the account is verified and committed, else ``then(reason)``: "none" (no
    code pending: unknown, verified, or voided), "expired", "too_many" (the
    last try allowed was wrong), "wrong", or ``then(UNAVAILABLE)``. An expired
    code, or the last wrong try, deletes the pending verification. Each try
    is counted in the store before the comparison, so tries from several
    connections at once are all counted."""
    folded = core.fold(name)
    wall = core.now.wall
    limit = core.config.email.max_attempts
    given = code_hash(folded, code) if len(code) <= CODE_INPUT_MAX else b""

    def run() -> AccountRecord | str | _Unavailable:
        pending = store_call(core, sess, "VERIFY", lambda s: s.verification_attempt(folded))
        if isinstance(pending, _Unavailable):
            return pending
        if pending is None:
            return "none"
        if pending.expires <= wall or pending.attempts > limit:
            store_call(core, sess, "VERIFY", lambda s: s.drop_verification(folded))
            return "expired" if pending.expires <= wall else "too_many"
        if hmac.compare_digest(given, pending.code_hash):
            done = store_call(core, sess, "VERIFY", lambda s: s.set_verified(folded))
            if done is not True:
                return UNAVAILABLE if isinstance(done, _Unavailable) else "none"
            record = store_call(core, sess, "VERIFY", lambda s: s.get_account(folded))
            if isinstance(record, _Unavailable):
                return record
            return record if record is not None else "none"
        if pending.attempts >= limit:
            store_call(core, sess, "VERIFY", lambda s: s.drop_verification(folded))
            return "too_many"
        return "wrong"

    run.__name__ = f"verify {folded!r}"

    def done(result: AccountRecord | str | _Unavailable) -> None:
        if isinstance(result, AccountRecord):
            log.info("[%d] account %r verified from %s", sess.conn_id, result.name, sess.ip)
        elif isinstance(result, str):
            log.warning(
                "[%d] VERIFY %r from %s failed: %s", sess.conn_id, name[:64], sess.ip, result
            )
        then(result)

    core.submit(Op(run, done, sess, pool="store"))


def registration_wait(core: ServerCore, sess: Session) -> float:
    """Seconds before ``sess``'s address may register another account (0: now)."""
    s = core.config.accounts
    return core.registrations.wait(
        "ip:" + sess.ip, core.now.mono, s.register_limit, s.register_window
    )


def authenticate(
    core: ServerCore,
    sess: Session,
    name: str,
    password: str,
    then: Callable[[AccountRecord | None | _Unavailable], None],
    what: str = "login",
) -> None:
    """Check ``password`` for account ``name`` (throttled; see the module
    docstring); ``then(record)`` on success, ``then(None)`` on any failure
    (unknown account or wrong password alike), ``then(UNAVAILABLE)`` when the
    store failed. Logged with the address, never with the password."""
    folded = core.fold(name)

    def run() -> AccountRecord | None | _Unavailable | str:
        record = store_call(core, sess, f"{what}: account lookup", lambda s: s.get_account(folded))
        if isinstance(record, _Unavailable):
            return record
        stored = record.password_hash if record is not None else DUMMY_HASH
        ok = verify_password(_prepared(password), stored)
        if ok and record is not None and not record.verified:
            return _NOT_VERIFIED
        return record if ok and record is not None else None

    run.__name__ = f"authenticate {folded!r}"

    def done(result: AccountRecord | None | _Unavailable | str) -> None:
        if result is UNAVAILABLE:
            then(UNAVAILABLE)
            return
        if result is _NOT_VERIFIED:  # the right password: no backoff, but no login
            log.warning(
                "[%d] %s as %r from %s refused: email not verified",
                sess.conn_id,
                what,
                name,
                sess.ip,
            )
            then(None)
            return
        assert not isinstance(result, (_Unavailable, str))
        note_attempt(core, sess, folded, result is not None)
        if result is None:
            log.warning("[%d] %s as %r from %s failed", sess.conn_id, what, name, sess.ip)
        else:
            log.info("[%d] %s as %r from %s", sess.conn_id, what, name, sess.ip)
        then(result)

    def check() -> None:
        sess.busy = False
        core.submit(Op(run, done, sess, pool="hash"))

    after_backoff(core, sess, folded, check)


def after_backoff(core: ServerCore, sess: Session, folded: str, fn: Callable[[], None]) -> None:
    """Run ``fn`` now, or when the backoff of ``sess``'s address and of account
    ``folded`` ends; meanwhile the session's later commands wait (held, not
    refused, as OPER). ``fn`` must clear ``sess.busy`` (it submits an op)."""
    backoff = core.auth_backoff
    mono = core.now.mono
    wait = max(backoff.blocked("ip:" + sess.ip, mono), backoff.blocked("acct:" + folded[:64], mono))
    if wait > 0:
        sess.busy = True
        core.call_at(mono + wait, sess, fn)
    else:
        fn()


def note_attempt(core: ServerCore, sess: Session, folded: str, ok: bool) -> None:
    """Book a password check's outcome for the backoff of the address and account."""
    backoff = core.auth_backoff
    keys = ("ip:" + sess.ip, "acct:" + folded[:64])
    for key in keys:
        if ok:
            backoff.succeeded(key)
        else:
            backoff.failed(key, core.now.mono)


def log_in(core: ServerCore, sess: Session, account: str) -> None:
    """``sess``'s user is now logged in to ``account``: ACCOUNT to those who see
    it (account-notify, extended-monitor) and 900 to the user."""
    from relaychat.protocol import multiclient  # it imports this module

    user = sess.user
    core.account_changed(user, account)
    readmarkers.logged_in(core, sess)  # the account's read markers, before its next command
    core.reply(sess, N.RPL_LOGGEDIN, user.prefix, account, f"You are now logged in as {account}")
    if user.registered:
        multiclient.logged_in(core, user)


def log_out(core: ServerCore, user: User) -> None:
    """``user`` is logged out (its account was dropped): ACCOUNT * and 901."""
    from relaychat.protocol import multiclient  # it imports this module

    account = user.account
    if account is None:
        return
    core.account_changed(user, None)
    user.read_markers = None  # they were the account's
    multiclient.logged_out(core, user, account)
    for sess in user.sessions:
        core.reply(sess, N.RPL_LOGGEDOUT, user.prefix, "You are now logged out")


def check_nick(core: ServerCore, sess: Session) -> None:
    """``sess``'s user now has its nick (registration, NICK): if that is the name
    of an account it is not logged in to, NickServ tells it to identify
    (``nick_protection = "warn"`` or ``"enforce"``), and with ``"enforce"`` the
    nick is changed to a guest nick unless it identifies within ``nick_grace``
    seconds. The account lookup is an unordered op: nothing waits for it."""
    settings = core.config.accounts
    user = sess.user
    nick = user.nick
    store = core.store
    if settings.nick_protection == "off" or store is None or nick is None:
        return
    folded = core.fold(nick)
    if folded not in core.account_names:
        return  # the usual case: no account has this name, no store query
    if user.account is not None and core.fold(user.account) == folded:
        return

    def run() -> bool:
        found = store_call(core, sess, "nick protection lookup", lambda s: s.get_account(folded))
        return isinstance(found, AccountRecord)

    def then(registered: bool) -> None:
        if not registered or not _still_unidentified(core, sess, folded):
            return
        grace = settings.nick_grace
        if settings.nick_protection == "enforce":
            text = (
                f"{nick} is a registered account: identify with /msg NickServ IDENTIFY "
                f"<password> within {int(grace)} seconds, or your nick will be changed"
            )
            core.call_at(core.now.mono + grace, sess, lambda: _enforce(core, sess, folded))
        else:
            text = (
                f"{nick} is a registered account: identify with /msg NickServ IDENTIFY <password>"
            )
        core.send_line(sess, f":NickServ!NickServ@services. NOTICE {sess.name} :{text}")

    core.submit(Op(run, then, sess, ordered=False, pool="store"))


def _still_unidentified(core: ServerCore, sess: Session, folded: str) -> bool:
    user = sess.user
    return (
        sess.closing is None
        and user.nick_folded == folded
        and (user.account is None or core.fold(user.account) != folded)
    )


def _enforce(core: ServerCore, sess: Session, folded: str) -> None:
    if not _still_unidentified(core, sess, folded):
        return
    user = sess.user
    now = core.now
    for _ in range(10):
        guest = f"Guest{int.from_bytes(os.urandom(3), 'big') % 100000:05d}"
        if core.registry.nick_holder(guest) is None:
            break
    else:
        core.disconnect(sess, "Nick protection: no guest nick free", now)
        return
    old_nick, old_folded = user.nick, user.nick_folded
    ev = core.event(user, "NICK", [guest], now, PEERS, echo=ECHO_ALWAYS, trailing=True)
    if core.registry.change_nick(user, guest, now.wall):
        log.info("[%d] nick %s taken back for its account: now %s", sess.conn_id, old_nick, guest)
        core.emit(ev)
        core.monitor.nick_changed(user, old_nick, old_folded)
