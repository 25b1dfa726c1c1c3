"""Command line: ``relaychat serve | chat | mkpasswd``.

Exit codes: 0 success, 1 runtime failure (e.g. the port is taken), 2 bad usage or
a bad configuration file.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import getpass
import logging
import sys
from collections.abc import Sequence

from relaychat import __version__
from relaychat.config import Config, ConfigError, load_config

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaychat", description="relaychat IRC server and client"
    )
    parser.add_argument("--version", action="version", version=f"relaychat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the IRC server")
    serve.add_argument("--config", "-c", help="TOML configuration file (default: built-in)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", "-p", type=int, help="port to listen on (default 6667)")
    serve.add_argument("--engine", choices=("loop", "threads"), help="server engine")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")

    chat = sub.add_parser("chat", help="terminal IRC client", add_help=False)
    chat.add_argument("rest", nargs=argparse.REMAINDER)

    mk = sub.add_parser("mkpasswd", help="hash a password for [opers.NAME] password")
    mk.add_argument("password", nargs="?", help="the password (default: prompt, or stdin)")
    return parser


def _server_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("engine", args.engine),
            ("log_level", args.log_level),
        )
        if v is not None
    }
    if overrides:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **overrides))
    return cfg


def _serve(args: argparse.Namespace) -> int:
    try:
        cfg = _server_config(args)
    except ConfigError as exc:
        print(f"relaychat: {exc}", file=sys.stderr)
        return 2
    level = getattr(logging, cfg.server.log_level.upper(), None)
    if not isinstance(level, int):
        print(f"relaychat: unknown log level {cfg.server.log_level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )

    def reload() -> Config:
        new = _server_config(args)
        # the listening address and engine are fixed for this process
        return dataclasses.replace(
            new,
            server=dataclasses.replace(
                new.server, host=cfg.server.host, port=cfg.server.port, engine=cfg.server.engine
            ),
        )

    from relaychat.server.runner import serve

    try:
        return serve(cfg, reload)
    except OSError as exc:
        what = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        print(
            f"relaychat: cannot listen on {cfg.server.host}:{cfg.server.port}: {what}",
            file=sys.stderr,
        )
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
    return 2
