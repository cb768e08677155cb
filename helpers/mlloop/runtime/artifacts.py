"""Where a training script writes, and getting that folder ready.

A script's version comes from its own file name (``mlloop.layout.version_of_script``), so a
baseline copied to ``02_train_v001.py`` writes into ``Models/Artifacts/v001/``, never into the
baseline's folder. Only rank 0 prepares folders or writes files.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MlloopError
from ..formats import change_summary
from ..jsonio import JsonProblems, parse_json_text, to_jsonable, write_json_atomic, write_text_atomic
from ..layout import (ASSETS, BASELINE, BEST_CKPT, EVAL_SCORE, LAST_CKPT, LOGS, SPEC, TESTS, Project,
                      reset_version_dir, version_of_script)
from ..stages import RETRY_REPORT, SMOKE_REPORT

VERSION_SMOKE_REPORT = "_tests/smoke_test_report.md"  # a vNNN script run with --SMOKE=True


@dataclass(frozen=True)
class VersionPaths:
    """Every path one training run reads or writes."""

    project: Project
    vid: str
    script: Path

    @property
    def dir(self) -> Path:
        return self.project.artifact_dir(self.vid)

    @property
    def best(self) -> Path:
        return self.dir / BEST_CKPT

    @property
    def last(self) -> Path:
        return self.dir / LAST_CKPT

    @property
    def spec(self) -> Path:
        return self.dir / SPEC

    @property
    def assets(self) -> Path:
        return self.dir / ASSETS

    @property
    def logs(self) -> Path:
        return self.dir / LOGS

    @property
    def tests(self) -> Path:
        return self.dir / TESTS

    def smoke_report(self) -> Path:
        return self.dir / (SMOKE_REPORT if self.vid == BASELINE else VERSION_SMOKE_REPORT)

    @property
    def retry_report(self) -> Path:
        return self.dir / RETRY_REPORT

    @property
    def baseline_smoke_report(self) -> Path:
        return self.project.artifact_dir(BASELINE) / SMOKE_REPORT

    def prepdata(self, dataset_id: str) -> Path:
        return self.project.prepdata(dataset_id)


def paths_for_script(script_file: str | os.PathLike, project_root: str | os.PathLike | None = None) -> VersionPaths:
    """Paths for the script at ``script_file`` (pass ``__file__``). The project is the script's
    folder (scripts live in the project root and run from there) unless ``project_root`` is given."""
    script = Path(script_file).resolve()
    vid = version_of_script(script)
    root = Path(project_root).resolve() if project_root is not None else script.parent
    return VersionPaths(Project(root), vid, script)


def global_rank() -> int:
    """This process's rank before a Trainer exists (launchers set RANK, or NODE_RANK + LOCAL_RANK)."""
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    local = int(os.environ["LOCAL_RANK"]) if os.environ.get("LOCAL_RANK", "").isdigit() else 0
    node = int(os.environ["NODE_RANK"]) if os.environ.get("NODE_RANK", "").isdigit() else 0
    return local if node == 0 else max(1, local + node)  # any process on another node is not rank 0


def is_rank_zero() -> bool:
    return global_rank() == 0


def prepare_version_dir(paths: VersionPaths) -> Path | None:
    """Make the version folder ready for a fresh training run (rank 0 only).

    An evaluated version is refused. A folder holding anything besides ``_tests/`` (a previous or
    failed run) is moved to ``Models/Artifacts/.trash/`` with ``_tests/`` kept in the fresh folder
    (``mlloop.layout.reset_version_dir``). Returns where the old folder went, or None.
    """
    folder = paths.dir
    if (folder / EVAL_SCORE).exists():
        raise MlloopError(
            f"{paths.project.rel(folder)}: this version was already evaluated and is never retrained in place; "
            "author a new version with `mlloop new-version` instead.")
    if folder.is_dir() and any(p.name != TESTS for p in folder.iterdir()):
        return reset_version_dir(paths.project, paths.vid)
    folder.mkdir(parents=True, exist_ok=True)
    return None


def save_asset(paths: VersionPaths, name: str, content: Any) -> Path:
    """Write ``additional_assets/<name>``: JSON for dicts/lists, text for str, bytes as is."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise MlloopError(f"{name!r}: an asset name is a plain file name inside additional_assets/.")
    target = paths.assets / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (dict, list)):
        write_json_atomic(target, to_jsonable(content))
    elif isinstance(content, bytes):
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, target)
    else:
        write_text_atomic(target, str(content))
    return target


def assets_listing(paths: VersionPaths) -> list[str] | str:
    """The names in ``additional_assets/`` for spec.json, or ``"not_required"`` when there are none."""
    if not paths.assets.is_dir():
        return "not_required"
    names = sorted(p.name for p in paths.assets.iterdir() if p.is_file())
    return names or "not_required"


def parent_of(paths: VersionPaths) -> str | None:
    """The parent named in the script's change-summary header; None for the baseline."""
    if paths.vid == BASELINE:
        return None
    return change_summary.read_fields(paths.script).get("parent") or None


# The splits this process read through read_index: training writes them into spec.json and the
# evaluation into eval_score.json, so `mlloop check` can show that the held-out test split was
# never touched. Reading it at all needs held_out_access() (only `mlloop report` opens it).
HELD_OUT = "test"
_SPLITS_READ: set[str] = set()
_HELD_OUT_OPEN = False


def splits_read() -> list[str]:
    """The split names read so far in this process (since the last forget_splits_read()), sorted."""
    return sorted(_SPLITS_READ)


def forget_splits_read() -> None:
    """A new run or evaluation starts: what an earlier one in this process read is not its own
    (tests, notebooks and the report run several in one process)."""
    _SPLITS_READ.clear()


@contextmanager
def held_out_access():
    """Let read_index open the held-out test split inside this block (the report's evaluation)."""
    global _HELD_OUT_OPEN
    before, _HELD_OUT_OPEN = _HELD_OUT_OPEN, True
    try:
        yield
    finally:
        _HELD_OUT_OPEN = before


def read_index(prepdata_dir: str | os.PathLike, split: str) -> list[dict]:
    """The index records of ``<prepdata>/<split>/<split>.jsonl`` (or ``.parquet``), strict JSON."""
    if split == HELD_OUT and not _HELD_OUT_OPEN:
        raise MlloopError("the test split is held out: training, the smoke test and per-version evaluation never "
                          "read it (only `mlloop report` does, once, for the top 3); use train and valid.")
    _SPLITS_READ.add(str(split))
    folder = Path(prepdata_dir) / split
    jsonl, parquet = folder / f"{split}.jsonl", folder / f"{split}.parquet"
    if jsonl.is_file():
        rows = []
        for n, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(parse_json_text(line, f"{jsonl.name} line {n}"))
            except JsonProblems as exc:
                raise MlloopError(f"{exc.problems[0].line()}; rerun 01_data_pipeline.py.") from None
        return rows
    if parquet.is_file():
        import pyarrow.parquet as pq

        return pq.read_table(parquet).to_pylist()
    raise MlloopError(f"{folder}: no {split}.jsonl or {split}.parquet; run 01_data_pipeline.py first.")
