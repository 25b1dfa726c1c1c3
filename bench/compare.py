"""Run the same load scenarios against relaychat (both engines), InspIRCd, ngIRCd and miniircd.

Theory of operation
-------------------
For every (server, scenario) pair this script writes the server's config into a temporary
directory, starts a fresh server on a free 127.0.0.1 port (RLIMIT_NOFILE raised to the hard limit
in the child), waits until the port is in LISTEN state (read from /proc/net/tcp, so no probe
client is created), runs the load generator in a separate process and reads the JSON it
prints, then stops the server. Servers are always stopped in a ``finally`` (also on Ctrl-C or
SIGTERM). A server that fails to start is reported and skipped, not fatal.

The load generator is ``bench/loadgen.c``, compiled with gcc at start into a cache directory
(``$XDG_CACHE_HOME/relaychat-bench/``, default ``~/.cache/relaychat-bench/``), because the
Python one (``bench/loadgen.py``; ``--py-loadgen``, or when gcc is missing) needs about a core of
its own in the fan-out scenario and then limits the faster servers. Both take the same options
and print the same JSON.

All traffic goes to 127.0.0.1. Each phase is bounded in time (``--duration``, setup timeouts,
a subprocess timeout around the load generator) and in count (``--idle``).

The ``idle50k`` scenario (not in the default set) holds 50,000 clients (``--idle50k-clients``):
it needs an open-file limit above that for the server and for the load generator (this script
raises the hard limit when it may, i.e. as root, and otherwise says what to run), and its
clients connect from several loopback source addresses (127.0.0.2, 127.0.0.3, ...; all of
127.0.0.0/8 is loopback on Linux), because one source address has only the ephemeral port
range (``net.ipv4.ip_local_port_range``, about 28,000 ports) to connect to one server port from.
The servers still listen on 127.0.0.1 only.

Results are printed as plain tables (or Markdown with ``--markdown``), with ratios against
InspIRCd measured in the same run, and saved as JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LOADGEN_PY = BENCH_DIR / "loadgen.py"
LOADGEN_C = BENCH_DIR / "loadgen.c"
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra"]
TLS_LIBS = ["-lssl", "-lcrypto"]  # loadgen.c's tls/wss transports (libssl-dev)
REFERENCE = "inspircd"

# -- server definitions -------------------------------------------------------------------------

RELAYCHAT_TOML = """\
[server]
log_level = "WARNING"
[limits]
flood_rate = 0            # 0 disables flood control
max_connections_per_ip = 0  # 0 = unlimited
max_connections = 1000000   # the default, 20000, is below idle50k's 50,000
sendq = 16777216
"""
# The listening address and port are given on the command line (--host/--port), not here: the
# [server] section's host/port keys are being replaced by [[listen]] tables.

INSPIRCD_CONF = """\
<server name="bench.inspircd" description="bench" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" timeout="60" pingfreq="600"
         threshold="1000000" commandrate="1000000000" fakelag="no"
         hardsendq="16777216" softsendq="16777216" recvq="1048576"
         localmax="100000" globalmax="100000" limit="100000" maxconnwarn="no"
         maxchans="100" resolvehostnames="no" useident="no">
<files motd="{dir}/motd.txt">
<dns server="127.0.0.1" timeout="1">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes"
         pingwarning="15" splitwhois="no" exemptchanops="">
<security maxtargets="20" userstats="Pu" customversion="" flatlinks="no" hidesplits="no"
          hideulines="no" hidebans="no" hideserver="">
<performance quietbursts="yes" softlimit="100000" somaxconn="4096" netbuffersize="65536"
             clonesonconnect="no">
<channels users="100" opers="100">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="10" maxhost="64" maxquit="255"
        maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200">
"""

# loaded when --caps or --label asks for IRCv3 (so InspIRCd does the same work)
INSPIRCD_IRCV3 = "".join(
    f'<module name="{m}">\n'
    for m in (
        "cap",
        "ircv3",
        "ircv3_batch",
        "ircv3_ctctags",
        "ircv3_echomessage",
        "ircv3_labeledresponse",
        "ircv3_msgid",
        "ircv3_servertime",
    )
)
IRCV3_WANTED = False  # set from the command line

NGIRCD_CONF = """\
[Global]
	Name = bench.ngircd
	Info = bench
	AdminInfo1 = bench
	AdminInfo2 = bench
	AdminEMail = bench@localhost
	Listen = 127.0.0.1
	Ports = {port}
	MotdFile = {dir}/motd.txt
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxNickLength = 30
	# 0 disables penalty times (ngIRCd's flood control).
	MaxPenaltyTime = 0
	PingTimeout = 600
	IdleTimeout = 0
[Options]
	DNS = no
	Ident = no
	PAM = no
	# Every client gets user mode F ("relaxed flood protection").
	DefaultUserModes = F
"""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] | None = None


@dataclass(frozen=True)
class Server:
    name: str
    prepare: Callable[[Path, int], Launch]  # (config dir, port) -> how to start it
    version: Callable[[], str]
    idle_cap: int | None = None  # most idle clients this server can hold at all
    note: str = ""


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _find_binary(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin") or name


# relaychat variants: name suffix -> [history] settings (and the note that says so)
HISTORY_VARIANTS = {
    "": ("", ""),
    "-nohistory": ("enabled = false", "relaychat with [history] enabled = false."),
    "-writebehind": (
        "relay_after_commit = false",
        "relaychat with [history] relay_after_commit = false (history written behind the relay).",
    ),
}


def _relaychat(engine: str, variant: str = "") -> Server:
    history, note = HISTORY_VARIANTS[variant]

    def prepare(d: Path, port: int) -> Launch:
        conf = d / "relaychat.toml"
        # the store (and history in it) is a file in the run's directory
        conf.write_text(RELAYCHAT_TOML + (f"[history]\n{history}\n" if history else ""))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        argv = [
            sys.executable,
            "-m",
            "relaychat",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--engine",
            engine,
            "--config",
            str(conf),
        ]
        return Launch(argv, env)

    def version() -> str:
        try:
            import tomllib

            data = tomllib.loads((ROOT / "pyproject.toml").read_text())
            return (
                f"relaychat {data['project']['version']} ({platform.python_implementation()} "
                f"{platform.python_version()})"
            )
        except (OSError, KeyError, ValueError):
            return "relaychat"

    return Server(f"relaychat-{engine}{variant}", prepare, version, note=note)


def _inspircd() -> Server:
    binary = _find_binary("inspircd")

    def prepare(d: Path, port: int) -> Launch:
        conf = d / "inspircd.conf"
        conf.write_text(
            INSPIRCD_CONF.format(port=port, dir=d) + (INSPIRCD_IRCV3 if IRCV3_WANTED else "")
        )
        argv = [binary, "--config", str(conf), "--nofork", "--nopid", "--nolog"]
        if os.geteuid() == 0:
            argv.append("--runasroot")
        return Launch(argv)

    return Server(
        "inspircd",
        prepare,
        lambda: _first_line([binary, "--version"]),
        note="InspIRCd completes registrations in a once-per-second background "
        "tick, so its registrations/s is close to the number pending at once.",
    )


def _ngircd() -> Server:
    binary = _find_binary("ngircd")

    def prepare(d: Path, port: int) -> Launch:
        conf = d / "ngircd.conf"
        conf.write_text(NGIRCD_CONF.format(port=port, dir=d))
        return Launch([binary, "-n", "-f", str(conf)])

    return Server("ngircd", prepare, lambda: _first_line([binary, "--version"]).split("-", 1)[0])


def _miniircd_argv() -> list[str]:
    if importlib.util.find_spec("miniircd") is not None:
        return [
            sys.executable,
            "-c",
            "import sys, miniircd; sys.argv[0] = 'miniircd'; miniircd.main()",
        ]
    path = shutil.which("miniircd") or shutil.which(
        "miniircd", path=str(Path(sys.executable).parent)
    )
    return [path or "miniircd"]


def _miniircd() -> Server:
    def prepare(d: Path, port: int) -> Launch:
        argv = _miniircd_argv() + ["--listen", "127.0.0.1", "--ports", str(port)]
        if os.geteuid() == 0:
            argv += ["--setuid", "root"]  # miniircd refuses to run as root otherwise
        return Launch(argv)

    return Server(
        "miniircd",
        prepare,
        lambda: _first_line(_miniircd_argv() + ["--version"]),
        idle_cap=1000,
        note="miniircd uses select(), which cannot watch fds >= 1024 "
        "(FD_SETSIZE), so its idle tests are capped at 1000 clients.",
    )


SERVERS: dict[str, Server] = {
    s.name: s
    for s in (
        _relaychat("loop"),
        _relaychat("threads"),
        _inspircd(),
        _ngircd(),
        _miniircd(),
        *(_relaychat(e, v) for v in HISTORY_VARIANTS if v for e in ("loop", "threads")),
    )
}
# the history variants only when asked for (--servers relaychat-loop,relaychat-loop-nohistory)
DEFAULT_SERVERS = [
    name for name in SERVERS if not any(v and name.endswith(v) for v in HISTORY_VARIANTS)
]
SCENARIOS = ("fanout", "private", "idle", "idle50k")
# idle50k is left out of a default run: it needs open-file limits above 50,000 (see
# ensure_nofile()), a server that registers ~1000 clients/s needs over a minute for it, and
# ngIRCd, whose registrations slow down as clients accumulate, several.
DEFAULT_SCENARIOS = ("fanout", "private", "idle")
NOFILE_WANTED = 110_000  # the hard limit idle50k asks for when it must raise it
NOFILE_MARGIN = 1000  # descriptors besides the clients' (server: listeners, logs; loadgen: epoll)

# -- processes ----------------------------------------------------------------------------------


def raise_nofile_limit() -> None:
    """Soft RLIMIT_NOFILE := hard limit (also used as the servers' preexec_fn)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ensure_nofile(clients: int) -> str | None:
    """Make the open-file limit of this process, and so of the servers and load generators it
    starts, big enough for *clients* connections; return why not when that cannot be done.

    The soft limit is raised to the hard one; a hard limit below what is needed is raised to
    max(needed, NOFILE_WANTED), which only root (CAP_SYS_RESOURCE) may do, up to fs.nr_open.
    """
    need = clients + NOFILE_MARGIN
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        target = max(need, NOFILE_WANTED)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        except (ValueError, OSError) as exc:
            nr_open = _read_int("/proc/sys/fs/nr_open")
            hint = (
                f"; first raise fs.nr_open (now {nr_open}): sysctl -w fs.nr_open={target}"
                if nr_open is not None and nr_open < target
                else ""
            )
            return (
                f"open-file hard limit (ulimit -Hn) is {hard}, {clients} clients need {need} "
                f"in the server and in the load generator, and raising it failed ({exc}): as "
                f"root, run `prlimit --pid $$ --nofile={target}:{target}` (or `ulimit -n "
                f"{target}`) in the shell that then starts compare.py{hint}; or use fewer "
                "clients (--idle50k-clients)"
            )
        progress(f"note: raised the open-file limit from {hard} to {target} for idle50k")
    raise_nofile_limit()
    return None


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def source_address_count(clients: int, wanted: int) -> int:
    """How many loopback source addresses idle50k's clients connect from: *wanted*, or more
    if fewer would use over 80% of the ephemeral port range (ip_local_port_range) each."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    per_address = max(1, int(0.8 * (high - low + 1)))
    return max(wanted, -(-clients // per_address))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Is a socket listening on 127.0.0.1:port (or 0.0.0.0:port)? Read from /proc/net/tcp."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/tcp") as f:
        next(f)
        return any(fields[1] in wanted and fields[3] == "0A" for fields in map(str.split, f))


def listen_backlog(port: int) -> int | None:
    """The listen backlog of the socket on *port*, from ``ss`` (Send-Q of a LISTEN socket)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
        return int(out.split()[2])
    except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
        return None


class ServerFailed(Exception):
    """The server under test misbehaved (exited, or never listened)."""


class ServerDidNotStart(ServerFailed):
    """Starting again will not help: skip the server's remaining scenarios."""


def _log_tail(path: Path, lines: int = 6) -> str:
    """The server log's last line (a traceback's exception), then the lines before it."""
    try:
        text = [t.strip() for t in path.read_text(errors="replace").splitlines() if t.strip()]
    except OSError:
        return ""
    if not text:
        return "(no output)"
    before = " | ".join(text[-lines:-1])
    return text[-1] + (f" (log: {before})" if before else "")


@contextlib.contextmanager
def running_server(
    server: Server, workdir: Path, timeout: float
) -> Iterator[tuple[int, int, int | None]]:
    """Start *server* in *workdir*; yield (pid, port, listen backlog); always stop it after."""
    port = free_port()
    launch = server.prepare(workdir, port)
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                launch.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=launch.env,
                preexec_fn=raise_nofile_limit,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerDidNotStart(f"cannot start {launch.argv[0]}: {exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while not listening(port):
            if proc.poll() is not None:
                raise ServerDidNotStart(
                    f"exited with code {proc.returncode} before listening: {_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise ServerDidNotStart(
                    f"not listening on port {port} after {timeout:.0f}s: {_log_tail(log_path)}"
                )
            time.sleep(0.05)
        yield proc.pid, port, listen_backlog(port)
        if proc.poll() is not None:
            raise ServerFailed(
                f"exited with code {proc.returncode} during the run: {_log_tail(log_path)}"
            )
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def build_c_loadgen() -> tuple[Path | None, str]:
    """Compile loadgen.c (cached by a hash of source, flags and compiler); (binary, label).

    Linked with OpenSSL (libssl-dev) for the tls/wss transports (bench/transports.py); where
    that build fails, built again with -DLOADGEN_NO_TLS (tcp and ws only). The binary is None,
    and the label says why, when gcc is missing or both builds fail.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        return None, "gcc not found"
    version = _first_line([gcc, "--version"])
    source = LOADGEN_C.read_bytes()
    label = f"C (loadgen.c, epoll), {version.split()[0]} {version.split()[-1]} {CFLAGS[0]}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "relaychat-bench"
    why = ""
    for flags, libs, note in (
        (CFLAGS, TLS_LIBS, ""),
        ([*CFLAGS, "-DLOADGEN_NO_TLS"], [], ", no TLS"),
    ):
        key = hashlib.sha256(source + " ".join([version, *flags, *libs]).encode()).hexdigest()
        binary = cache / f"loadgen-{key[:16]}"
        if binary.exists():
            return binary, label + note
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = binary.with_suffix(f".tmp{os.getpid()}")
            out = subprocess.run(
                [gcc, *flags, "-o", str(tmp), str(LOADGEN_C), *libs],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode != 0:
                tmp.unlink(missing_ok=True)
                why = "gcc failed: " + " | ".join(out.stderr.strip().splitlines()[:3])
                continue
            tmp.replace(binary)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"cannot build {LOADGEN_C.name}: {exc}"
        return binary, label + note
    return None, why


def python_loadgen_label(args: argparse.Namespace) -> str:
    loop = "asyncio" if args.no_uvloop or importlib.util.find_spec("uvloop") is None else "uvloop"
    return f"Python (loadgen.py, {loop}), {platform.python_version()}"


def run_loadgen(
    scenario: str, pid: int, port: int, args: argparse.Namespace, idle: int, pending: int
) -> dict[str, Any]:
    """Run the load generator once; *idle* is the idle/idle50k client count."""
    setup_timeout = args.idle50k_timeout if scenario == "idle50k" else args.setup_timeout
    command = [sys.executable, str(LOADGEN_PY)] if args.loadgen is None else [str(args.loadgen)]
    argv = [
        *command,
        scenario,
        "--port",
        str(port),
        "--server-pid",
        str(pid),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--window",
        str(args.window),
        "--clients",
        str(args.clients),
        "--senders",
        str(args.senders),
        "--pairs",
        str(args.pairs),
        "--idle",
        str(idle),
        "--concurrency",
        str(pending),
        "--setup-timeout",
        str(setup_timeout),
    ]
    if scenario == "idle50k":
        argv += ["--sources", str(args.idle50k_sources), "--hold", str(args.idle_hold)]
    if args.no_uvloop and args.loadgen is None:
        argv.append("--no-uvloop")
    if not args.no_quickack:
        argv.append("--quickack")
    if args.caps:
        argv += ["--caps", args.caps]
    if args.label:
        argv.append("--label")
    if scenario == "idle":
        phases = 0.0
    elif scenario == "idle50k":
        phases = args.idle_hold + 30  # the hold, then closing up to 50,000 sockets
    else:
        phases = args.warmup + args.duration
    budget = setup_timeout + 30 + phases
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


def run_all(args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="relaychat-bench-") as tmp:
        os.chmod(tmp, 0o755)  # ngIRCd drops root privileges
        for name in args.servers:
            server = SERVERS[name]
            results[name] = {}
            broken: str | None = None
            for scenario in args.scenarios:
                if broken is not None:
                    results[name][scenario] = {"error": broken}
                    continue
                workdir = Path(tmp) / f"{name}-{scenario}"
                workdir.mkdir()
                (workdir / "motd.txt").write_text("relaychat benchmark\n")
                idle = args.idle50k_clients if scenario == "idle50k" else args.idle
                if server.idle_cap is not None:
                    idle = min(idle, server.idle_cap)
                nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                if scenario == "idle50k" and idle + NOFILE_MARGIN > nofile:
                    why = args.nofile_error or f"open-file limit {nofile} < {idle + NOFILE_MARGIN}"
                    results[name][scenario] = {"error": why}
                    progress(f"[{name}] {scenario}: skipped: {why}")
                    continue
                progress(f"[{name}] {scenario} ...")
                try:
                    with running_server(server, workdir, args.start_timeout) as (
                        pid,
                        port,
                        backlog,
                    ):
                        # More connections pending than the listen backlog holds would be
                        # dropped SYNs and 1 s, 3 s, 7 s... retransmits: measure the server,
                        # not TCP's backoff.
                        pending = min(args.idle_concurrency, backlog or args.idle_concurrency)
                        result = run_loadgen(scenario, pid, port, args, idle, pending)
                except ServerFailed as exc:
                    result = {"error": f"server {exc}"}
                    if isinstance(exc, ServerDidNotStart):
                        broken = result["error"]
                results[name][scenario] = result
                progress(f"[{name}] {scenario}: {summary(scenario, result)}")
    return results


# -- output -------------------------------------------------------------------------------------


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def summary(scenario: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"FAILED: {r['error']}"
    if scenario == "idle":
        return (
            f"{r['rate']:.0f} registrations/s, {r['kib_per_client']:.1f} KiB/client "
            f"({r['clients']} clients)"
        )
    if scenario == "idle50k":
        return (
            f"{r['rate']:.0f} registrations/s, {r['kib_per_client']:.1f} KiB/client, "
            f"server CPU while idle {r['hold_server_cpu_pct']:.2f}% of a core over "
            f"{r['hold_s']:.1f}s, {r['hold_bytes_received']} bytes received meanwhile "
            f"({r['clients']} clients from {r['sources']} addresses, "
            f"loadgen CPU {r['hold_gen_cpu_s']:.2f}s, other processes {r['hold_other_cpu_s']:.2f}s)"
        )
    return (
        f"{r['rate']:.0f}/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
        f"server CPU {r['server_cpu_s']:.2f}s, loadgen CPU {r['gen_cpu_s']:.2f}s "
        f"over {r['wall_s']:.2f}s"
    )


def _ratio(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return "-"
    return f"{value / ref:.2f}x"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _pct(cpu_s: float, wall_s: float) -> str:
    return f"{100 * cpu_s / wall_s:.0f}%" if wall_s else "-"


def _disturbed_mark(r: dict[str, Any]) -> str:
    """Return " (~)" when other processes used a quarter of a core or more meanwhile."""
    return " (~)" if r.get("other_cpu_s", 0.0) >= 0.25 * r["wall_s"] else ""


def _hold_cpu(r: dict[str, Any]) -> str:
    """idle50k: the server's CPU while its clients were idle, as % of one core, marked (~) when
    other processes used a quarter of a core or more meanwhile."""
    pct = 100 * r["hold_server_cpu_s"] / r["hold_s"] if r["hold_s"] else 0.0
    mark = _disturbed_mark({"other_cpu_s": r["hold_other_cpu_s"], "wall_s": r["hold_s"]})
    return f"{pct:.2f}%{mark}"


def _gen_bound_mark(r: dict[str, Any]) -> str:
    """Return " (!)" when the load generator, not the server, was likely the bottleneck."""
    wall = r["wall_s"]
    gen_busy = r["gen_cpu_s"] >= 0.95 * wall
    return " (!)" if gen_busy and r["server_cpu_s"] < 0.9 * wall else ""


TableRows = list[list[str]]


def generator_name(results: dict[str, dict[str, dict[str, Any]]], scenario: str) -> str:
    """Which load generator produced a scenario's results, from their "loop" field."""
    loops = {
        str(per[scenario]["loop"]) for per in results.values() if "loop" in per.get(scenario, {})
    }
    return ", ".join(sorted("C" if "(C)" in loop else f"Python + {loop}" for loop in loops)) or "?"


def build_tables(
    results: dict[str, dict[str, dict[str, Any]]], scenarios: list[str]
) -> list[tuple[str, list[str], TableRows]]:
    ref = results.get(REFERENCE, {})
    tables: list[tuple[str, list[str], TableRows]] = []
    for scenario in scenarios:
        ref_r = ref.get(scenario, {})
        if "error" in ref_r:
            ref_r = {}
        rows: TableRows = []
        if scenario == "idle":
            title = "Idle clients: registrations and server memory"
            headers = [
                "server",
                "clients",
                "pending",
                "registrations/s",
                "vs InspIRCd",
                "KiB/client",
                "vs InspIRCd",
                "server CPU s",
                "loadgen CPU s",
            ]
        elif scenario == "idle50k":
            title = "Many idle clients: registrations, server memory and server CPU while idle"
            headers = [
                "server",
                "clients",
                "sources",
                "pending",
                "registrations/s",
                "vs InspIRCd",
                "KiB/client",
                "vs InspIRCd",
                "idle server CPU",
                "idle bytes in",
            ]
        else:
            title = (
                "Fan-out: deliveries/s in one channel"
                if scenario == "fanout"
                else "Private messages: messages/s between pairs"
            )
            headers = [
                "server",
                "deliveries/s" if scenario == "fanout" else "messages/s",
                "vs InspIRCd",
                "p50 ms",
                "p99 ms",
                "server CPU",
                "loadgen CPU",
            ]
        for name, per in results.items():
            r = per.get(scenario)
            if r is None:
                continue
            if "error" in r:
                rows.append([name, "failed: " + r["error"][:110]] + [""] * (len(headers) - 2))
            elif scenario == "idle50k":
                rows.append(
                    [
                        name,
                        str(r["clients"]),
                        str(r["sources"]),
                        str(r["concurrency"]),
                        _num(r["rate"]),
                        _ratio(r["rate"], ref_r.get("rate")),
                        _num(r["kib_per_client"], 1),
                        _ratio(r["kib_per_client"], ref_r.get("kib_per_client")),
                        _hold_cpu(r),
                        _num(r["hold_bytes_received"]),
                    ]
                )
            elif scenario == "idle":
                rows.append(
                    [
                        name,
                        str(r["clients"]),
                        str(r["concurrency"]),
                        _num(r["rate"]),
                        _ratio(r["rate"], ref_r.get("rate")),
                        _num(r["kib_per_client"], 1),
                        _ratio(r["kib_per_client"], ref_r.get("kib_per_client")),
                        _num(r["server_cpu_s"], 2) + _disturbed_mark(r),
                        _num(r["gen_cpu_s"], 2),
                    ]
                )
            else:
                rows.append(
                    [
                        name,
                        _num(r["rate"]),
                        _ratio(r["rate"], ref_r.get("rate")),
                        _num(r["p50_ms"], 2),
                        _num(r["p99_ms"], 2),
                        _pct(r["server_cpu_s"], r["wall_s"]) + _disturbed_mark(r),
                        _pct(r["gen_cpu_s"], r["wall_s"]) + _gen_bound_mark(r),
                    ]
                )
        tables.append(
            (f"{title} (load generator: {generator_name(results, scenario)})", headers, rows)
        )
    return tables


def plain_table(headers: list[str], rows: TableRows) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    # A "failed: ..." cell spans the row; do not let it widen its column.
    widths[1] = (
        max(len(headers[1]), *(len(r[1]) for r in rows if not r[1].startswith("failed")), 0)
        if rows
        else widths[1]
    )

    def fmt(row: list[str]) -> str:
        if row[1].startswith("failed"):
            return f"{row[0]:<{widths[0]}}  {row[1]}"
        cells = [f"{row[0]:<{widths[0]}}"] + [
            f"{c:>{w}}" for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), rule] + [fmt(r) for r in rows])


def markdown_table(headers: list[str], rows: TableRows) -> str:
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|",
    ]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def machine_description() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def describe_run(
    args: argparse.Namespace, versions: dict[str, str], loadgen: str
) -> dict[str, Any]:
    """Everything the report states besides the results (saved with them as JSON)."""
    params = (
        f"fan-out: {args.clients} clients, {args.senders} senders; private: {args.pairs} "
        f"pairs; window {args.window} messages per sender, 32-byte text; "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured; idle: {args.idle} "
        f"clients, at most min({args.idle_concurrency}, server's listen backlog) "
        "registrations pending at once"
    )
    if args.caps:
        params += f"; every client requests CAP {args.caps!r}"
    if args.label:
        params += "; every message labeled"
    if "idle50k" in args.scenarios:
        params += (
            f"; idle50k: {args.idle50k_clients} clients from {args.idle50k_sources} loopback "
            f"source addresses, pending as for idle, then {args.idle_hold:g} s idle, measured"
        )
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return {
        "argv": sys.argv[1:],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_description(),
        "load_average_at_start": load,
        "python": platform.python_version(),
        "loadgen": loadgen,
        "params": params,
        "scenarios": args.scenarios,
        "versions": versions,
    }


def report(run: dict[str, Any], md: bool) -> str:
    """The tables and notes for *run* (``describe_run()`` plus ``"results"``)."""
    results: dict[str, dict[str, dict[str, Any]]] = run["results"]
    loadgen = run.get("loadgen")
    if loadgen is None:  # saved before there was a C load generator
        loops = {str(r["loop"]) for per in results.values() for r in per.values() if "loop" in r}
        loadgen = f"Python {run['python']} + {', '.join(sorted(loops)) or '?'}"
    out: list[str] = []
    out.append(
        ("_" if md else "") + f"{run['date']}, {run['machine']}, load average at start "
        f"{run['load_average_at_start']}; load generator: {loadgen}, one process. "
        f"{run['params']}." + ("_" if md else "")
    )
    out.append(
        ("_" if md else "")
        + "Servers: "
        + "; ".join(f"{n}: {run['versions'].get(n, '?')}" for n in results)
        + ("_" if md else "")
    )
    for title, headers, rows in build_tables(results, run["scenarios"]):
        out.append(("### " if md else "== ") + title + ("" if md else " =="))
        out.append(markdown_table(headers, rows) if md else plain_table(headers, rows))
    notes = [
        "CPU columns: CPU time (user+sys) of the server process (all threads) and of the "
        "load generator, as a percentage of one core over the measured phase; a load "
        "generator near 100% means the numbers are a lower bound for the server; (!) marks "
        "runs where the generator was busy (>= 95%) and the server was not (< 90%); (~) marks "
        "runs during which other processes on the machine used >= 25% of a core (from "
        "/proc/stat), so the numbers were disturbed.",
        "Latency: send to receipt, measured inside the load generator (fan-out: at 3 "
        "receivers; private: at every 10th client). Clients that latency or flow control "
        "depend on set TCP_QUICKACK after every read (unless --no-quickack), so servers "
        "that leave Nagle's algorithm on (InspIRCd, ngIRCd) are not measured on 40 ms "
        "delayed-ACK stalls.",
        "Idle 'pending': registrations in progress at once, capped at the server's listen "
        "backlog so that no SYN is dropped (ngIRCd listens with 10, miniircd with 5).",
    ]
    if "idle50k" in run["scenarios"]:
        notes.append(
            "idle50k: registrations/s from the first connect to the last 001; KiB/client = "
            "(server VmRSS at the end of the idle period - VmRSS before connecting) / clients; "
            "idle server CPU = user+sys CPU time of the server over the idle period (after all "
            "registered and 0.5 s settled), as a percentage of one core, (~) when other "
            "processes used >= 25% of a core meanwhile; idle bytes in = bytes the clients "
            "received during it (PINGs, if any, answered). Clients connect round-robin from "
            "127.0.0.2, 127.0.0.3, ... ('sources'); the servers listen on 127.0.0.1."
        )
    notes += [f"{n}: {SERVERS[n].note}" for n in results if SERVERS[n].note]
    out.append("\n".join(("- " if md else "* ") + n for n in notes))
    return "\n\n".join(out)


# -- main ---------------------------------------------------------------------------------------


def _csv(choices: tuple[str, ...] | list[str]) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(choices)}"
            )
        return items

    return parse


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--servers",
        type=_csv(list(SERVERS)),
        default=DEFAULT_SERVERS,
        help="comma-separated, of " + ",".join(SERVERS) + "; default: " + ",".join(DEFAULT_SERVERS),
    )
    ap.add_argument(
        "--scenarios",
        type=_csv(SCENARIOS),
        default=list(DEFAULT_SCENARIOS),
        help="comma-separated, from "
        + ",".join(SCENARIOS)
        + "; default: "
        + ",".join(DEFAULT_SCENARIOS),
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=5.0,
        help="measured seconds per traffic scenario (default 5)",
    )
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections (default 10000)")
    ap.add_argument(
        "--idle-concurrency",
        type=int,
        default=1000,
        help="idle: registrations pending at once (default 1000)",
    )
    ap.add_argument(
        "--idle50k-clients",
        type=int,
        default=50000,
        help="idle50k: idle connections (default 50000)",
    )
    ap.add_argument(
        "--idle-hold",
        type=float,
        default=10.0,
        help="idle50k: measured seconds with every client registered and idle (default 10)",
    )
    ap.add_argument(
        "--idle50k-sources",
        type=int,
        default=4,
        help="idle50k: loopback source addresses, 127.0.0.2 and up (default 4; more if the "
        "ephemeral port range needs them)",
    )
    ap.add_argument(
        "--idle50k-timeout",
        type=float,
        default=600.0,
        help="idle50k: seconds allowed for all registrations (default 600: ngIRCd's "
        "registrations slow down as clients accumulate: about 4 minutes for 50,000, extrapolated)",
    )
    ap.add_argument("--clients", type=int, default=100, help="fan-out: channel members")
    ap.add_argument("--senders", type=int, default=10, help="fan-out: members that send")
    ap.add_argument("--pairs", type=int, default=50, help="private: client pairs")
    ap.add_argument("--window", type=int, default=16, help="messages in flight per sender")
    ap.add_argument(
        "--setup-timeout",
        type=float,
        default=60.0,
        help="seconds allowed for connecting/registering/joining",
    )
    ap.add_argument(
        "--start-timeout",
        type=float,
        default=15.0,
        help="seconds allowed for a server to start listening",
    )
    ap.add_argument(
        "--caps",
        default="",
        help="IRCv3 capabilities every client requests, e.g. 'server-time message-tags' "
        "(InspIRCd then loads its IRCv3 modules); C load generator only",
    )
    ap.add_argument(
        "--label",
        action="store_true",
        help="senders label every message (request 'batch labeled-response' in --caps); "
        "C load generator only",
    )
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="save raw results here (default: bench/results/compare-<time>.json)",
    )
    ap.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="print the report of a saved run instead of running",
    )
    ap.add_argument(
        "--no-quickack",
        action="store_true",
        help="do not set TCP_QUICKACK on the load generator's sockets",
    )
    ap.add_argument(
        "--no-uvloop",
        action="store_true",
        help="Python load generator on plain asyncio even if uvloop is importable",
    )
    ap.add_argument(
        "--py-loadgen",
        action="store_true",
        help="use the Python load generator (bench/loadgen.py) instead of the C one",
    )
    args = ap.parse_args(argv)
    global IRCV3_WANTED
    IRCV3_WANTED = bool(args.caps or args.label)
    if IRCV3_WANTED and args.py_loadgen:
        ap.error("--caps and --label need the C load generator")

    if args.from_json is not None:
        print(report(json.loads(args.from_json.read_text()), args.markdown))
        return 0

    if args.idle50k_clients < 1 or not 1 <= args.idle50k_sources <= 250 or args.idle_hold < 0:
        ap.error("--idle50k-clients must be >= 1, --idle50k-sources 1..250, --idle-hold >= 0")

    signal.signal(signal.SIGTERM, _terminate)
    raise_nofile_limit()
    args.nofile_error = None
    if "idle50k" in args.scenarios:
        args.nofile_error = ensure_nofile(args.idle50k_clients)
        if args.nofile_error:
            progress(f"note: idle50k cannot run: {args.nofile_error}")
        sources = source_address_count(args.idle50k_clients, args.idle50k_sources)
        if sources != args.idle50k_sources:
            progress(f"note: idle50k: {sources} source addresses (ip_local_port_range is small)")
            args.idle50k_sources = sources
    started = time.monotonic()
    args.loadgen = None  # the C load generator's binary, or None for loadgen.py
    label = python_loadgen_label(args)
    if not args.py_loadgen:
        args.loadgen, why = build_c_loadgen()
        if args.loadgen is None:
            progress(f"note: using the Python load generator, which may limit the results: {why}")
        else:
            label = why
    progress(f"load generator: {label}")
    run = describe_run(args, {name: SERVERS[name].version() for name in args.servers}, label)
    run["results"] = run_all(args)
    progress(f"total time {time.monotonic() - started:.0f}s")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = args.json or BENCH_DIR / "results" / f"compare-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(run, indent=2))
    progress(f"raw results: {json_path} (print again with --from-json)")
    print(report(run, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
