"""Echo bot: repeats every PRIVMSG it gets, to the channel or back to the sender.

Usage: .venv/bin/python examples/echo_bot.py [HOST [PORT [NICK [CHANNEL]]]]
"""

import sys

from relaychat.client import Batch, connect
from relaychat.protocol.message import split_source

args = sys.argv[1:5]
host, port, nick, channel = args + ["127.0.0.1", "6667", "echobot", "#echo"][len(args) :]
with connect(host, int(port), nick) as bot:
    print(f"connected to {host}:{port} as {bot.nick}", flush=True)
    bot.join(channel)
    for item in bot:  # ends when the server closes the connection
        # a batch comes whole; a multi-line message reads as one PRIVMSG with line breaks
        msg = item.multiline() if isinstance(item, Batch) else item
        if msg is None:
            continue
        sender = split_source(msg.source)[0] if msg.source else ""
        if msg.command == "JOIN" and bot.is_me(sender):
            print(f"joined {msg.params[0]}", flush=True)
        elif msg.command == "PRIVMSG" and len(msg.params) == 2 and sender:
            target, text = msg.params
            if not text.startswith("\x01"):  # CTCP (VERSION, ACTION...) is not echoed
                to = sender if bot.is_me(target) else target
                bot.privmsg(to, text)
                print(f"echoed to {to}: {text!r}", flush=True)  # repr: no terminal escapes
print("disconnected")
