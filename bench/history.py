"""History benchmarks: the writer's throughput and CHATHISTORY latency on a big database.

    python bench/history.py [--rows 1000000] [--queries 2000] [--seconds 5]

1. **Writer**: rows go to ``SQLiteStore.append_history`` the way the server's
   ``History`` sends them: one commit at a time, each carrying every row recorded
   while the previous one ran (a producer thread offers ``--rate`` rows/s, or as
   fast as it can). Prints rows persisted per second and the commit latency
   (p50/p99) a message waits before it may be relayed.
2. **Queries**: a database of ``--rows`` messages (one channel of 90%, the rest
   spread over 100 channels), then CHATHISTORY LATEST, BEFORE and AROUND at random
   points, limit 100: first as store calls (what the worker thread spends), then
   end to end over a socket against ``relaychat serve`` on that file (the time
   from sending the command to the end of its batch).

Everything runs in a temporary directory on 127.0.0.1; nothing is kept.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from relaychat.protocol.handlers.chathistory import query_rows  # noqa: E402
from relaychat.protocol.storage import HistoryRow  # noqa: E402
from relaychat.store.sqlite import SQLiteStore  # noqa: E402

CHANNEL = "#bench"
LINE = ":sender!~s@127.0.0.1 PRIVMSG #bench :" + "x" * 60


def msgid(seq: int, key: str = CHANNEL) -> str:
    return f"bench{key[1:]}{seq:x}"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


T0 = 1_700_000_000_000  # ms: the time of row 0


def rows_for(start: int, n: int, key: str = CHANNEL, t0: int = T0) -> list[HistoryRow]:
    return [
        HistoryRow(key, seq, msgid(seq, key), t0 + seq, False, LINE)
        for seq in range(start, start + n)
    ]


def bench_writer(path: str, seconds: float, synchronous: str, rate: int) -> None:
    """Rows offered at ``rate`` per second (0: as fast as one thread makes them), committed
    one group at a time as the server's History does."""
    store = SQLiteStore(path, synchronous=synchronous)
    pending: list[tuple[float, HistoryRow]] = []  # (when recorded, row)
    lock = threading.Lock()
    stop = threading.Event()

    def produce() -> None:  # the core: records rows as messages come
        seq = 0
        start = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            due = int((now - start) * rate) if rate else seq + 50
            if due <= seq:
                time.sleep(0.0005)
                continue
            batch = rows_for(seq + 1, due - seq)
            seq = due
            with lock:
                pending.extend((now, r) for r in batch)

    waits: list[float] = []  # recorded -> committed, per row (sampled)
    commits = 0
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < seconds:
        with lock:
            taken = pending[:]
            pending.clear()
        if not taken:
            time.sleep(0.0002)
            continue
        store.append_history([r for _, r in taken])
        end = time.perf_counter()
        waits.extend((end - t) * 1000 for t, _ in taken[:: max(1, len(taken) // 20)])
        commits += 1
        done += len(taken)
    elapsed = time.perf_counter() - start
    stop.set()
    producer.join()
    store.close()
    offered = f"{rate:,}/s offered" if rate else "unbounded"
    print(
        f"writer {synchronous:6} {offered:>17}: {done / elapsed:>9,.0f} rows/s persisted,"
        f" {commits / elapsed:5.0f} commits/s; row waits p50 {pct(waits, 0.5):5.1f} ms,"
        f" p99 {pct(waits, 0.99):6.1f} ms"
    )


def fill(path: str, total: int) -> int:
    store = SQLiteStore(path)
    t = time.perf_counter()
    main = int(total * 0.9)
    step = 20_000
    for start in range(1, main + 1, step):
        store.append_history(rows_for(start, min(step, main - start + 1)))
    rest = total - main
    for i in range(100):
        n = rest // 100
        store.append_history(rows_for(1, n, key=f"#other{i}"))
    store.close()
    print(f"filled {total:,} rows in {time.perf_counter() - t:.1f} s")
    return main


def bench_store_queries(path: str, main: int, queries: int) -> None:
    store = SQLiteStore(path)
    rng = random.Random(1)
    # what the server's worker thread runs for each subcommand (msgid lookup included)
    for name, call in (
        ("LATEST *", lambda s: query_rows(store, CHANNEL, "LATEST", [("*", "")], 100, False, None)),
        (
            "BEFORE msgid",
            lambda s: query_rows(store, CHANNEL, "BEFORE", [("msgid", msgid(s))], 100, False, None),
        ),
        (
            "BEFORE timestamp",
            lambda s: query_rows(store, CHANNEL, "BEFORE", [("time", T0 + s)], 100, False, None),
        ),
        (
            "AROUND msgid",
            lambda s: query_rows(store, CHANNEL, "AROUND", [("msgid", msgid(s))], 100, False, None),
        ),
    ):
        times = []
        for _ in range(queries):
            s = rng.randrange(200, main - 200)
            t = time.perf_counter()
            got = call(s)
            times.append((time.perf_counter() - t) * 1000)
            assert len(got) == 100, len(got)
        print(
            f"store {name:17} limit 100: p50 {pct(times, 0.5):.2f} ms,"
            f" p99 {pct(times, 0.99):.2f} ms"
        )
    store.close()


def bench_socket_queries(path: str, main: int, queries: int, engine: str) -> None:
    d = Path(path).parent
    conf = d / "bench.toml"
    conf.write_text(
        f'[server]\nlog_level = "WARNING"\n[limits]\nflood_rate = 0\n'
        f'[store]\npath = "{path}"\n[history]\nmax_lines = 0\nmax_age = 0\n'
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaychat", "serve", "--host", "127.0.0.1", "--port", str(port)]
        + ["--engine", engine, "--config", str(conf)],
        env=env,
        cwd=d,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        f = sock.makefile("rb")

        def send(line: str) -> None:
            sock.sendall(line.encode() + b"\r\n")

        def until(pred: object) -> None:
            while True:
                line = f.readline()
                if not line:
                    raise SystemExit("server closed the connection")
                if pred(line):  # type: ignore[operator]
                    return

        send("CAP REQ :batch server-time message-tags draft/chathistory")
        send("NICK reader")
        send("USER r 0 * :r")
        send("CAP END")
        until(lambda line: b" 376 " in line or b" 422 " in line)
        send(f"JOIN {CHANNEL}")
        until(lambda line: b" 366 " in line)
        rng = random.Random(2)
        for name, make in (
            ("LATEST *", lambda s: f"CHATHISTORY LATEST {CHANNEL} * 100"),
            (
                "BEFORE msgid",
                lambda s: f"CHATHISTORY BEFORE {CHANNEL} msgid={msgid(s)} 100",
            ),
            (
                "AROUND msgid",
                lambda s: f"CHATHISTORY AROUND {CHANNEL} msgid={msgid(s)} 100",
            ),
        ):
            times = []
            for _ in range(queries):
                s = rng.randrange(200, main - 200)
                t = time.perf_counter()
                send(make(s))
                got = [0]

                def end(line: bytes, got: list[int] = got) -> bool:
                    got[0] += b" PRIVMSG " in line
                    return line.startswith(b":") and b" BATCH -" in line

                until(end)
                times.append((time.perf_counter() - t) * 1000)
                assert got[0] == 100, (name, make(s), got[0])
            print(
                f"socket ({engine}) {name:12} limit 100: p50 {pct(times, 0.5):.2f} ms,"
                f" p99 {pct(times, 0.99):.2f} ms"
            )
        sock.close()
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0, help="writer run time")
    ap.add_argument("--engine", default="loop", choices=("loop", "threads"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="relaychat-bench-") as tmp:
        for sync in ("normal", "full"):
            for rate in (10_000, 20_000, 40_000, 80_000):
                name = os.path.join(tmp, f"writer-{sync}-{rate}.db")
                bench_writer(name, args.seconds, sync, rate)
        path = os.path.join(tmp, "big.db")
        main_rows = fill(path, args.rows)
        bench_store_queries(path, main_rows, args.queries)
        bench_socket_queries(path, main_rows, max(200, args.queries // 4), args.engine)


if __name__ == "__main__":
    main()
