"""mlloop.formats: each JSON/CSV document has one parser (values plus gaps) and one renderer that
agree with each other, and the file names live in mlloop.layout only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mlloop import layout
from mlloop.errors import Findings
from mlloop.formats.eval_samples import NO_ID, NOT_AN_OBJECT, parse_eval_samples, read_eval_samples, write_eval_samples
from mlloop.formats.eval_score import read_eval_score, score_digest, write_eval_score
from mlloop.formats.intervals import parse_intervals, write_intervals
from mlloop.formats.leaderboard_csv import FIXED_COLUMNS, parse_leaderboard, render_leaderboard
from mlloop.formats.prepdata_stats import counts_of, parse_stats, write_stats
from mlloop.formats.sample_meta import parse_sample_meta, read_sample_meta_quiet, write_sample_meta
from mlloop.formats.spec import dataset_id_of, parse_spec, too_few_steps, write_spec
from mlloop.formats.trivial_baselines import read_floor, write_trivial_baselines
from mlloop.layout import Project

PACKAGE = Path(__file__).resolve().parents[1] / "helpers" / "mlloop"
FILE_NAMES = {layout.SPEC, layout.EVAL_SCORE, layout.EVAL_SAMPLES, layout.TRIVIAL_BASELINES, layout.PREPDATA_STATS,
              layout.LEADERBOARD_CSV, layout.INTERVALS, layout.BEST_CKPT, layout.LAST_CKPT}


def test_file_names_are_spelled_only_in_layout():
    # A name as a whole string constant is a path being built; messages mention names inside longer text.
    spelled = [f"{p.relative_to(PACKAGE)}:{node.lineno} {node.value}"
               for p in sorted(PACKAGE.rglob("*.py")) if p.name != "layout.py"
               for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(node, ast.Constant) and node.value in FILE_NAMES]
    assert spelled == []


# ---- eval_samples.jsonl ----------------------------------------------------------------------

def test_eval_samples_records_and_one_gap_per_broken_line():
    text = '{"id": 1, "prediction": 0}\n\n[1, 2]\n{"prediction": 1}\n{"id": NaN}\n{"id": "b"}\n'
    records, gaps = parse_eval_samples(text, "x.jsonl")
    assert [r["id"] for r in records] == [1, "b"]
    assert [(n, reason) for n, reason in gaps[:2]] == [(3, NOT_AN_OBJECT), (4, NO_ID)]
    assert gaps[2][0] == 5 and "NaN" in gaps[2][1]


def test_eval_samples_round_trip_and_no_nan(tmp_path):
    rows = [{"id": "a", "prediction": 1, "target": 1, "accuracy": 1.0}, {"id": 2, "prediction": "é", "target": "e"}]
    write_eval_samples(tmp_path / "s.jsonl", rows)
    assert read_eval_samples(tmp_path / "s.jsonl") == (rows, [])
    write_eval_samples(tmp_path / "nan.jsonl", [{"id": 1, "cer": float("nan")}])
    assert (tmp_path / "nan.jsonl").read_text() == '{"id": 1, "cer": null}\n'  # strict JSON: never NaN


# ---- eval_score.json and trivial_baselines.json ----------------------------------------------

def test_written_score_reads_back_without_problems_and_signs_itself(tmp_path):
    project = Project(tmp_path)
    folder = project.artifact_dir("v001")
    folder.mkdir(parents=True)
    write_eval_samples(folder / layout.EVAL_SAMPLES, [{"id": 1}])
    write_trivial_baselines(folder, {"floor": {"metric": "accuracy", "value": 0.5, "predictor": "majority",
                                               "higher_is_better": True}})
    doc = write_eval_score(folder, {"dataset_id": "d1", "created_at": "2026-11-21T10:00:00+00:00", "num_samples": 1,
                                    "latency_ms": 1.5,
                                    "metrics": [{"name": "accuracy", "value": 0.75, "higher_is_better": True}]})
    findings = Findings()
    score = read_eval_score(project, project.eval_score_path("v001"), "v001", primary_metric="accuracy",
                            dataset_id="d1", findings=findings)
    assert findings.problems == [] and score.value("accuracy") == 0.75
    assert doc["score_sha256"] == score_digest(json.loads(project.eval_score_path("v001").read_text()))
    assert read_floor(project, "v001").beaten_by(0.75) is True


def test_score_problems_name_the_json_path(tmp_path):
    project = Project(tmp_path)
    path = tmp_path / "eval_score.json"
    path.write_text('{"dataset_id": "d2", "created_at": "yesterday", "num_samples": 0, "latency_ms": 1, '
                    '"metrics": [{"name": "accuracy", "value": 1, "higher_is_better": "yes"}]}')
    findings = Findings()
    read_eval_score(project, path, "v001", dataset_id="d1", findings=findings)
    assert sorted(p.json_path for p in findings.problems) == [
        "$.created_at", "$.dataset_id", "$.metrics[0].higher_is_better", "$.num_samples"]


# ---- infer_samples/<NNNN>/meta.json -------------------------------------------------------------

def test_sample_meta_parser_and_writer(tmp_path):
    write_sample_meta(tmp_path, {"sample_id": "a", "index": 1, "version_id": "v001", "split": "valid", "seed": 7,
                                 "prediction": float("inf")})
    doc = read_sample_meta_quiet(tmp_path)
    assert doc["prediction"] is None and read_sample_meta_quiet(tmp_path / "absent") == {}
    findings = Findings()
    parse_sample_meta(doc, "meta.json", findings, expected={"version_id": "v002", "split": "valid", "seed": None})
    assert [p.line() for p in findings.problems] == ['meta.json::$.version_id: version_id is "v001", expected "v002"']
    bad = Findings()
    assert parse_sample_meta([], "meta.json", bad) is None
    assert [p.message for p in bad.problems] == ["meta.json must be one JSON object, found a list"]


# ---- spec.json -------------------------------------------------------------------------------

def test_spec_parser_reports_each_gap_once():
    findings = Findings()
    doc = {"version_id": "v002", "dataset_id": "d2", "seed": True, "task_type": "", "parent": "v001",
           "best_checkpoint": {"monitor": "val_loss", "mode": "up"},
           "steps": {"too_few": True, "warning": "3 optimizer steps in total is below min_total_steps=200"}}
    assert parse_spec(doc, "spec.json", findings, vid="baseline", dataset_id="d1", baseline=True) is doc
    assert [p.line() for p in findings.problems] == [
        "spec.json::$: required field 'additional_assets' is missing",
        "spec.json::$.version_id: version_id is 'v002' but the folder is baseline; a script takes its version from "
        "its own file name",
        'spec.json::$.dataset_id: dataset_id is "d2" but the loop\'s dataset_id is \'d1\'',
        "spec.json::$.seed: seed must be an integer, found true",
        "spec.json::$.task_type: task_type must be a task type name",
        'spec.json::$.best_checkpoint.mode: best_checkpoint.mode must be "min" or "max", found "up"',
        "spec.json::$.parent: the baseline has no parent; parent must be null"]
    # status, analyze and the check say the same thing about the steps
    assert [w.message for w in findings.warnings] == [f"too few optimizer steps: {too_few_steps(doc)}"]
    assert too_few_steps(doc) == "3 optimizer steps in total is below min_total_steps=200"


def test_written_spec_parses_clean(tmp_path):
    script = tmp_path / "02_train_v001.py"
    script.write_text("print('hi')\n")
    doc = write_spec(tmp_path / "spec.json", version_id="v001", dataset_id="d1", parent="baseline", seed=42,
                     task_type="image_classification", mode="train", script=script, model={}, training={},
                     best_checkpoint={"monitor": "val_loss", "mode": "min"}, additional_assets="not_required",
                     steps={"too_few": False}, libraries={}, device="cpu", device_name="cpu", num_devices=1,
                     num_nodes=1, strategy="auto", precision="32", wall_time_s=1.0, peak_memory_mb=1.0,
                     peak_memory_source="rss", artifact_bytes={})
    findings = Findings()
    parsed = parse_spec(json.loads((tmp_path / "spec.json").read_text()), "spec.json", findings, vid="v001",
                        dataset_id="d1", task_names={"image_classification"})
    assert parsed == doc and findings.problems == findings.warnings == []
    assert dataset_id_of(parsed) == "d1" and dataset_id_of(None) is None


# ---- stats.json ------------------------------------------------------------------------------

def test_stats_parser_and_writer(tmp_path):
    doc = {"dataset_id": "d1", "task_type": "Image Classification", "seed": 42, "split_strategy": "random",
           "valid_ratio": 0.2, "counts": {"train": 8, "valid": 2}, "sources": {}, "created_at": "2026-11-21T10:00:00Z"}
    write_stats(tmp_path, doc)
    findings = Findings()
    parsed = parse_stats(json.loads((tmp_path / layout.PREPDATA_STATS).read_text()), "stats.json", findings,
                         dataset_id="d1", task_type="image_classification",
                         canonical=lambda n: n.lower().replace(" ", "_"))
    assert findings.problems == [] and counts_of(parsed) == {"train": 8, "valid": 2}
    bad = Findings()
    parse_stats({**doc, "counts": {"train": -1}, "valid_ratio": 1}, "stats.json", bad, task_type="regression")
    assert [p.json_path for p in bad.problems] == ["$.task_type", "$.valid_ratio", "$.counts.train", "$.counts.valid"]
    assert counts_of([]) == {}


# ---- intervals.json ------------------------------------------------------------------------

def test_intervals_round_trip_and_gaps(tmp_path):
    write_intervals(tmp_path, "v001", 4, {"accuracy": {"value": 0.5, "low": float("nan"), "high": 0.75}})
    doc = json.loads((tmp_path / layout.INTERVALS).read_text())
    assert doc["split"] == "test" and doc["num_samples"] == 4
    findings = Findings()
    assert parse_intervals(doc, "intervals.json", findings) == {"accuracy": {"value": 0.5, "low": None, "high": 0.75}}
    parse_intervals({"intervals": {"accuracy": 0.5}}, "intervals.json", findings)
    assert [p.json_path for p in findings.problems] == ["$.intervals.accuracy"]


# ---- leaderboard.csv -------------------------------------------------------------------------

def test_leaderboard_round_trip():
    header = list(FIXED_COLUMNS) + ["metric__accuracy"]
    text = render_leaderboard(header, [["v002", "d1", "t", "1.5", "x/best.ckpt", "0.9"],
                                       ["v001", "d1", "t", "", "y", "0.8"]])
    board, gaps = parse_leaderboard(text)
    assert gaps == [] and board.header == header
    assert [(line, r["version_id"], r["metric__accuracy"]) for line, r in board.rows] == [(2, "v002", "0.9"),
                                                                                         (3, "v001", "0.8")]


@pytest.mark.parametrize("text, kind, message, rows", [
    ("", "leaderboard", "leaderboard.csv is empty", None),
    ("version_id,score\nv001,1\n", "columns", "the columns must start with version_id, dataset_id, created_at, "
     "latency_ms, artifact_relpath; found version_id, score", None),
    (",".join(FIXED_COLUMNS) + ",notes\nv001,d,t,1,p,hi\n", "columns", "column(s) notes are not allowed; only "
     "version_id, dataset_id, created_at, latency_ms, artifact_relpath, metric__<name> and (with a test split) "
     "test__<name> columns", ["v001"]),
    (",".join(FIXED_COLUMNS) + "\nv001,d,t,1\n", "leaderboard", "line 2 has 4 cells but the header has 5", []),
    (",".join(FIXED_COLUMNS) + "\nv001,d,t,1,p\nv001,d,t,1,p\n", "leaderboard", "line 3: 'v001' appears twice",
     ["v001"]),
])
def test_leaderboard_gaps(text, kind, message, rows):
    board, gaps = parse_leaderboard(text)
    assert gaps == [(kind, message)]
    assert (None if board is None else [r["version_id"] for r in board.records()]) == rows
