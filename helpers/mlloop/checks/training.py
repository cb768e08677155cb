"""Training outputs (Step 1, and the baseline's smoke run): checkpoints, spec.json, assets, logs."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from ..ckpt import inspect_checkpoint
from ..layout import BASELINE
from .context import Context
from .prepdata import path_problem

CHECKPOINTS = ("best.ckpt", "last.ckpt")


def _rerun(vid: str) -> str:
    return f"re-run python {'02_train_baseline.py' if vid == BASELINE else f'02_train_{vid}.py'}"


def check_training_outputs(ctx: Context, vid: str) -> dict | None:
    """Every training artifact of ``vid``; returns spec.json's content when it is usable."""
    folder = ctx.project.artifact_dir(vid)
    for name in CHECKPOINTS:
        check_checkpoint(ctx, folder / name, vid)
    spec = check_spec(ctx, vid, folder)
    _check_logs(ctx, folder, vid)
    return spec


def check_checkpoint(ctx: Context, path: Path, vid: str) -> bool:
    """True when ``path`` is a sound checkpoint file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        ctx.problem("train.missing", path, f"{path.name} is missing; training writes best.ckpt, last.ckpt, spec.json "
                    f"and logs together ({_rerun(vid)})")
        return False
    except OSError as exc:
        ctx.problem("train.unreadable", path, f"cannot read it: {exc.strerror}")
        return False
    if stat.S_ISLNK(st.st_mode):
        if ctx.safe(path):
            ctx.problem("train.ckpt_link", path,
                        f"{path.name} is a symbolic link; checkpoints must be real files (ModelCheckpoint save_last=True, not \"link\")")
        return False
    if not ctx.dir_ok(path.parent):
        return False
    if not stat.S_ISREG(st.st_mode):
        ctx.problem("train.not_a_file", path, f"{path.name} must be a file")
        return False
    found = inspect_checkpoint(path)
    for p in found:
        ctx.problem(p.code, path, p.message)
    return not found


def check_spec(ctx: Context, vid: str, folder: Path) -> dict | None:
    path = folder / "spec.json"
    if not ctx.exists(path):
        ctx.problem("train.missing", path, f"spec.json is missing; it records how to reproduce this run ({_rerun(vid)})")
        return None
    ok, spec = ctx.read_json(path)
    if not ok:
        return None
    if not isinstance(spec, dict):
        kind = "a list" if isinstance(spec, list) else type(spec).__name__
        ctx.problem("spec.not_object", path, f"spec.json must be one JSON object, found {kind}", "$")
        return None
    for key in ("version_id", "dataset_id", "seed", "task_type", "best_checkpoint", "additional_assets"):
        if key not in spec:
            ctx.problem("spec.missing_field", path, f"required field {key!r} is missing", "$")
    if "version_id" in spec and spec["version_id"] != vid:
        ctx.problem("spec.version_id", path, f"version_id is {spec['version_id']!r} but the folder is {vid}; "
                    "a script takes its version from its own file name", "$.version_id")
    if "dataset_id" in spec and ctx.dataset_id and spec["dataset_id"] != ctx.dataset_id:
        ctx.problem("spec.dataset_id", path, f"dataset_id is {json.dumps(spec['dataset_id'])} but the loop's dataset_id is "
                    f"{ctx.dataset_id!r}", "$.dataset_id")
    seed = spec.get("seed")
    if "seed" in spec and not (isinstance(seed, int) and not isinstance(seed, bool)):
        ctx.problem("spec.field", path, f"seed must be an integer, found {json.dumps(seed)}", "$.seed")
    task = spec.get("task_type")
    if "task_type" in spec:
        if not isinstance(task, str) or not task:
            ctx.problem("spec.field", path, "task_type must be a task type name", "$.task_type")
        elif ctx.task_format and task not in ctx.task_format.names:
            ctx.problem("spec.field", path, f"task_type {task!r} is not in task_format.yaml", "$.task_type")
    best = spec.get("best_checkpoint")
    if "best_checkpoint" in spec:
        if not isinstance(best, dict):
            ctx.problem("spec.field", path, "best_checkpoint must be an object {monitor, mode, ...}", "$.best_checkpoint")
        else:
            if not (isinstance(best.get("monitor"), str) and best["monitor"]):
                ctx.problem("spec.field", path, "best_checkpoint.monitor must name the metric that chose best.ckpt",
                            "$.best_checkpoint.monitor")
            if best.get("mode") not in ("min", "max"):
                ctx.problem("spec.field", path, f"best_checkpoint.mode must be \"min\" or \"max\", found {json.dumps(best.get('mode'))}",
                            "$.best_checkpoint.mode")
    script = ctx.project.script(vid)
    recorded = spec.get("script_sha256")
    if isinstance(recorded, str) and ctx.safe(script) and script.is_file() and ctx.sha256(script) != recorded:
        ctx.problem("spec.script_changed", script, f"{script.name} changed after training (spec.json records the sha256 of "
                    f"another file): best.ckpt was not made by this script; restore it or retrain ({_rerun(vid)})")
    if vid == BASELINE and spec.get("parent") is not None:
        ctx.problem("spec.parent", path, "the baseline has no parent; parent must be null", "$.parent")
    if "additional_assets" in spec:
        _check_assets(ctx, folder, spec["additional_assets"], path)
    steps = spec.get("steps")
    if isinstance(steps, dict) and steps.get("too_few") is True:
        detail = steps.get("warning") if isinstance(steps.get("warning"), str) and steps.get("warning") else (
            f"{steps.get('total')} optimizer steps in total ({steps.get('per_epoch')} per epoch)")
        ctx.warn("train.too_few_steps", path, f"too few optimizer steps: {detail}", "$.steps")
    return spec


def _check_assets(ctx: Context, folder: Path, assets, spec_path: Path) -> None:
    where = folder / "additional_assets"
    if assets == "not_required":
        return
    if not isinstance(assets, list) or not all(isinstance(a, str) for a in assets):
        ctx.problem("spec.assets", spec_path, "additional_assets must be \"not_required\" or a list of file names in "
                    "additional_assets/", "$.additional_assets")
        return
    if not assets:
        ctx.problem("spec.assets", spec_path, "additional_assets is an empty list; write \"not_required\" when the task "
                    "needs no pre/post-processing assets", "$.additional_assets")
        return
    if not ctx.exists(where):
        ctx.problem("spec.assets", where, "spec.json lists additional assets but the additional_assets/ folder is missing")
        return
    if not ctx.dir_ok(where):
        return
    for i, name in enumerate(assets):
        reason = path_problem(name)
        if reason:
            ctx.problem("spec.assets", spec_path, reason, f"$.additional_assets[{i}]")
        elif not ctx.exists(where / name):
            ctx.problem("spec.assets", where / name, f"listed in spec.json additional_assets but missing from additional_assets/")


def _check_logs(ctx: Context, folder: Path, vid: str) -> None:
    logs = folder / "logs"
    if not ctx.exists(logs) or not logs.is_dir():
        ctx.problem("train.missing", logs, f"logs/version_N/ (metrics.csv, hparams.yaml) is missing ({_rerun(vid)})")
        return
    if not ctx.dir_ok(logs):
        return
    runs = []
    for entry in os.scandir(logs):
        m = re.fullmatch(r"version_(\d+)", entry.name)
        if m and entry.is_dir(follow_symlinks=False):
            runs.append((int(m.group(1)), Path(entry.path)))
    if not runs:
        ctx.problem("train.logs", logs, "no logs/version_N/ folder; the CSV logger writes metrics.csv and hparams.yaml there")
        return
    latest = max(runs)[1]
    for name in ("metrics.csv", "hparams.yaml"):
        p = latest / name
        if not ctx.exists(p):
            ctx.problem("train.logs", p, f"{name} is missing from the latest log folder {latest.name}/")
        elif ctx.safe(p) and not p.is_file():
            ctx.problem("train.logs", p, f"{name} is not a regular file (a folder, pipe or device); the CSV logger writes a file")
        elif name == "metrics.csv" and ctx.safe(p) and p.is_file() and p.stat().st_size == 0:
            ctx.problem("train.logs", p, "metrics.csv is empty; no metric was logged")
