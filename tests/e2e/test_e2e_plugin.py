"""The repository installs as a Claude Code plugin (issue 6, case 6).

`claude plugin validate --strict` passes on the repository and on its two manifests; the client's
projected on-invoke token cost of each skill stays under the 5,000 tokens it re-attaches after
compaction; and a session started with `--plugin-dir` runs the plugin's hooks and expands
`/mlloop:<skill>` to our SKILL.md.
"""

import re
import subprocess
import sys

import pytest

from claude_runner import REPO, client_env
from model_server import ScriptedModel, text

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

SKILLS = ("build-baseline", "progressive-training")


def run_cli(claude_bin, tmp_path, *args):
    with ScriptedModel([]) as model:  # nothing here talks to a model; the env is just kept clean
        return subprocess.run([claude_bin, *args], cwd=REPO, env=client_env(model, tmp_path), capture_output=True,
                              text=True, timeout=120)


@pytest.mark.parametrize("target", [".", ".claude-plugin/plugin.json", ".claude-plugin/marketplace.json"])
def test_plugin_validates_strictly(claude_bin, tmp_path, target):
    out = run_cli(claude_bin, tmp_path, "plugin", "validate", "--strict", str(REPO / target))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation passed" in out.stdout


def tokens(value: str) -> float:
    return float(value[:-1]) * 1000 if value.endswith("k") else float(value)


def test_each_skill_costs_under_5000_tokens_on_invoke(claude_bin, tmp_path):
    out = run_cli(claude_bin, tmp_path, "--plugin-dir", str(REPO), "plugin", "details", "mlloop")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"Skills \(2\)\s+build-baseline, progressive-training", out.stdout), out.stdout
    assert re.search(r"Hooks \(3\)\s+SessionStart, PreToolUse, Stop", out.stdout), out.stdout
    costs = {m.group(1): tokens(m.group(3)) for m in
             re.finditer(r"^\s+([a-z-]+)\s+~([\d.]+k?)\s+~([\d.]+k?)\s*$", out.stdout, re.MULTILINE)}
    assert set(costs) == set(SKILLS), out.stdout
    for skill, cost in costs.items():
        assert cost < 5000, f"{skill}: projected on-invoke cost ~{cost:.0f} tokens"


def test_plugin_hooks_and_skills_work_without_mlloop_init(factory, claude):
    """A project with no .claude/ of its own: context and skill come from the plugin."""
    factory.rawdata()
    session = claude(factory.root, "/mlloop:build-baseline", [[text("Starting.")]],
                     args=("--plugin-dir", str(REPO)), env={"MLLOOP_PYTHON": sys.executable})
    first = session.scripted[0]
    assert "SessionStart hook additional context: mlloop status" in first.context_text()
    expanded = first.last_user_text()
    assert f"Base directory for this skill: {REPO}/skills/build-baseline" in expanded
    body = (REPO / "skills/build-baseline/SKILL.md").read_text(encoding="utf-8").split("\n---\n", 1)[1]
    # The protected-files markers are HTML comments, which a client may leave out of what it shows.
    assert all(line in expanded for line in body.splitlines()
               if line.strip() and "$" not in line and not line.strip().startswith("<!--"))
