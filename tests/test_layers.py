"""The package's layers hold: a module imports only from its own layer or below, and there is
no import circle between modules (type-only imports included)."""

import ast
from pathlib import Path

import expansion_scorer

PACKAGE = Path(expansion_scorer.__file__).parent
LAYERS = [
    {"errors", "text", "outputs", "progress", "tracking", "yamldoc"},
    {"config", "data"},
    {"features", "schemas", "model", "settings"},
    {"program"},
    {"training", "serving"},
    {"jobs"},
    {"cli", "docs", "__main__"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (by dotted name), from the source text."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("expansion_scorer"):
                    names.add(node.module)
                    names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("expansion_scorer"))
        found[name] = names
    return {m: {n for n in names if n in found and n != m} for m, names in found.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1]] if len(parts) > 1 else -1


def test_every_import_runs_down_or_across_a_layer() -> None:
    upward = [
        f"{m} -> {n}"
        for m, names in _imports().items()
        for n in names
        if len(m.split(".")) > 1 and _layer(n) > _layer(m)
    ]
    assert upward == []


def test_serving_imports_nothing_of_training() -> None:
    crossing = [
        f"{m} -> {n}"
        for m, names in _imports().items()
        if m.startswith("expansion_scorer.serving")
        for n in names
        if n.startswith("expansion_scorer.training")
    ]
    assert crossing == []


def test_no_import_circle() -> None:
    graph = _imports()
    state: dict[str, int] = {}
    circles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package's __init__ re-exporting its own modules is not a circle between modules
    assert [c for c in circles if not _own_package(c)] == []


def _own_package(circle: str) -> bool:
    names = circle.split(" -> ")
    return any(all(n.startswith(p) for n in names) and p in names for p in names)
