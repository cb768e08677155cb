import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from factory import ProjectFactory  # noqa: E402


@pytest.fixture
def factory(tmp_path) -> ProjectFactory:
    """A fresh project folder; call ``.complete()`` or the step builders on it."""
    return ProjectFactory(tmp_path / "proj")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """``tiny_demo(task, versions=1, *extra) -> (project, summary)``: `mlloop demo --size tiny`
    run once per session (per test process) for each set of arguments; the slow tests that need a
    project trained from raw data share it. Tests must not change it: copy it first."""
    import json

    from click.testing import CliRunner

    from mlloop.cli import cli

    made: dict = {}

    def make(task: str, versions: int = 1, *extra: str):
        key = (task, versions, extra)
        if key not in made:
            project = tmp_path_factory.mktemp("demo") / "demo"
            result = CliRunner().invoke(cli, ["demo", "--project", str(project), "--task", task, "--size", "tiny",
                                              "--versions", str(versions), "--json", *extra])
            assert result.exit_code == 0, result.output
            made[key] = (project, json.loads(result.stdout), result.stderr)
        return made[key]

    return make
