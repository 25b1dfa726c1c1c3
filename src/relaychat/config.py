"""Configuration: frozen dataclasses loaded from TOML; every key has a default.

``load_config(path)`` reads a file, ``Config()`` is the embedded default. An
unknown section or key raises :class:`ConfigError` naming the key and the file,
and the CLI turns that into exit code 2.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AdminConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "OperConfig",
    "ServerConfig",
    "load_config",
    "parse_config",
]


class ConfigError(Exception):
    """The configuration file is unreadable, malformed, or names an unknown key."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str = "irc.relaychat.local"
    network: str = "RelayChat"
    description: str = "relaychat IRC server"
    host: str = "127.0.0.1"
    port: int = 6667
    engine: str = "loop"  # "loop" (asyncio) or "threads" (one thread per connection)
    password: str = ""  # connection password (PASS); empty: none required
    motd: str = "Welcome to relaychat. Be kind; have fun."
    log_level: str = "INFO"
    casemapping: str = "rfc1459"  # "rfc1459" or "ascii"


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    nicklen: int = 30
    userlen: int = 18
    channellen: int = 50
    topiclen: int = 390
    awaylen: int = 200
    kicklen: int = 255
    chanlimit: int = 50  # channels one user may be in
    max_targets: int = 4  # targets per PRIVMSG/NOTICE/JOIN/...
    max_modes: int = 4  # parameterised modes per MODE command
    max_list_entries: int = 100  # bans/excepts/invex per channel
    line_length: int = 512  # bytes, CRLF included, tags excluded
    tags_length: int = 8191  # bytes of client tags section
    sendq: int = 1048576  # bytes queued to a client before it is dropped
    recvq: int = 8192  # bytes of unprocessed input before "Excess Flood"
    flood_rate: float = 4.0  # lines per second refilled; 0 disables flood control
    flood_burst: int = 20  # lines a client may send at once
    ping_interval: float = 120.0  # seconds of silence before the server sends PING
    ping_timeout: float = 60.0  # seconds to answer that PING
    registration_timeout: float = 30.0
    max_connections: int = 20000
    max_connections_per_ip: int = 100  # 0 = unlimited
    whowas_size: int = 1000


@dataclass(frozen=True, slots=True)
class AdminConfig:
    location: str = "Somewhere on the network"
    location2: str = ""
    email: str = "admin@relaychat.local"


@dataclass(frozen=True, slots=True)
class OperConfig:
    password: str  # a hash from `relaychat mkpasswd`
    host: str = "*@*"  # user@host mask the oper must match


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    opers: dict[str, OperConfig] = field(default_factory=dict)
    path: str | None = None  # the file it came from, for REHASH


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "limits": LimitsConfig,
    "admin": AdminConfig,
}


def _build(cls: type[Any], table: Any, where: str, source: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        f = fields.get(key)
        if f is None:
            raise ConfigError(f"{source}: unknown key '{where}.{key}'")
        default = f.default
        if default is dataclasses.MISSING:
            expected: type[Any] = str
        else:
            expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(
                f"{source}: key '{where}.{key}' must be {expected.__name__}, "
                f"not {type(value).__name__}"
            )
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: [{where}]: {exc}") from None


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Build a :class:`Config` from a parsed TOML document, checking every key."""
    parts: dict[str, Any] = {}
    opers: dict[str, OperConfig] = {}
    for section, table in data.items():
        if section == "opers":
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [opers] must be a table of [opers.NAME] tables")
            for name, oper in table.items():
                opers[name] = _build(OperConfig, oper, f"opers.{name}", source)
            continue
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"{source}: unknown section '{section}'")
        parts[section] = _build(cls, table, section, source)
    cfg = Config(**parts, opers=opers, path=None if source == "<config>" else source)
    _validate(cfg, source)
    return cfg


def _validate(cfg: Config, source: str) -> None:
    if cfg.server.engine not in ("loop", "threads"):
        raise ConfigError(f'{source}: key \'server.engine\' must be "loop" or "threads"')
    if cfg.server.casemapping not in ("rfc1459", "ascii"):
        raise ConfigError(f'{source}: key \'server.casemapping\' must be "rfc1459" or "ascii"')
    if not 0 <= cfg.server.port <= 65535:
        raise ConfigError(f"{source}: key 'server.port' must be between 0 and 65535")
    if " " in cfg.server.name or "." not in cfg.server.name:
        raise ConfigError(f"{source}: key 'server.name' must look like a host name (a.b)")
    lim = cfg.limits
    if lim.line_length < 512:
        raise ConfigError(f"{source}: key 'limits.line_length' must be at least 512")
    for name in ("nicklen", "channellen", "topiclen", "awaylen", "kicklen", "sendq", "recvq"):
        if getattr(lim, name) <= 0:
            raise ConfigError(f"{source}: key 'limits.{name}' must be positive")


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
