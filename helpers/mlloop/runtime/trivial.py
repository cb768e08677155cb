"""Trivial predictors: what a model that learned nothing would score (the floor).

Each predictor is fit on the training targets, read from the prepdata train index (no image or
audio is loaded), and scored with the same metric code (``metrics.compute_metrics``) on the same
validation records as the model. A version that does not strictly beat the floor has learned
nothing that counts.

- classification: ``majority_class`` (always the most frequent training label) and
  ``class_prior`` (a label drawn per sample with the training label frequencies:
  ``random.Random(seed).choices(labels in sorted order, weights=counts, k=n_valid)``; a real,
  seeded predictor, so the same metric code scores it and a rerun gives the same numbers).
- regression: ``mean`` and ``median`` of the training targets (``statistics.fmean`` / ``median``).
- OCR and text: ``empty_string`` and ``most_frequent_string`` (the most frequent training text).
Ties (two labels or strings equally frequent) go to the first in sorted order.

``floor`` (docs/contracts.md): the best predictor on the primary metric, or, when no trivial
predictor can compute it (a loss: trivial predictors have no probabilities), on the first
metric of the rules' list that one can. Between predictors with equal values the first listed
wins. No trivial predictor for the task (e.g. detection) gives ``floor: null`` and a ``note``.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from typing import Any, Callable

from ..errors import MlloopError
from .metrics import compute_metrics

CLASSIFICATION, REGRESSION, TEXT = "classification", "regression", "text"
# task_format.yaml's task types (aliases resolved) that have trivial predictors.
FAMILY_OF_TASK = {
    **dict.fromkeys(("image-classification", "text-classification", "text-matching", "audio-classification",
                     "tabular-classification"), CLASSIFICATION),
    **dict.fromkeys(("image-regression", "tabular-regression"), REGRESSION),
    **dict.fromkeys(("ocr-recognition", "ocr-line-recognition", "asr", "speech-recognition", "image-to-text",
                     "image-captioning", "text-generation", "vqa", "document-qa", "multimodal-chat"), TEXT),
}
# Where each family keeps its target when task_format.yaml does not say (target_field).
TARGET_FIELDS = {
    CLASSIFICATION: ("label", "category", "class", "target"),
    REGRESSION: ("target", "value", "y", "label"),
    TEXT: ("target", "text", "transcription", "answer", "label"),
}
LOSS_REASON = "trivial predictors output a value, not probabilities, so they have no loss"


def task_family(task_type: str | None, task_format=None) -> str | None:
    """classification | regression | text for the task types that have trivial predictors; None
    for the others (detection, segmentation, retrieval, token tagging ...)."""
    if not isinstance(task_type, str):
        return None
    name = task_format.canonical(task_type) if hasattr(task_format, "canonical") else task_type
    if name in FAMILY_OF_TASK:
        return FAMILY_OF_TASK[name]
    if name.startswith("token-"):
        return None
    if "regression" in name:
        return REGRESSION
    if "classification" in name:
        return CLASSIFICATION
    return None


def declared_target(task_type: str | None, task_format=None) -> str | None:
    """``index_schema.target_field`` of the task in task_format.yaml, when it names one."""
    if task_format is None or not isinstance(task_type, str):
        return None
    entry = task_format.task(task_type) or {}
    schema = entry.get("index_schema") if isinstance(entry, dict) else None
    field = schema.get("target_field") if isinstance(schema, dict) else None
    return field if isinstance(field, str) else None


def target_field(family: str, *record_lists: list[dict], declared: str | None = None) -> str | None:
    """The target field present in every record of every list: task_format.yaml's
    ``target_field`` when it names one, else the first conventional name for the family."""
    for name in ((declared,) if declared else TARGET_FIELDS.get(family, ())):
        if all(all(isinstance(r, dict) and name in r for r in records) for records in record_lists):
            return name
    return None


def _order_key(v: Any):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def _most_frequent(values: list) -> Any:
    counts = Counter(values)
    best = max(counts.values())
    return min((v for v, c in counts.items() if c == best), key=_order_key)


def predictors_for(family: str, train_targets: list, seed: int) -> list[dict]:
    """``[{name, description, predict(n) -> list, fitted}]`` for the family, fit on ``train_targets``."""
    if not train_targets:
        raise MlloopError("the training split has no targets to fit trivial predictors on.")
    if family == CLASSIFICATION:
        counts = Counter(train_targets)
        labels = sorted(counts, key=_order_key)
        majority = _most_frequent(train_targets)

        def draw(n: int) -> list:
            return random.Random(seed).choices(labels, weights=[counts[v] for v in labels], k=n)

        return [
            _constant("majority_class", "always the most frequent training label", majority),
            {"name": "class_prior",
             "description": f"a label drawn per sample with the training label frequencies (random.Random({seed}))",
             "predict": draw, "fitted": {"labels": labels, "counts": [counts[v] for v in labels], "seed": seed}},
        ]
    if family == REGRESSION:
        values = [float(v) for v in train_targets]
        return [_constant("mean", "always the mean of the training targets", statistics.fmean(values)),
                _constant("median", "always the median of the training targets", float(statistics.median(values)))]
    if family == TEXT:
        return [_constant("empty_string", "always the empty string", ""),
                _constant("most_frequent_string", "always the most frequent training text", _most_frequent(train_targets))]
    raise MlloopError(f"no trivial predictors for task family {family!r}.")


def _constant(name: str, description: str, value: Any) -> dict:
    predict: Callable[[int], list] = lambda n: [value] * n  # noqa: E731
    return {"name": name, "description": description, "predict": predict, "fitted": {"constant": value}}


def _check_targets(family: str, targets: list, where: str) -> str | None:
    for v in targets:
        if family == REGRESSION and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
            return f"{where} holds a {type(v).__name__} target where a number belongs"
        if family == TEXT and not isinstance(v, str):
            return f"{where} holds a {type(v).__name__} target where text belongs"
        if family == CLASSIFICATION and not isinstance(v, (str, int)):
            return f"{where} holds a {type(v).__name__} target where a class label belongs"
    return None


def score_trivial(family: str | None, train_targets: list | None, valid_targets: list | None,
                  metrics: list[dict], primary: str, seed: int, *, valid_ids: list | None = None,
                  note: str | None = None) -> dict:
    """The ``predictors`` and ``floor`` part of trivial_baselines.json, plus what was skipped."""
    if family is None or train_targets is None or valid_targets is None:
        return {"predictors": [], "floor": None, "note": note or "no trivial predictors for this task"}
    for targets, where in ((train_targets, "the train index"), (valid_targets, "the validation records")):
        problem = _check_targets(family, targets, where)
        if problem:
            return {"predictors": [], "floor": None, "note": f"no trivial predictors: {problem}"}
    scored, not_computable = [], {}
    for p in predictors_for(family, train_targets, seed):
        preds = p["predict"](len(valid_targets))
        results = [{"prediction": y, "target": t, "loss": None} for y, t in zip(preds, valid_targets)]
        got = compute_metrics(results, metrics, ids=valid_ids, allow_missing=True)
        for name, reason in got.skipped.items():
            not_computable.setdefault(name, LOSS_REASON if name == "loss" else reason)
        scored.append({"name": p["name"], "description": p["description"], "fitted": p["fitted"],
                       "metrics": got.values})
    out = {"predictors": scored, "floor": choose_floor(scored, primary, metrics)}
    if not_computable:
        out["not_computable"] = not_computable
    if out["floor"] is None:
        out["note"] = "no trivial predictor can compute any of the configured metrics"
    return out


def choose_floor(scored: list[dict], primary: str, metrics: list[dict]) -> dict | None:
    """Best predictor on the primary metric, else on the first rules metric one can compute."""
    order = [primary] + [m["name"] for m in metrics if m["name"] != primary]
    for name in order:
        candidates = [(p["name"], m) for p in scored for m in p["metrics"] if m["name"] == name]
        if not candidates:
            continue
        best_name, best = candidates[0]
        for pname, m in candidates[1:]:
            better = m["value"] > best["value"] if m["higher_is_better"] else m["value"] < best["value"]
            if better:
                best_name, best = pname, m
        return {"metric": name, "value": best["value"], "predictor": best_name,
                "higher_is_better": best["higher_is_better"]}
    return None
