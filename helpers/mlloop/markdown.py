"""Just enough Markdown for the contracts: headings (outside code fences), fields, placeholders.

The documents are written by an agent, so the parser is lenient about form (heading level,
case, bold field names) and strict about substance (a section holding only "TODO" is empty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
PLACEHOLDER_RE = re.compile(
    r"^\s*(?:[-*]\s*)?(?:todo|tbd|tba|fixme|n/?a|none yet|\.\.\.|…|_?fill(?: me)?(?: in)?[^_]*_?|<[^>]*>|\(?to be filled[^)]*\)?)\s*[.:]?\s*$",
    re.IGNORECASE)
COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)


@dataclass(frozen=True)
class Section:
    level: int
    title: str
    body: str          # text up to the next heading of the same or a higher level
    line: int          # 1-based line number of the heading

    @property
    def key(self) -> str:
        return normalise(self.title)


def normalise(title: str) -> str:
    """Heading text compared loosely: no markup, no numbering, lower case, single spaces."""
    t = re.sub(r"[*_`]", "", title)
    t = re.sub(r"^\s*(?:step\s+)?\d+[.)]?\s*", "", t, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", t).strip().lower()


def headings(text: str) -> list[tuple[int, int, str]]:
    """``(line_index, level, title)`` for each heading outside fenced code blocks."""
    out, fence = [], None
    for i, line in enumerate(text.splitlines()):
        m = FENCE_RE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        if fence:
            continue
        h = HEADING_RE.match(line)
        if h:
            out.append((i, len(h.group(1)), h.group(2)))
    return out


def fenced_headings(text: str) -> list[str]:
    """Heading-like lines inside code fences: why a section an agent "wrote" counts as missing."""
    out, fence = [], None
    for line in text.splitlines():
        m = FENCE_RE.match(line)
        if m:
            fence = None if fence == m.group(1) else (fence or m.group(1))
            continue
        h = HEADING_RE.match(line) if fence else None
        if h:
            out.append(h.group(2))
    return out


def sections(text: str) -> list[Section]:
    lines = text.splitlines()
    hs = headings(text)
    out = []
    for idx, (i, level, title) in enumerate(hs):
        end = len(lines)
        for j, lvl, _ in hs[idx + 1:]:
            if lvl <= level:
                end = j
                break
        out.append(Section(level, title, "\n".join(lines[i + 1:end]), i + 1))
    return out


def find(secs: list[Section], name: str, prefix: bool = False) -> list[Section]:
    """Sections whose normalised title equals ``name`` (or starts with it when ``prefix``)."""
    want = normalise(name)
    return [s for s in secs if (s.key.startswith(want) if prefix else s.key == want)]


def is_placeholder(text: str) -> bool:
    """True when text says nothing: empty, comments only, or lines like TODO / ... / <fill>."""
    text = COMMENT_RE.sub("", text or "")
    lines = [ln for ln in text.splitlines() if ln.strip() and not re.fullmatch(r"\s*[-*|:]+\s*", ln)]
    return all(PLACEHOLDER_RE.match(ln) for ln in lines)


FIELD_RE = r"^\s*(?:[-*]\s+)?(?:\*\*|__)?{name}(?:\*\*|__)?\s*(?::\s*(?:\*\*|__)?|(?:\*\*|__)?\s*:)\s*(.*)$"


def field_value(body: str, name: str) -> str | None:
    """The value of field ``name`` in a section body: ``- Goal: x``, ``- **Goal**: x``,
    ``**Goal:** x`` (continuation lines included), or a ``### Goal`` sub-heading's text."""
    pattern = re.compile(FIELD_RE.format(name=re.escape(name)), re.IGNORECASE)
    lines = body.splitlines()
    for i, line in enumerate(lines):
        m = pattern.match(line)
        if m:
            value = [m.group(1)]
            for nxt in lines[i + 1:]:
                if re.match(r"^\s*[-*]\s+\S", nxt) or HEADING_RE.match(nxt) or re.match(r"^\s*(?:\*\*|__)\w", nxt):
                    break
                value.append(nxt)
            return "\n".join(value).strip()
    for sec in sections(body):
        if sec.key == normalise(name):
            return sec.body.strip()
    return None


def bullets(text: str) -> dict[str, str]:
    """Machine-read ``- key: value`` lines (first occurrence wins), keys lower-cased."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*[-*]\s+`?([A-Za-z_][A-Za-z0-9_ ]*?)`?\s*:\s*(.*?)\s*$", line)
        if m:
            out.setdefault(m.group(1).strip().lower().replace(" ", "_"), m.group(2))
    return out
