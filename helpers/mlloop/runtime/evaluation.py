"""The evaluation harness behind ``03_eval.py``: the same protocol for every version.

``evaluate_version(project, vid)`` checks ``best.ckpt`` before anything is unpickled, imports the
version's own script (its evaluation interface, docs/contracts.md), scores the WHOLE validation
split with the configured metrics, times a served model (batch of 1 through ``make_batch`` +
``predict``), scores the trivial predictors, and writes the four evaluation outputs:
``eval_score.json``, ``trivial_baselines.json``, ``eval_samples.jsonl``, ``infer_samples/``.

Everything is computed and staged in a hidden folder first; only then are earlier outputs moved
to ``Models/Artifacts/.trash/`` (never deleted) and the new ones moved into place, with
``eval_score.json`` last, so a failed run leaves the previous evaluation as it was.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import time
import traceback
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..errors import MlloopError
from ..formats import boxes
from ..formats.eval_samples import write_eval_samples
from ..formats.eval_score import OUTPUT_HASHES, score_digest
from ..formats.sample_meta import write_sample_meta
from ..formats.trivial_baselines import Floor
from ..jsonio import JsonProblems, read_json, sha256_file, to_jsonable, write_json_atomic
from ..layout import (BASELINE, BEST_CKPT, EVAL_SAMPLES, EVAL_SCORE, INFER_SAMPLES, SPEC,
                      TRIVIAL_BASELINES, Project, is_inside, valid_index_file, version_number)
from ..rules import resolve
from ..stages import EVAL_ARTIFACTS, locked_dataset_id
from ..taskformat import load_task_format
from . import checkpoint, metrics, trivial
from .artifacts import HELD_OUT, forget_splits_read, held_out_access, read_index, splits_read

INTERFACE = ("load_for_eval", "eval_records", "make_batch", "predict", "write_sample")
EVAL_BATCH_SIZE = 32
LATENCY_WARMUP = 5
LATENCY_RUNS = 30


def evaluate_version(project: Project | str | os.PathLike, vid: str, *, eval_script: Path | None = None,
                     device: str | None = None, batch_size: int = EVAL_BATCH_SIZE,
                     latency_warmup: int = LATENCY_WARMUP, latency_runs: int = LATENCY_RUNS,
                     log: Callable[[str], None] | None = None, split: str = "valid",
                     output_dir: Path | None = None) -> dict:
    """Evaluate ``vid`` (``vNNN`` or ``baseline``) and write its evaluation outputs.

    ``eval_script``: the running ``03_eval.py``; it must be the project's (its sha256 is what the
    score records). Returns a summary: version, dataset, metrics, latency, floor, paths.
    ``split="test"`` (only ``mlloop report``) scores the held-out test split instead and writes the
    outputs into ``output_dir``, a new folder outside ``Models/Artifacts/``: the version's own
    folder is never touched by a test-split evaluation.
    """
    import torch

    log = log or (lambda message: None)
    project = project if isinstance(project, Project) else Project.at(project)
    rules, spec, dataset_id, eval_script = _inputs(project, vid, eval_script)
    forget_splits_read()
    script, folder = project.script(vid), project.artifact_dir(vid)
    ckpt, prepdata = folder / BEST_CKPT, project.prepdata(dataset_id)
    output_dir = _output_dir(project, split, output_dir)

    # The checkpoint is checked before any code of the version runs.
    checkpoint.check_checkpoint(ckpt, project.root)
    checkpoint_sha, eval_script_sha = sha256_file(ckpt), sha256_file(eval_script)
    # What the score depends on besides the checkpoint: a later change to either makes it stale.
    index = valid_index_file(prepdata)
    inputs = {"train_script_sha256": sha256_file(script)}
    if index is not None:
        inputs["valid_index_sha256"] = sha256_file(index)
    module = checkpoint.import_script(script)
    missing = [name for name in INTERFACE if not callable(getattr(module, name, None))]
    if missing:
        raise MlloopError(f"{script.name} does not define {', '.join(f'{m}()' for m in missing)}; 03_eval.py needs "
                          "the evaluation interface of docs/contracts.md (copy it from the template).")

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MlloopError(f"--device {device} was asked for, but torch sees no CUDA GPU here; use --device cpu.")
    seed = rules.seed
    torch.manual_seed(seed)
    call = _Caller(module, script)
    log(f"loading {project.rel(ckpt)} on {device}")
    with checkpoint.forced_weights_only():
        model = call("load_for_eval", str(ckpt), device)
    if hasattr(model, "eval"):
        model.eval()
    with held_out_access() if split == HELD_OUT else nullcontext():
        records = _valid_records(call("eval_records", str(prepdata), split), script)
    ids = [r["id"] for r in records]
    log(f"evaluating {len(records)} validation samples in batches of {batch_size}")
    results = _predict_all(call, model, records, str(prepdata), device, batch_size, script)
    scored = metrics.compute_metrics(results, rules.metrics, ids=ids)
    for note in scored.warnings:
        log(f"warning: {note}")

    drawn = random.Random(seed).sample(sorted(ids), min(rules.infer_samples, len(ids)))
    position = {sid: n for n, sid in enumerate(ids)}
    latency = _latency(call, model, [records[position[sid]] for sid in drawn] or records[:1],
                       str(prepdata), device, latency_warmup, latency_runs)
    task_type = spec.get("task_type") or rules.task_type
    floor_part = _trivial(module, project, prepdata, records, task_type, rules, seed, ids, results)

    score = to_jsonable({
        "dataset_id": dataset_id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "num_samples": len(records), "metrics": scored.values, "latency_ms": latency["p50_ms"],
        "version_id": vid, "seed": seed, "checkpoint_sha256": checkpoint_sha, "eval_script_sha256": eval_script_sha,
        "train_val_loss": _train_val_loss(spec),
        "latency": latency, "device": device, "eval_batch_size": batch_size, "split": split,
        "splits_read": splits_read(), **inputs,
    })
    trivial_doc = to_jsonable({"dataset_id": dataset_id, "version_id": vid, "num_samples": len(records),
                               "seed": seed, "task_type": task_type, **floor_part})

    staging = (output_dir.parent if output_dir else folder) / f".eval-staging-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}"
    staging.mkdir(parents=True)
    try:
        _write_infer_samples(call, staging / INFER_SAMPLES, drawn, records, results, scored.per_sample, ids,
                             str(prepdata), script=script,
                             meta={"seed": seed, "version_id": vid, "dataset_id": dataset_id, "split": split,
                                   "conditions": {"device": device, "checkpoint": project.rel(ckpt), "batch_size": 1,
                                                  "script": script.name, "torch": torch.__version__},
                                   "config": _config_summary(spec, rules)})
        _write_eval_samples(staging / EVAL_SAMPLES, ids, results, scored.per_sample, rules.metrics)
        write_json_atomic(staging / TRIVIAL_BASELINES, trivial_doc)
        # The score signs the outputs written with it: editing either afterwards shows as tampering.
        for key, name in OUTPUT_HASHES.items():
            score[key] = sha256_file(staging / name)
        score["score_sha256"] = score_digest(score)
        write_json_atomic(staging / EVAL_SCORE, score)
        if output_dir is not None:
            os.rename(staging, output_dir)
            moved = None
        else:
            moved = _replace_outputs(project, folder, staging, vid)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # only this run's partial outputs
        raise
    floor = trivial_doc.get("floor")
    beats = Floor(**floor).beaten_by(scored.value(floor["metric"])) if floor else None
    return {
        "version_id": vid, "dataset_id": dataset_id, "num_samples": len(records), "metrics": scored.values,
        "primary_metric": rules.primary_metric, "latency_ms": latency["p50_ms"], "device": device,
        "floor": floor, "beats_floor": beats, "infer_samples": len(drawn), "moved_aside": moved,
        "metric_warnings": scored.warnings,
        "eval_score": project.rel((output_dir or folder) / EVAL_SCORE), "split": split,
    }


def _output_dir(project: Project, split: str, output_dir: Path | None) -> Path | None:
    """Where a test-split evaluation writes (a new folder outside Models/Artifacts/); None for valid."""
    if split not in ("valid", HELD_OUT):
        raise MlloopError(f"split {split!r} cannot be evaluated; use valid (03_eval.py) or test (mlloop report).")
    if split == "valid":
        if output_dir is not None:
            raise MlloopError("a validation evaluation writes into the version's folder; output_dir is for the test split.")
        return None
    if output_dir is None:
        raise MlloopError("a test-split evaluation needs an output folder (the report's), never the version's.")
    output_dir = Path(output_dir).resolve()
    if is_inside(project.artifacts_root, output_dir) or output_dir.exists():
        raise MlloopError(f"{output_dir}: a test-split evaluation writes into a new folder outside Models/Artifacts/.")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    return output_dir


# ---- inputs --------------------------------------------------------------------------------

def _inputs(project: Project, vid: str, running: Path | None):
    """Rules, spec.json, the loop's dataset_id and the project's 03_eval.py, each checked."""
    if vid != BASELINE and version_number(vid) is None:
        raise MlloopError(f"{vid!r} is not a version id; pass --version vNNN (e.g. v001) or baseline.")
    rules = resolve(project)
    if rules.findings.problems:
        first = rules.findings.problems[0]
        raise MlloopError(f"the rules have {len(rules.findings.problems)} problem(s), first: {first.line()}; "
                          "run `mlloop rules` and fix them before evaluating.")
    eval_script = _eval_script(project, running)
    script = project.script(vid)
    if not script.is_file():
        raise MlloopError(f"{project.rel(script)} does not exist; the version has no training script to evaluate.")
    folder = project.artifact_dir(vid)
    spec = _read_spec(project, folder)
    dataset_id, _ = locked_dataset_id(project, rules.dataset_id)
    if dataset_id is None:
        raise MlloopError("the loop has no dataset_id (neither the baseline's spec.json nor the rules set one); "
                          "set dataset_config.dataset_id in the rules.")
    if isinstance(spec.get("dataset_id"), str) and spec["dataset_id"] != dataset_id:
        raise MlloopError(f"{project.rel(folder / SPEC)}: the version was trained on dataset "
                          f"{spec['dataset_id']!r} but the loop's dataset is {dataset_id!r}; retrain it on the loop's dataset.")
    if not project.prepdata(dataset_id).is_dir():
        raise MlloopError(f"{project.rel(project.prepdata(dataset_id))} does not exist; run 01_data_pipeline.py first.")
    return rules, spec, dataset_id, eval_script


def _eval_script(project: Project, running: Path | None) -> Path:
    own = project.eval_script
    if not own.is_file():
        raise MlloopError(f"{project.rel(own)} does not exist; copy the progressive-training skill's "
                          "templates/03_eval.py into the project root and run it from there.")
    if running is not None:
        running = Path(running).resolve()
        if running != own.resolve() and sha256_file(running) != sha256_file(own):
            raise MlloopError(f"{running} is not the project's 03_eval.py (their contents differ); run "
                              f"`python 03_eval.py` from {project.root} so that the score records the protocol used.")
    return own


def _read_spec(project: Project, folder: Path) -> dict:
    path = folder / SPEC
    if not path.exists():
        return {}
    try:
        spec = read_json(path, project.rel(path))
    except JsonProblems as exc:
        raise MlloopError(f"{exc.problems[0].line()}; fix or regenerate spec.json by retraining.") from None
    return spec if isinstance(spec, dict) else {}


def _train_val_loss(spec: dict) -> float | None:
    """The training-time validation loss (best checkpoint's monitored value when it is a loss);
    recorded beside the eval loss because the two protocols can differ (docs/contracts.md, `eval_score.json`)."""
    best = spec.get("best_checkpoint")
    if isinstance(best, dict) and "loss" in str(best.get("monitor", "")):
        score = best.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            return float(score)
    return None


def _config_summary(spec: dict, rules) -> dict:
    return {"task_type": spec.get("task_type") or rules.task_type, "parent": spec.get("parent"),
            "model": spec.get("model", {}), "training": spec.get("training", {}),
            "primary_metric": rules.primary_metric}


class _Caller:
    """Calls the script's interface; an exception becomes one line naming function and line."""

    def __init__(self, module: ModuleType, script: Path):
        self.module, self.script = module, script.resolve()

    def __call__(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.module, name)(*args)
        except MlloopError:
            raise
        except Exception as exc:
            if os.environ.get("MLLOOP_DEBUG") == "1":
                traceback.print_exc()
            line = checkpoint._line_in(exc, self.script)
            where = f" (line {line})" if line else ""
            message = checkpoint.safe_message(str(exc)).strip().splitlines()
            raise MlloopError(f"{self.script.name}: {name}(){where} raised {type(exc).__name__}: "
                              f"{message[0] if message else ''}".rstrip(": ")) from None


def _valid_records(records: Any, script: Path) -> list[dict]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise MlloopError(f"{script.name}: eval_records() must return a list of dicts (index records).")
    if not records:
        raise MlloopError(f"{script.name}: eval_records() returned no validation records; the validation split is empty.")
    seen = set()
    for n, r in enumerate(records):
        sid = r.get("id")
        if not isinstance(sid, (str, int)) or isinstance(sid, bool):
            raise MlloopError(f"{script.name}: eval_records() record {n} has no usable \"id\" (str or int).")
        if sid in seen:
            raise MlloopError(f"{script.name}: eval_records() returned id {sid!r} twice; ids must be unique.")
        seen.add(sid)
    if len({type(r['id']) for r in records}) > 1:
        raise MlloopError(f"{script.name}: eval_records() mixes int and str ids; use one type.")
    return records


def _plain(value: Any) -> Any:
    """A torch/numpy scalar as a Python value; everything else as it is."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def _plain_value(value: Any) -> Any:
    """Scalars as Python values; dicts, lists, arrays and tensors (scores, boxes, masks) as
    plain JSON values, so every metric reads the same types whatever the script returned."""
    value = _plain(value)
    if isinstance(value, (dict, list, tuple)) or callable(getattr(value, "tolist", None)):
        return to_jsonable(value)
    return value


def _predict_all(call: _Caller, model, records: list[dict], prepdata: str, device: str, batch_size: int,
                 script: Path) -> list[dict]:
    import torch

    results: list[dict] = []
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            batch = call("make_batch", chunk, prepdata, device)
            out = call("predict", model, batch)
            if not isinstance(out, list) or len(out) != len(chunk):
                got = f"{len(out)} results" if isinstance(out, list) else type(out).__name__
                raise MlloopError(f"{script.name}: predict() must return one dict per record ({len(chunk)}), got {got}.")
            for record, r in zip(chunk, out):
                if not isinstance(r, dict) or "prediction" not in r or "target" not in r:
                    raise MlloopError(f"{script.name}: predict() must return dicts with \"prediction\", \"target\" and "
                                      f"\"loss\"; sample {record['id']!r} got {r!r:.80}.")
                results.append({**{k: _plain_value(v) for k, v in r.items()}, "loss": _plain(r.get("loss"))})
    return results


def _latency(call: _Caller, model, records: list[dict], prepdata: str, device: str, warmup: int, runs: int) -> dict:
    """A served model's view: one record at a time through make_batch + predict, after warm-up;
    p50 and p90 of ``runs`` timings (the first calls are far slower: lazy init, allocator warm-up)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") and torch.cuda.is_available() else (lambda: None)
    times = []
    with torch.no_grad():
        for i in range(warmup + runs):
            record = records[i % len(records)]
            sync()
            t0 = time.perf_counter()
            call("predict", model, call("make_batch", [record], prepdata, device))
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return {"p50_ms": statistics.median(times), "p90_ms": p90, "runs": runs, "warmup": warmup,
            "batch_size": 1, "timed": "make_batch + predict"}


def _trivial(module: ModuleType, project: Project, prepdata: Path, records: list[dict], task_type: str | None,
             rules, seed: int, ids: list, results: list[dict]) -> dict:
    try:
        task_format = load_task_format(project)
    except MlloopError:
        task_format = None
    family = trivial.task_family(task_type, task_format)
    from_results = trivial.results_family(task_format.canonical(task_type) if task_format and task_type else task_type)
    if family is None and from_results is not None:
        prior = _box_prior(prepdata, records, trivial.declared_target(task_type, task_format)) \
            if from_results == trivial.DETECTION else {}
        out = trivial.score_from_results(from_results, results, rules.metrics, rules.primary_metric, seed, ids, **prior)
        return {"task_family": from_results, "fitted_on": {"split": "valid", "source": "predict() results"}, **out}
    if family is None:
        return trivial.score_trivial(None, None, None, rules.metrics, rules.primary_metric, seed,
                                     note=f"no trivial predictors for task type {task_type!r}")
    train = read_index(prepdata, "train")  # targets only: no asset is opened
    custom = getattr(module, "record_target", None)
    if callable(custom):  # optional hook: the script says where its target lives
        extract, source = custom, "record_target()"
    else:
        declared = trivial.declared_target(task_type, task_format)
        field = trivial.target_field(family, train, records, declared=declared)
        if field is None:
            names = declared or ", ".join(trivial.TARGET_FIELDS[family])
            return trivial.score_trivial(None, None, None, rules.metrics, rules.primary_metric, seed,
                                         note=f"no trivial predictors: the target field ({names}) is not in every index record")
        extract, source = (lambda r, f=field: r[f]), field
    out = trivial.score_trivial(family, [extract(r) for r in train], [extract(r) for r in records],
                                rules.metrics, rules.primary_metric, seed, valid_ids=ids)
    return {"task_family": family, "target": source, "fitted_on": {"split": "train", "num_samples": len(train)}, **out}


def _box_prior(prepdata: Path, records: list[dict], field: str | None) -> dict:
    """``box_prior`` (fit on the train split's label files) and the validation ``image_sizes`` for the
    detection floor; {} when a record lacks the label path, width or height (then only no_boxes)."""
    field = field or "label_path"
    train = read_index(prepdata, "train")
    if not all(r.get(field) and r.get("width") and r.get("height") for r in [*train, *records]):
        return {}
    objects = []
    for r in train:
        found, labels = boxes.read(prepdata / "train" / r[field])
        w, h = float(r["width"]), float(r["height"])
        objects += [([b[0] / w, b[1] / h, b[2] / w, b[3] / h], label) for b, label in zip(found, labels)]
    return {"box_prior": trivial.fit_box_prior(objects),
            "image_sizes": [(float(r["width"]), float(r["height"])) for r in records]} if objects else {}


# ---- outputs -------------------------------------------------------------------------------

def _write_eval_samples(path: Path, ids: list, results: list[dict], per_sample: list[dict],
                        configured: list[dict]) -> None:
    rows = []
    for sid, r, scores in zip(ids, results, per_sample):
        row = {"id": sid, **metrics.sample_fields(r, configured)}
        row.update({k: v for k, v in scores.items() if k != "loss"})
        rows.append(row)
    write_eval_samples(path, rows)


def _write_infer_samples(call: _Caller, root: Path, drawn: list, records: list[dict], results: list[dict],
                         per_sample: list[dict], ids: list, prepdata: str, *, script: Path, meta: dict) -> None:
    root.mkdir(parents=True)
    position = {sid: n for n, sid in enumerate(ids)}
    for index, sid in enumerate(drawn, start=1):
        n = position[sid]
        sample = root / f"{index:04d}"
        sample.mkdir()
        call("write_sample", records[n], results[n], sample, prepdata)
        names = [p.name for p in sample.iterdir()]
        for stem in ("input", "output"):
            if not any(name.startswith(stem + ".") for name in names):
                raise MlloopError(f"{script.name}: write_sample() wrote no {stem}.* for sample {sid!r}; "
                                  "it must write input.*, output.* and optionally gt.*.")
        write_sample_meta(sample, {
            "sample_id": sid, "index": index, **meta,
            "prediction": results[n]["prediction"], "target": results[n]["target"],
            "scores": {"loss": results[n].get("loss"), **per_sample[n]}})


def _replace_outputs(project: Project, folder: Path, staging: Path, vid: str) -> str | None:
    """Move earlier evaluation outputs to .trash/, then the staged ones into place."""
    existing = [name for name in EVAL_ARTIFACTS if (folder / name).exists() or (folder / name).is_symlink()]
    aside = None
    if existing:
        aside = project.trash_root / f"{vid}-eval-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
        aside.mkdir(parents=True)
        for name in existing:
            os.replace(folder / name, aside / name)
    for name in (INFER_SAMPLES, EVAL_SAMPLES, TRIVIAL_BASELINES, EVAL_SCORE):
        os.replace(staging / name, folder / name)
    staging.rmdir()
    return project.rel(aside) if aside else None
