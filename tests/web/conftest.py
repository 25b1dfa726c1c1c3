"""Fixtures of the browser tests: headless Chromium (Debian's ``chromium``, driven by
Playwright) and ``web``: a relaychat server whose browser client is reachable over
the IRCv3 WebSocket transport.

``web`` yields an object with ``.http_url`` (the page), ``.irc_port`` (the TCP port,
for a RawClient) and ``.oper`` (name, password) of an operator: a server with an IRC
listener and a WebSocket listener (which serves the browser client's files too), as
``relaychat serve`` runs them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browserutil import CHROMIUM, OPER_HASH, BrowserUser, Web

from relaychat.config import Config, OperConfig
from wsutil import make_ws_config, ws_port


@pytest.fixture
def engine() -> str:
    """The loop engine; a test that should run on both says
    ``@pytest.mark.parametrize("engine", ENGINES)`` (ENGINES from browserutil)."""
    return "loop"


@pytest.fixture
def web(engine: str, run_config: Callable[[Config], Any]) -> Iterator[Web]:
    """A server (operator ``admin``) and its browser client's address."""
    config = dataclasses.replace(make_ws_config(engine), opers={"admin": OperConfig(OPER_HASH)})
    server = run_config(config)
    yield Web(f"http://127.0.0.1:{ws_port(server)}/", server.port)


def _chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("RELAYCHAT_REQUIRE_INTEROP"):
            pytest.fail(f"{CHROMIUM} is not installed (.ci/run installs it)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (a context per user)."""
    executable = _chromium()
    if os.environ.get("RELAYCHAT_REQUIRE_INTEROP"):
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_user(browser: Any, web: Web) -> Iterator[Callable[[], BrowserUser]]:
    """``open_user()`` -> a BrowserUser in a fresh context (closed at teardown)."""
    contexts: list[Any] = []
    users: list[BrowserUser] = []

    def make() -> BrowserUser:
        context = browser.new_context()
        contexts.append(context)
        user = BrowserUser(context.new_page(), web)
        users.append(user)
        return user

    yield make
    for context in contexts:
        context.close()
    for user in users:
        assert not user.errors, user.errors
