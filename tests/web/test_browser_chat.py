"""The browser client in headless Chromium, against a real server: two browser users
and a TCP client in one channel, private messages, members, topic, nick changes,
unread counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from browserutil import ENGINES, BrowserUser, Web
from playwright.sync_api import expect

from ircutil import RawClient


@pytest.mark.parametrize("engine", ENGINES)
def test_two_browsers_and_a_tcp_client_see_each_other(
    open_user: Callable[[], BrowserUser], web: Web
) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#chat")
    bob.connect("bob", join="#chat")
    carol = RawClient(web.irc_port)
    try:
        carol.register("carol")
        carol.send("JOIN #chat")
        carol.expect("366")
        alice.say("hello from alice")
        expect(bob.lines("hello from alice")).to_have_count(1)
        carol.expect(lambda m: m.command == "PRIVMSG" and m.params[-1] == "hello from alice")
        bob.say("hi, bob here")
        expect(alice.lines("hi, bob here")).to_have_count(1)
        carol.expect(lambda m: m.command == "PRIVMSG" and m.params[-1] == "hi, bob here")
        carol.send("PRIVMSG #chat :carol over tcp")
        expect(alice.lines("carol over tcp")).to_have_count(1)
        expect(bob.lines("carol over tcp")).to_have_count(1)
        expect(alice.lines("hello from alice")).to_have_count(1)  # the echo, once
    finally:
        carol.close()


def test_private_messages_between_browser_users_get_a_buffer_per_nick(
    open_user: Callable[[], BrowserUser],
) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice")
    bob.connect("bob")
    alice.say("/msg bob psst, bob")
    expect(alice.page.locator("#buffer-title")).to_have_text("bob")
    expect(alice.lines("psst, bob")).to_have_count(1)
    expect(bob.buffer("alice").locator(".unread")).to_have_text("1")
    bob.open("alice")
    expect(bob.lines("psst, bob")).to_have_count(1)
    expect(bob.buffer("alice").locator(".unread")).to_have_count(0)
    bob.say("hi alice, only you can read this")
    expect(alice.lines("only you can read this")).to_have_count(1)
    expect(alice.buffer("bob")).to_be_visible()


def test_member_list_shows_prefixes_and_follows_modes(
    open_user: Callable[[], BrowserUser],
) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#new")
    bob.connect("bob", join="#new")
    for user in (alice, bob):
        expect(user.members()).to_have_text(["@alice", "bob"])
    alice.say("/quote MODE #new +v bob")
    for user in (alice, bob):
        expect(user.members()).to_have_text(["@alice", "+bob"])
    alice.say("/quote MODE #new +o bob")  # multi-prefix: bob is both
    for user in (alice, bob):
        expect(user.members()).to_have_text(["@alice", "@+bob"])
    alice.say("/quote MODE #new -o bob")
    expect(bob.members()).to_have_text(["@alice", "+bob"])


def test_topic_is_shown_when_set_and_on_join(open_user: Callable[[], BrowserUser]) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#topical")
    alice.say("/topic Release on Friday")
    expect(alice.page.locator("#topic")).to_have_text("Release on Friday")
    expect(alice.lines("alice changed the topic to: Release on Friday")).to_have_count(1)
    bob.connect("bob", join="#topical")
    expect(bob.page.locator("#topic")).to_have_text("Release on Friday")


def test_nick_change_is_shown_to_others_and_in_the_member_list(
    open_user: Callable[[], BrowserUser],
) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#chat")
    bob.connect("bob", join="#chat")
    bob.say("/nick robert")
    expect(bob.page.locator("#me")).to_have_text("robert")
    expect(alice.lines("bob is now known as robert")).to_have_count(1)
    expect(alice.members()).to_have_text(["@alice", "robert"])
    expect(bob.lines("bob is now known as robert")).to_have_count(1)


def test_unread_count_grows_on_a_background_buffer_and_clears_when_opened(
    open_user: Callable[[], BrowserUser],
) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#front,#back")
    bob.connect("bob", join="#back")
    alice.open("#front")
    bob.say("one")
    expect(alice.buffer("#back").locator(".unread")).to_have_text("1")
    bob.say("two")
    expect(alice.buffer("#back").locator(".unread")).to_have_text("2")
    expect(alice.buffer("#back").locator(".unread.mention")).to_have_count(0)
    bob.say("alice: a mention")
    expect(alice.buffer("#back").locator(".unread.mention")).to_have_text("3")
    alice.open("#back")
    expect(alice.buffer("#back").locator(".unread")).to_have_count(0)
    expect(alice.lines("alice: a mention")).to_have_class("line k-privmsg mention")


def test_keyboard_switches_buffers(open_user: Callable[[], BrowserUser]) -> None:
    alice = open_user()
    alice.connect("alice", join="#one,#two")
    alice.open("#one")
    title = alice.page.locator("#buffer-title")
    alice.page.locator("#input").press("Alt+ArrowDown")
    expect(title).to_have_text("#two")
    alice.page.locator("#input").press("Alt+ArrowUp")
    expect(title).to_have_text("#one")
    alice.page.locator("#input").press("Control+k")
    alice.page.locator("#switch-input").fill("#two")
    alice.page.locator("#switch-input").press("Enter")
    expect(title).to_have_text("#two")
    expect(alice.page.locator("#input")).to_be_focused()


def test_away_state_is_shown_to_self_and_in_others_member_lists(
    open_user: Callable[[], BrowserUser],
) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#chat")
    bob.connect("bob", join="#chat")
    alice.say("/away lunch")
    expect(alice.page.locator("#me")).to_have_text("alice (away)")
    expect(bob.page.locator('#member-list .member.away[data-nick="alice"]')).to_have_count(1)
    alice.say("/away")
    expect(alice.page.locator("#me")).to_have_text("alice")
    expect(bob.page.locator('#member-list .member.away[data-nick="alice"]')).to_have_count(0)


def test_channel_list_lists_and_joins(open_user: Callable[[], BrowserUser]) -> None:
    alice, bob = open_user(), open_user()
    alice.connect("alice", join="#lobby")
    alice.say("/topic All welcome")
    bob.connect("bob")
    bob.page.get_by_role("button", name="Channels").click()
    entry = bob.page.locator("#list-results li", has_text="#lobby")
    expect(entry).to_contain_text("All welcome")
    entry.get_by_role("button", name="Join #lobby").click()
    expect(bob.page.locator("#buffer-title")).to_have_text("#lobby")
    expect(bob.members()).to_have_text(["@alice", "bob"])


def test_nick_in_use_asks_for_another(open_user: Callable[[], BrowserUser]) -> None:
    alice, other = open_user(), open_user()
    alice.connect("alice")
    page = other.page
    page.goto(other.web.http_url)
    page.get_by_label("Nick").fill("alice")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("alert")).to_contain_text("“alice” is already in use")
    expect(page.get_by_label("Nick")).to_be_focused()
    page.get_by_label("Nick").fill("alice2")
    page.get_by_role("button", name="Use this nick").click()
    expect(page.locator("#me")).to_have_text("alice2")


def test_message_text_is_never_markup(open_user: Callable[[], BrowserUser], web: Web) -> None:
    alice = open_user()
    alice.connect("alice", join="#chat")
    mallory = RawClient(web.irc_port)
    try:
        mallory.register("mallory")
        mallory.send("JOIN #chat")
        mallory.expect("366")
        mallory.send("PRIVMSG #chat :<img src=x onerror=alert(1)> \x02bold\x02 \x0304red\x03")
        line = alice.lines("<img src=x onerror=alert(1)> bold red")
        expect(line).to_have_count(1)
        expect(line.locator("img")).to_have_count(0)
        expect(line.locator(".b")).to_have_text("bold")
        expect(line.locator(".fg4")).to_have_text("red")
    finally:
        mallory.close()


NOTIFICATION_STUB = """
window.__notes = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.__notes.push(title + ": " + options.body); }
};
"""


def test_a_mention_in_a_background_buffer_notifies(open_user: Callable[[], BrowserUser]) -> None:
    alice, bob = open_user(), open_user()
    alice.page.add_init_script(NOTIFICATION_STUB)
    alice.connect("alice", join="#quiet,#loud")
    bob.connect("bob", join="#loud")
    alice.open("#quiet")
    bob.say("no mention here")
    expect(alice.buffer("#loud").locator(".unread")).to_have_text("1")
    bob.say("alice: look at this")
    expect(alice.buffer("#loud").locator(".unread.mention")).to_have_text("2")
    notes = alice.page.evaluate("window.__notes")
    assert notes == ["bob in #loud: alice: look at this"]


def test_account_login_with_sasl_plain(open_user: Callable[[], BrowserUser], web: Web) -> None:
    owner = RawClient(web.irc_port)
    try:
        owner.register("dave")
        owner.send("REGISTER dave * correct-horse-battery")
        owner.expect(lambda m: m.command == "REGISTER" and m.params[0] == "SUCCESS")
    finally:
        owner.close()
    good, bad = open_user(), open_user()
    good.connect("dave_web", account="dave", password="correct-horse-battery")
    good.open("Server")
    expect(good.lines("Logged in as dave")).to_have_count(1)
    page = bad.page
    page.goto(bad.web.http_url)
    page.get_by_label("Nick").fill("mallory")
    page.get_by_label("Account", exact=True).fill("dave")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#me")).to_have_text("mallory")
    expect(page.locator("#log .line.k-error").filter(has_text="Login failed")).to_have_count(1)


def test_quit_returns_to_the_connect_form(open_user: Callable[[], BrowserUser], web: Web) -> None:
    alice = open_user()
    alice.connect("alice", join="#chat")
    watcher = RawClient(web.irc_port)
    try:
        watcher.register("watcher")
        watcher.send("JOIN #chat")
        watcher.expect("366")
        alice.say("/quit see you")
        watcher.expect(lambda m: m.command == "QUIT" and m.params[-1].endswith("see you"))
        expect(alice.page.get_by_role("button", name="Connect")).to_be_visible()
    finally:
        watcher.close()


def test_phone_sized_screen_collapses_the_buffer_list_and_themes_switch(
    browser: Any, web: Web
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 740}, color_scheme="dark")
    try:
        user = BrowserUser(context.new_page(), web)
        user.connect("phone", join="#one,#two")
        page = user.page
        sidebar = page.get_by_role("navigation", name="Buffers")
        expect(sidebar).to_be_hidden()
        toggle = page.locator("#toggle-buffers")
        toggle.click()
        expect(sidebar).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        user.open("#one")
        expect(sidebar).to_be_hidden()  # choosing a buffer closes the list
        expect(page.locator("#input")).to_be_focused()
        background = "getComputedStyle(document.body).backgroundColor"
        dark = page.evaluate(background)
        theme = page.locator("#theme-button")
        theme.click()
        expect(theme).to_have_text("Theme: light")
        assert page.evaluate(background) != dark
        theme.click()
        expect(theme).to_have_text("Theme: dark")
        assert page.evaluate(background) == dark
        assert not user.errors, user.errors
    finally:
        context.close()
