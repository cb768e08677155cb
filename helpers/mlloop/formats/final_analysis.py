"""``Models/Report/<stamp>/final-analysis.md`` (progressive-training Step 7): written by
``mlloop report``, except the agent's section between two HTML-comment markers, which starts as
a placeholder the agent replaces with why the top 3 ranked high."""

from __future__ import annotations

from .. import markdown as md
from . import Gap

START = "<!-- mlloop:analysis:start -->"
END = "<!-- mlloop:analysis:end -->"
TITLE = "Why the top 3 ranked high"
PLACEHOLDER = ("_fill in: why the top 3 ranked high; cite each one's change, its result-analysis "
               "and its infer samples._")


def agent_section(text: str) -> str | None:
    """The text between the markers (None when they are missing or out of order)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start + len(START):end]


def gaps(text: str) -> list[Gap]:
    """What keeps the report's analysis from being complete (a heading inside the agent's
    section is form, not content)."""
    if not text.strip():
        return [Gap("report.analysis", "final-analysis.md is empty")]
    section = agent_section(text)
    if section is None:
        return [Gap("report.analysis_pending", f"the markers {START} and {END} are missing or out of order; "
                                               "the analysis of the top 3 goes between them")]
    body = "\n".join(ln for ln in section.splitlines() if not md.HEADING_RE.match(ln))
    if md.is_placeholder(body):
        return [Gap("report.analysis_pending",
                    "the analysis of the top 3 (between the mlloop:analysis markers) is not written yet; "
                    "write why each of the top 3 ranked high, citing its change and its result-analysis.md")]
    return []


def render_agent_block() -> list[str]:
    """The closing section ``mlloop report`` writes: a heading and the placeholder between the markers."""
    return [f"## {TITLE}", "", START, PLACEHOLDER, END, ""]
