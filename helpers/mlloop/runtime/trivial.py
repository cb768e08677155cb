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

from .. import metrics as registry
from ..errors import MlloopError
from .metric_compute import pixel_counts
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

        prior = {str(v): counts[v] / len(train_targets) for v in labels}
        return [
            {**_constant("majority_class", "always the most frequent training label, scored by the training class "
                         "prior", majority), "scores": prior},
            {"name": "class_prior",
             "description": f"a label drawn per sample with the training label frequencies (random.Random({seed})), "
                            "scored by the training class prior",
             "predict": draw, "fitted": {"labels": labels, "counts": [counts[v] for v in labels], "seed": seed},
             "scores": prior},
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
        if "scores" in p:  # constant class probabilities: ROC AUC 0.5, the prior's log loss and Brier
            results = [{**r, "scores": p["scores"]} for r in results]
        _score(p, results, metrics, valid_ids, scored, not_computable)
    return _finish(scored, not_computable, primary, metrics)


def _score(p: dict, results: list[dict], metrics: list[dict], ids, scored: list, not_computable: dict) -> None:
    got = compute_metrics(results, metrics, ids=ids, allow_missing=True)
    for name, reason in got.skipped.items():
        not_computable.setdefault(name, LOSS_REASON if name == "loss" else reason)
    scored.append({"name": p["name"], "description": p["description"], "fitted": p["fitted"],
                   "metrics": got.values})


def _finish(scored: list, not_computable: dict, primary: str, metrics: list[dict]) -> dict:
    out = {"predictors": scored, "floor": choose_floor(scored, primary, metrics)}
    if not_computable:
        out["not_computable"] = not_computable
    if out["floor"] is None:
        out["note"] = "no trivial predictor can compute any of the configured metrics"
    return out


# ---- floors built from the model's own results (the index alone does not hold what they need) ----

FORECASTING, DETECTION, SEGMENTATION, RANKING = "forecasting", "detection", "segmentation", "ranking"
RESULT_FAMILY_OF_TASK = {
    "time-series-forecasting": FORECASTING, "object-detection": DETECTION, "ocr-detection": DETECTION,
    "instance-segmentation": DETECTION, "image-segmentation": SEGMENTATION, "text-pair-ranking": RANKING,
    "text-ranking": RANKING, "dense-retrieval": RANKING, "recommender-sequence": RANKING,
}


def results_family(task_type: str | None) -> str | None:
    return RESULT_FAMILY_OF_TASK.get(task_type) if isinstance(task_type, str) else None


def _seasons(metrics: list[dict]) -> list[int]:
    found = {int(p.param or 1) for p in map(registry.parse, (m["name"] for m in metrics))
             if p is not None and p.metric.name == "mase"}
    return sorted(found | {1})


def _tile(history: list, m: int, horizon: int) -> list[float]:
    season = [float(x) for x in history[-m:]]
    return [season[i % m] for i in range(horizon)]


def _majority_mask_counts(result: dict, cls) -> dict:
    c = pixel_counts(result)
    target = {k: tp + fn for k, tp, fn in zip(c["classes"], c["tp"], c["fn"])}
    pixels = sum(target.values())
    classes = sorted(set(target) | {cls})
    return {"classes": classes,
            "tp": [target.get(k, 0) if k == cls else 0 for k in classes],
            "fp": [pixels - target.get(k, 0) if k == cls else 0 for k in classes],
            "fn": [0 if k == cls else target.get(k, 0) for k in classes]}


def fit_box_prior(objects: list[tuple[list[float], str]]) -> list[dict]:
    """Per class (sorted by name): the coordinate-wise median of its training boxes as fractions of the
    image ([x1/w, y1/h, x2/w, y2/h]) and its share of all training boxes."""
    by_class: dict[str, list] = {}
    for box, label in objects:
        by_class.setdefault(str(label), []).append(box)
    total = sum(len(v) for v in by_class.values())
    return [{"label": label, "box": [statistics.median(b[i] for b in found) for i in range(4)],
             "share": len(found) / total} for label, found in sorted(by_class.items())]


def score_from_results(family: str, results: list[dict], metrics: list[dict], primary: str, seed: int,
                       ids: list | None = None, box_prior: list[dict] | None = None,
                       image_sizes: list | None = None) -> dict:
    """Trivial predictors whose inputs are in the evaluated results, not in the train index:
    seasonal naive forecasts of each record's ``history``, no boxes or each class's median box, every pixel the majority
    class of the evaluated masks, the model's own candidates in a seeded random order. Detection also
    scores ``box_prior`` (``fit_box_prior`` on the training labels) in every image, scaled to its
    ``image_sizes`` entry (width, height) when both are given."""
    scored, not_computable = [], {}
    base = [{"target": r.get("target"), "loss": None} for r in results]
    if family == FORECASTING:
        if not all(isinstance(r.get("history"), list) and r["history"] for r in results):
            return {"predictors": [], "floor": None,
                    "note": "no trivial predictors: predict() returned no history for the seasonal naive forecast"}
        seasons = _seasons(metrics)
        # A season longer than some history has no last season to repeat: that predictor is left out.
        short = [m for m in seasons if any(len(r["history"]) < m for r in results)]
        for m in (m for m in seasons if m not in short):
            rows = [{**b, "history": r["history"],
                     "prediction": _tile(r["history"], m, len(r["target"]) if isinstance(r["target"], list) else 1)}
                    for b, r in zip(base, results)]
            rows = [{**row, "prediction": row["prediction"] if isinstance(row["target"], list) else row["prediction"][0]}
                    for row in rows]
            name = "naive" if m == 1 else f"seasonal_naive@{m}"
            _score({"name": name, "description": f"the last {m} value(s) of each record's history repeated",
                    "fitted": {"season": m}}, rows, metrics, ids, scored, not_computable)
        if short:
            not_computable.update({f"seasonal_naive@{m}": f"a history is shorter than the season ({m})" for m in short})
    elif family == DETECTION:
        rows = [{**b, "prediction": {"boxes": [], "labels": [], "scores": []}} for b in base]
        _score({"name": "no_boxes", "description": "no boxes at all", "fitted": {}}, rows, metrics, ids, scored,
               not_computable)
        if box_prior and image_sizes and len(image_sizes) == len(results):
            rows = [{**b, "prediction": {"boxes": [[p["box"][0] * w, p["box"][1] * h, p["box"][2] * w, p["box"][3] * h]
                                                   for p in box_prior],
                                         "labels": [p["label"] for p in box_prior], "scores": [p["share"] for p in box_prior]}}
                    for b, (w, h) in zip(base, image_sizes)]
            _score({"name": "prior_boxes", "description": "in every image, each class's median training box (as a "
                    "fraction of the image), scored by the class's share of the training boxes",
                    "fitted": {"boxes": box_prior}}, rows, metrics, ids, scored, not_computable)
    elif family == SEGMENTATION:
        totals: dict = {}
        for r in results:
            c = pixel_counts(r)
            for k, tp, fn in zip(c["classes"], c["tp"], c["fn"]):
                totals[k] = totals.get(k, 0) + tp + fn
        majority = max(sorted(totals), key=lambda k: totals[k])
        rows = [{"prediction": None, "target": None, "loss": None, "pixel_counts": _majority_mask_counts(r, majority)}
                for r in results]
        _score({"name": "majority_pixel", "description": "every pixel the most frequent class of the evaluated masks",
                "fitted": {"class": majority}}, rows, metrics, ids, scored, not_computable)
    elif family == RANKING:
        rng = random.Random(seed)
        rows = [{**b, "prediction": rng.sample(list(r["prediction"]), len(r["prediction"]))
                 if isinstance(r.get("prediction"), list) else r.get("prediction")} for b, r in zip(base, results)]
        _score({"name": "shuffled", "description": f"the model's candidates in a random order (random.Random({seed}))",
                "fitted": {"seed": seed}}, rows, metrics, ids, scored, not_computable)
    else:
        raise MlloopError(f"no trivial predictors for task family {family!r}.")
    return _finish(scored, not_computable, primary, metrics)


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
