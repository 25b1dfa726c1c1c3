"""Helpers of the browser tests: ``Web`` (where the client and the server are),
``Bridge`` (a WebSocket-to-TCP bridge serving the client's files, until the server
has its own WebSocket listener) and ``BrowserUser`` (a page driven by Playwright)."""

from __future__ import annotations

import asyncio
import mimetypes
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from relaychat.passwords import hash_password

WEB_ROOT = Path(__file__).resolve().parents[2] / "src" / "relaychat" / "web"
OPER_PASSWORD = "secret"
OPER_HASH = hash_password(OPER_PASSWORD, n=2**10)  # cheap parameters: tests are about the flow
CHROMIUM = "/usr/bin/chromium"
ENGINES = ("loop", "threads")  # as tests/conftest.py (a conftest is not importable by name)


@dataclass
class Web:
    http_url: str
    irc_port: int
    oper: tuple[str, str] = ("admin", OPER_PASSWORD)


class Bridge:
    """WebSocket (text.ircv3.net) <-> IRC over TCP, and the static files, in a thread."""

    def __init__(self, irc_port: int) -> None:
        self.irc_port = irc_port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ws-bridge", daemon=True)
        self.port = 0
        self.stopping: asyncio.Event | None = None

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the WebSocket bridge did not start")

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self.stopping = asyncio.Event()
        async with serve(
            self._relay,
            "127.0.0.1",
            0,
            subprotocols=["text.ircv3.net"],  # type: ignore[list-item]
            process_request=self._static,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.stopping.wait()
            server.close()
            await server.wait_closed()

    def _static(self, connection: Any, request: Any) -> Any:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        if "upgrade" in request.headers.get("Connection", "").lower():
            return None  # a WebSocket handshake: go on
        path = request.path.split("?", 1)[0]
        name = "index.html" if path == "/" else path.lstrip("/")
        file = (WEB_ROOT / name).resolve()
        if WEB_ROOT not in file.parents or not file.is_file():
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
        body = file.read_bytes()
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            ctype = "text/javascript"
        headers = Headers(
            [
                ("Content-Type", f"{ctype}; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ]
        )
        return Response(200, "OK", headers, body)

    async def _relay(self, ws: Any) -> None:
        if ws.subprotocol != "text.ircv3.net":
            await ws.close(1002, "subprotocol text.ircv3.net required")
            return
        reader, writer = await asyncio.open_connection("127.0.0.1", self.irc_port)

        async def up() -> None:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                writer.write(text.encode() + b"\r\n")
                await writer.drain()

        async def down() -> None:
            while line := await reader.readline():
                await ws.send(line.rstrip(b"\r\n").decode("utf-8", "replace"))

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            await ws.close()


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
