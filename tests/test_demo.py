"""`mlloop demo` end to end (tiny data, two versions): the real templates, runtime, checks and report."""

import csv
import json

import pytest
from click.testing import CliRunner

from mlloop.cli import cli

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_loop_and_ends_with_check_ok(tiny_demo, monkeypatch):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # the scripts run as on a user's machine
    project, summary, stderr = tiny_demo("image-classification", 2)
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
    assert "[1/15]" in stderr and "mlloop check (everything)" in stderr
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
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("__pycache__")) == []  # issue 13


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


def test_demo_rejects_an_unknown_or_unfitting_primary_metric(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--project", str(tmp_path / "x"), "--primary-metric", "roc_acu"])
    assert result.exit_code == 1
    assert ("Error: --primary-metric: 'roc_acu' is not a metric mlloop knows; the closest known metric is 'roc_auc' "
            "(`mlloop metrics` lists them).") in result.stderr
    result = CliRunner().invoke(cli, ["demo", "--project", str(tmp_path / "x"), "--primary-metric", "cer"])
    assert result.exit_code == 1
    assert ("Error: --primary-metric: cer does not fit the image-classification example; "
            "`mlloop metrics --task image-classification` lists the metrics that do.") in result.stderr
    assert not (tmp_path / "x").exists()


def test_use_primary_puts_the_metric_in_the_rules():
    from mlloop.demo import use_primary

    rules = {"eval_config": {"primary_metric": "accuracy", "metrics": [{"name": "loss", "higher_is_better": False},
                                                                       "auc"]}}
    use_primary(rules, "roc_auc")
    assert rules["eval_config"] == {"primary_metric": "roc_auc", "metrics": [
        {"name": "loss", "higher_is_better": False}, {"name": "roc_auc", "higher_is_better": True}]}


@pytest.mark.parametrize("task, primary, extra, test_ratio", [
    ("tabular-classification", "roc_auc", ["--primary-metric", "auc"], "0.2"),
    ("ocr-line-recognition", "cer", [], None),
    ("text-classification", "macro_f1", [], "0.2"),
    ("time-series-forecasting", "mase@24", [], "0.2"),
    ("image-segmentation", "miou", [], None)])
def test_each_template_runs_from_raw_data_to_check_ok(tiny_demo, task, primary, extra, test_ratio):
    """The other two templates through the same chain: the example's 01_data_pipeline.py, the
    baseline smoke test, v001, 03_eval.py, the report and `mlloop check` (one version, tiny data);
    the tabular one ranked by ROC AUC from the template's scores (an alias on the command line),
    with a held-out test split that only the report scores."""
    project, summary, _ = tiny_demo(task, 1, *extra, *(["--test-ratio", test_ratio] if test_ratio else []))
    assert summary["task"] == task and summary["primary_metric"] == primary
    assert [r["version_id"] for r in summary["leaderboard"]] == ["v001"]
    score = json.loads((project / "Models/Artifacts/v001/eval_score.json").read_text())
    assert primary in {m["name"] for m in score["metrics"]}
    assert score["split"] == "valid" and "test" not in score["splits_read"]
    assert CliRunner().invoke(cli, ["check", "--project", str(project)]).exit_code == 0
    report = project / summary["report"]
    analysis = (report / "final-analysis.md").read_text(encoding="utf-8")
    assert (report / "report.html").is_file() and (report / "pictures/metric_by_version.png").is_file()
    if test_ratio:
        stats = json.loads((project / "dataset/prepdata/v1/stats.json").read_text())
        assert stats["test_ratio"] == 0.2 and stats["counts"]["test"] > 0
        row = summary["leaderboard"][0]
        low, value, high = (float(row[f"test__{primary}{k}"]) for k in ("__low", "", "__high"))
        assert low <= value <= high
        test_score = json.loads((report / "test/v001/eval_score.json").read_text())
        assert test_score["split"] == "test" and test_score["num_samples"] == stats["counts"]["test"]
        assert "## Held-out test split" in analysis and "optimistic" not in analysis
    else:
        assert "The best version's score is optimistic." in analysis and not (report / "test").exists()
        assert (report / "pictures/errors.png").is_file()  # a text task gets an error list, not a confusion matrix
    if task == "image-segmentation":  # masks are shown as pictures: the gallery shows each overlay
        sample = project / "Models/Artifacts/v001/infer_samples/0001"
        assert {"input.png", "gt.png", "output.png", "overlay.png", "output.txt"} <= {p.name for p in sample.iterdir()}
        assert (report / "pictures/samples.png").is_file()
        from mlloop.report_pictures import _short

        assert _short([[0, 1, 1], [0, 0, 1]]) == "2x3 mask" and _short([0, 1]) == "[0, 1]"
