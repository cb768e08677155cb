"""intervals.json of a held-out test evaluation (docs/contracts.md, "leaderboard.csv and the
report"): ``{"version_id", "split": "test", "num_samples", "intervals": {metric: {"value", "low",
"high", ...}}}`` beside that evaluation's eval_score.json in ``Models/Report/<stamp>/test/<vid>/``.
Written by ``mlloop.runtime.heldout``, read by the report (``mlloop.heldout``) through this module.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Findings
from ..jsonio import to_jsonable, write_json_atomic
from ..layout import INTERVALS


def write_intervals(folder: Path, vid: str, num_samples: int, intervals: dict) -> dict:
    doc = to_jsonable({"version_id": vid, "split": "test", "num_samples": num_samples, "intervals": intervals})
    write_json_atomic(Path(folder) / INTERVALS, doc)
    return doc


def parse_intervals(doc, rel: str, findings: Findings) -> dict[str, dict]:
    """``{metric: {"value", "low", "high", ...}}``; every entry that is not an object is a problem."""
    entries = doc.get("intervals") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        findings.problem("report.intervals", rel, "intervals.json must be an object with an \"intervals\" object",
                         "$.intervals")
        return {}
    out = {}
    for name, entry in entries.items():
        if isinstance(entry, dict):
            out[name] = dict(entry)
        else:
            findings.problem("report.intervals", rel, f"the interval of {name!r} must be an object {{value, low, high}}",
                             f"$.intervals.{name}")
    return out
