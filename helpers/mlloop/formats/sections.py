"""Required sections of an agent-written Markdown document, found the one way every reader uses:
case, markup, numbering and ``&``/``and`` ignored, a suffix after a word boundary allowed
(``Metric deltas (v001 → v002)`` is ``Metric deltas``), headings inside code fences not counted."""

from __future__ import annotations

from .. import markdown as md
from . import Gap


def key(title: str) -> str:
    return md.normalise(title).replace("&", "and")


def key_matches(have: str, want: str) -> bool:
    return have == want or (have.startswith(want) and not have[len(want)].isalnum())


def matches(title: str, name: str) -> bool:
    """``Metric deltas (v001 → v002)`` counts as ``Metric deltas``; ``Summaryish`` does not."""
    return key_matches(key(title), key(name))


def find(secs: list[md.Section], name: str) -> list[md.Section]:
    want = key(name)
    return [s for s in secs if key_matches(key(s.title), want)]


def only_fenced(text: str, name: str) -> bool:
    """True when ``name`` appears as a heading only inside a code fence (why it "is missing")."""
    want = key(name)
    return any(key_matches(key(t), want) for t in md.fenced_headings(text))


def required(text: str, names, code: str) -> tuple[dict[str, md.Section], list[Gap]]:
    """The first section of each name, and a gap per missing or placeholder-only section."""
    secs = md.sections(text)
    found, gaps = {}, []
    for name in names:
        hits = find(secs, name)
        if not hits:
            hint = " (it appears only inside a code block, which does not count)" if only_fenced(text, name) else ""
            gaps.append(Gap(f"{code}.missing_section", f"the section {name!r} is missing{hint}"))
        elif md.is_placeholder(hits[0].body):
            gaps.append(Gap(f"{code}.empty_section", f"the section {name!r} is empty or placeholder text; write it"))
        else:
            found[name] = hits[0]
    return found, gaps
