"""The layering, as a test: who may import what.

- ``relaychat.protocol`` is sans-I/O: no sockets, threads, event loops, clocks,
  store or broker drivers, and nothing from ``relaychat.server``,
  ``relaychat.client`` or ``relaychat.store`` (the core sees storage only
  through the Protocols of ``relaychat.protocol.storage``);
- the core module imports no handler (the command table is given to it);
- ``relaychat.client`` never imports ``relaychat.server``;
- the engines never import each other or a handler module.

Imports under ``if TYPE_CHECKING:`` are for the type checker only and are not
counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "relaychat"

IO_MODULES = {
    "socket",
    "ssl",
    "selectors",
    "select",
    "threading",
    "_thread",
    "asyncio",
    "concurrent",
    "multiprocessing",
    "subprocess",
    "time",
    "sqlite3",
    "redis",
    "psycopg",
    "psycopg2",
    "websockets",
    "uvloop",
}


def runtime_imports(path: Path) -> set[str]:
    """Absolute module names imported by ``path`` outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def files(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", files("protocol"), ids=lambda p: str(p.relative_to(SRC)))
def test_protocol_is_sans_io(path: Path) -> None:
    imports = runtime_imports(path)
    assert not {_top(m) for m in imports} & IO_MODULES, imports
    forbidden = [
        m
        for m in imports
        if m.startswith(
            ("relaychat.server", "relaychat.client", "relaychat.cli", "relaychat.store")
        )
    ]
    assert not forbidden


def test_the_core_imports_no_handler_and_no_command_table() -> None:
    core_modules = ("core.py", "inbound.py", "output.py", "registry.py", "events.py", "ops.py")
    for module in (*core_modules, "monitor.py", "identity.py"):
        imports = runtime_imports(SRC / "protocol" / module)
        assert not [
            m
            for m in imports
            if m.startswith(("relaychat.protocol.handlers", "relaychat.protocol.commands"))
        ], module


@pytest.mark.parametrize("path", files("client"), ids=lambda p: str(p.relative_to(SRC)))
def test_client_never_imports_the_server(path: Path) -> None:
    assert not [m for m in runtime_imports(path) if m.startswith("relaychat.server")]


@pytest.mark.parametrize(("engine", "other"), [("loop.py", "threaded"), ("threaded.py", "loop")])
def test_engines_import_neither_each_other_nor_handlers(engine: str, other: str) -> None:
    imports = runtime_imports(SRC / "server" / engine)
    assert not [m for m in imports if m.startswith(f"relaychat.server.{other}")]
    assert not [m for m in imports if m.startswith("relaychat.protocol.handlers")]


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The test above would notice: a module importing socket at runtime is caught,
    one importing it only for the type checker is not."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import socket\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ssl\n"
    )
    assert runtime_imports(bad) == {"socket", "typing", "typing.TYPE_CHECKING"}
