"""The retry history (docs/contracts.md, "Retry reports"): one ``Attempt N`` section per run of a
training script, each with five ``- key: value`` lines. It is its own file
(``_tests/train_retry_report.md``) for a version and the ``Retry history`` section of the baseline
smoke report; the runtime appends and closes attempts, the check reads them, both through here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import markdown as md
from . import Gap
from .sections import key

FIELDS = ("attempt", "error_summary", "root_cause_hypothesis", "code_change_summary", "status")
TITLE = "Attempt {n}"
NUMBER_RE = re.compile(r"^attempt\s+(\d+)\s*$", re.IGNORECASE)
STATUS_RE = re.compile(r"^(PASS|FAIL)\b", re.IGNORECASE)


@dataclass
class AttemptRecord:
    title: str
    number: int | None   # None: a heading like "Attempt two"
    level: int
    line: int            # 1-based line of its heading in the parsed text
    fields: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> tuple[list[AttemptRecord], list[Gap]]:
    """The attempts (sections whose title starts with "Attempt"), and what each lacks."""
    records, gaps = [], []
    for sec in md.sections(text or ""):
        if not key(sec.title).startswith("attempt"):
            continue
        m = NUMBER_RE.match(re.sub(r"[*_`]", "", sec.title).strip())
        fields = md.bullets(sec.body)
        records.append(AttemptRecord(sec.title, int(m.group(1)) if m else None, sec.level, sec.line, fields))
        for name in FIELDS:
            if name not in fields or md.is_placeholder(fields[name]):
                gaps.append(Gap("retry.field", f"'{sec.title}' has no {name} (each attempt records "
                                               f"{', '.join(FIELDS)})"))
        status = fields.get("status", "")
        if status and not STATUS_RE.match(status.strip()):
            gaps.append(Gap("retry.field", f"'{sec.title}' status is {status!r}; expected PASS or FAIL"))
    return records, gaps


def render_attempt(number: int, values: dict[str, str], level: int = 2) -> str:
    lines = [f"{'#' * level} {TITLE.format(n=number)}"]
    lines += [f"- {name}: {' '.join(str(values.get(name, '')).split()) or 'none'}" for name in FIELDS]
    return "\n".join(lines) + "\n"
