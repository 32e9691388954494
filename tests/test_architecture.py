"""The layers of docs/architecture.md, checked on every import statement of the package (function-level ones too):
no import from a lower layer to a higher one, and no import cycle between subpackages or between modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
#: Layer of each top-level unit of ``ecgfm``, lowest first (docs/architecture.md).
LAYERS = {
    "errors": 0, "config": 0, "leads": 0, "ecg": 0, "version": 0, "files": 0, "printout": 0,
    "labels": 1, "signal": 1, "io": 1, "plotting": 1,
    "datasets": 2,
    "models": 3,
    "training": 4, "evaluation": 4,
    "transfer": 5, "inference": 5, "explain": 5,
    "cli": 6, "serve": 6, "demo": 6, "viewer": 6,
}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every ``ecgfm`` module an import statement in ``path`` names (``from a import b`` names ``a`` and ``a.b``)."""
    module = _module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("ecgfm.")}


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (names that are attributes, not modules, are dropped)."""
    paths = {_module_name(p): p for p in (SRC / "ecgfm").rglob("*.py")}
    return {module: {name for name in _imports(path) if name in paths and name != module}
            for module, path in paths.items()}


def _unit(module: str) -> str:
    return module.split(".")[1]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _graph() if m != "ecgfm"}
    assert units <= set(LAYERS), f"add {sorted(units - set(LAYERS))} to LAYERS and docs/architecture.md"


def test_no_import_goes_up_a_layer():
    upward = sorted(f"{m} -> {t}" for m, targets in _graph().items() if m != "ecgfm" for t in targets
                    if LAYERS[_unit(t)] > LAYERS[_unit(m)])
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


@pytest.mark.parametrize("level", ["units", "modules"])
def test_no_import_cycles(level):
    graph = {m: t for m, t in _graph().items() if m != "ecgfm"}
    if level == "units":
        units: dict[str, set[str]] = {}
        for m, targets in graph.items():
            units.setdefault(_unit(m), set()).update(_unit(t) for t in targets if _unit(t) != _unit(m))
        graph = units
    else:  # a package __init__ re-exporting its modules is not a cycle with them
        graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    assert not _cycles(graph)


def test_no_file_is_a_sprawl():
    long = {str(p.relative_to(SRC)): n for p in (SRC / "ecgfm").rglob("*.py")
            if (n := p.read_text().count("\n")) > 500}
    assert not long, f"files over 500 lines: {long}"
