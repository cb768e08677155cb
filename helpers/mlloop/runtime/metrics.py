"""The configured metrics, computed by name from what ``predict`` returned.

Input: one result per validation record, ``{"prediction", "target", "loss"}`` plus the optional
fields a metric needs (``scores``, ``history``; detection, segmentation and ranking shapes of
``prediction``/``target``: docs/contracts.md "Predictions"). Output: the corpus value of each
metric in the rules' order, and per-sample values where a metric decomposes per sample (for
``eval_samples.jsonl`` and later statistics). The same code scores the model and the trivial
predictors, so a floor is comparable by construction.

The metrics themselves (names, aliases, direction, fields, floors) are the registry in
``mlloop.metrics``; their compute functions are ``metric_compute``. This module checks that
the results carry what each metric needs (one line naming the field and the sample when not)
and turns the values into JSON-safe floats. Choices the libraries leave open:

- ``loss``: the mean of the per-sample losses ``predict`` returned (every one must be finite).
- ``cer`` / ``wer``: torchmetrics.text edit counts; corpus level = total edits / total reference
  characters (words), in float64. An empty target adds its insertions to the edits and nothing
  to the total. Per sample: edits / max(len(target), 1). When every target is empty the corpus
  value is undefined and is an error.
- classification from labels (ints or strings, compared as text; multilabel: lists):
  torchmetrics' per-class tp/fp/fn, averaged in float64; macro leaves out classes with no target
  and no prediction; ``balanced_accuracy`` averages recall over the classes in the targets.
- classification from ``scores`` ({class: probability}): scikit-learn in float64. A class absent
  from the validation targets is left out of one-vs-rest averages with a warning; a value
  undefined for the whole split (ROC AUC with one target class) is an error, never a NaN.
- regression (float64): torchmetrics; a list prediction (forecast horizon, vector) is compared
  element-wise and flattened for the corpus value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import MlloopError

from .. import metrics as registry
from . import metric_compute as mc


class MetricError(MlloopError):
    """A configured metric cannot be computed for these results."""


@dataclass
class MetricValues:
    values: list[dict]                                   # [{name, value, higher_is_better}] in rules order
    per_sample: list[dict]                               # one {metric: value} per result
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why (only with allow_missing)
    warnings: list[str] = field(default_factory=list)    # e.g. a class absent from the split

    def value(self, name: str) -> float | None:
        return next((m["value"] for m in self.values if m["name"] == name), None)


def compute_metrics(results: list[dict], metrics: list[dict], *, ids: list | None = None,
                    allow_missing: bool = False) -> MetricValues:
    """Compute ``metrics`` (``[{name, higher_is_better}]``) over ``results``.

    ``allow_missing``: a metric these results cannot give (e.g. loss for a trivial predictor) is
    recorded in ``skipped`` instead of raising. Unknown names always raise.
    """
    if not results:
        raise MetricError("no validation results to score; the validation split is empty.")
    ids = ids if ids is not None else list(range(len(results)))
    per_sample: list[dict] = [{} for _ in results]
    values, skipped, warnings = [], {}, []
    for spec in metrics:
        name = spec["name"]
        parsed = registry.parse(name)
        if parsed is None:
            raise MetricError(_unsupported(name))
        reason = _cannot(parsed, results, ids)
        if reason is None:
            notes: list[str] = []
            try:
                value, samples = COMPUTE[parsed.metric.usage](results, parsed.param, notes.append)
                value = float(value)
            except (ArithmeticError, ValueError) as exc:  # undefined on this split: say why
                reason = str(exc).split("\n")[0]
            else:
                if not math.isfinite(value):
                    reason = f"it came out {value} (not finite) over {len(results)} samples"
        if reason:
            if allow_missing:
                skipped[name] = reason
                continue
            raise MetricError(f"metric {name!r} cannot be computed: {reason}.")
        warnings.extend(f"{name}: {n}" for n in notes)
        values.append({"name": name, "value": value, "higher_is_better": bool(spec["higher_is_better"])})
        if samples is not None and parsed.metric.per_sample:
            for row, v in zip(per_sample, samples):
                row[name] = float(v)
    return MetricValues(values, per_sample, skipped, warnings)


def sample_fields(result: dict, metrics: list[dict]) -> dict:
    """What ``eval_samples.jsonl`` keeps of one result so that every configured metric can be
    recomputed from the rows alone (a bootstrap resamples them): prediction, target, loss, the
    extra fields the metrics need (``scores``, ``history``), and for segmentation the pixel
    counts in place of the masks."""
    row = {"prediction": result.get("prediction"), "target": result.get("target"), "loss": result.get("loss")}
    for spec in metrics:
        parsed = registry.parse(spec["name"])
        if parsed is None:
            continue
        for needed in parsed.metric.needs:
            if needed not in row and needed in result:
                row[needed] = result[needed]
        if parsed.metric.floor == "majority_pixel" and "pixel_counts" not in row:
            row["pixel_counts"] = mc.pixel_counts(result)
            row["prediction"] = row["target"] = None  # the masks live in infer_samples/; counts suffice
    return row


def can_compute(name: str, results: list[dict], ids: list | None = None) -> str | None:
    """None when the results carry what ``name`` needs, else the reason they do not (an unknown
    name, a missing field, a wrong type). A value undefined on these records (one target class
    for ROC AUC) is found only by computing it."""
    parsed = registry.parse(name)
    if parsed is None:
        return _unsupported(name)
    return _cannot(parsed, results, ids if ids is not None else list(range(len(results))))


def _unsupported(name: str) -> str:
    return f"mlloop has no implementation of metric {name!r}: {registry.unknown_message(name)}."


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite_number(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _numbers(v: Any) -> bool:
    return _finite_number(v) or (isinstance(v, (list, tuple)) and bool(v) and all(_finite_number(x) for x in v))


def _label(v: Any) -> bool:
    return isinstance(v, (str, int)) and not isinstance(v, bool)


def _cannot(parsed, results: list[dict], ids: list) -> str | None:
    m, name = parsed.metric, parsed.name
    if "loss" in m.needs:
        for sid, r in zip(ids, results):
            loss = r.get("loss")
            if not _is_number(loss):
                return f"predict() returned loss={_kind(loss)} for sample {sid!r}; it must return each sample's loss"
            if not math.isfinite(loss):
                return f"predict() returned a non-finite loss ({loss}) for sample {sid!r}"
        return None
    for needed in m.needs:
        for sid, r in zip(ids, results):
            if needed not in r:
                return (f"predict() returned no {needed!r} for sample {sid!r}; {name} needs it "
                        f"({FIELD_HELP.get(needed, 'see docs/contracts.md, Predictions')})")
    check = CHECKS.get(m.floor)
    return check(name, parsed.param, results, ids) if check else None


FIELD_HELP = {
    "scores": "a {class: probability} dict per record, e.g. the softmax of the logits",
    "history": "the series before the forecast, a list of numbers",
    "prediction": "the model's output for the record",
    "target": "the record's ground truth",
}


def _check_text(name, param, results, ids):
    for sid, r in zip(ids, results):
        for key in ("prediction", "target"):
            if not isinstance(r.get(key), str):
                return f"it needs text, but the {key} of sample {sid!r} is {_kind(r.get(key))}"
    if name in ("cer", "wer") and all(len(mc._tokens(name, r["target"])) == 0 for r in results):
        return "every validation target is empty, so the error rate has no denominator"
    return None


def _check_exact(name, param, results, ids):
    if name in ("cer", "wer", "bleu", "chrf"):
        return _check_text(name, param, results, ids)
    return None


def _check_labels(name, param, results, ids):
    multilabel = isinstance(results[0].get("target"), (list, tuple))
    for sid, r in zip(ids, results):
        for key in ("prediction", "target"):
            v = r.get(key)
            if multilabel:
                if not isinstance(v, (list, tuple)) or not all(_label(x) for x in v):
                    return (f"it needs label lists (multilabel, as the first target), but the {key} of sample "
                            f"{sid!r} is {_kind(v)}")
            elif not _label(v):
                return f"it needs class labels (int or str), but the {key} of sample {sid!r} is {_kind(v)}"
        if not multilabel and isinstance(r["prediction"], str) != isinstance(r["target"], str):
            return (f"sample {sid!r} has a {_kind(r['prediction'])} prediction but a {_kind(r['target'])} target; "
                    "predict() must return both as class names or both as class indices")
    if multilabel and name in ("mcc", "cohen_kappa", "balanced_accuracy"):
        return f"{name} is defined for single-label classification, and the targets are label lists"
    return None


def _check_scores(name, param, results, ids):
    keys = None
    multilabel = isinstance(results[0].get("target"), (list, tuple))
    for sid, r in zip(ids, results):
        scores = r["scores"]
        if not isinstance(scores, dict) or len(scores) < 2:
            return (f"scores of sample {sid!r} is {_kind(scores)}; {name} needs a {{class: probability}} dict "
                    "with every class")
        mine = {str(k) for k in scores}
        if keys is None:
            keys = mine
        elif mine != keys:
            return f"scores of sample {sid!r} has other classes than the first sample's; every record needs every class"
        if not all(_finite_number(v) for v in scores.values()):
            return f"scores of sample {sid!r} holds a value that is not a finite number"
        targets = r["target"] if multilabel and isinstance(r["target"], (list, tuple)) else [r["target"]]
        for t in targets:
            if not _label(t) or str(t) not in keys:
                return f"the target {t!r} of sample {sid!r} is not one of the classes in scores"
        if name in ("log_loss", "brier") and not multilabel:
            total = math.fsum(float(v) for v in scores.values())
            if abs(total - 1.0) > 1e-3 or min(float(v) for v in scores.values()) < 0:
                return (f"scores of sample {sid!r} sum to {total:.4g}; {name} needs probabilities "
                        "(non-negative, summing to 1: apply softmax)")
    if multilabel and name in ("log_loss", "brier", "top_k_accuracy"):
        return f"{name} is defined for single-label classification, and the targets are label lists"
    return None


def _check_numbers(name, param, results, ids):
    for sid, r in zip(ids, results):
        p, t = r.get("prediction"), r.get("target")
        for key, v in (("prediction", p), ("target", t)):
            if _is_number(v) and not math.isfinite(v):
                return f"the {key} of sample {sid!r} is {v}, not a finite number"
            if not _numbers(v):
                return f"it needs numbers, but the {key} of sample {sid!r} is {_kind(v)}"
        if len(mc._flat(p)) != len(mc._flat(t)):
            return f"sample {sid!r} has {len(mc._flat(p))} predicted values for {len(mc._flat(t))} targets"
    if name == "r2" and sum(len(mc._flat(r["target"])) for r in results) < 2:
        return "r2 needs at least 2 validation samples"
    return None


def _check_history(name, param, results, ids):
    problem = _check_numbers(name, param, results, ids)
    if problem:
        return problem
    m = int(param or 1)
    for sid, r in zip(ids, results):
        h = r["history"]
        if not isinstance(h, (list, tuple)) or not all(_finite_number(x) for x in h) or len(h) <= m:
            return f"the history of sample {sid!r} must be a list of more than {m} numbers (the season length)"
        if mc.seasonal_scale(mc._flat(h), m) == 0:
            return (f"the history of sample {sid!r} repeats every {m} step(s), so the seasonal naive error that "
                    "scales MASE is 0")
    return None


def _check_boxes(name, param, results, ids):
    for sid, r in zip(ids, results):
        for key, need in (("prediction", ("boxes", "labels", "scores")), ("target", ("boxes", "labels"))):
            v = r.get(key)
            if not isinstance(v, dict) or any(not isinstance(v.get(f), (list, tuple)) for f in need):
                return (f"the {key} of sample {sid!r} must be a dict with {', '.join(need)} lists "
                        "(boxes as [x1, y1, x2, y2] in pixels)")
            if any(len(v[f]) != len(v["boxes"]) for f in need):
                return f"the {key} of sample {sid!r} has lists of different lengths ({', '.join(need)})"
            if any(not isinstance(b, (list, tuple)) or len(b) != 4 or not all(_finite_number(x) for x in b)
                   for b in v["boxes"]):
                return f"a box of the {key} of sample {sid!r} is not 4 finite numbers [x1, y1, x2, y2]"
    return None


def _shape(v) -> list[int] | None:
    shape = getattr(v, "shape", None)
    if shape is not None:
        return list(shape)
    if isinstance(v, (list, tuple)) and v and all(isinstance(row, (list, tuple)) for row in v):
        widths = {len(row) for row in v}
        return [len(v), widths.pop()] if len(widths) == 1 else None
    return None


def _check_masks(name, param, results, ids):
    for sid, r in zip(ids, results):
        if isinstance(r.get("pixel_counts"), dict):
            continue
        shapes = [_shape(r.get(key)) for key in ("prediction", "target")]
        if shapes[0] is None or shapes[1] is None:
            return f"it needs masks (2-D lists or arrays of class ids), but sample {sid!r} has none"
        if shapes[0] != shapes[1]:
            return f"sample {sid!r} has a {shapes[0]} prediction mask for a {shapes[1]} target mask"
    return None


def _check_ranking(name, param, results, ids):
    for sid, r in zip(ids, results):
        if not isinstance(r.get("prediction"), (list, tuple)):
            return f"it needs a ranked list of item ids (best first), but the prediction of sample {sid!r} is {_kind(r.get('prediction'))}"
        if r.get("target") is None or not mc._gains(r["target"]):
            return f"sample {sid!r} has no relevant item in its target, so {name} is undefined for it"
    return None


CHECKS = {"strings": _check_exact, "labels": _check_labels, "prior_scores": _check_scores,
          "mean_median": _check_numbers, "seasonal_naive": _check_history, "no_boxes": _check_boxes,
          "majority_pixel": _check_masks, "shuffled": _check_ranking}

COMPUTE = {
    "loss": mc.loss, "perplexity": mc.perplexity, "exact_match": mc.exact_match, "cer": mc.error_rate("cer"),
    "wer": mc.error_rate("wer"), "bleu": mc.bleu, "chrf": mc.chrf,
    "accuracy": mc.accuracy, "balanced_accuracy": mc.balanced_accuracy, "mcc": mc.mcc, "cohen_kappa": mc.cohen_kappa,
    **{f"{avg}_{kind}" + ("[@label]" if avg == "binary" else ""): mc.averaged(kind, avg)
       for avg in ("macro", "micro", "weighted", "binary") for kind in ("precision", "recall", "f1")},
    "precision": mc.averaged("precision", "macro"), "recall": mc.averaged("recall", "macro"),
    "f1": mc.averaged("f1", "macro"),
    "top_k_accuracy@k": mc.top_k_accuracy, "roc_auc": mc.roc_auc, "average_precision": mc.average_precision,
    "log_loss": mc.log_loss, "brier": mc.brier,
    **{name: mc.regression(name) for name in ("mse", "rmse", "mae", "mape", "smape", "r2")}, "mase[@m]": mc.mase,
    "map": mc.detection("map"), "map_50": mc.detection("map_50"), "map_75": mc.detection("map_75"),
    **{name: mc.segmentation(name) for name in ("miou", "dice", "pixel_accuracy")},
    "ndcg[@k]": mc.ranking("ndcg"), "precision@k": mc.ranking("precision"), "recall@k": mc.ranking("recall"),
    "map@k": mc.ranking("map"), "mrr": mc.ranking("mrr"),
}
