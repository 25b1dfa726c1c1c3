"""draft/read-marker and draft/message-redaction over real sockets, for both
engines: two connections of one account see each other's MARKREAD (and get it
on JOIN); a REDACT reaches the clients with the capability only, and
CHATHISTORY no longer returns the message."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from ircutil import RawClient
from relaychat.protocol import numerics as N

Connect = Callable[..., RawClient]
PW = "redaction-sockets-pw"
T1 = "timestamp=2024-02-03T04:05:06.789Z"


def login(srv: Any, connect: Connect, account: str, nick: str, caps: str) -> RawClient:
    """A connection logged in to ``account`` with SASL PLAIN during registration,
    its welcome burst consumed."""
    c = connect(srv)
    c.send("CAP LS 302")
    c.send("CAP REQ :" + " ".join(["sasl", *caps.split()]))
    c.send(f"NICK {nick}")
    c.send(f"USER {nick} 0 * :Real {nick}")
    c.expect(lambda m: m.command == "CAP" and m.params[1] == "ACK")
    c.send("AUTHENTICATE PLAIN")
    c.expect("AUTHENTICATE")
    c.send("AUTHENTICATE " + base64.b64encode(f"\0{account}\0{PW}".encode()).decode())
    c.expect(N.RPL_SASLSUCCESS)
    c.send("CAP END")
    c.expect("376")
    return c


def test_two_sessions_of_one_account_see_each_others_markread(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    first = connect(irc_server, "alice")
    first.send(f"REGISTER * * :{PW}")
    assert first.expect("REGISTER").params[0] == "SUCCESS"
    first.send("QUIT")
    first.wait_closed()
    s1 = login(irc_server, connect, "alice", "alice", "draft/read-marker")
    s2 = login(irc_server, connect, "alice", "alice", "draft/read-marker")
    s1.send("JOIN #c")
    got = s1.take_until(lambda m: m.command == N.RPL_ENDOFNAMES)
    assert [m.params for m in got if m.command == "MARKREAD"] == [["#c", "*"]]
    s2.expect("JOIN")
    assert s2.expect("MARKREAD").params == ["#c", "*"]  # it saw the JOIN too
    s1.send(f"MARKREAD #c {T1}")
    assert s1.expect("MARKREAD").params == ["#c", T1]
    assert s2.expect("MARKREAD").params == ["#c", T1]
    s2.send("MARKREAD #c timestamp=2020-01-01T00:00:00.000Z")  # older: not moved
    assert s2.expect("MARKREAD").params == ["#c", T1]
    assert [m for m in s1.sync() if m.command == "MARKREAD"] == []
    # a third connection later: the marker comes with its JOIN replay
    s3 = connect(irc_server)
    s3.send("CAP LS 302")
    s3.send("CAP REQ :sasl draft/read-marker")
    s3.send("NICK x")
    s3.send("USER x 0 * :x")
    s3.send("AUTHENTICATE PLAIN")
    s3.send("AUTHENTICATE " + base64.b64encode(f"\0alice\0{PW}".encode()).decode())
    s3.send("CAP END")
    got = s3.take_until(lambda m: m.command == N.RPL_ENDOFNAMES)
    assert [m.params for m in got if m.command == "MARKREAD"] == [["#c", T1]]


def test_redact_reaches_cap_clients_only_and_leaves_chathistory(
    irc_server: Any, connect: Connect, no_server_errors: None
) -> None:
    caps = ("message-tags", "echo-message", "batch", "draft/chathistory", "draft/message-redaction")
    alice = connect(irc_server, "alice", caps=caps)
    alice.send(f"REGISTER * * :{PW}")
    alice.expect(N.RPL_LOGGEDIN)
    watcher = connect(irc_server, "watcher", caps=caps)
    bystander = connect(irc_server, "bystander", caps=("message-tags",))
    for c in (alice, watcher, bystander):
        c.join("#c")
    alice.send("PRIVMSG #c :kept")
    keep = alice.expect(lambda m: m.command == "PRIVMSG" and m.params[1] == "kept")
    alice.send("PRIVMSG #c :regretted")
    msgid = alice.expect(lambda m: m.command == "PRIVMSG" and m.params[1] == "regretted").tags[
        "msgid"
    ]
    bystander.expect(lambda m: m.command == "PRIVMSG" and m.params[1] == "regretted")
    alice.send(f"REDACT #c {msgid} :typo")
    assert alice.expect("REDACT").params == ["#c", msgid, "typo"]
    redact = watcher.expect("REDACT")
    assert redact.params == ["#c", msgid, "typo"] and redact.source.startswith("alice!")
    assert [m for m in bystander.sync() if m.command == "REDACT"] == []
    watcher.send("CHATHISTORY LATEST #c * 10")
    got = watcher.take_until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    assert [m.params[1] for m in got if m.command == "PRIVMSG"] == ["kept"]
    # someone else's message, as a plain member: refused, and nothing relayed
    watcher.send(f"PRIVMSG NickServ :REGISTER {PW}")
    watcher.expect(N.RPL_LOGGEDIN)
    watcher.send(f"REDACT #c {keep.tags['msgid']}")
    assert watcher.expect("FAIL").params[:2] == ["REDACT", "REDACT_FORBIDDEN"]
