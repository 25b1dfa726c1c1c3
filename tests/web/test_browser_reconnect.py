"""The browser client across a dropped connection: it reconnects by itself, rejoins,
fills the gap with CHATHISTORY and shows every line exactly once; older lines load
on request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from browserutil import ENGINES, BrowserUser, Web
from playwright.sync_api import expect

from ircutil import RawClient


def msgids(user: BrowserUser) -> list[str]:
    found: list[str] = user.page.eval_on_selector_all(
        "#log .line[data-msgid]", "nodes => nodes.map(n => n.dataset.msgid)"
    )
    return found


def texts(user: BrowserUser) -> list[str]:
    found: list[str] = user.page.eval_on_selector_all(
        "#log .line.k-privmsg .text", "nodes => nodes.map(n => n.textContent)"
    )
    return found


def channel_client(web: Web, nick: str, channel: str) -> RawClient:
    c = RawClient(web.irc_port)
    c.register(nick)
    c.send(f"JOIN {channel}")
    c.expect("366")
    return c


STATUS_RECORDER = """
window.__statuses = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status-text");
  new MutationObserver(() => window.__statuses.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
});
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_reconnect_after_a_kill_shows_every_line_once(
    open_user: Callable[[], BrowserUser], web: Web
) -> None:
    alice = open_user()
    alice.page.add_init_script(STATUS_RECORDER)
    alice.connect("alice", join="#chat")
    carol = channel_client(web, "carol", "#chat")
    try:
        carol.send(f"OPER {web.oper[0]} {web.oper[1]}")
        carol.expect("381")
        for i in range(3):
            carol.send(f"PRIVMSG #chat :before {i}")
        expect(alice.lines("before 2")).to_have_count(1)
        alice.say("alice before")
        expect(alice.lines("alice before")).to_have_count(1)

        carol.send("KILL alice :testing the reconnect")
        carol.expect(lambda m: m.command == "QUIT" and m.source.startswith("alice!"))
        for i in range(3):  # alice is not on the server: these come from history
            carol.send(f"PRIVMSG #chat :while away {i}")
        carol.expect(lambda m: m.command == "JOIN" and m.source.startswith("alice!"), timeout=15)
        expect(alice.lines("while away 2")).to_have_count(1)
        carol.send("PRIVMSG #chat :after the reconnect")
        expect(alice.lines("after the reconnect")).to_have_count(1)
        alice.say("alice after")
        expect(alice.lines("alice after")).to_have_count(1)
        assert texts(alice) == [
            "before 0",
            "before 1",
            "before 2",
            "alice before",
            "while away 0",
            "while away 1",
            "while away 2",
            "after the reconnect",
            "alice after",
        ]
        ids = msgids(alice)
        assert len(ids) == len(set(ids)), ids
        statuses = alice.page.evaluate("window.__statuses")
        assert any("Killed" in s and "Reconnecting in 1 s" in s for s in statuses), statuses
        alice.open("Server")
        expect(alice.lines("Disconnected")).not_to_have_count(0)
        expect(alice.lines("Reconnected")).to_have_count(1)
    finally:
        carol.close()


def test_a_gap_longer_than_a_page_of_history_is_filled_whole(
    open_user: Callable[[], BrowserUser], web: Web
) -> None:
    alice = open_user()
    alice.connect("alice", join="#chat")
    carol = channel_client(web, "carol", "#chat")
    try:
        carol.send(f"OPER {web.oper[0]} {web.oper[1]}")
        carol.expect("381")
        carol.send("PRIVMSG #chat :seen live")
        expect(alice.lines("seen live")).to_have_count(1)
        carol.send("KILL alice :a long gap")
        carol.expect(lambda m: m.command == "QUIT" and m.source.startswith("alice!"))
        missed = [f"missed {i:03}" for i in range(230)]  # three pages of CHATHISTORY AFTER
        for text in missed:
            carol.send(f"PRIVMSG #chat :{text}")
        carol.expect(lambda m: m.command == "JOIN" and m.source.startswith("alice!"), timeout=15)
        expect(alice.lines("missed 229")).to_have_count(1)
        carol.send("PRIVMSG #chat :live again")
        expect(alice.lines("live again")).to_have_count(1)
        assert texts(alice) == ["seen live", *missed, "live again"]
        ids = msgids(alice)
        assert len(ids) == len(set(ids))
    finally:
        carol.close()


def test_reconnect_keeps_private_buffers_and_members(
    open_user: Callable[[], BrowserUser], web: Web
) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#chat")
    bob.connect("bob", join="#chat")
    oper = channel_client(web, "oper", "#chat")
    try:
        oper.send(f"OPER {web.oper[0]} {web.oper[1]}")
        oper.expect("381")
        bob.say("/msg alice first private")
        expect(alice.buffer("bob")).to_be_visible()
        oper.send("KILL alice :drop")
        oper.expect(lambda m: m.command == "JOIN" and m.source.startswith("alice!"), timeout=15)
        bob.say("/msg alice second private")
        alice.open("bob")
        expect(alice.lines("first private")).to_have_count(1)
        expect(alice.lines("second private")).to_have_count(1)
        alice.open("#chat")
        expect(alice.members()).to_have_text(["alice", "bob", "oper"])  # no op left
    finally:
        oper.close()


def test_older_lines_load_on_request_without_duplicates(
    open_user: Callable[[], BrowserUser], web: Web
) -> None:
    carol = channel_client(web, "carol", "#busy")
    try:
        for i in range(120):
            carol.send(f"PRIVMSG #busy :line {i:03}")
        carol.send("PING :sync")
        carol.expect(lambda m: m.command == "PONG")
        alice = open_user()
        alice.connect("alice", join="#busy")
        expect(alice.lines("line 119")).to_have_count(1)
        expect(alice.lines("line 080")).to_have_count(1)  # the latest page of history
        expect(alice.lines("line 060")).to_have_count(0)
        alice.page.locator("#log").evaluate("log => { log.scrollTop = 0; }")  # scroll up
        expect(alice.lines("line 030")).to_have_count(1)
        older: Any = alice.page.get_by_role("button", name="Load older messages")
        older.click()
        expect(alice.lines("line 000")).to_have_count(1)
        expect(alice.lines("line 000")).to_have_count(1)
        expect(older).to_be_hidden()
        assert texts(alice) == [f"line {i:03}" for i in range(120)]
    finally:
        carol.close()
