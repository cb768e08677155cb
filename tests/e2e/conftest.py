"""Fixtures for the Claude Code end-to-end tests: the real `claude` binary against the scripted
model on loopback, in a project made by `mlloop init`.

The binary is looked for in `.claude-code/` (where `.ci/run` installs it:
`npm install --prefix .claude-code @anthropic-ai/claude-code`), then on PATH. Without it the
tests are skipped with that hint, except where CI=1 or MLLOOP_REQUIRE_CLAUDE=1: there they fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from claude_runner import HOW_TO_ENABLE, find_claude, required, run_claude


@pytest.fixture(scope="session")
def claude_bin() -> str:
    found = find_claude()
    if found is None:
        if required():
            pytest.fail(f"{HOW_TO_ENABLE} (required here because CI=1 or MLLOOP_REQUIRE_CLAUDE=1 is set)")
        pytest.skip(HOW_TO_ENABLE)
    return found


@pytest.fixture
def claude(claude_bin, tmp_path_factory):
    """``claude(project, prompt, script, tools=..., args=..., env=...)`` runs one headless turn
    with a fresh HOME, and returns a ``Session`` (result document + the recorded requests)."""

    def run(project: Path, prompt: str, script: list, **kwargs):
        return run_claude(claude_bin, tmp_path_factory.mktemp("home"), project, prompt, script, **kwargs)

    return run


@pytest.fixture
def mlloop_init():
    """``mlloop_init(root, "--lang", "ko")``: the project set-up a user does, in-process."""
    from mlloop.cli import cli

    def run(root: Path, *args: str) -> None:
        result = CliRunner().invoke(cli, ["init", "--project", str(root), *args])
        assert result.exit_code == 0, result.output

    return run
