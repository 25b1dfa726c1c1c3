"""The ``sts`` capability on the core (no sockets): its value depends on the
session (a port for plaintext, a duration for TLS), CAP LS without 302 shows
the name only, CAP REQ of it is NAKed, and a policy set or dropped at runtime
reaches cap-notify clients as CAP NEW / CAP DEL with their own value."""

from __future__ import annotations

import pytest

from coreharness import Clock, Peer, new_core, pump
from relaychat.config import Config
from relaychat.protocol.caps import StsPolicy
from relaychat.protocol.core import ServerCore
from relaychat.protocol.message import Message

POLICY = StsPolicy(port=6697, duration=2592000)


@pytest.fixture
def core() -> ServerCore:
    core = new_core(Config(), Clock())
    core.set_sts(POLICY)
    return core


def peer(core: ServerCore, secure: bool) -> Peer:
    p = Peer(core, Clock())
    p.session.secure = secure  # what the transport says at connect
    return p


def ls(p: Peer, version: str = "302") -> list[str]:
    p.send(f"CAP LS {version}".rstrip())
    items: list[str] = []
    for m in p.take():
        if m.command == "CAP" and m.params[1] == "LS":
            items += m.params[-1].split()
    return items


def sts_items(items: list[str]) -> list[str]:
    return [i for i in items if i == "sts" or i.startswith("sts=")]


def test_a_plaintext_session_is_told_the_port_and_no_duration(core: ServerCore) -> None:
    assert sts_items(ls(peer(core, secure=False))) == ["sts=port=6697"]


def test_a_tls_session_is_told_the_duration_and_no_port(core: ServerCore) -> None:
    assert sts_items(ls(peer(core, secure=True))) == ["sts=duration=2592000"]


def test_preload_is_shown_to_tls_sessions_only(core: ServerCore) -> None:
    core.set_sts(StsPolicy(6697, 86400, preload=True))
    assert sts_items(ls(peer(core, secure=True))) == ["sts=duration=86400,preload"]
    assert sts_items(ls(peer(core, secure=False))) == ["sts=port=6697"]


@pytest.mark.parametrize("version", ["", "301"])
def test_cap_ls_without_302_shows_the_name_only(core: ServerCore, version: str) -> None:
    assert sts_items(ls(peer(core, secure=False), version)) == ["sts"]
    assert sts_items(ls(peer(core, secure=True), version)) == ["sts"]


def test_no_policy_no_sts() -> None:
    core = new_core(Config(), Clock())
    assert sts_items(ls(peer(core, secure=False))) == []
    assert sts_items(ls(peer(core, secure=True))) == []


@pytest.mark.parametrize("request_", ["sts", "-sts", "sts multi-prefix"])
def test_cap_req_of_sts_is_naked(core: ServerCore, request_: str) -> None:
    for secure in (False, True):
        p = peer(core, secure)
        ls(p)
        p.send(f"CAP REQ :{request_}")
        (reply,) = [m for m in p.take() if m.command == "CAP"]
        assert reply.params[1:] == ["NAK", request_]
        assert "sts" not in p.session.caps and "multi-prefix" not in p.session.caps


def notified(p: Peer) -> list[tuple[str, str]]:
    pump(p.core)
    got: list[Message] = [m for m in p.take() if m.command == "CAP"]
    return [(m.params[1], m.params[-1]) for m in got]


def test_a_policy_change_reaches_cap_notify_clients_with_their_own_value() -> None:
    core = new_core(Config(), Clock())
    plain, secure = peer(core, secure=False), peer(core, secure=True)
    for p in (plain, secure):
        ls(p)  # 302: cap-notify
    core.set_sts(POLICY)
    assert notified(plain) == [("NEW", "sts=port=6697")]
    assert notified(secure) == [("NEW", "sts=duration=2592000")]
    core.set_sts(StsPolicy(6697, 60))  # only the TLS value changes
    assert notified(plain) == []
    assert notified(secure) == [("NEW", "sts=duration=60")]
    core.set_sts(StsPolicy(6697, 60))  # the same: nothing
    assert notified(plain) == notified(secure) == []
    core.set_sts(None)
    assert notified(plain) == notified(secure) == [("DEL", "sts")]


def test_the_policy_survives_a_rehash() -> None:
    core = new_core(Config(), Clock())
    core.set_sts(POLICY)
    core.rehash(Config())
    assert sts_items(ls(peer(core, secure=True))) == ["sts=duration=2592000"]
