"""The frozen evaluation harness on the held-out test split (what `mlloop report` runs for its
top 3): outputs into a new folder outside the version's, with seeded bootstrap intervals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import eval_fixture as fx
from mlloop.runtime.heldout import bootstrap_interval

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def heldout(root, out, *extra):
    return subprocess.run([sys.executable, "-m", "mlloop.runtime.heldout", "--project", str(root), "--version", "v001",
                           "--output-dir", str(out), "--resamples", "300", *extra],
                          cwd=root, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = fx.build_project(tmp_path_factory.mktemp("heldout") / "proj")
    valid = (root / "dataset/prepdata/v1/valid/valid.jsonl").read_text(encoding="utf-8").splitlines()
    test = [json.dumps({**json.loads(line), "id": f"x{i:03d}"}) for i, line in enumerate(valid)]
    (root / "dataset/prepdata/v1/test").mkdir()
    (root / "dataset/prepdata/v1/test/test.jsonl").write_text("\n".join(test) + "\n", encoding="utf-8")
    return root


def test_test_split_evaluation_writes_only_into_its_own_folder(project):
    before = tree(project / "Models/Artifacts")
    out = project / "Models/Report/2026-12-01_10-00/test/v001"
    result = heldout(project, out)
    assert result.returncode == 0, result.stderr
    assert tree(project / "Models/Artifacts") == before  # the version's folder is never touched
    assert sorted(p.name for p in out.iterdir()) == ["eval_samples.jsonl", "eval_score.json", "infer_samples",
                                                      "intervals.json", "trivial_baselines.json"]
    score = json.loads((out / "eval_score.json").read_text(encoding="utf-8"))
    assert score["split"] == "test" and score["version_id"] == "v001"
    ids = [json.loads(line)["id"] for line in (out / "eval_samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert ids and all(i.startswith("x") for i in ids) and score["num_samples"] == len(ids)
    meta = json.loads(next((out / "infer_samples").glob("*/meta.json")).read_text(encoding="utf-8"))
    assert meta["split"] == "test"
    intervals = json.loads((out / "intervals.json").read_text(encoding="utf-8"))["intervals"]
    accuracy = intervals["accuracy"]
    assert accuracy["resamples"] == 300 and accuracy["low"] <= accuracy["value"] <= accuracy["high"]
    assert accuracy["low"] < accuracy["high"]  # the fixture's model is wrong on some samples


def test_test_split_evaluation_refuses_the_version_folder(project):
    result = heldout(project, project / "Models/Artifacts/v001/test")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "writes into a new folder outside Models/Artifacts/" in result.stderr
    assert not (project / "Models/Artifacts/v001/test").exists()


def test_bootstrap_interval_is_seeded_and_recomputes_corpus_metrics():
    results = [{"prediction": p, "target": t, "loss": 0.1} for p, t in
               zip("aabbccabca" * 3, "aabbccccba" * 3)]
    metric = {"name": "macro_f1", "higher_is_better": True}
    first = bootstrap_interval(results, metric, resamples=200, seed=7)
    assert first == bootstrap_interval(results, metric, resamples=200, seed=7)
    assert first != bootstrap_interval(results, metric, resamples=200, seed=8)
    assert 0 < first["low"] < first["high"] < 1 and first["scored_resamples"] == 200
