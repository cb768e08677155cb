"""What the profiling.md draft asks the agent to look at (``<!-- look at: ... -->`` under Label
schema): label spellings that differ only by case or spaces, table rows that name a file the
source does not have, and sources whose only files are tables keyed by another source (they add
columns to its samples through a join, not samples of their own). Counted from what
``mlloop.profiling_draft`` inventoried; nothing is opened again.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

TABLE_EXTS = {".csv", ".tsv", ".jsonl", ".ndjson", ".json"}
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
MAX_LABEL_VALUES = 200     # a column with more distinct values is not a label
FILE_VALUE_RE = re.compile(r"^[^\s/][^\n]*\.[A-Za-z0-9]{2,5}$")


def is_junk(name: str) -> bool:
    """Files an OS or an archiver leaves behind, never data."""
    return name.lower() in JUNK_NAMES or name.startswith("._") or name.startswith("__MACOSX")


def source_hints(inv) -> list[str]:
    """The hints of one source (a ``profile.SourceInventory``)."""
    out = _spelling_looks("folder names", inv.dirs)
    for t in inv.tables:
        for col, values in t.values.items():
            if len(set(values)) <= MAX_LABEL_VALUES:
                out += _spelling_looks(f"`{t.path}` column `{col}`", set(values))
        out += _missing_file_looks(inv, t)
    return out


def _spelling_key(value: str) -> str:
    return "".join(value.split()).casefold()


def _spelling_looks(where: str, values: set[str]) -> list[str]:
    """Spellings of one label that differ only by case or spaces (``Cat``, ``cat``, `` cat``)."""
    groups: dict[str, set[str]] = {}
    for v in values:
        if v.strip():
            groups.setdefault(_spelling_key(v), set()).add(v)
    clashes = [sorted(g) for g in groups.values() if len(g) > 1]
    return [f"{where}: {', '.join(repr(v) for v in g)} differ only by case or spaces; one label or several?"
            for g in sorted(clashes)[:10]]


def _missing_file_looks(inv, t) -> list[str]:
    """A column that names files (most values end in an extension), and rows whose file is not in
    the source (looked up next to the table, from the source root, then by file name)."""
    if "::" in t.path:
        return []
    base = posixpath.dirname(t.path)
    by_name = {posixpath.basename(n) for n in inv.names}
    out = []
    for col, values in t.values.items():
        named = [v.strip() for v in values if FILE_VALUE_RE.match(v.strip())]
        if not values or len(named) < max(1, len(values) // 2):
            continue
        missing = [v for v in named if posixpath.normpath(posixpath.join(base, v)) not in inv.names
                   and posixpath.normpath(v) not in inv.names and posixpath.basename(v) not in by_name]
        if missing:
            out.append(f"`{t.path}` column `{col}`: {len(missing)} of {len(values)} rows name a file that is not in "
                       f"the source (e.g. {', '.join(f'`{m}`' for m in missing[:3])})")
    return out


def join_hints(sources: list) -> None:
    """A source with tables and no sample files of its own, whose key column matches another
    source's file names or column values, adds columns to that source's samples (a join)."""
    for s in sources:
        if s.images or s.zips or not s.tables or any(Path(n).suffix.lower() not in TABLE_EXTS
                                                        and not is_junk(Path(n).name) for n in s.names):
            continue
        for t in s.tables:
            for col, values in t.values.items():
                keys = {v.strip() for v in values if v.strip()}
                if not keys:
                    continue
                for other in sources:
                    if other is s:
                        continue
                    pool = {posixpath.basename(n) for n in other.names} | {Path(n).stem for n in other.names}
                    for ot in other.tables:
                        for vals in ot.values.values():
                            pool.update(v.strip() for v in vals)
                    hits = len(keys & pool)
                    if hits >= 2 and hits * 2 >= len(keys):
                        s.looks.append(f"no sample files, only tables: `{t.path}` column `{col}` matches {hits} of "
                                       f"{len(keys)} values of source {other.name}; it adds columns to {other.name}'s "
                                       "samples through a join, not samples of its own")
                        break
                else:
                    continue
                break
