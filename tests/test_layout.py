"""The package's layout rule: a module has one job, at most MAX_LINES lines, and no import cycle
(imports inside functions included)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 450
#: the modules held to the rule here
CHECKED = (
    "_stat_inputs",
    "arch_sweep",
    "arm_roles",
    "arms",
    "attribution",
    "audit",
    "bootstrap",
    "cam_layers",
    "checks",
    "cli.args",
    "cli.loading",
    "cli.main",
    "cli.outputs",
    "cli.parser",
    "cli.run",
    "cli.verdicts",
    "controls",
    "downloads",
    "fair_test",
    "fair_test_figures",
    "fair_test_text",
    "figures",
    "gates",
    "html_page",
    "http_transfer",
    "identities",
    "inference",
    "mitigation_plots",
    "permutation",
    "plotting",
    "publishing",
    "rate_sensitivity",
    "recipe",
    "remedies.builders",
    "remedies.defaults",
    "remedies.established",
    "remedies.established_builders",
    "remedy_summary",
    "remedy_sweep",
    "report_figures",
    "report_html",
    "size_sweep",
    "training",
    "verdict_rule",
    "worlds.base",
    "worlds.custom",
    "worlds.lite",
    "worlds.lite_models",
    "worlds.lite_photos",
    "worlds.paper",
    "worlds.shapes",
    "worlds.shapes_augment",
)


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package)."""
    out = {}
    for path in (SRC / "lingerlab").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _target(name: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` statement of module ``name`` reads from."""
    if not node.level:
        return node.module or ""
    parts = name.split(".")
    base = parts[: len(parts) - node.level + is_pkg]  # a package's "." is itself, a module's its parent
    return ".".join(base + ([node.module] if node.module else []))


@functools.cache
def import_graph() -> dict[str, frozenset[str]]:
    """module -> the package's modules it imports, anywhere in its code (a name imported from a
    package counts as its submodule when there is one)."""
    mods = _modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                target = _target(name, is_pkg, node)
                deps |= {f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names}
        graph[name] = frozenset(d for d in deps if d in mods and d != name)
    return graph


def cycles(graph: dict[str, frozenset[str]] | dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "lingerlab.worlds.lite_models" in graph["lingerlab.arch_sweep"]  # a submodule, imported at the top
    assert "lingerlab.cam_layers" in graph["lingerlab.worlds"]  # imported inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", CHECKED)
def test_no_import_cycle_and_at_most_max_lines(module):
    name = f"lingerlab.{module}"
    path, _ = _modules()[name]
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines (at most {MAX_LINES}): split it along its jobs"
    through = [c for c in cycles(import_graph()) if name in c]
    assert not through, f"{name} is in an import cycle: {through}"
