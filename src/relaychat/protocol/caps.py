"""Capabilities and ISUPPORT: what the server advertises, from the configuration.

``SUPPORTED_CAPS`` is what ``CAP LS`` lists (:func:`cap_values` fills in the values
that come from the configuration); ``VARIANT_CAPS`` are the capabilities that change
the bytes of a relayed message (so a message is serialised once per combination
in use); :func:`isupport_lines` builds the 005 tokens, and the
handlers' target limits come from the same :class:`TargetLimits`, so ISUPPORT and
behaviour cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaychat.protocol.state import (
    CAP_ACCOUNT_TAG,
    CAP_MESSAGE_TAGS,
    CAP_MULTILINE,
    CAP_SERVER_TIME,
)

if TYPE_CHECKING:
    from relaychat.config import Config

__all__ = [
    "MULTILINE",
    "SUPPORTED_CAPS",
    "VARIANT_CAPS",
    "TargetLimits",
    "cap_values",
    "isupport_lines",
    "variant_of",
]

MULTILINE = "draft/multiline"  # the capability, and the batch type

# capability name -> value advertised in CAP LS 302 ("" for none)
SUPPORTED_CAPS: dict[str, str] = {
    "account-tag": "",
    "away-notify": "",
    "batch": "",
    "cap-notify": "",
    MULTILINE: "",  # max-bytes and max-lines, from the configuration (cap_values)
    "echo-message": "",
    "invite-notify": "",
    "labeled-response": "",
    "message-tags": "",
    "multi-prefix": "",
    "server-time": "",
    "setname": "",
    "userhost-in-names": "",
}

VARIANT_CAPS = {
    "server-time": CAP_SERVER_TIME,
    "message-tags": CAP_MESSAGE_TAGS,
    "account-tag": CAP_ACCOUNT_TAG,
}


def variant_of(caps: frozenset[str]) -> int:
    variant = 0
    for name, bit in VARIANT_CAPS.items():
        if name in caps:
            variant |= bit
    if MULTILINE in caps and "batch" in caps:  # multiline needs batch, in either order
        variant |= CAP_MULTILINE
    return variant


def cap_values(config: Config) -> dict[str, str]:
    """What ``CAP LS 302`` advertises: every capability with its value."""
    lim = config.limits
    values = dict(SUPPORTED_CAPS)
    values[MULTILINE] = f"max-bytes={lim.multiline_max_bytes},max-lines={lim.multiline_max_lines}"
    return values


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
        f"CASEMAPPING={config.server.casemapping}",
        f"CHANLIMIT=#&:{lim.chanlimit}",
        "CHANMODES=beI,k,l,imnst",
        f"CHANNELLEN={lim.channellen}",
        "CHANTYPES=#&",
        "ELIST=CMNTU",
        "EXCEPTS=e",
        "INVEX=I",
        f"KICKLEN={lim.kicklen}",
        f"MAXLIST=beI:{lim.max_list_entries}",
        f"MAXTARGETS={lim.max_targets}",
        f"MODES={lim.max_modes}",
        f"NETWORK={config.server.network}",
        f"NICKLEN={lim.nicklen}",
        "PREFIX=(ov)@+",
        "SAFELIST",
        "STATUSMSG=@+",
        targets.targmax(),
        f"TOPICLEN={lim.topiclen}",
        f"USERLEN={lim.userlen}",
        "UTF8ONLY",
        "WHOX",
    ]
    return [tokens[i : i + 12] for i in range(0, len(tokens), 12)]
