"""Drive the sans-I/O core directly: fake connections and a fake clock, no sockets."""

from __future__ import annotations

from relaychat.protocol.message import Message, parse_message
from relaychat.protocol.server import ServerCore
from relaychat.protocol.state import Session


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Peer:
    """One fake connection: ``send`` a line, read what the core answered."""

    def __init__(self, core: ServerCore, clock: Clock, ip: str = "127.0.0.1") -> None:
        self.core = core
        self.clock = clock
        self.inbox: list[Message] = []
        self.raw: list[bytes] = []
        self.closed = False
        self.session: Session = core.connect(ip, clock.now, handle=self)
        pump(core)

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else (line + "\r\n").encode()
        self.core.receive_data(self.session, data, self.clock.now)
        pump(self.core)

    def take(self) -> list[Message]:
        """Everything received since the last take."""
        out, self.inbox = self.inbox, []
        return out

    def commands(self) -> list[str]:
        return [m.command for m in self.take()]

    def register(self, nick: str, user: str = "u", caps: tuple[str, ...] = ()) -> None:
        if caps:
            self.send("CAP LS 302")
            self.send("CAP REQ :" + " ".join(caps))
        self.send(f"NICK {nick}")
        self.send(f"USER {user} 0 * :Real {nick}")
        if caps:
            self.send("CAP END")
        assert any(m.command == "001" for m in self.inbox), self.inbox
        self.take()


def pump(core: ServerCore) -> None:
    for handle, data, close in core.data_to_send():
        peer: Peer = handle
        peer.raw.append(data)
        for line in data.split(b"\r\n"):
            if line:
                peer.inbox.append(parse_message(line.decode()))
        if close:
            peer.closed = True
    for job in core.jobs_to_run():
        try:
            job.result = job.run()
        except Exception as exc:  # noqa: BLE001 - handed back as the job's error
            job.error = exc
        core.job_done(job, 0.0)
        pump(core)


def numerics(msgs: list[Message]) -> list[str]:
    return [m.command for m in msgs]


def only(msgs: list[Message], command: str) -> list[Message]:
    return [m for m in msgs if m.command == command]


def one(msgs: list[Message], command: str) -> Message:
    found = only(msgs, command)
    assert len(found) == 1, msgs
    return found[0]
