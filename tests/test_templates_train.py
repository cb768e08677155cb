"""The training templates end to end on tiny generated data, on CPU, offline (pretrained=False).

Each template: smoke test as 02_train_baseline.py -> copied to 02_train_v001.py, 1 epoch ->
evaluated by the shared harness (03_eval's evaluate_version) -> `mlloop check`. Then the ways the
smoke test must stop (contract, probe), the retry history, too few steps, and DDP on 2 CPU processes.
"""

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlloop.errors import MlloopError
from mlloop.bundle import template
from mlloop.layout import Project
from mlloop.markdown import bullets
from mlloop.runtime.checkpoint import load_checkpoint
from mlloop.runtime.contract import ContractError
from mlloop.runtime.run import entry
from train_fixture import (TRAIN_TEMPLATES, audio_prepdata, detection_prepdata, image_prepdata, install_script,  # noqa: F401
                           load_script, ocr_prepdata, one_thread, seg_prepdata, series_prepdata, tabular_prepdata, text_prepdata,
                           v001_header, write_rules)

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
INTERFACE = ("load_for_eval", "eval_records", "make_batch", "predict", "write_sample", "main")
SPEC_KEYS = {"version_id", "dataset_id", "parent", "seed", "task_type", "mode", "script", "script_sha256", "model",
             "training", "best_checkpoint", "additional_assets", "steps", "libraries", "device", "num_devices",
             "num_nodes", "precision", "wall_time_s", "peak_memory_mb", "artifact_bytes", "created_at"}


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def digests(folder: Path) -> dict:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files(folder)}


def report_of(root: Path) -> str:
    return (root / "Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md").read_text(encoding="utf-8")


def spec_of(root: Path, vid: str) -> dict:
    return json.loads((root / f"Models/Artifacts/{vid}/spec.json").read_text(encoding="utf-8"))


# ---- the files themselves ------------------------------------------------------------------------

# Detection writes its target encoding, decoding and NMS out in the file (no library hides them).
MAX_LINES = {"object_detection": 330}


@pytest.mark.parametrize("name", sorted(TRAIN_TEMPLATES))
def test_template_is_a_plain_importable_script(name):
    source = TRAIN_TEMPLATES[name].read_text(encoding="utf-8")
    tree = ast.parse(source)
    assert len(source.splitlines()) <= MAX_LINES.get(name, 300)
    assert "Usage" in ast.get_docstring(tree) and "02_train_baseline.py" in ast.get_docstring(tree)
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert set(INTERFACE) <= defined
    for node in tree.body:  # no work at import: only imports, constants, defs, classes and the guard
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef, ast.ClassDef, ast.If, ast.Expr)), \
            ast.dump(node)[:80]
        if isinstance(node, ast.If):
            assert ast.unparse(node.test) == "__name__ == '__main__'"
    for line in source.splitlines():  # every setting says why
        if line[:1].isupper() and " = " in line and line.split(" = ")[0].isupper() and \
                line.split(" = ")[0] not in ("TASK_TYPES", "FROM_RULES", "MEAN, STD"):
            assert "#" in line, f"{name}: setting without a reason: {line}"
    assert "{{" not in source and "{%" not in source  # no Jinja


# ---- end to end ------------------------------------------------------------------------------------

def run_loop(root: Path, template: str, extra=()):
    """Smoke test, then v001 for one epoch, then the frozen evaluation; returns both summaries."""
    baseline = load_script(install_script(root, template), f"t_{template}_baseline")
    smoke = baseline.main(["--NUM_WORKERS=0", *extra])
    before = digests(root / "Models/Artifacts/baseline")
    v001 = load_script(install_script(root, template, "02_train_v001.py", v001_header()), f"t_{template}_v001")
    trained = v001.main(["--NUM_WORKERS=0", *extra])
    assert digests(root / "Models/Artifacts/baseline") == before  # the copy wrote into v001, not the baseline
    from mlloop.runtime.evaluation import evaluate_version

    evaluated = evaluate_version(root, "v001", eval_script=root / "03_eval.py", latency_warmup=1, latency_runs=2)
    return smoke, trained, evaluated


def check_training_outputs(root: Path, vid: str, asset: str):
    folder = root / "Models/Artifacts" / vid
    names = files(folder)
    assert {"best.ckpt", "last.ckpt", "spec.json", "logs/version_0/metrics.csv", "logs/version_0/hparams.yaml",
            f"additional_assets/{asset}"} <= set(names)
    assert not any(n.startswith("logs/version_1") or "-v1" in n for n in names)
    spec = spec_of(root, vid)
    assert SPEC_KEYS <= set(spec) and spec["version_id"] == vid and spec["dataset_id"] == "v1"
    assert spec["additional_assets"] == [asset] and spec["best_checkpoint"]["monitor"] == "val_loss"
    assert spec["precision"] == "32-true" and spec["device"] == "cpu"
    assert spec["artifact_bytes"]["best.ckpt"] < spec["artifact_bytes"]["last.ckpt"]
    best = load_checkpoint(folder / "best.ckpt")  # the evaluation's own loader: weights only, no fallback
    assert type(best["hyper_parameters"]) is dict
    assert "optimizer_states" in torch.load(folder / "last.ckpt", weights_only=True)
    return spec


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "03_eval.py").write_text(template("03_eval.py").read_text(encoding="utf-8"), encoding="utf-8")
    return root


def test_image_classification_end_to_end(project):
    write_rules(project, "image-classification",
                {"backbone": "test_resnet", "image_size": 16, "expected_num_classes": 3, "expected_stride": 16},
                metrics=["loss", "accuracy"], primary="accuracy")
    image_prepdata(project)
    smoke, trained, evaluated = run_loop(project, "image_classification")
    assert smoke["overall_result"] == "PASS" and smoke["optimal_batch_size"] == 8
    report = report_of(project)
    fields = bullets(report)
    assert (fields["overall_result"], fields["contract_result"], fields["probe_result"]) == ("PASS", "PASS", "PASS")
    assert fields["optimal_batch_size"] == "8" and fields["train_batch_size"] == "8"
    assert "| num_classes | 3 | 3 | PASS |" in report and "| stride | 16 | 16 | PASS |" in report
    assert "| 8 | PASS | 2 |" in report  # the search's trial: batch 8, 2 steps (search_steps)
    spec = check_training_outputs(project, "baseline", "label_map.json")
    assert spec["mode"] == "smoke" and spec["parent"] is None and spec["smoke_test"]["probe"]["status"] == "PASS"
    spec = check_training_outputs(project, "v001", "label_map.json")
    assert spec["mode"] == "train" and spec["parent"] == "baseline" and spec["training"]["batch_size"] == 8
    assert spec["settings"]["BACKBONE"] == {"value": "test_resnet", "source": "rules:model_config.backbone"}
    assert trained["version_id"] == "v001" and evaluated["num_samples"] == 12
    names = {m["name"] for m in evaluated["metrics"]}
    assert names == {"loss", "accuracy"}
    sample = project / "Models/Artifacts/v001/infer_samples/0001"
    assert {"input.png", "output.txt", "gt.txt", "meta.json"} <= {p.name for p in sample.iterdir()}
    from mlloop.checks import run_check

    for target in ("baseline", "v001"):
        findings = run_check(Project(project.resolve()), target)
        assert findings.ok, [p.line() for p in findings.problems]


def test_ocr_recognition_end_to_end(project):
    write_rules(project, "ocr-recognition",
                {"vision_backbone": "test_efficientnet", "vision_backbone_out_indices": [1], "H_TARGET": 16,
                 "W_BUCKETS": [32, 48], "MAX_TOKENS": 4, "expected_stride": 4, "expected_channels": 24,
                 "expected_seq_len": 8},
                smoke={"train_samples": 16, "valid_samples": 12}, metrics=["loss", "cer", "exact_match"], primary="cer")
    ocr_prepdata(project, n_train=20, n_valid=8)
    smoke, _, evaluated = run_loop(project, "ocr_recognition")
    report = report_of(project)
    assert smoke["probe"] == "PASS" and "| channels | 24 | 24 | PASS |" in report
    assert "- valid_samples: 8 (asked for 12, the split has 8: all of them are used)" in report
    assert bullets(report)["metric"].startswith("cer ")
    spec = check_training_outputs(project, "v001", "charset.json")
    charset = json.loads((project / "Models/Artifacts/v001/additional_assets/charset.json").read_text())
    assert charset["blank_index"] == 0 and set(charset["charset"]) <= set("0123456789")
    assert spec["model"]["vision_backbone"] == "test_efficientnet" and spec["model"]["out_indices"] == [1]
    assert {m["name"] for m in evaluated["metrics"]} == {"loss", "cer", "exact_match"}
    first = project / "Models/Artifacts/v001/infer_samples/0001"
    assert (first / "input.png").is_file() and (first / "gt.txt").read_text().strip().isdigit()


@pytest.mark.parametrize("regression", [False, True])
def test_tabular_end_to_end(project, regression):
    task = "tabular-regression" if regression else "tabular-classification"
    write_rules(project, task, {"expected_num_outputs": 1 if regression else 2},
                metrics=["loss", "rmse", "r2"] if regression else ["loss", "accuracy"],
                primary="rmse" if regression else "accuracy")
    tabular_prepdata(project, regression=regression)
    smoke, trained, evaluated = run_loop(project, "tabular")
    assert smoke["probe"] == "PASS"
    assert bullets(report_of(project))["metric"].startswith("r2 " if regression else "accuracy ")
    check_training_outputs(project, "v001", "feature_encoding.json")
    predictions = [json.loads(line) for line in
                   (project / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()]
    assert all(isinstance(p["prediction"], float if regression else str) for p in predictions)
    assert evaluated["num_samples"] == 12


def test_text_classification_end_to_end(project):
    write_rules(project, "text-classification", {"expected_num_classes": 3, "expected_encoder": "cnn"},
                smoke={"learnability_probe": {"max_steps": 40}},
                training={"epochs": 8, "batch_size": 8, "min_total_steps": 8},
                metrics=["loss", "accuracy", "macro_f1", "roc_auc", "log_loss"], primary="macro_f1")
    text_prepdata(project)
    smoke, _, evaluated = run_loop(project, "text_classification", ["--MIN_FREQUENCY=1"])
    assert smoke["overall_result"] == "PASS" and smoke["probe"] == "PASS"
    assert "| num_classes | 3 | 3 | PASS |" in report_of(project)
    spec = spec_of(project, "v001")
    assert sorted(spec["additional_assets"]) == ["label_map.json", "tokenizer.json"] and spec["mode"] == "train"
    assets = project / "Models/Artifacts/v001/additional_assets"
    vocab = json.loads((assets / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert vocab["[PAD]"] == 0 and vocab["[UNK]"] == 1 and "excellent" in vocab
    valid_only = {w.strip(".").lower() for r in (project / "dataset/prepdata/v1/valid/valid.jsonl").read_text().splitlines()
                  for w in json.loads(r)["input"].split()} - {w.strip(".").lower() for r in
                  (project / "dataset/prepdata/v1/train/train.jsonl").read_text().splitlines()
                  for w in json.loads(r)["input"].split()}
    assert not valid_only & set(vocab)  # built from the training split only
    values = {m["name"]: m["value"] for m in evaluated["metrics"]}
    assert set(values) == {"loss", "accuracy", "macro_f1", "roc_auc", "log_loss"}
    assert values["macro_f1"] > 0.8 and values["roc_auc"] > 0.9  # the class words are easy; a floor scores ~0.33
    first = json.loads((project / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()[0])
    assert set(first["scores"]) == {"negative", "neutral", "positive"} and abs(sum(first["scores"].values()) - 1) < 1e-5
    sample = project / "Models/Artifacts/v001/infer_samples/0001"
    assert {"input.txt", "output.txt", "gt.txt", "scores.txt"} <= {p.name for p in sample.iterdir()}
    (assets / "tokenizer.json").write_text(json.dumps({"changed": True}), encoding="utf-8")
    script = load_script(project / "02_train_v001.py", "t_text_reload")
    with pytest.raises(MlloopError, match="not the tokenizer this checkpoint was trained with"):
        script.load_for_eval(str(project / "Models/Artifacts/v001/best.ckpt"), "cpu")


@pytest.mark.parametrize("encoder, pool", [("transformer", "mean"), ("cnn", "mean"), ("cnn", "max")])
def test_text_classifier_encoders_pool_over_real_tokens_only(encoder, pool):
    script = load_script(TRAIN_TEMPLATES["text_classification"], f"t_text_{encoder}_{pool}")
    model = script.TextClassifier({"vocab_size": 20, "max_length": 8, "encoder": encoder, "embed_dim": 8, "hidden": 16,
                                   "layers": 2, "kernel_size": 3, "heads": 2, "pool": pool, "dropout": 0.0,
                                   "num_classes": 3, "classes": ["a", "b", "c"], "lr": 1e-3, "weight_decay": 0.0,
                                   "label_smoothing": 0.0, "tokenizer_sha256": ""}).eval()
    ids = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0]])  # the same text in a batch with a longer one
    with torch.no_grad():
        assert torch.allclose(model(ids), model(padded), atol=1e-5)
        assert model(script.pad_batch([[5, 6, 7], [3]])).shape == (2, 3)
    with pytest.raises(MlloopError, match="ENCODER must be 'cnn' or 'transformer'"):
        script.TextClassifier({**model.hparams, "encoder": "lstm"})
def test_time_series_forecasting_end_to_end(project):
    write_rules(project, "time-series-forecasting", {"context_length": 48, "expected_horizon": 12},
                training={"epochs": 6}, metrics=["loss", "mase@24", "smape", "mae"], primary="mase@24",
                dataset={"split_strategy": "time"})
    series_prepdata(project)
    smoke, trained, evaluated = run_loop(project, "time_series_forecasting")
    assert smoke["overall_result"] == "PASS" and smoke["probe"] == "PASS"
    assert "| horizon | 12 | 12 | PASS |" in report_of(project)
    spec = check_training_outputs(project, "v001", "forecast_window.json")
    assert spec["settings"]["CONTEXT"] == {"value": 48, "source": "rules:model_config.context_length"}
    values = {m["name"]: m["value"] for m in evaluated["metrics"]}
    assert set(values) == {"loss", "mase@24", "smape", "mae"}
    floors = json.loads((project / "Models/Artifacts/v001/trivial_baselines.json").read_text())
    assert [p["name"] for p in floors["predictors"]] == ["naive", "seasonal_naive@24"]
    assert floors["floor"]["predictor"] == "seasonal_naive@24"
    assert values["mase@24"] < floors["floor"]["value"]  # a daily season plus noise: averaging days beats repeating one
    row = json.loads((project / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()[0])
    assert len(row["prediction"]) == len(row["target"]) == 12 and len(row["history"]) == 48
    sample = project / "Models/Artifacts/v001/infer_samples/0001"
    assert {"input.json", "output.json", "gt.json", "plot.png", "meta.json"} <= {p.name for p in sample.iterdir()}
    assert (sample / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from mlloop.checks import run_check

    for target in ("baseline", "v001"):
        findings = run_check(Project(project.resolve()), target)
        assert findings.ok, [p.line() for p in findings.problems]


def test_a_context_longer_than_the_clean_rows_is_one_clear_error(project):
    write_rules(project, "time-series-forecasting", dataset={"split_strategy": "time"})
    series_prepdata(project, context=24)
    script = load_script(install_script(project, "time_series_forecasting"), "t_ts_long_context")
    with pytest.raises(MlloopError, match=r"^record 's\d-t00\d\d': CONTEXT 48 reads the rows before row \d\d of "
                                          r"series/shared/s\d.csv, but only 24 of them are checked clean "
                                          r"\(meta.context_rows\); lower CONTEXT to at most 24\.$"):
        script.main(["--CONTEXT=48"])


# ---- where the smoke test stops, and the retry history -------------------------------------------

def test_a_contract_fail_stops_before_the_probe_and_the_search(project):
    write_rules(project, "image-classification", {"backbone": "test_resnet", "image_size": 16, "expected_num_classes": 5})
    image_prepdata(project, n_train=12, n_valid=6)
    script = load_script(install_script(project, "image_classification"), "t_contract_fail")
    with pytest.raises(ContractError, match=r"model contract FAIL: num_classes: observed 3, expected 5; fix the model"):
        script.main(["--NUM_WORKERS=0"])
    report = report_of(project)
    fields = bullets(report)
    assert (fields["overall_result"], fields["contract_result"]) == ("FAIL", "FAIL")
    assert (fields["probe_result"], fields["search_result"], fields["smoke_run_result"]) == ("NOT RUN",) * 3
    assert fields["stopped_at"] == "model contract"
    assert "| num_classes | 5 | 3 | FAIL | observed 3, expected 5 |" in report
    assert not any(name.endswith(".ckpt") or name == "spec.json" for name in files(project / "Models/Artifacts/baseline"))


def test_a_pipeline_that_cannot_learn_fails_the_probe_then_the_retry_passes(project, capsys):
    write_rules(project, "tabular-classification", smoke={"learnability_probe": {"max_steps": 30}})
    tabular_prepdata(project)
    script = load_script(install_script(project, "tabular"), "t_probe_fail")
    assert entry(script.main, ["--LR=0.0"]) == 1  # the __main__ guard: one Error line, exit 1
    err = capsys.readouterr().err
    assert err.startswith("Error: learnability probe FAIL after 30 steps on 8 samples") and "learning rate is 0" in err
    report = report_of(project)
    fields = bullets(report)
    assert (fields["overall_result"], fields["probe_result"], fields["search_result"]) == ("FAIL", "FAIL", "NOT RUN")
    assert fields["diagnosis"].startswith("the optimizer's learning rate is 0")
    assert "### Attempt 1\n- attempt: 1\n- error_summary: ProbeError: learnability probe FAIL" in report
    assert not (project / "Models/Artifacts/baseline/best.ckpt").exists()

    summary = script.main(["--RETRY_CAUSE=LR was 0, nothing could change", "--RETRY_CHANGE=LR 0.0 -> 3e-3"])
    assert summary["overall_result"] == "PASS"
    report = report_of(project)
    assert bullets(report)["overall_result"] == "PASS"
    assert "### Attempt 1" in report and "- status: FAIL" in report  # the history survived the rerun
    assert ("### Attempt 2\n- attempt: 2\n- error_summary: none\n- root_cause_hypothesis: LR was 0, nothing could "
            "change\n- code_change_summary: LR 0.0 -> 3e-3\n- status: PASS") in report


def test_a_failed_version_keeps_its_retry_report_across_the_reset(project):
    write_rules(project, "tabular-classification", training={"batch_size": 8})
    tabular_prepdata(project)
    script = load_script(install_script(project, "tabular", "02_train_v001.py", v001_header()), "t_v001_retry")
    with pytest.raises(ValueError, match="Invalid learning rate"):
        script.main(["--LR=-1.0"])
    retry = project / "Models/Artifacts/v001/_tests/train_retry_report.md"
    assert "- status: FAIL" in retry.read_text() and "ValueError: Invalid learning rate: -1.0" in retry.read_text()
    script.main(["--RETRY_CAUSE=negative LR", "--RETRY_CHANGE=LR -1.0 -> 3e-3"])
    text = retry.read_text()
    assert "## Attempt 1" in text and "## Attempt 2\n- attempt: 2\n- error_summary: none" in text
    assert (project / "Models/Artifacts/v001/best.ckpt").is_file()


def test_a_killed_run_and_its_retry_leave_a_retry_report(project, monkeypatch):
    """A run killed without an error records nothing; its retry writes the history when it starts."""
    from mlloop.checks import run_check
    from mlloop.runtime import smoke_retry_reports, run as run_module

    write_rules(project, "tabular-classification", training={"batch_size": 8})
    tabular_prepdata(project)
    script = load_script(install_script(project, "tabular", "02_train_v001.py", v001_header()), "t_v001_killed")
    folder = project / "Models/Artifacts/v001"
    (folder / "lightning_logs").mkdir(parents=True)  # what the killed first run left behind
    retry = folder / "_tests/train_retry_report.md"

    def killed(*args, **kwargs):
        assert smoke_retry_reports.IN_PROGRESS in retry.read_text()  # on disk before the work starts
        raise KeyboardInterrupt  # like a kill: no exception handler records it

    monkeypatch.setattr(run_module, "run_training", killed)
    with pytest.raises(KeyboardInterrupt):
        script.main(["--RETRY_CAUSE=killed by the OOM killer", "--RETRY_CHANGE=BATCH_SIZE 64 -> 8"])
    attempts = smoke_retry_reports.read_attempts(retry.read_text())
    assert [(a.attempt, a.status) for a in attempts] == [(1, "FAIL"), (2, smoke_retry_reports.IN_PROGRESS)]
    assert attempts[0].error_summary == smoke_retry_reports.UNRECORDED
    assert (attempts[1].root_cause_hypothesis, attempts[1].code_change_summary) == (
        "killed by the OOM killer", "BATCH_SIZE 64 -> 8")
    problems = [p for p in run_check(Project(project.resolve()), "v001").problems if p.path.endswith("retry_report.md")]
    assert problems == []  # a run left in progress reads as a failed attempt

    monkeypatch.undo()
    script.main(["--RETRY_CAUSE=the retry was killed too", "--RETRY_CHANGE=none"])
    attempts = smoke_retry_reports.read_attempts(retry.read_text())
    assert [(a.attempt, a.status, a.error_summary) for a in attempts] == [
        (1, "FAIL", smoke_retry_reports.UNRECORDED), (2, "FAIL", smoke_retry_reports.UNRECORDED), (3, "PASS", "none")]
    assert (folder / "best.ckpt").is_file()


def test_too_few_steps_are_reported_with_the_numbers(project):
    write_rules(project, "tabular-classification", training={"batch_size": 32, "epochs": 2, "min_steps_per_epoch": 10,
                                                             "min_total_steps": 100})
    tabular_prepdata(project)
    load_script(install_script(project, "tabular"), "t_few_base").main([])
    fields = bullets(report_of(project))
    assert fields["train_batch_size"] == "32" and fields["too_few_steps"] == "true"
    warning = ("1 optimizer steps per epoch is below min_steps_per_epoch=10 and 2 optimizer steps in total is below "
               "min_total_steps=100 (batch 32, 40 training samples, 2 epoch(s))")
    assert fields["steps_warning"].startswith(warning)
    assert spec_of(project, "baseline")["steps"]["too_few"] is True
    load_script(install_script(project, "tabular", "02_train_v001.py", v001_header()), "t_few_v001").main([])
    steps = spec_of(project, "v001")["steps"]
    assert (steps["per_epoch"], steps["total"], steps["too_few"]) == (1, 2, True)
    assert steps["warning"].startswith(warning)
    assert spec_of(project, "v001")["training"]["global_step"] == steps["total"]  # the count matches the loader


def test_a_version_without_a_smoke_test_or_batch_size_is_told_what_to_do(project):
    write_rules(project, "tabular-classification")
    tabular_prepdata(project)
    script = load_script(install_script(project, "tabular", "02_train_v001.py", v001_header()), "t_no_bs")
    with pytest.raises(MlloopError, match="has no optimal_batch_size: run 02_train_baseline.py"):
        script.main([])


def test_wrong_task_type_and_missing_prepdata_are_clean_errors(project):
    write_rules(project, "tabular-classification")
    script = load_script(install_script(project, "tabular"), "t_no_prep")
    with pytest.raises(MlloopError, match=r"dataset/prepdata/v1: prepdata for dataset_id 'v1' does not exist"):
        script.main([])
    image = load_script(install_script(project, "image_classification"), "t_wrong_task")
    with pytest.raises(MlloopError, match="trains image-classification, but the rules say task_type 'tabular-classification'"):
        image.main([])


def test_ddp_on_two_cpu_processes_writes_the_artifacts_once(project):
    write_rules(project, "tabular-classification", training={"batch_size": 4})
    tabular_prepdata(project)
    install_script(project, "tabular", "02_train_v001.py", v001_header())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "02_train_v001.py", "--CPU_DEVICES=2"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("version_id:") == 1  # the summary comes from rank 0 only
    folder = project / "Models/Artifacts/v001"
    assert files(folder) == ["additional_assets/feature_encoding.json", "best.ckpt", "last.ckpt",
                             "logs/version_0/hparams.yaml", "logs/version_0/metrics.csv", "spec.json"]
    spec = spec_of(project, "v001")
    assert (spec["num_devices"], spec["strategy"], spec["training"]["devices"]["world_size"]) == (2, "ddp", 2)
    # 40 rows over 2 processes, batch 4 per process: 5 optimizer steps per epoch
    assert (spec["steps"]["per_epoch"], spec["training"]["global_step"]) == (5, 5)
    assert not (project / "Models/Artifacts/.trash").exists()


def test_image_segmentation_end_to_end(project):
    write_rules(project, "image-segmentation",
                {"backbone": "test_resnet", "image_size": 32, "expected_num_classes": 3, "expected_stride": 32,
                 "expected_output_shape": [1, 3, 32, 32]},
                training={"epochs": 6}, metrics=["loss", "miou", "dice", "pixel_accuracy"], primary="miou")
    seg_prepdata(project)
    smoke, trained, evaluated = run_loop(project, "image_segmentation", ["--LR=0.01"])
    report = report_of(project)
    assert smoke["overall_result"] == "PASS" and smoke["probe"] == "PASS"
    assert "| num_classes | 3 | 3 | PASS |" in report and bullets(report)["metric"].startswith("miou ")
    spec = check_training_outputs(project, "v001", "label_map.json")
    assert spec["model"]["out_indices"] == [1, 2, 3, 4] and spec["model"]["classes"] == ["background", "disc", "square"]
    values = {m["name"]: m["value"] for m in evaluated["metrics"]}
    assert set(values) == {"loss", "miou", "dice", "pixel_accuracy"} and evaluated["num_samples"] == 8
    # the floor is every pixel background; a trained model separates the shapes from it
    floor = evaluated["floor"]
    assert floor["metric"] == "miou" and evaluated["beats_floor"] is True and values["miou"] > floor["value"] + 0.1
    trivial = json.loads((project / "Models/Artifacts/v001/trivial_baselines.json").read_text())
    assert trivial["predictors"][0]["name"] == "majority_pixel" and trivial["predictors"][0]["fitted"] == {"class": 0}
    rows = [json.loads(line) for line in (project / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()]
    assert all(set(r["pixel_counts"]) == {"classes", "tp", "fp", "fn"} for r in rows)
    sample = project / "Models/Artifacts/v001/infer_samples/0001"
    assert {"input.png", "gt.png", "output.png", "overlay.png", "output.txt", "meta.json"} <= {p.name for p in sample.iterdir()}
    from PIL import Image

    with Image.open(sample / "gt.png") as gt:
        assert gt.mode == "RGB" and gt.size == (32, 32) and len(gt.getcolors()) >= 2  # background plus a shape
    assert (sample / "output.txt").read_text().startswith("pixel accuracy ")
    from mlloop.checks import run_check

    for target in ("baseline", "v001"):
        findings = run_check(Project(project.resolve()), target)
        assert findings.ok, [p.line() for p in findings.problems]


def test_object_detection_end_to_end(project):
    write_rules(project, "object-detection", {"backbone": "test_resnet", "image_size": 64, "expected_num_classes": 2,
                                              "expected_stride": 4},
                smoke={"train_samples": 16, "valid_samples": 8}, training={"epochs": 20},  # 60 steps: enough here
                metrics=["loss", "map", "map_50"], primary="map_50")
    detection_prepdata(project)
    smoke, _, evaluated = run_loop(project, "object_detection")
    report = report_of(project)
    assert smoke["probe"] == "PASS" and "| num_classes | 2 | 2 | PASS |" in report and "| stride | 4 | 4 | PASS |" in report
    assert bullets(report)["metric"].startswith("map_50 ")  # the probe checked the detector's own metric
    check_training_outputs(project, "v001", "label_map.json")
    assert json.loads((project / "Models/Artifacts/v001/additional_assets/label_map.json").read_text()) == \
        {"disc": 0, "square": 1}
    values = {m["name"]: m["value"] for m in evaluated["metrics"]}
    floor = json.loads((project / "Models/Artifacts/v001/trivial_baselines.json").read_text())
    assert [p["name"] for p in floor["predictors"]] == ["no_boxes", "prior_boxes"]  # fit on the train labels
    assert set(values) == {"loss", "map", "map_50"} and values["map_50"] > floor["floor"]["value"] >= 0
    rows = [json.loads(line) for line in (project / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()]
    negative = next(r for r in rows if r["target"]["boxes"] == [])  # an image without objects stays a sample
    assert set(negative["prediction"]) == {"boxes", "labels", "scores"}
    for r in rows:
        p = r["prediction"]
        assert len(p["boxes"]) == len(p["labels"]) == len(p["scores"]) and set(p["labels"]) <= {"disc", "square"}
        assert all(0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64 for x1, y1, x2, y2 in p["boxes"])  # clipped xyxy pixels
    sample = project / "Models/Artifacts/v001/infer_samples/0001"
    assert {"input.png", "output.png", "output.json", "gt.json", "meta.json"} <= {p.name for p in sample.iterdir()}
    from PIL import Image

    with Image.open(sample / "output.png") as drawn, Image.open(sample / "input.png") as plain:
        assert drawn.size == (4 * plain.width, 4 * plain.height)
        assert (60, 220, 60) in {c for _, c in drawn.getcolors(1 << 16)}  # the ground truth's green boxes
    assert floor["floor"]["metric"] == "map_50"
    from mlloop.checks import run_check

    for target in ("baseline", "v001"):
        findings = run_check(Project(project.resolve()), target)
        assert findings.ok, [p.line() for p in findings.problems]


def test_audio_classification_end_to_end(project):
    write_rules(project, "audio-classification", {"backbone": "test_resnet", "expected_num_classes": 3},
                training={"epochs": 8}, metrics=["loss", "accuracy", "roc_auc"], primary="accuracy")
    audio_prepdata(project)
    smoke, trained, evaluated = run_loop(project, "audio_classification")
    assert smoke["overall_result"] == "PASS" and smoke["probe"] == "PASS"
    report = report_of(project)
    assert "| num_classes | 3 | 3 | PASS |" in report
    spec = check_training_outputs(project, "v001", "label_map.json")
    # CLIP_SECONDS left None: the runtime took the clips' median duration_sec, and says so
    assert spec["settings"]["CLIP_SECONDS"]["value"] == 0.5
    assert spec["settings"]["CLIP_SECONDS"]["source"].startswith("runtime default: median duration_sec 0.5 s over 24")
    assert spec["model"]["sample_rate"] == 16000 and spec["model"]["backbone"] == "test_resnet"
    scores = {m["name"]: m["value"] for m in evaluated["metrics"]}
    assert set(scores) == {"loss", "accuracy", "roc_auc"} and evaluated["num_samples"] == 12
    floor = json.loads((project / "Models/Artifacts/v001/trivial_baselines.json").read_text())["floor"]
    assert floor["metric"] == "accuracy" and evaluated["beats_floor"] is True, (scores, floor)
    assert scores["accuracy"] > floor["value"] and scores["roc_auc"] > 0.9, scores  # tones and noise: easy to tell apart
    predictions = [json.loads(line) for line in
                   (project / "Models/Artifacts/v001/eval_samples.jsonl").read_text().splitlines()]
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-4 and set(p["scores"]) == {"high", "low", "noise"}
               for p in predictions)
    sample = project / "Models/Artifacts/v001/infer_samples/0001"
    assert {"input.png", "input.wav", "output.txt", "gt.txt", "meta.json"} <= {p.name for p in sample.iterdir()}
    from PIL import Image

    with Image.open(sample / "input.png") as picture:
        assert picture.size == (600, 300)
    assert (sample / "gt.txt").read_text().strip() in {"high", "low", "noise"}
    from mlloop.checks import run_check

    for target in ("baseline", "v001"):
        findings = run_check(Project(project.resolve()), target)
        assert findings.ok, [p.line() for p in findings.problems]
