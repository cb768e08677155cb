"""Running the real `claude` binary headless against the scripted model (see conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from model_server import ScriptedModel

REPO = Path(__file__).resolve().parents[2]
LOCAL_CLAUDE = REPO / ".claude-code" / "node_modules" / ".bin" / "claude"
HOW_TO_ENABLE = ("the Claude Code CLI was not found; install it with `npm install --prefix .claude-code "
                 "@anthropic-ai/claude-code` (needs Node.js) to run the Claude Code end-to-end tests")


def required() -> bool:
    """CI=1 or MLLOOP_REQUIRE_CLAUDE=1: a missing binary is a failure, not a skip."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("CI", "MLLOOP_REQUIRE_CLAUDE"))


def find_claude() -> str | None:
    for candidate in (str(LOCAL_CLAUDE) if LOCAL_CLAUDE.exists() else None, shutil.which("claude")):
        if not candidate:
            continue
        try:
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and "Claude Code" in out.stdout:
            return candidate
    return None


@dataclass
class Session:
    result: dict                 # the `--output-format json` result document
    model: ScriptedModel
    stdout: str
    stderr: str

    @property
    def scripted(self):
        return self.model.scripted


def client_env(model: ScriptedModel, home: Path, **extra) -> dict:
    """A clean environment: only what the client needs, nothing from a Claude Code session the
    tests may themselves run in. The venv's bin/ comes first so the Bash tool finds `mlloop`."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8",
            "ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-test-not-a-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", **extra}


def run_claude(claude_bin: str, home: Path, project: Path, prompt: str, script: list,
               tools=("Bash", "Read", "Write", "Edit"), args=(), env=None, timeout=180) -> Session:
    """One headless turn: `claude -p PROMPT --output-format json --allowedTools ...`."""
    with ScriptedModel(script) as model:
        proc = subprocess.run(
            [claude_bin, "-p", prompt, "--output-format", "json", "--allowedTools", ",".join(tools), *args],
            cwd=project, env=client_env(model, home, **(env or {})), capture_output=True, text=True,
            timeout=timeout)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"claude exited {proc.returncode} without a JSON result:\n"
                             f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}") from None
    return Session(result, model, proc.stdout, proc.stderr)
