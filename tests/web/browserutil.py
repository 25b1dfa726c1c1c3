"""Helpers of the browser tests: ``Web`` (where the client and the server are) and
``BrowserUser`` (a page driven by Playwright)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relaychat.passwords import hash_password

OPER_PASSWORD = "secret"
OPER_HASH = hash_password(OPER_PASSWORD, n=2**10)  # cheap parameters: tests are about the flow
CHROMIUM = "/usr/bin/chromium"
ENGINES = ("loop", "threads")  # as tests/conftest.py (a conftest is not importable by name)


@dataclass
class Web:
    http_url: str
    irc_port: int
    oper: tuple[str, str] = ("admin", OPER_PASSWORD)


class BrowserUser:
    """One person at the browser client: a page in its own browser context."""

    def __init__(self, page: Any, web: Web) -> None:
        self.page = page
        self.web = web
        self.nick = ""
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def connect(self, nick: str, join: str = "", account: str = "", password: str = "") -> None:
        from playwright.sync_api import expect

        self.nick = nick
        page = self.page
        page.goto(self.web.http_url)
        page.get_by_label("Nick").fill(nick)
        page.get_by_label("Channels to join").fill(join)
        if account:
            page.get_by_label("Account", exact=True).fill(account)
            page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Connect").click()
        expect(page.locator("#me")).to_have_text(nick)
        for channel in filter(None, join.split(",")):
            expect(self.buffer(channel)).to_be_attached()

    def buffer(self, name: str) -> Any:
        """The button of a buffer in the buffer list."""
        return self.page.locator(f'#buffer-list button[data-name="{name}"]')

    def open(self, name: str) -> None:
        from playwright.sync_api import expect

        self.buffer(name).click()
        expect(self.page.locator("#buffer-title")).to_have_text(name)

    def say(self, text: str) -> None:
        self.page.locator("#input").fill(text)
        self.page.locator("#input").press("Enter")

    def lines(self, text: str | None = None) -> Any:
        """Lines of the buffer shown, those containing ``text`` when given."""
        found = self.page.locator("#log .line")
        return found if text is None else found.filter(has_text=text)

    def members(self) -> Any:
        return self.page.locator("#member-list .member")
