"""Capabilities and ISUPPORT: what the server advertises, from the configuration.

``SUPPORTED_CAPS`` is what ``CAP LS`` lists (:func:`offered_caps` gives the values
that come from the configuration); :func:`offers` adds ``sts``, the one whose
value depends on the connection (its :class:`StsPolicy` is decided by the
transport side, which can read certificates), and gives one offer for
plaintext and one for TLS sessions; ``VARIANT_CAPS`` are the capabilities
that change the bytes of a relayed message (so a message is serialised once per
combination in use); :func:`isupport_lines` builds the 005 tokens, and the
handlers' target limits come from the same :class:`TargetLimits`, so ISUPPORT and
behaviour cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaychat.protocol.message import pack
from relaychat.protocol.state import (
    CAP_ACCOUNT_TAG,
    CAP_MESSAGE_TAGS,
    CAP_MULTILINE,
    CAP_SERVER_TIME,
)

if TYPE_CHECKING:
    from relaychat.config import Config
    from relaychat.protocol.state import Session

__all__ = [
    "ACCOUNT_REGISTRATION",
    "BOT_MODE",
    "INFORMATIONAL_CAPS",
    "METADATA_CAP",
    "MULTILINE",
    "STS",
    "SUPPORTED_CAPS",
    "StsPolicy",
    "VARIANT_CAPS",
    "TargetLimits",
    "cap_changes",
    "cap_lines",
    "set_caps",
    "isupport_lines",
    "offered_caps",
    "offers",
    "variant_of",
]

METADATA_CAP = "draft/metadata-2"
ACCOUNT_REGISTRATION = "draft/account-registration"
MULTILINE = "draft/multiline"  # the capability, and the batch type
STS = "sts"
# advertised for their value only: CAP REQ of one is NAKed (sts: "clients MUST NOT request")
INFORMATIONAL_CAPS = frozenset({STS})

# capability name -> value advertised in CAP LS 302 ("" for none)
SUPPORTED_CAPS: dict[str, str] = {
    "account-notify": "",
    ACCOUNT_REGISTRATION: "custom-account-name",  # offered when [accounts] registration is on
    "account-tag": "",
    "away-notify": "",
    "batch": "",
    "cap-notify": "",
    METADATA_CAP: "",  # its value comes from the configuration (offered_caps)
    "chghost": "",
    "draft/chathistory": "",  # offered by a core that keeps history
    "draft/event-playback": "",
    "draft/message-redaction": "",  # offered by a core that keeps history
    "draft/read-marker": "",  # offered by a core that keeps history
    MULTILINE: "",  # max-bytes and max-lines, from the configuration (offered_caps)
    "echo-message": "",
    "extended-join": "",
    "extended-monitor": "",
    "invite-notify": "",
    "labeled-response": "",
    "message-tags": "",
    "multi-prefix": "",
    "no-implicit-names": "",
    "sasl": "PLAIN,SCRAM-SHA-256,EXTERNAL",  # offered only by a core with a store
    "server-time": "",
    "setname": "",
    "userhost-in-names": "",
}

BOT_MODE = "B"  # the user mode that marks a bot (ISUPPORT BOT, the WHO flag)
SECURE_MODE = "Z"  # the user mode of a user connected over TLS (as Ergo, UnrealIRCd's +z)

VARIANT_CAPS = {
    "server-time": CAP_SERVER_TIME,
    "message-tags": CAP_MESSAGE_TAGS,
    "account-tag": CAP_ACCOUNT_TAG,
}


def offered_caps(config: Config) -> dict[str, str]:
    """What ``CAP LS`` offers under ``config``: name -> value ("" for none)."""
    meta = config.metadata
    tokens = ["before-connect"] if meta.before_connect else []
    tokens += [
        f"max-subs={meta.max_subs}",
        f"max-keys={meta.max_keys}",
        f"max-value-bytes={meta.max_value_bytes}",
    ]
    lim = config.limits
    values = {
        **SUPPORTED_CAPS,
        METADATA_CAP: ",".join(tokens),
        MULTILINE: f"max-bytes={lim.multiline_max_bytes},max-lines={lim.multiline_max_lines}",
    }
    if config.accounts.email_verification:
        values[ACCOUNT_REGISTRATION] += ",email-required"
    disabled = set(config.server.disabled_caps)
    if not config.accounts.registration:
        disabled.add(ACCOUNT_REGISTRATION)
    return {name: value for name, value in values.items() if name not in disabled}


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """The IRCv3 STS policy advertised (``sts``): a plaintext session is told the
    TLS ``port`` to reconnect to; a TLS session how long to keep the policy."""

    port: int
    duration: int
    preload: bool = False

    def value(self, secure: bool) -> str:
        if not secure:
            return f"port={self.port}"
        return f"duration={self.duration}" + (",preload" if self.preload else "")


def offers(offered: dict[str, str], sts: StsPolicy | None) -> tuple[dict[str, str], dict[str, str]]:
    """The offer to plaintext and to TLS sessions: ``offered`` (the same for
    both), with ``sts`` in each when there is a policy."""
    plain, secure = dict(offered), dict(offered)
    if sts is not None:
        plain[STS] = sts.value(False)
        secure[STS] = sts.value(True)
    return plain, secure


def cap_changes(old: dict[str, str], new: dict[str, str]) -> tuple[list[str], list[str]]:
    """(``CAP NEW`` items, ``CAP DEL`` names) from one offer to the next. A
    changed value is a NEW alone (with the new value), as InspIRCd does."""
    added = [f"{k}={v}" if v else k for k, v in sorted(new.items()) if old.get(k) != v]
    removed = sorted(k for k in old if k not in new)
    return added, removed


def cap_lines(head: str, items: list[str]) -> list[str]:
    """``CAP LS``/``LIST``/``NEW``/``DEL`` lines (``head`` is ``:server CAP nick LS ``)
    with ``items`` over as many lines as fit in 512 bytes, all but the last
    marked ``*`` (only 302 clients are offered enough to need the mark)."""
    chunks = list(pack(items, 510 - len(head.encode("utf-8")) - 3))  # "* :" of a continued line
    if not chunks:
        return [head + ":"]
    return [head + "* :" + c for c in chunks[:-1]] + [head + ":" + chunks[-1]]


def set_caps(sess: Session, caps: frozenset[str] | set[str]) -> None:
    sess.caps = frozenset(caps)
    sess.variant = variant_of(sess.caps)


def variant_of(caps: frozenset[str]) -> int:
    variant = 0
    for name, bit in VARIANT_CAPS.items():
        if name in caps:
            variant |= bit
    if MULTILINE in caps and "batch" in caps:  # multiline needs batch, in either order
        variant |= CAP_MULTILINE
    return variant


@dataclass(frozen=True, slots=True)
class TargetLimits:
    """Targets per command (ISUPPORT TARGMAX): the handlers enforce these."""

    privmsg: int
    join: int
    names: int = 1
    whois: int = 1
    kick: int = 4
    list: int = 8  # masks per LIST
    whowas: int = 1
    part: int = 0  # filled from the config like join

    def targmax(self) -> str:
        items = [
            ("JOIN", self.join),
            ("KICK", self.kick),
            ("LIST", self.list),
            ("NAMES", self.names),
            ("NOTICE", self.privmsg),
            ("PART", self.part),
            ("PRIVMSG", self.privmsg),
            ("TAGMSG", self.privmsg),
            ("WHOIS", self.whois),
            ("WHOWAS", self.whowas),
        ]
        return "TARGMAX=" + ",".join(f"{name}:{n or ''}" for name, n in items)


def target_limits(config: Config) -> TargetLimits:
    lim = config.limits
    # JOIN and PART: no cap of their own (each channel past CHANLIMIT gets 405)
    return TargetLimits(privmsg=lim.max_targets, join=0, part=0, kick=lim.max_targets)


def isupport_lines(config: Config, targets: TargetLimits) -> list[list[str]]:
    lim = config.limits
    tokens = [
        f"AWAYLEN={lim.awaylen}",
        f"BOT={BOT_MODE}",
        f"CASEMAPPING={config.server.casemapping}",
        f"CHANLIMIT=#&:{lim.chanlimit}",
        "CHANMODES=beI,k,l,imnst",
        f"CHANNELLEN={lim.channellen}",
        "CHANTYPES=#&",
        "ELIST=CMNTU",
        "EXCEPTS=e",
        "INVEX=I",
        f"KICKLEN={lim.kicklen}",
        "KNOCK",
        f"MAXLIST=beI:{lim.max_list_entries}",
        f"MAXTARGETS={lim.max_targets}",
        f"MODES={lim.max_modes}",
        f"MONITOR={lim.monitor_limit}",
        f"NETWORK={config.server.network}",
        f"NICKLEN={lim.nicklen}",
        "PREFIX=(ov)@+",
        "SAFELIST",
        f"SILENCE={lim.max_silence}",
        "STATUSMSG=@+",
        targets.targmax(),
        f"TOPICLEN={lim.topiclen}",
        f"USERLEN={lim.userlen}",
        "UTF8ONLY",
        "WHOX",
    ]
    return [tokens[i : i + 12] for i in range(0, len(tokens), 12)]
