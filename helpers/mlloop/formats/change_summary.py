"""The change-summary header at the top of a version script (docs/contracts.md, "Version
scripts"): ``# version:``, ``# parent:``, ``# action_source:``, ``# goal:``, ``# change:``,
``# where:`` between two marker lines, after an optional ``#!`` line and encoding declaration.

``mlloop new-version`` renders it; the checks, the analysis and the report read it through
``parse``, which reports a repeated field as a gap instead of silently keeping one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import markdown as md
from . import Gap

START = "# === mlloop change summary ==="
END = "# === end change summary ==="
KEYS = ("version", "parent", "action_source", "goal", "change", "where")
OPTIONAL_KEYS = ("parent_choice",)  # why `best` chose this parent, with the interval
DESCRIBED_KEYS = ("goal", "change", "where")  # the selected action, in words
MAX_LINES = 40  # the header's own length at most, so a stray marker far below is never read
CODING_RE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+")
FIELD_RE = re.compile(r"^#\s*([a-z_]+)\s*:\s*(.*?)\s*$")
BASELINE = "baseline"  # a parent of 'baseline' is Step 0's copy, which changes nothing


@dataclass
class ChangeSummary:
    fields: dict[str, str] | None      # None: no header at the top of the file
    gaps: list[Gap] = field(default_factory=list)
    span: tuple[int, int] | None = None  # line indexes of the two markers


def _preamble(lines: list[str]) -> int:
    """How many leading lines (a ``#!`` line, an encoding declaration) come before the header."""
    i = 0
    while i < min(2, len(lines)) and (lines[i].startswith("#!") or CODING_RE.match(lines[i])):
        i += 1
    return i


def parse(text: str) -> ChangeSummary:
    """The header's fields (first occurrence of each) and its gaps; the first field of a repeated
    key is the value, and the repetition is a gap."""
    lines = text.splitlines()
    i = _preamble(lines)
    absent = ChangeSummary(None, [Gap("script.header", f"no change-summary header at the top ('{START}' … '{END}'); "
                                                        "`mlloop new-version` writes it")])
    if i >= len(lines) or lines[i].strip() != START:
        return absent
    end = next((j for j in range(i + 1, min(len(lines), i + 1 + MAX_LINES)) if lines[j].strip() == END), None)
    if end is None:
        return absent
    fields: dict[str, str] = {}
    counts: dict[str, int] = {}
    for line in lines[i + 1:end]:
        m = FIELD_RE.match(line.strip())
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
            fields.setdefault(m.group(1), m.group(2))
    gaps = []
    from_baseline = fields.get("parent") == BASELINE
    for key in KEYS:
        if key not in fields:
            gaps.append(Gap("script.header", f"the change summary has no '# {key}:' line"))
        elif key in DESCRIBED_KEYS and not from_baseline and md.is_placeholder(fields[key]):
            gaps.append(Gap("script.header", f"the change summary's {key!r} is empty or placeholder text"))
    for key, n in counts.items():
        if n > 1:
            gaps.append(Gap("script.header", f"the change summary has {n} '# {key}:' lines; keep one "
                                             f"(the first, {fields[key]!r}, is the one read)"))
    return ChangeSummary(fields, gaps, (i, end))


def read_fields(path: Path) -> dict[str, str]:
    """A script's change-summary fields ({} when it has none or cannot be read)."""
    if not Path(path).is_file():  # a FIFO named like a script would block the open for ever
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            text = "".join(next(fh, "") for _ in range(MAX_LINES + 4))
    except (OSError, UnicodeDecodeError):
        return {}
    return parse(text).fields or {}


def one_line(text: str) -> str:
    return " ".join(str(text).split()) or "-"


def render(fields: dict[str, str]) -> str:
    keys = KEYS + tuple(key for key in OPTIONAL_KEYS if key in fields)
    lines = [START] + [f"# {key}: {one_line(fields.get(key, '-'))}" for key in keys] + [END]
    return "\n".join(lines) + "\n"


def replace(text: str, header: str) -> str:
    """``text`` with its change summary (if any, within its first lines) replaced by ``header``,
    placed after a ``#!`` line and an encoding declaration, which must stay first."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines[:60]) if ln.strip() == START), None)
    if start is not None:
        end = next((i for i in range(start, len(lines)) if lines[i].strip() == END), None)
        if end is not None:
            del lines[start:end + 1]
    keep = _preamble(lines)
    return "".join(lines[:keep]) + header + "".join(lines[keep:])


def code_body(text: str) -> list[str]:
    """The script without its change-summary header, blank lines and whole-line comments: what
    runs. Two scripts with equal bodies train the same way whatever their headers say."""
    lines = text.splitlines()
    span = parse(text).span
    if span is not None:
        lines = lines[:span[0]] + lines[span[1] + 1:]
    return [line.rstrip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
