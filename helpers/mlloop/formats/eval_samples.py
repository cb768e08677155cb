"""eval_samples.jsonl (docs/contracts.md, "eval_samples.jsonl"): one JSON object per validation
record, ``{"id", "prediction", "target", ...per-sample values}``, written by 03_eval.py beside
eval_score.json. Its scores are recomputed from these records (check, compare, report), so every
reader takes them from ``parse_eval_samples``: the records plus one gap per broken line.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..jsonio import JsonProblems, parse_json_text, read_text_file, to_jsonable, write_text_atomic

NOT_AN_OBJECT = "expected one JSON object per line"
NO_ID = "the record has no id"


def parse_eval_samples(text: str, rel: str) -> tuple[list[dict], list[tuple[int, str]]]:
    """``(records, gaps)``: every line that is an object with an ``id``, in order, and
    ``(line number, reason)`` for every other non-blank line."""
    records, gaps = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = parse_json_text(line, rel)
        except JsonProblems as exc:
            gaps.append((n, exc.problems[0].message))
            continue
        if not isinstance(value, dict):
            gaps.append((n, NOT_AN_OBJECT))
        elif "id" not in value:
            gaps.append((n, NO_ID))
        else:
            records.append(value)
    return records, gaps


def read_eval_samples(path: Path, rel: str | None = None) -> tuple[list[dict], list[tuple[int, str]]]:
    """``parse_eval_samples`` of the file; ``JsonProblems`` when it cannot be read as UTF-8 text."""
    rel = rel or str(path)
    return parse_eval_samples(read_text_file(path, rel), rel)


def render_eval_samples(rows: list[dict]) -> str:
    """One line per record; a non-finite value is written as null (missing), never as NaN."""
    return "".join(json.dumps(to_jsonable(row), ensure_ascii=False, allow_nan=False) + "\n" for row in rows)


def write_eval_samples(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, render_eval_samples(rows))
