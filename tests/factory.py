"""Build valid mlloop project trees for tests, without training anything.

Every file follows docs/contracts.md, so a tree made here passes `mlloop check`; a test then
breaks one thing and asserts the one problem it expects. Checkpoints are real torch-format
zip files holding a plain pickled dict (no tensors), built without importing torch.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from mlloop.layout import Project
from mlloop.formats.eval_score import score_digest
from mlloop.jsonio import sha256_file

CREATED_AT = "2026-11-21T10:00:00+00:00"

BB_RULES = {
    "seed": 42,
    "dataset_config": {"dataset_id": "v1", "task_type": "image-classification", "valid_ratio": 0.2,
                       "split_strategy": "random", "max_profile_samples": 50},
    "model_config": {"backbone": "test_resnet", "image_size": 32, "expected_num_classes": 3},
    "baseline_smoke_test": {"num_gpus": 0, "epoch": 1, "train_samples": 16, "valid_samples": 8,
                            "min_batch_size": 2, "max_batch_size": 8},
}
PT_RULES = {
    "seed": 42,
    "loop_config": {"max_versions": 3},
    "dataset_config": {"dataset_id": "v1"},
    "training_config": {"num_gpus": 0, "epochs": 1},
    "eval_config": {"primary_metric": "accuracy",
                    "metrics": [{"name": "loss", "higher_is_better": False},
                                {"name": "accuracy", "higher_is_better": True},
                                {"name": "macro_f1", "higher_is_better": True}],
                    "infer_samples": 3},
}

PROFILE_SECTION = """## Source: {name}
### Sample unit definition
One PNG image file is one sample.
### Paths & naming rules
`{name}/<class>/<id>.png`; the folder name is the label.
### Label schema
label: one of cat, dog, fox.
### Edge cases
None found in the sampled files.
### Extraction rules
Walk the class folders; id = file stem.
### Sanity checks
All sampled images decode; 3 classes present.
- load_test: PASS (10/10 samples, seed 42)
"""

RESULT_ANALYSIS = """# Result analysis — {vid}
## Summary
{vid} reached accuracy {acc:.3f} on the validation split.
## Metric deltas
| metric | previous | {vid} | delta |
|---|---|---|---|
| accuracy | 0.500 | {acc:.3f} | +{delta:.3f} |
## Evidence
Samples 0001 and 0003 confuse dog with fox.
## Hypotheses
The head underfits: one epoch is too short.
## Next focus candidates
- more epochs
- label smoothing
"""

ACTION_EXTRACT = """# Action extract — {vid}
## Selected Action (only 1)
- Goal: raise accuracy by training longer
- Change: EPOCHS 1 -> 2
- Where: EPOCHS constant at the top of the script
- Expected impact: +0.05 accuracy
- Risk: low; doubles training time
- Verification: accuracy in eval_score.json of the next version
## Deferred Candidates
- label smoothing 0.1
"""

SMOKE_REPORT = """# Baseline smoke test report
- overall_result: PASS
- optimal_batch_size: 8
- train_batch_size: 4
- dataset_id: v1
## Model contract
- contract_result: PASS
| key | expected | observed | status | reason |
|---|---|---|---|---|
| num_classes | 3 | 3 | PASS | |
## Learnability probe
- probe_result: PASS
## Batch-size search
| batch_size | status | steps | seconds | error |
|---|---|---|---|---|
| 8 | PASS | 10 | 0.5 | |
## Smoke run
16 train / 8 valid samples, 1 epoch.
"""

TRAIN_SCRIPT = '''"""Training script (test fixture)."""
EPOCHS = 1


def main(argv=None):
    return {"epochs": EPOCHS}


if __name__ == "__main__":
    main()
'''

EVAL_SCRIPT = '''"""03_eval.py (test fixture): the frozen evaluation protocol."""


def main(argv=None):
    return {}


if __name__ == "__main__":
    main()
'''


def fake_checkpoint(extra: dict | None = None) -> bytes:
    """A torch zip checkpoint of a plain dict, as `torch.save` lays it out."""
    payload = {"epoch": 0, "global_step": 4, "pytorch-lightning_version": "2.6.6",
               "state_dict": {}, "hyper_parameters": {"num_classes": 3}}
    payload.update(extra or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("best/data.pkl", pickle.dumps(payload, protocol=2))
        z.writestr("best/.format_version", "1")
        z.writestr("best/.storage_alignment", "64")
        z.writestr("best/byteorder", "little")
        z.writestr("best/version", "3\n")
        z.writestr("best/.data/serialization_id", "0" * 40)
    return buf.getvalue()


class ProjectFactory:
    """``ProjectFactory(tmp_path).complete(versions=2)`` builds a whole valid project."""

    def __init__(self, root: Path, dataset_id: str = "v1", classes=("cat", "dog", "fox"), n_samples: int = 20):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.project = Project(self.root.resolve())
        self.dataset_id = dataset_id
        self.classes = classes
        self.n_samples = n_samples

    # ---- small helpers -------------------------------------------------------------------
    def write(self, rel: str, content: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def write_json(self, rel: str, obj) -> Path:
        return self.write(rel, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def read_json(self, rel: str):
        return json.loads((self.root / rel).read_text(encoding="utf-8"))

    def snapshot(self) -> dict[str, bytes]:
        """Every file's bytes (and every symlink's target): assert a command changed nothing."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root).as_posix()
            if p.is_symlink():
                out[rel] = b"->" + str(p.readlink()).encode()
            elif p.is_file():
                out[rel] = p.read_bytes()
            else:
                out[rel + "/"] = b""
        return out

    # ---- rules ---------------------------------------------------------------------------
    def rules(self, bb: dict | None = None, pt: dict | None = None) -> "ProjectFactory":
        self.write_json(".claude/skills/build-baseline/user_defined_rules.json", bb if bb is not None else BB_RULES)
        self.write_json(".claude/skills/progressive-training/user_defined_rules.json", pt if pt is not None else PT_RULES)
        return self

    # ---- build-baseline ------------------------------------------------------------------
    def rawdata(self, sources=("src_a",)) -> "ProjectFactory":
        for source in sources:
            for i in range(4):
                self.write(f"dataset/rawdata/{source}/{self.classes[i % len(self.classes)]}/{source}_{i}.png", b"\x89PNG fake")
        body = "# Raw data profiling\n## Overview\n{} source(s), about {} images.\n## Sources\n{}\n".format(
            len(sources), 4 * len(sources), "\n".join(f"- {s}" for s in sources))
        body += "\n".join(PROFILE_SECTION.format(name=s) for s in sources)
        self.write("dataset/rawdata/profiling.md", body)
        return self

    def sample_ids(self, split: str) -> list[str]:
        ids = [f"s{i:04d}" for i in range(self.n_samples)]
        n_valid = max(1, self.n_samples // 5)
        return ids[:n_valid] if split == "valid" else ids[n_valid:]

    def prepdata(self) -> "ProjectFactory":
        base = f"dataset/prepdata/{self.dataset_id}"
        counts = {}
        for split in ("train", "valid"):
            lines = []
            for i, sid in enumerate(self.sample_ids(split)):
                self.write(f"{base}/{split}/image/{sid}.png", b"\x89PNG fake")
                lines.append(json.dumps({"id": sid, "image_path": f"image/{sid}.png",
                                         "label": self.classes[i % len(self.classes)], "source": "src_a",
                                         "group_id": f"g{sid}"}))
            self.write(f"{base}/{split}/{split}.jsonl", "\n".join(lines) + "\n")
            counts[split] = len(lines)
        self.write_json(f"{base}/common/label_map.json", {c: i for i, c in enumerate(self.classes)})
        self._parquet(f"{base}/common/df_meta.parquet", ["sample_id", "source", "category", "asset_paths"])
        self._parquet(f"{base}/common/train_manifest.parquet", ["sample_id"])
        self._parquet(f"{base}/common/valid_manifest.parquet", ["sample_id"])
        self.write_json(f"{base}/stats.json", {
            "dataset_id": self.dataset_id, "task_type": "image-classification", "seed": 42,
            "split_strategy": "random", "valid_ratio": 0.2, "counts": counts,
            "sources": {"src_a": counts}, "created_at": CREATED_AT})
        self.write(f"{base}/_tests/pipeline_test_report.md", "# Pipeline test report\n- overall_result: PASS\n")
        self.write("01_data_pipeline.py", '"""Data pipeline (test fixture)."""\n')
        return self

    def _parquet(self, rel: str, columns: list[str]) -> None:
        # A real (tiny) parquet file: `mlloop check` reads its footer for the column names.
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [{"sample_id": sid, "source": "src_a", "category": None, "asset_paths": []}
                for split in ("train", "valid") for sid in self.sample_ids(split)]
        table = pa.table({c: pa.array([r.get(c) for r in rows],
                                      pa.list_(pa.string()) if c == "asset_paths" else pa.string()) for c in columns})
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    def training_outputs(self, vid: str, parent: str | None) -> "ProjectFactory":
        base = f"Models/Artifacts/{vid}"
        self.write(f"{base}/best.ckpt", fake_checkpoint())
        self.write(f"{base}/last.ckpt", fake_checkpoint({"optimizer_states": []}))
        self.write_json(f"{base}/additional_assets/label_map.json", {c: i for i, c in enumerate(self.classes)})
        self.write(f"{base}/logs/version_0/metrics.csv", "epoch,step,train_loss,val_loss\n0,3,1.1,1.0\n")
        self.write(f"{base}/logs/version_0/hparams.yaml", "num_classes: 3\n")
        self.write_json(f"{base}/spec.json", {
            "version_id": vid, "dataset_id": self.dataset_id, "parent": parent, "seed": 42,
            "task_type": "image-classification", "mode": "smoke" if vid == "baseline" else "train",
            "script": "02_train_baseline.py" if vid == "baseline" else f"02_train_{vid}.py",
            "model": {"backbone": "test_resnet"}, "training": {"epochs": 1, "batch_size": 4},
            "best_checkpoint": {"monitor": "val_loss", "mode": "min", "score": 1.0, "epoch": 0, "step": 4},
            "additional_assets": ["label_map.json"],
            "steps": {"per_epoch": 4, "total": 4, "min_steps_per_epoch": 1, "min_total_steps": 1, "too_few": False},
            "libraries": {"python": "3.11"}, "device": "cpu", "num_devices": 1, "num_nodes": 1,
            "precision": "32-true", "wall_time_s": 1.0, "peak_memory_mb": 100.0, "created_at": CREATED_AT,
            **self._script_hash(vid)})
        return self

    def _script_hash(self, vid: str) -> dict:
        script = self.root / ("02_train_baseline.py" if vid == "baseline" else f"02_train_{vid}.py")
        return {"script_sha256": sha256_file(script)} if script.is_file() else {}

    def baseline(self) -> "ProjectFactory":
        self.write("02_train_baseline.py", TRAIN_SCRIPT)
        self.training_outputs("baseline", None)
        self.write("Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md", SMOKE_REPORT)
        self.write("03_eval.py", EVAL_SCRIPT)
        return self

    def build_baseline_done(self) -> "ProjectFactory":
        return self.rules().rawdata().prepdata().baseline()

    # ---- progressive-training ------------------------------------------------------------
    def header(self, vid: str, parent: str) -> str:
        if parent == "baseline":
            return (f"# === mlloop change summary ===\n# version: {vid}\n# parent: baseline\n"
                    "# action_source: none\n# goal: start the loop from the baseline\n"
                    "# change: none (copy of the baseline, Step 0)\n# where: -\n# === end change summary ===\n")
        return (f"# === mlloop change summary ===\n# version: {vid}\n# parent: {parent}\n"
                f"# action_source: Models/Artifacts/{parent}/action-extract.md\n"
                "# goal: raise accuracy by training longer\n# change: EPOCHS 1 -> 2\n"
                "# where: EPOCHS constant at the top of the script\n# === end change summary ===\n")

    def version(self, n: int, stage: str = "action", accuracy: float = 0.6, parent: str | None = None,
                floor: float = 0.34, metrics: list[dict] | None = None) -> "ProjectFactory":
        """Lay out version n up to ``stage`` (authored|trained|evaluated|analysed|action)."""
        vid = f"v{n:03d}"
        parent = parent or ("baseline" if n == 1 else f"v{n - 1:03d}")
        # Each version applies its change (EPOCHS 1 -> 2 …); v001 is the baseline's copy (Step 0).
        body = TRAIN_SCRIPT if n == 1 else TRAIN_SCRIPT.replace("EPOCHS = 1", f"EPOCHS = {n}")
        self.write(f"02_train_{vid}.py", self.header(vid, parent) + body)
        (self.root / f"Models/Artifacts/{vid}").mkdir(parents=True, exist_ok=True)
        order = ["authored", "trained", "evaluated", "analysed", "action"]
        reach = order.index(stage)
        if reach >= 1:
            self.training_outputs(vid, parent)
        if reach >= 2:
            self.evaluation(vid, accuracy, floor=floor, metrics=metrics)
        if reach >= 3:
            self.write(f"Models/Artifacts/{vid}/result-analysis.md",
                       RESULT_ANALYSIS.format(vid=vid, acc=accuracy, delta=accuracy - 0.5))
        if reach >= 4:
            self.write(f"Models/Artifacts/{vid}/action-extract.md", ACTION_EXTRACT.format(vid=vid))
        return self

    def evaluation(self, vid: str, accuracy: float, floor: float = 0.34, metrics: list[dict] | None = None,
                   infer_samples: int = 3, seed: int = 42) -> "ProjectFactory":
        base = f"Models/Artifacts/{vid}"
        metrics = metrics if metrics is not None else [
            {"name": "loss", "value": round(1.5 - accuracy, 6), "higher_is_better": False},
            {"name": "accuracy", "value": accuracy, "higher_is_better": True},
            {"name": "macro_f1", "value": round(accuracy * 0.9, 6), "higher_is_better": True},
        ]
        valid_ids = self.sample_ids("valid")
        doc = {"dataset_id": self.dataset_id, "created_at": CREATED_AT, "num_samples": len(valid_ids),
               "metrics": metrics, "latency_ms": 2.5, "version_id": vid, "seed": seed,
               "checkpoint_sha256": sha256_file(self.root / base / "best.ckpt"),
               "eval_script_sha256": sha256_file(self.root / "03_eval.py")}
        doc["score_sha256"] = score_digest(doc)
        self.write_json(f"{base}/eval_score.json", doc)
        self.write_json(f"{base}/trivial_baselines.json", {
            "dataset_id": self.dataset_id, "version_id": vid, "num_samples": len(valid_ids),
            "predictors": [{"name": "majority_class", "description": "always the most frequent training label",
                            "metrics": [{"name": "accuracy", "value": floor, "higher_is_better": True}]}],
            "floor": {"metric": "accuracy", "value": floor, "predictor": "majority_class", "higher_is_better": True}})
        # Per-sample columns whose means are the metrics above (what `mlloop check` recomputes);
        # 4 samples cannot give accuracy 0.6 as 0/1 values, so the columns carry the mean itself.
        columns = {m["name"]: m["value"] for m in metrics
                   if m["name"] in ("loss", "accuracy", "exact_match", "mse", "mae", "mape")}
        self.write(f"{base}/eval_samples.jsonl", "".join(
            json.dumps({"id": sid, "prediction": "cat", "target": "cat", "loss": 0.5, **columns}) + "\n"
            for sid in valid_ids))
        doc.update({"eval_samples_sha256": sha256_file(self.root / base / "eval_samples.jsonl"),
                    "trivial_baselines_sha256": sha256_file(self.root / base / "trivial_baselines.json")})
        for key, path in (("train_script_sha256", self.root / ("02_train_baseline.py" if vid == "baseline" else f"02_train_{vid}.py")),
                          ("valid_index_sha256", self.root / f"dataset/prepdata/{self.dataset_id}/valid/valid.jsonl")):
            if path.is_file():
                doc[key] = sha256_file(path)
        doc["score_sha256"] = score_digest(doc)
        self.write_json(f"{base}/eval_score.json", doc)
        drawn = random.Random(seed).sample(sorted(valid_ids), min(infer_samples, len(valid_ids)))
        for i, sid in enumerate(drawn, start=1):
            folder = f"{base}/infer_samples/{i:04d}"
            self.write(f"{folder}/input.png", b"\x89PNG fake")
            self.write(f"{folder}/output.txt", "cat\n")
            self.write(f"{folder}/gt.txt", "cat\n")
            self.write_json(f"{folder}/meta.json", {"sample_id": sid, "index": i, "seed": seed, "version_id": vid,
                                                    "dataset_id": self.dataset_id, "split": "valid",
                                                    "conditions": {}, "config": {}, "scores": {"loss": 0.5}})
        return self

    def scored(self, vid: str, records: list[dict]) -> "ProjectFactory":
        """Give evaluated ``vid`` these eval_samples.jsonl records, and the eval_score.json
        metrics they imply (computed by mlloop.runtime.metrics, as 03_eval.py does)."""
        from mlloop.runtime.metrics import compute_metrics

        pt = self.read_json(".claude/skills/progressive-training/user_defined_rules.json")
        values = compute_metrics(records, pt["eval_config"]["metrics"], ids=[r["id"] for r in records]).values
        base = f"Models/Artifacts/{vid}"
        self.write(f"{base}/eval_samples.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        doc = self.read_json(f"{base}/eval_score.json")
        doc.update(metrics=values, num_samples=len(records))
        if "eval_samples_sha256" in doc:  # a score that also signs its records signs these
            doc["eval_samples_sha256"] = sha256_file(self.root / base / "eval_samples.jsonl")
        doc["score_sha256"] = score_digest(doc)
        self.write_json(f"{base}/eval_score.json", doc)
        return self

    def complete(self, versions: int = 2, accuracies=None) -> "ProjectFactory":
        """A finished build-baseline and ``versions`` fully analysed versions."""
        self.build_baseline_done()
        accuracies = accuracies or [0.5 + 0.1 * i for i in range(1, versions + 1)]
        for n in range(1, versions + 1):
            self.version(n, "action", accuracy=accuracies[n - 1])
        return self


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- the final report (added for the check tests) ------------------------------------------------

def _report_rows(factory: "ProjectFactory") -> list[dict]:
    """The versions' eval_score.json documents ranked as docs/contracts.md says (primary metric
    in its direction, ties by version id), for a hand-built report."""
    pt = factory.read_json(".claude/skills/progressive-training/user_defined_rules.json")
    primary = pt["eval_config"]["primary_metric"]
    higher = next(m["higher_is_better"] for m in pt["eval_config"]["metrics"] if m["name"] == primary)
    docs = []
    for folder in sorted((factory.root / "Models/Artifacts").glob("v[0-9][0-9][0-9]")):
        score = folder / "eval_score.json"
        if score.is_file():
            doc = json.loads(score.read_text(encoding="utf-8"))
            value = next(m["value"] for m in doc["metrics"] if m["name"] == primary)
            docs.append((-value if higher else value, folder.name, doc))
    return [{"version_id": vid, **doc} for _, vid, doc in sorted(docs)]


def build_report(factory: "ProjectFactory", stamp: str = "2026-11-21_12-00") -> Path:
    """``Models/Report/<stamp>/`` as `mlloop report` lays it out, built by hand."""
    import csv
    import shutil

    rows = _report_rows(factory)
    folder = factory.root / "Models/Report" / stamp
    best = rows[0]["version_id"]
    columns = []
    for row in rows:
        for m in row["metrics"]:
            if f"metric__{m['name']}" not in columns:
                columns.append(f"metric__{m['name']}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["version_id", "dataset_id", "created_at", "latency_ms", "artifact_relpath"] + columns)
    for row in rows:
        vid = row["version_id"]
        rel = f"Artifacts/{vid}/best.ckpt" if vid == best else f"../../Artifacts/{vid}/best.ckpt"
        values = {f"metric__{m['name']}": m["value"] for m in row["metrics"]}
        writer.writerow([vid, row["dataset_id"], row["created_at"], row["latency_ms"], rel]
                        + [values.get(c, "") for c in columns])
    factory.write(f"Models/Report/{stamp}/leaderboard.csv", out.getvalue())
    factory.write(f"Models/Report/{stamp}/final-analysis.md",
                  "# Final analysis\n## Ranking\n" + "\n".join(f"1. {r['version_id']}" for r in rows) +
                  "\n> The best version's score is optimistic (no held-out test split).\n"
                  "\n<!-- mlloop:analysis:start -->\n## Why the top 3 ranked high\nLonger training helped.\n"
                  "<!-- mlloop:analysis:end -->\n")
    factory.write(f"Models/Report/{stamp}/report.html", "<!DOCTYPE html><html><body><table id=\"leaderboard\">"
                  "</table></body></html>\n")
    src = factory.root / "Models/Artifacts" / best
    dst = folder / "Artifacts" / best
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "best.ckpt", dst / "best.ckpt")
    shutil.copyfile(src / "spec.json", dst / "spec.json")
    shutil.copytree(src / "additional_assets", dst / "additional_assets")
    return folder
