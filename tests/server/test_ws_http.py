"""The browser client's files on a WebSocket listener (plain HTTP, both engines),
and ``relaychat serve --web-port``: the address logged at start, a page and a
WebSocket user on it."""

from __future__ import annotations

import dataclasses
import http.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ircutil import Server
from relaychat.config import WebSocketConfig
from relaychat.server.websocket import WEB_ROOT, WebRoot
from wsutil import TEXT, WsClient, make_ws_config, web_url_of, ws_port

PLACEHOLDER = (WEB_ROOT / "index.html").read_bytes()


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def web(engine: str, run_config: Callable[..., Any]) -> int:
    return ws_port(run_config(make_ws_config(engine)))


def test_get_slash_serves_index_html(web: int, no_server_errors: None) -> None:
    status, headers, body = get(web, "/")
    assert status == 200
    assert body == PLACEHOLDER
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Length"] == str(len(PLACEHOLDER))
    assert headers["Cache-Control"] == "no-cache"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(web, "/index.html?v=2")[2] == PLACEHOLDER


def test_head_gives_the_headers_without_the_body(web: int) -> None:
    status, headers, body = get(web, "/", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(PLACEHOLDER))


@pytest.mark.parametrize(
    "path",
    [
        "/../etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/./index.html",
        "/.hidden",
        "/nothing-here.js",
        "/index.html/",
        "/a\\..\\b",
        "http://example.org/",
    ],
)
def test_anything_outside_the_files_is_404(web: int, path: str, no_server_errors: None) -> None:
    status, headers, body = get(web, path)
    assert status == 404
    assert b"root:" not in body and headers["Content-Type"].startswith("text/plain")


def test_other_methods_are_405(web: int) -> None:
    status, headers, _ = get(web, "/", "DELETE")
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_files_by_name_with_their_content_type(
    engine: str, run_config: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaychat.server import driver

    root = tmp_path / "web"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html>")
    (root / "js" / "app.js").write_text("export {};")
    (root / "style.css").write_text("body {}")
    (tmp_path / "secret.txt").write_text("not served")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    monkeypatch.setattr(driver, "WebRoot", lambda: WebRoot(root))
    port = ws_port(run_config(make_ws_config(engine)))
    assert get(port, "/js/app.js")[1]["Content-Type"] == "text/javascript; charset=utf-8"
    assert get(port, "/js/app.js")[2] == b"export {};"
    assert get(port, "/style.css")[1]["Content-Type"] == "text/css; charset=utf-8"
    assert get(port, "/link.txt")[0] == 404  # a symlink out of the directory
    assert get(port, "/js")[0] == 404  # a directory


def test_without_the_web_client_a_plain_get_is_426(
    engine: str, run_config: Callable[..., Any]
) -> None:
    port = ws_port(run_config(make_ws_config(engine, WebSocketConfig(web_client=False))))
    status, headers, _ = get(port, "/")
    assert status == 426 and headers["Upgrade"] == "websocket"
    ws = WsClient(port, [TEXT])  # WebSocket still works
    try:
        ws.register("noweb")
    finally:
        ws.close()


# ------------------------------------------------------------ relaychat serve
@pytest.fixture
def served(spawn: Callable[..., Server], engine: str) -> Iterator[Server]:
    yield spawn(engine, "--web-port", "0")


def test_serve_with_web_port_logs_the_address_and_serves_page_and_websocket(
    served: Server,
) -> None:
    url = web_url_of(served)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    status, headers, body = get(port, "/")
    assert status == 200 and body == PLACEHOLDER
    assert f"listening on 127.0.0.1 port {port} (WebSocket)" in served.stderr()
    ws = WsClient(port, [TEXT])
    tcp = served.client("tcpuser")
    try:
        ws.register("webuser")
        tcp.send("PRIVMSG webuser :hi from tcp")
        assert ws.expect("PRIVMSG").params == ["webuser", "hi from tcp"]
    finally:
        ws.close()
        tcp.close()


def test_the_embedded_default_has_the_web_listener() -> None:
    from relaychat.config import WEB_PORT, Config, ListenConfig

    web = [item for item in Config().listen if item.websocket]
    assert web == [ListenConfig("127.0.0.1", WEB_PORT, websocket=True)]
    assert dataclasses.replace(web[0], websocket=False) not in Config().listen
