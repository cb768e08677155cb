"""The CLI's start-up path stays light: no torch, lightning, timm, torchvision or pandas."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "pytorch_lightning", "timm", "torchvision", "pandas", "numpy")

PROBE = """
import sys
from click.testing import CliRunner
from mlloop.cli import cli
args = sys.argv[1:]
result = CliRunner().invoke(cli, args)
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
print("EXIT:" + str(result.exit_code))
"""


def _imports_for(args, cwd):
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    heavy = [line for line in out.stdout.splitlines() if line.startswith("HEAVY:")][0][6:]
    return [m for m in heavy.split(",") if m]


def test_help_imports_nothing_heavy(tmp_path):
    assert _imports_for(["--help"], tmp_path) == []


@pytest.mark.slow
def test_check_imports_nothing_heavy(factory):
    factory.complete(versions=2)
    # numpy only: check recomputes corpus metrics (macro_f1, CER, ...) with mlloop.bootstrap
    assert _imports_for(["check", "--project", str(factory.root)], factory.root) in ([], ["numpy"])


@pytest.mark.slow
def test_rules_and_status_import_nothing_heavy(factory):
    factory.complete(versions=1)
    assert _imports_for(["rules", "--project", str(factory.root)], factory.root) == []
    assert _imports_for(["status", "--project", str(factory.root)], factory.root) in ([], ["numpy"])
