# Parse region of 01_data_pipeline.py for examples/text_classification (dataset/rawdata/profiling.md,
# "Extraction rules"; filters from user_instruction.md). registry.pipeline_source() pastes this
# file between the template's mlloop:parse-region markers.
import csv
import html
import json
import re
from pathlib import Path

from mlloop.script import data

LABELS = {"positive": "positive", "pos": "positive", "negative": "negative", "neg": "negative",
          "neutral": "neutral", "neu": "neutral"}   # every spelling the two exports use, lower-cased
BREAK_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)


def _label(value):
    """The class of a raw label spelling, or the raw text itself when it is none of them (dropped later)."""
    text = "" if value is None else str(value).strip().lower()
    return LABELS.get(text, text or None)


def _text(value):
    """HTML entities decoded, <br> as a space, whitespace collapsed; "" for an empty review."""
    if value is None:
        return ""
    return " ".join(html.unescape(BREAK_RE.sub(" ", str(value))).split())


def parse_sources(rawdata: Path) -> list[dict]:
    """One record per review: reviews_csv rows and reviews_jsonl lines."""
    records = []
    with open(rawdata / "reviews_csv" / "reviews.csv", encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):  # ids from the line: a row repeats verbatim
            label = _label(row["sentiment"])
            records.append({
                "sample_id": data.make_id("reviews_csv", f"line{line:05d}"), "source": "reviews_csv",
                "category": label, "label": label, "input": _text(row["review_text"]), "lang": "en",
                "meta": {"review_id": row["review_id"], "product": row["product"]}})
    path = rawdata / "reviews_jsonl" / "app_reviews.jsonl"
    for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:  # a line cut off by the export: kept as a record with no fields
            records.append({"sample_id": data.make_id("reviews_jsonl", f"line{line:05d}"), "source": "reviews_jsonl",
                            "category": None, "label": None, "input": None, "lang": None,
                            "meta": {"parse_error": f"line {line}: {exc.msg}"}})
            continue
        label = _label(rec.get("sentiment"))
        records.append({
            "sample_id": data.make_id("reviews_jsonl", rec["uid"]), "source": "reviews_jsonl",
            "category": label, "label": label, "input": _text(rec.get("body")), "lang": rec.get("lang"),
            "meta": {"uid": rec["uid"], "channel": rec.get("channel")}})
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """user_instruction: an empty review says nothing; a label outside the three classes is dropped."""
    if not record["input"]:
        return "empty_text"
    if record["label"] not in ("positive", "negative", "neutral"):
        return f"unknown_label: {record['label']!r}"
    return None
