"""Evaluation outputs (Step 2): eval_score.json and its provenance, infer_samples/,
eval_samples.jsonl and trivial_baselines.json with the floor a version must beat."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from ..errors import Findings
from ..formats.eval_samples import parse_eval_samples
from ..formats.eval_score import INPUT_HASHES, OUTPUT_HASHES, read_eval_score
from ..formats.sample_meta import parse_sample_meta
from ..formats.trivial_baselines import Floor
from ..layout import BEST_CKPT, EVAL_SAMPLES, EVAL_SCORE, INFER_SAMPLES, SAMPLE_META, TRIVIAL_BASELINES
from ..scores import (RECOMPUTABLE, REQUIRED, STALE, TAMPERED, UNKNOWN, provenance, recompute_metric,
                      recompute_with_tolerance)
from .context import Context
from .prepdata import seeded_draw, valid_ids

SAMPLE_DIR_RE = re.compile(r"[0-9]{4,}")
MAX_LISTED = 10


def _rerun(vid: str) -> str:
    return f"python 03_eval.py --version {vid}"


def check_evaluation(ctx: Context, vid: str) -> None:
    folder = ctx.project.artifact_dir(vid)
    score = _check_score(ctx, vid, folder)
    _check_infer_samples(ctx, vid, folder)
    _check_eval_samples(ctx, vid, folder, score)
    _check_trivial(ctx, vid, folder, score)


def _check_score(ctx: Context, vid: str, folder: Path):
    path = folder / EVAL_SCORE
    if not ctx.exists(path):
        ctx.problem("eval.missing", path, f"eval_score.json is missing; evaluation writes it with infer_samples/, "
                    f"eval_samples.jsonl and trivial_baselines.json (run {_rerun(vid)})")
        return None
    score, found = ctx.eval_score(vid)
    ctx.out.extend(found)
    if score is None:
        return None
    doc = score.doc
    if "version_id" in doc and doc["version_id"] != vid:
        ctx.problem("eval.version_id", path, f"version_id is {json.dumps(doc['version_id'])} but the folder is {vid}", "$.version_id")
    if "seed" in doc and doc["seed"] != ctx.rules.seed and not ctx.rules_unreadable:
        ctx.problem("eval.seed", path, f"seed is {json.dumps(doc['seed'])} but the rules' seed is {ctx.rules.seed}; "
                    f"re-run {_rerun(vid)}", "$.seed")
    ids = valid_ids(ctx)
    ns = doc.get("num_samples")
    if ids is not None and isinstance(ns, int) and not isinstance(ns, bool) and ns >= 1 and ns != len(ids):
        ctx.problem("eval.num_samples", path, f"num_samples is {ns} but the validation split has {len(ids)} samples; "
                    "evaluation covers the whole validation split", "$.num_samples")
    ckpt = folder / BEST_CKPT
    if ctx.safe(ckpt) and ckpt.is_file() and not os.path.islink(ckpt) and ctx.safe(ctx.project.eval_script):
        # recompute=False: _check_recomputed below names the metric and the line itself.
        state, reason = provenance(ctx.project, vid, score, sha256=ctx.sha256, recompute=False)
        if state == TAMPERED:
            ctx.problem("eval.tampered", path, f"{reason}; scores come from 03_eval.py only: re-run {_rerun(vid)}")
        elif state == STALE:
            ctx.problem("eval.stale", path, f"stale: {reason}; re-run {_rerun(vid)} (mlloop report does it for you)")
        elif state == UNKNOWN:
            ctx.warn("eval.provenance_unknown", path, f"{reason}; its numbers cannot be traced to a checkpoint")
        unsigned = [k for k in (*OUTPUT_HASHES, *INPUT_HASHES) if k not in doc]
        if state != UNKNOWN and unsigned:
            ctx.warn("eval.provenance_partial", path, f"records no {' / '.join(unsigned)} (an older 03_eval.py); "
                     f"re-run {_rerun(vid)} so that later edits to its outputs and inputs are detected")
    return score


def _check_infer_samples(ctx: Context, vid: str, folder: Path) -> None:
    root = folder / INFER_SAMPLES
    if not ctx.exists(root):
        ctx.problem("eval.missing", root, f"infer_samples/ is missing (run {_rerun(vid)})")
        return
    if not ctx.dir_ok(root):
        return
    if not root.is_dir():
        ctx.problem("infer.not_a_folder", root, "infer_samples must be a folder of sample folders 0001, 0002, …")
        return
    limit = ctx.rules.infer_samples
    seed = ctx.rules.seed
    numbered = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not SAMPLE_DIR_RE.fullmatch(entry.name) or int(entry.name) < 1 or entry.name != f"{int(entry.name):04d}":
            ctx.problem("infer.name", Path(entry.path), f"{entry.name!r} is not a sample folder; they are named 0001, 0002, …")
            continue
        if not entry.is_dir():
            ctx.problem("infer.name", Path(entry.path), "a sample must be a folder holding input.*, output.* and meta.json")
            continue
        numbered[int(entry.name)] = Path(entry.path)
    count = len(numbered)
    if ctx.rules_unreadable:  # infer_samples and seed are unknown; the rules problem says why
        limit, draw = max(limit, count), None
    else:
        draw = seeded_draw(ctx, seed, limit)
    if count > limit:
        ctx.problem("infer.count", root, f"{count} sample folders, but eval_config.infer_samples allows at most {limit}")
    elif draw is not None and count != len(draw):
        ctx.problem("infer.count", root, f"{count} sample folders; the seeded draw has k = min(infer_samples={limit}, "
                    f"{len(valid_ids(ctx))} validation samples) = {len(draw)}")
    gaps = [n for n in range(1, count + 1) if n not in numbered]
    if gaps:
        ctx.problem("infer.count", root, f"sample folders are numbered 0001…{count:04d} without gaps; missing {gaps[0]:04d}")
    for n, sample in sorted(numbered.items()):
        if not ctx.dir_ok(sample):
            continue
        names = [e.name for e in os.scandir(sample)]
        for stem in ("input", "output"):
            if not any(name.startswith(stem + ".") for name in names):
                ctx.problem("infer.file_missing", sample, f"no {stem}.* file (each sample has input.*, output.* and meta.json)")
        meta = sample / SAMPLE_META
        if "meta.json" not in names:
            ctx.problem("infer.file_missing", meta, "meta.json is missing")
            continue
        ok, doc = ctx.read_json(meta)
        if not ok:
            continue
        _check_meta(ctx, vid, meta, doc, n, draw, seed)


def _check_meta(ctx: Context, vid: str, meta: Path, doc, n: int, draw, seed: int) -> None:
    expected = {"version_id": vid, "dataset_id": ctx.dataset_id, "split": "valid",
                "seed": None if ctx.rules_unreadable else seed}
    doc = parse_sample_meta(doc, ctx.rel(meta), ctx.out, expected=expected)
    if doc is not None and "sample_id" in doc and draw is not None and n <= len(draw) and doc["sample_id"] != draw[n - 1]:
        ctx.problem("infer.sample_id", meta,
                    f"sample_id is {json.dumps(doc['sample_id'])} but the seeded draw random.Random({seed}).sample(sorted(valid ids), "
                    f"{len(draw)}) puts {json.dumps(draw[n - 1])} at position {n}", "$.sample_id")


def _check_eval_samples(ctx: Context, vid: str, folder: Path, score) -> None:
    path = folder / EVAL_SAMPLES
    text = ctx.document(path, "eval", f"{EVAL_SAMPLES} is missing (run {_rerun(vid)})")
    if text is None:
        return
    rel = ctx.rel(path)
    rows, gaps = parse_eval_samples(text, rel)
    ids, bad = [r["id"] for r in rows], len(gaps)
    for n, reason in gaps[:MAX_LISTED]:
        ctx.problem("eval.samples", rel, f"line {n}: {reason}")
    if bad > MAX_LISTED:
        ctx.problem("eval.samples", rel, f"{bad - MAX_LISTED} more broken lines")
    ns = score.doc.get("num_samples") if score is not None else None
    if isinstance(ns, int) and not isinstance(ns, bool) and ns >= 1 and not bad and len(ids) != ns:
        ctx.problem("eval.samples", rel, f"{len(ids)} records but eval_score.json num_samples is {ns}; one record per validation sample")
    if score is not None and not bad and rows:
        _check_recomputed(ctx, vid, rel, score, rows)
    hashable = [json.dumps(i, sort_keys=True) if isinstance(i, (dict, list)) else i for i in ids]
    if len(set(hashable)) != len(hashable):
        ctx.problem("eval.samples", rel, "ids repeat; one record per validation sample")
    valid = valid_ids(ctx)
    if valid is not None and not bad:
        absent = set(valid) - set(hashable)
        extra = set(hashable) - set(valid)
        if absent:
            ctx.problem("eval.samples", rel, f"{len(absent)} validation id(s) have no record (e.g. {sorted(map(str, absent))[0]!r})")
        if extra:
            ctx.problem("eval.samples", rel, f"{len(extra)} id(s) are not validation samples (e.g. {sorted(map(str, extra))[0]!r})")


def _check_recomputed(ctx: Context, vid: str, rel: str, score, rows: list[dict]) -> None:
    """A score's numbers must follow from its per-sample records: a hand-edited value with a
    recomputed score_sha256 still disagrees with eval_samples.jsonl."""
    score_rel = ctx.rel(score.path)
    unchecked = []
    for i, m in enumerate(score.metrics):
        if m["name"] not in RECOMPUTABLE:
            unchecked.append(m["name"])
            continue
        got = recompute_with_tolerance(m["name"], rows)
        if got is None and m["name"] in REQUIRED:
            ctx.problem("eval.recompute", rel, f"{m['name']} is in eval_score.json but cannot be recomputed from these "
                        f"records (they lack per-sample {m['name']} values or prediction/target); re-run {_rerun(vid)}")
        elif got is None:
            continue  # e.g. no label predictions recorded: nothing to cross-check it with
        elif not math.isclose(got[0], m["value"], rel_tol=got[1], abs_tol=1e-9):
            ctx.problem("eval.recompute", score_rel, f"{m['name']} is {m['value']:.6g} but eval_samples.jsonl gives "
                        f"{got[0]:.6g}; scores come from 03_eval.py only: re-run {_rerun(vid)}", f"$.metrics[{i}].value")
    if unchecked:
        ctx.warn("eval.unchecked", score_rel, f"{', '.join(unchecked)} cannot be cross-checked against "
                    "eval_samples.jsonl without torch; `mlloop compare` recomputes them from the records")


def _check_trivial(ctx: Context, vid: str, folder: Path, score) -> None:
    path = folder / TRIVIAL_BASELINES
    if not ctx.exists(path):
        ctx.problem("eval.missing", path, f"trivial_baselines.json is missing (run {_rerun(vid)})")
        return
    ok, doc = ctx.read_json(path)
    if not ok:
        return
    if not isinstance(doc, dict):
        ctx.problem("floor.invalid", path, "trivial_baselines.json must be one JSON object", "$")
        return
    for key, want in (("dataset_id", ctx.dataset_id), ("version_id", vid)):
        if key in doc and want is not None and doc[key] != want:
            ctx.problem("floor.invalid", path, f"{key} is {json.dumps(doc[key])}, expected {json.dumps(want)}", f"$.{key}")
    if not isinstance(doc.get("predictors"), list):
        ctx.problem("floor.invalid", path, "predictors must be a list of {name, description, metrics}", "$.predictors")
    floor = doc.get("floor")
    if floor is None and "floor" in doc:
        return  # no trivial predictor can compute any rules metric: nothing to compare with
    if not isinstance(floor, dict) or not (isinstance(floor.get("metric"), str) and _finite(floor.get("value"))
                                           and isinstance(floor.get("higher_is_better"), bool)):
        ctx.problem("floor.invalid", path, "floor needs metric (string), value (finite number) and higher_is_better (bool)", "$.floor")
        return
    f = Floor(floor["metric"], float(floor["value"]), str(floor.get("predictor", "")), floor["higher_is_better"])
    _check_floor_choice(ctx, vid, path, doc, f)
    if score is None:
        return
    value = score.value(f.metric)
    if value is None:
        ctx.problem("eval.floor_metric", path, f"the floor is on {f.metric!r}, which eval_score.json does not report", "$.floor.metric")
        return
    if not f.beaten_by(value):
        ctx.warn("eval.below_floor", ctx.project.artifact_dir(vid) / EVAL_SCORE,
                 f"{vid} does not beat the trivial baseline: {f.metric} {value:g} vs {f.value:g} for "
                 f"{f.predictor or 'a trivial predictor'}; the model may have learnt nothing")


def _check_floor_choice(ctx: Context, vid: str, path: Path, doc: dict, f: Floor) -> None:
    """The floor is the best trivial predictor's value on its metric (runtime.trivial.choose_floor):
    a floor edited down (an easier bar) disagrees with the predictors listed beside it."""
    predictors = doc.get("predictors") if isinstance(doc.get("predictors"), list) else []
    values = [(p.get("name"), m["value"]) for p in predictors if isinstance(p, dict) and isinstance(p.get("metrics"), list)
              for m in p["metrics"] if isinstance(m, dict) and m.get("name") == f.metric and _finite(m.get("value"))]
    if not values:
        ctx.problem("floor.invalid", path, f"no predictor reports {f.metric!r}, so the floor on it comes from nowhere", "$.floor")
        return
    best = max(v for _, v in values) if f.higher_is_better else min(v for _, v in values)
    same = lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)  # noqa: E731
    if not same(best, f.value):
        ctx.problem("floor.mismatch", path, f"floor.value is {f.value:g} but the best predictor on {f.metric} scores {best:g}; "
                    f"the floor is the best trivial predictor's value: re-run {_rerun(vid)}", "$.floor.value")
    elif not any(same(v, f.value) for name, v in values if name == f.predictor):
        ctx.problem("floor.mismatch", path, f"floor.predictor {f.predictor!r} does not score {f.value:g} on {f.metric} "
                    f"among the predictors listed; re-run {_rerun(vid)}", "$.floor.predictor")
    primary = ctx.rules.primary_metric
    if f.metric != primary and not ctx.rules_unreadable and any(
            isinstance(m, dict) and m.get("name") == primary for p in predictors if isinstance(p, dict)
            for m in (p.get("metrics") if isinstance(p.get("metrics"), list) else [])):
        ctx.problem("floor.mismatch", path, f"the floor is on {f.metric!r} but the predictors report the primary metric "
                    f"{primary!r}; the floor is on the primary metric when a trivial predictor can compute it", "$.floor.metric")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_externals(ctx: Context) -> None:
    """Reference models in Models/external/<name>/: an eval_score.json (same contract) or an
    evaluation.py that writes one."""
    for folder in ctx.project.external_models():
        if not ctx.dir_ok(folder):
            continue
        path = folder / EVAL_SCORE
        if ctx.exists(path):
            if not ctx.safe(path):
                continue

            found = Findings()
            score = read_eval_score(ctx.project, path, folder.name, primary_metric=ctx.rules.primary_metric,
                                    dataset_id=ctx.dataset_id, findings=found)
            ctx.out.extend(found)
            if score is not None and "version_id" in score.doc and score.doc["version_id"] != folder.name:
                ctx.problem("eval.version_id", path, f"version_id is {json.dumps(score.doc['version_id'])}; an external "
                            f"model's version_id is its folder name {folder.name!r}", "$.version_id")
        elif not (folder / "evaluation.py").is_file():
            ctx.warn("external.unevaluable", folder, "neither eval_score.json nor evaluation.py; this model cannot be ranked")
