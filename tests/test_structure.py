"""The package's shape: an acyclic import graph, and the bottom layers never import the upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spuriouslab"
BOTTOM = ["activations", "data", "kernels", "nets", "theory"]  # with activations at the very bottom
UPPER = ["experiments", "sweep", "plan", "executors", "runner", "reproduction", "store", "report", "cli"]


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the spuriouslab modules it imports (anywhere in the file, function bodies included)."""
    modules = {_module_name(p, src): p for p in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in modules:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle among modules (a package's ``__init__`` importing its own submodules does not count)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph.get(m, ())):
            if m.startswith(dep + "."):  # a submodule importing a name from its parent package's __init__
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if state.get(dep) is None and (found := visit(dep)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if state.get(m) is None and (found := visit(m)):
            return found
    return None


def test_import_graph_has_no_cycle():
    assert find_cycle(import_graph()) is None, find_cycle(import_graph())


def test_bottom_layers_import_nothing_above_them():
    bad = []
    for module, deps in import_graph().items():
        if _layer(module) in BOTTOM:
            bad += [(module, d) for d in deps if _layer(d) in UPPER]
        if _layer(module) == "activations":  # the very bottom: only itself and the helpers beside it
            bad += [(module, d) for d in deps if _layer(d) in BOTTOM and _layer(d) != "activations"]
    assert not bad, bad


def test_experiments_import_neither_sweep_store_report_nor_cli_nor_each_other():
    bad = []
    builds_on = {"alignment": {"memorization"}, "ridge": {"memorization"}, "probe": {"background_features"}}
    for module, deps in import_graph().items():
        if _layer(module) != "experiments":
            continue
        mine = module.split(".")[2] if len(module.split(".")) > 2 else None
        for d in deps:
            if _layer(d) in ("sweep", "plan", "executors", "runner", "reproduction", "store", "report", "cli"):
                bad.append((module, d))
            other = d.split(".")[2] if _layer(d) == "experiments" and len(d.split(".")) > 2 else None
            if mine and other and other not in (mine, "base", "fields") and other not in builds_on.get(mine, ()):
                bad.append((module, d))
    assert not bad, bad


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "spuriouslab"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kernels" / "__init__.py").write_text("")
    (pkg / "kernels" / "a.py").write_text("from spuriouslab.kernels.b import x\nfrom spuriouslab.sweep import run\n")
    (pkg / "kernels" / "b.py").write_text("def f():\n    from spuriouslab.kernels import a\n")
    (pkg / "sweep.py").write_text("")
    graph = import_graph(pkg)
    assert find_cycle(graph) is not None
    assert "spuriouslab.sweep" in graph["spuriouslab.kernels.a"]


@pytest.mark.parametrize(
    "module",
    [
        "spuriouslab.activations",
        "spuriouslab.kernels",
        "spuriouslab.theory",
        "spuriouslab.nets",
        "spuriouslab.data",
        "spuriouslab.experiments",
    ],
)
def test_every_package_says_what_it_holds(module):
    import importlib

    doc = importlib.import_module(module).__doc__
    assert doc and len(doc.split()) > 10
