"""Command line: ``relaychat serve | chat | mkpasswd | gencert``.

Exit codes: 0 success, 1 runtime failure (e.g. a port is taken), 2 bad usage or
a bad configuration file. Failures print one line to stderr, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from relaychat import __version__
from relaychat.config import Config, ConfigError, ListenConfig, check_value, load_config

__all__ = ["JsonFormatter", "main"]

log = logging.getLogger("relaychat")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaychat", description="relaychat IRC server and client"
    )
    parser.add_argument("--version", action="version", version=f"relaychat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the IRC server")
    serve.add_argument("--config", "-c", help="TOML configuration file (default: built-in)")
    serve.add_argument(
        "--host", help="listen on this address only, instead of the [[listen]] tables"
    )
    serve.add_argument(
        "--port", "-p", type=int, help="listen on this port only, instead of the [[listen]] tables"
    )
    serve.add_argument(
        "--web-port",
        type=int,
        help="serve WebSocket and the browser client on this port (at --host's address), "
        "instead of the websocket [[listen]] tables",
    )
    serve.add_argument("--engine", choices=("loop", "threads"), help="server engine")
    serve.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, help="log level")
    serve.add_argument("--log-format", choices=("text", "json"), help="log line format")

    chat = sub.add_parser("chat", help="terminal IRC client", add_help=False)
    chat.add_argument("rest", nargs=argparse.REMAINDER)

    mk = sub.add_parser("mkpasswd", help="hash a password for [opers.NAME] password")
    mk.add_argument("password", nargs="?", help="the password (default: prompt, or stdin)")

    gen = sub.add_parser(
        "gencert", help="write a self-signed TLS certificate and key for a TLS listener"
    )
    gen.add_argument("--out", default=".", help="directory for relaychat.crt and relaychat.key")
    gen.add_argument("--host", default="localhost", help="the name in the certificate")
    gen.add_argument("--days", type=int, default=365, help="days the certificate is valid")
    return parser


def _server_config(args: argparse.Namespace) -> Config:
    """The file's configuration with the flags applied. ``--host``/``--port``
    replace the listeners with one IRC listener (the other half from the first
    IRC listener; the WebSocket ones are dropped too); ``--web-port`` replaces
    the WebSocket listeners with one (at ``--host`` or the first listener's
    address). All are checked by the same rules as the file's ``[[listen]]`` keys."""
    for flag, key, value in (
        ("--host", "listen.address", args.host),
        ("--port", "listen.port", args.port),
        ("--web-port", "listen.port", args.web_port),
    ):
        if value is not None and (problem := check_value(key, value)) is not None:
            raise ConfigError(f"{flag} {value}: {problem}")
    cfg = load_config(args.config)
    listeners = cfg.listen
    if args.host is not None or args.port is not None:
        first = next((item for item in cfg.listen if not item.websocket), ListenConfig())
        listener = dataclasses.replace(
            first,
            address=first.address if args.host is None else args.host,
            port=first.port if args.port is None else args.port,
        )
        listeners = (listener,)
    if args.web_port is not None:
        address = args.host if args.host is not None else listeners[0].address
        web = ListenConfig(address, args.web_port, websocket=True)
        listeners = (*(item for item in listeners if not item.websocket), web)
    if listeners != cfg.listen:
        cfg = dataclasses.replace(cfg, listen=listeners)
    overrides = {
        k: v
        for k, v in (
            ("engine", args.engine),
            ("log_level", args.log_level),
            ("log_format", args.log_format),
        )
        if v is not None
    }
    if overrides:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **overrides))
    return cfg


# the attributes every LogRecord has; the others came from ``extra=``
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, then every ``extra=`` field (``str()`` of what JSON cannot hold);
    an exception adds ``exc_info`` (the formatted traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def _serve(args: argparse.Namespace) -> int:
    try:
        cfg = _server_config(args)
    except ConfigError as exc:
        print(f"relaychat: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg.server.log_level, cfg.server.log_format)

    def reload() -> Config:
        new = _server_config(args)
        if new.listen != cfg.listen or new.server.engine != cfg.server.engine:
            log.warning("listeners and engine change only at a restart; keeping the running ones")
        # the listeners and the engine are fixed for this process
        return dataclasses.replace(
            new,
            listen=cfg.listen,
            server=dataclasses.replace(new.server, engine=cfg.server.engine),
        )

    from relaychat.server.listen import BindError
    from relaychat.server.runner import serve
    from relaychat.server.tls import TlsError
    from relaychat.store.base import StoreError

    try:
        return serve(cfg, reload)
    except (StoreError, TlsError) as exc:  # names the file
        print(f"relaychat: {exc}", file=sys.stderr)
        return 1
    except BindError as exc:
        listener = ListenConfig(exc.address, exc.port)
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(f"relaychat: cannot listen on {listener}: {reason}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"relaychat: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _mkpasswd(args: argparse.Namespace) -> int:
    from relaychat.passwords import hash_password

    password = args.password
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != password:
                print("relaychat: passwords differ", file=sys.stderr)
                return 2
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("relaychat: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _gencert(args: argparse.Namespace) -> int:
    from relaychat.server.tls import write_self_signed

    if (problem := check_value("listen.address", args.host)) is not None or args.days < 1:
        print(f"relaychat: --host {args.host}: {problem or 'bad --days'}", file=sys.stderr)
        return 2
    try:
        cert, key = write_self_signed(args.out, args.host, args.days)
    except OSError as exc:
        print(f"relaychat: {exc.filename or args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {cert} and {key} (self-signed for {args.host}, {args.days} days)")
    print("use them in a [[listen]] table: tls = true, cert = ..., key = ...")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["chat"]:
        from relaychat.client.tui import chat_main

        return chat_main(argv[1:])
    args = _build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "mkpasswd":
        return _mkpasswd(args)
    if args.command == "gencert":
        return _gencert(args)
    return 2
