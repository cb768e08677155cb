"""``Models/Artifacts/<vid>/action-extract.md`` (progressive-training Step 4): exactly one
``Selected Action`` with six fields, and optional ``Deferred Candidates``."""

from __future__ import annotations

import re

from .. import markdown as md
from . import Gap, sections

SELECTED = "Selected Action"
DEFERRED = "Deferred Candidates"
FIELDS = ("Goal", "Change", "Where", "Expected impact", "Risk", "Verification")


def _selected(title: str) -> bool:
    return sections.key(title).startswith(sections.key(SELECTED))


def parse(text: str) -> tuple[dict[str, str], list[Gap]]:
    """The Selected Action's fields, and what is wrong with the document (empty: valid)."""
    selected = [s for s in md.sections(text) if _selected(s.title)]
    if not selected:
        fenced = any(_selected(t) for t in md.fenced_headings(text))
        hint = " (it appears only inside a code block)" if fenced else ""
        return {}, [Gap("action.selected", f"no '{SELECTED}' heading{hint}; exactly one action is chosen per version")]
    if len(selected) > 1:
        lines = ", ".join(str(s.line) for s in selected)
        return {}, [Gap("action.selected", f"{len(selected)} '{SELECTED}' headings (lines {lines}); exactly one action "
                                           f"is chosen per version; move the others under '{DEFERRED}'")]
    body = selected[0].body
    fields, gaps = {}, []
    for name in FIELDS:
        pattern = re.compile(md.FIELD_RE.format(name=re.escape(name)), re.IGNORECASE)
        count = sum(1 for line in body.splitlines() if pattern.match(line))
        count += sum(1 for s in md.sections(body) if s.key == md.normalise(name))
        value = md.field_value(body, name)
        if value is None:
            gaps.append(Gap("action.missing_field", f"the {SELECTED} has no {name!r} field"))
        elif count > 1:
            gaps.append(Gap("action.selected", f"the {SELECTED} has {count} {name!r} fields; it describes one action"))
        elif md.is_placeholder(value):
            gaps.append(Gap("action.empty_field", f"the {SELECTED}'s {name!r} is empty or placeholder text"))
        else:
            fields[name] = value
    return fields, gaps


def render(vid: str, fields: dict[str, str], deferred=()) -> str:
    out = [f"# Action extract — {vid}", f"## {SELECTED} (only 1)"]
    out += [f"- {name}: {' '.join(str(fields.get(name, '')).split())}" for name in FIELDS]
    if deferred:
        out += [f"## {DEFERRED}"] + [f"- {d}" for d in deferred]
    return "\n".join(out) + "\n"
