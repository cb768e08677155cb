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


def test_the_install_commands_work_in_an_empty_folder():
    """`uv add` needs a pyproject.toml: the block starts by making one (checked by hand in an empty
    folder: uv init --bare; uv add --editable <checkout>; .venv/bin/mlloop init)."""
    section = README.split("## Use it in Claude Code", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[0] == "uv init --bare"
    assert commands.index("uv add --editable /path/to/mlloop") > 0
    assert commands[-1] == "mlloop init"
    assert "`uv venv && uv pip install -e /path/to/mlloop`" in section  # the pyproject-free way
