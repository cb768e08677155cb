"""`mlloop compare` speed: the paired bootstrap on 10,000 records against a plain numpy one.

    uv run python benchmarks/compare_bench.py [--records 10000] [--reps 5]

Prints, median of reps, in-process (imports done), with 2,000 resamples each:
  - reference: a plain numpy bootstrap of the mean per-record accuracy difference
    (index matrix, gather, mean): the least any bootstrap of this size costs;
  - compare, classification: loss, accuracy, macro_f1, weighted_f1, balanced_accuracy
    (every one recomputed per resample from weighted confusion counts)   target <= 1 s;
  - compare, OCR: loss, cer, wer (total edits / total reference length per resample), bleu
    (clipped n-gram matches and lengths per resample);
  - compare, regression: mse, rmse, mae;
and the ratio of each to the reference, and once (it is slow by design) the fallback that
recomputes a metric through compute_metrics on each resample's rows (chrF on 200 records,
20 resamples, scaled to 2,000).

Not a test: timings depend on the machine; the ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from mlloop.bootstrap import RESAMPLES, paired_bootstrap  # noqa: E402
from mlloop.runtime.metrics import compute_metrics  # noqa: E402


def classification(n: int, seed: int = 0):
    rnd = random.Random(seed)
    labels = [f"class_{k}" for k in range(10)]
    a, b = [], []
    for i in range(n):
        t = rnd.choice(labels)
        a.append({"id": i, "prediction": t if rnd.random() < 0.80 else rnd.choice(labels), "target": t,
                  "loss": rnd.random()})
        b.append({"id": i, "prediction": t if rnd.random() < 0.81 else rnd.choice(labels), "target": t,
                  "loss": rnd.random()})
    specs = [{"name": m, "higher_is_better": m != "loss"}
             for m in ("loss", "accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")]
    return a, b, specs


def ocr(n: int, seed: int = 1):
    rnd = random.Random(seed)
    alphabet = "abcdefghij "
    rows = {"a": [], "b": []}
    for i in range(n):
        target = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(5, 30)))
        for key, p in (("a", 0.05), ("b", 0.04)):
            pred = "".join(c if rnd.random() > p else rnd.choice(alphabet) for c in target)
            rows[key].append({"id": i, "prediction": pred, "target": target, "loss": rnd.random()})
    specs = [{"name": "loss", "higher_is_better": False}, {"name": "cer", "higher_is_better": False},
             {"name": "wer", "higher_is_better": False}, {"name": "bleu", "higher_is_better": True}]
    out = []
    for key in ("a", "b"):  # the per-record rates, as 03_eval.py writes them into eval_samples.jsonl
        per = compute_metrics(rows[key], specs).per_sample
        out.append([{**r, **p} for r, p in zip(rows[key], per)])
    return out[0], out[1], specs


def regression(n: int, seed: int = 2):
    rnd = random.Random(seed)
    a, b = [], []
    for i in range(n):
        t = rnd.uniform(-5, 5)
        a.append({"id": i, "prediction": t + rnd.gauss(0, 1.0), "target": t, "loss": 0.0})
        b.append({"id": i, "prediction": t + rnd.gauss(0, 0.9), "target": t, "loss": 0.0})
    return a, b, [{"name": m, "higher_is_better": False} for m in ("mse", "rmse", "mae")]


def reference(a, b, seed: int = 42) -> None:
    """A plain numpy bootstrap of a mean difference: the floor for any 2,000 x n bootstrap."""
    diff = np.asarray([(ra["prediction"] == ra["target"]) - (rb["prediction"] == rb["target"])
                       for ra, rb in zip(a, b)], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(RESAMPLES, len(diff)))
    np.percentile(diff[idx].mean(axis=1), [2.5, 97.5])


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.records
    cases = {"classification": classification(n), "ocr": ocr(n), "regression": regression(n)}
    a, b, _ = cases["classification"]
    ref = median_time(lambda: reference(a, b), args.reps)
    print(f"{n} records, {RESAMPLES} resamples, median of {args.reps}")
    print(f"  {'reference (numpy mean bootstrap, 1 metric)':<52} {ref:8.3f} s   1.0x")
    out = {"records": n, "reference_s": ref}
    for name, (a, b, specs) in cases.items():
        t = median_time(lambda: paired_bootstrap(a, b, specs, seed=42), args.reps)
        label = f"compare {name} ({len(specs)} metrics)"
        print(f"  {label:<52} {t:8.3f} s   {t / ref:.1f}x")
        out[name] = t
    a, b, _ = cases["ocr"]
    small, rows = 20, min(n, 200)
    start = time.perf_counter()
    paired_bootstrap(a[:rows], b[:rows], [{"name": "chrf", "higher_is_better": True}], seed=42, resamples=small)
    slow = (time.perf_counter() - start) * RESAMPLES / small
    label = f"fallback: chrf via compute_metrics, {rows} records (scaled)"
    print(f"  {label:<52} {slow:8.3f} s   {slow / ref:.1f}x")
    out["fallback_chrf_s"] = slow
    return out


if __name__ == "__main__":
    main()
