"""The package layout: imports go downward only (no cycle, the solver does not import the phantoms),
and the docs derive from the code's tables.

A static check (ast over ``src/atomtomo``): every import statement counts, at module level or
inside a function, since an import inside a function that closes a cycle is still a cycle (it
only moves the failure from import time to run time). A submodule importing a name from its own
package's ``__init__`` (``from . import __version__``) is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "atomtomo"

#: Import edges tolerated while another work package moves them (none now).
PENDING: set = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return name
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: {modules of atomtomo it imports}}``."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, is_package)
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                while target and target not in modules:  # `import a.b.c` -> the deepest module
                    target = target.rpartition(".")[0]
                if not target or target == name:
                    continue
                if name.startswith(target + "."):  # a helper from one's own package __init__
                    continue
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    g = import_graph()
    for a, b in PENDING:
        g.get(a, set()).discard(b)
    return g


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_solvers_do_not_import_phantoms(graph):
    bad = sorted((a, b) for a, edges in graph.items() for b in edges
                 if a.startswith("atomtomo.solvers") and b.startswith("atomtomo.phantoms"))
    assert bad == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_docs_options_table_is_the_option_table():
    """docs/solver.md's options table is generated from the method's table, not kept by hand."""
    from atomtomo.potentials import POTENTIALS
    from atomtomo.solvers.adcg_options import ADCG_OPTIONS, POTENTIAL_NAMES
    from atomtomo.solvers.options import markdown_table

    assert set(POTENTIAL_NAMES) == set(POTENTIALS)
    doc = (SRC.parent / "docs" / "solver.md")
    if not doc.exists():
        pytest.skip("no docs in this installation")
    text = doc.read_text()
    start = text.index("<!-- options table: generated from ADCG_OPTIONS -->\n")
    end = text.index("<!-- end of options table -->")
    assert text[start:end].split("\n", 1)[1].strip() == markdown_table(ADCG_OPTIONS)


def test_reconstruct_help_lists_every_option_with_its_default():
    from click.testing import CliRunner

    from atomtomo.cli import cli
    from atomtomo.solvers.adcg_options import ADCG_OPTIONS

    text = CliRunner().invoke(cli, ["reconstruct", "--help"]).output
    lines = {line.split()[0]: line for line in text.splitlines()
             if line.startswith("    ") and line[4:5].strip()}  # not the continuation lines
    for option in ADCG_OPTIONS:
        assert option.name in lines and "[default: " in lines[option.name], option.name
