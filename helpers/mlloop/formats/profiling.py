"""``dataset/rawdata/profiling.md`` (build-baseline Step 0): ``Overview``, ``Sources`` and one
``Source: <folder>`` section per source folder, each with six sub-sections and the seeded load
test's ``- load_test: PASS|FAIL (...)`` line. ``mlloop profile`` drafts it; the agent completes it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from .. import markdown as md
from . import Gap
from .sections import key

TOP_SECTIONS = ("Overview", "Sources")
SOURCE_SUBSECTIONS = ("Sample unit definition", "Paths & naming rules", "Label schema", "Edge cases",
                      "Extraction rules", "Sanity checks")
SOURCE_TITLE = "Source: {name}"
LOAD_TEST = "load_test"
SOURCE_RE = re.compile(r"^\s*source\s*:\s*(.+?)\s*$", re.IGNORECASE)
PASS_RE = re.compile(r"^\**\s*PASS\b", re.IGNORECASE)
FAIL_RE = re.compile(r"^\**\s*FAIL\b", re.IGNORECASE)


def source_key(name: str) -> str:
    """A source's name as headings and folders are compared (NFC, no markup, no trailing slash)."""
    return unicodedata.normalize("NFC", name.strip().strip("`* ").rstrip("/"))


@dataclass
class Profiling:
    top: dict[str, list[md.Section]] = field(default_factory=dict)
    sources: dict[str, md.Section] = field(default_factory=dict)   # by source_key, first section wins
    fenced: set[str] = field(default_factory=set)                   # heading keys seen only in code blocks


def parse(text: str) -> Profiling:
    secs = md.sections(text)
    doc = Profiling(fenced={key(t) for t in md.fenced_headings(text)})
    for name in TOP_SECTIONS:
        doc.top[name] = [s for s in secs if key(s.title) == key(name)]
    for sec in secs:
        m = SOURCE_RE.match(re.sub(r"\*\*|`", "", sec.title))
        if m:
            doc.sources.setdefault(source_key(m.group(1)), sec)
    return doc


def gaps(text: str, folders: list[str]) -> list[Gap]:
    """What the document lacks for these source folders (warnings for sections naming no folder)."""
    if not text.strip():
        return [Gap("profiling.empty", "profiling.md is empty; it needs Overview, Sources and one section per source")]
    doc = parse(text)
    out = []
    for name in TOP_SECTIONS:
        found = doc.top[name]
        if not found:
            where = " (it appears only inside a code block)" if key(name) in doc.fenced else ""
            out.append(Gap("profiling.missing_section", f"the section {name!r} is missing{where}"))
        elif md.is_placeholder(found[0].body):
            out.append(Gap("profiling.empty_section", f"the section {name!r} is empty or placeholder text"))
    for name in folders:
        sec = doc.sources.get(source_key(name))
        if sec is None:
            out.append(Gap("profiling.source_missing",
                           f"no 'Source: {name}' section for dataset/rawdata/{name}/; every source folder needs one"))
        else:
            out += _source_gaps(name, sec)
    known = {source_key(n) for n in folders}
    out += [Gap("profiling.unknown_source", f"the section 'Source: {name}' names no folder in dataset/rawdata/", warning=True)
            for name in doc.sources if name not in known]
    return out


def _source_gaps(name: str, sec: md.Section) -> list[Gap]:
    out = []
    subs = md.sections(sec.body)
    for want in SOURCE_SUBSECTIONS:
        found = [s for s in subs if key(s.title) == key(want)]
        if not found:
            out.append(Gap("profiling.source_section", f"'Source: {name}' has no {want!r} sub-section"))
        elif md.is_placeholder(found[0].body):
            out.append(Gap("profiling.source_section", f"'Source: {name}' → {want!r} is empty or placeholder text"))
    result = md.bullets(sec.body).get(LOAD_TEST)
    if result is None:
        out.append(Gap("profiling.load_test",
                       f"'Source: {name}' has no '- {LOAD_TEST}: PASS|FAIL' line (the seeded load test of Step 0)"))
    elif FAIL_RE.match(result):
        out.append(Gap("profiling.load_test_failed",
                       f"the load test of source {name!r} FAILED ({result}); fix the extraction rules and re-run Step 0"))
    elif not PASS_RE.match(result):
        out.append(Gap("profiling.load_test", f"'Source: {name}' {LOAD_TEST} is {result!r}; expected PASS or FAIL"))
    return out


def load_test_line(passed: bool, detail: str) -> str:
    """The line ``mlloop profile --load-test`` prints for the agent to put into a source's section."""
    return f"- {LOAD_TEST}: {'PASS' if passed else 'FAIL'} ({detail})"


def render_source(name: str, bodies: dict[str, list[str]]) -> str:
    """One source's section: each sub-section's heading and body lines (in the contract's order)."""
    unknown = set(bodies) - set(SOURCE_SUBSECTIONS)
    if unknown:
        raise ValueError(f"not sub-sections of a profiling source: {sorted(unknown)}")
    out = [f"## {SOURCE_TITLE.format(name=name)}"]
    for sub in SOURCE_SUBSECTIONS:
        out += [f"### {sub}", *bodies.get(sub, [])]
    return "\n".join(out + [""])
