"""``dataset/prepdata/<dataset_id>/_tests/pipeline_test_report.md`` (build-baseline Step 1): the
pipeline's own tests, ``- overall_result: PASS|FAIL`` first. The runtime writes it; the check reads it."""

from __future__ import annotations

from .. import markdown as md
from . import Gap

TITLE = "Pipeline test report"
RESULT = "overall_result"
CHECKS = "Checks"


def gaps(text: str) -> list[Gap]:
    if md.bullets(text).get(RESULT, "").strip().upper().startswith("FAIL"):
        return [Gap("prepdata.pipeline_failed", "the pipeline test report says FAIL; fix 01_data_pipeline.py and re-run it")]
    return []


def render_head(passed: bool, title: str = TITLE) -> list[str]:
    return [f"# {title}", f"- {RESULT}: {'PASS' if passed else 'FAIL'}", "", f"## {CHECKS}"]
