"""eval_score.json (docs/contracts.md, "eval_score.json"): one JSON object per evaluated version
or external model. Owns its field names, the one parser (``read_eval_score``: the value plus
problems in a ``Findings``) and the writer (``write_eval_score``: output hashes, self-digest,
atomic write). 03_eval.py writes it; check, status, analyze, compare and report read it here.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import Findings
from ..jsonio import JsonProblems, canonical_json, read_json, sha256_file, write_json_atomic
from ..layout import EVAL_SAMPLES, EVAL_SCORE, TRIVIAL_BASELINES, Project

SEED_FIELDS = ("dataset_id", "created_at", "num_samples", "metrics", "latency_ms")
PROVENANCE_FIELDS = ("checkpoint_sha256", "eval_script_sha256", "score_sha256")
# Recorded by 03_eval.py beside the fields above: the outputs written with the score (edited
# afterwards = tampered) and the inputs it read (changed afterwards = stale).
OUTPUT_HASHES = {"eval_samples_sha256": EVAL_SAMPLES, "trivial_baselines_sha256": TRIVIAL_BASELINES}
INPUT_HASHES = ("train_script_sha256", "valid_index_sha256")


def score_digest(doc: dict) -> str:
    """sha256 of an eval_score document without its own ``score_sha256`` field."""
    body = {k: v for k, v in doc.items() if k != "score_sha256"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def parse_iso8601(text: str) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None


def finite_number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # a 400-digit integer: valid JSON, not a usable number
        return False


@dataclass
class EvalScore:
    owner: str               # version id or external model folder name
    path: Path
    doc: dict
    metrics: list[dict] = field(default_factory=list)   # the valid {name, value, higher_is_better}

    @property
    def dataset_id(self) -> str | None:
        return self.doc.get("dataset_id")

    @property
    def created_at(self) -> str:
        return self.doc.get("created_at", "")

    @property
    def latency_ms(self):
        return self.doc.get("latency_ms")

    def value(self, name: str) -> float | None:
        """The first value recorded for ``name`` (duplicates are columns ``__2``… in reports)."""
        for m in self.metrics:
            if m["name"] == name:
                return m["value"]
        return None

    def direction(self, name: str) -> bool | None:
        for m in self.metrics:
            if m["name"] == name:
                return m["higher_is_better"]
        return None


def read_eval_score(project: Project, path: Path, owner: str, *, primary_metric: str | None = None,
                    dataset_id: str | None = None, findings: Findings | None = None) -> EvalScore | None:
    """Parse and validate one eval_score.json. Problems go to ``findings``; returns the parsed
    score when it is usable for ranking (even with minor problems), else None."""
    findings = findings if findings is not None else Findings()
    rel = project.rel(path)
    try:
        doc = read_json(path, rel)
    except JsonProblems as exc:
        findings.problems.extend(exc.problems)
        return None
    if not isinstance(doc, dict):
        kind = "a list" if isinstance(doc, list) else type(doc).__name__
        findings.problem("eval.not_object", rel,
                         f"eval_score.json must be ONE JSON object per version, found {kind}", "$")
        return None
    for key in SEED_FIELDS:
        if key not in doc:
            findings.problem("eval.missing_field", rel, f"required field {key!r} is missing", "$")
    did = doc.get("dataset_id")
    if "dataset_id" in doc and not (isinstance(did, str) and did):
        findings.problem("eval.field_type", rel, "dataset_id must be a non-empty string", "$.dataset_id")
    elif dataset_id and isinstance(did, str) and did != dataset_id:
        findings.problem("eval.dataset_id", rel,
                         f"dataset_id is {did!r} but the loop's dataset_id is {dataset_id!r}; re-evaluate with 03_eval.py",
                         "$.dataset_id")
    if "created_at" in doc and parse_iso8601(doc["created_at"]) is None:
        findings.problem("eval.created_at", rel,
                         f"created_at {doc['created_at']!r} is not an ISO-8601 time (e.g. 2026-11-21T10:00:00+00:00)",
                         "$.created_at")
    ns = doc.get("num_samples")
    if "num_samples" in doc and not (isinstance(ns, int) and not isinstance(ns, bool) and ns >= 1):
        findings.problem("eval.num_samples", rel, f"num_samples must be a positive integer, found {json.dumps(ns)}",
                         "$.num_samples")
    lat = doc.get("latency_ms")
    if "latency_ms" in doc and not (finite_number(lat) and lat >= 0):
        findings.problem("eval.latency", rel, f"latency_ms must be a finite number >= 0, found {json.dumps(lat)}",
                         "$.latency_ms")
    metrics = _valid_metrics(doc.get("metrics"), rel, findings) if "metrics" in doc else []
    names = [m["name"] for m in metrics]
    if primary_metric and "metrics" in doc:
        if primary_metric not in names:
            findings.problem("eval.primary_missing", rel,
                             f"the primary metric {primary_metric!r} is not in metrics; the report will rank this version last",
                             "$.metrics")
        elif names.count(primary_metric) > 1:
            findings.problem("eval.primary_ambiguous", rel,
                             f"the primary metric {primary_metric!r} appears {names.count(primary_metric)} times; ranking needs one value",
                             "$.metrics")
    for key in ("checkpoint_sha256", "eval_script_sha256", "score_sha256", *OUTPUT_HASHES, *INPUT_HASHES):
        if key in doc and not (isinstance(doc[key], str) and len(doc[key]) == 64):
            findings.problem("eval.provenance", rel, f"{key} must be a 64-character sha256 hex string", f"$.{key}")
    return EvalScore(owner, path, doc, metrics)


def _valid_metrics(raw, rel: str, findings: Findings) -> list[dict]:
    if not isinstance(raw, list):
        findings.problem("eval.metrics", rel, "metrics must be a list of {name, value, higher_is_better}", "$.metrics")
        return []
    if not raw:
        findings.problem("eval.metrics", rel, "metrics is empty; at least the primary metric is required", "$.metrics")
    good = []
    for i, m in enumerate(raw):
        where = f"$.metrics[{i}]"
        if not isinstance(m, dict):
            findings.problem("eval.metric", rel, "each metric must be an object {name, value, higher_is_better}", where)
            continue
        ok = True
        if not (isinstance(m.get("name"), str) and m["name"]):
            findings.problem("eval.metric", rel, "name must be a non-empty string", where + ".name")
            ok = False
        if not finite_number(m.get("value")):
            findings.problem("eval.metric", rel,
                             f"value must be a finite number, found {json.dumps(m.get('value'))}", where + ".value")
            ok = False
        if not isinstance(m.get("higher_is_better"), bool):
            findings.problem("eval.metric", rel, "higher_is_better must be true or false", where + ".higher_is_better")
            ok = False
        if ok:
            good.append({"name": m["name"], "value": float(m["value"]), "higher_is_better": m["higher_is_better"]})
    return good


def write_eval_score(folder: Path, doc: dict) -> dict:
    """Write ``folder/eval_score.json``: ``doc`` plus the sha256 of the outputs written beside it
    (already in ``folder``) and its own digest. Returns the document as written."""
    doc = dict(doc)
    for key, name in OUTPUT_HASHES.items():
        doc[key] = sha256_file(Path(folder) / name)
    doc["score_sha256"] = score_digest(doc)
    write_json_atomic(Path(folder) / EVAL_SCORE, doc)
    return doc
