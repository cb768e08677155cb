# Parse region of 01_data_pipeline.py for examples/image_classification (dataset/rawdata/
# profiling.md, "Extraction rules"; filters from user_instruction.md). registry.pipeline_source()
# pastes this file between the template's mlloop:parse-region markers.
import csv
from pathlib import Path

from mlloop.script import data

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}   # .DS_Store and Thumbs.db are not samples
CLASSES = ("circle", "square", "triangle")   # user_instruction: these three classes only


def parse_sources(rawdata: Path) -> list[dict]:
    """shapes_folders: the folder is the label; shapes_csv: labels.csv rows, session = group."""
    records, taken = [], set()
    src = rawdata / "shapes_folders"
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        label = path.parent.name.strip().lower()  # "Triangle" and "triangle" are one class
        sid, n = data.make_id("shapes_folders", label, path.stem.lower()), 1
        while sid in taken:  # Triangle/IMG_0001.png and triangle/img_0001.png: both kept
            n += 1
            sid = data.make_id("shapes_folders", label, path.stem.lower(), n)
        taken.add(sid)
        records.append({"sample_id": sid, "source": "shapes_folders", "category": label, "label": label,
                        "assets": {"image_path": path.relative_to(rawdata).as_posix()},
                        "group_id": sid})  # a hand-sorted photo is its own group

    src = rawdata / "shapes_csv"
    with open(src / "labels.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            label = row["label"].strip().lower() or None  # " Square " -> square; "" -> missing
            records.append({"sample_id": data.make_id("shapes_csv", Path(row["filename"]).stem),
                            "source": "shapes_csv", "category": label, "label": label,
                            "assets": {"image_path": f"shapes_csv/images/{row['filename']}"},
                            "group_id": row["session"]})
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """user_instruction: only the three shape classes."""
    if record["label"] not in CLASSES:
        return "unknown_label"
    return None
