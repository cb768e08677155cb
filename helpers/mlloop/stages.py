"""What each step leaves on disk, and how far a version has got (docs/contracts.md, "Steps").

The loop's state is never stored separately: it is read off the files, so it survives an
interrupted session or a compacted context. A version's stage is the furthest step with *any*
artifact; everything before it is then required.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .formats.spec import dataset_id_of, read_spec_quiet
from .jsonio import JsonProblems, read_json
from .layout import BASELINE, EVAL_OUTPUTS, TRAIN_ARTIFACTS, Project

AUTHORED, TRAINED, EVALUATED, ANALYSED, ACTION = "authored", "trained", "evaluated", "analysed", "action"
STAGES = (AUTHORED, TRAINED, EVALUATED, ANALYSED, ACTION)
STEP_OF_STAGE = {AUTHORED: 0, TRAINED: 1, EVALUATED: 2, ANALYSED: 3, ACTION: 4}

# Files (or folders) whose presence claims a step, relative to Models/Artifacts/<vid>/: layout's
# TRAIN_ARTIFACTS, and EVAL_ARTIFACTS (what 03_eval.py writes).
EVAL_ARTIFACTS = EVAL_OUTPUTS
ANALYSIS_DOC = "result-analysis.md"
ACTION_DOC = "action-extract.md"
SMOKE_REPORT = "_tests/baseline_smoke_test_report.md"
RETRY_REPORT = "_tests/train_retry_report.md"


@dataclass(frozen=True)
class VersionStage:
    vid: str
    stage: str | None          # None: neither a script nor any artifact
    has_script: bool
    present: frozenset[str]    # which claim-files exist

    @property
    def step(self) -> int | None:
        return STEP_OF_STAGE.get(self.stage) if self.stage else None

    def reached(self, stage: str) -> bool:
        return self.stage is not None and STAGES.index(self.stage) >= STAGES.index(stage)


def version_stage(project: Project, vid: str) -> VersionStage:
    folder = project.artifact_dir(vid)
    present = set()
    for name in TRAIN_ARTIFACTS + EVAL_ARTIFACTS + (ANALYSIS_DOC, ACTION_DOC):
        if (folder / name).exists() or (folder / name).is_symlink():
            present.add(name)
    has_script = project.script(vid).is_file()
    if ACTION_DOC in present:
        stage = ACTION
    elif ANALYSIS_DOC in present:
        stage = ANALYSED
    elif present & set(EVAL_ARTIFACTS):
        stage = EVALUATED
    elif present & set(TRAIN_ARTIFACTS):
        stage = TRAINED
    elif has_script or folder.is_dir():
        stage = AUTHORED
    else:
        stage = None
    return VersionStage(vid, stage, has_script, frozenset(present))


def read_json_quiet(path: Path):
    """A JSON file's content, or None when it is absent or broken (the checks report why)."""
    try:
        return read_json(path)
    except JsonProblems:
        return None


def locked_dataset_id(project: Project, rules_dataset_id: str | None) -> tuple[str | None, str]:
    """The loop's dataset_id and where it came from.

    The seed's priority: the id handed over by a completed build-baseline (recorded in the
    baseline's spec.json), else the rules. Once the loop has started it never changes; a rules
    file that later disagrees is a problem reported by the checks.
    """
    locked = dataset_id_of(read_spec_quiet(project.spec_path(BASELINE)))
    if locked:
        return locked, project.rel(project.spec_path(BASELINE))
    if rules_dataset_id:
        return rules_dataset_id, "rules"
    return None, "unset"
