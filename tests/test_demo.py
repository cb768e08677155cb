"""`mlloop demo` end to end (tiny data, two versions): the real templates, runtime, checks and report."""

import csv
import json

import pytest
from click.testing import CliRunner

from mlloop.cli import cli


def test_demo_runs_the_whole_loop_and_ends_with_check_ok(tmp_path):
    project = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--project", str(project), "--size", "tiny", "--versions", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    reports = sorted((project / "Models" / "Report").iterdir())
    assert len(reports) == 1 and summary["report"] == f"Models/Report/{reports[0].name}"
    with open(reports[0] / "leaderboard.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["version_id"] for r in rows] == [r["version_id"] for r in summary["leaderboard"]]
    assert sorted(r["version_id"] for r in rows) == ["v001", "v002"]
    assert (reports[0] / "final-analysis.md").is_file()
    assert (reports[0] / "Artifacts" / rows[0]["version_id"] / "best.ckpt").is_file()
    # every version shows its trivial floor (issue 7) and the progress went to stderr
    assert all("floor" in v["floor_text"] for v in summary["versions"])
    assert "[1/15]" in result.stderr and "mlloop check (everything)" in result.stderr
    # v002 differs from its parent by the header and exactly one setting line
    parent = summary["versions"][1]["parent"]
    # (the change-summary header, "# key: value" lines, may differ in length: parent_choice is optional)
    old = [ln for ln in (project / f"02_train_{parent}.py").read_text().splitlines() if not ln.startswith("# ")]
    new = [ln for ln in (project / "02_train_v002.py").read_text().splitlines() if not ln.startswith("# ")]
    changed = [b for a, b in zip(old, new) if a != b]
    assert len(old) == len(new) and len(changed) == 1 and changed[0].startswith("LR = 0.003")
    check = CliRunner().invoke(cli, ["check", "--project", str(project)])
    assert check.exit_code == 0, check.output
    status = CliRunner().invoke(cli, ["status", "--project", str(project)])
    assert status.output.startswith("phase: done")


def test_demo_never_writes_into_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert f"Error: {tmp_path} already exists and is not empty; the demo never writes into an existing project." in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_demo_rejects_an_unknown_task(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--project", str(tmp_path / "x"), "--task", "speech"])
    assert result.exit_code == 1
    assert "Error: no example for 'speech'; choose one of ocr-line-recognition, image-classification, " \
           "tabular-classification" in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("task, primary", [("tabular-classification", "macro_f1"), ("ocr-line-recognition", "cer")])
def test_each_template_runs_from_raw_data_to_check_ok(tmp_path, task, primary):
    """The other two templates through the same chain: the example's 01_data_pipeline.py, the
    baseline smoke test, v001, 03_eval.py, the report and `mlloop check` (one version, tiny data)."""
    project = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--project", str(project), "--task", task, "--size", "tiny",
                                      "--versions", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == task and summary["primary_metric"] == primary
    assert [r["version_id"] for r in summary["leaderboard"]] == ["v001"]
    score = json.loads((project / "Models/Artifacts/v001/eval_score.json").read_text())
    assert primary in {m["name"] for m in score["metrics"]}
    assert CliRunner().invoke(cli, ["check", "--project", str(project)]).exit_code == 0
