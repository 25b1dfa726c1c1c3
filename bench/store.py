"""The SQLite store's writer: changes committed per second through group commit,
and the commit latency a caller waits (p50, p99), on a file in a temporary
directory. A number, not a test.

    python bench/store.py [--writers 64] [--changes 20000] [--synchronous normal|full]

Each writer thread registers accounts back to back (a precomputed hash: this
measures the store, not scrypt); the writer thread commits whatever is queued
as one transaction (``commit_rows`` / ``commit_ms``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from relaychat.protocol.storage import AccountRecord, ScramCredentials  # noqa: E402
from relaychat.store.sqlite import SQLiteStore  # noqa: E402

SCRAM = ScramCredentials(b"s" * 16, 4096, b"k" * 32, b"v" * 32)


def run(writers: int, changes: int, synchronous: str, commit_rows: int, commit_ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(
            str(Path(tmp) / "bench.db"),
            synchronous=synchronous,
            commit_rows=commit_rows,
            commit_ms=commit_ms,
        )
        per_writer = changes // writers
        latencies: list[list[float]] = [[] for _ in range(writers)]
        go = threading.Barrier(writers + 1)

        def writer(i: int) -> None:
            mine = latencies[i]
            go.wait()
            for n in range(per_writer):
                name = f"w{i}n{n}"
                start = time.perf_counter()
                store.create_account(AccountRecord(name, name, "scrypt$x", SCRAM, 0.0))
                mine.append(time.perf_counter() - start)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        go.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        store.close()
        flat = sorted(x for lat in latencies for x in lat)
        total = len(flat)
        p99 = flat[min(total - 1, int(total * 0.99))]
        print(
            f"synchronous={synchronous} writers={writers} commit_rows={commit_rows} "
            f"commit_ms={commit_ms:g}: {total} changes in {elapsed:.2f} s = "
            f"{total / elapsed:,.0f}/s in {store.commits} commits "
            f"({total / max(1, store.commits):.1f} per commit); "
            f"commit latency p50 {statistics.median(flat) * 1000:.2f} ms, "
            f"p99 {p99 * 1000:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    parser.add_argument("--commit-rows", type=int, default=100)
    parser.add_argument("--commit-ms", type=float, default=2.0)
    args = parser.parse_args()
    run(args.writers, args.changes, args.synchronous, args.commit_rows, args.commit_ms)


if __name__ == "__main__":
    main()
