"""stats.json of a prepdata folder (docs/contracts.md, "prepdata"): what 01_data_pipeline.py
made of the raw data (dataset id, seed, split, counts per split, drops, sources). Owns the field
names, the one parser (``parse_stats``: the object plus problems) and the writer. The pipeline's
own tests and ``mlloop check prepdata`` both read it here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..errors import Findings
from ..jsonio import to_jsonable, write_json_atomic
from ..layout import PREPDATA_STATS
from .eval_score import parse_iso8601

REQUIRED = ("dataset_id", "task_type", "seed", "split_strategy", "valid_ratio", "counts", "sources", "created_at")
SPLITS = ("train", "valid")            # counts every stats.json has; "test" when the rules ask for one
SPLIT_STRATEGIES = ("random", "stratified", "group", "time")


def parse_stats(doc, rel: str, findings: Findings, *, dataset_id: str | None = None, task_type: str | None = None,
                canonical: Callable[[str], str] = lambda name: name) -> dict | None:
    """The stats as a dict (None when it is not an object); its problems go to ``findings``.
    ``dataset_id`` and ``task_type`` are what it must agree with (``canonical`` spells task names)."""
    if not isinstance(doc, dict):
        findings.problem("prepdata.stats", rel, "stats.json must be one JSON object", "$")
        return None
    for key in REQUIRED:
        if key not in doc:
            findings.problem("prepdata.stats", rel, f"required field {key!r} is missing", "$")
    if "dataset_id" in doc and dataset_id is not None and doc["dataset_id"] != dataset_id:
        findings.problem("prepdata.stats", rel, f"dataset_id is {doc['dataset_id']!r} but this folder is {dataset_id!r}",
                         "$.dataset_id")
    if isinstance(doc.get("task_type"), str) and task_type and canonical(doc["task_type"]) != canonical(task_type):
        findings.problem("prepdata.task_type", rel, f"task_type is {doc['task_type']!r} but the rules say "
                         f"{task_type!r}; re-run 01_data_pipeline.py", "$.task_type")
    if "seed" in doc and not (isinstance(doc["seed"], int) and not isinstance(doc["seed"], bool)):
        findings.problem("prepdata.stats", rel, "seed must be an integer", "$.seed")
    if "split_strategy" in doc and doc["split_strategy"] not in SPLIT_STRATEGIES:
        findings.problem("prepdata.stats", rel, f"split_strategy {doc['split_strategy']!r} is not one of "
                         f"{', '.join(SPLIT_STRATEGIES)}", "$.split_strategy")
    vr = doc.get("valid_ratio")
    if "valid_ratio" in doc and not (isinstance(vr, (int, float)) and not isinstance(vr, bool) and 0 < vr < 1):
        findings.problem("prepdata.stats", rel, f"valid_ratio must be a number between 0 and 1, found {json.dumps(vr)}",
                         "$.valid_ratio")
    counts = doc.get("counts")
    if "counts" in doc:
        if not isinstance(counts, dict):
            findings.problem("prepdata.stats", rel, "counts must be an object {\"train\": N, \"valid\": M}", "$.counts")
        else:
            for split in SPLITS:
                v = counts.get(split)
                if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                    findings.problem("prepdata.stats", rel, f"counts.{split} must be a non-negative integer, found "
                                     f"{json.dumps(v)}", f"$.counts.{split}")
    if "created_at" in doc and parse_iso8601(doc["created_at"]) is None:
        findings.problem("prepdata.stats", rel, f"created_at {doc['created_at']!r} is not an ISO-8601 time",
                         "$.created_at")
    return doc


def counts_of(stats) -> dict:
    """``counts`` of a parsed stats.json (``{}`` when it has none)."""
    counts = stats.get("counts") if isinstance(stats, dict) else None
    return counts if isinstance(counts, dict) else {}


def write_stats(out_dir: Path, doc: dict) -> None:
    write_json_atomic(Path(out_dir) / PREPDATA_STATS, to_jsonable(doc))
