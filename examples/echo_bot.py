"""Echo bot: repeats every PRIVMSG it gets, to the channel or back to the sender.

Usage: python examples/echo_bot.py [HOST [PORT [NICK [CHANNEL]]]]
"""

import sys

from relaychat.client import connect
from relaychat.protocol.message import split_source

args = sys.argv[1:5]
host, port, nick, channel = args + ["127.0.0.1", "6667", "echobot", "#echo"][len(args) :]
with connect(host, int(port), nick) as bot:
    bot.join(channel)
    for msg in bot:  # ends when the server closes the connection
        if msg.command == "PRIVMSG" and len(msg.params) == 2 and msg.source:
            sender = split_source(msg.source)[0]
            target, text = msg.params
            bot.privmsg(sender if bot.is_me(target) else target, text)
