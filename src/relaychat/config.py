"""Configuration: frozen dataclasses loaded from TOML; every key has a default.

Theory of operation
-------------------
``load_config(path)`` reads a file, ``Config()`` is the embedded default. Loading
is two steps, both finished before a :class:`Config` is returned, so a REHASH
applies a whole valid file or nothing:

1. *build*: every table and key must be known and every value must have its
   key's type (an integer is accepted where a float is expected; a list of
   strings becomes a tuple);
2. *check*: every value against its rule in ``_RULES`` (a range, a choice, a
   format), then what relates keys to each other (``recvq >= line_length``, no
   listener twice).

Every failure is a :class:`ConfigError` whose message names the file and the key
(``FILE: key 'limits.whowas_size' must be >= 0``) and never echoes a password;
the CLI prints it as one line and exits 2. ``Config(...)`` built in code is not
checked: tests use that to set limits a file may not.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import ipaddress
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AccountsConfig",
    "AdminConfig",
    "CloakingConfig",
    "Config",
    "ConfigError",
    "EmailConfig",
    "LimitsConfig",
    "ListenConfig",
    "MetadataConfig",
    "OperConfig",
    "ServerConfig",
    "StoreConfig",
    "WebSocketConfig",
    "StsConfig",
    "HistoryConfig",
    "check_value",
    "load_config",
    "parse_config",
]


class ConfigError(Exception):
    """The configuration file is unreadable, malformed, names an unknown key, or
    has a value out of its key's range."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str = "irc.relaychat.local"
    network: str = "RelayChat"
    description: str = "relaychat IRC server"
    engine: str = "loop"  # "loop" (asyncio) or "threads" (one thread per connection)
    password: str = ""  # connection password (PASS); empty: none required
    motd: str = "Welcome to relaychat. Be kind; have fun."
    log_level: str = "INFO"
    log_format: str = "text"  # "text" or "json" (one object per line)
    casemapping: str = "rfc1459"  # "rfc1459" or "ascii"
    # IRCv3 capabilities not offered (REHASH sends CAP DEL / CAP NEW to cap-notify clients)
    disabled_caps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """One ``[[listen]]`` table: an address and port to accept clients on.
    ``tls = true`` serves TLS there with the PEM ``cert`` (chain) and ``key``
    files (relative to the working directory; reloaded on REHASH/SIGHUP).
    ``proxy``: the addresses and networks of trusted proxies; when not empty,
    every connection must come from one of them and start with a PROXY
    header (v1 or v2), whose source address is the client's."""

    address: str = "127.0.0.1"
    port: int = 6667
    tls: bool = False
    cert: str = ""  # TLS only: the certificate (chain), PEM
    key: str = ""  # TLS only: its private key, PEM, unencrypted
    websocket: bool = False  # HTTP/WebSocket (IRCv3 WebSocket, the browser client) instead of IRC
    proxy: tuple[str, ...] = ()  # trusted proxies (addresses, networks): PROXY header required

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    nicklen: int = 30
    userlen: int = 18
    channellen: int = 50
    topiclen: int = 390
    awaylen: int = 200
    kicklen: int = 255
    realnamelen: int = 128  # USER and SETNAME realname
    chanlimit: int = 50  # channels one user may be in
    max_targets: int = 4  # targets per PRIVMSG/NOTICE/JOIN/...
    max_modes: int = 4  # parameterised modes per MODE command
    max_list_entries: int = 100  # bans/excepts/invex per channel
    max_invites: int = 16  # pending invitations per user
    invite_expiry: float = 3600.0  # seconds an invitation stays valid
    line_length: int = 512  # bytes, CRLF included, tags excluded
    tags_length: int = 4094  # bytes of tag data a client may send
    sendq: int = 1048576  # bytes queued to a client before it is dropped
    recvq: int = 32768  # bytes of unprocessed input before "Excess Flood" (fits a multiline batch)
    flood_rate: float = 4.0  # lines per second refilled; 0 disables flood control
    flood_burst: int = 20  # lines a client may send at once
    ping_interval: float = 120.0  # seconds of silence before the server sends PING
    ping_timeout: float = 60.0  # seconds to answer that PING
    registration_timeout: float = 30.0
    tls_handshake_timeout: float = 10.0  # seconds a TLS client has to finish its handshake
    proxy_timeout: float = 5.0  # seconds a proxy has to send its PROXY header
    max_connections: int = 20000
    max_connections_per_ip: int = 10  # 0 = unlimited
    connection_limit_exempt: tuple[str, ...] = ("127.0.0.1", "::1")  # addresses, networks
    whowas_size: int = 1000
    monitor_limit: int = 100  # nicks one connection may MONITOR (ISUPPORT MONITOR)
    knock_delay: float = 300.0  # seconds between two KNOCKs by one user; 0: no limit
    knock_channel_delay: float = 60.0  # seconds between two KNOCKs on one channel; 0: no limit
    max_silence: int = 32  # masks per SILENCE list (ISUPPORT SILENCE=)
    max_server_bans: int = 1000  # K-lines and D-lines together
    # draft/multiline: text bytes of one batch (each joining line feed counts one)
    multiline_max_bytes: int = 4096
    multiline_max_lines: int = 100  # PRIVMSG/NOTICE lines in one batch

    def exempt_from_ip_limit(self, ip: str) -> bool:
        """True when ``ip`` is in ``connection_limit_exempt`` (an IPv4-mapped IPv6
        address counts as its IPv4 address); False for what is not an address."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in _parsed_networks(self.connection_limit_exempt))


@dataclass(frozen=True, slots=True)
class MetadataConfig:
    """IRCv3 metadata (``draft/metadata-2``): what its capability value advertises,
    and the budgets that keep one client's metadata traffic bounded."""

    before_connect: bool = True  # METADATA allowed during registration (cap token)
    max_keys: int = 20  # keys per user and per channel (cap token max-keys)
    max_subs: int = 50  # subscribed keys per connection (cap token max-subs)
    max_value_bytes: int = 300  # bytes per value (cap token max-value-bytes)
    change_rate: float = 1.0  # SETs per second a connection may make on average ...
    change_burst: int = 10  # ... and at once (more: FAIL METADATA RATE_LIMITED)
    sync_rate: float = 100.0  # metadata lines per second a connection may be synced ...
    sync_burst: int = 1000  # ... and at once (more: RPL_METADATASYNCLATER)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    location: str = "Somewhere on the network"
    location2: str = ""
    email: str = "admin@relaychat.local"


@dataclass(frozen=True, slots=True)
class CloakingConfig:
    """``[cloaking]``: hide client addresses behind a keyed hash (see
    :mod:`relaychat.protocol.cloaking`). ``secret`` is never shown: not in
    ``repr``, error messages, logs or STATS."""

    enabled: bool = False
    secret: str = field(default="", repr=False)  # required (16+ characters) when enabled
    netname: str = "ip"  # the last label of every cloak: abcd1234.efgh5678.<netname>
    cidr_len_ipv4: int = 32  # bits of an IPv4 address that go into its cloak
    cidr_len_ipv6: int = 64  # bits of an IPv6 address (one user's /64 gets one cloak)


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """``[accounts]``: account registration and login (REGISTER, NickServ, SASL)."""

    registration: bool = True  # REGISTER and NickServ REGISTER create accounts
    password_min: int = 8  # characters in a new password (fewer: WEAK_PASSWORD)
    scram_iterations: int = 4096  # PBKDF2 rounds of the SCRAM-SHA-256 credentials
    register_limit: int = 5  # accounts one address may register per window (0: no limit)
    register_window: float = 3600.0  # seconds
    nick_protection: str = "warn"  # "off", "warn" (NickServ asks to identify), "enforce"
    nick_grace: float = 60.0  # seconds to identify before "enforce" changes the nick
    email_verification: bool = False  # REGISTER needs an email and a code sent to it ([email])
    # several connections logged in to one account share one user (nick, channels)
    multiclient: bool = True
    max_sessions: int = 10  # connections one account may have at once
    # "false", "opt-in" (NickServ SET ALWAYS-ON ON), "opt-out" (on unless set OFF),
    # "true": the account's user stays in its channels while no connection is open
    always_on: str = "false"
    auto_away: str = "Not connected"  # the away message of an always-on user with no session


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """``[email]``: how verification codes are mailed (SMTP, see
    :mod:`relaychat.mail`) and how long they last. Used only when
    ``[accounts] email_verification`` is on."""

    smtp_host: str = "localhost"
    smtp_port: int = 25
    from_address: str = ""  # required when email verification is on
    starttls: bool = False  # STARTTLS before logging in (certificate checked)
    username: str = ""  # SMTP login ("" : none)
    password_file: str = ""  # a file holding the SMTP password (read at each send)
    timeout: float = 10.0  # seconds for the connection and each SMTP reply
    code_lifetime: float = 3600.0  # seconds a verification code stays valid
    max_attempts: int = 5  # wrong codes before a pending verification is void


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: the SQLite database that keeps accounts (see
    :mod:`relaychat.store.sqlite`). A relative ``path`` is relative to the
    working directory; ``":memory:"`` keeps everything in memory (lost at exit)."""

    path: str = "relaychat.db"
    synchronous: str = "normal"  # "normal": survives a process crash; "full": a power loss
    commit_rows: int = 100  # a group commit as soon as this many changes wait ...
    commit_ms: float = 2.0  # ... or this many milliseconds after the first


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """``[history]``: messages kept in the store and served by CHATHISTORY (see
    :mod:`relaychat.protocol.history`). A message is relayed only once its row is
    committed, so a crash never loses a line that a client saw."""

    enabled: bool = True
    # relay a message only once its row is committed (a crash loses nothing any
    # client saw); false: relay at once and write behind (faster; a crash may
    # lose the last few milliseconds of history)
    relay_after_commit: bool = True
    private: bool = True  # keep private messages too (between the two parties)
    max_age: float = 30.0  # days a message is kept (0: forever)
    max_lines: int = 10_000  # messages kept per channel or conversation (0: no limit)
    chathistory_limit: int = 100  # most messages one CHATHISTORY reply holds
    autoreplay_lines: int = 0  # lines replayed on JOIN to clients without chathistory
    exclude_channels: tuple[str, ...] = ()  # channel masks whose messages are not kept
    prune_interval: float = 600.0  # seconds between retention passes
    # seconds a sender may REDACT its own message (0: no limit); operators have none
    redact_window: float = 0.0


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """``[websocket]``: the listeners with ``websocket = true`` (see
    :mod:`relaychat.server.websocket`). Read again at REHASH, for new connections."""

    default_subprotocol: str = "text"  # "text" or "binary": for clients that ask for none
    origins: tuple[str, ...] = ()  # allowed Origin values, exact; empty: any (and none)
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For / Forwarded is believed
    max_message: int = 8192  # bytes of one incoming message (more: close 1009)
    ping_interval: float = 30.0  # seconds between WebSocket pings to idle clients; 0: none
    web_client: bool = True  # serve the browser client on plain GET requests


WEB_PORT = 8097  # the embedded default's WebSocket and browser client listener


@dataclass(frozen=True, slots=True)
class StsConfig:
    """``[sts]``: the IRCv3 Strict Transport Security policy (the ``sts``
    capability): plaintext clients are told to reconnect with TLS on ``port``,
    TLS clients to keep doing so for ``duration`` seconds. ``"auto"``: only when
    a TLS listener's certificate verifies against the system's CA store (a
    self-signed one would lock clients out); ``"true"``: whenever a TLS listener
    exists; ``"false"``: never."""

    enabled: str = "auto"  # "auto", "true" or "false" (true and false may be booleans)
    port: int = 0  # the TLS port clients are sent to; 0: the first TLS listener's
    duration: int = 2592000  # seconds clients keep the policy (30 days); 0 drops it
    preload: bool = False  # consent to be put on clients' preload lists


@dataclass(frozen=True, slots=True)
class OperConfig:
    password: str  # a hash from `relaychat mkpasswd`
    host: str = "*@*"  # user@host mask the oper must match


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    listen: tuple[ListenConfig, ...] = (
        ListenConfig(),
        ListenConfig(port=WEB_PORT, websocket=True),
    )
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    cloaking: CloakingConfig = field(default_factory=CloakingConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig)
    sts: StsConfig = field(default_factory=StsConfig)
    opers: dict[str, OperConfig] = field(default_factory=dict)
    path: str | None = None  # the file it came from, for REHASH


@functools.lru_cache(maxsize=8)
def _parsed_networks(
    networks: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n) for n in networks)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "limits": LimitsConfig,
    "metadata": MetadataConfig,
    "admin": AdminConfig,
    "cloaking": CloakingConfig,
    "accounts": AccountsConfig,
    "store": StoreConfig,
    "history": HistoryConfig,
    "email": EmailConfig,
    "websocket": WebSocketConfig,
    "sts": StsConfig,
}

# keys that moved: the message says where to
_MOVED = {
    "server.host": "listen addresses are [[listen]] tables now (address = ..., port = ...)",
    "server.port": "listen ports are [[listen]] tables now (address = ..., port = ...)",
}

# ------------------------------------------------------------------------ rules
# A rule takes a value (already of its key's type) and the section object it is
# in, and says what is wrong with the value, or None.
Rule = Callable[[Any, Any], str | None]

Bound = int | float | str | None  # a number, or a key of the same section ("limits.x")


@dataclass(frozen=True, slots=True)
class _Range:
    """``lo <= value <= hi`` (and ``value > above``); a bound may name another key."""

    lo: Bound = None
    hi: Bound = None
    above: float | None = None

    @property
    def relative(self) -> bool:
        return isinstance(self.lo, str) or isinstance(self.hi, str)

    def __call__(self, value: Any, section: Any) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.above is not None and not value > self.above:
            return f"must be > {_num(self.above)}"
        if self.lo is not None:
            lo, shown = _bound(self.lo, section)
            if value < lo:
                return f"must be >= {shown}"
        if self.hi is not None:
            hi, shown = _bound(self.hi, section)
            if value > hi:
                return f"must be <= {shown}"
        return None


def _bound(bound: int | float | str, section: Any) -> tuple[float, str]:
    if isinstance(bound, str):
        value: float = getattr(section, bound.rpartition(".")[2])
        return value, f"{bound} ({_num(value)})"
    return bound, _num(bound)


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _one_of(*choices: str) -> Rule:
    def check(value: str, _: Any) -> str | None:
        if value in choices:
            return None
        return "must be one of " + ", ".join(f'"{c}"' for c in choices)

    return check


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"[\r\n\x00]")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_B64 = r"([A-Za-z0-9+/]+=*)"
_SCRYPT = re.compile(rf"scrypt\$(\d+)\$(\d+)\$(\d+)\${_B64}\${_B64}", re.ASCII)
_SCRYPT_MAXMEM = 32 * 1024 * 1024  # what hashlib.scrypt allows by default


def _anything(value: Any, _: Any) -> str | None:
    return None


def _one_line(value: str, _: Any) -> str | None:
    """Text that goes into one protocol line: no CR, LF or NUL."""
    return "must not contain CR, LF or NUL" if _LINE_BREAKS.search(value) else None


def _token(max_len: int) -> Rule:
    """One word of a protocol line (NETWORK=..., an oper name)."""

    def check(value: str, _: Any) -> str | None:
        if not value:
            return "must not be empty"
        if len(value) > max_len:
            return f"must be at most {max_len} characters"
        if value.startswith(":") or any(c.isspace() for c in value) or _CONTROL.search(value):
            return "must be one word (no spaces or control characters, no leading ':')"
        return None

    return check


def _server_name(value: str, _: Any) -> str | None:
    if len(value) > 63 or "." not in value or not _HOSTNAME.fullmatch(value):
        return (
            "must be a host name with a dot, at most 63 characters of letters, digits, "
            "'-' and '.' (e.g. irc.example.org)"
        )
    return None


def _listen_address(value: str, _: Any) -> str | None:
    if not value:
        return 'must not be empty ("::" or "0.0.0.0" listen on every address)'
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if len(value) > 253 or not _HOSTNAME.fullmatch(value.removesuffix(".")):
            return "must be an IP address or a host name"
    return None


def _networks(value: tuple[str, ...], _: Any) -> str | None:
    for item in value:
        try:
            ipaddress.ip_network(item)
        except ValueError as exc:
            return f"must list IP addresses or CIDR networks: {exc}"
    return None


def _origins(value: tuple[str, ...], _: Any) -> str | None:
    for item in value:
        if not item or " " in item or "," in item or _CONTROL.search(item):
            return (
                f'must list Origin values such as "https://chat.example.org" '
                f"(one each, no spaces): {item!r}"
            )
    return None


def _cap_names(value: tuple[str, ...], _: Any) -> str | None:
    from relaychat.protocol.caps import SUPPORTED_CAPS

    for item in value:
        if item not in SUPPORTED_CAPS:
            return f"lists '{item}', which is not a capability this server has"
    return None


def _password_hash(value: str, _: Any) -> str | None:
    refused = (
        "must be a password hash (plaintext passwords are refused): "
        "make one with `relaychat mkpasswd`"
    )
    m = _SCRYPT.fullmatch(value)
    if m is None:
        return refused
    n, r, p = (int(x) for x in m.group(1, 2, 3))
    try:
        salt = base64.b64decode(m.group(4), validate=True)
        digest = base64.b64decode(m.group(5), validate=True)
    except (binascii.Error, ValueError):
        return refused
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or len(digest) < 16:
        return refused
    if 128 * r * (n + p + 2) > _SCRYPT_MAXMEM:
        return "is a scrypt hash that needs too much memory (n * r): use `relaychat mkpasswd`"
    return None


def _cloak_secret(value: str, section: Any) -> str | None:
    """Required when cloaking is enabled; the message never echoes the value."""
    if _LINE_BREAKS.search(value):
        return "must not contain CR, LF or NUL"
    if section.enabled and len(value) < CLOAK_SECRET_MIN:
        return (
            f"must be at least {CLOAK_SECRET_MIN} characters when cloaking is enabled "
            "(for example the output of: python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return None


def _channel_masks(value: tuple[str, ...], _: Any) -> str | None:
    for mask in value:
        if not mask or mask[0] not in "#&" or any(c in mask for c in " ,\x07"):
            return f"{mask!r} is not a channel mask (#name, wildcards * and ? allowed)"
    return None


def _store_path(value: str, _: Any) -> str | None:
    if not value or _CONTROL.search(value):
        return "must be a file name (not empty, no control characters)"
    if value.startswith("file:"):
        return 'must be a file name, not a "file:" URI'
    return None


def _tls_file(value: str, listener: Any) -> str | None:
    if _CONTROL.search(value):
        return "must be a file name (no control characters)"
    if listener is not None and listener.tls and not value:
        return "is required when tls = true (relaychat gencert writes a self-signed pair)"
    return None


def _smtp_host(value: str, _: Any) -> str | None:
    if not value or len(value) > 255 or _CONTROL.search(value) or " " in value:
        return "must be a host name or address"
    return None


def _from_address(value: str, _: Any) -> str | None:
    local, at, domain = value.partition("@")
    if value and (not at or not local or not domain or _CONTROL.search(value) or " " in value):
        return 'must be an email address such as "irc@example.org" (or "")'
    return None


def _host_label(value: str, _: Any) -> str | None:
    if len(value) > 63 or not _HOSTNAME.fullmatch(value):
        return "must be a host name part of letters, digits, '-' and '.', at most 63 characters"
    return None


def _user_host_mask(value: str, _: Any) -> str | None:
    user, at, host = value.partition("@")
    if not at or not user or not host or "@" in host or _CONTROL.search(value) or " " in value:
        return "must be a user@host mask such as *@127.0.0.1 or *@*.example.org"
    return None


CLOAK_SECRET_MIN = 16
_LENGTH = _Range(1, 255)
_SECONDS = _Range(hi=86400.0, above=0.0)  # > 0, at most a day
_IN_A_LINE = _Range(1, "limits.line_length")

# Every key of every section has a rule (a test checks that), in this order:
_RULES: dict[str, Rule] = {
    "server.name": _server_name,
    "server.network": _token(64),
    "server.description": _one_line,
    "server.engine": _one_of("loop", "threads"),
    "server.password": _one_line,
    "server.motd": _anything,
    "server.log_level": _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    "server.log_format": _one_of("text", "json"),
    "server.casemapping": _one_of("rfc1459", "ascii"),
    "server.disabled_caps": _cap_names,
    "listen.address": _listen_address,
    "listen.port": _Range(0, 65535),
    "listen.tls": _anything,
    "listen.cert": _tls_file,
    "listen.key": _tls_file,
    "listen.websocket": _anything,
    "listen.proxy": _networks,
    "limits.nicklen": _LENGTH,
    "limits.userlen": _Range(2, 255),
    "limits.channellen": _Range(2, 255),
    "limits.topiclen": _IN_A_LINE,
    "limits.awaylen": _IN_A_LINE,
    "limits.kicklen": _IN_A_LINE,
    "limits.realnamelen": _IN_A_LINE,
    "limits.chanlimit": _Range(1, 10000),
    "limits.max_targets": _Range(1, 100),
    "limits.max_modes": _Range(1, 100),
    "limits.max_list_entries": _Range(1, 10000),
    "limits.max_invites": _Range(1, 1000),
    "limits.invite_expiry": _Range(hi=7 * 86400.0, above=0.0),
    "limits.line_length": _Range(512, 16384),
    "limits.tags_length": _Range(512, 8191),
    "limits.sendq": _Range(8192, 1 << 30),
    "limits.recvq": _Range("limits.line_length", 1 << 24),
    "limits.flood_rate": _Range(0.0, 1000.0),
    "limits.flood_burst": _Range(1, 10000),
    "limits.ping_interval": _SECONDS,
    "limits.ping_timeout": _SECONDS,
    "limits.registration_timeout": _SECONDS,
    "limits.tls_handshake_timeout": _SECONDS,
    "limits.proxy_timeout": _SECONDS,
    "limits.max_connections": _Range(1, 1_000_000),
    "limits.max_connections_per_ip": _Range(0, 1_000_000),
    "limits.connection_limit_exempt": _networks,
    "limits.whowas_size": _Range(0, 1_000_000),
    "limits.monitor_limit": _Range(1, 10000),
    "limits.knock_delay": _Range(0.0, 86400.0),
    "limits.knock_channel_delay": _Range(0.0, 86400.0),
    "limits.max_silence": _Range(1, 1000),
    "limits.max_server_bans": _Range(1, 100_000),
    # an open batch is input the client holds: it must fit in recvq
    "limits.multiline_max_bytes": _Range(512, "limits.recvq"),
    "limits.multiline_max_lines": _Range(1, 1000),
    "metadata.before_connect": _anything,  # true or false: checked by type
    "metadata.max_keys": _Range(1, 1000),
    "metadata.max_subs": _Range(1, 1000),
    "metadata.max_value_bytes": _Range(1, 400),  # a value and its key fit in one line
    "metadata.change_rate": _Range(hi=1000.0, above=0.0),
    "metadata.change_burst": _Range(1, 10000),
    "metadata.sync_rate": _Range(hi=1_000_000.0, above=0.0),
    "metadata.sync_burst": _Range(1, 1_000_000),
    "admin.location": _one_line,
    "admin.location2": _one_line,
    "admin.email": _one_line,
    "cloaking.enabled": _anything,
    "cloaking.secret": _cloak_secret,
    "cloaking.netname": _host_label,
    "cloaking.cidr_len_ipv4": _Range(0, 32),
    "cloaking.cidr_len_ipv6": _Range(0, 128),
    "accounts.registration": _anything,  # true or false: checked by type
    "accounts.password_min": _Range(1, 300),
    "accounts.scram_iterations": _Range(4096, 1_000_000),  # RFC 7677: at least 4096
    "accounts.register_limit": _Range(0, 1_000_000),
    "accounts.register_window": _Range(hi=30 * 86400.0, above=0.0),
    "accounts.nick_protection": _one_of("off", "warn", "enforce"),
    "accounts.nick_grace": _Range(hi=3600.0, above=0.0),
    "accounts.email_verification": _anything,
    "accounts.multiclient": _anything,
    "accounts.max_sessions": _Range(1, 1000),
    "accounts.always_on": _one_of("false", "opt-in", "opt-out", "true"),
    "accounts.auto_away": _one_line,
    "store.path": _store_path,
    "store.synchronous": _one_of("normal", "full"),
    "store.commit_rows": _Range(1, 100_000),
    "store.commit_ms": _Range(0.0, 1000.0),
    "history.enabled": _anything,  # true or false: checked by type
    "history.relay_after_commit": _anything,
    "history.private": _anything,
    "history.max_age": _Range(0.0, 36500.0),
    "history.max_lines": _Range(0, 100_000_000),
    "history.chathistory_limit": _Range(1, 1000),
    "history.autoreplay_lines": _Range(0, 1000),
    "history.exclude_channels": _channel_masks,
    "history.prune_interval": _Range(hi=86400.0, above=0.0),
    "history.redact_window": _Range(0.0, 315_360_000.0),
    "email.smtp_host": _smtp_host,
    "email.smtp_port": _Range(1, 65535),
    "email.from_address": _from_address,
    "email.starttls": _anything,
    "email.username": _one_line,
    "email.password_file": _one_line,
    "email.timeout": _Range(hi=300.0, above=0.0),
    "email.code_lifetime": _Range(60.0, 30 * 86400.0),
    "email.max_attempts": _Range(1, 100),
    "websocket.default_subprotocol": _one_of("text", "binary"),
    "websocket.origins": _origins,
    "websocket.trusted_proxies": _networks,
    "websocket.max_message": _Range(512, 1 << 24),
    "websocket.ping_interval": _Range(0.0, 86400.0),
    "websocket.web_client": _anything,
    "sts.enabled": _one_of("auto", "true", "false"),
    "sts.port": _Range(0, 65535),
    "sts.duration": _Range(0, 10 * 365 * 86400),
    "sts.preload": _anything,  # true or false: checked by type
    "opers.password": _password_hash,
    "opers.host": _user_host_mask,
}

_OPER_NAME = _token(64)


# ------------------------------------------------------------------------ build
def _expected_type(f: dataclasses.Field[Any]) -> type[Any]:
    return str if f.default is dataclasses.MISSING else type(f.default)


_WORD_OR_BOOL = {"accounts.always_on", "sts.enabled"}  # true/false may be written bare

_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple: "a list of strings",
}


def _typed(value: Any, expected: type[Any]) -> Any:
    """``value`` as ``expected``, or raise TypeError."""
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise TypeError
    if not isinstance(value, expected) or isinstance(value, bool):
        raise TypeError
    return value


def _build(cls: type[Any], table: Any, where: str, source: str, label: str = "") -> Any:
    """An instance of ``cls`` from a TOML table, every key known and typed.
    ``where`` is the key prefix in messages (``limits``, ``opers.admin``)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}]{label} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}.{key}"
        if name in _MOVED:
            raise ConfigError(f"{source}: key '{name}' is no longer read: {_MOVED[name]}")
        f = fields.get(key)
        if f is None:
            raise ConfigError(f"{source}: unknown key '{name}'{label}")
        expected = _expected_type(f)
        if name in _WORD_OR_BOOL and isinstance(value, bool):
            value = "true" if value else "false"  # always_on = true is "true"
        try:
            kwargs[key] = _typed(value, expected)
        except TypeError:
            raise ConfigError(
                f"{source}: key '{name}'{label} must be {_TYPE_NAMES[expected]}, "
                f"not {type(value).__name__}"
            ) from None
    missing = [k for k, f in fields.items() if f.default is dataclasses.MISSING and k not in kwargs]
    if missing:
        raise ConfigError(f"{source}: key '{where}.{missing[0]}'{label} is required")
    return cls(**kwargs)


def _build_listen(value: Any, source: str) -> tuple[ListenConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: 'listen' must be [[listen]] tables (an array of tables)")
    if not value:
        raise ConfigError(f"{source}: 'listen' needs at least one [[listen]] table")
    return tuple(
        _build(ListenConfig, table, "listen", source, _listener_label(i))
        for i, table in enumerate(value)
    )


def _listener_label(index: int) -> str:
    return f" (listener {index + 1})"


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Build a :class:`Config` from a parsed TOML document, checking every key.
    Raises :class:`ConfigError` naming ``source`` and the key."""
    parts: dict[str, Any] = {}
    opers: dict[str, OperConfig] = {}
    for section, table in data.items():
        if section == "opers":
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [opers] must be a table of [opers.NAME] tables")
            for name, oper in table.items():
                opers[name] = _build(OperConfig, oper, f"opers.{name}", source)
            continue
        if section == "listen":
            parts["listen"] = _build_listen(table, source)
            continue
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"{source}: unknown section '{section}'")
        parts[section] = _build(cls, table, section, source)
    cfg = Config(**parts, opers=opers, path=None if source == "<config>" else source)
    _check(cfg, source)
    return cfg


# ------------------------------------------------------------------------ check
def _check_object(obj: Any, rule_prefix: str, key_prefix: str, source: str, label: str) -> None:
    """Every field of ``obj`` against its rule; relative ranges after the rest,
    so a bad ``line_length`` is reported as itself."""
    names = [f.name for f in dataclasses.fields(obj)]
    names.sort(key=lambda n: isinstance(r := _RULES[f"{rule_prefix}.{n}"], _Range) and r.relative)
    for name in names:
        problem = _RULES[f"{rule_prefix}.{name}"](getattr(obj, name), obj)
        if problem is not None:
            raise ConfigError(f"{source}: key '{key_prefix}.{name}'{label} {problem}")


def _check(cfg: Config, source: str) -> None:
    for section in _SECTIONS:
        _check_object(getattr(cfg, section), section, section, source, "")
    seen: dict[tuple[str, int], int] = {}
    for i, listener in enumerate(cfg.listen):
        label = _listener_label(i)
        _check_object(listener, "listen", "listen", source, label)
        if listener.port == 0:
            continue  # "any free port": two of them never collide
        where = (_normal_address(listener.address), listener.port)
        if where in seen:
            raise ConfigError(
                f"{source}: [[listen]] {listener} is listed twice (listeners {seen[where] + 1} "
                f"and {i + 1})"
            )
        seen[where] = i
    if cfg.accounts.email_verification and not cfg.email.from_address:
        raise ConfigError(
            f"{source}: key 'email.from_address' must be set when accounts.email_verification is on"
        )
    for name, oper in cfg.opers.items():
        problem = _OPER_NAME(name, None)
        if problem is not None:
            raise ConfigError(f"{source}: operator name [opers.{name}] {problem}")
        _check_object(oper, "opers", f"opers.{name}", source, "")


def _normal_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().removesuffix(".")


def check_value(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``key`` (``"listen.port"``), or None: the
    file's rule for that key, for command-line flags. Keys whose range depends on
    another key are checked against that key's default."""
    section, _, name = key.partition(".")
    cls = ListenConfig if section == "listen" else _SECTIONS[section]
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    expected = _expected_type(f)
    try:
        value = _typed(value, expected)
    except TypeError:
        return f"must be {_TYPE_NAMES[expected]}"
    return _RULES[key](value, cls())


# ------------------------------------------------------------------------- load
def load_config(path: str | Path | None) -> Config:
    """Read and check a TOML file; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return parse_config(data, str(p))
