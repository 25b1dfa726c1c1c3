"""History in the client library and the terminal client against a real relaychat
server (both engines): the fetch on JOIN, paging back, deduplication with live
traffic sent at the same time, and a server that keeps no history."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ircutil import make_config, wait_for
from relaychat.client import CHATHISTORY, Connection, History, Incoming, NotSupported, connect
from relaychat.client.tui import ChatSession
from relaychat.config import HistoryConfig
from relaychat.protocol.message import Message, split_source
from relaychat.server.runner import start_in_thread

HOST = "127.0.0.1"


def said_by(nick: str, text: str | None = None) -> Callable[[Incoming], bool]:
    def match(item: Incoming) -> bool:
        return (
            isinstance(item, Message)
            and item.command == "PRIVMSG"
            and item.source is not None
            and split_source(item.source)[0] == nick
            and (text is None or item.params[-1] == text)
        )

    return match


def joined(conn: Connection, channel: str) -> None:
    conn.join(channel)
    conn.wait_for(lambda m: m.command == "366")


def send_and_sync(sender: Connection, channel: str, texts: list[str]) -> None:
    """Send ``texts``; return once the server relayed the last one back to the sender
    (echo-message is off: a PING round trip orders it after the sends)."""
    for text in texts:
        sender.privmsg(channel, text)
    sender.request("PING", "sync") if sender.supports_labels else None


def test_history_on_join_comes_marked_in_order_without_live_duplicates(irc_server: Any) -> None:
    with connect(HOST, irc_server.port, "alice") as alice:
        joined(alice, "#t")
        send_and_sync(alice, "#t", [f"before {i}" for i in range(10)])
        with connect(HOST, irc_server.port, "carol") as carol:
            joined(carol, "#t")
            items: list[Incoming] = []
            got_history = threading.Event()
            bob = Connection(HOST, irc_server.port, "bob", join_history=100)

            @bob.on_message
            def keep(item: Incoming) -> None:
                items.append(item)
                if isinstance(item, History):
                    got_history.set()

            bob.connect()
            try:
                assert CHATHISTORY in bob.enabled_caps and bob.history_limit == 100
                live_sent: list[str] = []

                def chatter() -> None:  # live traffic while the history request is in flight
                    for i in range(40):
                        if got_history.is_set() and i >= 5:
                            return
                        text = f"meanwhile {i}"
                        carol.privmsg("#t", text)
                        live_sent.append(text)

                talker = threading.Thread(target=chatter)
                talker.start()
                bob.join("#t")
                talker.join(10)
                assert got_history.wait(10)
                carol.privmsg("#t", "the end")  # after all of carol's, on one connection
                bob.wait_for(said_by("carol", "the end"))
            finally:
                bob.close()

    (history,) = [i for i in items if isinstance(i, History)]
    assert history.auto and history.target == "#t" and history.error is None
    texts = [m.params[-1] for m in history]
    assert texts[:10] == [f"before {i}" for i in range(10)]
    assert all(m.msgid and m.tags.get("time") for m in history)
    live = [i for i in items if isinstance(i, Message) and i.command == "PRIVMSG"]
    live_texts = [m.params[-1] for m in live]
    assert not set(texts) & set(live_texts)  # shown once: either history or live
    assert not {m.msgid for m in history} & {m.msgid for m in live}
    carol_seen = [t for t in texts + live_texts if t.startswith("meanwhile")]
    assert len(live_sent) >= 5
    assert sorted(carol_seen) == sorted(live_sent)  # every one, exactly once
    # history is in the channel's order, live lines too
    order = {text: n for n, text in enumerate(live_sent)}
    in_history = [order[t] for t in texts if t in order]
    assert in_history == sorted(in_history)
    live_order = [order[t] for t in live_texts if t in order]
    assert live_order == sorted(live_order)
    assert not in_history or not live_order or max(in_history) < min(live_order)


def test_latest_and_paging_back_with_before(irc_server: Any) -> None:
    with (
        connect(HOST, irc_server.port, "alice") as alice,
        connect(HOST, irc_server.port, "bob") as bob,
    ):
        joined(alice, "#p")
        send_and_sync(alice, "#p", [f"line {i}" for i in range(12)])
        joined(bob, "#p")
        last = bob.latest("#p", 5)
        assert [m.params[-1] for m in last] == [f"line {i}" for i in range(7, 12)]
        older = bob.history("#p", before=last.oldest, limit=5)
        assert [m.params[-1] for m in older] == [f"line {i}" for i in range(2, 7)]
        assert not older.auto
        newer = bob.history("#p", after=older.oldest, limit=3)
        assert [m.params[-1] for m in newer] == ["line 3", "line 4", "line 5"]
        refused = bob.history("#elsewhere")
        assert refused.error is not None and refused.error.command == "FAIL"
        assert refused.messages == []


@pytest.fixture
def no_history_server(engine: str) -> Iterator[Any]:
    config = make_config(engine)
    config = dataclasses.replace(config, history=HistoryConfig(enabled=False))
    handle = start_in_thread(config)
    try:
        yield handle
    finally:
        handle.stop()


def test_without_history_the_client_behaves_as_before(no_history_server: Any) -> None:
    port = no_history_server.port
    with connect(HOST, port, "alice") as alice:
        joined(alice, "#n")
        send_and_sync(alice, "#n", ["unkept"])
        lines: list[str] = []
        conn = Connection(HOST, port, "me", join_history=50)
        session = ChatSession(conn, lines.append, dim=lambda line: "DIM " + line)
        conn.on_message(session.handle_message)
        items: list[Incoming] = []
        conn.on_message(items.append)
        conn.connect()
        try:
            assert CHATHISTORY not in conn.enabled_caps and not conn.history_enabled
            session.handle_input("/join #n")
            conn.wait_for(lambda m: m.command == "366")
            assert not conn.history_pending("#n")
            alice.privmsg("#n", "live one")
            wait_for(lambda: any("<alice> live one" in line for line in lines))
            session.handle_input("/history 5")
            with pytest.raises(NotSupported):
                conn.latest("#n")
        finally:
            conn.close()
    assert not any(isinstance(i, History) for i in items)
    shown = "\n".join(lines)
    assert "history —" not in shown and "live —" not in shown and "DIM" not in shown
    assert "unkept" not in shown
    assert lines[-1].endswith("! this server keeps no history")


def start_session(
    port: int, nick: str = "me", history: int = 5
) -> tuple[ChatSession, list[str], Connection]:
    lines: list[str] = []
    conn = Connection(HOST, port, nick, join_history=history)
    session = ChatSession(conn, lines.append, dim=lambda line: "DIM " + line)
    conn.on_message(session.handle_message)
    conn.connect()
    return session, lines, conn


def unstamped(lines: list[str]) -> list[str]:
    """Lines without their ``[HH:MM] `` (kept: the ``DIM`` marking history)."""
    out = []
    for line in lines:
        dim = line.startswith("DIM ")
        rest = line.removeprefix("DIM ")
        assert re.match(r"\[\d\d:\d\d\] ", rest), line
        out.append(("DIM " if dim else "") + rest[len("[HH:MM] ") :])
    return out


def test_session_shows_history_above_live_lines_and_loads_older(irc_server: Any) -> None:
    with connect(HOST, irc_server.port, "alice") as alice:
        joined(alice, "#t")
        send_and_sync(alice, "#t", [f"old {i}" for i in range(10)])
        session, lines, conn = start_session(irc_server.port)
        try:
            session.handle_input("/join #t")
            alice.wait_for(lambda m: m.command == "JOIN" and m.source is not None)
            alice.privmsg("#t", "fresh")  # may reach us before the history does
            wait_for(lambda: any(line.endswith("] <alice> fresh") for line in lines))
            shown = unstamped(lines)
            start = shown.index("— history —")
            end = shown.index("— live —")
            # the last 5 rows; "fresh" among them when it was stored before the query
            # ran, and then left out of history because it was shown live already
            first = 10 - (end - start - 1)
            assert first in (5, 6)
            assert shown[start + 1 : end] == [f"DIM <alice> old {i}" for i in range(first, 10)]
            assert shown.index("<alice> fresh") > end  # live below history
            assert "\n".join(shown).count("<alice> fresh") == 1

            session.handle_input("/history 3")
            wait_for(lambda: any("end of older history" in line for line in lines))
            shown = unstamped(lines)
            start = shown.index("— older history of #t —")
            end = shown.index("— end of older history of #t —")
            expected = [f"DIM <alice> old {i}" for i in range(first - 3, first)]
            assert shown[start + 1 : end] == expected

            session.handle_input(f"/history {first}")
            wait_for(lambda: sum("end of older history" in line for line in lines) == 2)
            shown = unstamped(lines)
            assert shown[-1 - (first - 3) : -1] == [
                f"DIM <alice> old {i}" for i in range(first - 3)
            ]
            session.handle_input("/history")
            wait_for(lambda: lines[-1].endswith("-- no older history for #t"))
            session.handle_input("/history many")
            assert lines[-1].endswith("! usage: /history [n]")
        finally:
            conn.close()
