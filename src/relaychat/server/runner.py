"""Run a server engine: in the foreground with signal handling (``relaychat
serve``), or in a background thread (tests, embedding).

Both engines offer the same surface: ``port``, ``core``, ``request_stop(reason)``
and ``request_rehash()`` (thread-safe), plus a blocking or async serve.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from relaychat.config import Config
from relaychat.protocol.core import ServerCore
from relaychat.protocol.storage import Store

__all__ = ["RunningServer", "serve", "start_in_thread", "raise_fd_limit"]

log = logging.getLogger("relaychat")


class RunningServer(Protocol):
    port: int
    core: ServerCore

    def request_stop(self, reason: str = ...) -> None: ...

    def request_rehash(self) -> None: ...


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (10,000 clients need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


def serve(config: Config, config_loader: Callable[[], Config] | None = None) -> int:
    """Run in the foreground until SIGINT/SIGTERM (exit 0) or DIE. SIGHUP reloads
    the configuration. Raises BindError (an OSError) when a listener cannot be
    bound."""
    raise_fd_limit()
    if config.server.engine == "threads":
        from relaychat.server.threaded import ThreadedServer

        tserver = ThreadedServer(config, config_loader)
        tserver.start()
        _log_configuration(config, tserver.driver.store)
        # handlers must not take locks: the main thread they interrupt may hold one
        signal.signal(signal.SIGINT, lambda *_: tserver.signal_stop("Server shutting down"))
        signal.signal(signal.SIGTERM, lambda *_: tserver.signal_stop("Server shutting down"))
        signal.signal(signal.SIGHUP, lambda *_: tserver.signal_rehash())
        tserver.serve_forever(wait_for_readers=False)
        # thousands of reader threads may still be winding down: leave now instead
        # of letting interpreter shutdown wait on them (logs flushed first)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    from relaychat.server.loop import LoopServer, new_event_loop

    server = LoopServer(config, config_loader)

    async def main() -> None:
        await server.start()
        _log_configuration(config, server.driver.store)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_stop, "Server shutting down")
        loop.add_signal_handler(signal.SIGHUP, server.request_rehash)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
    return 0


def _log_configuration(config: Config, store: Store) -> None:
    """Once the listeners are bound (a failure to bind stays a one-line error)."""
    log.info("configuration: %s", config.path or "embedded defaults")
    log.info("store: %s", store.describe())


class _ThreadHandle:
    """A server running in a background thread; ``stop()`` waits for it."""

    def __init__(self, server: RunningServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def core(self) -> ServerCore:
        return self.server.core

    def stop(self, reason: str = "Server shutting down", timeout: float = 5.0) -> None:
        """Stop the server and wait for its thread; a second call does nothing."""
        if not self.thread.is_alive():
            return
        self.server.request_stop(reason)
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError("server thread did not stop")


def start_in_thread(
    config: Config, config_loader: Callable[[], Config] | None = None
) -> _ThreadHandle:
    """Start the configured engine in a daemon thread; returns once it listens."""
    ready = threading.Event()
    failure: list[BaseException] = []
    holder: list[RunningServer] = []

    if config.server.engine == "threads":
        from relaychat.server.threaded import ThreadedServer

        tserver = ThreadedServer(config, config_loader)
        tserver.start()
        thread = threading.Thread(target=tserver.serve_forever, name="relaychat-threads")
        thread.start()
        return _ThreadHandle(tserver, thread)

    from relaychat.server.loop import LoopServer, new_event_loop

    def run() -> None:
        server = LoopServer(config, config_loader)

        async def main() -> None:
            try:
                await server.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            holder.append(server)
            ready.set()
            await server.serve_forever()

        loop = new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=run, name="relaychat-loop")
    thread.start()
    ready.wait(10)
    if failure:
        thread.join()
        raise failure[0]
    if not holder:
        raise RuntimeError("server did not start")
    return _ThreadHandle(holder[0], thread)
