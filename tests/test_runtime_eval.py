"""03_eval.py end to end on a tiny real model, and the harness's guarantees around it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import eval_fixture as fx
from mlloop.errors import Findings, MlloopError
from mlloop.layout import Project
from mlloop.formats.eval_score import read_eval_score
from mlloop.jsonio import sha256_file
from mlloop.scores import FRESH, provenance

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

EVAL_OUTPUTS = ("eval_score.json", "trivial_baselines.json", "eval_samples.jsonl", "infer_samples")


def run_eval(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "03_eval.py", *args], cwd=root, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def tree(root: Path, skip=()) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(p.relative_to(root).as_posix().startswith(s) for s in skip)}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One real subprocess run of 03_eval.py, shared by the read-only assertions below."""
    root = fx.build_project(tmp_path_factory.mktemp("e2e") / "proj")
    before = tree(root)
    result = run_eval(root, "--version", "v001")
    return root, before, result


def test_eval_exits_zero_and_writes_only_evaluation_outputs(evaluated):
    root, before, result = evaluated
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "v001: loss=" in result.stdout and "beats the trivial floor: accuracy=0.4 (majority_class)" in result.stdout
    after = tree(root)
    new = {k for k in after if k not in before}
    assert all(k.startswith(tuple(f"Models/Artifacts/v001/{o}" for o in EVAL_OUTPUTS)) for k in new), new
    assert {k: after[k] for k in before} == before  # training outputs, scripts, data untouched
    assert not list((root / "Models/Artifacts/v001").glob(".eval-staging-*"))
    assert not (root / "MAIN_RAN").exists()  # importing the script did not run its main()


def test_eval_score_validates_and_is_fresh(evaluated):
    root, _, _ = evaluated
    project = Project.at(root)
    findings = Findings()
    score = read_eval_score(project, root / "Models/Artifacts/v001/eval_score.json", "v001",
                            primary_metric="accuracy", dataset_id="v1", findings=findings)
    assert findings.problems == [] and score is not None
    assert provenance(project, "v001", score) == (FRESH, "")
    doc = score.doc
    assert doc["version_id"] == "v001" and doc["seed"] == 42 and doc["num_samples"] == len(fx.VALID)
    assert doc["checkpoint_sha256"] == sha256_file(root / "Models/Artifacts/v001/best.ckpt")
    assert doc["eval_script_sha256"] == sha256_file(root / "03_eval.py")
    assert doc["train_val_loss"] == 0.75  # spec.json's best val_loss, beside the eval loss
    assert doc["latency_ms"] > 0 and doc["latency"]["runs"] == 30 and doc["latency"]["batch_size"] == 1


def test_metric_values_are_the_hand_computed_ones(evaluated):
    root, _, _ = evaluated
    doc = json.loads((root / "Models/Artifacts/v001/eval_score.json").read_text())
    values = {m["name"]: m["value"] for m in doc["metrics"]}
    assert [m["name"] for m in doc["metrics"]] == ["loss", "accuracy", "macro_f1"]
    losses = fx.expected_losses()
    assert values["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)
    assert values["accuracy"] == 0.7  # 7 of 10 guesses are right
    # per class (tp, fp, fn): cat (3, 1, 1) dog (2, 1, 1) fox (2, 1, 1) -> F1 6/8, 4/6, 4/6
    assert values["macro_f1"] == pytest.approx((6 / 8 + 4 / 6 + 4 / 6) / 3, abs=1e-12)


def test_eval_samples_one_line_per_valid_sample(evaluated):
    root, _, _ = evaluated
    lines = (root / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == fx.valid_ids()
    assert [(r["target"], r["prediction"]) for r in rows] == fx.VALID
    assert [r["accuracy"] for r in rows] == [float(label == guess) for label, guess in fx.VALID]
    assert [r["loss"] for r in rows] == pytest.approx(fx.expected_losses(), rel=1e-6)


def test_infer_samples_are_the_seeded_draw(evaluated):
    root, _, _ = evaluated
    folder = root / "Models/Artifacts/v001/infer_samples"
    expected = random.Random(42).sample(sorted(fx.valid_ids()), 4)
    assert sorted(p.name for p in folder.iterdir()) == ["0001", "0002", "0003", "0004"]
    drawn = []
    for i, sid in enumerate(expected, start=1):
        sample = folder / f"{i:04d}"
        assert {"input.json", "output.txt", "gt.txt", "meta.json"} <= {p.name for p in sample.iterdir()}
        meta = json.loads((sample / "meta.json").read_text())
        drawn.append(meta["sample_id"])
        assert meta["index"] == i and meta["seed"] == 42 and meta["split"] == "valid"
        assert meta["version_id"] == "v001" and meta["dataset_id"] == "v1"
        assert meta["conditions"]["device"] == "cpu" and meta["config"]["training"] == {"epochs": 1, "batch_size": 4}
        label, guess = fx.VALID[fx.valid_ids().index(sid)]
        assert (sample / "output.txt").read_text() == guess + "\n" and (sample / "gt.txt").read_text() == label + "\n"
        assert meta["scores"]["accuracy"] == float(label == guess)
    assert drawn == expected


def test_trivial_baselines_floor(evaluated):
    root, _, _ = evaluated
    doc = json.loads((root / "Models/Artifacts/v001/trivial_baselines.json").read_text())
    assert doc["dataset_id"] == "v1" and doc["version_id"] == "v001" and doc["num_samples"] == 10
    majority = doc["predictors"][0]
    assert majority["name"] == "majority_class" and majority["fitted"] == {"constant": "cat"}
    # "cat" is right for the 4 cats of 10; F1(cat) = 2*4 / (2*4 + 6) = 8/14, dog and fox 0
    assert {m["name"]: m["value"] for m in majority["metrics"]} == {"accuracy": 0.4,
                                                                    "macro_f1": pytest.approx(8 / 14 / 3)}
    assert doc["floor"] == {"metric": "accuracy", "value": 0.4, "predictor": "majority_class", "higher_is_better": True}
    assert "loss" in doc["not_computable"]


def test_rerun_moves_old_outputs_aside(tmp_path):
    root = fx.build_project(tmp_path / "proj")
    eval_main = _load_eval_main(root)
    first = eval_main(["--version", "v001", "--project", str(root)])
    old = (root / "Models/Artifacts/v001/eval_score.json").read_bytes()
    second = eval_main(["--version", "v001", "--project", str(root), "--device", "cpu"])
    assert first["moved_aside"] is None
    aside = root / second["moved_aside"]
    assert aside.parent == root / "Models/Artifacts/.trash" and aside.name.startswith("v001-eval-")
    assert (aside / "eval_score.json").read_bytes() == old
    assert {p.name for p in aside.iterdir()} == set(EVAL_OUTPUTS)
    assert second["metrics"] == first["metrics"] and second["beats_floor"] is True


def _load_eval_main(root: Path):
    from mlloop.runtime.checkpoint import import_script

    return import_script(root / "03_eval.py", "mlloop_test_eval_" + root.parent.name).main


def _evaluate(root: Path, vid: str = "v001"):
    from mlloop.runtime.evaluation import evaluate_version

    return evaluate_version(root, vid, latency_warmup=1, latency_runs=2)


def test_failed_evaluation_keeps_previous_outputs(tmp_path):
    root = fx.build_project(tmp_path / "proj")
    _evaluate(root)
    before = tree(root)
    broken = fx.TRAIN_SCRIPT.replace('    x, y = batch\n    logits', '    x, y = batch\n    raise ValueError("boom")\n    logits')
    (root / "02_train_v001.py").write_text(broken)
    with pytest.raises(MlloopError) as err:
        _evaluate(root)
    line = next(n for n, text in enumerate(broken.splitlines(), start=1) if "boom" in text)
    assert str(err.value) == f"02_train_v001.py: predict() (line {line}) raised ValueError: boom"
    after = tree(root)
    after.pop("02_train_v001.py"), before.pop("02_train_v001.py")
    assert after == before
    assert not list((root / "Models/Artifacts/v001").glob(".eval-staging-*"))


def test_missing_interface_is_named(tmp_path):
    script = fx.TRAIN_SCRIPT.replace("def write_sample(", "def _write_sample(").replace("def make_batch(", "def _make_batch(")
    root = fx.build_project(tmp_path / "proj", script=script)
    with pytest.raises(MlloopError, match=r"^02_train_v001\.py does not define make_batch\(\), write_sample\(\); "):
        _evaluate(root)
    assert not (root / "Models/Artifacts/v001/eval_score.json").exists()


def test_unknown_metric_is_a_clean_error(tmp_path):
    rules = json.loads(json.dumps(fx.PT_RULES))
    rules["eval_config"]["metrics"].append({"name": "auroc", "higher_is_better": True})
    root = fx.build_project(tmp_path / "proj", pt_rules=rules)
    with pytest.raises(MlloopError) as err:  # an alias of roc_auc, which needs the scores this script lacks
        _evaluate(root)
    assert str(err.value) == ("metric 'roc_auc' cannot be computed: predict() returned no 'scores' for sample 'v000'; "
                              "roc_auc needs it (a {class: probability} dict per record, e.g. the softmax of the logits).")
    rules["eval_config"]["metrics"][-1]["name"] = "my_score"
    root = fx.build_project(tmp_path / "proj2", pt_rules=rules)
    with pytest.raises(MlloopError, match=r"^the rules have 1 problem\(s\), first: .*'my_score' is not a metric mlloop "
                                          r"knows; the closest known metric is 'r2' \(`mlloop metrics` lists them\)"):
        _evaluate(root)


def test_refuses_an_eval_script_that_is_not_the_projects(tmp_path):
    from mlloop.runtime.evaluation import evaluate_version

    root = fx.build_project(tmp_path / "proj")
    other = tmp_path / "03_eval.py"
    other.write_text(fx.EVAL_TEMPLATE.read_text() + "\n# edited\n")
    with pytest.raises(MlloopError, match="is not the project's 03_eval.py"):
        evaluate_version(root, "v001", eval_script=other)


def test_version_argument_and_missing_pieces(tmp_path):
    root = fx.build_project(tmp_path / "proj")
    with pytest.raises(MlloopError, match=r"^'v1' is not a version id"):
        _evaluate(root, "v1")
    with pytest.raises(MlloopError, match=r"^02_train_v002\.py does not exist"):
        _evaluate(root, "v002")
    (root / "Models/Artifacts/v001/best.ckpt").unlink()
    with pytest.raises(MlloopError, match=r"^Models/Artifacts/v001/best\.ckpt: the checkpoint does not exist"):
        _evaluate(root)


def test_baseline_is_evaluated_with_its_own_script(tmp_path):
    root = fx.build_project(tmp_path / "proj", vid="baseline")
    summary = _evaluate(root, "baseline")
    assert summary["version_id"] == "baseline" and summary["eval_score"] == "Models/Artifacts/baseline/eval_score.json"


OCR_SCRIPT = '''"""OCR-like fixture: the "model" reads the record's ``read`` field (a stand-in for decoding)."""
import json
from pathlib import Path

import torch

from mlloop.runtime.checkpoint import load_checkpoint


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path, map_location=device)
    model = torch.nn.Linear(4, 3)
    model.load_state_dict(ckpt["state_dict"])
    return model


def eval_records(prepdata_dir, split="valid"):
    path = Path(prepdata_dir) / split / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_batch(records, prepdata_dir, device):
    return records


def predict(model, batch):
    return [{"prediction": r["read"], "target": r["target"], "loss": float(len(r["target"]))} for r in batch]


def write_sample(record, result, folder, prepdata_dir):
    (folder / "input.txt").write_text(record["id"])
    (folder / "output.txt").write_text(result["prediction"])
'''


def test_text_task_scores_cer_and_its_floor(tmp_path):
    rules = {"seed": 7, "dataset_config": {"dataset_id": "v1"},
             "eval_config": {"primary_metric": "loss", "metrics": ["loss", "cer", "exact_match"], "infer_samples": 2}}
    root = fx.build_project(tmp_path / "proj", script=OCR_SCRIPT, pt_rules=rules)
    spec_path = root / "Models/Artifacts/v001/spec.json"
    spec = json.loads(spec_path.read_text())
    spec["task_type"] = "ocr-recognition"
    spec_path.write_text(json.dumps(spec))
    base = root / "dataset/prepdata/v1"
    train = ["ab", "ab", "c", ""]
    valid = [("ab", "ab"), ("abc", "ab"), ("x", "")]  # (text, what the model reads)
    (base / "train/train.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "target": t}) + "\n" for i, t in enumerate(train)))
    (base / "valid/valid.jsonl").write_text("".join(json.dumps({"id": f"v{i}", "target": t, "read": r}) + "\n"
                                                   for i, (t, r) in enumerate(valid)))
    summary = _evaluate(root)
    values = {m["name"]: m["value"] for m in summary["metrics"]}
    # model edits: 0 + 1 + 1 over 2 + 3 + 1 reference characters
    assert values == {"loss": 2.0, "cer": 2 / 6, "exact_match": 1 / 3}
    doc = json.loads((root / "Models/Artifacts/v001/trivial_baselines.json").read_text())
    # empty string: 6/6 edits; "ab": 0 + 1 + 2 = 3/6. loss is not computable, so cer (next in the rules) is the floor
    assert {p["name"]: {m["name"]: m["value"] for m in p["metrics"]} for p in doc["predictors"]} == {
        "empty_string": {"cer": 1.0, "exact_match": 0.0},
        "most_frequent_string": {"cer": 0.5, "exact_match": 1 / 3}}
    assert doc["floor"] == {"metric": "cer", "value": 0.5, "predictor": "most_frequent_string", "higher_is_better": False}
    assert doc["target"] == "target" and doc["task_family"] == "text"  # task_format.yaml's target_field
    assert summary["beats_floor"] is True
    rows = [json.loads(line) for line in (root / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()]
    assert [r["cer"] for r in rows] == [0.0, 1 / 3, 1.0]
    from mlloop.scores import recompute_mismatch, recompute_with_tolerance

    # the honest score passes the torch-free cross-check, CER included
    assert {m: recompute_with_tolerance(m, rows)[0] for m in values} == pytest.approx(values, rel=1e-9)
    project = Project.at(root)
    assert recompute_mismatch(project, "v001", read_eval_score(project, root / "Models/Artifacts/v001/eval_score.json",
                                                               "v001")) is None
    drawn = [json.loads((root / f"Models/Artifacts/v001/infer_samples/{i:04d}/meta.json").read_text())["sample_id"]
             for i in (1, 2)]
    assert drawn == random.Random(7).sample(["v0", "v1", "v2"], 2)


def test_record_target_hook_says_where_the_target_lives(tmp_path):
    script = fx.TRAIN_SCRIPT + '\n\ndef record_target(record):\n    return record["label"].upper()\n'
    root = fx.build_project(tmp_path / "proj", script=script)
    _evaluate(root)
    doc = json.loads((root / "Models/Artifacts/v001/trivial_baselines.json").read_text())
    assert doc["target"] == "record_target()" and doc["predictors"][0]["fitted"] == {"constant": "CAT"}
    assert doc["fitted_on"] == {"split": "train", "num_samples": len(fx.TRAIN_LABELS)}


def test_the_score_signs_its_outputs_and_inputs(evaluated, tmp_path):
    """Issue 13: a score records the sha256 of eval_samples.jsonl and trivial_baselines.json (edited
    afterwards: tampered), of the training script and the validation index (changed: stale), and
    its metrics can be recomputed from eval_samples.jsonl without torch."""
    import shutil

    from mlloop.checks.evaluation import RECOMPUTABLE, recompute_metric
    from mlloop.scores import STALE, TAMPERED

    root, _, _ = evaluated
    folder = root / "Models/Artifacts/v001"
    doc = json.loads((folder / "eval_score.json").read_text())
    assert doc["eval_samples_sha256"] == sha256_file(folder / "eval_samples.jsonl")
    assert doc["trivial_baselines_sha256"] == sha256_file(folder / "trivial_baselines.json")
    assert doc["train_script_sha256"] == sha256_file(root / "02_train_v001.py")
    assert doc["valid_index_sha256"] == sha256_file(root / "dataset/prepdata/v1/valid/valid.jsonl")
    rows = [json.loads(line) for line in (folder / "eval_samples.jsonl").read_text().splitlines()]
    recomputed = {m["name"]: recompute_metric(m["name"], rows) for m in doc["metrics"] if m["name"] in RECOMPUTABLE}
    assert set(recomputed) == {"loss", "accuracy", "macro_f1"}  # macro_f1: mlloop.bootstrap's confusion counts
    for m in doc["metrics"]:
        if m["name"] in recomputed:
            assert recomputed[m["name"]] == pytest.approx(m["value"], rel=1e-9), m["name"]

    copy = tmp_path / "proj"
    shutil.copytree(root, copy, symlinks=True)
    project = Project.at(copy)

    def state():
        score = read_eval_score(project, copy / "Models/Artifacts/v001/eval_score.json", "v001")
        return provenance(project, "v001", score)

    assert state() == (FRESH, "")
    script = copy / "02_train_v001.py"
    original = script.read_bytes()
    script.write_bytes(original + b"\n# edited after evaluation\nEPOCHS = 99\n")
    assert state() == (STALE, "02_train_v001.py changed since this score was computed")
    script.write_bytes(original)
    index = copy / "dataset/prepdata/v1/valid/valid.jsonl"
    index.write_text("".join(reversed(index.read_text().splitlines(keepends=True))))
    assert state() == (STALE, "the validation data (dataset/prepdata/v1/valid/valid.jsonl) changed since this score was computed")
    samples = copy / "Models/Artifacts/v001/eval_samples.jsonl"
    samples.write_text(samples.read_text() + "\n")
    assert state()[0] == TAMPERED and "eval_samples.jsonl was edited" in state()[1]
