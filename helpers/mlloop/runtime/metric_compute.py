"""The compute functions behind the metric registry (``mlloop.metrics``), one per entry.

Each takes ``(results, param, warn)``: the per-record dicts (already checked by
``runtime.metrics``), the ``@`` parameter or None, and ``warn(text)`` for a clear note (a class
absent from the split, an undefined per-class value left out). Each returns
``(corpus value, per-record values or None)``; values are Python floats in float64.

Library first: torchmetrics for text, regression and detection; scikit-learn for the
probability metrics (float64, explicit handling of absent classes), MCC and kappa.
"""

from __future__ import annotations

import math
from typing import Any, Callable

EPS = 2.220446049250313e-16  # float64 machine epsilon: scikit-learn's log_loss clip


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0  # torchmetrics' zero_division=0


def _label_key(v):
    s = str(v)
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


# ---- loss ---------------------------------------------------------------------------------

def loss(results, param, warn):
    losses = [float(r["loss"]) for r in results]
    return math.fsum(losses) / len(losses), losses


def perplexity(results, param, warn):
    mean, _ = loss(results, param, warn)
    if mean > 700:  # exp overflows float64
        raise ArithmeticError(f"the mean loss {mean:.4g} is too large for a finite perplexity")
    return math.exp(mean), None


# ---- text ---------------------------------------------------------------------------------

def _tokens(name: str, text: str) -> list[str]:
    return list(text) if name == "cer" else text.split()


def error_rate(name: str) -> Callable:
    def compute(results, param, warn):
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


def exact_match(results, param, warn):
    hits = [1.0 if r["prediction"] == r["target"] else 0.0 for r in results]
    return sum(hits) / len(hits), hits


def bleu(results, param, warn):
    from torchmetrics.functional.text import bleu_score

    return bleu_score([r["prediction"] for r in results], [[r["target"]] for r in results]).item(), None


def chrf(results, param, warn):
    from torchmetrics.functional.text import chrf_score

    return chrf_score([r["prediction"] for r in results], [[r["target"]] for r in results]).item(), None


# ---- classification from labels -----------------------------------------------------------

def _multilabel(results) -> bool:
    return isinstance(results[0]["target"], (list, tuple))


def _label_index(results) -> tuple[list, dict]:
    labels = set()
    for r in results:
        for key in ("prediction", "target"):
            v = r[key]
            labels.update(map(str, v) if isinstance(v, (list, tuple)) else [str(v)])
    ordered = sorted(labels, key=_label_key)
    return ordered, {v: i for i, v in enumerate(ordered)}


def _indicator(values, index) -> list[list[int]]:
    rows = []
    for v in values:
        row = [0] * len(index)
        for x in v:
            row[index[str(x)]] = 1
        rows.append(row)
    return rows


def _stats(results):
    """Per-class tp, fp, fn, support (torchmetrics' stat scores; multilabel: per label)."""
    labels, index = _label_index(results)
    k = max(2, len(labels))
    if _multilabel(results):
        from torchmetrics.functional.classification import multilabel_stat_scores
        import torch

        preds = torch.tensor(_indicator([r["prediction"] for r in results], index))
        target = torch.tensor(_indicator([r["target"] for r in results], index))
        stats = multilabel_stat_scores(preds, target, num_labels=len(labels), average="none").tolist()
    else:
        import torch
        from torchmetrics.functional.classification import multiclass_stat_scores

        preds = torch.tensor([index[str(r["prediction"])] for r in results], dtype=torch.long)
        target = torch.tensor([index[str(r["target"])] for r in results], dtype=torch.long)
        stats = multiclass_stat_scores(preds, target, num_classes=k, average="none").tolist()
    tp, fp, fn, support = ([row[i] for row in stats] for i in (0, 1, 3, 4))
    return labels, tp, fp, fn, support


def _positive(labels: list, param: str | None, warn) -> int:
    if param is not None:
        if param not in labels:
            raise ValueError(f"the positive class {param!r} is neither predicted nor a target")
        return labels.index(param)
    if len(labels) > 2:
        warn(f"binary averaging on {len(labels)} classes: only the last label in sorted order "
             f"({labels[-1]!r}) counts as positive")
    return len(labels) - 1


def accuracy(results, param, warn):
    hits = [float(_same(r["prediction"], r["target"])) for r in results]
    return sum(hits) / len(hits), hits


def _same(p, t) -> bool:
    if isinstance(t, (list, tuple)):
        return sorted(map(str, p)) == sorted(map(str, t))
    return str(p) == str(t)


def balanced_accuracy(results, param, warn):
    labels, tp, fp, fn, support = _stats(results)
    present = [c for c in range(len(labels)) if support[c] > 0]
    absent = [labels[c] for c in range(len(labels)) if support[c] == 0]
    if absent:
        warn(f"balanced_accuracy leaves out {', '.join(map(repr, absent))}: predicted but absent from the targets")
    return sum(_ratio(tp[c], tp[c] + fn[c]) for c in present) / len(present), None


def averaged(kind: str, average: str) -> Callable:
    """precision / recall / f1 with macro, micro, weighted or binary averaging."""
    def per_class(tp, fp, fn, c):
        if kind == "precision":
            return _ratio(tp[c], tp[c] + fp[c])
        if kind == "recall":
            return _ratio(tp[c], tp[c] + fn[c])
        return _ratio(2 * tp[c], 2 * tp[c] + fp[c] + fn[c])

    def compute(results, param, warn):
        labels, tp, fp, fn, support = _stats(results)
        k = len(tp)
        if average == "micro":
            T, P, N = sum(tp), sum(fp), sum(fn)
            return {"precision": _ratio(T, T + P), "recall": _ratio(T, T + N)}.get(kind, _ratio(2 * T, 2 * T + P + N)), None
        if average == "binary":
            return per_class(tp, fp, fn, _positive(labels, param, warn)), None
        values = [per_class(tp, fp, fn, c) for c in range(k)]
        if average == "weighted":
            return _ratio(sum(v * s for v, s in zip(values, support)), sum(support)), None
        # macro: classes with no target and no prediction are left out, as torchmetrics does
        used = [c for c in range(k) if tp[c] + fp[c] + fn[c] > 0]
        return sum(values[c] for c in used) / len(used), None
    return compute


def _label_strings(results):
    return [str(r["target"]) for r in results], [str(r["prediction"]) for r in results]


def mcc(results, param, warn):
    from sklearn.metrics import matthews_corrcoef

    y, p = _label_strings(results)
    return float(matthews_corrcoef(y, p)), None


def cohen_kappa(results, param, warn):
    from sklearn.metrics import cohen_kappa_score

    y, p = _label_strings(results)
    if len(set(y) | set(p)) < 2:
        raise ArithmeticError("Cohen's kappa is undefined when targets and predictions are all one class")
    return float(cohen_kappa_score(y, p)), None


# ---- classification from scores -----------------------------------------------------------

def _score_matrix(results):
    """(classes in sorted order, probabilities [n, C], targets as indices or indicator rows)."""
    import numpy as np

    classes = sorted(map(str, results[0]["scores"]), key=_label_key)
    column = {c: i for i, c in enumerate(classes)}
    P = np.array([[float(v) for _, v in sorted(((str(c), v) for c, v in r["scores"].items()),
                                               key=lambda kv: column[kv[0]])] for r in results], dtype=np.float64)
    if _multilabel(results):
        Y = np.array(_indicator([r["target"] for r in results], column), dtype=np.int64)
    else:
        Y = np.array([column[str(r["target"])] for r in results], dtype=np.int64)
    return classes, P, Y


def _one_vs_rest(name: str, fn, classes, P, Y, param, warn) -> float:
    import numpy as np

    if Y.ndim == 1 and len(classes) == 2:
        pos = _positive(classes, param, warn)
        y = (Y == pos).astype(int)
        if y.min() == y.max():
            raise ArithmeticError(f"{name} is undefined: every validation target is {classes[int(Y[0])]!r}")
        return float(fn(y, P[:, pos]))
    indicator = Y if Y.ndim == 2 else np.eye(len(classes), dtype=int)[Y]
    used, left = [], []
    for c in range(len(classes)):
        col = indicator[:, c]
        (used if 0 < col.sum() < len(col) else left).append(c)
    if not used:
        raise ArithmeticError(f"{name} is undefined: no class has both positive and negative targets")
    if left:
        warn(f"{name} leaves out {', '.join(repr(classes[c]) for c in left)}: "
             "absent from the validation targets (or the only class there)")
    return float(np.mean([fn(indicator[:, c], P[:, c]) for c in used]))


def roc_auc(results, param, warn):
    from sklearn.metrics import roc_auc_score

    return _one_vs_rest("roc_auc", roc_auc_score, *_score_matrix(results), param, warn), None


def average_precision(results, param, warn):
    from sklearn.metrics import average_precision_score

    return _one_vs_rest("average_precision", average_precision_score, *_score_matrix(results), param, warn), None


def log_loss(results, param, warn):
    import numpy as np

    classes, P, Y = _score_matrix(results)
    p = np.clip(P[np.arange(len(Y)), Y], EPS, 1.0)
    samples = (-np.log(p)).tolist()
    return math.fsum(samples) / len(samples), samples


def brier(results, param, warn):
    import numpy as np

    classes, P, Y = _score_matrix(results)
    onehot = np.eye(len(classes))[Y]
    if len(classes) == 2:  # scikit-learn's binary form: the positive class's probability only
        pos = _positive(classes, param, warn)
        samples = ((P[:, pos] - onehot[:, pos]) ** 2).tolist()
    else:
        samples = ((P - onehot) ** 2).sum(axis=1).tolist()
    return math.fsum(samples) / len(samples), samples


def top_k_accuracy(results, param, warn):
    k = int(param)
    hits = []
    for r in results:
        scores = {str(c): float(v) for c, v in r["scores"].items()}
        mine = scores[str(r["target"])]
        above = sum(v > mine for v in scores.values())
        tied = sum(v == mine for v in scores.values()) - 1
        # ties in random order: the expected hit, so constant scores give k / classes, not 1
        hits.append(min(1.0, max(0.0, (k - above) / (tied + 1))))
    if k >= len(results[0]["scores"]):
        warn(f"top_k_accuracy@{k} is 1 by construction: there are only {len(results[0]['scores'])} classes")
    return sum(hits) / len(hits), hits


# ---- regression and forecasting -----------------------------------------------------------

def _flat(v) -> list[float]:
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)]


def regression(name: str) -> Callable:
    def compute(results, param, warn):
        import torch
        from torchmetrics.functional import regression as R

        per = [(torch.tensor(_flat(r["prediction"]), dtype=torch.float64),
                torch.tensor(_flat(r["target"]), dtype=torch.float64)) for r in results]
        preds, target = torch.cat([p for p, _ in per]), torch.cat([t for _, t in per])
        fn = {"mse": R.mean_squared_error, "rmse": lambda p, t: R.mean_squared_error(p, t, squared=False),
              "mae": R.mean_absolute_error, "mape": R.mean_absolute_percentage_error,
              "smape": R.symmetric_mean_absolute_percentage_error, "r2": R.r2_score}[name]
        if name == "r2":
            return fn(preds, target).item(), None
        samples = [fn(p, t).item() for p, t in per]
        return fn(preds, target).item(), samples
    return compute


def seasonal_scale(history: list[float], m: int) -> float:
    """In-sample MAE of the seasonal naive forecast (y_t predicted by y_{t-m})."""
    diffs = [abs(history[t] - history[t - m]) for t in range(m, len(history))]
    return math.fsum(diffs) / len(diffs)


def mase(results, param, warn):
    m = int(param or 1)
    samples = []
    for r in results:
        p, t = _flat(r["prediction"]), _flat(r["target"])
        mae_value = math.fsum(abs(a - b) for a, b in zip(p, t)) / len(t)
        samples.append(mae_value / seasonal_scale(_flat(r["history"]), m))
    return math.fsum(samples) / len(samples), samples


# ---- detection ----------------------------------------------------------------------------

def detection(key: str) -> Callable:
    def compute(results, param, warn):
        import torch
        from torchmetrics.detection import MeanAveragePrecision

        labels = sorted({str(x) for r in results for part in ("prediction", "target")
                         for x in r[part].get("labels", [])}, key=_label_key)
        index = {v: i for i, v in enumerate(labels)}

        def boxes(v):
            return torch.tensor([[float(x) for x in b] for b in v], dtype=torch.float32).reshape(-1, 4)

        preds = [{"boxes": boxes(r["prediction"]["boxes"]),
                  "scores": torch.tensor([float(s) for s in r["prediction"]["scores"]], dtype=torch.float32),
                  "labels": torch.tensor([index[str(x)] for x in r["prediction"]["labels"]], dtype=torch.long)}
                 for r in results]
        target = [{"boxes": boxes(r["target"]["boxes"]),
                   "labels": torch.tensor([index[str(x)] for x in r["target"]["labels"]], dtype=torch.long)}
                  for r in results]
        if not any(len(t["labels"]) for t in target):
            raise ArithmeticError("mAP is undefined: no validation record has a target box")
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
        metric.update(preds, target)
        value = float(metric.compute()[key])
        # torchmetrics reports -1 where COCO has nothing to average (e.g. no prediction at all)
        if value < 0:
            warn(f"{key} had nothing to average (no predicted boxes); reported as 0")
            value = 0.0
        return value, None
    return compute


# ---- segmentation -------------------------------------------------------------------------

def pixel_counts(result: dict) -> dict:
    """``{"classes", "tp", "fp", "fn"}`` of one record: its stored counts, or counted from masks."""
    if isinstance(result.get("pixel_counts"), dict):
        return result["pixel_counts"]
    import torch

    p = torch.as_tensor(result["prediction"]).long().flatten()
    t = torch.as_tensor(result["target"]).long().flatten()
    classes = torch.unique(torch.cat([p, t])).tolist()
    tp = [int(((p == c) & (t == c)).sum()) for c in classes]
    fp = [int(((p == c) & (t != c)).sum()) for c in classes]
    fn = [int(((p != c) & (t == c)).sum()) for c in classes]
    return {"classes": classes, "tp": tp, "fp": fp, "fn": fn}


def _summed_counts(results) -> dict[Any, list[int]]:
    total: dict[Any, list[int]] = {}
    for r in results:
        c = pixel_counts(r)
        for cls, tp, fp, fn in zip(c["classes"], c["tp"], c["fp"], c["fn"]):
            row = total.setdefault(cls, [0, 0, 0])
            row[0] += tp
            row[1] += fp
            row[2] += fn
    return total


def segmentation(name: str) -> Callable:
    def compute(results, param, warn):
        total = _summed_counts(results)
        if name == "pixel_accuracy":
            correct = sum(tp for tp, _, _ in total.values())
            pixels = sum(tp + fn for tp, _, fn in total.values())
            return _ratio(correct, pixels), [_ratio(sum(pixel_counts(r)["tp"]),
                                                    sum(pixel_counts(r)["tp"]) + sum(pixel_counts(r)["fn"]))
                                             for r in results]
        per = [(tp / (tp + fp + fn)) if name == "miou" else (2 * tp / (2 * tp + fp + fn))
               for tp, fp, fn in total.values() if tp + fp + fn > 0]
        return sum(per) / len(per), None
    return compute


# ---- ranking ------------------------------------------------------------------------------

def _gains(target) -> dict[str, float]:
    if isinstance(target, dict):
        return {str(k): float(v) for k, v in target.items() if float(v) > 0}
    items = target if isinstance(target, (list, tuple)) else [target]
    return {str(x): 1.0 for x in items}


def _ranked(prediction) -> list[str]:
    seen, out = set(), []
    for x in prediction:  # a repeated item counts once, at its first rank
        if str(x) not in seen:
            seen.add(str(x))
            out.append(str(x))
    return out


def ranking(name: str) -> Callable:
    def one(ranked: list[str], gains: dict[str, float], k: int | None) -> float:
        top = ranked[:k] if k else ranked
        hits = [1.0 if x in gains else 0.0 for x in top]
        if name == "mrr":
            return next((1.0 / (i + 1) for i, x in enumerate(ranked) if x in gains), 0.0)
        if name == "precision":
            return sum(hits) / k
        if name == "recall":
            return sum(hits) / len(gains)
        if name == "map":
            found, total = 0, 0.0
            for i, h in enumerate(hits):
                if h:
                    found += 1
                    total += found / (i + 1)
            return total / min(k, len(gains))
        dcg = sum(gains.get(x, 0.0) / math.log2(i + 2) for i, x in enumerate(top))
        ideal = sorted(gains.values(), reverse=True)[:k] if k else sorted(gains.values(), reverse=True)
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        return dcg / idcg

    def compute(results, param, warn):
        k = int(param) if param else None
        samples = [one(_ranked(r["prediction"]), _gains(r["target"]), k) for r in results]
        return math.fsum(samples) / len(samples), samples
    return compute
