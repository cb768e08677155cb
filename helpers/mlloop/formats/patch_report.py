"""``Models/Artifacts/baseline/_tests/baseline_patch_report.md``: progressive-training Step 0's
one-time baseline patch, written by the agent only when one was made."""

from __future__ import annotations

from .. import markdown as md
from . import Gap

FIELDS = ("issues_found", "patch_summary", "files_changed", "compatibility_notes")


def gaps(text: str) -> list[Gap]:
    values = md.bullets(text)
    return [Gap("patch.field", f"no '- {name}: ...' line; the patch report records " + ", ".join(FIELDS))
            for name in FIELDS if name not in values or md.is_placeholder(values[name])]
