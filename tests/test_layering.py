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
    "runtime": 5, "dns": 5, "dhcp": 5, "vhosts": 5,
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


def _module_name(path: Path) -> str:
    parts = ("vipernet", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph() -> dict[str, set[str]]:
    """Module -> the vipernet modules it imports, every import counted (as above).  ``from
    package import name`` is an edge to the submodule ``name`` if there is one, else to the
    package's ``__init__``."""
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                           for alias in node.names]
            for target in targets:
                found = known(target) if target.startswith("vipernet") else None
                if found is not None and found != module:
                    edges.add(found)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_round_a_cycle() -> None:
    # Within a package too: a lower module that needs something of an upper one declares
    # it as a typing.Protocol (a callback protocol), and shared definitions live in a
    # smaller module both import.  TYPE_CHECKING imports count: they are design too.
    assert _cycles(_module_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert sorted(_cycles(graph)) == [["a", "b", "c"], ["d", "e"]]


def test_the_graph_sees_type_checking_and_relative_imports() -> None:
    graph = _module_graph()
    # tcp/tcb.py names TimeWait only under TYPE_CHECKING
    assert "vipernet.stack.tcp.timewait" in graph["vipernet.stack.tcp.tcb"]
    assert "vipernet.stack.tcp.layer" in graph["vipernet.stack.tcp"]  # the package __init__
