"""spec.json (docs/contracts.md, "spec.json"): how a version was trained, written by the training
run beside best.ckpt. Owns the field names, the one parser of the document (``parse_spec``: the
object plus its problems), the readers of its parts that others use (the dataset id the loop is
locked to, the too-few-steps warning) and the writer (``write_spec``).

What needs the project besides the document (the script's sha256, the files in
additional_assets/) is checked by ``mlloop check`` on top of ``parse_spec``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ..errors import Findings
from ..jsonio import JsonProblems, read_json, sha256_file, to_jsonable, write_json_atomic

# Always written; a reader requires all but ``parent`` (null for the baseline, and older specs lack it).
WRITTEN = ("version_id", "dataset_id", "parent", "seed", "task_type", "best_checkpoint", "additional_assets")
REQUIRED = tuple(k for k in WRITTEN if k != "parent")
NO_ASSETS = "not_required"     # additional_assets when the task needs no pre/post-processing files


def parse_spec(doc, rel: str, findings: Findings, *, vid: str | None = None, dataset_id: str | None = None,
               task_names=None, baseline: bool = False) -> dict | None:
    """The spec as a dict (None when it is not an object); every problem of the document itself
    goes to ``findings`` (``vid``, ``dataset_id`` and ``task_names`` are what it must agree with)."""
    if not isinstance(doc, dict):
        kind = "a list" if isinstance(doc, list) else type(doc).__name__
        findings.problem("spec.not_object", rel, f"spec.json must be one JSON object, found {kind}", "$")
        return None
    for key in REQUIRED:
        if key not in doc:
            findings.problem("spec.missing_field", rel, f"required field {key!r} is missing", "$")
    if vid is not None and "version_id" in doc and doc["version_id"] != vid:
        findings.problem("spec.version_id", rel, f"version_id is {doc['version_id']!r} but the folder is {vid}; "
                         "a script takes its version from its own file name", "$.version_id")
    if "dataset_id" in doc and dataset_id and doc["dataset_id"] != dataset_id:
        findings.problem("spec.dataset_id", rel, f"dataset_id is {json.dumps(doc['dataset_id'])} but the loop's "
                         f"dataset_id is {dataset_id!r}", "$.dataset_id")
    seed = doc.get("seed")
    if "seed" in doc and not (isinstance(seed, int) and not isinstance(seed, bool)):
        findings.problem("spec.field", rel, f"seed must be an integer, found {json.dumps(seed)}", "$.seed")
    task = doc.get("task_type")
    if "task_type" in doc:
        if not isinstance(task, str) or not task:
            findings.problem("spec.field", rel, "task_type must be a task type name", "$.task_type")
        elif task_names is not None and task not in task_names:
            findings.problem("spec.field", rel, f"task_type {task!r} is not in task_format.yaml", "$.task_type")
    best = doc.get("best_checkpoint")
    if "best_checkpoint" in doc:
        if not isinstance(best, dict):
            findings.problem("spec.field", rel, "best_checkpoint must be an object {monitor, mode, ...}",
                             "$.best_checkpoint")
        else:
            if not (isinstance(best.get("monitor"), str) and best["monitor"]):
                findings.problem("spec.field", rel, "best_checkpoint.monitor must name the metric that chose best.ckpt",
                                 "$.best_checkpoint.monitor")
            if best.get("mode") not in ("min", "max"):
                findings.problem("spec.field", rel, "best_checkpoint.mode must be \"min\" or \"max\", found "
                                 f"{json.dumps(best.get('mode'))}", "$.best_checkpoint.mode")
    if baseline and doc.get("parent") is not None:
        findings.problem("spec.parent", rel, "the baseline has no parent; parent must be null", "$.parent")
    warning = too_few_steps(doc)
    if warning:
        findings.warn("train.too_few_steps", rel, f"too few optimizer steps: {warning}", "$.steps")
    return doc


def read_spec_quiet(path: Path) -> dict | None:
    """The spec's object, or None when it is absent, broken or not an object (`mlloop check` says why)."""
    try:
        doc = read_json(path)
    except JsonProblems:
        return None
    return doc if isinstance(doc, dict) else None


def dataset_id_of(spec) -> str | None:
    """The dataset id a spec records (the baseline's locks the loop's), None when it has none."""
    did = spec.get("dataset_id") if isinstance(spec, dict) else None
    return did if isinstance(did, str) else None


def too_few_steps(spec) -> str | None:
    """The training run's own warning that it took too few optimizer steps, None when it did not."""
    steps = spec.get("steps") if isinstance(spec, dict) else None
    if not isinstance(steps, dict) or steps.get("too_few") is not True:
        return None
    if isinstance(steps.get("warning"), str) and steps["warning"].strip():
        return steps["warning"].strip()
    return (f"{steps.get('per_epoch', '?')} optimizer steps per epoch, {steps.get('total', '?')} in total "
            f"(minimum {steps.get('min_steps_per_epoch', '?')} per epoch, {steps.get('min_total_steps', '?')} in total)")


def write_spec(path: Path, *, version_id: str, dataset_id: str, parent: str | None, seed: int, task_type: str,
               mode: str, script: Path, model: dict, training: dict, best_checkpoint: dict,
               additional_assets: list[str] | str, steps: dict, libraries: dict, device: str,
               device_name: str, num_devices: int, num_nodes: int, strategy: str, precision: str,
               wall_time_s: float, peak_memory_mb: float, peak_memory_source: str, artifact_bytes: dict,
               settings: dict | None = None, extra: dict | None = None) -> dict:
    """Write ``spec.json`` (everything needed to reproduce the run) and return it."""
    doc = {
        "version_id": version_id, "dataset_id": dataset_id, "parent": parent, "seed": int(seed),
        "task_type": task_type, "mode": mode, "script": script.name, "script_sha256": sha256_file(script),
        "model": model, "training": training, "best_checkpoint": best_checkpoint,
        "additional_assets": additional_assets, "steps": steps, "libraries": libraries,
        "device": device, "device_name": device_name, "num_devices": int(num_devices), "num_nodes": int(num_nodes),
        "strategy": strategy, "precision": precision, "wall_time_s": round(float(wall_time_s), 3),
        "peak_memory_mb": round(float(peak_memory_mb), 1), "peak_memory_source": peak_memory_source,
        "artifact_bytes": artifact_bytes, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if settings is not None:
        doc["settings"] = settings
    doc.update(extra or {})
    doc = to_jsonable(doc)
    write_json_atomic(path, doc)
    return doc
