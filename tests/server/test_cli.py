"""``relaychat serve`` as a real process, for both engines: signals, a taken port,
bad and sample configuration files, listeners, log formats, SIGHUP reload,
mkpasswd + OPER, DIE, a D-line kept across a restart.

Every process is killed and reaped at teardown, so no process or port is left behind.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ircutil import (
    STARTUP_TIMEOUT,
    RawClient,
    Server,
    child_cwd,
    child_env,
    wait_for,
)
from relaychat import __version__
from relaychat.cli import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "relaychat.example.toml"


def run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaychat", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=child_cwd(),
        timeout=timeout,
    )


LISTENING = re.compile(r"listening on (\S+) port (\d+)")


def listening_on(server: Server, count: int) -> list[tuple[str, int]]:
    """The first ``count`` addresses the server logged "listening on" for."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        found = [(h, int(p)) for h, p in LISTENING.findall(server.stderr())]
        if len(found) >= count:
            return found
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"not {count} listeners; stderr:\n{server.stderr()}")
        time.sleep(0.05)  # polling a condition under a deadline


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``launch(engine, *args)`` -> ``relaychat serve`` with the listeners of its
    config (no --host/--port); its ports are read from the log."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(engine: str, *extra: str) -> Server:
        err_path = tmp_path / f"launch-{len(procs)}.stderr"
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "relaychat", "serve", "--engine", engine, *extra],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=child_env(),
                cwd=child_cwd(),
            )
        procs.append(proc)
        return Server(proc, 0, err_path)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def motd_text(c: RawClient) -> list[str]:
    c.send("MOTD")
    lines: list[str] = []
    while True:
        msg = c.expect(lambda m: m.command in ("372", "376", "422"))
        if msg.command != "372":
            return lines
        lines.append(msg.params[-1])


# --------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_sends_error_to_clients_and_exits_0_within_2s(
    spawn: Callable[..., Server], engine: str, sig: signal.Signals
) -> None:
    server = spawn(engine)
    c = server.client("stayer")
    try:
        c.join("#bye")
        signalled = time.monotonic()
        server.proc.send_signal(sig)
        error = c.expect("ERROR", timeout=5)
        assert error.params == ["Server shutting down"]  # the reason, once
        c.wait_closed(timeout=5)
        code = server.exit_code_within(5)
        elapsed = time.monotonic() - signalled
        assert code == 0, server.stderr()
        assert elapsed < 2.0, f"exited {elapsed:.2f}s after {sig.name}"
        assert "Traceback" not in server.stderr()
    finally:
        c.close()


def test_port_in_use_is_one_clear_line_and_a_nonzero_exit(engine: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--host", "127.0.0.1", "--port", str(port), "--engine", engine)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


def test_a_taken_second_listener_is_named_and_nothing_stays_bound(
    engine: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "two.toml"
        conf.write_text(f"[[listen]]\nport = 0\n[[listen]]\nport = {port}\n")
        result = run_cli("serve", "--config", str(conf), "--engine", engine)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"relaychat: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_port_out_of_range_on_the_command_line_exits_2() -> None:
    result = run_cli("serve", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["relaychat: --port 70000: must be <= 65535"]


def test_version_flag_prints_the_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"relaychat {__version__}"


# ------------------------------------------------------------ configuration
def test_unknown_config_key_exits_2_naming_the_key_and_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[server]\nname = "irc.example.org"\ncolour = "blue"\n')
    result = run_cli("serve", "--config", str(conf), "--port", "0")
    assert result.returncode == 2
    assert "server.colour" in result.stderr
    assert str(conf) in result.stderr
    assert "Traceback" not in result.stderr


def test_out_of_range_value_exits_2_with_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "whowas.toml"
    conf.write_text("[limits]\nwhowas_size = -1\n")
    result = run_cli("serve", "--config", str(conf), "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"relaychat: {conf}: key 'limits.whowas_size' must be >= 0"
    ]


def test_old_host_key_exits_2_pointing_to_listen_tables(tmp_path: Path) -> None:
    conf = tmp_path / "old.toml"
    conf.write_text('[server]\nhost = "0.0.0.0"\nport = 6667\n')
    result = run_cli("serve", "--config", str(conf))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.host" in lines[0] and "[[listen]]" in lines[0]


def test_example_config_starts_and_serves(spawn: Callable[..., Server], engine: str) -> None:
    server = spawn(engine, "--config", str(EXAMPLE_CONFIG), "--log-level", "WARNING")
    c = server.client("sample")
    try:
        c.join("#sample")
        assert motd_text(c) == ["- Welcome to relaychat. Be kind; have fun."]
    finally:
        c.close()


def test_sighup_reloads_the_config_without_dropping_clients(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    conf = tmp_path / "relaychat.toml"
    conf.write_text('[server]\nmotd = "first words"\nlog_level = "WARNING"\n')
    server = spawn(engine, "--config", str(conf))
    c = server.client("keeper")
    try:
        c.join("#stay")
        assert motd_text(c) == ["- first words"]
        conf.write_text('[server]\nmotd = "second words"\nlog_level = "WARNING"\n')
        server.proc.send_signal(signal.SIGHUP)
        seen: list[list[str]] = []
        wait_for(lambda: seen.append(motd_text(c)) or seen[-1] == ["- second words"], what="reload")
        assert all(t in (["- first words"], ["- second words"]) for t in seen), seen
        assert not c.closed
        assert server.proc.poll() is None
        c.send("NAMES #stay")
        names = c.expect("353")
        assert "keeper" in names.params[-1].replace("@", "").split()
    finally:
        c.close()


def test_sighup_that_disables_a_capability_sends_cap_del_then_new(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    """cap-notify over a real reload: a client that negotiated with CAP LS 302
    hears CAP DEL when the file disables a capability, CAP NEW when it comes back;
    the capability stops working for it in between."""
    conf = tmp_path / "relaychat.toml"
    base = '[server]\nlog_level = "WARNING"\n'
    conf.write_text(base)
    server = spawn(engine, "--config", str(conf))
    c = server.client("notified", caps=("echo-message",))
    try:
        conf.write_text(base + 'disabled_caps = ["echo-message"]\n')
        server.proc.send_signal(signal.SIGHUP)
        gone = c.expect(lambda m: m.command == "CAP")
        assert gone.params[1:] == ["DEL", "echo-message"]
        c.send("PRIVMSG notified :to me")
        assert [m.command for m in c.sync()] == ["PRIVMSG"]  # delivered once: no echo now
        conf.write_text(base)
        server.proc.send_signal(signal.SIGHUP)
        back = c.expect(lambda m: m.command == "CAP")
        assert back.params[1:] == ["NEW", "echo-message"]
    finally:
        c.close()


def test_a_broken_file_on_sighup_changes_nothing(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    conf = tmp_path / "relaychat.toml"
    conf.write_text('[server]\nmotd = "first words"\nlog_level = "WARNING"\n')
    server = spawn(engine, "--config", str(conf))
    c = server.client("keeper")
    try:
        # the MOTD is valid, whowas_size is not: neither may be applied
        conf.write_text(
            '[server]\nmotd = "second words"\nlog_level = "WARNING"\n[limits]\nwhowas_size = -1\n'
        )
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "REHASH failed" in server.stderr(), what="REHASH failed in the log")
        assert "limits.whowas_size" in server.stderr()
        assert motd_text(c) == ["- first words"]
        c.send("WHOWAS nobody")
        c.expect("369")
        assert server.proc.poll() is None
        assert "Traceback" not in server.stderr()
    finally:
        c.close()


# ------------------------------------------------------------------ listeners
def test_two_listeners_both_serve_irc(
    launch: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    conf = tmp_path / "two.toml"
    conf.write_text("[[listen]]\nport = 0\n[[listen]]\naddress = '127.0.0.1'\nport = 0\n")
    server = launch(engine, "--config", str(conf))
    (host1, port1), (host2, port2) = listening_on(server, 2)
    assert host1 == host2 == "127.0.0.1" and port1 != port2
    assert f"configuration: {conf}" in server.stderr()
    one, two = RawClient(port1), RawClient(port2)
    try:
        one.register("first")
        two.register("second")
        one.send("PRIVMSG second :across listeners")
        assert two.expect("PRIVMSG").params == ["second", "across listeners"]
    finally:
        one.close()
        two.close()


def test_ipv6_wildcard_listener_serves_ipv4_and_ipv6_clients(
    launch: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    conf = tmp_path / "v6.toml"
    conf.write_text("[[listen]]\naddress = '::'\nport = 0\n")
    server = launch(engine, "--config", str(conf))
    [(host, port)] = listening_on(server, 1)
    assert host == "::"
    v4, v6 = RawClient(port, host="127.0.0.1"), RawClient(port, host="::1")
    try:
        v4.register("four")
        v6.register("six")
        v4.send("PRIVMSG six :hello")
        msg = v6.expect("PRIVMSG")
        assert msg.params == ["six", "hello"]
        assert msg.source is not None and msg.source.endswith("@127.0.0.1")  # not ::ffff:
    finally:
        v4.close()
        v6.close()


def test_port_flag_replaces_the_listeners_keeping_the_first_address(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    conf = tmp_path / "two.toml"
    conf.write_text("[[listen]]\naddress = '0.0.0.0'\nport = 0\n[[listen]]\nport = 0\n")
    server = spawn(engine, "--config", str(conf), host=None)
    assert listening_on(server, 1) == [("0.0.0.0", server.port)]
    c = server.client("only")  # served on 127.0.0.1 through the wildcard
    c.close()
    assert len(LISTENING.findall(server.stderr())) == 1


def test_loopback_is_exempt_from_the_per_ip_limit_by_default(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    conf = tmp_path / "per-ip.toml"
    conf.write_text('[server]\nlog_level = "WARNING"\n[limits]\nmax_connections_per_ip = 2\n')
    server = spawn(engine, "--config", str(conf))
    clients = [server.client(f"local{i}") for i in range(4)]  # twice the limit
    try:
        assert not any(c.closed for c in clients)
    finally:
        for c in clients:
            c.close()


# ---------------------------------------------------------------- log format
def test_json_log_format_writes_one_object_per_line(
    launch: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    conf = tmp_path / "json.toml"
    conf.write_text("[[listen]]\nport = 0\n")
    server = launch(engine, "--config", str(conf), "--log-format", "json")
    [(_, port)] = listening_on(server, 1)
    server.proc.send_signal(signal.SIGTERM)
    assert server.exit_code_within(5) == 0
    records = [json.loads(line) for line in server.stderr().splitlines()]
    assert records and all(
        {"time", "level", "logger", "message"} <= set(r) and r["time"].endswith("+00:00")
        for r in records
    )
    messages = [r["message"] for r in records]
    assert f"configuration: {conf}" in messages
    assert any(m.startswith(f"listening on 127.0.0.1 port {port} ") for m in messages)
    assert any(m.startswith("stopped") for m in messages)


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord(
        "relaychat.core", logging.ERROR, __file__, 1, "lost %s", ("x",), None
    )
    record.conn_id = 7
    record.peer = ("127.0.0.1", 5000)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "lost x" and entry["level"] == "ERROR"
    assert entry["logger"] == "relaychat.core"
    assert entry["conn_id"] == 7 and entry["peer"] == ["127.0.0.1", 5000]
    assert "ValueError: boom" in entry["exc_info"]
    assert "args" not in entry and "msg" not in entry


# ------------------------------------------------------------ opers and DIE
def test_mkpasswd_hash_is_an_oper_password_and_die_stops_the_server(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    made = run_cli("mkpasswd", "secret")
    assert made.returncode == 0, made.stderr
    hashed = made.stdout.strip()
    assert hashed and "secret" not in hashed
    conf = tmp_path / "opers.toml"
    conf.write_text(
        f'[server]\nlog_level = "WARNING"\n\n[opers.admin]\npassword = "{hashed}"\n'
        'host = "*@127.0.0.1"\n'
    )
    server = spawn(engine, "--config", str(conf))
    c = server.client("boss")
    bystander = server.client("bystander")
    try:
        c.send("DIE")
        c.expect("481")  # not an operator yet
        c.send("OPER admin wrong")
        c.expect("464")
        c.send("OPER nobody secret")
        c.expect("464")
        c.send("OPER admin secret")
        c.expect("381")
        assert server.proc.poll() is None

        c.send("DIE :maintenance")
        assert "maintenance" in bystander.expect("ERROR", timeout=5).params[-1]
        c.expect("ERROR", timeout=5)
        assert server.exit_code_within(5) == 0, server.stderr()
        assert "Traceback" not in server.stderr()
    finally:
        c.close()
        bystander.close()


# ------------------------------------------------------------ server bans
def test_a_dline_survives_a_restart_with_the_same_store_file(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    made = run_cli("mkpasswd", "secret")
    assert made.returncode == 0, made.stderr
    db = tmp_path / "bans.db"
    conf = tmp_path / "bans.toml"
    conf.write_text(
        f'[server]\nlog_level = "WARNING"\n\n[opers.admin]\npassword = "{made.stdout.strip()}"\n'
        f'host = "*@127.0.0.1"\n\n[store]\npath = "{db}"\n'
    )

    def stored() -> list[tuple[str, str]]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT kind, mask FROM server_bans").fetchall()
        finally:
            conn.close()

    first = spawn(engine, "--config", str(conf))
    c = first.client("boss")
    try:
        c.send("OPER admin secret")
        c.expect("381")
        c.send("DLINE 1d 192.0.2.0/24 :bad network")
        c.expect(
            lambda m: m.command == "NOTICE" and "D-line for 192.0.2.0/24 added" in m.params[-1]
        )
        # the write is asynchronous: wait until it is committed to the file
        wait_for(lambda: stored() == [("D", "192.0.2.0/24")])
    finally:
        c.close()
    first.proc.send_signal(signal.SIGTERM)
    assert first.exit_code_within(5) == 0, first.stderr()

    second = spawn(engine, "--config", str(conf))
    c = second.client("boss")
    try:
        c.send("OPER admin secret")
        c.expect("381")
        c.send("STATS k")
        line = c.expect("216")
        assert line.params[1:3] == ["D", "192.0.2.0/24"] and line.params[-1] == "bad network"
        assert line.params[4] == "86400"
        c.expect("219")
        c.send("UNDLINE 192.0.2.0/24")
        c.expect(lambda m: m.command == "NOTICE" and "removed" in m.params[-1])
        wait_for(lambda: stored() == [])
    finally:
        c.close()
    assert "Traceback" not in second.stderr()


def test_bans_set_just_before_sigterm_are_all_written(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    """Ban writes queue one at a time; a SIGTERM right after many of them still
    writes every one before the store closes (nothing acknowledged is lost)."""
    made = run_cli("mkpasswd", "secret")
    assert made.returncode == 0, made.stderr
    db = tmp_path / "bans.db"
    conf = tmp_path / "bans.toml"
    conf.write_text(
        f'[server]\nlog_level = "WARNING"\n\n[opers.admin]\npassword = "{made.stdout.strip()}"\n'
        f'host = "*@127.0.0.1"\n\n[store]\npath = "{db}"\n'
    )
    server = spawn(engine, "--config", str(conf))
    c = server.client("boss")
    try:
        c.send("OPER admin secret")
        c.expect("381")
        nets = [f"198.51.{i}.0/24" for i in range(30)]
        c.send(b"".join(f"DLINE 1d {n} :x\r\n".encode() for n in nets))
        for n in nets:  # each acknowledged (in force) before the signal
            c.expect(
                lambda m, n=n: m.command == "NOTICE" and f"D-line for {n} added" in m.params[-1]
            )
        server.proc.send_signal(signal.SIGTERM)
        assert server.exit_code_within(10) == 0, server.stderr()
    finally:
        c.close()
    conn = sqlite3.connect(db)
    try:
        rows = {mask for (mask,) in conn.execute("SELECT mask FROM server_bans")}
    finally:
        conn.close()
    assert rows == set(nets), server.stderr()
    assert "Traceback" not in server.stderr()


def test_kill_9_loses_no_message_that_any_client_received(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    """Three senders stream into a channel while two watchers record what they
    receive; the server is killed with SIGKILL mid-stream and started again on
    the same file. Every message any client received is in CHATHISTORY, in the
    order it was received, exactly once; the account and the registered channel
    made before the stream are intact."""
    db = tmp_path / "history.db"
    conf = tmp_path / "history.toml"
    conf.write_text(
        f'[server]\nlog_level = "WARNING"\n\n[limits]\nflood_rate = 0.0\n\n'
        f'[store]\npath = "{db}"\n\n[history]\nchathistory_limit = 1000\nmax_lines = 0\n'
    )
    caps = ("batch", "server-time", "message-tags", "echo-message", "draft/chathistory")
    first = spawn(engine, "--config", str(conf))
    watchers = [first.client(f"watch{i}", caps) for i in range(2)]
    senders = [first.client(f"send{i}", caps) for i in range(3)]
    for c in watchers + senders:
        c.join("#d")
    for c in watchers + senders:
        c.sync()
    owner = watchers[0]  # the channel's first member: its operator
    owner.send("PRIVMSG NickServ :REGISTER sekrit-pass")
    owner.expect(lambda m: m.command == "NOTICE" and "registered" in m.params[-1])
    owner.send("PRIVMSG ChanServ :REGISTER #d")
    owner.expect(lambda m: m.command == "NOTICE" and "now registered" in m.params[-1])
    sent = 0
    received: list[list[tuple[str, str]]] = [[] for _ in watchers + senders]
    clients = watchers + senders

    def collect() -> None:
        for i, c in enumerate(clients):
            c.poll()
            for m in c.lines:
                if m.command == "PRIVMSG" and m.params[0] == "#d":
                    received[i].append((m.tags["msgid"], m.params[1]))
            c.lines.clear()

    try:
        while min(len(r) for r in received[:2]) < 300:
            for s in senders:
                s.send(b"".join(f"PRIVMSG #d :{sent + k}\r\n".encode() for k in range(20)))
                sent += 20
            collect()
        first.proc.kill()  # SIGKILL: no shutdown, no final commit
        first.proc.wait(10)
        for c in clients:
            c.wait_closed()
        collect()
    finally:
        for c in clients:
            c.close()
    seen = {msgid: text for r in received for msgid, text in r}
    assert len(seen) >= 300

    second = spawn(engine, "--config", str(conf))
    reader = second.client("reader", caps)
    try:
        reader.send("PRIVMSG NickServ :IDENTIFY watch0 sekrit-pass")
        reader.expect(lambda m: m.command == "NOTICE" and "now identified" in m.params[-1])
        reader.send("PRIVMSG ChanServ :INFO #d")
        reader.expect(lambda m: m.command == "NOTICE" and m.params[-1] == "Founder: watch0")
        reader.join("#d")
        history: list[tuple[str, str]] = []
        ref = "timestamp=1970-01-01T00:00:00.000Z"
        while True:
            reader.send(f"CHATHISTORY AFTER #d {ref} 1000")
            page = reader.take_until(lambda m: m.command == "BATCH" and m.params[0][0] == "-")
            rows = [(m.tags["msgid"], m.params[1]) for m in page if m.command == "PRIVMSG"]
            if not rows:
                break
            history += rows
            ref = "msgid=" + rows[-1][0]
    finally:
        reader.close()
    ids = [msgid for msgid, _ in history]
    assert len(ids) == len(set(ids)), "a message is in history twice"
    position = {msgid: i for i, msgid in enumerate(ids)}
    missing = [msgid for msgid in seen if msgid not in position]
    assert not missing, f"{len(missing)} of {len(seen)} received messages not in history"
    for r in received:  # each client's order is history's order
        places = [position[msgid] for msgid, _ in r]
        assert places == sorted(places)
    assert all(seen[msgid] == text for msgid, text in history if msgid in seen)


# ---------------------------------------------------------- always-on users
def test_an_always_on_user_is_in_its_channels_after_a_restart(
    spawn: Callable[..., Server], engine: str, tmp_path: Path
) -> None:
    db = tmp_path / "aon.db"
    conf = tmp_path / "aon.toml"
    conf.write_text(
        '[server]\nlog_level = "WARNING"\n\n[accounts]\nalways_on = true\n\n'
        f'[store]\npath = "{db}"\n'
    )
    password = "always-on-password"

    def saved() -> list[tuple[str, str]]:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT nick, channels FROM always_on").fetchall()
        finally:
            conn.close()

    first = spawn(engine, "--config", str(conf))
    c = first.client("erin")
    try:
        c.send(f"REGISTER * * :{password}")
        assert c.expect("REGISTER").params[0] == "SUCCESS"
        c.join("#keep")
        # the write is asynchronous: wait until it is committed to the file
        wait_for(lambda: saved() == [("erin", '[["#keep", "o"]]')])
    finally:
        c.close()
    first.proc.send_signal(signal.SIGTERM)
    assert first.exit_code_within(5) == 0, first.stderr()

    second = spawn(engine, "--config", str(conf))
    obs = second.client("obs")
    again = RawClient(second.port)
    try:
        obs.send("NAMES #keep")
        assert "@erin" in obs.expect("353").params[-1].split()
        obs.send("NICK erin")
        assert obs.expect("433").params[1] == "erin"
        again.send("CAP LS 302")
        again.send("CAP REQ :sasl")
        again.send("NICK someone")
        again.send("USER someone 0 * :again")
        again.send("AUTHENTICATE PLAIN")
        again.expect("AUTHENTICATE")
        again.send("AUTHENTICATE " + base64.b64encode(f"\0erin\0{password}".encode()).decode())
        again.expect("903")
        again.send("CAP END")
        assert again.expect("001").params[0] == "erin"
        assert again.expect("JOIN").params == ["#keep"]
        assert all(m.command != "JOIN" for m in obs.sync())
    finally:
        obs.close()
        again.close()
    assert "Traceback" not in second.stderr()
