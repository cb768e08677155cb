"""One statistic: the single-version intervals of mlloop.bootstrap (held-out test split, report
picture) give what the two bootstraps they replaced gave, and share the compare's draw."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mlloop.bootstrap import bootstrap_intervals, paired_bootstrap
from mlloop.runtime.heldout import bootstrap_interval
from mlloop.runtime.metrics import MetricError, compute_metrics


def old_heldout_interval(results, metric, resamples, seed):
    """runtime/heldout.py's bootstrap_interval before it moved onto mlloop.bootstrap (its slow path:
    every resample rescored by compute_metrics; its fast path gave the same numbers for means)."""
    rng = np.random.default_rng(seed)
    n, values = len(results), []
    for _ in range(resamples):
        picked = [results[i] for i in rng.integers(0, n, size=n)]
        try:
            values.append(float(compute_metrics(picked, [metric]).value(metric["name"])))
        except MetricError:
            continue
    return tuple(float(v) for v in np.percentile(values, [2.5, 97.5]))


def old_picture_interval(values, seed, resamples=2000):
    """report_pictures.py's bootstrap_mean_interval before it moved onto mlloop.bootstrap."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    return tuple(float(v) for v in np.percentile(means, [2.5, 97.5]))


def classification_rows(n=31):
    rnd = random.Random(3)
    rows = []
    for i in range(n):
        t = rnd.choice("abc")
        rows.append({"id": i, "prediction": t if rnd.random() < 0.7 else rnd.choice("abc"), "target": t,
                     "loss": rnd.random()})
    return rows


def ocr_rows(n=24):
    rnd = random.Random(5)
    rows = []
    for i in range(n):
        target = "".join(rnd.choice("abc ") for _ in range(rnd.randint(3, 12)))
        rows.append({"id": i, "prediction": "".join(c if rnd.random() > 0.2 else "x" for c in target),
                     "target": target, "loss": rnd.random()})
    per = compute_metrics(rows, [{"name": "cer", "higher_is_better": False}]).per_sample
    return [{**r, **p} for r, p in zip(rows, per)]  # as 03_eval.py writes eval_samples.jsonl


@pytest.mark.parametrize("name", ["accuracy", "loss"])
def test_a_mean_metric_interval_is_the_old_picture_and_held_out_one(name):
    rows = classification_rows()
    spec = {"name": name, "higher_is_better": name != "loss"}
    (iv,) = bootstrap_intervals(rows, [spec], seed=11)
    per_sample = compute_metrics(rows, [spec]).per_sample
    old = old_picture_interval([p[name] for p in per_sample], seed=11)
    assert iv.method == "vectorised" and (iv.low, iv.high) == pytest.approx(old, rel=1e-12, abs=1e-15)
    held = bootstrap_interval(rows, spec, seed=11)
    assert (held["low"], held["high"]) == (iv.low, iv.high) and held["scored_resamples"] == 2000


@pytest.mark.parametrize("name, make", [("macro_f1", classification_rows), ("cer", ocr_rows)])
def test_a_corpus_metric_interval_is_what_rescoring_every_resample_gave(name, make):
    rows, resamples = make(), 300
    spec = {"name": name, "higher_is_better": name != "cer"}
    recorded = {name: compute_metrics(rows, [spec]).value(name)}
    (iv,) = bootstrap_intervals(rows, [spec], seed=7, resamples=resamples, recorded=recorded)
    assert iv.method == "vectorised" and iv.value == pytest.approx(recorded[name], rel=1e-9)
    old = old_heldout_interval([{k: r[k] for k in ("prediction", "target", "loss")} for r in rows], spec, resamples, 7)
    assert (iv.low, iv.high) == pytest.approx(old, rel=1e-6)


def test_the_interval_uses_the_compare_draw_of_version_a():
    rows = classification_rows()
    constant = [{**r, "loss": 0.0} for r in rows]  # B's loss is 0 everywhere: delta = -A's loss
    spec = {"name": "loss", "higher_is_better": False}
    (iv,) = bootstrap_intervals(rows, [spec], seed=4, resamples=500)
    (delta,) = paired_bootstrap(rows, constant, [spec], seed=4, resamples=500)
    assert (-delta.high, -delta.low) == pytest.approx((iv.low, iv.high), rel=1e-12)


def test_a_metric_without_a_vectorised_form_gets_no_interval_without_recompute():
    rows = classification_rows()
    spec = {"name": "macro_f1", "higher_is_better": True}
    (iv,) = bootstrap_intervals(rows, [spec], seed=1, recorded={"macro_f1": 0.123}, recompute=False)
    assert (iv.low, iv.high, iv.method) == (None, None, "not resampled")
    assert iv.note == "no interval: macro_f1 recomputed from the records is not the recorded 0.123"
