"""Configuration: defaults, the sample file, listeners, and a rule for every key.

Every bad value must be a ConfigError naming the file and the key, and through the
CLI one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from relaychat import cli
from relaychat.config import (
    _RULES,
    AccountsConfig,
    CloakingConfig,
    Config,
    ConfigError,
    EmailConfig,
    HistoryConfig,
    LimitsConfig,
    ListenConfig,
    MetadataConfig,
    OperConfig,
    ServerConfig,
    StoreConfig,
    StsConfig,
    WebSocketConfig,
    check_value,
    load_config,
)
from relaychat.passwords import hash_password

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "relaychat.example.toml"
HASH = hash_password("secret", n=2**10)  # cheap parameters: only the format matters here


def test_embedded_defaults_listen_on_localhost_6667_and_the_web_on_8097() -> None:
    cfg = load_config(None)
    assert cfg.listen == (
        ListenConfig("127.0.0.1", 6667),
        ListenConfig("127.0.0.1", 8097, websocket=True),
    )
    assert cfg.server.engine == "loop" and cfg.path is None


def test_sample_config_loads_and_documents_every_key() -> None:
    cfg = load_config(SAMPLE)
    data = tomllib.loads(SAMPLE.read_text())
    for section in (
        "server",
        "limits",
        "metadata",
        "admin",
        "cloaking",
        "accounts",
        "store",
        "email",
        "websocket",
        "sts",
    ):
        documented = set(data[section])
        fields = {f.name for f in dataclasses.fields(getattr(cfg, section))}
        assert documented == fields, (section, fields ^ documented)
        # the sample shows the built-in defaults
        assert getattr(cfg, section) == getattr(Config(), section)
    assert [
        {k: tuple(v) if isinstance(v, list) else v for k, v in t.items()} for t in data["listen"]
    ] == [dataclasses.asdict(item) for item in Config().listen]
    assert cfg.listen == Config().listen
    # [opers.NAME] is documented in comments
    text = SAMPLE.read_text()
    assert "[opers.admin]" in text and "relaychat mkpasswd" in text


def test_new_keys_have_their_defaults() -> None:
    lim = LimitsConfig()
    assert lim.max_connections_per_ip == 10
    assert lim.connection_limit_exempt == ("127.0.0.1", "::1")
    assert (lim.tags_length, lim.realnamelen) == (4094, 128)
    assert (lim.invite_expiry, lim.max_invites) == (3600.0, 16)
    assert lim.monitor_limit == 100
    assert ServerConfig().log_format == "text"
    assert (lim.multiline_max_bytes, lim.multiline_max_lines) == (4096, 100)


def test_every_key_has_a_rule() -> None:
    keys = {
        f"{prefix}.{f.name}"
        for prefix, cls in (
            ("server", ServerConfig),
            ("listen", ListenConfig),
            ("limits", LimitsConfig),
            ("metadata", MetadataConfig),
            ("admin", type(Config().admin)),
            ("cloaking", CloakingConfig),
            ("accounts", AccountsConfig),
            ("store", StoreConfig),
            ("history", HistoryConfig),
            ("email", EmailConfig),
            ("websocket", WebSocketConfig),
            ("sts", StsConfig),
            ("opers", OperConfig),
        )
        for f in dataclasses.fields(cls)
    }
    assert keys == set(_RULES)


# (TOML text, the key the error must name). Every rule has at least one case.
BAD_VALUES: list[tuple[str, str]] = [
    ("[history]\nenabled = 1", "history.enabled"),
    ("[history]\nprivate = 'yes'", "history.private"),
    ("[history]\nrelay_after_commit = 'no'", "history.relay_after_commit"),
    ("[history]\nmax_age = -1", "history.max_age"),
    ("[history]\nmax_lines = -5", "history.max_lines"),
    ("[history]\nchathistory_limit = 0", "history.chathistory_limit"),
    ("[history]\nautoreplay_lines = 5000", "history.autoreplay_lines"),
    ("[history]\nexclude_channels = ['nochan']", "history.exclude_channels"),
    ("[history]\nexclude_channels = ['#a b']", "history.exclude_channels"),
    ("[history]\nprune_interval = 0", "history.prune_interval"),
    ("[history]\nredact_window = -1", "history.redact_window"),
    ("[history]\nredact_window = '1h'", "history.redact_window"),
    ("[server]\nname = 'irc'", "server.name"),
    ("[server]\nname = 'irc .example.org'", "server.name"),
    ("[server]\nname = '-irc.example.org'", "server.name"),
    ("[server]\nname = 'a.b'\nnetwork = ''", "server.network"),
    ("[server]\nnetwork = 'Relay Chat'", "server.network"),
    ('[server]\ndescription = "two\\nlines"', "server.description"),
    ("[server]\nengine = 'fibers'", "server.engine"),
    ("[server]\ndisabled_caps = ['sasl-ish']", "server.disabled_caps"),
    ('[server]\npassword = "a\\rb"', "server.password"),
    ("[server]\nlog_level = 'VERBOSE'", "server.log_level"),
    ("[server]\nlog_level = 'debug'", "server.log_level"),
    ("[server]\nlog_format = 'xml'", "server.log_format"),
    ("[server]\ncasemapping = 'strict-rfc1459'", "server.casemapping"),
    ("[server]\nmotd = 42", "server.motd"),
    ("[server]\nhost = '0.0.0.0'", "server.host"),
    ("[server]\nport = 6667", "server.port"),
    ("[[listen]]\naddress = ''", "listen.address"),
    ("[[listen]]\naddress = 'not a host!'", "listen.address"),
    ("[[listen]]\nport = -1", "listen.port"),
    ("[[listen]]\nport = 70000", "listen.port"),
    ("[[listen]]\nport = '6667'", "listen.port"),
    ("[[listen]]\nport = 6667.0", "listen.port"),
    ("[[listen]]\nbind = '::'", "listen.bind"),
    ("[[listen]]\ntls = 'yes'", "listen.tls"),
    ("[[listen]]\ntls = true\nkey = 'k.pem'", "listen.cert"),
    ("[[listen]]\ntls = true\ncert = 'c.pem'", "listen.key"),
    ("[[listen]]\ntls = true\ncert = 'c.pem'\nkey = \"a\\tb\"", "listen.key"),
    ("[limits]\ntls_handshake_timeout = 0", "limits.tls_handshake_timeout"),
    ("[limits]\nproxy_timeout = 0", "limits.proxy_timeout"),
    ("[sts]\nenabled = 'yes'", "sts.enabled"),
    ("[sts]\nenabled = 1", "sts.enabled"),
    ("[sts]\nport = 70000", "sts.port"),
    ("[sts]\nduration = -1", "sts.duration"),
    ("[sts]\nduration = 1.5", "sts.duration"),
    ("[sts]\npreload = 'no'", "sts.preload"),
    ("[[listen]]\nproxy = ['10.0.0.0/33']", "listen.proxy"),
    ("[[listen]]\nproxy = ['haproxy.local']", "listen.proxy"),
    ("[[listen]]\nproxy = ['10.0.0.1/8']", "listen.proxy"),
    ("[[listen]]\nproxy = '10.0.0.1'", "listen.proxy"),
    ("[limits]\nnicklen = 0", "limits.nicklen"),
    ("[limits]\nnicklen = 256", "limits.nicklen"),
    ("[limits]\nnicklen = true", "limits.nicklen"),
    ("[limits]\nuserlen = 1", "limits.userlen"),
    ("[limits]\nchannellen = 1", "limits.channellen"),
    ("[limits]\ntopiclen = 0", "limits.topiclen"),
    ("[limits]\ntopiclen = 513", "limits.topiclen"),
    ("[limits]\nawaylen = 0", "limits.awaylen"),
    ("[limits]\nkicklen = 1000", "limits.kicklen"),
    ("[limits]\nrealnamelen = 0", "limits.realnamelen"),
    ("[limits]\nline_length = 600\nrealnamelen = 601", "limits.realnamelen"),
    ("[limits]\nchanlimit = 0", "limits.chanlimit"),
    ("[limits]\nmax_targets = 0", "limits.max_targets"),
    ("[limits]\nmax_modes = 0", "limits.max_modes"),
    ("[limits]\nmax_list_entries = 0", "limits.max_list_entries"),
    ("[limits]\nmax_invites = 0", "limits.max_invites"),
    ("[limits]\ninvite_expiry = 0", "limits.invite_expiry"),
    ("[limits]\ninvite_expiry = -1.5", "limits.invite_expiry"),
    ("[limits]\nline_length = 511", "limits.line_length"),
    ("[limits]\nline_length = 100\ntopiclen = 50", "limits.line_length"),
    ("[limits]\ntags_length = 511", "limits.tags_length"),
    ("[limits]\ntags_length = 8192", "limits.tags_length"),
    ("[limits]\nsendq = 100", "limits.sendq"),
    ("[limits]\nrecvq = 511", "limits.recvq"),
    ("[limits]\nline_length = 1024\nrecvq = 1000", "limits.recvq"),
    ("[limits]\nflood_rate = -1", "limits.flood_rate"),
    ("[limits]\nflood_rate = nan", "limits.flood_rate"),
    ("[limits]\nflood_rate = 'fast'", "limits.flood_rate"),
    ("[limits]\nflood_burst = 0", "limits.flood_burst"),
    ("[limits]\nping_interval = 0", "limits.ping_interval"),
    ("[limits]\nping_interval = inf", "limits.ping_interval"),
    ("[limits]\nping_timeout = 0.0", "limits.ping_timeout"),
    ("[limits]\nregistration_timeout = -1", "limits.registration_timeout"),
    ("[limits]\nmax_connections = 0", "limits.max_connections"),
    ("[limits]\nmax_connections_per_ip = -1", "limits.max_connections_per_ip"),
    ("[limits]\nconnection_limit_exempt = ['localhost']", "limits.connection_limit_exempt"),
    ("[limits]\nconnection_limit_exempt = ['10.0.0.1/8']", "limits.connection_limit_exempt"),
    ("[limits]\nmonitor_limit = 0", "limits.monitor_limit"),
    ("[limits]\nmonitor_limit = 10001", "limits.monitor_limit"),
    ("[limits]\nconnection_limit_exempt = '127.0.0.1'", "limits.connection_limit_exempt"),
    ("[limits]\nconnection_limit_exempt = [1]", "limits.connection_limit_exempt"),
    ("[limits]\nwhowas_size = -1", "limits.whowas_size"),
    ("[limits]\nmultiline_max_bytes = 511", "limits.multiline_max_bytes"),
    ("[limits]\nrecvq = 2048\nmultiline_max_bytes = 4096", "limits.multiline_max_bytes"),
    ("[limits]\nmultiline_max_lines = 0", "limits.multiline_max_lines"),
    ("[limits]\nmultiline_max_lines = 1001", "limits.multiline_max_lines"),
    ("[limits]\nnick_len = 9", "limits.nick_len"),
    ("[metadata]\nbefore_connect = 'yes'", "metadata.before_connect"),
    ("[metadata]\nbefore_connect = 1", "metadata.before_connect"),
    ("[metadata]\nmax_keys = 0", "metadata.max_keys"),
    ("[metadata]\nmax_keys = true", "metadata.max_keys"),
    ("[metadata]\nmax_subs = 1001", "metadata.max_subs"),
    ("[metadata]\nmax_value_bytes = 0", "metadata.max_value_bytes"),
    ("[metadata]\nmax_value_bytes = 401", "metadata.max_value_bytes"),
    ("[metadata]\nchange_rate = 0", "metadata.change_rate"),
    ("[metadata]\nchange_burst = 0", "metadata.change_burst"),
    ("[metadata]\nsync_rate = -1", "metadata.sync_rate"),
    ("[metadata]\nsync_burst = 0", "metadata.sync_burst"),
    ("[metadata]\nmax_key = 5", "metadata.max_key"),
    ("[limits]\nknock_delay = -1", "limits.knock_delay"),
    ("[limits]\nknock_delay = 86401", "limits.knock_delay"),
    ("[limits]\nknock_channel_delay = -0.5", "limits.knock_channel_delay"),
    ("[limits]\nknock_channel_delay = inf", "limits.knock_channel_delay"),
    ("[limits]\nmax_silence = 0", "limits.max_silence"),
    ("[limits]\nmax_silence = 1001", "limits.max_silence"),
    ("[limits]\nmax_server_bans = 0", "limits.max_server_bans"),
    ("[limits]\nmax_server_bans = 100001", "limits.max_server_bans"),
    ("[cloaking]\nenabled = 'yes'", "cloaking.enabled"),
    ("[cloaking]\nenabled = 1", "cloaking.enabled"),
    ("[cloaking]\nenabled = true", "cloaking.secret"),
    ("[cloaking]\nenabled = true\nsecret = 'short'", "cloaking.secret"),
    ('[cloaking]\nsecret = "0123456789abcdef\\n"', "cloaking.secret"),
    ("[cloaking]\nnetname = ''", "cloaking.netname"),
    ("[cloaking]\nnetname = 'my net'", "cloaking.netname"),
    ("[cloaking]\nnetname = '-ip'", "cloaking.netname"),
    ("[cloaking]\ncidr_len_ipv4 = 33", "cloaking.cidr_len_ipv4"),
    ("[cloaking]\ncidr_len_ipv4 = -1", "cloaking.cidr_len_ipv4"),
    ("[cloaking]\ncidr_len_ipv6 = 129", "cloaking.cidr_len_ipv6"),
    ("[cloaking]\nkey = 'x'", "cloaking.key"),
    ("[accounts]\nregistration = 'yes'", "accounts.registration"),
    ("[accounts]\npassword_min = 0", "accounts.password_min"),
    ("[accounts]\npassword_min = 301", "accounts.password_min"),
    ("[accounts]\nscram_iterations = 4095", "accounts.scram_iterations"),
    ("[accounts]\nregister_limit = -1", "accounts.register_limit"),
    ("[accounts]\nnick_protection = 'strict'", "accounts.nick_protection"),
    ("[accounts]\nnick_grace = 0", "accounts.nick_grace"),
    ("[accounts]\nnick_grace = 3601", "accounts.nick_grace"),
    ("[accounts]\nregister_window = 0", "accounts.register_window"),
    ("[accounts]\nregister_window = 2592001", "accounts.register_window"),
    ("[accounts]\nscram_iterations = 1000001", "accounts.scram_iterations"),
    ("[accounts]\nmulticlient = 'yes'", "accounts.multiclient"),
    ("[accounts]\nmax_sessions = 0", "accounts.max_sessions"),
    ("[accounts]\nmax_sessions = 1001", "accounts.max_sessions"),
    ("[accounts]\nalways_on = 'sometimes'", "accounts.always_on"),
    ("[accounts]\nalways_on = 1", "accounts.always_on"),
    ('[accounts]\nauto_away = "a\\nb"', "accounts.auto_away"),
    ("[store]\npath = ''", "store.path"),
    ('[store]\npath = "a\\nb.db"', "store.path"),
    ("[store]\npath = 'file:x.db?mode=ro'", "store.path"),
    ("[store]\nsynchronous = 'off'", "store.synchronous"),
    ("[store]\ncommit_rows = 0", "store.commit_rows"),
    ("[store]\ncommit_rows = 100001", "store.commit_rows"),
    ("[store]\ncommit_ms = -1", "store.commit_ms"),
    ("[store]\ncommit_ms = 1001", "store.commit_ms"),
    ("[accounts]\nemail_verification = 'on'", "accounts.email_verification"),
    ("[accounts]\nemail_verification = true", "email.from_address"),
    ("[websocket]\ndefault_subprotocol = 'json'", "websocket.default_subprotocol"),
    ("[websocket]\norigins = ['https://a.example', '']", "websocket.origins"),
    ("[websocket]\norigins = ['https://a.example https://b.example']", "websocket.origins"),
    ("[websocket]\ntrusted_proxies = ['10.0.0.0/33']", "websocket.trusted_proxies"),
    ("[websocket]\nmax_message = 100", "websocket.max_message"),
    ("[websocket]\nping_interval = -1", "websocket.ping_interval"),
    ("[websocket]\nweb_client = 'yes'", "websocket.web_client"),
    ("[[listen]]\nwebsocket = 1", "listen.websocket"),
    ("[email]\nsmtp_host = ''", "email.smtp_host"),
    ("[email]\nsmtp_host = 'mail host'", "email.smtp_host"),
    ("[email]\nsmtp_port = 0", "email.smtp_port"),
    ("[email]\nsmtp_port = 65536", "email.smtp_port"),
    ("[email]\nfrom_address = 'irc'", "email.from_address"),
    ('[email]\nfrom_address = "irc@example.org\\r\\nBcc: x@y"', "email.from_address"),
    ("[email]\nstarttls = 'yes'", "email.starttls"),
    ('[email]\nusername = "a\\nb"', "email.username"),
    ('[email]\npassword_file = "a\\nb"', "email.password_file"),
    ("[email]\ntimeout = 0", "email.timeout"),
    ("[email]\ntimeout = 301", "email.timeout"),
    ("[email]\ncode_lifetime = 59", "email.code_lifetime"),
    ("[email]\nmax_attempts = 0", "email.max_attempts"),
    ('[admin]\nlocation = "a\\nb"', "admin.location"),
    ('[admin]\nlocation2 = "a\\u0000b"', "admin.location2"),
    ('[admin]\nemail = "a\\r\\nb"', "admin.email"),
    ("[opers.root]\npassword = 'hunter2'", "opers.root.password"),
    ("[opers.root]\npassword = 'scrypt$16384$8$1$salt$hash'", "opers.root.password"),
    ("[opers.root]\nhost = '*@*'", "opers.root.password"),
    (f"[opers.root]\npassword = '{HASH}'\nhost = ''", "opers.root.host"),
    (f"[opers.root]\npassword = '{HASH}'\nhost = '*'", "opers.root.host"),
    (f"[opers.root]\npassword = '{HASH}'\nhost = 'a@b@c'", "opers.root.host"),
    (f"[opers.root]\npassword = '{HASH}'\nhost = '* @*'", "opers.root.host"),
    (f"[opers.'two words']\npassword = '{HASH}'", "opers.two words"),
]


CASE_IDS = [f"{key}-{i}" for i, (_, key) in enumerate(BAD_VALUES)]


def test_bad_values_cover_every_rule() -> None:
    covered = {key.replace("opers.root.", "opers.") for _, key in BAD_VALUES}
    assert set(_RULES) <= covered | {"server.motd"}  # a MOTD may be any text


@pytest.mark.parametrize(("text", "key"), BAD_VALUES, ids=CASE_IDS)
def test_bad_value_is_an_error_naming_the_file_and_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert key in message


@pytest.mark.parametrize(("text", "key"), BAD_VALUES, ids=CASE_IDS)
def test_bad_value_makes_serve_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError):  # so that main() below never starts a server
        load_config(path)
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("relaychat: "), err
    assert key in err and str(path) in err and "Traceback" not in err


def test_errors_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    cases = {
        "[limits]\nwhowas_size = -1": "key 'limits.whowas_size' must be >= 0",
        "[limits]\nrecvq = 500": "key 'limits.recvq' must be >= limits.line_length (512)",
        "[limits]\nping_interval = 0": "key 'limits.ping_interval' must be > 0",
        "[limits]\nrecvq = 2048": (
            "key 'limits.multiline_max_bytes' must be <= limits.recvq (2048)"
        ),
        "[[listen]]\nport = 70000": "key 'listen.port' (listener 1) must be <= 65535",
        "[server]\nengine = 'fibers'": 'must be one of "loop", "threads"',
        "[server]\nport = 'six'": "[[listen]]",
        "[limits]\nnicklen = '9'": "key 'limits.nicklen' must be an integer, not str",
        "[metadata]\nbefore_connect = 'no'": (
            "key 'metadata.before_connect' must be true or false, not str"
        ),
    }
    for text, expected in cases.items():
        path.write_text(text + "\n")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert expected in str(err.value), (text, str(err.value))


def test_old_host_and_port_keys_point_to_listen_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text('[server]\nname = "irc.example.org"\nhost = "0.0.0.0"\nport = 6697\n')
    with pytest.raises(ConfigError, match=r"key 'server.host'.*\[\[listen\]\]"):
        load_config(path)


def test_several_listeners_and_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "l.toml"
    path.write_text(
        '[[listen]]\naddress = "::"\nport = 6697\n[[listen]]\nport = 7000\n'
        '[[listen]]\naddress = "localhost"\n[[listen]]\nport = 0\n[[listen]]\nport = 0\n'
    )
    assert load_config(path).listen == (
        ListenConfig("::", 6697),
        ListenConfig("127.0.0.1", 7000),
        ListenConfig("localhost", 6667),
        ListenConfig("127.0.0.1", 0),  # port 0 (any free port) may repeat
        ListenConfig("127.0.0.1", 0),
    )


def test_a_tls_listener_beside_a_plaintext_one(tmp_path: Path) -> None:
    path = tmp_path / "tls.toml"
    path.write_text(
        '[[listen]]\nport = 6667\n[[listen]]\nport = 6697\ntls = true\ncert = "c.pem"\n'
        'key = "k.pem"\n'
    )
    assert load_config(path).listen == (
        ListenConfig("127.0.0.1", 6667),
        ListenConfig("127.0.0.1", 6697, tls=True, cert="c.pem", key="k.pem"),
    )


@pytest.mark.parametrize(
    ("text", "enabled"),
    [("enabled = true", "true"), ("enabled = false", "false"), ('enabled = "auto"', "auto")],
)
def test_sts_enabled_takes_a_word_or_a_boolean(tmp_path: Path, text: str, enabled: str) -> None:
    path = tmp_path / "sts.toml"
    path.write_text(f"[sts]\n{text}\nport = 6697\nduration = 0\npreload = true\n")
    assert load_config(path).sts == StsConfig(enabled, 6697, 0, True)


def test_sts_defaults() -> None:
    assert Config().sts == StsConfig("auto", 0, 2592000, False)


def test_a_listener_behind_trusted_proxies(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(
        '[[listen]]\nport = 6667\n[[listen]]\nport = 6668\nproxy = ["10.0.0.0/8", "::1"]\n'
        "[limits]\nproxy_timeout = 2.5\n"
    )
    cfg = load_config(path)
    assert cfg.listen[0].proxy == ()
    assert cfg.listen[1].proxy == ("10.0.0.0/8", "::1")
    assert cfg.limits.proxy_timeout == 2.5
    path.write_text('[[listen]]\nport = 6667\n[[listen]]\nport = 6668\nproxy = ["10.0.0.1/8"]\n')
    with pytest.raises(ConfigError, match=r"key 'listen.proxy' \(listener 2\) must list IP"):
        load_config(path)


@pytest.mark.parametrize(
    "text",
    [
        "[[listen]]\nport = 6697\n[[listen]]\nport = 6697",
        '[[listen]]\naddress = "::"\n[[listen]]\naddress = "0::0"',
        '[[listen]]\naddress = "127.0.0.1"\n[[listen]]\nport = 6667',
    ],
)
def test_the_same_listener_twice_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "dup.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=r"listed twice \(listeners 1 and 2\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen = []", "at least one [[listen]]"),
        ("[listen]\nport = 6667", "must be [[listen]] tables"),
        ("listen = [1]", "[listen] (listener 1) must be a table"),
    ],
)
def test_listen_must_be_a_list_of_tables(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "l.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)


def test_plaintext_oper_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text('[opers.root]\npassword = "correct-horse"\nhost = "*@127.0.0.1"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "opers.root.password" in message and "relaychat mkpasswd" in message
    assert "correct-horse" not in message


def test_oper_password_hash_that_scrypt_cannot_check_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    too_big = HASH.replace("scrypt$1024$", "scrypt$1048576$")
    path.write_text(f'[opers.root]\npassword = "{too_big}"\n')
    with pytest.raises(ConfigError, match="opers.root.password.*too much memory"):
        load_config(path)


def test_opers_with_a_hash_and_integer_for_float(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    real = hash_password("secret")  # what `relaychat mkpasswd` prints
    path.write_text(
        f"[limits]\nflood_rate = 3\n[opers.root]\npassword = '{real}'\n"
        f"[opers.ops]\npassword = '{HASH}'\nhost = '~ops@10.*'\n"
    )
    cfg = load_config(path)
    assert cfg.limits.flood_rate == 3.0
    assert cfg.opers["root"] == OperConfig(real, "*@*")
    assert cfg.opers["ops"].host == "~ops@10.*"
    assert cfg.path == str(path)


def test_metadata_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[metadata]\nbefore_connect = false\nmax_keys = 5\nchange_rate = 2\n")
    meta = load_config(path).metadata
    assert (meta.before_connect, meta.max_keys, meta.change_rate) == (False, 5, 2.0)
    assert meta.max_subs == MetadataConfig().max_subs


def test_exempt_networks_become_a_tuple(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text('[limits]\nconnection_limit_exempt = ["10.0.0.0/8", "2001:db8::/32"]\n')
    assert load_config(path).limits.connection_limit_exempt == ("10.0.0.0/8", "2001:db8::/32")
    path.write_text("[limits]\nconnection_limit_exempt = []\n")
    assert load_config(path).limits.connection_limit_exempt == ()


def test_exemption_from_the_per_ip_limit() -> None:
    lim = LimitsConfig(connection_limit_exempt=("127.0.0.1", "10.0.0.0/8", "2001:db8::/32"))
    assert lim.exempt_from_ip_limit("127.0.0.1") and lim.exempt_from_ip_limit("10.1.2.3")
    assert lim.exempt_from_ip_limit("::ffff:10.1.2.3")  # IPv4 client of a "::" listener
    assert lim.exempt_from_ip_limit("2001:db8::5")
    assert not lim.exempt_from_ip_limit("127.0.0.2")
    assert not lim.exempt_from_ip_limit("192.0.2.1") and not lim.exempt_from_ip_limit("unknown")
    assert LimitsConfig().exempt_from_ip_limit("::1")
    assert not LimitsConfig(connection_limit_exempt=()).exempt_from_ip_limit("127.0.0.1")


def test_check_value_applies_the_file_rules_to_one_value() -> None:
    assert check_value("listen.port", 6697) is None
    assert check_value("listen.port", 70000) == "must be <= 65535"
    assert check_value("listen.port", "x") == "must be an integer"
    assert check_value("listen.address", "::") is None
    assert check_value("listen.address", "") is not None


def test_unknown_section_and_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[srever]\nname = 'x'\n")
    with pytest.raises(ConfigError, match="unknown section 'srever'"):
        load_config(path)
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
