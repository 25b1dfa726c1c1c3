"""Make the README's screenshots: docs/img/terminal.png, docs/img/web-light.png, web-dark.png.

Theory of operation
-------------------
``make screenshots`` runs this file. It starts ``relaychat serve`` from this tree (``src/`` first
on ``PYTHONPATH``) in a temporary directory, on free 127.0.0.1 ports: an IRC listener and, for
the browser client, a WebSocket listener, which also serves the client at ``/``. Two scripted
users (``bob`` and ``carol``, plain sockets from this process) join ``#relaychat``, set its
topic and talk, each step waiting for what it needs (a numeric, a line on the screen), never
for a fixed time.

- **terminal.png**: ``relaychat chat --nick alice`` runs in a detached tmux session (80x24, on
  a private tmux socket, so no tmux server of the user's is touched); the script types into it
  with ``tmux send-keys`` and reads it with ``tmux capture-pane -e -p``. The captured ANSI text
  is turned into HTML here (:func:`ansi_to_html`: SGR colours, bold, dim, italic, underline,
  reverse) and screenshotted with headless Chromium.
- **web-light.png / web-dark.png**: the browser client in headless Chromium (Playwright,
  ``/usr/bin/chromium``), once with ``color_scheme="light"`` and once with ``"dark"``: alice
  connects from the page, joins the channel, and bob and carol talk to her.

Needs: tmux and chromium (Debian packages), Playwright for Python (``pip install -e
'.[screenshots]'``; it drives the system Chromium, nothing is downloaded). Everything started
is stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHANNEL = "#relaychat"
TOPIC = "relaychat: one Python process, IRC over TCP, TLS and WebSocket, and this client"
COLS, ROWS = 80, 24
TIMEOUT = 20.0


def log(msg: str) -> None:
    print(f"screenshots: {msg}", file=sys.stderr, flush=True)


def wait_for(what: str, cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


SRC = ROOT / "src"  # the relaychat that is run (--src)


def env_with_src() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return env


# -- the server -------------------------------------------------------------------------------


@contextlib.contextmanager
def server(workdir: Path, websocket: bool) -> Iterator[tuple[int, int | None]]:
    """relaychat serve on free ports; yields (IRC port, WebSocket/web port or None)."""
    irc_port = free_port()
    web_port = free_port() if websocket else None
    conf = (
        f'[server]\nlog_level = "WARNING"\n[[listen]]\naddress = "127.0.0.1"\nport = {irc_port}\n'
    )
    if web_port is not None:
        conf += f'[[listen]]\naddress = "127.0.0.1"\nport = {web_port}\nwebsocket = true\n'
    (workdir / "relaychat.toml").write_text(conf)
    logf = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaychat", "serve", "--config", "relaychat.toml"],
        cwd=workdir,
        env=env_with_src(),
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
    )
    try:

        def up(port: int) -> bool:
            if proc.poll() is not None:
                log_text = (workdir / "server.log").read_text(errors="replace")
                raise SystemExit(f"screenshots: the server exited:\n{log_text}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        for port in (irc_port, web_port):
            if port is not None:
                wait_for(f"the server on port {port}", lambda p=port: up(p))
        yield irc_port, web_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()


class Bot:
    """A scripted IRC user on a plain socket: send lines, wait for lines."""

    def __init__(self, port: int, nick: str) -> None:
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.lines: list[str] = []
        self.send(f"NICK {nick}", f"USER {nick} 0 * :{nick.title()}")
        self.expect(" 001 ")

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def expect(self, needle: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, line in enumerate(self.lines):
                if needle in line:
                    del self.lines[: i + 1]
                    return line
            if time.monotonic() > deadline:
                raise SystemExit(f"screenshots: {self.nick} never saw {needle!r}")
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit(f"screenshots: {self.nick} was disconnected")
            self.buf += data
            *done, self.buf = self.buf.split(b"\r\n")
            for raw in done:
                line = raw.decode(errors="replace")
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                self.lines.append(line)

    def say(self, text: str, target: str = CHANNEL) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("QUIT :bye")
        self.sock.close()


# -- ANSI to HTML -----------------------------------------------------------------------------

# A light-on-dark palette for the 16 basic colours (Tango, as many terminals use).
PALETTE16 = [
    "#2e3436", "#cc0000", "#4e9a06", "#c4a000", "#3465a4", "#75507b", "#06989a", "#d3d7cf",
    "#555753", "#ef2929", "#8ae234", "#fce94f", "#729fcf", "#ad7fa8", "#34e2e2", "#eeeeec",
]  # fmt: skip
TERM_FG, TERM_BG = "#d3d7cf", "#1d1f21"
SGR = re.compile(r"\x1b\[([0-9;:]*)m")
OTHER_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][0-9A-Za-z])")


def color256(n: int) -> str:
    if n < 16:
        return PALETTE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return f"#{steps[n // 36]:02x}{steps[n // 6 % 6]:02x}{steps[n % 6]:02x}"
    v = 8 + 10 * (n - 232)
    return f"#{v:02x}{v:02x}{v:02x}"


class Style:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fg: str | None = None
        self.bg: str | None = None
        self.bold = self.dim = self.italic = self.underline = self.reverse = False

    def apply(self, params: str) -> None:
        codes = [int(c) if c.isdigit() else 0 for c in re.split("[;:]", params)] or [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37 or 90 <= c <= 97:
                self.fg = PALETTE16[c - 30 if c < 90 else c - 82]
            elif 40 <= c <= 47 or 100 <= c <= 107:
                self.bg = PALETTE16[c - 40 if c < 100 else c - 92]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    value, i = color256(codes[i + 2]), i + 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    r, g, b = codes[i + 2 : i + 5]
                    value, i = f"#{r:02x}{g:02x}{b:02x}", i + 4
                else:
                    value = None
                if c == 38:
                    self.fg = value
                else:
                    self.bg = value
            i += 1

    def css(self) -> str:
        fg, bg = self.fg, self.bg
        if self.reverse:
            fg, bg = bg or TERM_BG, fg or TERM_FG
        out = []
        if fg:
            out.append(f"color:{fg}")
        if bg:
            out.append(f"background:{bg}")
        if self.bold:
            out.append("font-weight:bold")
        if self.dim:
            out.append("opacity:.6")
        if self.italic:
            out.append("font-style:italic")
        if self.underline:
            out.append("text-decoration:underline")
        return ";".join(out)


def ansi_to_html(text: str) -> str:
    """The lines of ``tmux capture-pane -e -p`` as HTML spans (one <pre> body)."""
    style = Style()
    out: list[str] = []
    for line in text.split("\n"):
        pos = 0
        for m in SGR.finditer(line):
            out.append(_span(OTHER_ESCAPE.sub("", line[pos : m.start()]), style))
            style.apply(m.group(1))
            pos = m.end()
        out.append(_span(OTHER_ESCAPE.sub("", line[pos:]), style))
        out.append("\n")
    return "".join(out).rstrip("\n")


def _span(text: str, style: Style) -> str:
    if not text:
        return ""
    css = style.css()
    return f'<span style="{css}">{html.escape(text)}</span>' if css else html.escape(text)


TERMINAL_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><style>
body {{ margin: 0; padding: 24px; background: #e9ebee; }}
.window {{ display: inline-block; border-radius: 8px; overflow: hidden;
  box-shadow: 0 6px 24px rgba(0,0,0,.25); background: {bg}; }}
.bar {{ height: 28px; background: #33363a; color: #b8bcc2; font: 13px "DejaVu Sans", sans-serif;
  display: flex; align-items: center; padding: 0 12px; gap: 7px; }}
.dot {{ width: 11px; height: 11px; border-radius: 50%; background: #5c6066; }}
.title {{ flex: 1; text-align: center; margin-right: 50px; }}
pre {{ margin: 0; padding: 10px 12px; color: {fg}; background: {bg};
  font: 14px/1.3 "DejaVu Sans Mono", monospace; width: {cols}ch; }}
</style></head><body><div class="window" id="shot">
<div class="bar"><span class="dot"></span><span class="dot"></span><span class="dot"></span>
<span class="title">{title}</span></div>
<pre>{body}</pre></div></body></html>
"""


# -- the terminal client in tmux ----------------------------------------------------------------


class Tmux:
    """One detached tmux session on a private socket (-L), killed with its server on close."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.socket_name = f"relaychat-shots-{os.getpid()}"
        self.run(
            "-f", "/dev/null", "new-session", "-d", "-s", "shot", "-x", str(COLS), "-y", str(ROWS),
            " ".join(["env", *(f"{k}={shlex.quote(v)}" for k, v in env.items())])
            + " "
            + shlex.join(command),
        )  # fmt: skip
        self.run("set-option", "-t", "shot", "status", "off")
        self.run("set-option", "-t", "shot", "remain-on-exit", "on")

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket_name, *args], capture_output=True, text=True, timeout=10
        )
        if out.returncode != 0:
            raise SystemExit(f"screenshots: tmux {args[0]}: {out.stderr.strip()}")
        return out.stdout

    def type(self, text: str, enter: bool = True) -> None:
        self.run("send-keys", "-t", "shot", "-l", text)
        if enter:
            self.run("send-keys", "-t", "shot", "Enter")

    def screen(self, ansi: bool = False) -> str:
        return self.run("capture-pane", "-t", "shot", "-p", *(["-e"] if ansi else []))

    def wait_text(self, needle: str) -> None:
        wait_for(f"{needle!r} on the terminal", lambda: needle in self.screen())

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket_name, "kill-server"], capture_output=True, timeout=10
        )


def terminal_capture(irc_port: int) -> str:
    """Run the scene in tmux; return the final screen as ANSI text."""
    bob = Bot(irc_port, "bob")
    carol = Bot(irc_port, "carol")
    tmux: Tmux | None = None
    try:
        bob.send(f"JOIN {CHANNEL}")
        bob.expect(" 366 ")
        bob.send(f"TOPIC {CHANNEL} :{TOPIC}")
        bob.expect(" TOPIC ")
        carol.send(f"JOIN {CHANNEL}")
        carol.expect(" 366 ")
        env = {
            "PYTHONPATH": str(SRC),
            "TERM": "screen-256color",
            "COLORTERM": "truecolor",
            "LANG": "C.UTF-8",
        }
        tmux = Tmux([sys.executable, "-m", "relaychat", "chat", "--nick", "alice",
                     f"127.0.0.1:{irc_port}"], env)  # fmt: skip
        tmux.wait_text("alice")
        tmux.type(f"/join {CHANNEL}")
        bob.expect(" JOIN ")
        tmux.wait_text(TOPIC[:30])
        bob.say("morning alice! the web client is on the same server now")
        tmux.wait_text("the web client is on")
        tmux.type("hi bob, this is the terminal client: lines arrive while I type")
        bob.expect("lines arrive while I type")
        carol.send(f"PRIVMSG {CHANNEL} :\x01ACTION waves from the browser\x01")
        tmux.wait_text("waves from the browser")
        tmux.type("/names")
        tmux.wait_text("carol")
        carol.say("alice: try /whois bob, it comes back as one block")
        tmux.wait_text("comes back as one block")
        tmux.type("/whois bob")
        tmux.wait_text("Bob")
        bob.say("and /history loads older lines")
        tmux.wait_text("loads older lines")
        tmux.type("typing a reply here", enter=False)
        tmux.wait_text("typing a reply here")
        return tmux.screen(ansi=True)
    finally:
        if tmux is not None:
            tmux.close()
        bob.close()
        carol.close()


def screenshot_terminal(browser: object, ansi: str, path: Path) -> None:
    page_html = TERMINAL_PAGE.format(
        bg=TERM_BG,
        fg=TERM_FG,
        cols=COLS,
        title=f"relaychat chat --nick alice — tmux {COLS}×{ROWS}",
        body=ansi_to_html(ansi),
    )
    page = browser.new_page(device_scale_factor=1)  # type: ignore[attr-defined]
    try:
        page.set_content(page_html)
        page.locator("#shot").screenshot(path=str(path))
    finally:
        page.close()


# -- the browser client ---------------------------------------------------------------------------

WEB_VIEWPORT = {"width": 1040, "height": 640}


def web_screenshot(browser: object, web_port: int, irc_port: int, scheme: str, path: Path) -> None:
    """alice in the browser client, bob and carol on IRC, in #relaychat (and #help)."""
    bob = Bot(irc_port, "bob")
    carol = Bot(irc_port, "carol")
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport=WEB_VIEWPORT, color_scheme=scheme, device_scale_factor=1
    )
    try:
        for bot in (bob, carol):
            bot.send(f"JOIN {CHANNEL},#help")
            bot.expect(" 366 ")
            bot.expect(" 366 ")
        bob.send(f"TOPIC {CHANNEL} :{TOPIC}")
        bob.expect(" TOPIC ")
        bob.send(f"MODE {CHANNEL} +v carol")
        bob.expect(" MODE ")
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{web_port}/")
        page.fill("#nick", "alice")
        page.fill("#join", f"{CHANNEL},#help")
        page.click("#connect-button")
        page.wait_for_selector("#chat-view:not([hidden])", timeout=TIMEOUT * 1000)
        bob.expect(f" JOIN {CHANNEL}")
        bob.expect(" JOIN #help")
        page.locator("#buffer-list li", has_text=CHANNEL).first.click()
        members = page.locator("#member-list")
        for nick in ("alice", "bob", "carol"):
            members.get_by_text(nick).first.wait_for(timeout=TIMEOUT * 1000)
        log_ = page.locator("#log")
        bob.say("morning alice! this is the browser client, served by the same process")
        log_.get_by_text("served by the same process").wait_for(timeout=TIMEOUT * 1000)
        page.fill("#input", "hi bob! and irssi users see this as a normal channel message")
        page.press("#input", "Enter")
        bob.expect("see this as a normal channel message")
        carol.send(f"PRIVMSG {CHANNEL} :\x01ACTION waves from the terminal client\x01")
        log_.get_by_text("waves from the terminal client").wait_for(timeout=TIMEOUT * 1000)
        carol.say("alice: unread counts and mentions show in the sidebar")
        log_.get_by_text("unread counts and mentions").wait_for(timeout=TIMEOUT * 1000)
        bob.say("anyone around to help with TLS certificates?", target="#help")
        carol.say("alice: got a minute later?", target="alice")
        page.locator("#buffer-list").get_by_text("carol").first.wait_for(timeout=TIMEOUT * 1000)
        page.fill("#input", "typing a reply")
        page.locator("#input").focus()
        page.screenshot(path=str(path))
    finally:
        context.close()
        bob.close()
        carol.close()


# -- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit(
            "screenshots: needs Playwright for Python: pip install -e '.[screenshots]'"
        ) from None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    global SRC
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", choices=("terminal", "web"), help="make only these screenshots (default: all)"
    )
    ap.add_argument("--out", type=Path, default=OUT, help="directory for the PNGs (docs/img)")
    ap.add_argument(
        "--src",
        type=Path,
        default=ROOT / "src",
        help="the relaychat source tree to run (default src/)",
    )
    args = ap.parse_args(argv)
    SRC = args.src.resolve()
    for tool in ("tmux", CHROMIUM):
        if args.only != "web" or tool == CHROMIUM:
            if shutil.which(tool) is None:
                raise SystemExit(f"screenshots: {tool} not found (apt-get install tmux chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="relaychat-shots-") as tmp, chromium() as browser:
        if args.only in (None, "terminal"):
            workdir = Path(tmp) / "terminal"
            workdir.mkdir()
            with server(workdir, websocket=False) as (irc_port, _):
                ansi = terminal_capture(irc_port)
            path = args.out / "terminal.png"
            screenshot_terminal(browser, ansi, path)
            made.append(path)
        if args.only in (None, "web"):
            for scheme in ("light", "dark"):
                workdir = Path(tmp) / f"web-{scheme}"
                workdir.mkdir()
                with server(workdir, websocket=True) as (irc_port, web_port):
                    assert web_port is not None
                    path = args.out / f"web-{scheme}.png"
                    web_screenshot(browser, web_port, irc_port, scheme, path)
                    made.append(path)
    for path in made:
        log(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
            f"({path.stat().st_size // 1024} KiB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
