"""docs/screenshots.py's ANSI-to-HTML converter (what tmux capture-pane -e prints)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "screenshots.py"


@pytest.fixture(scope="module")
def shots() -> ModuleType:
    spec = importlib.util.spec_from_file_location("relaychat_docs_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_plain_text_is_escaped(shots: ModuleType) -> None:
    assert shots.ansi_to_html("<bob> a & b") == "&lt;bob&gt; a &amp; b"


def test_basic_bright_256_and_truecolor_foregrounds(shots: ModuleType) -> None:
    out = shots.ansi_to_html("\x1b[31mred\x1b[0m \x1b[92mgreen\x1b[38;5;196mx\x1b[38;2;1;2;3my")
    assert f'<span style="color:{shots.PALETTE16[1]}">red</span> ' in out
    assert f'<span style="color:{shots.PALETTE16[10]}">green</span>' in out
    assert '<span style="color:#ff0000">x</span>' in out
    assert '<span style="color:#010203">y</span>' in out


def test_attributes_and_their_resets(shots: ModuleType) -> None:
    out = shots.ansi_to_html("\x1b[1;3;4mon\x1b[22;23;24moff")
    assert (
        '<span style="font-weight:bold;font-style:italic;text-decoration:underline">on</span>'
        in out
    )
    assert out.endswith("off")


def test_reverse_swaps_default_colours(shots: ModuleType) -> None:
    out = shots.ansi_to_html("\x1b[7mbar\x1b[27m")
    assert f'<span style="color:{shots.TERM_BG};background:{shots.TERM_FG}">bar</span>' in out


def test_style_carries_across_lines_and_other_escapes_are_dropped(shots: ModuleType) -> None:
    out = shots.ansi_to_html("\x1b[32mone\ntwo\x1b[0m\x1b[?25l three")
    green = f'<span style="color:{shots.PALETTE16[2]}">'
    assert out == f"{green}one</span>\n{green}two</span> three"


def test_gray_ramp(shots: ModuleType) -> None:
    assert shots.color256(232) == "#080808"
    assert shots.color256(255) == "#eeeeee"
    assert shots.color256(16) == "#000000"
    assert shots.color256(231) == "#ffffff"
