"""The README stays true: its command table matches `mlloop --help`, and CI runs its test command."""

import re
from pathlib import Path

from click.testing import CliRunner

from mlloop.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    section = README.split("## The command line by hand", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `mlloop ([a-z-]+)", section, flags=re.MULTILINE)


def help_commands() -> list[str]:
    out = CliRunner().invoke(cli, ["--help"]).output
    listed = out.split("Commands:", 1)[1]
    return re.findall(r"^  ([a-z-]+)\s", listed, flags=re.MULTILINE)


def test_readme_lists_every_command_once_and_check_first():
    names = readme_commands()
    assert sorted(names) == sorted(help_commands()) == sorted(cli.commands)
    assert len(names) == len(set(names))
    assert names[0] == "check"


def test_readme_and_ci_share_the_test_command():
    assert "uv run mlloop demo" in README and "uv run pytest" in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^uv run pytest\s*$", ci, flags=re.MULTILINE)
