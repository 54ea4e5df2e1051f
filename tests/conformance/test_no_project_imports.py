"""The docs-only terminal imports nothing of the project: it is a second implementation only
as long as every byte it makes comes from the docs, the standard library, cbor2,
`cryptography` and paho-mqtt.

Checked twice: statically (every import statement and every `importlib.import_module` /
`__import__` call with a literal name, in every module of tests/conformance/docterm), and by
importing the package in a fresh interpreter in which the project's packages cannot be
imported at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCTERM = Path(__file__).resolve().parent / "docterm"
FORBIDDEN = ("protocol", "firmware", "gateway", "ledger", "tools", "tests")
ALLOWED_THIRD_PARTY = ("cbor2", "cryptography", "paho")
DYNAMIC_IMPORTERS = ("import_module", "__import__")


def imported_names(source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`; relative imports come back
    as "." + name (they stay inside the package)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, "." * node.level + (node.module or "")))
            else:
                assert node.module is not None
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call):
            function = node.func
            name = (function.attr if isinstance(function, ast.Attribute)
                    else function.id if isinstance(function, ast.Name) else "")
            if name in DYNAMIC_IMPORTERS:
                argument = node.args[0] if node.args else None
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    found.append((node.lineno, argument.value))
                else:
                    found.append((node.lineno, "<computed name>"))
    return found


def violations(source: str) -> list[str]:
    """What in `source` a docs-only module may not import."""
    bad = []
    for line, name in imported_names(source):
        if name.startswith(".."):
            bad.append(f"line {line}: {name} (outside the docterm package)")
            continue
        if name.startswith("."):
            continue
        root = name.split(".")[0]
        if root in FORBIDDEN:
            bad.append(f"line {line}: {name} (the project)")
        elif root not in sys.stdlib_module_names and root not in ALLOWED_THIRD_PARTY:
            bad.append(f"line {line}: {name} (not stdlib, cbor2, cryptography or paho)")
    return bad


def docterm_modules() -> list[Path]:
    return sorted(DOCTERM.glob("*.py"))


def test_the_docs_only_terminal_has_modules_to_check() -> None:
    names = {path.stem for path in docterm_modules()}
    assert {"dcbor", "mac0", "schema", "card", "journal", "link", "terminal"} <= names


@pytest.mark.parametrize("path", docterm_modules(), ids=lambda p: p.name)
def test_a_docs_only_module_imports_only_stdlib_cbor2_cryptography_and_paho(
        path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize("source", [
    "from protocol import cbor",
    "import gateway.service",
    "from firmware.journal import Journal",
    "import ledger",
    "from tools.demo import DEMO_PROGRAMS",
    "from tests.support.stack import RawTerminal",
    "import importlib\nimportlib.import_module('protocol.cose')",
    "__import__('gateway')",
    "import importlib\nname = 'proto' + 'col'\nimportlib.import_module(name)",
    "from .. import conftest",
    "import hypothesis",
    "def f():\n    from protocol import txn\n    return txn",
])
def test_the_check_catches_every_way_of_importing_the_project(source: str) -> None:
    assert violations(source), source


def test_the_check_lets_through_what_the_docs_only_terminal_may_use() -> None:
    assert violations(textwrap.dedent("""
        import hashlib
        from collections.abc import Callable
        import cbor2
        from cryptography.hazmat.primitives import hmac
        import paho.mqtt.client as mqtt
        from . import dcbor
        from .errors import Refused
    """)) == []


_BLOCKED_IMPORT = textwrap.dedent("""
    import importlib.abc, sys
    FORBIDDEN = {forbidden!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FORBIDDEN:
                raise ImportError("the docs-only terminal imported " + name)
            return None

    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if p not in ("", {root!r})]
    sys.path.insert(0, {here!r})
    import docterm.terminal, docterm.card
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    assert not loaded, loaded
    print("ok")
""")


def test_the_package_imports_in_an_interpreter_where_the_project_cannot_be_imported() -> None:
    script = _BLOCKED_IMPORT.format(forbidden=FORBIDDEN, root=str(DOCTERM.parents[2]),
                                    here=str(DOCTERM.parent))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=DOCTERM)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
