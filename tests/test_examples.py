"""The example datasets and the 01_data_pipeline.py template, end to end on each of them."""

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlloop.bundle import examples_dir, template
from mlloop.cli import cli
from mlloop.layout import Project
from mlloop.profiling_draft import draft_profiling
from mlloop.rules import resolve
from mlloop.taskformat import load_task_format

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

TASKS = ("ocr-line-recognition", "image-classification", "tabular-classification", "text-classification",
         "time-series-forecasting", "image-segmentation",
         "object-detection", "audio-classification")


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


registry = load(examples_dir() / "registry.py", "mlloop_examples_registry")


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_pipeline(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "01_data_pipeline.py", *args], cwd=root, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("task", TASKS)
def test_generators_are_deterministic(task, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert registry.generate(task, a, seed=42, size="tiny") == registry.generate(task, b, seed=42, size="tiny")
    assert tree_digest(a) == tree_digest(b) and len(tree_digest(a)) >= 2
    registry.generate(task, c, seed=7, size="tiny")
    assert tree_digest(c) != tree_digest(a)
    with pytest.raises(ValueError, match="size must be one of tiny, small, medium"):
        registry.generate(task, tmp_path / "d", size="huge")


@pytest.mark.parametrize("task", TASKS)
def test_example_rules_are_valid(task, tmp_path):
    registry.install_rules(task, tmp_path)
    rules = resolve(Project(tmp_path.resolve()))
    assert rules.findings.ok and not rules.findings.warnings, [p.line() for p in rules.findings.problems + rules.findings.warnings]
    assert rules.task_type == task and task in load_task_format(None).task_types
    for skill in ("build-baseline", "progressive-training"):
        text = (tmp_path / ".claude/skills" / skill / "user_instruction.md").read_text(encoding="utf-8")
        assert text.startswith("# Instructions for") and len(text.splitlines()) >= 3


@pytest.mark.parametrize("task", TASKS)
def test_pipeline_end_to_end(task, tmp_path):
    root = tmp_path / "proj"
    info = registry.prepare_project(task, root, seed=42, size="tiny")
    project = Project(root.resolve())
    draft_profiling(project)
    runner = CliRunner()
    assert runner.invoke(cli, ["check", "profiling", "--project", str(root)]).exit_code == 1  # the draft has gaps
    lines = registry.complete_profiling(task, root)
    assert set(lines) == set(info["raw"]) and all(v.startswith("- load_test: PASS (") for v in lines.values())
    checked = runner.invoke(cli, ["check", "profiling", "--project", str(root)])
    assert checked.exit_code == 0, checked.output

    out = run_pipeline(root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dataset/prepdata/v1: train" in out.stdout and "pipeline tests PASS" in out.stdout
    prep = root / "dataset/prepdata/v1"
    stats = json.loads((prep / "stats.json").read_text())
    spec = load_task_format(None).task(task)["index_schema"]
    ids = set()
    for split in ("train", "valid"):
        records = [json.loads(x) for x in (prep / split / f"{split}.jsonl").read_text().splitlines()]
        assert len(records) == stats["counts"][split] > 0
        for r in records:
            assert all(r.get(f) is not None for f in spec["required"]), r
            for f in spec.get("path_fields") or []:
                target = (prep / split / r[f]).resolve()
                assert target.is_file() and (prep / split).resolve() in target.parents
            ids.add(r["id"])
    assert len(ids) == stats["counts"]["train"] + stats["counts"]["valid"]
    assert stats["dataset_id"] == "v1" and stats["task_type"] == task and stats["seed"] == 42
    assert sum(stats["dropped"].values()) > 0  # the examples' edge cases are filtered, with reasons
    for name in ("df_meta.parquet", "train_manifest.parquet", "valid_manifest.parquet"):
        assert (prep / "common" / name).is_file()
    if task.endswith("classification"):
        assert set(json.loads((prep / "common/label_map.json").read_text())) <= {
            "circle", "square", "triangle", "ok", "warn", "fail", "positive", "negative", "neutral",
            "tone", "chirp", "noise_burst", "click_train"}
    if task == "image-segmentation":  # both sources' masks converted to the one label map's ids
        assert json.loads((prep / "common/label_map.json").read_text()) == {"background": 0, "circle": 1, "square": 2,
                                                                          "triangle": 3}
        import numpy as np
        from PIL import Image

        values = {source: set() for source in info["raw"]}
        for path in prep.glob("*/mask/*.png"):
            with Image.open(path) as mask:
                assert mask.mode == "L" and mask.size == (64, 64)
                values[path.stem.split("-")[0]] |= set(np.unique(np.asarray(mask)).tolist())
        assert values == {"scenes_voc": {0, 1, 2, 3}, "scenes_export": {0, 1, 2, 3}}
    report = (prep / "_tests/pipeline_test_report.md").read_text()
    assert "- overall_result: PASS" in report and "FAIL" not in report
    checked = runner.invoke(cli, ["check", "prepdata", "--project", str(root)])
    assert checked.exit_code == 0, checked.output


def test_each_example_drops_its_edge_cases(tmp_path):
    expected = {
        "ocr-line-recognition": {"duplicate": 2, "label_too_long": 2, "label_too_short": 2, "missing_asset": 2,
                                 "missing_field": 1, "unreadable_asset": 1, "wider_than_max_bucket": 2},
        "image-classification": {"duplicate": 1, "missing_asset": 1, "missing_field": 1, "unreadable_asset": 1},
        "text-classification": {"duplicate": 2, "empty_text": 7, "missing_field": 1, "unknown_label": 1},
        # windows over the repeated hour, the gap and the missing readings; the stuck station's 65;
        # per series the windows whose target crosses the time cut (24 h forecast, 6 h apart: 3)
        "time-series-forecasting": {"constant_sensor": 65, "duplicate_timestamp": 20, "gap": 19, "missing_value": 41,
                                    "straddles_time_cut": 15},
        "image-segmentation": {"mask_size_mismatch": 1, "missing_asset": 1},
        "object-detection": {"missing_asset": 1},
        "audio-classification": {"duplicate": 2, "missing_asset": 1, "missing_field": 1, "silent_clip": 1,
                                 "unreadable_asset": 2},
    }
    for task, dropped in expected.items():
        root = tmp_path / task
        registry.prepare_project(task, root, size="tiny")
        draft_profiling(Project(root.resolve()))
        out = run_pipeline(root)
        assert out.returncode == 0, out.stderr
        assert json.loads((root / "dataset/prepdata/v1/stats.json").read_text())["dropped"] == dropped


def test_detection_example_writes_xyxy_labels_clipped_with_negatives_kept(tmp_path):
    """COCO's [x, y, w, h] and the other export's [x1, y1, x2, y2] end up as one label format; the box
    past the border is clipped; images without objects stay; "Rect"/"Circle" become square/circle."""
    root = tmp_path / "proj"
    registry.prepare_project("object-detection", root, size="tiny")
    draft_profiling(Project(root.resolve()))
    out = run_pipeline(root)
    assert out.returncode == 0, out.stdout + out.stderr
    prep, raw = root / "dataset/prepdata/v1", root / "dataset/rawdata"
    labels = {}
    for split in ("train", "valid"):
        for line in (prep / split / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            labels[r["id"]] = (json.loads((prep / split / r["label_path"]).read_text()), r["width"], r["height"])
    coco = json.loads((raw / "coco_export/annotations.json").read_text())
    first = next(a for a in coco["annotations"] if a["image_id"] == 1)
    x, y, w, h = first["bbox"]
    assert {"bbox": [x, y, x + w, y + h], "label": ("circle", "square", "triangle")[first["category_id"] - 1]} \
        in labels["coco_export-scene_0001"][0]["boxes"]
    edge = next(a for a in coco["annotations"] if a["image_id"] == 3)
    assert edge["bbox"][0] + edge["bbox"][2] > 64  # the raw box reaches past the image ...
    doc, width, _ = labels["coco_export-scene_0003"]
    assert [edge["bbox"][0], edge["bbox"][1], 64, edge["bbox"][1] + edge["bbox"][3]] in [b["bbox"] for b in doc["boxes"]]
    for doc, width, height in labels.values():  # ... and nothing in prepdata does
        assert all(0 <= b["bbox"][0] < b["bbox"][2] <= width and 0 <= b["bbox"][1] < b["bbox"][3] <= height
                   for b in doc["boxes"])
        assert {b["label"] for b in doc["boxes"]} <= {"circle", "square", "triangle"}
    assert any('"Rect"' in p.read_text() for p in (raw / "labeled_xyxy/labels").iterdir())  # the spelling was there
    negatives = {sid.split("-")[0] for sid, (doc, _, _) in labels.items() if doc["boxes"] == []}
    assert negatives == {"coco_export", "labeled_xyxy"}  # images without objects are kept, from both sources
    assert "coco_export-scene_lost" not in labels


def index_ids(prep: Path, split: str) -> list[str]:
    return [json.loads(x)["id"] for x in (prep / split / f"{split}.jsonl").read_text().splitlines()]


def test_rerun_moves_the_previous_prepdata_aside_and_caps_train_after_valid(tmp_path):
    root = tmp_path / "proj"
    registry.prepare_project("tabular", root, size="tiny")
    draft_profiling(Project(root.resolve()))
    assert run_pipeline(root).returncode == 0
    prep = root / "dataset/prepdata/v1"
    first, first_valid = tree_digest(prep), index_ids(prep, "valid")
    out = run_pipeline(root)
    assert out.returncode == 0 and "the previous prepdata was moved to dataset/prepdata/.trash/v1-" in out.stdout
    aside = list((root / "dataset/prepdata/.trash").iterdir())
    assert len(aside) == 1 and tree_digest(aside[0]) == first
    second = tree_digest(prep)
    assert {k: v for k, v in first.items() if k != "stats.json"} == {k: v for k, v in second.items() if k != "stats.json"}

    rules_path = root / ".claude/skills/build-baseline/user_defined_rules.json"
    rules = json.loads(rules_path.read_text())
    rules["dataset_config"]["max_train_samples"] = 20
    rules_path.write_text(json.dumps(rules))
    assert run_pipeline(root).returncode == 0
    stats = json.loads((prep / "stats.json").read_text())
    assert index_ids(prep, "valid") == first_valid                      # the valid pool is fixed first
    assert stats["counts"]["train"] == 20 and stats["unused_by_max_train_samples"] > 0
    assert {s: c["train"] for s, c in stats["sources"].items()} == {"sensors_csv": 10, "sensors_json": 10}
    assert len(list((root / "dataset/prepdata/.trash").iterdir())) == 2  # nothing is ever deleted


def test_the_unfilled_template_fails_cleanly(tmp_path):
    root = tmp_path / "proj"
    registry.prepare_project("tabular", root, size="tiny")
    (root / "01_data_pipeline.py").write_text(template("01_data_pipeline.py").read_text())
    out = run_pipeline(root)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == "Error: dataset/rawdata/profiling.md does not exist; profile the raw data first (`mlloop profile`, then complete it)."
    draft_profiling(Project(root.resolve()))
    out = run_pipeline(root)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("Error: the parse region of 01_data_pipeline.py is not written yet: "
                                                    "write parse_sources() from dataset/rawdata/profiling.md")
    out = run_pipeline(root, "--NOPE=1")
    assert out.returncode == 1 and "Error: --NOPE: unknown setting; known:" in out.stderr
    assert not (root / "dataset/prepdata").exists()


def test_the_template_does_no_work_at_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = load(template("01_data_pipeline.py"), "pipeline_template")
    assert callable(module.main) and module.DEDUPLICATE is True and module.LOAD_TEST_SAMPLES == 10
    assert list(tmp_path.iterdir()) == []
    assert len(template("01_data_pipeline.py").read_text().splitlines()) <= 300


def test_fill_parse_region():
    text = template("01_data_pipeline.py").read_text()
    filled = registry.fill_parse_region(text, "def parse_sources(rawdata):\n    return []\n")
    assert "raise NotImplementedError" not in filled and "def parse_sources(rawdata):\n    return []\n" in filled
    assert filled.count("mlloop:parse-region:start") == 1 and filled.count("mlloop:parse-region:end") == 1
    compile(filled, "01_data_pipeline.py", "exec")
    for task in TASKS:
        compile(registry.pipeline_source(task), f"{task}.py", "exec")
    with pytest.raises(ValueError, match="exactly one mlloop:parse-region start and end marker"):
        registry.fill_parse_region("print('no markers')\n", "x = 1\n")
