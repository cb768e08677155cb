"""The held-out test split, scored once per report: ``python -m mlloop.runtime.heldout``.

``mlloop report`` runs this in a child process for each of its top 3 versions. It calls the
frozen evaluation harness (``mlloop.runtime.evaluation.evaluate_version``) with
``split="test"``, which writes the usual evaluation outputs into a new folder of the report
(never into the version's folder), then adds ``intervals.json``: a seeded percentile bootstrap of
every metric over the test samples.

Bootstrap (stated assumptions): the test samples are i.i.d. draws from the population of
interest; each of ``resamples`` resamples draws n samples with replacement (numpy's PCG64 seeded
with the rules' seed) and the metric is recomputed from the resampled predictions and targets
by the same code that scored the model, so corpus metrics (CER, macro-F1, ...) are recomputed,
not averaged. A metric whose corpus value is the mean of its per-sample values (loss, accuracy,
MAE, ...; checked on the data) is resampled through those values instead: the same numbers, fast. The interval is the 2.5th and 97.5th percentile of the resampled values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import MlloopError
from ..jsonio import read_json, to_jsonable, write_json_atomic
from ..layout import Project
from ..rules import resolve

RESAMPLES = 2000
CONFIDENCE = 0.95
INTERVALS = "intervals.json"


def bootstrap_interval(results: list[dict], metric: dict, resamples: int = RESAMPLES, seed: int = 0,
                       confidence: float = CONFIDENCE) -> dict:
    """``{"low", "high", "resamples", "confidence"}`` of ``metric`` over ``results`` (one
    ``{"prediction", "target", "loss"}`` per sample); low/high are None when a resample cannot be
    scored (e.g. one class only for a metric that needs two)."""
    import numpy as np

    from .metrics import MetricError, compute_metrics

    rng = np.random.default_rng(seed)
    n, values = len(results), []
    fast = _mean_of_samples(results, metric)
    if fast is not None:  # the corpus value is a mean of per-sample values: resample those, same answer
        data, root = fast
        means = data[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
        values = list(np.sqrt(means) if root else means)
    for _ in range(0 if fast is not None else resamples):
        picked = [results[i] for i in rng.integers(0, n, size=n)]
        try:
            value = compute_metrics(picked, [metric]).value(metric["name"])
        except MetricError:
            continue
        if value is not None:
            values.append(float(value))
    out = {"resamples": resamples, "scored_resamples": len(values), "confidence": confidence, "seed": seed,
           "method": "percentile bootstrap over samples, metric recomputed per resample"}
    if len(values) < resamples * 0.95:  # too many resamples could not be scored: no honest interval
        return {**out, "low": None, "high": None}
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {**out, "low": float(low), "high": float(high)}


def _mean_of_samples(results: list[dict], metric: dict):
    """(per-sample values as an array, take the square root) when the metric's corpus value is the
    mean of its per-sample values (rmse: the root of the mean square), checked on these results;
    None otherwise (then every resample is rescored)."""
    import numpy as np

    from .metrics import MetricError, compute_metrics

    name = metric["name"]
    try:
        scored = compute_metrics(results, [metric])
    except MetricError:
        return None
    per = [row.get(name) for row in scored.per_sample]
    if not per or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in per):
        return None
    data, root = np.asarray(per, dtype=float), name == "rmse"
    if root:
        data = data ** 2
    corpus = scored.value(name)
    mean = float(np.sqrt(data.mean()) if root else data.mean())
    if corpus is None or abs(mean - corpus) > 1e-9 * max(1.0, abs(corpus)):
        return None
    return data, root


def read_results(path: Path) -> list[dict]:
    """eval_samples.jsonl's rows as the results the metrics take."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"prediction": r.get("prediction"), "target": r.get("target"), "loss": r.get("loss")} for r in rows]


def evaluate_held_out(project: Project, vid: str, output_dir: Path, resamples: int = RESAMPLES,
                      device: str | None = None) -> dict:
    """Score ``vid`` on the test split into ``output_dir`` (new), with intervals; the summary."""
    from .evaluation import evaluate_version

    rules = resolve(project)
    summary = evaluate_version(project, vid, split="test", output_dir=output_dir, device=device,
                               latency_warmup=1, latency_runs=3)
    results = read_results(output_dir / "eval_samples.jsonl")
    score = read_json(output_dir / "eval_score.json")
    intervals = {m["name"]: {"value": m["value"],
                             **bootstrap_interval(results, {"name": m["name"], "higher_is_better": m["higher_is_better"]},
                                                  resamples, rules.seed)}
                 for m in score["metrics"]}
    doc = to_jsonable({"version_id": vid, "split": "test", "num_samples": len(results), "intervals": intervals})
    write_json_atomic(output_dir / INTERVALS, doc)
    return {**summary, "intervals": intervals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score one version on the held-out test split (mlloop report).")
    parser.add_argument("--project", default=".")
    parser.add_argument("--version", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    try:
        summary = evaluate_held_out(Project.at(args.project), args.version, Path(args.output_dir), args.resamples,
                                    args.device)
    except MlloopError as exc:
        if os.environ.get("MLLOOP_DEBUG") == "1":
            raise
        print(f"Error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps(to_jsonable(summary), allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
