"""Is a version's score to be trusted: provenance and recomputation of eval_score.json.

The documents themselves are read by their formats (``mlloop.formats.eval_score``,
``mlloop.formats.trivial_baselines``), re-exported here for the readers that judge them. Provenance: a score records the sha256 of the checkpoint and of
``03_eval.py`` it came from, and of itself; a mismatch means stale (re-evaluate) or tampered.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

from .bootstrap import VECTORISED, full_data_value
from .formats.eval_samples import read_eval_samples
from .formats.eval_score import OUTPUT_HASHES, EvalScore, finite_number, score_digest
from .jsonio import JsonProblems, sha256_file
from .layout import BEST_CKPT, Project, valid_index_file

FRESH, STALE, TAMPERED, UNKNOWN = "fresh", "stale", "tampered", "unknown"


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
    ckpt = folder / BEST_CKPT
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
    n = len(rows)
    if not n:
        return None
    if name in MEAN_OF_ROWS and all(finite_number(r.get(name)) for r in rows):
        return math.fsum(r[name] for r in rows) / n, 1e-6
    if name == "rmse" and all(finite_number(r.get("rmse")) for r in rows):
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
    n = len(rows)
    for name in MEAN_OF_ROWS[1:]:
        if all(finite_number(r.get(name)) for r in rows):
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
    path = project.eval_samples_path(vid)
    if not _hashable(project, path):
        return None
    try:
        rows, gaps = read_eval_samples(path)
    except JsonProblems:
        return None
    if not rows or gaps:
        return None
    for m in score.metrics:
        got = recompute_with_tolerance(m["name"], rows) if m["name"] in RECOMPUTABLE else None
        if got is not None and not math.isclose(got[0], m["value"], rel_tol=got[1], abs_tol=1e-9):
            return f"its {m['name']} ({m['value']:.6g}) is not what eval_samples.jsonl gives ({got[0]:.6g})"
    return None
