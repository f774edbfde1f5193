"""The shape of ``pipeline/`` that ARCHITECTURE.md promises: stages as subpackages, imports only downward, no cycles.

A maintainer who adds an import that points up the stage order (or a module past the size limits) learns it here,
with the module and the line, before a reviewer has to.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"

#: Stage order: a subpackage may import the foundation (top-level modules) and subpackages before it, never after.
ORDER = ("store", "ingest", "curate", "layers", "plan", "convert", "review", "publish", "read", "run", "cli")
#: Local tooling sits beside the product: it may use any of it, and only the CLI may reach it (lazily).
DEV = "dev"
#: The one module the package itself may reach (lazily): the readers' entry point.
READERS_ENTRY = "pipeline.read.client"
MAX_TOP_LEVEL_MODULES = 12
MAX_MODULES_PER_SUBPACKAGE = 10
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _group(module: str) -> str:
    """``foundation`` for top-level modules, else the subpackage's name."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "foundation"


def _known(name: str) -> str:
    """The module an imported name lives in (``pipeline.x.Thing`` -> ``pipeline.x``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported pipeline module, line, at module level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            base = node.module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "pipeline"]
        for name in names:
            found.append((_known(name), node.lineno, id(node) in top_level))
    return found


def _rank(group: str) -> int:
    return -1 if group == "foundation" else ORDER.index(group)


def _violation(source: str, target: str, lazy: bool) -> str | None:
    src, dst = _group(source), _group(target)
    if src == dst or (dst == "foundation" and src != "foundation"):
        return None
    if src == DEV:
        return None
    if dst == DEV:
        return None if src == "cli" and lazy else "only pipeline.cli may import pipeline.dev, inside a function"
    if src == "foundation":
        if source == "pipeline" and target == READERS_ENTRY:
            return None  # ``from pipeline import ReleaseClient``: resolved lazily by the package's __getattr__
        return "a top-level module may import only other top-level modules"
    if _rank(dst) > _rank(src):
        return f"{src} comes before {dst} in the stage order {' < '.join(ORDER)}: it may not import it"
    return None


def test_imports_point_down_the_stage_order() -> None:
    problems = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target}: {why}"
        for module, path in MODULES.items()
        for target, line, top in _imports(path)
        if (why := _violation(module, target, lazy=not top))
    ]
    assert not problems, "\n".join(problems)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for target, _, top in _imports(path):
            if top and target != module and not target.startswith(module + "."):
                graph[module].add(target)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_import_cycles_between_subpackages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for target, _, _top in _imports(path):
            src, dst = _group(module), _group(target)
            if src != dst and "foundation" not in (src, dst) and not (src == "cli" and dst == DEV):
                graph[src].add(dst)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_sizes_stay_walkable() -> None:
    top_level = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, sorted(top_level)
    for sub in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        modules = [p for p in sub.glob("*.py") if p.stem != "__init__"] + [
            p for p in sub.iterdir() if p.is_dir() and (p / "__init__.py").exists()
        ]
        assert len(modules) <= MAX_MODULES_PER_SUBPACKAGE, f"{sub.name}: {sorted(m.name for m in modules)}"
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("sub", [*ORDER, DEV])
def test_each_subpackage_says_what_it_owns_and_may_use(sub: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text())) or ""
    assert len(doc) > 40, f"pipeline/{sub}/__init__.py needs a docstring saying what it owns"
    assert "may use" in doc.lower() or "may import" in doc.lower(), f"pipeline/{sub}: say which subpackages it may use"


def _test_names(module: str) -> set[str]:
    """Where a module's direct test may live: ``tests/<kind>/<subpackage>/test_<module>.py`` (a module of a nested
    package such as ``dev/stack`` may share the package's ``test_stack.py``); top-level modules in ``tests/unit``."""
    parts = module.split(".")[1:]
    if len(parts) == 1:
        return {f"unit/test_{parts[0]}.py"}
    sub, stems = parts[0], {parts[-1], *parts[1:-1]}
    return {f"{kind}/{sub}/test_{stem}.py" for kind in ("unit", "integration") for stem in stems}


def test_every_module_has_a_direct_test() -> None:
    tests = Path(__file__).resolve().parents[1]
    present = {str(p.relative_to(tests)) for p in tests.rglob("test_*.py")}
    missing = [
        module for module, path in MODULES.items() if path.name != "__init__.py" and not _test_names(module) & present
    ]
    assert not missing, f"modules without a direct test (tests/unit/<subpackage>/test_<module>.py): {missing}"
