"""The packages of ``vipernet`` import only downward: each may import packages of a lower
layer, never one of its own layer or above (so no import cycle between packages either).
Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "vipernet"

# Lower numbers are lower layers.  Packages on one layer do not know each other.
LAYERS: dict[str, int] = {
    "errors": 0,
    "buffer": 1,
    "wire": 2, "tls": 2, "ssh": 2,
    "link": 3,
    "stack": 4,
    "runtime": 5, "dns": 5, "dhcp": 5,
    "netd": 6, "slirp": 6,
    "netclient": 7, "gateway": 7,
    "socket": 8,
    "runhook": 9, "http": 9,
    "cli": 10,
}


def _package(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(top-level vipernet package, line) for every absolute vipernet import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vipernet" and len(parts) > 1:
                found.append((parts[1], node.lineno))
    return found


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in SRC.rglob("*.py")} - {"__init__", "__main__"}
    assert packages - set(LAYERS) == set(), "give the new package a layer in LAYERS"


def test_packages_import_only_lower_layers() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        here = _package(path)
        if here not in LAYERS:
            continue
        for target, line in _imports(path):
            if target != here and target in LAYERS and LAYERS[target] >= LAYERS[here]:
                wrong.append(f"{path.relative_to(SRC)}:{line}: {here} imports {target}")
    assert wrong == []


def test_relative_imports_stay_inside_their_package() -> None:
    # A relative import cannot climb out of its package unnoticed by the walk above.
    for path in sorted(SRC.rglob("*.py")):
        depth = len(path.relative_to(SRC).parts) - 1  # directories below vipernet/
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level <= depth, f"{path}:{node.lineno} leaves its package"
