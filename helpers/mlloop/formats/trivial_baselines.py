"""trivial_baselines.json (docs/contracts.md, "trivial_baselines.json"): what trivial predictors
(majority class, mean, ...) score on the same validation split, and the ``floor`` a version must
beat. 03_eval.py writes it beside eval_score.json; ``read_floor`` is the one parser of the floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import Findings
from ..jsonio import JsonProblems, read_json, write_json_atomic
from ..layout import TRIVIAL_BASELINES, Project
from .eval_score import finite_number

FLOOR, FLOOR_FIELDS = "floor", ("metric", "value", "predictor", "higher_is_better")


@dataclass(frozen=True)
class Floor:
    metric: str
    value: float
    predictor: str
    higher_is_better: bool

    def beaten_by(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value > self.value if self.higher_is_better else value < self.value


def read_floor(project: Project, vid: str, findings: Findings | None = None) -> Floor | None:
    """The trivial-baseline floor recorded beside a version's eval_score.json, if any."""
    path = project.trivial_baselines_path(vid)
    if not path.exists():
        return None
    rel = project.rel(path)
    try:
        doc = read_json(path, rel)
    except JsonProblems as exc:
        if findings is not None:
            findings.problems.extend(exc.problems)
        return None
    floor = doc.get("floor") if isinstance(doc, dict) else None
    if not isinstance(floor, dict):
        if findings is not None:
            findings.problem("floor.invalid", rel, "trivial_baselines.json needs a floor object {metric, value, predictor, higher_is_better}", "$.floor")
        return None
    if not (isinstance(floor.get("metric"), str) and finite_number(floor.get("value"))
            and isinstance(floor.get("higher_is_better"), bool)):
        if findings is not None:
            findings.problem("floor.invalid", rel, "floor needs metric (string), value (finite number) and higher_is_better (bool)", "$.floor")
        return None
    return Floor(floor["metric"], float(floor["value"]), str(floor.get("predictor", "")), floor["higher_is_better"])


def write_trivial_baselines(folder: Path, doc: dict) -> None:
    write_json_atomic(Path(folder) / TRIVIAL_BASELINES, doc)
