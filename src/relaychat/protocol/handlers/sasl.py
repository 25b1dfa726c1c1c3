"""AUTHENTICATE: SASL (IRCv3 sasl-3.1 and 3.2) with PLAIN, SCRAM-SHA-256 and EXTERNAL.

Transitions of ``sess.sasl`` (None: no exchange in progress)::

    None --AUTHENTICATE PLAIN--------------> plain        (AUTHENTICATE +)
    None --AUTHENTICATE EXTERNAL-----------> external     (AUTHENTICATE +), or 904
                                                           without a client certificate
    external --response--> (account lookup by fingerprint, an op) --> None (900 903 | 904)
    None --AUTHENTICATE SCRAM-SHA-256------> scram-first  (AUTHENTICATE +)
    plain --response--> (password check, an op) --> None  (900 903 | 904)
    scram-first --client-first--> (account lookup, an op) --> scram-final (server-first)
    scram-final --client-final--> scram-ack (server-final) | None (904)
    scram-ack --empty response--> None                    (900 903)
    any --AUTHENTICATE *--> None (906); any --chunk over 400 bytes or response
    over 8 KiB--> None (905); any --malformed--> None (904)
    any --CAP END (registration goes on without it)--> None (906)

Numerics: 904 when the mechanism is unknown (after 908 with the list), the
credentials are wrong or the message is malformed (EXTERNAL: no client
certificate, no account lists its fingerprint, or the authorization identity
given is another account); 907 when the session is
already logged in (changing accounts is not offered; 3.2 re-authentication
works for a registered client that is not logged in). AUTHENTICATE needs the
``sasl`` capability, which is offered only when the server has a store. The
slow parts (the scrypt check of PLAIN, the account lookup of SCRAM) are ordered
ops, throttled per address and account like every login.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

from relaychat.protocol import numerics as N
from relaychat.protocol.accounts import (
    UNAVAILABLE,
    after_backoff,
    authenticate,
    log_in,
    note_attempt,
    store_call,
)
from relaychat.protocol.ops import Op
from relaychat.protocol.sasl import (
    MECHANISMS,
    Piece,
    SaslError,
    SaslState,
    ScramServer,
    b64chunks,
    parse_external,
    parse_plain,
)
from relaychat.protocol.storage import AccountRecord

if TYPE_CHECKING:
    from relaychat.protocol.core import ServerCore
    from relaychat.protocol.message import Message
    from relaychat.protocol.state import Session
    from relaychat.protocol.timebase import Now

log = logging.getLogger("relaychat.accounts")

# salts for unknown accounts are derived from this (per process: an unknown
# account's salt is stable while the server runs, as a real one would be)
_UNKNOWN_SALT_SECRET = secrets.token_bytes(32)


def _send(core: ServerCore, sess: Session, data: bytes) -> None:
    for chunk in b64chunks(data):
        core.send_line(sess, f":{core.server_name} AUTHENTICATE {chunk}")


def _fail(core: ServerCore, sess: Session) -> None:
    sess.sasl = None
    core.reply(sess, N.ERR_SASLFAIL, "SASL authentication failed")


def _succeed(core: ServerCore, sess: Session, account: str) -> None:
    sess.sasl = None
    log_in(core, sess, account)
    core.reply(sess, N.RPL_SASLSUCCESS, "SASL authentication successful")


def abort(core: ServerCore, sess: Session) -> None:
    """End an exchange in progress with 906 (AUTHENTICATE *, or CAP END)."""
    if sess.sasl is not None:
        sess.sasl = None
        core.reply(sess, N.ERR_SASLABORTED, "SASL authentication aborted")


# AUTHENTICATE <mechanism> | <base64> | + | *
def handle_authenticate(core: ServerCore, sess: Session, msg: Message, now: Now) -> None:
    arg = msg.params[0]
    if "sasl" not in sess.caps or core.store is None:
        _fail(core, sess)
        return
    state = sess.sasl
    if state is None:
        _start(core, sess, arg)
        return
    piece = state.assembler.feed(arg)
    if piece is Piece.MORE:
        return
    if piece is Piece.ABORT:
        abort(core, sess)
        return
    if piece is Piece.TOO_LONG:
        sess.sasl = None
        core.reply(sess, N.ERR_SASLTOOLONG, "SASL message too long")
        return
    try:
        data = state.assembler.take()
        _STEPS[state.step](core, sess, state, data)
    except SaslError as exc:
        log.info("[%d] SASL %s from %s: %s", sess.conn_id, state.mechanism, sess.ip, exc)
        _fail(core, sess)


def _start(core: ServerCore, sess: Session, arg: str) -> None:
    if arg == "*":
        core.reply(sess, N.ERR_SASLABORTED, "SASL authentication aborted")
        return
    if sess.user.account is not None:
        core.reply(sess, N.ERR_SASLALREADY, "You have already authenticated using SASL")
        return
    mechanism = arg.upper()
    if mechanism not in MECHANISMS:
        core.reply(sess, N.RPL_SASLMECHS, ",".join(MECHANISMS), "are available SASL mechanisms")
        _fail(core, sess)
        return
    if mechanism == "EXTERNAL" and sess.certfp is None:
        log.info("[%d] SASL EXTERNAL from %s: no client certificate", sess.conn_id, sess.ip)
        _fail(core, sess)
        return
    step = _FIRST_STEP[mechanism]
    sess.sasl = SaslState(mechanism, step)
    core.send_line(sess, f":{core.server_name} AUTHENTICATE +")


def _plain(core: ServerCore, sess: Session, state: SaslState, data: bytes) -> None:
    authzid, authcid, password = parse_plain(data)
    if authzid and core.fold(authzid) != core.fold(authcid):
        raise SaslError("authorization identity differs")

    def then(result: AccountRecord | None | object) -> None:
        if sess.sasl is not state:
            return  # aborted meanwhile
        if isinstance(result, AccountRecord):
            _succeed(core, sess, result.name)
        else:
            _fail(core, sess)

    authenticate(core, sess, authcid, password, then, "SASL PLAIN")


def _external(core: ServerCore, sess: Session, state: SaslState, data: bytes) -> None:
    authzid = parse_external(data)
    certfp = sess.certfp
    assert certfp is not None  # checked at the start

    def run() -> AccountRecord | None | object:
        return store_call(core, sess, "SASL EXTERNAL lookup", lambda s: s.account_by_certfp(certfp))

    def then(result: AccountRecord | None | object) -> None:
        if sess.sasl is not state:
            return  # aborted meanwhile
        ok = (
            isinstance(result, AccountRecord)
            and result.verified
            and (not authzid or core.fold(authzid) == result.folded)
        )
        if ok and isinstance(result, AccountRecord):
            log.info("[%d] SASL EXTERNAL as %r from %s", sess.conn_id, result.name, sess.ip)
            _succeed(core, sess, result.name)
        else:
            log.warning("[%d] SASL EXTERNAL (%s) from %s failed", sess.conn_id, certfp, sess.ip)
            _fail(core, sess)

    core.submit(Op(run, then, sess, pool="store"))


def _scram_first(core: ServerCore, sess: Session, state: SaslState, data: bytes) -> None:
    scram = ScramServer(_UNKNOWN_SALT_SECRET)
    name = scram.client_first(data)
    state.scram = scram
    folded = core.fold(name)
    iterations = core.config.accounts.scram_iterations

    def run() -> AccountRecord | None | object:
        return store_call(core, sess, "SASL account lookup", lambda s: s.get_account(folded))

    def then(result: AccountRecord | None | object) -> None:
        if sess.sasl is not state:
            return
        if result is UNAVAILABLE:
            _fail(core, sess)
            return
        # an unverified account (email verification) fails as an unknown one
        record = result if isinstance(result, AccountRecord) and result.verified else None
        state.account = record.name if record is not None else None
        creds = record.scram if record is not None else None
        _send(core, sess, scram.server_first_message(creds, folded, iterations))
        state.step = "scram-final"

    def lookup() -> None:
        sess.busy = False
        core.submit(Op(run, then, sess, pool="store"))

    after_backoff(core, sess, folded, lookup)


def _scram_final(core: ServerCore, sess: Session, state: SaslState, data: bytes) -> None:
    scram = state.scram
    assert scram is not None
    server_final = scram.client_final(data)
    folded = core.fold(scram.username)
    ok = server_final is not None and state.account is not None
    note_attempt(core, sess, folded, ok)
    if server_final is None or state.account is None:
        log.warning(
            "[%d] SASL SCRAM-SHA-256 as %r from %s failed", sess.conn_id, scram.username, sess.ip
        )
        _fail(core, sess)
        return
    log.info("[%d] SASL SCRAM-SHA-256 as %r from %s", sess.conn_id, state.account, sess.ip)
    _send(core, sess, server_final)
    state.step = "scram-ack"


def _scram_ack(core: ServerCore, sess: Session, state: SaslState, data: bytes) -> None:
    assert state.account is not None
    _succeed(core, sess, state.account)


_FIRST_STEP = {"PLAIN": "plain", "SCRAM-SHA-256": "scram-first", "EXTERNAL": "external"}

_STEPS = {
    "plain": _plain,
    "external": _external,
    "scram-first": _scram_first,
    "scram-final": _scram_final,
    "scram-ack": _scram_ack,
}
