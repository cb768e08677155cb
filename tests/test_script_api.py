"""Project scripts import mlloop only through its public module, mlloop.script (issue 11)."""

import ast
from pathlib import Path

import pytest

import mlloop.script

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*(REPO / "skills").glob("*/templates/**/*.py"),
                  *(REPO / "examples").glob("*/parse.py")])


def mlloop_imports(source: str) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every import of mlloop in ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "mlloop"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mlloop":
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return sorted(found, key=lambda item: item[2])


def api_problems(source: str) -> list[str]:
    problems = []
    for module, names, line in mlloop_imports(source):
        if module != "mlloop.script" or not names:
            problems.append(f"line {line}: imports {module}; import from mlloop.script only")
        problems += [f"line {line}: mlloop.script has no public name {n!r}" for n in names
                     if n not in mlloop.script.__all__]
    return problems


def test_the_scripts_are_found():
    names = {p.relative_to(REPO).as_posix() for p in SCRIPTS}
    assert {"skills/build-baseline/templates/01_data_pipeline.py",
            "skills/progressive-training/templates/03_eval.py",
            "skills/progressive-training/templates/04_final_report.py",
            "skills/build-baseline/templates/train/image_classification.py"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_a_script_imports_mlloop_only_through_mlloop_script(path):
    assert api_problems(path.read_text(encoding="utf-8")) == []


def test_the_check_catches_an_internal_import_a_star_and_an_unknown_name():
    source = ("import torch\nfrom mlloop.script import start\n"
              "def main():\n    from mlloop.runtime.run import start\n"
              "import mlloop.rules\nfrom mlloop.script import *\nfrom mlloop.script import not_there\n")
    assert api_problems(source) == [
        "line 4: imports mlloop.runtime.run; import from mlloop.script only",
        "line 5: imports mlloop.rules; import from mlloop.script only",
        "line 6: mlloop.script has no public name '*'",
        "line 7: mlloop.script has no public name 'not_there'"]


def test_every_public_name_exists_and_the_module_is_light():
    import subprocess
    import sys

    assert all(hasattr(mlloop.script, name) for name in mlloop.script.__all__)
    assert isinstance(mlloop.script.API_VERSION, int)
    heavy = subprocess.run([sys.executable, "-c", "import sys, mlloop.script; print(sorted(m for m in "
                            "('torch', 'lightning', 'timm', 'pandas') if m in sys.modules))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert heavy == "[]"
