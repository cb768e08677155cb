# Parse region of 01_data_pipeline.py for examples/image_segmentation (dataset/rawdata/
# profiling.md, "Extraction rules"; classes from user_instruction.md). registry.pipeline_source()
# pastes this file between the template's mlloop:parse-region markers.
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mlloop.script import data

LABEL_MAP = {"background": 0, "circle": 1, "square": 2, "triangle": 3}  # user_instruction: ids 0..3
SPELLINGS = {"bg": "background"}  # scenes_export/classes.json's names for the same classes
MASK_VALUES = {}  # source -> {stored mask value: class id}, read from each source's own class list


def class_id(name: str, where: str) -> int:
    key = name.strip().lower()
    key = SPELLINGS.get(key, key)
    if key not in LABEL_MAP:
        raise data.PipelineError(f"{where}: class {name!r} is not one of {', '.join(LABEL_MAP)}; "
                                 "add its spelling to SPELLINGS or the class to LABEL_MAP.")
    return LABEL_MAP[key]


def mask_size(path: Path):
    """(width, height) from the PNG header, or None when the mask is missing (the pipeline drops it)."""
    if not path.is_file():
        return None
    with Image.open(path) as image:
        return list(image.size)


def parse_sources(rawdata: Path) -> list[dict]:
    """scenes_voc: JPEGImages/<name>.jpg + SegmentationClass/<name>.png (values = labelmap.txt line);
    scenes_export: images/<id>.png + masks/<id>_mask.png (values from classes.json)."""
    records = []
    src = rawdata / "scenes_voc"
    names = [line for line in (src / "labelmap.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    MASK_VALUES["scenes_voc"] = {value: class_id(name, "scenes_voc/labelmap.txt") for value, name in enumerate(names)}
    for path in sorted((src / "JPEGImages").glob("*.jpg")):
        mask = f"scenes_voc/SegmentationClass/{path.stem}.png"
        records.append({"sample_id": data.make_id("scenes_voc", path.stem), "source": "scenes_voc", "category": None,
                        "assets": {"image_path": path.relative_to(rawdata).as_posix(), "mask_path": mask},
                        "meta": {"mask_size": mask_size(rawdata / mask)}})

    src = rawdata / "scenes_export"
    spelled = json.loads((src / "classes.json").read_text(encoding="utf-8"))
    MASK_VALUES["scenes_export"] = {int(v): class_id(k, "scenes_export/classes.json") for k, v in spelled.items()}
    for path in sorted((src / "images").glob("*.png")):
        mask = f"scenes_export/masks/{path.stem}_mask.png"
        records.append({"sample_id": data.make_id("scenes_export", path.stem), "source": "scenes_export",
                        "category": None, "assets": {"image_path": path.relative_to(rawdata).as_posix(), "mask_path": mask},
                        "meta": {"mask_size": mask_size(rawdata / mask)}})
    for r in records:
        r["group_id"] = r["sample_id"]  # every scene is drawn on its own: its own group
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """A mask drawn at another size than its image does not line up with it pixel for pixel."""
    size = record["meta"]["mask_size"]
    if size is not None and size != [record["width"], record["height"]]:
        return f"mask_size_mismatch: mask {size[0]}x{size[1]}, image {record['width']}x{record['height']}"
    return None


def convert_asset(field: str, payload: bytes, record: dict) -> bytes:
    """Masks into single-channel PNGs of class ids: palette indices (scenes_voc) and the 0/85/170/255
    grey values (scenes_export) through their source's value table; an unknown value is an error."""
    if field != "mask_path":
        return payload
    with Image.open(io.BytesIO(payload)) as image:
        values = np.asarray(image)  # a "P" image gives its palette indices, an "L" image its grey values
    table = MASK_VALUES[record["source"]]
    unknown = sorted(set(np.unique(values).tolist()) - set(table))
    if values.ndim != 2 or unknown:
        raise ValueError(f"mask values {unknown[:5]} (shape {values.shape}) are not in {record['source']}'s class list")
    lookup = np.zeros(256, dtype=np.uint8)
    for value, cls in table.items():
        lookup[value] = cls
    out = io.BytesIO()
    Image.fromarray(lookup[values]).save(out, format="PNG")
    return out.getvalue()
