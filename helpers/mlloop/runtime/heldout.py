"""The held-out test split, scored once per report: ``python -m mlloop.runtime.heldout``.

``mlloop report`` runs this in a child process for each of its top 3 versions. It calls the
frozen evaluation harness (``mlloop.runtime.evaluation.evaluate_version``) with
``split="test"``, which writes the usual evaluation outputs into a new folder of the report
(never into the version's folder), then adds ``intervals.json``: a seeded percentile bootstrap of
every metric over the test samples.

Bootstrap (stated assumptions, ``mlloop.bootstrap.bootstrap_intervals``: the statistic behind
``mlloop compare`` too): the test samples are i.i.d. draws from the population of interest; each
of ``resamples`` resamples draws n samples with replacement (numpy's PCG64 seeded with the rules'
seed) and the metric is recomputed on it, corpus metrics (CER, macro-F1, BLEU, ...) from resampled
sums, never averaged, and a metric without such a form through the same code that scored the
model. The interval is the 2.5th and 97.5th percentile of the resampled values; none when more
than 5% of the resamples cannot be scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..bootstrap import LEVEL, bootstrap_intervals
from ..errors import MlloopError
from ..formats.eval_samples import read_eval_samples
from ..formats.intervals import write_intervals
from ..jsonio import read_json, to_jsonable
from ..layout import EVAL_SAMPLES, EVAL_SCORE, Project
from ..rules import resolve
from .evaluation import evaluate_version

RESAMPLES = 2000


def bootstrap_interval(results: list[dict], metric: dict, resamples: int = RESAMPLES, seed: int = 0,
                       value: float | None = None) -> dict:
    """``{"low", "high", "resamples", "confidence", ...}`` of ``metric`` over ``results`` (the
    eval_samples.jsonl rows); low/high are None when over 5% of the resamples cannot be scored (e.g.
    one class only for a metric that needs two). ``value``: the recorded score the vectorised form
    must reproduce on all samples, else the metric is recomputed per resample."""
    recorded = {metric["name"]: value} if value is not None else None
    (iv,) = bootstrap_intervals(results, [metric], seed=seed, resamples=resamples, recorded=recorded)
    scored = resamples - iv.undefined_resamples if iv.low is not None else 0
    out = {"resamples": resamples, "scored_resamples": scored, "confidence": LEVEL, "seed": seed,
           "method": f"percentile bootstrap over samples, metric recomputed per resample ({iv.method})"}
    if iv.note:
        out["note"] = iv.note
    if scored < resamples * 0.95:  # too many resamples could not be scored: no honest interval
        return {**out, "low": None, "high": None}
    return {**out, "low": iv.low, "high": iv.high}


def read_results(path: Path) -> list[dict]:
    """eval_samples.jsonl's rows: id, prediction, target and the per-sample values (loss, cer, ...)."""
    rows, gaps = read_eval_samples(path)
    if gaps:
        raise MlloopError(f"{path}: line {gaps[0][0]}: {gaps[0][1]}; the evaluation wrote a broken record.")
    return rows


def evaluate_held_out(project: Project, vid: str, output_dir: Path, resamples: int = RESAMPLES,
                      device: str | None = None) -> dict:
    """Score ``vid`` on the test split into ``output_dir`` (new), with intervals; the summary."""
    rules = resolve(project)
    summary = evaluate_version(project, vid, split="test", output_dir=output_dir, device=device,
                               latency_warmup=1, latency_runs=3)
    results = read_results(output_dir / EVAL_SAMPLES)
    score = read_json(output_dir / EVAL_SCORE)
    intervals = {m["name"]: {"value": m["value"],
                             **bootstrap_interval(results, {"name": m["name"], "higher_is_better": m["higher_is_better"]},
                                                  resamples, rules.seed, m["value"])}
                 for m in score["metrics"]}
    write_intervals(output_dir, vid, len(results), intervals)
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
