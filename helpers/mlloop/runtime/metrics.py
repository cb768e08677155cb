"""The configured metrics, computed by name from what ``predict`` returned.

Input: one result per validation record, ``{"prediction", "target", "loss"}`` (docs/contracts.md).
Output: the corpus value of each metric in the rules' order, and per-sample values where a
metric decomposes per sample (for ``eval_samples.jsonl`` and later statistics). The same code
scores the model and the trivial predictors, so a floor is comparable by construction.

Where torchmetrics has the metric it computes it; the choices it leaves open are fixed here:

- ``loss``: the mean of the per-sample losses ``predict`` returned (every one must be finite).
- ``cer`` / ``wer``: torchmetrics.text edit counts; corpus level = total edits / total reference
  characters (words), in float64. An empty target adds its insertions to the edits and nothing
  to the total. Per sample: edits / max(len(target), 1), so an empty target scores 0 for an
  empty prediction and len(prediction) otherwise (torchmetrics itself gives nan / inf there).
  When every target is empty the corpus value is undefined and is an error.
- ``exact_match``: fraction of predictions equal to their target (any type).
- classification (labels are ints or strings, indexed in sorted order; ``num_classes`` = the
  labels seen in targets and predictions, at least 2): ``accuracy`` = micro (fraction correct);
  ``macro_f1`` / ``f1`` / ``precision`` / ``recall`` = torchmetrics' macro average, which leaves out
  classes with no target and no prediction and counts a predicted-but-absent class as 0;
  ``micro_f1``; ``weighted_f1`` (by support); ``balanced_accuracy`` = torchmetrics' per-class
  recall averaged over the classes present in the targets (sklearn's definition). torchmetrics
  counts tp/fp/fn per class (``multiclass_stat_scores``); the averages are taken in float64.
- regression (float64): ``mse``, ``rmse`` (= sqrt of mse, ``squared=False``), ``mae``, ``mape``
  (torchmetrics clamps |target| at 1.17e-6), ``r2`` (torchmetrics: needs 2 samples; treats a
  residual or total sum of squares within 1e-4 of zero as zero, so constant targets give 0.0).
- ``bleu`` (4-gram, one reference) and ``chrf``: torchmetrics.text, corpus level only.

Metrics that need per-class scores (``top5_accuracy``, ``auroc``, ``average_precision``) or are
not implemented raise ``MetricError`` naming the metric: one line, what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import MlloopError

TEXT = ("cer", "wer", "bleu", "chrf")
LABEL = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "f1", "precision", "recall")
NUMBER = ("mse", "rmse", "mae", "mape", "r2")
NEEDS_SCORES = ("top5_accuracy", "auroc", "average_precision")
SUPPORTED = ("loss", "exact_match") + TEXT + LABEL + NUMBER
# Per-sample value of a metric (the metric applied to one sample); the others are corpus-only.
PER_SAMPLE = ("loss", "cer", "wer", "exact_match", "accuracy", "mse", "rmse", "mae", "mape")


class MetricError(MlloopError):
    """A configured metric cannot be computed for these results."""


@dataclass
class MetricValues:
    values: list[dict]                                   # [{name, value, higher_is_better}] in rules order
    per_sample: list[dict]                               # one {metric: value} per result
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why (only with allow_missing)

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
    values, skipped = [], {}
    for spec in metrics:
        name = spec["name"]
        fn = _IMPLEMENTATIONS.get(name)
        if fn is None:
            raise MetricError(_unsupported(name))
        reason = _cannot(name, results, ids)
        if reason:
            if allow_missing:
                skipped[name] = reason
                continue
            raise MetricError(f"metric {name!r} cannot be computed: {reason}.")
        value, samples = fn(results)
        value = float(value)
        if not math.isfinite(value):
            raise MetricError(f"metric {name!r} came out {value} (not finite) over {len(results)} samples; "
                              "check the predictions and targets in eval_samples.jsonl.")
        values.append({"name": name, "value": value, "higher_is_better": bool(spec["higher_is_better"])})
        if samples is not None and name in PER_SAMPLE:
            for row, v in zip(per_sample, samples):
                row[name] = float(v)
    return MetricValues(values, per_sample, skipped)


def can_compute(name: str, results: list[dict]) -> str | None:
    """None when ``name`` can be computed from ``results``, else the reason it cannot."""
    if name not in _IMPLEMENTATIONS:
        return _unsupported(name)
    return _cannot(name, results, list(range(len(results))))


def _unsupported(name: str) -> str:
    if name in NEEDS_SCORES:
        return (f"metric {name!r} needs per-class scores, and predict() returns one label per sample; "
                "remove it from eval_config.metrics (accuracy, macro_f1 work from labels).")
    return (f"mlloop has no implementation of metric {name!r}; use one of {', '.join(SUPPORTED)} "
            "in eval_config.metrics.")


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cannot(name: str, results: list[dict], ids: list) -> str | None:
    if name == "loss":
        for sid, r in zip(ids, results):
            loss = r.get("loss")
            if not _is_number(loss):
                return f"predict() returned loss={_kind(loss)} for sample {sid!r}; it must return each sample's loss"
            if not math.isfinite(loss):
                return f"predict() returned a non-finite loss ({loss}) for sample {sid!r}"
        return None
    if name == "exact_match":
        return None
    for sid, r in zip(ids, results):
        for key in ("prediction", "target"):
            v = r.get(key)
            if name in TEXT and not isinstance(v, str):
                return f"it needs text, but the {key} of sample {sid!r} is {_kind(v)}"
            if name in LABEL and not isinstance(v, (str, int)):
                return f"it needs class labels (int or str), but the {key} of sample {sid!r} is {_kind(v)}"
            if name in NUMBER:
                if not _is_number(v):
                    return f"it needs numbers, but the {key} of sample {sid!r} is {_kind(v)}"
                if not math.isfinite(v):
                    return f"the {key} of sample {sid!r} is {v}, not a finite number"
        if name in LABEL and isinstance(r["prediction"], str) != isinstance(r["target"], str):
            return (f"sample {sid!r} has a {_kind(r['prediction'])} prediction but a {_kind(r['target'])} target; "
                    "predict() must return both as class names or both as class indices")
    if name in ("cer", "wer") and all(len(_tokens(name, r["target"])) == 0 for r in results):
        return "every validation target is empty, so the error rate has no denominator"
    if name == "r2" and len(results) < 2:
        return "r2 needs at least 2 validation samples"
    return None


# ---- implementations: each returns (corpus value, per-sample values or None) -------------------

def _tokens(name: str, text: str) -> list[str]:
    return list(text) if name == "cer" else text.split()


def _error_rate(name: str) -> Callable:
    def compute(results):
        from torchmetrics.functional.text import char_error_rate, word_error_rate

        fn = char_error_rate if name == "cer" else word_error_rate
        edits, lengths = [], []
        for r in results:
            n_pred, n_target = len(_tokens(name, r["prediction"])), len(_tokens(name, r["target"]))
            # torchmetrics gives edits / len(target) in float32; the edit count is an integer,
            # recovered exactly, so sums and ratios are exact in float64.
            edits.append(round(fn([r["prediction"]], [r["target"]]).item() * n_target) if n_target else n_pred)
            lengths.append(n_target)
        samples = [e / max(n, 1) for e, n in zip(edits, lengths)]
        return sum(edits) / sum(lengths), samples
    return compute


def _exact_match(results):
    hits = [1.0 if r["prediction"] == r["target"] else 0.0 for r in results]
    return sum(hits) / len(hits), hits


def _label_key(v):
    return (0, v, "") if isinstance(v, int) else (1, 0, str(v))


def _label_tensors(results):
    import torch

    labels = sorted({r["target"] for r in results} | {r["prediction"] for r in results}, key=_label_key)
    index = {v: i for i, v in enumerate(labels)}
    preds = torch.tensor([index[r["prediction"]] for r in results], dtype=torch.long)
    target = torch.tensor([index[r["target"]] for r in results], dtype=torch.long)
    return preds, target, max(2, len(labels))


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0  # torchmetrics' zero_division=0


def _classification(name: str) -> Callable:
    def compute(results):
        from torchmetrics.functional.classification import multiclass_stat_scores

        preds, target, k = _label_tensors(results)
        # torchmetrics counts tp/fp/tn/fn/support per class; the averages below mirror its
        # definitions, in float64 so that 7/10 is 0.7 and not float32's 0.699999988.
        stats = multiclass_stat_scores(preds, target, num_classes=k, average="none").tolist()
        tp, fp, fn, support = ([row[i] for row in stats] for i in (0, 1, 3, 4))
        if name == "accuracy":
            return _ratio(sum(tp), len(results)), [float(p == t) for p, t in zip(preds.tolist(), target.tolist())]
        if name == "balanced_accuracy":  # recall averaged over the classes present in the targets
            present = [c for c in range(k) if support[c] > 0]
            return sum(_ratio(tp[c], tp[c] + fn[c]) for c in present) / len(present), None
        if name == "micro_f1":
            return _ratio(2 * sum(tp), 2 * sum(tp) + sum(fp) + sum(fn)), None
        per_class = {
            "precision": [_ratio(tp[c], tp[c] + fp[c]) for c in range(k)],
            "recall": [_ratio(tp[c], tp[c] + fn[c]) for c in range(k)],
        }.get(name) or [_ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]) for c in range(k)]
        if name == "weighted_f1":
            return _ratio(sum(f * s for f, s in zip(per_class, support)), sum(support)), None
        # macro: classes with no target and no prediction are left out, as torchmetrics does
        used = [c for c in range(k) if tp[c] + fp[c] + fn[c] > 0]
        return sum(per_class[c] for c in used) / len(used), None
    return compute


def _regression(name: str) -> Callable:
    def compute(results):
        import torch
        from torchmetrics.functional import regression as R

        preds = torch.tensor([float(r["prediction"]) for r in results], dtype=torch.float64)
        target = torch.tensor([float(r["target"]) for r in results], dtype=torch.float64)
        err = (preds - target).tolist()
        if name == "mse":
            return R.mean_squared_error(preds, target).item(), [e * e for e in err]
        if name == "rmse":
            return R.mean_squared_error(preds, target, squared=False).item(), [abs(e) for e in err]
        if name == "mae":
            return R.mean_absolute_error(preds, target).item(), [abs(e) for e in err]
        if name == "mape":
            samples = [R.mean_absolute_percentage_error(p.view(1), t.view(1)).item() for p, t in zip(preds, target)]
            return R.mean_absolute_percentage_error(preds, target).item(), samples
        return R.r2_score(preds, target).item(), None
    return compute


def _loss(results):
    losses = [float(r["loss"]) for r in results]
    return math.fsum(losses) / len(losses), losses


def _bleu(results):
    from torchmetrics.functional.text import bleu_score

    return bleu_score([r["prediction"] for r in results], [[r["target"]] for r in results]).item(), None


def _chrf(results):
    from torchmetrics.functional.text import chrf_score

    return chrf_score([r["prediction"] for r in results], [[r["target"]] for r in results]).item(), None


_IMPLEMENTATIONS: dict[str, Callable] = {
    "loss": _loss, "exact_match": _exact_match, "cer": _error_rate("cer"), "wer": _error_rate("wer"),
    "bleu": _bleu, "chrf": _chrf,
    **{name: _classification(name) for name in LABEL},
    **{name: _regression(name) for name in NUMBER},
}
