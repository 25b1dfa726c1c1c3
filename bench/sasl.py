"""Connection registrations with SASL PLAIN per second, against plain
registrations (NICK/USER, no SASL) measured in the same run. A number, not a test.

    python bench/sasl.py [--accounts 200] [--plain 2000] [--in-flight 32] [--engine loop|threads]

Pre-creates ``--accounts`` accounts in a store file in a temporary directory
(one scrypt hash and one set of SCRAM keys, shared by all: this sets up, it
does not measure), starts ``relaychat serve`` on it (127.0.0.1, a free port),
then opens connections with at most ``--in-flight`` at once:

* plain: ``NICK`` / ``USER`` until ``001``;
* SASL: ``CAP LS 302`` / ``CAP REQ :sasl`` / ``NICK`` / ``USER`` / ``AUTHENTICATE
  PLAIN`` / the credentials / ``CAP END`` (after 903) until ``001``.

Each connection QUITs once it has ``001``. Printed: registrations/s (first
connect to last ``001``), time from connect to ``001`` p50/p99, the server's
CPU over each phase, the ratio SASL/plain, and what bounds the SASL rate: every
PLAIN login is one scrypt check (n=2**14, r=8: 16 MiB, about tens of ms) in the
server's ``hash`` pool of 2 concurrent checks, so the rate is at most
2 / (one check's time), and less when the machine has fewer free cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from relaychat.passwords import hash_password, verify_password  # noqa: E402
from relaychat.protocol.accounts import scram_credentials  # noqa: E402
from relaychat.protocol.storage import AccountRecord  # noqa: E402
from relaychat.store.sqlite import SQLiteStore  # noqa: E402

PASSWORD = "bench-password"
HASH_POOL = 2  # ServerCore's Ops({"hash": 2, ...})


def make_store(path: Path, accounts: int) -> None:
    pw_hash = hash_password(PASSWORD)
    scram = scram_credentials(PASSWORD, 4096)
    store = SQLiteStore(str(path))
    try:
        for i in range(accounts):
            name = f"acct{i}"
            assert store.create_account(AccountRecord(name, name, pw_hash, scram, time.time()))
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _read_until(reader: asyncio.StreamReader, commands: tuple[str, ...]) -> str:
    """Read lines until one whose command is in ``commands``; that command."""
    while True:
        raw = await reader.readline()
        if not raw:
            raise ConnectionError("closed by the server")
        words = raw.decode("utf-8", "replace").split()
        if words and words[0].startswith(":"):
            words = words[1:]
        if words and words[0] in commands:
            return words[0]


async def register(port: int, nick: str, account: str | None) -> float:
    """One connection's registration; the seconds from connect to 001."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if account is None:
            writer.write(f"NICK {nick}\r\nUSER {nick} 0 * :bench\r\n".encode())
        else:
            writer.write(
                f"CAP LS 302\r\nCAP REQ :sasl\r\nNICK {nick}\r\nUSER {nick} 0 * :bench\r\n"
                "AUTHENTICATE PLAIN\r\n".encode()
            )
            await _read_until(reader, ("AUTHENTICATE",))
            payload = base64.b64encode(f"\0{account}\0{PASSWORD}".encode()).decode()
            writer.write(f"AUTHENTICATE {payload}\r\n".encode())
            if await _read_until(reader, ("903", "904")) != "903":
                raise RuntimeError(f"SASL PLAIN as {account} failed")
            writer.write(b"CAP END\r\n")
        await writer.drain()
        await _read_until(reader, ("001",))
        elapsed = time.perf_counter() - start
        writer.write(b"QUIT :done\r\n")
        await writer.drain()
        return elapsed
    finally:
        writer.close()


async def phase(port: int, count: int, in_flight: int, sasl: bool) -> tuple[float, list[float]]:
    """``count`` registrations, at most ``in_flight`` at once: (seconds, latencies)."""
    limit = asyncio.Semaphore(in_flight)
    prefix = "s" if sasl else "p"

    async def one(i: int) -> float:
        async with limit:
            return await register(port, f"{prefix}{i}", f"acct{i}" if sasl else None)

    start = time.perf_counter()
    latencies = await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - start, sorted(latencies)


def pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def report(name: str, count: int, elapsed: float, lat: list[float], cpu: float) -> float:
    rate = count / elapsed
    print(
        f"{name:<6} {count:>6} registrations in {elapsed:6.2f} s: {rate:8.1f}/s;"
        f" connect to 001 p50 {pct(lat, 0.5) * 1000:7.1f} ms, p99 {pct(lat, 0.99) * 1000:7.1f} ms;"
        f" server CPU {cpu / elapsed * 100:5.1f}% of a core"
    )
    return rate


def scrypt_check_seconds() -> float:
    stored = hash_password(PASSWORD)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        verify_password(PASSWORD, stored)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--accounts", type=int, default=200, help="SASL registrations (1 per account)")
    ap.add_argument("--plain", type=int, default=2000, help="plain registrations (the baseline)")
    ap.add_argument("--in-flight", type=int, default=32, help="connections registering at once")
    ap.add_argument("--engine", choices=("loop", "threads"), default="loop")
    args = ap.parse_args()

    check = scrypt_check_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        make_store(db, args.accounts)
        print(f"{args.accounts} accounts created in {time.perf_counter() - t0:.1f} s ({db.name})")
        port = free_port()
        config = Path(tmp) / "bench.toml"
        config.write_text(
            f'[server]\nengine = "{args.engine}"\nlog_level = "WARNING"\n'
            f'[[listen]]\naddress = "127.0.0.1"\nport = {port}\n'
            "[limits]\nflood_rate = 0.0\nmax_connections_per_ip = 0\n"
            f'[store]\npath = "{db}"\n'
            '[accounts]\nnick_protection = "off"\n'
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "relaychat", "serve", "--config", str(config)], env=env
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("relaychat serve did not start") from None
                    time.sleep(0.05)  # polling a start-up under a deadline
            print(
                f"relaychat serve --engine {args.engine}, {args.in_flight} in flight, "
                f"{os.cpu_count()} CPUs"
            )
            rates = {}
            for name, count, sasl in (("plain", args.plain, False), ("sasl", args.accounts, True)):
                cpu0 = cpu_seconds(proc.pid)
                elapsed, lat = asyncio.run(phase(port, count, args.in_flight, sasl))
                rates[name] = report(name, count, elapsed, lat, cpu_seconds(proc.pid) - cpu0)
        finally:
            proc.terminate()
            proc.wait(10)
    bound = HASH_POOL / check
    print(f"ratio SASL PLAIN / plain: {rates['sasl'] / rates['plain']:.3f}")
    print(
        f"bound: one scrypt check (n=2**14, r=8) takes {check * 1000:.1f} ms here (one thread);"
        f" the hash pool runs {HASH_POOL} at once, so at most {bound:.0f} SASL logins/s"
        f" ({rates['sasl'] / bound * 100:.0f}% of that reached)"
    )


if __name__ == "__main__":
    main()
