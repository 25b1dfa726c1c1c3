"""The browser client in headless Chromium, against a real server: two browser users
and a TCP client in one channel, private messages, members, topic, nick changes,
unread counts."""

from __future__ import annotations

from collections.abc import Callable

from browserutil import BrowserUser, Web
from playwright.sync_api import expect

from ircutil import RawClient


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
