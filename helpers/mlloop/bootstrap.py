"""The statistic behind every choice between versions: a seeded paired bootstrap of metric deltas.

``paired_bootstrap`` resamples paired records (same draw for both versions), recomputes each
metric on each resample and returns the percentile interval of the delta B − A with a verdict.
A corpus metric is recomputed on each resample, never averaged from per-sample values: every
metric with a kernel below is a function of weighted sums of per-record columns (edits and
reference lengths for CER/WER, per-class tp/fp/fn for F1, clipped n-gram counts for BLEU, ...),
so one matrix product ``weights @ columns`` gives all resamples of a block at once. A metric
without a kernel (chrF, and whatever the metric registry adds: mAP, log loss, ...) is recomputed
through ``mlloop.runtime.metrics.compute_metrics`` on each resample's rows. The vectorised value
on all records must equal the recorded eval_score.json value, else the metric is recomputed too;
if that disagrees as well, the records and the score do not belong together: refused.

The draw depends only on the seed, the number of records and the resample count (blocks of
``CHUNK`` resamples from ``numpy.random.default_rng(seed)``): re-running gives the same numbers.
numpy is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from .errors import MlloopError
from .runtime.metric_compute import _score_matrix
from .runtime.metrics import MetricError, compute_metrics

RESAMPLES = 2000
LEVEL = 0.95
CHUNK = 250        # resamples per block: memory stays at CHUNK × records floats
MAX_CLASSES = 100  # beyond this the one-hot columns get large; such metrics are recomputed
# Recomputing a metric 2 x 2,000 times through compute_metrics can take hours (torchmetrics' chrF
# on 1,000 lines: seconds per call; mAP: tens of ms). A metric that would take the recomputed
# metrics of one comparison past this projection gets no interval, and says why; the numbers that
# are given never depend on the machine's speed. analyze compares twice (parent, best) per version.
RECOMPUTE_BUDGET_S = 30.0
BETTER, WORSE, NOISE, UNDEFINED = "better", "worse", "within noise", "undefined"

class CompareError(MlloopError):
    """The two versions cannot be compared (one line: what, where, what to do)."""


@dataclass
class MetricDelta:
    name: str
    higher_is_better: bool
    a: float
    b: float
    low: float | None
    high: float | None
    verdict: str
    method: str                 # "vectorised", "recomputed" or "not resampled"
    undefined_resamples: int = 0
    note: str = ""              # why there is no interval, when there is none

    @property
    def delta(self) -> float:
        return self.b - self.a

    def interval(self) -> str:
        if self.low is None:
            return "-"
        return f"[{signed(self.low)}, {signed(self.high)}]"

    def to_dict(self) -> dict:
        return {"name": self.name, "higher_is_better": self.higher_is_better, "a": self.a, "b": self.b,
                "delta": self.delta, "low": self.low, "high": self.high, "verdict": self.verdict,
                "method": self.method, "undefined_resamples": self.undefined_resamples, "note": self.note}

def fmt_value(value: float) -> str:
    return f"{value:.6g}"


def signed(value: float) -> str:
    return f"{value:+.6g}"

def verdict(low: float | None, high: float | None, higher_is_better: bool) -> str:
    """better / worse when the interval excludes 0 (in the metric's direction), else within noise."""
    if low is None or high is None:
        return UNDEFINED
    if low > 0 or high < 0:
        return BETTER if (low > 0) == higher_is_better else WORSE
    return NOISE


def paired_bootstrap(rows_a: list[dict], rows_b: list[dict], specs: list[dict], *, seed: int,
                     resamples: int = RESAMPLES, paired: bool = True, recorded=None) -> list[MetricDelta]:
    """Bootstrap deltas for ``specs`` over records already paired by position.

    ``paired=False`` draws independent resamples for B (for showing what pairing buys; the CLI
    always pairs). ``recorded`` = ``({vid: EvalScore}, a, b)``: the values the fast path must
    reproduce on all records.
    """
    import numpy as np

    n = len(rows_a)
    kernels = []
    for spec in specs:
        name = spec["name"]
        wants = [None, None] if recorded is None else [recorded[0][vid].value(name) for vid in recorded[1:]]
        pair = [_fast_kernel(name, rows, want) for rows, want in zip((rows_a, rows_b), wants)]
        kernels.append(("fast", spec, pair) if all(k is not None for k in pair) else ("slow", spec, None))
    points, projected = [], {}
    for kind, spec, pair in kernels:
        if kind == "fast":
            points.append(tuple(full_value(k) for k in pair))
        else:
            started = time.perf_counter()
            points.append(tuple(_full_value(rows, spec) for rows in (rows_a, rows_b)))
            projected[spec["name"]] = (time.perf_counter() - started) * resamples
    # the vectorised ones were checked against the record in _fast_kernel; the recomputed ones here
    _refuse_disagreement([p if kind == "slow" else None for p, (kind, _, _) in zip(points, kernels)], specs, recorded)

    fast = [(i, pair) for i, (kind, _, pair) in enumerate(kernels) if kind == "fast"]
    skipped = _over_budget(projected, resamples)
    slow = [(i, spec) for i, (kind, spec, _) in enumerate(kernels) if kind == "slow" and spec["name"] not in skipped]
    cols_a, at_a = _stack(np, [pair[0] for _, pair in fast], n)
    cols_b, at_b = _stack(np, [pair[1] for _, pair in fast], n)
    both, split = np.hstack([cols_a, cols_b]), cols_a.shape[1]
    deltas = np.empty((resamples, len(specs)))
    for start, c, idx_a, idx_b in _draws(np, n, resamples, seed, paired):
        weights_a = _weights(np, idx_a, n)
        if paired:  # one product for both versions: the same resampled records
            sums = weights_a @ both
            sums_a, sums_b = sums[:, :split], sums[:, split:]
        else:
            sums_a, sums_b = weights_a @ cols_a, _weights(np, idx_b, n) @ cols_b
        weights_b = weights_a if paired else None
        for j, (i, (ka, kb)) in enumerate(fast):
            if ka.per_record:
                if weights_b is None:
                    weights_b = _weights(np, idx_b, n)
                with np.errstate(divide="ignore", invalid="ignore"):
                    deltas[start:start + c, i] = kb.finish(weights_b) - ka.finish(weights_a)
                continue
            wa, wb = ka.columns.shape[1], kb.columns.shape[1]
            with np.errstate(divide="ignore", invalid="ignore"):
                deltas[start:start + c, i] = (kb.finish(sums_b[:, at_b[j]:at_b[j] + wb])
                                              - ka.finish(sums_a[:, at_a[j]:at_a[j] + wa]))
        for i, spec in slow:
            for r in range(c):
                deltas[start + r, i] = (_resample_value(rows_b, idx_b[r], spec)
                                        - _resample_value(rows_a, idx_a[r], spec))
    out = []
    for i, (kind, spec, _) in enumerate(kernels):
        hib = bool(spec["higher_is_better"])
        a_value, b_value = points[i]
        if spec["name"] in skipped:
            out.append(MetricDelta(spec["name"], hib, a_value, b_value, None, None, UNDEFINED, "not resampled",
                                   0, skipped[spec["name"]]))
            continue
        low, high, undefined = _percentile_interval(np, deltas[:, i])
        out.append(MetricDelta(spec["name"], hib, a_value, b_value, low, high, verdict(low, high, hib),
                               "vectorised" if kind == "fast" else "recomputed", undefined))
    return out


@dataclass
class MetricInterval:
    """One version's metric with its bootstrap interval (the held-out test split, the report picture)."""
    name: str
    higher_is_better: bool
    value: float | None
    low: float | None
    high: float | None
    method: str                 # "vectorised", "recomputed" or "not resampled"
    undefined_resamples: int = 0
    note: str = ""              # why there is no interval, when there is none


def bootstrap_intervals(rows: list[dict], specs: list[dict], *, seed: int, resamples: int = RESAMPLES,
                        recorded: dict | None = None, recompute: bool = True) -> list[MetricInterval]:
    """Seeded percentile bootstrap interval of each metric of ONE version over its records.

    The same draw as ``paired_bootstrap`` (version A's resamples for this seed and n) and the same
    per-metric computations: vectorised where a kernel gives the recorded value on all records
    (``recorded``: ``{name: value}``, e.g. eval_score.json's), else recomputed through
    compute_metrics on each resample's rows (``recompute=False``: no interval instead, and no
    torch), within the same time budget.
    """
    import numpy as np

    n = len(rows)
    recorded = recorded or {}
    plans, values, projected = [], [], {}
    for spec in specs:
        kernel = _fast_kernel(spec["name"], rows, recorded.get(spec["name"])) if n else None
        plans.append(kernel)
        if kernel is not None:
            values.append(full_value(kernel))
        elif recompute and n:
            started = time.perf_counter()
            values.append(_full_value(rows, spec))
            projected[spec["name"]] = (time.perf_counter() - started) * resamples
        else:
            values.append(recorded.get(spec["name"]))
    skipped = _over_budget(projected, resamples)
    fast = [(i, k) for i, k in enumerate(plans) if k is not None]
    slow = [i for i, (k, spec) in enumerate(zip(plans, specs))
            if k is None and recompute and n and spec["name"] not in skipped]
    columns, at = _stack(np, [k for _, k in fast], n)
    samples = np.full((resamples, len(specs)), np.nan)
    for start, c, idx, _ in _draws(np, n, resamples, seed) if n else ():
        weights = _weights(np, idx, n)
        sums = weights @ columns
        for j, (i, kernel) in enumerate(fast):
            with np.errstate(divide="ignore", invalid="ignore"):
                samples[start:start + c, i] = (kernel.finish(weights) if kernel.per_record else
                                               kernel.finish(sums[:, at[j]:at[j] + kernel.columns.shape[1]]))
        for i in slow:
            for r in range(c):
                samples[start + r, i] = _resample_value(rows, idx[r], specs[i])
    out = []
    for i, spec in enumerate(specs):
        hib = bool(spec["higher_is_better"])
        if plans[i] is None and spec["name"] not in projected:
            why = ("no records" if not n else f"{spec['name']} has no vectorised form for these records"
                   if _kernel(spec["name"], rows) is None
                   else f"{spec['name']} recomputed from the records is not the recorded {fmt_value(values[i])}")
            out.append(MetricInterval(spec["name"], hib, values[i], None, None, "not resampled", 0, f"no interval: {why}"))
        elif spec["name"] in skipped:
            out.append(MetricInterval(spec["name"], hib, values[i], None, None, "not resampled", 0, skipped[spec["name"]]))
        else:
            low, high, undefined = _percentile_interval(np, samples[:, i])
            out.append(MetricInterval(spec["name"], hib, values[i], low, high,
                                      "vectorised" if plans[i] is not None else "recomputed", undefined))
    return out


def _draws(np, n: int, resamples: int, seed: int, paired: bool = True):
    """The resamples, in blocks of ``CHUNK``: ``(start, count, idx_a, idx_b)``, index matrices of
    count × n records drawn with replacement. The one draw of every interval: it depends only on
    the seed, n and the resample count (numpy's stream is the same whatever the block size)."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, CHUNK):
        c = min(CHUNK, resamples - start)
        idx_a = rng.integers(0, n, size=(c, n))
        idx_b = idx_a if paired else rng.integers(0, n, size=(c, n))
        yield start, c, idx_a, idx_b


def _percentile_interval(np, column):
    """(low, high, undefined resamples): the percentile interval of the defined resampled values."""
    defined = column[np.isfinite(column)]
    low = high = None
    if defined.size:
        low, high = (float(v) for v in np.percentile(defined, [50 * (1 - LEVEL), 100 - 50 * (1 - LEVEL)]))
    return low, high, int(column.size - defined.size)


def _over_budget(projected: dict, resamples: int) -> dict:
    """The recomputed metrics left without an interval: in order, each one that would take the
    comparison past the budget (every recomputed metric together, so a call stays bounded)."""
    out, spent = {}, 0.0
    for name, seconds in projected.items():
        if spent + seconds <= RECOMPUTE_BUDGET_S:
            spent += seconds
            continue
        took = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
        after = f", after {spent:.0f} s for the metrics before it" if spent else ""
        out[name] = (f"no interval: recomputing {name} through compute_metrics {resamples} times would take about "
                     f"{took} here{after} (over the {RECOMPUTE_BUDGET_S:.0f} s budget of one comparison)")
    return out


def _stack(np, kernels: list, n: int):
    """One column matrix for these kernels, each distinct ``key`` once (the confusion counts
    serve every F1 / precision / recall / accuracy), and each kernel's offset into it."""
    blocks, offsets, where, width = [], [], {}, 0
    for kernel in kernels:
        if kernel.per_record:  # reads the weights, not column sums
            offsets.append(None)
            continue
        if kernel.key not in where:
            where[kernel.key] = width
            blocks.append(kernel.columns)
            width += kernel.columns.shape[1]
        offsets.append(where[kernel.key])
    return (np.hstack(blocks) if blocks else np.zeros((n, 0))), offsets


def _weights(np, idx, n: int):
    """How often each record is drawn in each resample (rows of a multinomial(n, 1/n))."""
    c = idx.shape[0]
    flat = (idx + (np.arange(c) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=c * n).reshape(c, n).astype(np.float64)


def full_value(kernel: "Kernel") -> float:
    """The kernel's metric on all records, each once (weight 1)."""
    if kernel.per_record:
        return float(kernel.finish(kernel.columns[None, :, 0] * 0 + 1)[0])
    return float(kernel.finish(kernel.columns.sum(axis=0, keepdims=True))[0])


def _fast_kernel(name: str, rows: list[dict], want: float | None) -> "Kernel | None":
    """The vectorised form of ``name`` when it gives the recorded value ``want`` on all records (or
    nothing is recorded); None sends the metric through compute_metrics."""
    kernel = _kernel(name, rows)
    if kernel is None or want is None:
        return kernel
    return kernel if math.isclose(full_value(kernel), want, rel_tol=kernel.rel_tol, abs_tol=1e-12) else None


def _refuse_disagreement(points, specs, recorded) -> None:
    if recorded is None:
        return
    scores, a, b = recorded
    for pair, spec in zip(points, specs):
        for vid, got in zip((a, b), pair or ()):
            want = scores[vid].value(spec["name"])
            if want is not None and not close(got, want):
                raise CompareError(
                    f"Models/Artifacts/{vid}/eval_samples.jsonl gives {spec['name']} {fmt_value(got)} but its "
                    f"eval_score.json says {fmt_value(want)}; they come from different evaluations: re-run "
                    f"`python 03_eval.py --version {vid}`.")


def close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


# ---- recomputed metrics (compute_metrics on each resample's rows) --------------------------

def _metric_value(rows: list[dict], spec: dict) -> float:
    values = compute_metrics(rows, [spec], ids=[r.get("id", i) for i, r in enumerate(rows)]).values
    return float(values[0]["value"])


def _full_value(rows: list[dict], spec: dict) -> float:
    return _metric_value(rows, spec)  # a MetricError here is the version's own problem: shown as is


def _resample_value(rows: list[dict], idx, spec: dict) -> float:
    try:
        return _metric_value([rows[i] for i in idx], spec)
    except MetricError:
        return math.nan  # e.g. every resampled target empty: counted as an undefined resample


# ---- vectorised metrics: functions of weighted column sums ---------------------------------

@dataclass
class Kernel:
    key: str                                 # kernels with one key share their columns
    columns: object                          # numpy array, records × m
    finish: Callable                         # (resamples × m weighted sums) -> resamples values
    rel_tol: float = 1e-9                    # how closely it must give the recorded value
    per_record: bool = False                 # finish takes the weights themselves (resamples × records)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def full_data_value(name: str, rows: list[dict]) -> tuple[float, float] | None:
    """``(value, rel_tol)``: ``name`` on all records, each once, by its vectorised form (numpy only,
    no torch: ``mlloop check`` cross-checks eval_score.json with it), or None when these records
    do not give it (no kernel, or missing fields)."""
    kernel = _kernel(name, rows) if rows else None
    if kernel is None:
        return None
    with _quiet():
        return full_value(kernel), kernel.rel_tol


def _quiet():
    import numpy as np

    return np.errstate(divide="ignore", invalid="ignore")


MEAN_OF_FIELD = ("loss",)
REGRESSION = ("mse", "rmse", "mae", "mape")
CONFUSION = ("accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "f1", "precision", "recall")
VECTORISED = (MEAN_OF_FIELD + ("exact_match",) + REGRESSION + ("r2", "cer", "wer", "bleu") + CONFUSION
              + ("roc_auc", "smape"))


def _kernel(name: str, rows: list[dict]) -> Kernel | None:
    """The vectorised form of ``name`` on these records, or None (then it is recomputed)."""
    import numpy as np

    n = len(rows)
    if name in MEAN_OF_FIELD:
        values = [r.get(name) for r in rows]
        if not all(is_number(v) for v in values):
            return None
        return Kernel(f"field:{name}", np.asarray(values, dtype=np.float64)[:, None], lambda s: s[:, 0] / n)
    if name == "exact_match":
        hits = np.asarray([r.get("prediction") == r.get("target") for r in rows], dtype=np.float64)
        return Kernel(name, hits[:, None], lambda s: s[:, 0] / n)
    if name.startswith("mase"):  # the mean of the per-record MASE (runtime.metric_compute.mase)
        values = [r.get(name) for r in rows]
        if not all(is_number(v) for v in values):
            return None
        return Kernel(f"field:{name}", np.asarray(values, dtype=np.float64)[:, None], lambda s: s[:, 0] / n)
    if name in REGRESSION + ("smape",) and any(isinstance(r.get("prediction"), list) for r in rows):
        return _per_element(np, name, rows)
    if name in REGRESSION + ("r2",):
        pairs = [(r.get("prediction"), r.get("target")) for r in rows]
        if not all(is_number(p) and is_number(t) for p, t in pairs):
            return None
        p, t = (np.asarray(x, dtype=np.float64) for x in zip(*pairs))
        err = p - t
        if name == "r2":
            return None if n < 2 else Kernel(name, np.stack([err * err, t, t * t], axis=1), lambda s: _r2(np, s, n))
        if name in ("mse", "rmse"):
            return Kernel("squared_error", (err * err)[:, None],
                          (lambda s: np.sqrt(s[:, 0] / n)) if name == "rmse" else (lambda s: s[:, 0] / n))
        column = np.abs(err) if name == "mae" else np.abs(err) / np.maximum(np.abs(t), 1.17e-6)  # torchmetrics' clamp
        return Kernel(name, column[:, None], lambda s: s[:, 0] / n)
    if name in ("cer", "wer"):
        return _error_rate(np, name, rows)
    if name == "bleu":
        return _bleu(np, rows)
    if name in CONFUSION:
        return _confusion(np, name, rows)
    if name == "roc_auc":
        return _roc_auc(np, rows)
    return None


def _per_element(np, name: str, rows: list[dict]) -> Kernel | None:
    """A regression metric over the elements of list predictions (forecasts): torchmetrics takes
    the mean over all elements, so it is the per-record value weighted by the record's length."""
    columns = []
    for r in rows:
        value, target = r.get(name), r.get("target")
        if not is_number(value) or not isinstance(target, list) or not target:
            return None
        square = value * value if name == "rmse" else value  # a record's rmse: the root of its mean square
        columns.append([square * len(target), len(target)])
    finish = (lambda s: np.sqrt(s[:, 0] / s[:, 1])) if name == "rmse" else (lambda s: s[:, 0] / s[:, 1])
    return Kernel(f"elements:{name}", np.asarray(columns, dtype=np.float64), finish, rel_tol=1e-7)


def _error_rate(np, name: str, rows: list[dict]) -> Kernel | None:
    """Total edits / total reference length; the edits come back from the per-record rate."""
    edits, lengths = [], []
    for r in rows:
        target, rate = r.get("target"), r.get(name)
        if not isinstance(target, str) or not is_number(rate):
            return None
        length = len(target) if name == "cer" else len(target.split())
        edits.append(round(rate * max(length, 1)))
        lengths.append(length)
    columns = np.asarray([edits, lengths], dtype=np.float64).T
    return Kernel(name, columns, lambda s: s[:, 0] / s[:, 1])  # 0/0 -> nan: an undefined resample


def _bleu(np, rows: list[dict]) -> Kernel | None:
    """Corpus BLEU-4 as torchmetrics computes it (whitespace tokens, one reference, no smoothing):
    a function of the summed prediction/reference lengths and clipped n-gram matches per order."""
    from collections import Counter
    from itertools import chain

    def ngrams(tokens):  # orders 1-4 in one Counter; zip keeps the slicing in C
        return Counter(chain(zip(tokens), zip(tokens, tokens[1:]), zip(tokens, tokens[1:], tokens[2:]),
                             zip(tokens, tokens[1:], tokens[2:], tokens[3:])))

    stats = []
    for r in rows:
        pred, target = r.get("prediction"), r.get("target")
        if not isinstance(pred, str) or not isinstance(target, str):
            return None
        p, t = pred.split(), target.split()
        totals = [max(len(p) - i, 0) for i in range(4)]  # n-grams of order i + 1 in the prediction
        if p == t:  # every n-gram matches itself: the common case of a good model, counted for free
            matches = totals
        else:  # clipped matches: per n-gram of the prediction, min(its count, its count in the reference)
            matches, reference = [0, 0, 0, 0], ngrams(t)
            for gram, k in ngrams(p).items():
                if gram in reference:
                    matches[len(gram) - 1] += min(k, reference[gram])
        stats.append([len(p), len(t), *matches, *totals])

    def finish(s):
        matches, totals = s[:, 2:6], s[:, 6:10]
        with np.errstate(divide="ignore", invalid="ignore"):
            geometric = np.exp(np.log(matches / totals).mean(axis=1))
            brevity = np.where(s[:, 0] > s[:, 1], 1.0, np.exp(1 - s[:, 1] / s[:, 0]))
        return np.where(matches.min(axis=1) == 0, 0.0, brevity * geometric)
    # torchmetrics sums in float32: the recorded value matches to about 1e-7
    return Kernel("bleu", np.asarray(stats, dtype=np.float64), finish, rel_tol=1e-5)


def _confusion(np, name: str, rows: list[dict]) -> Kernel | None:
    """Per-class tp/fp/fn from weighted one-hot columns; the averages as runtime.metrics defines them."""
    preds, targets = [r.get("prediction") for r in rows], [r.get("target") for r in rows]
    for p, t in zip(preds, targets):
        if not isinstance(p, (str, int)) or not isinstance(t, (str, int)) or isinstance(p, bool) \
                or isinstance(t, bool) or isinstance(p, str) != isinstance(t, str):
            return None
    labels = sorted(set(preds) | set(targets), key=lambda v: (0, v, "") if isinstance(v, int) else (1, 0, v))
    k = len(labels)
    if k > MAX_CLASSES:
        return None
    index = {v: i for i, v in enumerate(labels)}
    p = np.asarray([index[v] for v in preds])
    t = np.asarray([index[v] for v in targets])
    eye = np.eye(k)
    hit = (p == t)[:, None]
    columns = np.hstack([eye[t] * hit, eye[p], eye[t]])  # tp, predicted, support

    def finish(s):
        tp, predicted, support = s[:, :k], s[:, k:2 * k], s[:, 2 * k:]
        fp, fn = predicted - tp, support - tp
        total = support.sum(axis=1)
        if name == "accuracy":
            return tp.sum(axis=1) / total
        if name == "micro_f1":
            return _ratio(np, 2 * tp.sum(axis=1), 2 * tp.sum(axis=1) + fp.sum(axis=1) + fn.sum(axis=1))
        if name == "balanced_accuracy":  # recall over the classes present in the targets
            present = support > 0
            return (_ratio(np, tp, tp + fn) * present).sum(axis=1) / present.sum(axis=1)
        per_class = {"precision": lambda: _ratio(np, tp, tp + fp), "recall": lambda: _ratio(np, tp, tp + fn)}.get(
            name, lambda: _ratio(np, 2 * tp, 2 * tp + fp + fn))()
        if name == "weighted_f1":
            return _ratio(np, (per_class * support).sum(axis=1), support.sum(axis=1))
        used = (tp + fp + fn) > 0  # macro: classes with no target and no prediction are left out
        return (per_class * used).sum(axis=1) / used.sum(axis=1)
    return Kernel("confusion", columns, finish)


def _roc_auc(np, rows: list[dict]) -> Kernel | None:
    """ROC AUC as runtime.metric_compute defines it (binary: the last class in sorted order is
    positive; else the macro mean of one-vs-rest AUCs over the classes with both positive and
    negative targets), from the weights: per class, the weighted Mann-Whitney count of
    (positive, negative) pairs that the scores order right, ties counting half."""
    if not rows or not all(isinstance(r.get("scores"), dict) and r["scores"] for r in rows):
        return None
    try:
        classes, P, Y = _score_matrix(rows)
    except (KeyError, TypeError, ValueError):
        return None
    if Y.ndim == 1 and len(classes) == 2:
        pairs = [((Y == 1), P[:, 1])]
    else:
        indicator = Y.astype(bool) if Y.ndim == 2 else np.eye(len(classes), dtype=bool)[Y]
        pairs = [(indicator[:, c], P[:, c]) for c in range(len(classes))]
    plans = []
    for positive, score in pairs:
        order = np.argsort(score, kind="mergesort")
        ranked = score[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # one group per distinct score
        plans.append((order, starts, positive[order]))

    def finish(w):
        aucs = []
        for order, starts, positive in plans:
            ranked = w[:, order]
            pos = np.add.reduceat(ranked * positive, starts, axis=1)
            neg = np.add.reduceat(ranked * ~positive, starts, axis=1)
            below = np.cumsum(neg, axis=1) - neg
            aucs.append(_ratio(np, (pos * (below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))
                        + np.where(pos.sum(axis=1) * neg.sum(axis=1) > 0, 0.0, np.nan))
        stacked = np.stack(aucs, axis=1)
        defined = np.isfinite(stacked)
        # the mean over the classes defined in each resample; none defined: nan, an undefined resample
        return _ratio(np, np.where(defined, stacked, 0.0).sum(axis=1), defined.sum(axis=1).astype(np.float64)) \
            + np.where(defined.any(axis=1), 0.0, np.nan)
    # scikit-learn integrates the ROC curve with the trapezoid rule: the same number to float error
    return Kernel("roc_auc", np.zeros((len(rows), 1)), finish, rel_tol=1e-7, per_record=True)


def _r2(np, s, n: int):
    """torchmetrics' r2_score: 1 - rss/tss, with |rss| or |tss| within 1e-4 of zero treated as zero."""
    rss, total, squares = s[:, 0], s[:, 1], s[:, 2]
    tss = squares - total * (total / n)
    out = np.ones_like(rss)
    real = (np.abs(rss) > 1e-4) & (np.abs(tss) > 1e-4)
    out[real] = 1 - rss[real] / tss[real]
    out[(np.abs(rss) > 1e-4) & ~(np.abs(tss) > 1e-4)] = 0.0
    return out


def _ratio(np, num, den):
    """num / den, 0 where den is 0 (torchmetrics' zero_division=0)."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)
