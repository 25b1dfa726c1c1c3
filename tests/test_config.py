"""Configuration: defaults, the sample file, unknown keys, type errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from relaychat.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "relaychat.example.toml"


def test_embedded_defaults_listen_on_localhost_6667() -> None:
    cfg = load_config(None)
    assert (cfg.server.host, cfg.server.port, cfg.server.engine) == ("127.0.0.1", 6667, "loop")


def test_sample_config_loads_and_documents_every_key() -> None:
    cfg = load_config(SAMPLE)
    data = tomllib.loads(SAMPLE.read_text())
    for section in ("server", "limits", "admin"):
        documented = set(data[section])
        fields = {f.name for f in dataclasses.fields(getattr(cfg, section))}
        assert documented == fields, (section, fields ^ documented)
        # the sample shows the built-in defaults
        assert getattr(cfg, section) == getattr(Config(), section)
    # [opers.NAME] is documented in comments
    text = SAMPLE.read_text()
    assert "[opers.admin]" in text and "relaychat mkpasswd" in text


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[limits]\nnicklen = 9\nnick_len = 9\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "limits.nick_len" in str(err.value) and str(path) in str(err.value)


def test_unknown_section_and_wrong_type_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[srever]\nname = 'x'\n")
    with pytest.raises(ConfigError, match="unknown section 'srever'"):
        load_config(path)
    path.write_text("[server]\nport = 'six'\n")
    with pytest.raises(ConfigError, match="server.port.*int"):
        load_config(path)
    path.write_text("[server]\nengine = 'fibers'\n")
    with pytest.raises(ConfigError, match="server.engine"):
        load_config(path)


def test_opers_sections_and_integer_for_float(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text("[limits]\nflood_rate = 3\n[opers.root]\npassword = 'scrypt$1'\n")
    cfg = load_config(path)
    assert cfg.limits.flood_rate == 3.0
    assert cfg.opers["root"].password == "scrypt$1" and cfg.opers["root"].host == "*@*"
    assert cfg.path == str(path)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
