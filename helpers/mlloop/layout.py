"""Where everything lives in a user's project (docs/contracts.md, "Layout"), and the safe ways to touch it.

One seam for paths: every other module asks ``Project`` rather than joining strings, so the
layout is written down once. Version ids are ``v{n:03d}`` (``v1000`` after ``v999``).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .errors import MlloopError

BUILD_BASELINE = "build-baseline"
PROGRESSIVE_TRAINING = "progressive-training"
SKILLS = (BUILD_BASELINE, PROGRESSIVE_TRAINING)

BASELINE = "baseline"
VERSION_RE = re.compile(r"^v(\d{3,})$")
SCRIPT_RE = re.compile(r"^02_train_v(\d{3,})\.py$")
# Names that look like an attempt at a version but are not one (v1, V001, v001.bak, "v001 ").
STRAY_VERSION_RE = re.compile(r"^\s*[vV]\d+.*$")

PIPELINE_SCRIPT = "01_data_pipeline.py"
BASELINE_SCRIPT = "02_train_baseline.py"
EVAL_SCRIPT = "03_eval.py"
REPORT_SCRIPT = "04_final_report.py"

# A version's files, in Models/Artifacts/<vid>/ (docs/contracts.md, "Layout"). Their content is
# owned by mlloop.formats (spec, eval_score, eval_samples, trivial_baselines, intervals).
BEST_CKPT, LAST_CKPT, SPEC, LOGS, ASSETS, TESTS = "best.ckpt", "last.ckpt", "spec.json", "logs", "additional_assets", "_tests"
TRAIN_ARTIFACTS = (BEST_CKPT, LAST_CKPT, SPEC, LOGS)
EVAL_SCORE, EVAL_SAMPLES, TRIVIAL_BASELINES = "eval_score.json", "eval_samples.jsonl", "trivial_baselines.json"
INFER_SAMPLES, SAMPLE_META = "infer_samples", "meta.json"     # infer_samples/<id>/meta.json
EVAL_FILES = (EVAL_SCORE, EVAL_SAMPLES, TRIVIAL_BASELINES)
EVAL_OUTPUTS = (EVAL_SCORE, INFER_SAMPLES, EVAL_SAMPLES, TRIVIAL_BASELINES)   # what 03_eval.py writes
INTERVALS = "intervals.json"           # a held-out test evaluation's bootstrap intervals
LEADERBOARD_CSV = "leaderboard.csv"    # in a final report's folder
PREPDATA_STATS = "stats.json"          # dataset/prepdata/<dataset_id>/stats.json
HOOK_STATE_FILE = ".mlloop-hook-state.json"     # in .claude/: the Stop hook's block counter per session


def version_id(n: int) -> str:
    if n < 1:
        raise ValueError(f"version numbers start at 1, got {n}")
    return f"v{n:03d}"


def version_number(vid: str) -> int | None:
    """The integer of a well-formed id (``v007`` → 7); None for anything else."""
    m = VERSION_RE.match(vid)
    if not m:
        return None
    n = int(m.group(1))
    # v0001 and v01000 are not canonical spellings of a version.
    return n if n >= 1 and version_id(n) == vid else None


def script_name(vid: str) -> str:
    return BASELINE_SCRIPT if vid == BASELINE else f"02_train_{vid}.py"


def version_of_script(path: str | os.PathLike) -> str:
    """The version a training script trains, from its own file name (never a constant inside)."""
    name = Path(path).name
    if name == BASELINE_SCRIPT:
        return BASELINE
    m = SCRIPT_RE.match(name)
    if m and version_number(f"v{m.group(1)}") is not None:
        return f"v{m.group(1)}"
    raise MlloopError(
        f"{name}: a training script must be named {BASELINE_SCRIPT} or 02_train_vNNN.py "
        "(its version is read from its file name); rename it.")


@dataclass(frozen=True)
class Project:
    """A user's project folder. Every path mlloop reads or writes is derived here."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> "Project":
        path = Path(root or ".").expanduser()
        if not path.exists():
            raise MlloopError(f"{path}: the project folder does not exist; pass --project DIR or create it.")
        if not path.is_dir():
            raise MlloopError(f"{path}: --project must be a folder, not a file.")
        return cls(path.resolve())

    # ---- display -------------------------------------------------------------------------
    def rel(self, path: str | os.PathLike) -> str:
        """``path`` relative to the project, in forward slashes (how problems name files)."""
        p = Path(path)
        try:
            return p.relative_to(self.root).as_posix() if p.is_absolute() else p.as_posix()
        except ValueError:
            return p.as_posix()

    # ---- skills and rules ----------------------------------------------------------------
    @property
    def claude_dir(self) -> Path:
        return self.root / ".claude"

    @property
    def skills_dir(self) -> Path:
        return self.claude_dir / "skills"

    def skill_dir(self, skill: str) -> Path:
        return self.skills_dir / skill

    def rules_path(self, skill: str) -> Path:
        return self.skill_dir(skill) / "user_defined_rules.json"

    def instruction_path(self, skill: str) -> Path:
        return self.skill_dir(skill) / "user_instruction.md"

    @property
    def task_format_path(self) -> Path:
        return self.skill_dir(BUILD_BASELINE) / "task_format.yaml"

    @property
    def settings_path(self) -> Path:
        return self.claude_dir / "settings.json"

    # ---- data ----------------------------------------------------------------------------
    @property
    def rawdata(self) -> Path:
        return self.root / "dataset" / "rawdata"

    @property
    def profiling_md(self) -> Path:
        return self.rawdata / "profiling.md"

    @property
    def prepdata_root(self) -> Path:
        return self.root / "dataset" / "prepdata"

    def prepdata(self, dataset_id: str) -> Path:
        return self.prepdata_root / dataset_id

    def prepdata_stats(self, dataset_id: str) -> Path:
        return self.prepdata(dataset_id) / PREPDATA_STATS

    # ---- scripts -------------------------------------------------------------------------
    def script(self, vid: str) -> Path:
        return self.root / script_name(vid)

    @property
    def pipeline_script(self) -> Path:
        return self.root / PIPELINE_SCRIPT

    @property
    def eval_script(self) -> Path:
        return self.root / EVAL_SCRIPT

    @property
    def report_script(self) -> Path:
        return self.root / REPORT_SCRIPT

    # ---- models --------------------------------------------------------------------------
    @property
    def models(self) -> Path:
        return self.root / "Models"

    @property
    def artifacts_root(self) -> Path:
        return self.models / "Artifacts"

    def artifact_dir(self, vid: str) -> Path:
        return self.artifacts_root / vid

    def spec_path(self, vid: str) -> Path:
        return self.artifact_dir(vid) / SPEC

    def eval_score_path(self, vid: str) -> Path:
        return self.artifact_dir(vid) / EVAL_SCORE

    def eval_samples_path(self, vid: str) -> Path:
        return self.artifact_dir(vid) / EVAL_SAMPLES

    def trivial_baselines_path(self, vid: str) -> Path:
        return self.artifact_dir(vid) / TRIVIAL_BASELINES

    @property
    def external_root(self) -> Path:
        return self.models / "external"

    @property
    def report_root(self) -> Path:
        return self.models / "Report"

    @property
    def trash_root(self) -> Path:
        """Where "reset" moves things: nothing mlloop replaces is ever deleted."""
        return self.artifacts_root / ".trash"

    @property
    def lock_path(self) -> Path:
        return self.models / ".mlloop.lock"

    # ---- versions ------------------------------------------------------------------------
    def version_scripts(self) -> list[tuple[int, Path]]:
        """``(n, path)`` for every well-formed ``02_train_vNNN.py``, in version order."""
        found = []
        for entry in self._listdir(self.root):
            m = SCRIPT_RE.match(entry.name)
            if m and entry.is_file():
                n = version_number(f"v{m.group(1)}")
                if n is not None:
                    found.append((n, entry))
        return sorted(found)

    def version_dirs(self) -> list[tuple[int, Path]]:
        """``(n, path)`` for every well-formed ``Models/Artifacts/vNNN/`` folder."""
        found = []
        for entry in self._listdir(self.artifacts_root):
            n = version_number(entry.name)
            if n is not None and entry.is_dir():
                found.append((n, entry))
        return sorted(found)

    def versions(self) -> list[str]:
        """Every version id that has a script or an artifact folder, in order."""
        numbers = {n for n, _ in self.version_scripts()} | {n for n, _ in self.version_dirs()}
        return [version_id(n) for n in sorted(numbers)]

    def cur(self) -> int | None:
        """``cur`` as the seed defines it: the largest existing ``02_train_vNNN.py``."""
        scripts = self.version_scripts()
        return scripts[-1][0] if scripts else None

    def stray_version_names(self) -> list[Path]:
        """Scripts and folders that look like versions but are misnamed (``v1``, ``V001``…)."""
        strays = []
        for entry in self._listdir(self.artifacts_root):
            if entry.name.startswith("."):
                continue
            if version_number(entry.name) is None and entry.name != BASELINE and STRAY_VERSION_RE.match(entry.name):
                strays.append(entry)
        for entry in self._listdir(self.root):
            name = entry.name
            if name.startswith("02_train_") and name.endswith(".py") and name != BASELINE_SCRIPT:
                m = SCRIPT_RE.match(name)
                if not m or version_number(f"v{m.group(1)}") is None:
                    strays.append(entry)
        return sorted(strays)

    def external_models(self) -> list[Path]:
        return sorted(p for p in self._listdir(self.external_root) if p.is_dir() and not p.name.startswith("."))

    def reports(self) -> list[Path]:
        return sorted(p for p in self._listdir(self.report_root) if p.is_dir() and not p.name.startswith("."))

    @staticmethod
    def _listdir(path: Path) -> list[Path]:
        try:
            return list(path.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []


def valid_index_file(prepdata: Path) -> Path | None:
    """The validation index a score was computed on: ``valid/valid.jsonl``, else ``valid.parquet``
    (the order in which the runtime's ``read_index`` looks)."""
    for name in ("valid.jsonl", "valid.parquet"):
        path = Path(prepdata) / "valid" / name
        if path.is_file():
            return path
    return None


# ---- containment -------------------------------------------------------------------------

def is_inside(root: Path, path: Path) -> bool:
    """True when ``path`` (symlinks resolved) stays inside ``root``."""
    try:
        real = Path(os.path.realpath(path))
        base = Path(os.path.realpath(root))
    except (OSError, ValueError):
        return False
    return real == base or base in real.parents


def resolve_inside(root: Path, relpath: str) -> Path | None:
    """``root / relpath`` if it is a plain relative path that resolves inside ``root``.

    Absolute paths, drive letters, URLs, NUL bytes and anything that escapes (through ``..``
    or a symlink) give None.
    """
    if not isinstance(relpath, str) or not relpath or "\x00" in relpath:
        return None
    if relpath.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relpath) or "://" in relpath:
        return None
    candidate = root / relpath.replace("\\", "/")
    return candidate if is_inside(root, candidate) else None


def free_backup_path(path: Path) -> Path:
    """Where to keep the user's old copy of ``path``: ``name.bak``, then ``name.bak.1``, ``.bak.2``…
    (an existing backup is never overwritten)."""
    candidate, n = path.with_name(path.name + ".bak"), 1
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.name}.bak.{n}")
        n += 1
    return candidate


# ---- resetting a failed version ----------------------------------------------------------

def reset_version_dir(project: Project, vid: str) -> Path | None:
    """Move a failed version's artifact folder aside and start it afresh.

    The seed says "delete then recreate"; we move to ``Models/Artifacts/.trash/`` instead, keep
    the ``_tests/`` retry history in the new folder, and refuse outright for a version that
    was already evaluated. Returns where the old folder went (None if there was none).
    """
    target = project.artifact_dir(vid)
    if not target.exists():
        target.mkdir(parents=True)
        return None
    if (target / EVAL_SCORE).exists():
        raise MlloopError(
            f"{project.rel(target)}: this version was already evaluated and is never reset; "
            "author a new version with `mlloop new-version` instead.")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    aside = project.trash_root / f"{vid}-{stamp}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.replace(target, aside)
    target.mkdir(parents=True)
    if (aside / TESTS).is_dir():
        shutil.copytree(aside / TESTS, target / TESTS)
    return aside
