"""``dataset/rawdata/profiling.md`` (build-baseline Step 0): one section per source folder."""

from __future__ import annotations

import re
import unicodedata

from .. import markdown as md
from .context import Context

TOP_SECTIONS = ("Overview", "Sources")
SOURCE_SUBSECTIONS = ("Sample unit definition", "Paths & naming rules", "Label schema", "Edge cases",
                      "Extraction rules", "Sanity checks")
SOURCE_RE = re.compile(r"^\s*source\s*:\s*(.+?)\s*$", re.IGNORECASE)


def _key(title: str) -> str:
    return md.normalise(title).replace("&", "and")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip().strip("`* ").rstrip("/"))


def source_folders(ctx: Context) -> list[str]:
    """The source folders of dataset/rawdata/ (hidden entries skipped), by name."""
    try:
        entries = list(ctx.project.rawdata.iterdir())
    except OSError:
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def check_profiling(ctx: Context, required: bool) -> None:
    path = ctx.project.profiling_md
    missing = "profiling.md is missing; build-baseline Step 0 writes it (`mlloop profile` drafts it)"
    text = ctx.document(path, "profiling", missing if required else None)
    if text is None:
        return
    if not text.strip():
        ctx.problem("profiling.empty", path, "profiling.md is empty; it needs Overview, Sources and one section per source")
        return
    secs = md.sections(text)
    fenced = {_key(t) for t in md.fenced_headings(text)}
    for name in TOP_SECTIONS:
        found = [s for s in secs if _key(s.title) == _key(name)]
        if not found:
            where = " (it appears only inside a code block)" if _key(name) in fenced else ""
            ctx.problem("profiling.missing_section", path, f"the section {name!r} is missing{where}")
        elif md.is_placeholder(found[0].body):
            ctx.problem("profiling.empty_section", path, f"the section {name!r} is empty or placeholder text")

    by_source = {}
    for sec in secs:
        m = SOURCE_RE.match(re.sub(r"\*\*|`", "", sec.title))
        if m:
            by_source.setdefault(_nfc(m.group(1)), sec)
    folders = source_folders(ctx)
    for name in folders:
        sec = by_source.get(_nfc(name))
        if sec is None:
            ctx.problem("profiling.source_missing", path,
                        f"no 'Source: {name}' section for dataset/rawdata/{name}/; every source folder needs one")
            continue
        _check_source(ctx, path, name, sec)
    known = {_nfc(n) for n in folders}
    for name in by_source:
        if name not in known:
            ctx.warn("profiling.unknown_source", path, f"the section 'Source: {name}' names no folder in dataset/rawdata/")


def _check_source(ctx: Context, path, name: str, sec: md.Section) -> None:
    subs = md.sections(sec.body)
    for want in SOURCE_SUBSECTIONS:
        found = [s for s in subs if _key(s.title) == _key(want)]
        if not found:
            ctx.problem("profiling.source_section", path, f"'Source: {name}' has no {want!r} sub-section")
        elif md.is_placeholder(found[0].body):
            ctx.problem("profiling.source_section", path, f"'Source: {name}' → {want!r} is empty or placeholder text")
    result = md.bullets(sec.body).get("load_test")
    if result is None:
        ctx.problem("profiling.load_test", path,
                    f"'Source: {name}' has no '- load_test: PASS|FAIL' line (the seeded load test of Step 0)")
    elif re.match(r"^\**\s*FAIL\b", result, re.IGNORECASE):
        ctx.problem("profiling.load_test_failed", path,
                    f"the load test of source {name!r} FAILED ({result}); fix the extraction rules and re-run Step 0")
    elif not re.match(r"^\**\s*PASS\b", result, re.IGNORECASE):
        ctx.problem("profiling.load_test", path, f"'Source: {name}' load_test is {result!r}; expected PASS or FAIL")
