# Parse region of 01_data_pipeline.py for examples/ocr_lines (dataset/rawdata/profiling.md,
# "Extraction rules"; filters from user_instruction.md). registry.pipeline_source() pastes this
# file between the template's mlloop:parse-region markers.
import csv
import json
import zipfile
from pathlib import Path

from mlloop.script import data

MIN_LABEL_LEN = 1    # user_instruction: drop empty transcriptions
MAX_LABEL_LEN = 24   # user_instruction: drop transcriptions longer than 24 characters


def parse_sources(rawdata: Path) -> list[dict]:
    """One record per labelled line image: lines_jsonl (PNG + jsonl), receipts_zip (zip + csv)."""
    records = []
    src = rawdata / "lines_jsonl"
    for line in (src / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue  # blank lines occur in the export
        row = json.loads(line)
        stem = Path(row["file"]).stem
        text = row.get("text")
        records.append({"sample_id": data.make_id("lines_jsonl", stem), "source": "lines_jsonl",
                        "category": None, "assets": {"image_path": f"lines_jsonl/{row['file']}"},
                        "target": text.strip() if isinstance(text, str) else None, "line_id": stem})

    src = rawdata / "receipts_zip"
    with zipfile.ZipFile(src / "crops.zip") as z:  # member names only; nothing is extracted
        members = {Path(m).name.lower(): m for m in z.namelist()
                   if m.startswith("crops/") and not m.endswith("/")}
    with open(src / "labels.csv", encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["image_name"].strip().lower()  # csv says R0001.PNG, the zip crops/r0001.png
            member = members.get(name, f"crops/{name}")
            stem = Path(name).stem
            records.append({"sample_id": data.make_id("receipts_zip", stem), "source": "receipts_zip",
                            "category": None,
                            "assets": {"image_path": data.zip_ref("receipts_zip/crops.zip", member)},
                            "target": row["transcript"].strip(), "line_id": stem,
                            "parent_id": row["receipt"] or None, "group_id": row["receipt"] or None})
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """user_instruction: label length in [1, 24]; no image wider than max(W_BUCKETS) at H_TARGET."""
    text = record["target"]
    if len(text) < MIN_LABEL_LEN:
        return "label_too_short"
    if len(text) > MAX_LABEL_LEN:
        return "label_too_long"
    model = rules["model_config"]
    if record["width"] * model["H_TARGET"] / record["height"] > max(model["W_BUCKETS"]):
        return "wider_than_max_bucket"
    return None
