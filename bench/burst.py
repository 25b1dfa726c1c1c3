"""JOIN burst and SIGTERM at many clients: does the server stay responsive?

Starts relaychat (``--engine loop|threads``) on a free port, registers N clients
(default 10,000) from one process (non-blocking sockets, one selector), then
every client sends ``JOIN`` at once: to a channel of its own (``--mode own``)
or all to one channel (``--mode shared``: every member sees every JOIN, so the
output grows as N squared). A probe client measures PING round trips all along.
Reported: registrations/s, how long the burst took to drain (every client saw
its 366), the probe's worst and median PING round trip during the burst, and
how long the server took to exit after SIGTERM.

Numbers, not a test: ``python bench/burst.py --engine threads --clients 10000``.
Needs about 2 file descriptors per client across the two processes (the open
file limit is raised to the hard limit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[server]
log_level = "WARNING"

[limits]
flood_rate = 0.0
max_connections = 1000000
max_connections_per_ip = 0
chanlimit = 10
ping_interval = 3600.0
registration_timeout = 600.0
"""


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Client:
    __slots__ = ("sock", "buf", "registered", "joined", "out")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.registered = False
        self.joined = False
        self.out = b""


def pump(sel: selectors.BaseSelector, timeout: float, on_line: object) -> None:
    for key, mask in sel.select(timeout):
        c: Client = key.data
        if mask & selectors.EVENT_WRITE and c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                n = 0
            c.out = c.out[n:]
            if not c.out:
                sel.modify(c.sock, selectors.EVENT_READ, c)
        if mask & selectors.EVENT_READ:
            try:
                data = c.sock.recv(1 << 16)
            except (BlockingIOError, ConnectionResetError):
                continue
            if not data:
                sel.unregister(c.sock)
                continue
            c.buf += data
            if b"\n" in c.buf:
                *lines, c.buf = c.buf.split(b"\n")
                for line in lines:
                    on_line(c, line)  # type: ignore[operator]


def send(sel: selectors.BaseSelector, c: Client, data: bytes) -> None:
    c.out += data
    sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)


def probe_rtt(probe: socket.socket) -> float:
    start = time.monotonic()
    probe.sendall(b"PING probe\r\n")
    buf = b""
    while b"PONG" not in buf:
        data = probe.recv(65536)
        if not data:
            raise RuntimeError("probe disconnected")
        buf += data
    return time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="threads", choices=("loop", "threads"))
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--mode", default="own", choices=("own", "shared"))
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    limit = raise_nofile()
    if limit < args.clients + 100:
        print(f"open file limit {limit} is too low for {args.clients} clients", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "burst.toml"
        conf.write_text(CONFIG)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])
        )
        argv = [sys.executable, "-m", "relaychat", "serve", "--config", str(conf)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--engine", args.engine]
        with open(Path(tmp) / "server.log", "wb") as log:
            # a file, not a pipe: a pipe nobody reads could fill up and stall the server
            proc = subprocess.Popen(argv, env=env, stderr=log)
            try:
                code = run(args, port, proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        if code:
            sys.stderr.write((Path(tmp) / "server.log").read_text()[-2000:])
        return code


def run(args: argparse.Namespace, port: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while True:
        try:
            probe = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                print("server did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
    probe.sendall(b"NICK probe\r\nUSER p 0 * :p\r\n")
    buf = b""
    while b" 376 " not in buf and b" 422 " not in buf:
        buf += probe.recv(65536)
    sel = selectors.DefaultSelector()
    clients: list[Client] = []
    counts = {"registered": 0, "joined": 0}

    def on_line(c: Client, line: bytes) -> None:
        parts = line.split(b" ", 3)
        if len(parts) < 2:
            return
        code = parts[1]
        if code == b"001" and not c.registered:
            c.registered = True
            counts["registered"] += 1
        elif code == b"366" and not c.joined:
            c.joined = True
            counts["joined"] += 1

    t0 = time.monotonic()
    for i in range(args.clients):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        c = Client(s)
        clients.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        send(sel, c, f"NICK c{i}\r\nUSER c 0 * :c\r\n".encode())
        if i % 200 == 199:
            pump(sel, 0, on_line)
    end = time.monotonic() + args.timeout
    while counts["registered"] < args.clients and time.monotonic() < end:
        pump(sel, 0.1, on_line)
    reg_time = time.monotonic() - t0
    for i, c in enumerate(clients):
        chan = f"#c{i}" if args.mode == "own" else "#shared"
        send(sel, c, f"JOIN {chan}\r\n".encode())
    t1 = time.monotonic()
    rtts: list[float] = []
    last_probe = 0.0
    while counts["joined"] < args.clients and time.monotonic() < end:
        pump(sel, 0.02, on_line)
        if time.monotonic() - last_probe > 0.2:
            rtts.append(probe_rtt(probe))
            last_probe = time.monotonic()
    burst = time.monotonic() - t1
    rtts.append(probe_rtt(probe))
    t2 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
    exit_time = time.monotonic() - t2
    rtts.sort()
    result = {
        "engine": args.engine,
        "clients": args.clients,
        "mode": args.mode,
        "registered": counts["registered"],
        "registrations_per_s": round(counts["registered"] / reg_time, 1),
        "joined": counts["joined"],
        "burst_drain_s": round(burst, 3),
        "probe_ping_ms_median": round(rtts[len(rtts) // 2] * 1000, 1),
        "probe_ping_ms_max": round(rtts[-1] * 1000, 1),
        "sigterm_exit_s": round(exit_time, 3),
        "exit_code": code,
    }
    print(json.dumps(result))
    for c in clients:
        c.sock.close()
    probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
