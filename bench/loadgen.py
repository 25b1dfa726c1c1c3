"""IRC load generator for bench/compare.py: one scenario against one server, JSON out.

Theory of operation
-------------------
One process, one asyncio event loop (uvloop when importable), one ``asyncio.Protocol`` per IRC
connection; no streams, no per-line objects on the hot path. ``compare.py`` runs this file as a
separate process per (server, scenario) and reads the one JSON object it prints on stdout.

Setup (connect, NICK/USER, wait for 001, JOIN, wait for 366) parses every line. In the measured
phase most connections only count ``b" PRIVMSG "`` in each received chunk (a C-speed scan); the
few that feed latency samples or flow-control credits split lines and read the 32-byte text,
which carries the sender id and a sequence number (``"SSSSS QQQQQQQQQ " + padding``). Send
times live in this process (``Run.sent_at[sender][seq]``), so latency is send-to-receipt on
one clock, and no timestamp needs to fit in the text.

Flow control: every sender keeps ``window`` messages in flight. A message leaves flight when its
credit receiver sees it (fan-out: receiver #0, a non-sender that parses lines; private: the
partner, by count); the sender then writes as many new messages as were credited, in one
``write()``.

TCP_QUICKACK (``--quickack``): the clients that flow control or latency depend on re-arm it
after every read, so that servers which leave Nagle's algorithm on (InspIRCd, ngIRCd) are not
measured on 40 ms delayed-ACK stalls. Count-only receivers skip it (nothing waits on them).

CPU time: the generator's own user+sys (``resource.getrusage``) and the server's
(``/proc/PID/stat`` utime+stime, all threads) are read at both ends of the measured phase, so
the reader can see which side was saturated.

Source addresses (``--sources K``, for idle50k): client i binds 127.0.0.(2 + i % K) before
connecting (with IP_BIND_ADDRESS_NO_PORT, so the port is picked at connect() time per 4-tuple),
because one source address has only the ephemeral port range (about 28,000) to connect from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Coroutine
from typing import Any, cast

CLK_TCK = os.sysconf("SC_CLK_TCK")
PRIVMSG = b" PRIVMSG "
PAD = b"x" * 16  # "%05d %09d " is 16 bytes; text is 32 bytes in all
CHANNEL = b"#bench"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2+


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def server_cpu(pid: int) -> float:
    """utime + stime of process *pid* (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name (field 2) may contain spaces; fields after it are space separated.
    fields = data[data.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> dict[str, float]:
    """Machine-wide CPU seconds by kind (user, system, softirq, steal...), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {n: int(v) / CLK_TCK for n, v in zip(names, fields[1:9], strict=True)}


def server_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile_ms(sorted_samples: list[float], q: float) -> float | None:
    if not sorted_samples:
        return None
    return sorted_samples[min(len(sorted_samples) - 1, int(q * len(sorted_samples)))] * 1000.0


class SetupError(Exception):
    """The server refused or broke registration/JOIN (a peer problem, reported, not a bug)."""


class Run:
    """State shared by all connections of one scenario run."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sending = False
        self.measuring = False
        self.quickack = False
        self.closing = False  # teardown: connection losses are expected
        self.sent_at: list[list[float]] = []
        self.senders: list[Client] = []
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.sources = 0  # > 0: client i connects from 127.0.0.(2 + i % sources)
        self.rbytes = 0  # bytes received, all connections

    def add_sender(self, client: Client, target: bytes) -> None:
        client.sid = len(self.senders)
        client.msg_prefix = b"PRIVMSG " + target + b" :"
        self.senders.append(client)
        self.sent_at.append([])


def _consume_exception(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


class Client(asyncio.Protocol):
    def __init__(self, run: Run, nick: str) -> None:
        self.run = run
        self.nick = nick.encode()
        self.order = int(nick[1:])  # clients are created as <letter><number>
        self.transport: asyncio.Transport | None = None
        self.sock: Any = None
        self.tail = b""
        self.received = 0  # PRIVMSG lines received, over the whole life of the connection
        self.parse = True  # split and read every line (setup; latency/credit receivers)
        self.record_latency = False
        self.credit_by_sender = False  # fan-out receiver #0: credit the sender named in the text
        self.credit_partner: Client | None = None  # private: credit the partner by count
        self.sid = -1
        self.msg_prefix = b""
        self.is_registered = False
        self.last_error = ""  # the server's ERROR line, if it sent one
        self.registered: asyncio.Future[None] = run.loop.create_future()
        self.joined: asyncio.Future[None] = run.loop.create_future()
        for fut in (self.registered, self.joined):
            # Failures are reported by whoever awaits; this only silences "never retrieved".
            fut.add_done_callback(_consume_exception)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self.sock = transport.get_extra_info("socket") if self.run.quickack else None
        n = self.nick
        self.transport.write(b"NICK " + n + b"\r\nUSER " + n + b" 0 * :" + n + b"\r\n")

    def data_received(self, data: bytes) -> None:
        self.run.rbytes += len(data)
        if self.sock is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if self.tail:
            data = self.tail + data
        end = data.rfind(b"\n") + 1
        if end != len(data):
            self.tail = data[end:]
            data = data[:end]
            if not data:
                return
        elif self.tail:
            self.tail = b""
        n = data.count(PRIVMSG)
        self.received += n
        if self.parse or b"PING" in data:
            self._parse_lines(data)
        if self.credit_partner is not None and n:
            self.credit_partner.send(n)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.run.closing:
            return
        why = f"{self.nick.decode()} lost: {exc or self.last_error or 'closed by server'}"
        for fut in (self.registered, self.joined):
            if not fut.done():
                fut.set_exception(SetupError(why))
        self.run.errors.append(why)

    # -- lines --------------------------------------------------------------------------------

    def _parse_lines(self, data: bytes) -> None:
        now = time.perf_counter()
        run = self.run
        credits: dict[int, int] | None = {} if self.credit_by_sender else None
        for line in data.split(b"\n"):
            if not line:
                continue
            if line.startswith(b"PING"):
                if self.transport is not None:
                    self.transport.write(b"PONG" + line[4:].rstrip(b"\r") + b"\r\n")
                continue
            if PRIVMSG in line:
                if self.record_latency or credits is not None:
                    text = line[line.rfind(b" :") + 2 :]
                    try:
                        sid = int(text[:5])
                        seq = int(text[6:15])
                    except ValueError:
                        continue  # not one of ours
                    if self.record_latency and run.measuring:
                        run.latencies.append(now - run.sent_at[sid][seq])
                    if credits is not None:
                        credits[sid] = credits.get(sid, 0) + 1
                continue
            self._setup_line(line.rstrip(b"\r"))
        if credits:
            senders = run.senders
            for sid, k in credits.items():
                senders[sid].send(k)

    def _setup_line(self, line: bytes) -> None:
        if line.startswith(b"ERROR"):
            self.last_error = line.decode(errors="replace")
            self._fail(self.last_error)
            return
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not line.startswith(b":"):
            return
        cmd = parts[1]
        if cmd == b"001":
            self.is_registered = True
            if not self.registered.done():
                self.registered.set_result(None)
        elif cmd == b"366":
            if not self.joined.done():
                self.joined.set_result(None)
        elif cmd == b"433" and not self.is_registered and len(self.nick) < 30 and self.transport:
            # Nickname in use (a leftover client?): try another, as IRC clients do.
            self.nick += b"_"
            self.transport.write(b"NICK " + self.nick + b"\r\n")
        elif cmd in (b"432", b"433", b"436", b"465", b"471", b"473", b"474", b"475"):
            self._fail(line.decode(errors="replace"))

    def _fail(self, why: str) -> None:
        for fut in (self.registered, self.joined):
            if not fut.done():
                fut.set_exception(SetupError(f"{self.nick.decode()}: {why}"))
                return
        self.run.errors.append(f"{self.nick.decode()}: {why}")

    # -- sending --------------------------------------------------------------------------------

    def send(self, k: int) -> None:
        """Write *k* new PRIVMSGs (to this sender's target) in one write."""
        run = self.run
        if not run.sending or self.transport is None:
            return
        times = run.sent_at[self.sid]
        seq0 = len(times)
        times.extend([time.perf_counter()] * k)
        prefix = self.msg_prefix
        sid = self.sid
        self.transport.write(
            b"".join(
                [
                    prefix + b"%05d %09d " % (sid, seq) + PAD + b"\r\n"
                    for seq in range(seq0, seq0 + k)
                ]
            )
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# -- helpers ----------------------------------------------------------------------------------


async def bounded(
    aw: Coroutine[Any, Any, None] | asyncio.Future[None], timeout: float, what: str
) -> None:
    try:
        await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise SetupError(f"timed out after {timeout:.0f}s waiting for {what}") from None


def source_address(run: Run, i: int) -> str:
    return f"127.0.0.{2 + i % run.sources}" if run.sources else "127.0.0.1"


async def connect(run: Run, nick: str, port: int) -> Client:
    if not run.sources:
        _, proto = await run.loop.create_connection(lambda: Client(run, nick), "127.0.0.1", port)
        assert isinstance(proto, Client)
        return proto
    src = source_address(run, int(nick[1:]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((src, 0))
        await run.loop.sock_connect(sock, ("127.0.0.1", port))
        _, proto = await run.loop.create_connection(lambda: Client(run, nick), sock=sock)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"connect from {src} to 127.0.0.1:{port}: {exc.strerror}"
        ) from None
    assert isinstance(proto, Client)
    return proto


async def connect_and_register(
    run: Run, nicks: list[str], port: int, concurrency: int, clients: list[Client]
) -> None:
    """Connect and register *nicks*, at most *concurrency* registrations pending at a time.

    Connected clients are appended to *clients* as they connect (so the caller can close them
    whatever happens).
    """
    sem = asyncio.Semaphore(concurrency)

    async def one(nick: str) -> None:
        async with sem:
            client = await connect(run, nick, port)
            clients.append(client)
            await client.registered

    tasks = [asyncio.ensure_future(one(n)) for n in nicks]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


class Phase:
    """Counters and CPU times sampled at both ends of a measured phase."""

    def __init__(self, pid: int, clients: list[Client]) -> None:
        self.pid = pid
        self.clients = clients
        self.t0 = time.perf_counter()
        self.cpu0 = own_cpu()
        self.srv0 = server_cpu(pid)
        self.machine0 = machine_cpu()
        self.recv0 = sum(c.received for c in clients)

    def end(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        gen, srv = own_cpu() - self.cpu0, server_cpu(self.pid) - self.srv0
        machine = {k: v - self.machine0[k] for k, v in machine_cpu().items()}
        return {
            "wall_s": wall,
            "received": sum(c.received for c in self.clients) - self.recv0,
            "gen_cpu_s": gen,
            "server_cpu_s": srv,
            "machine_cpu_s": machine,
            # CPU time used by everything but these two processes (about 0 on a quiet machine:
            # the softirq work of loopback traffic is mostly charged to the process it ran in).
            "other_cpu_s": sum(machine[k] for k in ("user", "nice", "system", "irq", "softirq"))
            - gen
            - srv,
        }


async def measure_traffic(
    run: Run, pid: int, clients: list[Client], warmup: float, duration: float, window: int
) -> dict[str, Any]:
    for c in clients:
        c.parse = c.record_latency or c.credit_by_sender
        if not c.parse and c.credit_partner is None:
            # Nobody waits on what this client receives (it only counts), so a delayed ACK
            # costs no throughput here; skip the setsockopt() per read.
            c.sock = None
    run.sending = True
    for s in run.senders:
        s.send(window)
    await asyncio.sleep(warmup)
    phase = Phase(pid, clients)
    run.measuring = True
    await asyncio.sleep(duration)
    run.measuring = False
    result: dict[str, Any] = phase.end()
    run.sending = False
    result["rate"] = result["received"] / result["wall_s"]
    lat = sorted(run.latencies)
    result["latency_samples"] = len(lat)
    result["p50_ms"] = percentile_ms(lat, 0.50)
    result["p99_ms"] = percentile_ms(lat, 0.99)
    result["messages_sent"] = sum(len(t) for t in run.sent_at)
    if run.errors:
        result["error"] = f"{len(run.errors)} error(s) during the run: " + "; ".join(run.errors[:3])
    return result


# -- scenarios --------------------------------------------------------------------------------


async def scenario_fanout(
    run: Run, args: argparse.Namespace, clients: list[Client]
) -> dict[str, Any]:
    n, nsend = args.clients, args.senders
    if not 0 < nsend < n:
        raise SystemExit("--senders must be between 1 and --clients - 1")
    await bounded(
        connect_and_register(
            run, [f"f{i}" for i in range(n)], args.port, args.concurrency, clients
        ),
        args.setup_timeout,
        "registration",
    )
    clients.sort(key=lambda c: c.order)
    # Join one at a time in a fixed order, so "first joined" means the same on every server.
    for c in clients:
        assert c.transport is not None
        c.transport.write(b"JOIN " + CHANNEL + b"\r\n")
        await bounded(c.joined, args.setup_timeout, f"JOIN of {c.nick.decode()}")
    step = n // nsend
    senders = [clients[i * step + step - 1] for i in range(nsend)]
    for s in senders:
        run.add_sender(s, CHANNEL)
    others = [c for c in clients if c.sid < 0]
    others[0].credit_by_sender = True
    for c in {others[0], others[len(others) // 2], others[-1]}:
        c.record_latency = True
    result = await measure_traffic(
        run, args.server_pid, clients, args.warmup, args.duration, args.window
    )
    result.update(clients=n, senders=nsend, window=args.window, latency_receivers=3)
    return result


async def scenario_private(
    run: Run, args: argparse.Namespace, clients: list[Client]
) -> dict[str, Any]:
    n = 2 * args.pairs
    await bounded(
        connect_and_register(
            run, [f"p{i}" for i in range(n)], args.port, args.concurrency, clients
        ),
        args.setup_timeout,
        "registration",
    )
    clients.sort(key=lambda c: c.order)
    for i in range(0, n, 2):
        a, b = clients[i], clients[i + 1]
        run.add_sender(a, b.nick)
        run.add_sender(b, a.nick)
        a.credit_partner, b.credit_partner = b, a
    for c in clients[::10]:
        c.record_latency = True
    result = await measure_traffic(
        run, args.server_pid, clients, args.warmup, args.duration, args.window
    )
    result.update(pairs=args.pairs, window=args.window, latency_receivers=len(clients[::10]))
    return result


async def scenario_idle(
    run: Run, args: argparse.Namespace, clients: list[Client]
) -> dict[str, Any]:
    """idle, idle50k: connect and register; idle50k then holds the clients idle for --hold
    seconds and reports the server's CPU time over that (hold_* keys)."""
    pid = args.server_pid
    hold = args.scenario == "idle50k"
    nofile = raise_nofile_limit()
    if hold and args.idle + 64 > nofile:
        return {
            "error": f"open-file limit (RLIMIT_NOFILE) is {nofile}, {args.idle} "
            f"clients need {args.idle + 64}: raise the hard limit (as root: prlimit --pid $$ "
            "--nofile=110000:110000)"
        }
    run.sources = args.sources
    rss0 = server_rss_kib(pid)
    phase = Phase(pid, clients)
    await bounded(
        connect_and_register(
            run, [f"i{i}" for i in range(args.idle)], args.port, args.concurrency, clients
        ),
        args.setup_timeout,
        f"{args.idle} registrations",
    )
    result = phase.end()
    await asyncio.sleep(args.settle)
    rss1 = rss_registered = server_rss_kib(pid)
    if hold:
        hold_phase = Phase(pid, clients)
        bytes0 = run.rbytes
        await asyncio.sleep(args.hold)  # PINGs, if any, are answered
        held = hold_phase.end()
        rss1 = server_rss_kib(pid)
    alive = sum(1 for c in clients if c.transport is not None)
    if alive < args.idle:
        errors = "; ".join(run.errors[:3])
        run.errors.clear()  # reported here
        return {"error": f"only {alive} of {args.idle} still connected: {errors}"}
    del result["received"]
    result.update(
        clients=args.idle,
        concurrency=args.concurrency,
        rate=args.idle / result["wall_s"],
        rss_before_kib=rss0,
        rss_after_kib=rss1,
        kib_per_client=(rss1 - rss0) / args.idle,
    )
    if hold:
        result.update(
            sources=run.sources,
            first_source=source_address(run, 0),
            rss_registered_kib=rss_registered,
            hold_s=held["wall_s"],
            hold_server_cpu_s=held["server_cpu_s"],
            hold_server_cpu_pct=100 * held["server_cpu_s"] / held["wall_s"],
            hold_gen_cpu_s=held["gen_cpu_s"],
            hold_other_cpu_s=held["other_cpu_s"],
            hold_bytes_received=run.rbytes - bytes0,
        )
    return result


SCENARIOS = {
    "fanout": scenario_fanout,
    "private": scenario_private,
    "idle": scenario_idle,
    "idle50k": scenario_idle,
}


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    clients: list[Client] = []
    run = Run()
    run.quickack = args.quickack
    try:
        result = await SCENARIOS[args.scenario](run, args, clients)
    except (SetupError, OSError) as exc:
        result = {
            "error": f"{type(exc).__name__}: {exc}",
            "connected": len(clients),
            "registered": sum(1 for c in clients if c.is_registered),
        }
        if run.errors:
            result["errors"] = run.errors[:5]
    finally:
        run.closing = True
        for c in clients:
            c.close()
        await asyncio.sleep(0)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument(
        "--server-pid",
        type=int,
        required=True,
        help="pid whose CPU time (/proc/PID/stat) and VmRSS are reported",
    )
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    ap.add_argument("--window", type=int, default=16, help="messages in flight per sender")
    ap.add_argument("--clients", type=int, default=100, help="fan-out: channel members")
    ap.add_argument("--senders", type=int, default=10, help="fan-out: members that send")
    ap.add_argument("--pairs", type=int, default=50, help="private: client pairs")
    ap.add_argument("--idle", type=int, default=10000, help="idle: connections")
    ap.add_argument("--concurrency", type=int, default=100, help="registrations pending at once")
    ap.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="idle: seconds between the last 001 and reading VmRSS",
    )
    ap.add_argument(
        "--sources",
        type=int,
        default=0,
        help="connect client i from 127.0.0.(2 + i %% SOURCES) (default 0: from 127.0.0.1)",
    )
    ap.add_argument(
        "--hold",
        type=float,
        default=10.0,
        help="idle50k: seconds the registered clients stay idle while the server's CPU is read",
    )
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--quickack", action="store_true", help="set TCP_QUICKACK after every read")
    args = ap.parse_args(argv)
    if not 0 <= args.sources <= 250 or args.hold < 0:
        ap.error("--sources must be between 0 and 250, --hold at least 0")

    nofile = raise_nofile_limit()
    result: dict[str, Any]
    try:
        if args.no_uvloop:
            raise ImportError
        import uvloop
    except ImportError:
        loop_name = "asyncio"
        result = asyncio.run(amain(args))
    else:
        loop_name = "uvloop"
        result = uvloop.run(amain(args))
    result.update(scenario=args.scenario, loop=loop_name, nofile=nofile)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
