"""``Models/Artifacts/<vid>/result-analysis.md`` (progressive-training Step 3): five sections,
drafted by ``mlloop analyze`` with placeholders the agent replaces."""

from __future__ import annotations

from . import Gap, sections

SECTIONS = ("Summary", "Metric deltas", "Evidence", "Hypotheses", "Next focus candidates")
PLACEHOLDERS = {
    "Summary": "_fill in: what this version changed and what happened, in two or three sentences._",
    "Evidence": "_fill in: the failure patterns the samples below show, citing sample ids._",
    "Hypotheses": "_fill in: why the metrics moved as they did; one hypothesis per bullet, each testable._",
    "Next focus candidates": "_fill in: candidate changes for the next version, most promising first._",
}
AGENT_SECTIONS = tuple(PLACEHOLDERS)  # the ones the agent writes; Metric deltas is computed


def gaps(text: str) -> list[Gap]:
    """What keeps the document from being complete (empty: complete)."""
    return sections.required(text, SECTIONS, "analysis")[1]


def render(vid: str, bodies: dict[str, list[str]], titles: dict[str, str] | None = None) -> str:
    """The document: each section's heading (``titles`` may extend one, e.g. Metric deltas with the
    versions compared) and body; a section without a body gets its placeholder."""
    titles = titles or {}
    unknown = (set(bodies) | set(titles)) - set(SECTIONS)
    if unknown:
        raise ValueError(f"not sections of result-analysis.md: {sorted(unknown)}")
    out = [f"# Result analysis — {vid}", ""]
    for name in SECTIONS:
        body = bodies.get(name) or [PLACEHOLDERS.get(name, "")]
        out += [f"## {titles.get(name, name)}", *body, ""]
    return "\n".join(out)
