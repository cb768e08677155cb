"""mlloop's internal imports form layers with no cycle.

The graph is read with ``ast`` from the source: imports at module top and inside functions count
alike, so a cycle cannot hide behind an in-function import. A module may import its own layer
or a lower one, never a higher one; ``mlloop.runtime`` (the torch side, imported by the user's
scripts) leans only on the core below it, never on a reader, a command or the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "helpers" / "mlloop"

# Lowest first: a module imports its own layer or a lower one. "pkg.*" is every module of pkg
# (its __init__ is listed by name). One comment per layer says what belongs there.
LAYERS = {
    # errors, JSON/markdown plumbing, paths (layout), the metric registry, pure helpers that
    # know no document (checkpoint scan, shell parsing, data-intent and parquet-footer helpers)
    "basics": ("mlloop", "mlloop.errors", "mlloop.jsonio", "mlloop.markdown", "mlloop.layout", "mlloop.lock",
               "mlloop.bundle", "mlloop.metrics", "mlloop.shellwrites", "mlloop.checkpoint_scan", "mlloop.profilehints",
               "mlloop.checks.parquet_footer", "mlloop.checks.data_intent"),
    # one module per file the loop reads or writes: its names, parser and renderer (rules.py and
    # taskformat.py own the two files the user writes; stages.py which files mark a step;
    # protection.py the protected-files list, rendered into the skills and docs/contracts.md)
    "formats": ("mlloop.formats", "mlloop.formats.*", "mlloop.rules", "mlloop.taskformat", "mlloop.stages",
                "mlloop.protection"),
    # the scripts' harness (torch side), and the bootstrap statistic on evaluation records,
    # which recomputes metrics through runtime.metrics
    "runtime": ("mlloop.runtime", "mlloop.runtime.*", "mlloop.bootstrap"),
    # read a project and judge it: scores, leaderboard, comparisons, the parent choice, checks, status
    "readers": ("mlloop.scores", "mlloop.leaderboard", "mlloop.compare", "mlloop.parent_choice",
                "mlloop.heldout", "mlloop.state", "mlloop.checks", "mlloop.checks.*"),
    # one user-facing action each: they write files and say what they did
    "commands": ("mlloop.analysis", "mlloop.authoring", "mlloop.final_report", "mlloop.report_html",
                 "mlloop.report_pictures", "mlloop.demo", "mlloop.install", "mlloop.hooks", "mlloop.guard",
                 "mlloop.loadtest", "mlloop.profiling_draft", "mlloop.script"),
    # parses arguments, calls one command, prints
    "cli": ("mlloop.cli", "mlloop.__main__"),
}
# What mlloop.runtime may import besides itself: the core.
RUNTIME_MAY_USE = ("basics", "formats", "runtime")

# Imports inside a function on purpose (every other internal import is at module top).
LAZY_ON_PURPOSE = {
    "mlloop.cli": "each invocation loads only the command it runs",
    "mlloop.hooks": "PreToolUse runs before every tool call; only SessionStart and Stop load status and checks",
}

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    for name, members in LAYERS.items():
        for m in members:
            if module == m or (m.endswith(".*") and module.rsplit(".", 1)[0] == m[:-2]):
                return name
    return None


def _targets(module: str, node: ast.stmt) -> list[str]:
    """The mlloop modules one import statement of ``module`` loads."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        # `from . import markdown` imports the submodule, `from .x import name` the module x.
        submodules = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
        targets = submodules or [source]
    found = []
    for target in targets:
        while target and target not in MODULES and target.startswith("mlloop."):
            target = target.rsplit(".", 1)[0]  # `import mlloop.runtime.metrics.x` style names
        if target in MODULES and target != module:
            found.append(target)
    return found


def imports_of(module: str) -> set[str]:
    """Every mlloop module ``module`` imports, at top or inside a function."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    return {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
            for t in _targets(module, node)}


GRAPH = {m: imports_of(m) for m in MODULES}


def function_level_imports(module: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` of each mlloop import inside a function or class body."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    top |= {id(n) for node in tree.body if isinstance(node, (ast.If, ast.Try)) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        internal = (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("mlloop"))) \
            or (isinstance(node, ast.Import) and any(a.name.startswith("mlloop") for a in node.names))
        if internal and id(node) not in top:
            out += [(node.lineno, target) for target in _targets(module, node)]
    return out


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_layer_table_names_only_existing_modules():
    listed = [m for members in LAYERS.values() for m in members if not m.endswith(".*")]
    assert [m for m in listed if m not in MODULES] == []


def test_internal_imports_are_at_module_top():
    lazy = [f"{m}:{line} imports {target}" for m in MODULES if m not in LAZY_ON_PURPOSE
            for line, target in function_level_imports(m)]
    assert lazy == []


def test_no_import_cycle():
    cycles, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_imports_go_down_the_layers():
    order = list(LAYERS)
    upward = [f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})"
              for m, targets in sorted(GRAPH.items()) for t in sorted(targets)
              if order.index(layer_of(t)) > order.index(layer_of(m))]
    assert upward == []


def test_runtime_leans_only_on_the_core():
    outside = [f"{m} imports {t} ({layer_of(t)})" for m, targets in sorted(GRAPH.items())
               if m == "mlloop.runtime" or m.startswith("mlloop.runtime.")
               for t in sorted(targets) if layer_of(t) not in RUNTIME_MAY_USE]
    assert outside == []


@pytest.mark.parametrize("source, expected", [
    ("from ..errors import MlloopError\n", {"mlloop.errors"}),
    ("def f():\n    from .context import CheckContext\n", {"mlloop.checks.context"}),
    ("from .. import markdown as md\n", {"mlloop.markdown"}),
    ("import mlloop.runtime.metrics\n", {"mlloop.runtime.metrics"}),
])
def test_the_graph_sees_every_kind_of_import(tmp_path, monkeypatch, source, expected):
    # The tests above are only as good as this reader: a missed import would hide a cycle.
    (tmp_path / "probe_fake.py").write_text(source, encoding="utf-8")
    monkeypatch.setitem(MODULES, "mlloop.checks.probe_fake", tmp_path / "probe_fake.py")
    assert imports_of("mlloop.checks.probe_fake") == expected
