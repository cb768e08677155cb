"""Training outputs (Step 1, and the baseline's smoke run): checkpoints, spec.json, assets, logs."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..checkpoint_scan import inspect_checkpoint
from ..formats.spec import NO_ASSETS, parse_spec
from ..layout import ASSETS, BASELINE, BEST_CKPT, LAST_CKPT, SPEC
from .context import Context
from .prepdata import path_problem

CHECKPOINTS = (BEST_CKPT, LAST_CKPT)


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
    path = folder / SPEC
    if not ctx.exists(path):
        ctx.problem("train.missing", path, f"spec.json is missing; it records how to reproduce this run ({_rerun(vid)})")
        return None
    ok, doc = ctx.read_json(path)
    if not ok:
        return None
    spec = parse_spec(doc, ctx.rel(path), ctx.out, vid=vid, dataset_id=ctx.dataset_id,
                      task_names=ctx.task_format.names if ctx.task_format else None, baseline=vid == BASELINE)
    if spec is None:
        return None
    script = ctx.project.script(vid)
    recorded = spec.get("script_sha256")
    if isinstance(recorded, str) and ctx.safe(script) and script.is_file() and ctx.sha256(script) != recorded:
        ctx.problem("spec.script_changed", script, f"{script.name} changed after training (spec.json records the sha256 of "
                    f"another file): best.ckpt was not made by this script; restore it or retrain ({_rerun(vid)})")
    if "additional_assets" in spec:
        _check_assets(ctx, folder, spec["additional_assets"], path)
    return spec


def _check_assets(ctx: Context, folder: Path, assets, spec_path: Path) -> None:
    where = folder / ASSETS
    if assets == NO_ASSETS:
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
