"""eval_score.json and trivial_baselines.json: read strictly, compared, checked for provenance.

One reader for everyone: ``mlloop check`` reports what it finds, ``status``/``analyze``/``report``
use the parsed values. Provenance: a score records the sha256 of the checkpoint and of
``03_eval.py`` it came from, and of itself; a mismatch means stale (re-evaluate) or tampered.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .bootstrap import VECTORISED
from .errors import Findings
from .jsonio import JsonProblems, parse_json_text, read_json, read_text_file
from .layout import Project

SEED_FIELDS = ("dataset_id", "created_at", "num_samples", "metrics", "latency_ms")
PROVENANCE_FIELDS = ("checkpoint_sha256", "eval_script_sha256", "score_sha256")
# Recorded by 03_eval.py beside the fields above: the outputs written with the score (edited
# afterwards = tampered) and the inputs it read (changed afterwards = stale).
OUTPUT_HASHES = {"eval_samples_sha256": "eval_samples.jsonl", "trivial_baselines_sha256": "trivial_baselines.json"}
INPUT_HASHES = ("train_script_sha256", "valid_index_sha256")
FRESH, STALE, TAMPERED, UNKNOWN = "fresh", "stale", "tampered", "unknown"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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


def _finite_number(v) -> bool:
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
    if "latency_ms" in doc and not (_finite_number(lat) and lat >= 0):
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
        if not _finite_number(m.get("value")):
            findings.problem("eval.metric", rel,
                             f"value must be a finite number, found {json.dumps(m.get('value'))}", where + ".value")
            ok = False
        if not isinstance(m.get("higher_is_better"), bool):
            findings.problem("eval.metric", rel, "higher_is_better must be true or false", where + ".higher_is_better")
            ok = False
        if ok:
            good.append({"name": m["name"], "value": float(m["value"]), "higher_is_better": m["higher_is_better"]})
    return good


def provenance(project: Project, vid: str, score: EvalScore, sha256=sha256_file,
               recompute: bool = True) -> tuple[str, str]:
    """``(state, reason)``: fresh, stale (inputs changed since), tampered (the score was edited
    after it was written) or unknown (no provenance recorded). ``sha256`` lets a caller that
    checks many versions hash each file once (03_eval.py is shared by all of them)."""
    doc = score.doc
    if "score_sha256" in doc and isinstance(doc["score_sha256"], str) and doc["score_sha256"] != score_digest(doc):
        return TAMPERED, "eval_score.json was edited after 03_eval.py wrote it (score_sha256 does not match)"
    missing = [k for k in ("checkpoint_sha256", "eval_script_sha256") if k not in doc]
    if missing:
        return UNKNOWN, f"eval_score.json records no {' / '.join(missing)}; it was not written by 03_eval.py"
    folder = project.artifact_dir(vid)
    for key, name in OUTPUT_HASHES.items():
        if isinstance(doc.get(key), str) and _hashable(project, folder / name) \
                and sha256(folder / name) != doc[key]:
            return TAMPERED, f"{name} was edited after 03_eval.py wrote it ({key} in eval_score.json does not match)"
    # A re-signed hand edit: the digests agree, the numbers do not follow from the records.
    why = recompute_mismatch(project, vid, score) if recompute else None
    if why:
        return TAMPERED, f"eval_score.json was edited after 03_eval.py wrote it: {why}"
    ckpt = folder / "best.ckpt"
    if not ckpt.is_file():
        return STALE, "best.ckpt is missing"
    if sha256(ckpt) != doc["checkpoint_sha256"]:
        return STALE, "best.ckpt changed since this score was computed"
    if not project.eval_script.is_file():
        return STALE, "03_eval.py is missing"
    if sha256(project.eval_script) != doc["eval_script_sha256"]:
        return STALE, "03_eval.py changed since this score was computed"
    if isinstance(doc.get("train_script_sha256"), str):
        script = project.script(vid)
        if not _hashable(project, script):
            return STALE, f"{script.name} is missing"
        if sha256(script) != doc["train_script_sha256"]:
            return STALE, f"{script.name} changed since this score was computed"
    if isinstance(doc.get("valid_index_sha256"), str) and isinstance(doc.get("dataset_id"), str):
        index = valid_index_file(project.prepdata(doc["dataset_id"]))
        if index is None or not _hashable(project, index):
            return STALE, f"the validation index of dataset/prepdata/{doc['dataset_id']}/ is missing"
        if sha256(index) != doc["valid_index_sha256"]:
            return STALE, f"the validation data ({project.rel(index)}) changed since this score was computed"
    return FRESH, ""


def valid_index_file(prepdata: Path) -> Path | None:
    """The validation index a score was computed on: ``valid/valid.jsonl``, else ``valid.parquet``
    (the order in which the runtime's ``read_index`` looks)."""
    for name in ("valid.jsonl", "valid.parquet"):
        path = Path(prepdata) / "valid" / name
        if path.is_file():
            return path
    return None


def _hashable(project: Project, path: Path) -> bool:
    """A regular file inside the project: hashing never opens a FIFO or a link out of it."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    real, root = os.path.realpath(path), os.path.realpath(project.root)
    return real.startswith(root + os.sep)


# Metrics whose value eval_samples.jsonl determines without torch: the mean of the per-sample
# column 03_eval.py writes (runtime.metrics: loss, accuracy, exact_match, mse, mae, mape; rmse is
# the root of the mean square), else mlloop.bootstrap's vectorised form on all records (the
# value `mlloop compare` reproduces): F1s, precision, recall, balanced accuracy, CER, WER, BLEU, r2.
MEAN_OF_ROWS = ("loss", "accuracy", "exact_match", "mse", "mae", "mape")
# A score must be recomputable for these (older check); the rest are checked when the rows allow it.
REQUIRED = MEAN_OF_ROWS + ("rmse",)
RECOMPUTABLE = tuple(dict.fromkeys(REQUIRED + VECTORISED))


def recompute_metric(name: str, rows: list[dict]) -> float | None:
    """``name`` over the eval_samples.jsonl ``rows``, or None when the rows do not hold what it needs."""
    got = recompute_with_tolerance(name, rows)
    return None if got is None else got[0]


def recompute_with_tolerance(name: str, rows: list[dict]) -> tuple[float, float] | None:
    """``(value, rel_tol)`` of ``name`` over ``rows``: how closely the recorded value must agree
    (``mlloop.bootstrap.close``'s 1e-9, BLEU's float32 sums 1e-5; per-sample column means 1e-6)."""
    from .bootstrap import full_data_value

    n = len(rows)
    if not n:
        return None
    if name in MEAN_OF_ROWS and all(_finite_number(r.get(name)) for r in rows):
        return math.fsum(r[name] for r in rows) / n, 1e-6
    if name == "rmse" and all(_finite_number(r.get("rmse")) for r in rows):
        return math.sqrt(math.fsum(r["rmse"] ** 2 for r in rows) / n), 1e-6
    if not _self_consistent(rows):
        return None
    got = full_data_value(name, rows)
    return None if got is None or not math.isfinite(got[0]) else got


def _self_consistent(rows: list[dict]) -> bool:
    """Whether the records' per-sample columns (accuracy, mse, ...) agree with their own
    prediction/target. 03_eval.py's always do; hand-made records whose columns carry a mean that
    their predictions do not give (the tests' fake projects) cannot vouch for the metrics computed
    from predictions, which then stay unchecked. Editing records means re-signing them anyway."""
    from .bootstrap import full_data_value

    n = len(rows)
    for name in MEAN_OF_ROWS[1:]:
        if all(_finite_number(r.get(name)) for r in rows):
            got = full_data_value(name, rows)
            if got is not None and not math.isclose(got[0], math.fsum(r[name] for r in rows) / n,
                                                    rel_tol=1e-6, abs_tol=1e-9):
                return False
    return True


def unchecked_metrics(names: list[str], rows: list[dict]) -> list[str]:
    """The metrics of a score that eval_samples.jsonl cannot cross-check without torch."""
    return [name for name in names if name not in RECOMPUTABLE or recompute_metric(name, rows) is None]


def recompute_mismatch(project: Project, vid: str, score: EvalScore) -> str | None:
    """Why the score's numbers are not what its eval_samples.jsonl gives, or None (they agree, or
    the records cannot be read: `mlloop check` reports that)."""
    path = project.artifact_dir(vid) / "eval_samples.jsonl"
    if not _hashable(project, path):
        return None
    try:
        text = read_text_file(path)
        rows = [parse_json_text(line, "") for line in text.splitlines() if line.strip()]
    except JsonProblems:
        return None
    if not rows or not all(isinstance(r, dict) for r in rows):
        return None
    for m in score.metrics:
        got = recompute_with_tolerance(m["name"], rows) if m["name"] in RECOMPUTABLE else None
        if got is not None and not math.isclose(got[0], m["value"], rel_tol=got[1], abs_tol=1e-9):
            return f"its {m['name']} ({m['value']:.6g}) is not what eval_samples.jsonl gives ({got[0]:.6g})"
    return None


@dataclass(frozen=True)
class Floor:
    metric: str
    value: float
    predictor: str
    higher_is_better: bool

    def beaten_by(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value > self.value if self.higher_is_better else value < self.value


def read_floor(project: Project, vid: str, findings: Findings | None = None) -> Floor | None:
    """The trivial-baseline floor recorded beside a version's eval_score.json, if any."""
    path = project.artifact_dir(vid) / "trivial_baselines.json"
    if not path.exists():
        return None
    rel = project.rel(path)
    try:
        doc = read_json(path, rel)
    except JsonProblems as exc:
        if findings is not None:
            findings.problems.extend(exc.problems)
        return None
    floor = doc.get("floor") if isinstance(doc, dict) else None
    if not isinstance(floor, dict):
        if findings is not None:
            findings.problem("floor.invalid", rel, "trivial_baselines.json needs a floor object {metric, value, predictor, higher_is_better}", "$.floor")
        return None
    if not (isinstance(floor.get("metric"), str) and _finite_number(floor.get("value"))
            and isinstance(floor.get("higher_is_better"), bool)):
        if findings is not None:
            findings.problem("floor.invalid", rel, "floor needs metric (string), value (finite number) and higher_is_better (bool)", "$.floor")
        return None
    return Floor(floor["metric"], float(floor["value"]), str(floor.get("predictor", "")), floor["higher_is_better"])
