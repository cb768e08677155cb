"""Did the data pipeline do what the rules asked? Effects of a split, a de-duplication or a
filter compared with the intent (issue 15).

Pure functions over stats.json, index records and profiling.md text, shared by
``mlloop check prepdata`` and the pipeline's own tests (``mlloop.runtime.prepdata``), so the two
never disagree. Each returns one line per problem; an empty list means the effect fits.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from .. import markdown as md

MAX_LISTED = 5


def singleton_groups(records_by_split: dict[str, list[dict]], group_key: str) -> str | None:
    """A group split whose every record has a group of its own is a random split in disguise
    (the group field was missing, or names a per-sample value)."""
    values = [r.get(group_key) for rows in records_by_split.values() for r in rows if isinstance(r, dict)]
    present = [json.dumps(v, sort_keys=True) for v in values if v is not None]
    if len(present) < 2 or len(set(present)) < len(present):
        return None
    return (f"split_strategy is group but each of the {len(present)} records has its own {group_key!r} value, "
            f"so the split is a random one; group_key must name a field that samples of one group share")


def named_reasons(profiling_text: str | None) -> str:
    """The text of every "Edge cases" section of profiling.md, lower case, ``_``/``-`` as spaces,
    placeholders and comments removed: where a drop reason must be named."""
    if not profiling_text:
        return ""
    bodies = [s.body for s in md.sections(profiling_text) if s.key == "edge cases"]
    text = md.COMMENT_RE.sub(" ", "\n".join(bodies))
    text = re.sub(r"<[^>\n]*>", " ", text)
    return re.sub(r"[_\-`*]+", " ", text.lower())


def reason_named(reason: str, edge_text: str) -> bool:
    words = re.sub(r"[_\-]+", " ", reason.lower()).strip()
    return bool(words) and re.search(r"\b" + re.escape(words), edge_text) is not None


def drop_shares(stats: dict, max_share: float | None, profiling_text: str | None) -> list[str]:
    """A drop reason (duplicate, a filter of the parse region, missing assets) that removed more
    than ``max_share`` of the parsed records, unless profiling.md's Edge cases name it."""
    parsed, dropped = stats.get("parsed"), stats.get("dropped")
    if max_share is None or not isinstance(parsed, int) or parsed <= 0 or not isinstance(dropped, dict):
        return []
    edge_text, out = named_reasons(profiling_text), []
    for reason, n in sorted(dropped.items()):
        if not isinstance(n, int) or n / parsed <= max_share or reason_named(str(reason), edge_text):
            continue
        out.append(f"{reason!r} dropped {n} of {parsed} parsed records ({n / parsed:.0%}), more than max_drop_share "
                   f"({max_share:g}), and profiling.md's Edge cases do not name it; fix the rule if it drops too "
                   f"much, else name {reason!r} and why under Edge cases")
    return out


def class_counts(records_by_split: dict[str, list[dict]], label_field: str, minimum: int | None) -> dict[str, str]:
    """{split: line} for each split holding fewer than ``minimum`` records of some class (a
    class seen in any split; a class absent from a split has 0)."""
    if not minimum:
        return {}
    counts = {s: Counter(_label(r.get(label_field)) for r in rows if isinstance(r, dict) and r.get(label_field) is not None)
              for s, rows in records_by_split.items()}
    classes = sorted(set().union(*counts.values())) if counts else []
    out = {}
    for split, c in counts.items():
        short = [(k, c.get(k, 0)) for k in classes if c.get(k, 0) < minimum]
        if short:
            shown = ", ".join(f"{k!r} ({n})" for k, n in short[:MAX_LISTED]) + (f", … {len(short) - MAX_LISTED} more"
                                                                                if len(short) > MAX_LISTED else "")
            out[split] = (f"{len(short)} class(es) have fewer than min_samples_per_class ({minimum}) records in "
                          f"{split}: {shown}; merge or drop rare classes, or lower min_samples_per_class in the rules")
    return out


def _label(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def time_order(train: list[dict], valid: list[dict]) -> list[str]:
    """Per series, a train window whose target (``start`` .. ``start + horizon``) reaches past the
    first valid window's start: the model would have trained on the period it is judged on."""
    first_valid: dict[str, Any] = {}
    for r in valid:
        key = str(r.get("series_id"))
        if isinstance(r.get("start"), (int, float)) and (key not in first_valid or r["start"] < first_valid[key]):
            first_valid[key] = r["start"]
    late = [r for r in train if str(r.get("series_id")) in first_valid and isinstance(r.get("start"), (int, float))
            and _span_end(r) > first_valid[str(r.get("series_id"))]]
    if not late:
        return []
    r = sorted(late, key=lambda r: str(r.get("id", r.get("sample_id"))))[0]
    return [f"{len(late)} train window(s) end after their series' first valid window starts (e.g. "
            f"{r.get('id', r.get('sample_id'))!r} of series {r.get('series_id')!r} ends at row "
            f"{_span_end(r)}, valid starts at {first_valid[str(r.get('series_id'))]})"]


def _span_end(record: dict):
    """The row after a window's target: ``start + horizon`` (one row without an integer horizon)."""
    h = record.get("horizon")
    return record["start"] + (h if isinstance(h, int) and not isinstance(h, bool) and h > 0 else 1)
