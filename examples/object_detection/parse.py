# Parse region of 01_data_pipeline.py for examples/object_detection (dataset/rawdata/profiling.md,
# "Extraction rules"; filters from user_instruction.md). registry.pipeline_source() pastes this
# file between the template's mlloop:parse-region markers.
import json
from collections import defaultdict
from pathlib import Path

from mlloop.script import boxes, data

CLASSES = ("circle", "square", "triangle")   # user_instruction: these three classes only
SPELLINGS = {"rect": "square"}               # labeled_xyxy's other name for a square


def class_of(name) -> str:
    """Stripped and lower-cased, other spellings mapped: "Circle" -> circle, "Rect" -> square."""
    name = str(name).strip().lower()
    return SPELLINGS.get(name, name)


def detection_record(source: str, stem: str, image_ref: str, objects: list) -> dict:
    """One image: its label file is rendered here ([x1, y1, x2, y2] pixels) and written by the pipeline."""
    labels = sorted({label for _, label in objects})
    sid = data.make_id(source, stem)
    return {"sample_id": sid, "source": source, "category": "+".join(labels) or "none", "group_id": sid,
            "assets": {"image_path": image_ref, "label_path": data.json_asset(boxes.render(objects))}}


def parse_sources(rawdata: Path) -> list[dict]:
    """coco_export: annotations.json, [x, y, w, h] -> xyxy; labeled_xyxy: one json per image, already xyxy.
    Both clip boxes to the image (a box with nothing left inside is dropped, the image kept)."""
    records = []
    coco = json.loads((rawdata / "coco_export" / "annotations.json").read_text(encoding="utf-8"))
    names = {c["id"]: class_of(c["name"]) for c in coco["categories"]}
    by_image = defaultdict(list)
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    for im in sorted(coco["images"], key=lambda im: im["file_name"]):
        objects = [(boxes.clip(boxes.from_xywh(a["bbox"]), im["width"], im["height"]), names[a["category_id"]])
                   for a in by_image[im["id"]]]
        records.append(detection_record("coco_export", Path(im["file_name"]).stem,
                                        f"coco_export/images/{im['file_name']}", [o for o in objects if o[0]]))
    for path in sorted((rawdata / "labeled_xyxy" / "labels").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        width, height = doc["size"]
        objects = [(boxes.clip(o["box"], width, height), class_of(o["class"])) for o in doc["objects"]]
        records.append(detection_record("labeled_xyxy", path.stem, f"labeled_xyxy/images/{doc['image']}",
                                        [o for o in objects if o[0]]))
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """user_instruction: only the three shape classes; an image with another class is left out whole
    (dropping just its box would teach the model that the object is background)."""
    if any(label not in CLASSES for label in record["category"].split("+") if label != "none"):
        return "unknown_label"
    return None
