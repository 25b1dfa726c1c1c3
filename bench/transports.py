"""What TLS and WebSocket cost: fan-out and registrations over each transport, in one run.

Theory of operation
-------------------
A *case* is (server, transport, scenario). Servers: relaychat's engines (``loop``, and
``threads`` if asked for) and InspIRCd (fan-out only: it completes registrations in a
once-per-second tick, so its registrations/s would measure that tick). Transports: ``tcp``,
``tls``, ``ws`` (WebSocket over plain HTTP) and ``wss`` (WebSocket over TLS); ``ws``/``wss`` only
where the server has WebSocket listeners (relaychat's ``[[listen]] websocket = true``; InspIRCd
is measured on ``tcp`` and ``tls``). Scenarios: ``fanout`` (compare.py's: 100 members of one
channel, 10 of them sending) and ``reg`` (compare.py's ``idle`` with ``--registrations``
clients, ``--pending`` at once: connect, TLS handshake, WebSocket upgrade, NICK/USER, 001).

Every case runs ``--runs`` times (default 3), each against a fresh server with one listener of
that transport on a free 127.0.0.1 port; the runs are interleaved (run 1 of every case, then
run 2...) so that a slow minute on a shared machine does not land on one case only. Reported:
the median of each number over the runs, the spread of the rate ((max - min) / median), and
the ratio of the median rate to the same server's plaintext TCP median *in this run*.

The load generator is compare.py's C one (bench/loadgen.c, built with OpenSSL): ``--transport
tls`` is OpenSSL on non-blocking sockets, ``ws``/``wss`` the IRCv3 WebSocket transport (one
masked frame per line, text.ircv3.net). The certificate is a self-signed P-256 pair written by
``relaychat gencert`` into the run's temporary directory, used by every server.

All traffic goes to 127.0.0.1; every phase is bounded in time, every server is stopped at the
end (also on Ctrl-C), raw results are saved as JSON under bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import compare  # bench/compare.py: server start/stop, the C load generator, CPU readings

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
TRANSPORTS = ("tcp", "tls", "ws", "wss")
WS_TRANSPORTS = ("ws", "wss")
SCENARIOS = ("fanout", "reg")
ENGINES = ("loop", "threads")

RELAYCHAT_LISTEN = """\
[[listen]]
address = "127.0.0.1"
port = {port}
"""


@dataclasses.dataclass(frozen=True)
class Case:
    server: str  # relaychat-loop, relaychat-threads, inspircd
    transport: str
    scenario: str

    @property
    def key(self) -> str:
        return f"{self.server}/{self.transport}/{self.scenario}"


def relaychat_env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
    return env


def relaychat_has_websocket(src: Path) -> bool:
    """Does this tree's relaychat have WebSocket listeners (``[[listen]] websocket``)?"""
    probe = (
        "import dataclasses, relaychat.config as c; "
        "print('websocket' in {f.name for f in dataclasses.fields(c.ListenConfig)})"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=relaychat_env(src),
        timeout=30,
    )
    return out.stdout.strip() == "True"


def relaychat_tls_backend(src: Path) -> str:
    """Which TLS library this tree's relaychat serves with (read from its source)."""
    text = ""
    for path in (src / "relaychat" / "server").glob("*.py"):
        text += path.read_text(errors="replace")
    return "pyOpenSSL" if "from OpenSSL" in text or "import OpenSSL" in text else "ssl module"


def write_certificate(directory: Path) -> tuple[Path, Path]:
    out = subprocess.run(
        [sys.executable, "-m", "relaychat", "gencert", "--out", str(directory)],
        capture_output=True,
        text=True,
        env=relaychat_env(ROOT / "src"),
        timeout=60,
    )
    cert, key = directory / "relaychat.crt", directory / "relaychat.key"
    if out.returncode != 0 or not cert.exists():
        raise SystemExit(f"relaychat gencert failed: {out.stderr.strip() or out.stdout.strip()}")
    key.chmod(0o644)  # InspIRCd (run as root here) and relaychat read the same pair
    return cert, key


def relaychat_server(name: str, src: Path, transport: str, cert: Path, key: str) -> compare.Server:
    """*name* is relaychat-ENGINE or relaychat-ENGINE@TREE (a tree from --also)."""
    engine = name.removeprefix("relaychat-").partition("@")[0]

    def prepare(d: Path, port: int) -> compare.Launch:
        listen = RELAYCHAT_LISTEN.format(port=port)
        if transport in ("tls", "wss"):
            listen += f'tls = true\ncert = "{cert}"\nkey = "{key}"\n'
        if transport in WS_TRANSPORTS:
            listen += "websocket = true\n"
        conf = d / "relaychat.toml"
        conf.write_text(compare.RELAYCHAT_TOML + listen)
        argv = [sys.executable, "-m", "relaychat", "serve", "--engine", engine]
        return compare.Launch([*argv, "--config", str(conf)], relaychat_env(src))

    base = compare.SERVERS[f"relaychat-{engine}"]
    return compare.Server(name, prepare, base.version)


INSPIRCD_TLS = """\
<module name="ssl_gnutls">
<sslprofile name="bench" provider="gnutls" certfile="{cert}" keyfile="{key}"
            hash="sha256" requestclientcert="no" priority="NORMAL">
"""


def inspircd_server(transport: str, cert: Path, key: Path) -> compare.Server:
    base = compare.SERVERS["inspircd"]

    def prepare(d: Path, port: int) -> compare.Launch:
        launch = base.prepare(d, port)
        if transport == "tls":
            conf = d / "inspircd.conf"
            text = conf.read_text()
            plain_bind = f'<bind address="127.0.0.1" port="{port}" type="clients">'
            assert plain_bind in text
            text = text.replace(
                plain_bind,
                f'<bind address="127.0.0.1" port="{port}" type="clients" sslprofile="bench">',
            )
            conf.write_text(text + INSPIRCD_TLS.format(cert=cert, key=key))
        return launch

    return compare.Server(base.name, prepare, base.version)


def run_loadgen(
    binary: Path, case: Case, pid: int, port: int, args: argparse.Namespace
) -> dict[str, Any]:
    scenario = "fanout" if case.scenario == "fanout" else "idle"
    argv = [
        str(binary),
        scenario,
        "--port",
        str(port),
        "--server-pid",
        str(pid),
        "--transport",
        case.transport,
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--clients",
        str(args.clients),
        "--senders",
        str(args.senders),
        "--window",
        str(args.window),
        "--idle",
        str(args.registrations),
        "--concurrency",
        str(args.pending),
        "--setup-timeout",
        str(args.setup_timeout),
        "--ws-path",
        args.ws_path,
        "--quickack",
    ]
    budget = args.setup_timeout + 30 + args.warmup + args.duration
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"error": f"load generator did not finish within {budget:.0f}s"}
    lines = out.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        return {"error": f"load generator exited with code {out.returncode}: {tail}"}
    return result


def plan(args: argparse.Namespace, has_ws: dict[str, bool]) -> tuple[list[Case], dict[str, str]]:
    """The cases to run, and why others were left out."""
    cases: list[Case] = []
    skipped: dict[str, str] = {}
    for tree in args.trees:
        for engine in args.engines:
            for transport in args.transports:
                for scenario in args.scenarios:
                    case = Case(f"relaychat-{engine}{tree}", transport, scenario)
                    if transport in WS_TRANSPORTS and not has_ws[tree]:
                        skipped[case.key] = "this relaychat has no WebSocket listeners"
                    else:
                        cases.append(case)
    if args.inspircd and "fanout" in args.scenarios:
        for transport in args.transports:
            if transport in ("tcp", "tls"):
                cases.append(Case("inspircd", transport, "fanout"))
    return cases, skipped


def busy_cores(seconds: float) -> float:
    """Cores the whole machine kept busy over the next *seconds* (from /proc/stat)."""

    def busy() -> float:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        user, nice, system, _idle, _iowait, irq, softirq, _steal = map(int, fields)
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

    t0, b0 = time.monotonic(), busy()
    time.sleep(seconds)
    return (busy() - b0) / (time.monotonic() - t0)


def wait_for_quiet(below: float, longest: float) -> float:
    """Between cases (no server running), wait until the rest of the machine uses fewer than
    *below* cores over a second, for at most *longest* seconds; return what it used last."""
    deadline = time.monotonic() + longest
    while True:
        used = busy_cores(1.0)
        if below <= 0 or used < below or time.monotonic() >= deadline:
            return used


def run_all(args: argparse.Namespace, binary: Path, cases: list[Case]) -> dict[str, list[Any]]:
    results: dict[str, list[Any]] = {c.key: [] for c in cases}
    broken: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="relaychat-transports-") as tmp:
        os.chmod(tmp, 0o755)
        cert, key = write_certificate(Path(tmp) / "certs")
        for run in range(args.runs):
            for case in cases:
                if case.key in broken:
                    results[case.key].append({"error": broken[case.key]})
                    continue
                if case.server == "inspircd":
                    server = inspircd_server(case.transport, cert, key)
                else:
                    tree = case.server[case.server.find("@") :] if "@" in case.server else ""
                    src = args.trees[tree]
                    server = relaychat_server(case.server, src, case.transport, cert, str(key))
                workdir = Path(tmp) / f"{case.key.replace('/', '-')}-{run}"
                workdir.mkdir()
                (workdir / "motd.txt").write_text("relaychat benchmark\n")
                busy = wait_for_quiet(args.quiet_below, args.quiet_wait)
                compare.progress(
                    f"[run {run + 1}/{args.runs}] {case.key} (others used {busy:.2f} cores) ..."
                )
                try:
                    with compare.running_server(server, workdir, args.start_timeout) as (
                        pid,
                        port,
                        _backlog,
                    ):
                        result = run_loadgen(binary, case, pid, port, args)
                except compare.ServerFailed as exc:
                    result = {"error": f"server {exc}"}
                    if isinstance(exc, compare.ServerDidNotStart):
                        broken[case.key] = result["error"]
                results[case.key].append(result)
                compare.progress(f"    {summary(result)}")
    return results


def summary(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"FAILED: {r['error']}"
    return (
        f"{r['rate']:,.0f}/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, server CPU "
        f"{r['server_cpu_s']:.2f}s, loadgen CPU {r['gen_cpu_s']:.2f}s over {r['wall_s']:.2f}s"
        + (f" ({r['tls']})" if r.get("tls") else "")
    )


# -- report -------------------------------------------------------------------------------------


def medians(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Median of each number over the runs that worked; None if none did."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return None
    m: dict[str, Any] = {"runs": len(ok), "of": len(runs)}
    for k in ("rate", "p50_ms", "p99_ms"):
        values = [r[k] for r in ok if r.get(k) is not None]
        m[k] = statistics.median(values) if values else None
    m["cpu_server"] = statistics.median(100 * r["server_cpu_s"] / r["wall_s"] for r in ok)
    m["cpu_gen"] = statistics.median(100 * r["gen_cpu_s"] / r["wall_s"] for r in ok)
    rates = [r["rate"] for r in ok]
    m["spread"] = (max(rates) - min(rates)) / m["rate"] if m["rate"] else 0.0
    m["other_cpu"] = statistics.median(r.get("other_cpu_s", 0.0) / r["wall_s"] for r in ok)
    m["tls"] = next((r["tls"] for r in ok if r.get("tls")), "")
    return m


def _num(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def build_tables(run: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    results: dict[str, list[Any]] = run["results"]
    med = {k: medians(v) for k, v in results.items()}
    tables = []
    for scenario in SCENARIOS:
        keys = [k for k in results if k.endswith("/" + scenario)]
        if not keys:
            continue
        if scenario == "fanout":
            title = (
                f"Fan-out over each transport: deliveries/s in one channel ({run['clients']} "
                f"members, {run['senders']} sending)"
            )
            unit = "deliveries/s"
        else:
            title = (
                f"Registrations over each transport: connect to 001 ({run['registrations']} "
                f"clients, {run['pending']} pending)"
            )
            unit = "registrations/s"
        headers = ["server", "transport", unit, "vs TCP", "spread", "p50 ms", "p99 ms"]
        headers += ["server CPU", "loadgen CPU"]
        has_insp = any(k.startswith("inspircd/") for k in keys)
        if has_insp:
            headers.append("vs InspIRCd")
        rows = []
        for key in keys:
            server, transport, _ = key.split("/")
            m = med[key]
            if m is None:
                err = next((r["error"] for r in results[key] if "error" in r), "?")
                rows.append([server, transport, "failed: " + err[:100]] + [""] * (len(headers) - 3))
                continue
            base = med.get(f"{server}/tcp/{scenario}")
            insp = med.get(f"inspircd/{transport}/{scenario}")
            mark = " (~)" if m["other_cpu"] >= 0.25 else ""
            row = [
                server,
                transport + (f" ({m['runs']}/{m['of']})" if m["runs"] < m["of"] else ""),
                _num(m["rate"]),
                f"{m['rate'] / base['rate']:.2f}x" if base and base["rate"] else "-",
                f"{100 * m['spread']:.0f}%",
                _num(m["p50_ms"], 2),
                _num(m["p99_ms"], 2),
                f"{m['cpu_server']:.0f}%{mark}",
                f"{m['cpu_gen']:.0f}%" + (" (!)" if m["cpu_gen"] >= 95 else ""),
            ]
            if has_insp:
                row.append(
                    f"{m['rate'] / insp['rate']:.2f}x"
                    if insp and insp["rate"] and not server.startswith("inspircd")
                    else "-"
                )
            rows.append(row)
        tables.append((title, headers, rows))
    return tables


TRANSPORT_TITLES = {"tcp": "TCP", "tls": "TLS", "ws": "WebSocket", "wss": "WebSocket + TLS"}


def _short_rate(rate: float) -> str:
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate:,.0f}"


def readme_table(run: dict[str, Any]) -> str:
    """One compact Markdown table for the README: a row per (server, scenario), a column per
    transport, each cell "rate (ratio to TCP), p99"."""
    results: dict[str, list[Any]] = run["results"]
    transports = [t for t in TRANSPORTS if any(k.split("/")[1] == t for k in results)]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for key, runs in results.items():
        server, transport, scenario = key.split("/")
        m, base = medians(runs), medians(results.get(f"{server}/tcp/{scenario}", []))
        cell = "failed"
        if m is not None:
            ratio = f" ({m['rate'] / base['rate']:.2f}x)" if base and base["rate"] else ""
            cell = f"{_short_rate(m['rate'])}{ratio}, p99 {_num(m['p99_ms'], 0)} ms"
        rows.setdefault((server, scenario), {})[transport] = cell
    what = {"fanout": "fan-out deliveries/s", "reg": "registrations/s"}
    out = [
        "| server, scenario | " + " | ".join(TRANSPORT_TITLES[t] for t in transports) + " |",
        "|:--|" + "--:|" * len(transports),
    ]
    for (server, scenario), cells in rows.items():
        name = (
            server.replace("relaychat-", "relaychat `", 1) + "`"
            if "relaychat" in server
            else "InspIRCd"
        )
        out.append(
            f"| {name}, {what[scenario]} | "
            + " | ".join(cells.get(t, "-") for t in transports)
            + " |"
        )
    return "\n".join(out)


def report(run: dict[str, Any], md: bool) -> str:
    also = "".join(
        f"; relaychat@{name}: {src} (TLS: {run['tls_backends'].get(name, '?')})"
        for name, src in run.get("also", {}).items()
    )
    out = [
        ("_" if md else "")
        + f"{run['date']}, {run['machine']}, load average at start {run['load_average_at_start']}"
        f"; relaychat {run['relaychat_commit']} (TLS: {run['tls_backend']}{also}); load generator: "
        f"{run['loadgen']}, one process; medians of {run['runs']} runs, a fresh server each; "
        f"fan-out {run['warmup']:g} s warm-up + {run['duration']:g} s measured."
        + ("_" if md else ""),
        ("_" if md else "")
        + "Servers: "
        + "; ".join(f"{n}: {v}" for n, v in run["versions"].items())
        + ("_" if md else ""),
    ]
    for title, headers, rows in build_tables(run):
        out.append(("### " if md else "== ") + title + ("" if md else " =="))
        table = compare.markdown_table if md else _plain_table
        out.append(table(headers, rows))
    ciphers = sorted(
        {
            f"{k.split('/')[0]}: {m['tls']}"
            for k, v in run["results"].items()
            if (m := medians(v)) and m["tls"]
        }
    )
    notes = [
        "vs TCP: the median rate over the median rate of the same server over plaintext TCP, "
        "in this run; spread: (max - min) / median of the rate over the runs; p50/p99: "
        "fan-out send-to-receipt at 3 receivers, registrations connect() to 001; CPU: "
        "user+sys of the server process and of the load generator, as % of one core; "
        "(~): other processes used >= 25% of a core meanwhile; (!): the load generator used "
        ">= 95% of a core, so the rate is a lower bound for the server (on 2 cores, a TLS "
        "client's handshake costs about as much as the server's).",
        "TLS: a full handshake per connection (no session resumption), no certificate check "
        "in the load generator; negotiated: " + ("; ".join(ciphers) or "-") + ".",
    ]
    for name in run.get("also", {}):
        pairs = []
        for key, runs in run["results"].items():
            server, transport, scenario = key.split("/")
            if not server.endswith("@" + name):
                continue
            mine, theirs = (
                medians(runs),
                medians(
                    run["results"].get(f"{server.partition('@')[0]}/{transport}/{scenario}", [])
                ),
            )
            if mine and theirs and theirs["rate"]:
                pairs.append(
                    f"{server.partition('@')[0]} {transport} {scenario} "
                    f"{mine['rate'] / theirs['rate']:.2f}x"
                )
        if pairs:
            notes.append(f"@{name} over this tree, same run: " + ", ".join(pairs) + ".")
    by_reason: dict[str, list[str]] = {}
    for key, why in run.get("skipped", {}).items():
        server, transport, _ = key.split("/")
        if f"{server} {transport}" not in by_reason.setdefault(why, []):
            by_reason[why].append(f"{server} {transport}")
    notes += [f"not run ({why}): {', '.join(what)}." for why, what in by_reason.items()]
    out.append("\n".join(("- " if md else "* ") + n for n in notes))
    out.append(
        ("### " if md else "== ") + "For the README (medians; ratio to TCP)" + ("" if md else " ==")
    )
    out.append(readme_table(run))
    return "\n\n".join(out)


def _plain_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max([len(h)] + [len(r[i]) for r in rows if not r[2].startswith("failed")])
        for i, h in enumerate(headers)
    ]

    def fmt(row: list[str]) -> str:
        if row[2].startswith("failed"):
            return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}"
        return "  ".join(
            f"{c:<{w}}" if i < 2 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


# -- main ---------------------------------------------------------------------------------------


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--engines",
        type=compare._csv(ENGINES),
        default=["loop"],
        help="relaychat engines, comma-separated (default loop; loop,threads)",
    )
    ap.add_argument(
        "--transports",
        type=compare._csv(TRANSPORTS),
        default=list(TRANSPORTS),
        help="default tcp,tls,ws,wss (ws/wss where the server has them)",
    )
    ap.add_argument("--scenarios", type=compare._csv(SCENARIOS), default=list(SCENARIOS))
    ap.add_argument(
        "--no-inspircd",
        dest="inspircd",
        action="store_false",
        help="leave out InspIRCd (fan-out over tcp and tls)",
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per case (default 3; medians)")
    ap.add_argument("--duration", type=float, default=3.0, help="fan-out: measured seconds")
    ap.add_argument("--warmup", type=float, default=1.0, help="fan-out: seconds before measuring")
    ap.add_argument("--clients", type=int, default=100, help="fan-out: channel members")
    ap.add_argument("--senders", type=int, default=10, help="fan-out: members that send")
    ap.add_argument("--window", type=int, default=16, help="fan-out: messages in flight/sender")
    ap.add_argument(
        "--registrations",
        type=int,
        default=3000,
        help="reg: clients that connect and register (default 3000)",
    )
    ap.add_argument(
        "--pending",
        type=int,
        default=100,
        help="reg: registrations in progress at once (default 100)",
    )
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run relaychat from the source tree PATH (its src/), shown as "
        "relaychat-ENGINE@NAME, in the same run: e.g. the stdlib-ssl and pyOpenSSL TLS",
    )
    ap.add_argument("--ws-path", default="/", help="the WebSocket upgrade's path (default /)")
    ap.add_argument(
        "--quiet-below",
        type=float,
        default=0.3,
        help="before each case, wait until other processes use fewer cores than this over a "
        "second (default 0.3; 0: do not wait)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="... for at most this many seconds per case (default 20)",
    )
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--start-timeout", type=float, default=15.0)
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="save raw results here (default bench/results/transports-<time>.json)",
    )
    ap.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="print the report of a saved run instead of running",
    )
    args = ap.parse_args(argv)
    if args.from_json is not None:
        print(report(json.loads(args.from_json.read_text()), args.markdown))
        return 0
    if args.runs < 1 or args.registrations < 1 or args.pending < 1:
        ap.error("--runs, --registrations and --pending must be >= 1")

    signal.signal(signal.SIGTERM, _terminate)
    compare.raise_nofile_limit()
    binary, label = compare.build_c_loadgen()
    if binary is None or label.endswith("no TLS"):
        raise SystemExit(f"transports.py needs loadgen.c built with OpenSSL (libssl-dev): {label}")
    args.trees = {"": ROOT / "src"}
    for item in args.also:
        name, sep, path = item.partition("=")
        if not sep or not name.isidentifier() or not (Path(path) / "relaychat").is_dir():
            ap.error(f"--also {item!r}: want NAME=PATH, PATH a tree with relaychat/ in it")
        args.trees["@" + name] = Path(path).resolve()
    has_ws = {tree: relaychat_has_websocket(src) for tree, src in args.trees.items()}
    cases, skipped = plan(args, has_ws)
    servers = sorted({c.server for c in cases})
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
    ).stdout.strip()[:60]
    started = time.monotonic()
    run: dict[str, Any] = {
        "argv": sys.argv[1:],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": compare.machine_description(),
        "load_average_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "python": platform.python_version(),
        "loadgen": f"{label} + {compare._first_line(['openssl', 'version']).split(' (')[0]}",
        "relaychat_commit": commit or "?",
        "tls_backend": relaychat_tls_backend(ROOT / "src"),
        "also": {t[1:]: str(src) for t, src in args.trees.items() if t},
        "tls_backends": {t[1:]: relaychat_tls_backend(src) for t, src in args.trees.items() if t},
        "versions": {s: compare.SERVERS[s.partition("@")[0]].version() for s in servers},
        "skipped": skipped,
        **{k: getattr(args, k) for k in ("runs", "duration", "warmup", "clients", "senders")},
        **{k: getattr(args, k) for k in ("window", "registrations", "pending")},
    }
    for key, why in skipped.items():
        compare.progress(f"{key}: skipped: {why}")
    run["results"] = run_all(args, binary, cases)
    compare.progress(f"total time {time.monotonic() - started:.0f}s")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = args.json or BENCH_DIR / "results" / f"transports-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(run, indent=2))
    compare.progress(f"raw results: {json_path} (print again with --from-json)")
    print(report(run, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
