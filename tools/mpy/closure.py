"""Which modules a board really runs: the import closure of its entry points.

A board's flash holds what `firmware.boards` and the chosen board module import, directly
or indirectly, and nothing else: gateway-side protocol code (card personalization, program
file validation) stays off the board. Imports are read from the source with `ast`, including
those inside functions (boards import `machine` lazily).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tools.mpy.runner import REPO_ROOT

PACKAGES = ("protocol", "firmware")


def _module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    as_module = REPO_ROOT.joinpath(*parts).with_suffix(".py")
    if as_module.is_file():
        return as_module.relative_to(REPO_ROOT)
    as_package = REPO_ROOT.joinpath(*parts, "__init__.py")
    if as_package.is_file():
        return as_package.relative_to(REPO_ROOT)
    return None


def _imports(source: Path) -> set[str]:
    tree = ast.parse((REPO_ROOT / source).read_text(), str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_closure(roots: list[Path]) -> list[Path]:
    """Every protocol/ and firmware/ module reachable from `roots` (repo-relative paths),
    with the __init__ of each package it touches."""
    seen: set[Path] = set()
    pending = list(roots)
    while pending:
        source = pending.pop()
        if source in seen:
            continue
        seen.add(source)
        for name in _imports(source):
            path = _module_path(name)
            if path is not None and path not in seen:
                pending.append(path)
            package = _module_path(name.split(".")[0])
            if package is not None and package not in seen:
                pending.append(package)
    return sorted(seen)


def board_modules(board: str) -> list[Path]:
    """The modules `tilltap firmware build --board BOARD` ships (not the board file itself,
    which ships as /board.py source)."""
    board_file = Path("firmware") / "boards" / f"{board}.py"
    roots = [Path("firmware") / "boards" / "__init__.py", board_file]
    return [path for path in import_closure(roots) if path != board_file]
