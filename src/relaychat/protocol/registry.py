"""Owners of shared state: the nick table, the channel table, membership, invites,
WHOWAS and the LUSERS counts.

Handlers ask; the registry changes. Every change to who holds a nick, who is on
a channel with what status, a channel's topic, modes, lists and invites goes
through a method here, which keeps the cross-references in step (``user.channels``
and ``channel.members``, the counts, the delivery layer's per-turn batches).
These methods are where a later, shared backend (several nodes) serialises
changes; nothing else edits these dicts.

Nick ownership: only registered users hold nicks. An unregistered connection's
``NICK`` only checks that no registered user holds the nick; the nick is claimed
when registration completes, and whoever completes first wins (the other gets
433 then). So a connection that never finishes registering cannot camp on a nick.

Invites are bound to the channel *instance* (``Channel.cid``), single use,
expire, and are bounded per user (oldest dropped first).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from relaychat.protocol.state import Channel, Invite, ListEntry, User, WhowasEntry

__all__ = ["Registry", "SNOMASK_LETTERS"]

# server notice letters (user mode +s): client connects, flood drops, kills,
# opers, quits, server bans
SNOMASK_LETTERS = "cfkoqx"

_STATUS_ORDER = "ov"  # rank order of member status letters


class Registry:
    def __init__(
        self,
        fold: Callable[[str], str],
        whowas_size: int,
        on_join: Callable[[Channel, User], None],
        on_part: Callable[[Channel, User], None],
        on_change: Callable[[Channel], None] | None = None,
    ) -> None:
        self.fold = fold
        self.nicks: dict[str, User] = {}  # folded nick -> registered user
        self.channels: dict[str, Channel] = {}  # folded name -> channel
        self.whowas: deque[WhowasEntry] = deque(maxlen=whowas_size)
        self._on_join = on_join
        self._on_part = on_part
        # a registered channel's kept state (topic, modes, key, limit, lists) changed
        self._on_change = on_change
        self._next_cid = 1
        # running counts for LUSERS (a pass over every user per registration would
        # make registering N clients cost N^2)
        self.registered_count = 0
        self.invisible_count = 0
        self.oper_count = 0
        self.max_users_seen = 0
        self.wallops: set[User] = set()  # users with +w
        # server notice masks (user mode +s, opers only): user -> letters, and
        # letter -> the users who get those notices (empty: nobody pays anything)
        self.snomasks: dict[User, str] = {}
        self.sno_watchers: dict[str, set[User]] = {c: set() for c in SNOMASK_LETTERS}

    def resize_whowas(self, size: int) -> None:
        self.whowas = deque(self.whowas, maxlen=size)

    # ------------------------------------------------------------------ users
    def find_user(self, nick: str) -> User | None:
        return self.nicks.get(self.fold(nick))

    def nick_holder(self, nick: str) -> User | None:
        return self.nicks.get(self.fold(nick))

    def register(self, user: User, signon: float) -> bool:
        """Registration completes: claim the user's nick. False if a registered
        user holds it meanwhile (the caller answers 433)."""
        assert user.nick is not None
        folded = self.fold(user.nick)
        holder = self.nicks.get(folded)
        if holder is not None and holder is not user:
            return False
        user.nick_folded = folded
        self.nicks[folded] = user
        user.registered = True
        user.signon = signon
        user.update_prefix()
        self.registered_count += 1
        self.max_users_seen = max(self.max_users_seen, self.registered_count)
        return True

    def change_nick(self, user: User, nick: str, when: float) -> bool:
        """A registered user changes nick; False if another user holds it."""
        folded = self.fold(nick)
        holder = self.nicks.get(folded)
        if holder is not None and holder is not user:
            return False
        self.remember_whowas(user, when)
        old = user.nick_folded
        if old is not None and self.nicks.get(old) is user:
            del self.nicks[old]
        user.nick = nick
        user.nick_folded = folded
        self.nicks[folded] = user
        user.update_prefix()
        return True

    def remove_user(self, user: User, when: float) -> None:
        """The user leaves the network: out of every channel, nick released."""
        for chan in list(user.channels.values()):
            self.part(chan, user)
        if user.registered:
            self.remember_whowas(user, when)
            self.set_user_modes(user, "")
            self.registered_count -= 1
            user.registered = False
        folded = user.nick_folded
        if folded is not None and self.nicks.get(folded) is user:
            del self.nicks[folded]
        user.invites = None
        user.metadata = None

    def set_user_modes(self, user: User, modes: str, snomask: str | None = None) -> None:
        """Change user modes, keeping the LUSERS counts and the oper state in step
        (losing +o ends operator status and with it +s). ``snomask``: the server
        notice letters that come with ``+s`` (None: keep the current ones)."""
        if "o" not in modes:
            modes = modes.replace("s", "")
        old = user.modes
        if user.registered:
            if ("i" in old) != ("i" in modes):
                self.invisible_count += 1 if "i" in modes else -1
            if ("o" in old) != ("o" in modes):
                self.oper_count += 1 if "o" in modes else -1
        if "w" in modes:
            self.wallops.add(user)
        else:
            self.wallops.discard(user)
        if "o" not in modes:
            user.oper_name = None
        if "s" not in modes:
            snomask = ""
        if snomask is not None:
            self._set_snomask(user, snomask)
        user.modes = "".join(sorted(set(modes)))

    def _set_snomask(self, user: User, letters: str) -> None:
        old = self.snomasks.pop(user, "")
        for c in old:
            self.sno_watchers[c].discard(user)
        letters = "".join(c for c in SNOMASK_LETTERS if c in letters)
        if letters:
            self.snomasks[user] = letters
            for c in letters:
                self.sno_watchers[c].add(user)

    def remember_whowas(self, user: User, when: float) -> None:
        if user.nick is not None and self.whowas.maxlen:
            self.whowas.appendleft(
                WhowasEntry(
                    user.nick,
                    self.fold(user.nick),
                    user.ident or "",
                    user.host,
                    user.realname,
                    "",
                    when,
                )
            )

    # --------------------------------------------------------------- channels
    def find_channel(self, name: str) -> Channel | None:
        return self.channels.get(self.fold(name))

    def create_channel(self, name: str, created: float) -> Channel:
        folded = self.fold(name)
        assert folded not in self.channels
        chan = Channel(self._next_cid, name, folded, created)
        self._next_cid += 1
        self.channels[folded] = chan
        return chan

    def join(self, chan: Channel, user: User, status: str = "") -> None:
        chan.members[user] = status
        channels = user.channels
        if not isinstance(channels, dict):
            channels = user.channels = {}  # a user's first channel: its own dict
        channels[chan.folded] = chan
        self._on_join(chan, user)

    def part(self, chan: Channel, user: User) -> None:
        """Remove a member (PART, KICK, QUIT); an empty channel is destroyed,
        unless it is registered."""
        if user not in chan.members:
            return
        self._on_part(chan, user)
        del chan.members[user]
        channels = user.channels
        if isinstance(channels, dict):
            channels.pop(chan.folded, None)
        if not chan.members and chan.registration is None:
            self.release_channel(chan)

    def release_channel(self, chan: Channel) -> None:
        """Destroy ``chan`` if it is empty (a registration dropped, or a channel
        loaded from the store that nobody joined)."""
        if not chan.members and self.channels.get(chan.folded) is chan:
            del self.channels[chan.folded]
            chan.metadata = None

    def _changed(self, chan: Channel) -> None:
        if chan.registration is not None and self._on_change is not None:
            self._on_change(chan)

    def set_status(self, chan: Channel, user: User, letter: str, on: bool) -> bool:
        """Give or take ``+o``/``+v``; False if nothing changed."""
        status = chan.members.get(user)
        if status is None or on == (letter in status):
            return False
        letters = set(status) | {letter} if on else set(status) - {letter}
        chan.members[user] = "".join(c for c in _STATUS_ORDER if c in letters)
        return True

    def set_topic(self, chan: Channel, topic: str, setter: str, when: float) -> None:
        chan.topic = topic
        chan.topic_setter = setter
        chan.topic_time = when
        self._changed(chan)

    def set_flag(self, chan: Channel, letter: str, on: bool) -> bool:
        if on == (letter in chan.modes):
            return False
        if on:
            chan.modes.add(letter)
        else:
            chan.modes.discard(letter)
        self._changed(chan)
        return True

    def set_key(self, chan: Channel, key: str | None) -> bool:
        if chan.key == key:
            return False
        chan.key = key
        self._changed(chan)
        return True

    def set_limit(self, chan: Channel, limit: int | None) -> bool:
        if chan.limit == limit:
            return False
        chan.limit = limit
        self._changed(chan)
        return True

    def add_list_entry(
        self, chan: Channel, letter: str, mask: str, setter: str, when: float, capacity: int
    ) -> bool | None:
        """Add a mask to ``+b/+e/+I``: True added, False already there, None full."""
        entries = chan.lists[letter]
        folded = self.fold(mask)
        if any(e.folded == folded for e in entries):
            return False
        if len(entries) >= capacity:
            return None
        entries.append(ListEntry(mask, folded, setter, when))
        self._changed(chan)
        return True

    def remove_list_entry(self, chan: Channel, letter: str, mask: str) -> ListEntry | None:
        entries = chan.lists[letter]
        folded = self.fold(mask)
        for i, e in enumerate(entries):
            if e.folded == folded:
                removed = entries.pop(i)
                self._changed(chan)
                return removed
        return None

    # ---------------------------------------------------------------- metadata
    def set_metadata(self, owner: User | Channel, key: str, value: str | None) -> None:
        """Set ``key`` on a user or channel (``value`` None: remove it). The caller
        checked the key, the value and the limits."""
        data = owner.metadata
        if value is None:
            if data is not None:
                data.pop(key, None)
                if not data:
                    owner.metadata = None
            return
        if data is None:
            data = owner.metadata = {}
        data[key] = value

    def clear_metadata(self, owner: User | Channel) -> dict[str, str]:
        """Remove every key of a user or channel; what was there."""
        data = owner.metadata
        owner.metadata = None
        return data or {}

    # ----------------------------------------------------------------- invites
    def invite(self, user: User, chan: Channel, inviter: str, expires: float, cap: int) -> None:
        """Record an invite to this instance of ``chan``; at most ``cap`` per user
        (the oldest goes first)."""
        invites = user.invites
        if invites is None:
            invites = user.invites = {}
        invites.pop(chan.cid, None)
        while len(invites) >= cap:
            del invites[next(iter(invites))]
        invites[chan.cid] = Invite(chan.cid, chan.name, inviter, expires)

    def take_invite(self, user: User, chan: Channel, now: float) -> bool:
        """Use up an invite to this instance of ``chan``; False if none is valid."""
        invites = user.invites
        if not invites:
            return False
        inv = invites.pop(chan.cid, None)
        if not invites:
            user.invites = None
        return inv is not None and inv.expires > now

    def has_invite(self, user: User, chan: Channel, now: float) -> bool:
        invites = user.invites
        inv = invites.get(chan.cid) if invites else None
        return inv is not None and inv.expires > now
