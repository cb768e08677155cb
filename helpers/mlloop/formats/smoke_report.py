"""``Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md`` (build-baseline Step 2):
machine-read ``- key: value`` lines at the top, then one section per part of the smoke test and
the retry history. The runtime writes it; the check and the runtime's batch-size reader read it."""

from __future__ import annotations

import re

from .. import markdown as md
from . import Gap, retry_report
from .sections import matches

RESULT = "overall_result"
PART_RESULTS = ("contract_result", "probe_result")
BATCH_SIZE = "optimal_batch_size"
DATASET_ID = "dataset_id"
SECTIONS = ("Model contract", "Learnability probe", "Batch-size search", "Smoke run")
RETRY_HISTORY = "Retry history"


def fields(text: str) -> dict[str, str]:
    return md.bullets(text)


def optimal_batch_size(text: str) -> int | None:
    value = fields(text).get(BATCH_SIZE, "").strip()
    return int(value) if re.fullmatch(r"[1-9][0-9]*", value) else None


def history(text: str) -> str | None:
    """The body of the ``Retry history`` section (None when there is none)."""
    found = [s for s in md.sections(text) if matches(s.title, RETRY_HISTORY)]
    return found[0].body if found else None


def gaps(text: str, dataset_id: str | None) -> list[Gap]:
    """What keeps the report from saying PASS for the loop's ``dataset_id``."""
    values = fields(text)
    out = []
    result = values.get(RESULT)
    if result is None:
        out.append(Gap("smoke.result", f"no '- {RESULT}: PASS|FAIL' line"))
    elif result.strip().upper().startswith("FAIL"):
        out.append(Gap("smoke.failed", f"the smoke test FAILED ({RESULT}: FAIL); fix 02_train_baseline.py and re-run it"))
    elif result.strip().upper() != "PASS":
        out.append(Gap("smoke.result", f"{RESULT} is {result!r}; expected PASS or FAIL"))
    else:
        for part in PART_RESULTS:
            if values.get(part, "PASS").strip().upper().startswith("FAIL"):
                out.append(Gap("smoke.inconsistent", f"{RESULT} is PASS but {part} is FAIL; PASS needs every part to pass"))
        if optimal_batch_size(text) is None:
            out.append(Gap("smoke.result", f"{BATCH_SIZE} must be a positive integer, found {values.get(BATCH_SIZE)!r}"))
    did = values.get(DATASET_ID)
    if did is not None and dataset_id and did.strip().strip("`") != dataset_id:
        out.append(Gap("smoke.dataset_id", f"the smoke test ran on {DATASET_ID} {did!r}, not the loop's {dataset_id!r}"))
    secs = md.sections(text)
    out += [Gap("smoke.section", f"the section {name!r} is missing")
            for name in SECTIONS if not any(matches(s.title, name) for s in secs)]
    body = history(text)
    if body is not None:
        out += retry_report.parse(body)[1]
    return out
