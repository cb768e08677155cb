"""Object-detection example: circles, squares and triangles (1-4 per image) on noisy backgrounds.

    mod = <load examples/object_detection/generate.py by path>   # or examples/registry.py
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

Writes into ``dest_dir`` two exports of one labelling job that disagree on conventions:
  coco_export/    images/<name>.png (64x64) + annotations.json, COCO style: "bbox" is
                  [x, y, w, h] (top-left corner, width, height) and categories are ids
  labeled_xyxy/   images/<name>.png (80x64) + labels/<name>.json, one per image:
                  {"image", "size": [w, h], "objects": [{"class", "box": [x1, y1, x2, y2]}]}
The class is the shape, never the colour. Mess: class names in labeled_xyxy are capitalised and
some squares are called "Rect"; a COCO box reaches past the image's right edge (the shape is cut
by the border); images without any object (valid negatives) in both sources; a COCO image entry
whose file is missing. Same seed and size -> the same bytes.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

CLASSES = ("circle", "square", "triangle")
SIZES = {"tiny": (24, 16), "small": (90, 60), "medium": (420, 280)}  # (coco images, xyxy images)
COCO_SIDE, XYXY_SIZE = (64, 64), (80, 64)


def draw_scene(rng: random.Random, size: tuple[int, int], count: int, edge: bool = False) -> tuple[bytes, list]:
    """A PNG with ``count`` shapes and their [x1, y1, x2, y2] boxes; ``edge`` puts the first one across
    the right border (its box then reaches past the image)."""
    from PIL import Image, ImageDraw

    w, h = size
    im = Image.new("RGB", size, tuple(rng.randint(0, 70) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(40, 90)):  # sensor noise and clutter
        draw.point((rng.randrange(w), rng.randrange(h)), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    for _ in range(rng.randint(0, 3)):
        draw.line([(rng.randrange(w), rng.randrange(h)), (rng.randrange(w), rng.randrange(h))],
                  fill=tuple(rng.randint(30, 110) for _ in range(3)))
    objects: list = []
    for k in range(count):
        for _ in range(30):  # a free place: shapes may touch, not cover each other
            side = rng.randint(12, 22)
            x = w - side // 2 if edge and k == 0 else rng.randint(0, w - side)
            y = rng.randint(0, h - side)
            box = [x, y, x + side, y + side]
            if all(box[2] <= o[0][0] or o[0][2] <= box[0] or box[3] <= o[0][1] or o[0][3] <= box[1] for o in objects):
                break
        else:
            continue
        shape = CLASSES[rng.randrange(3)]
        colour = tuple(rng.randint(130, 255) for _ in range(3))
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)
        objects.append((box, shape))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), objects


def _coco(root: Path, n: int, rng: random.Random) -> dict:
    src = root / "coco_export"
    (src / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(1, n + 1):
        name = f"scene_{i:04d}.png"
        count = 0 if i % 11 == 5 else rng.randint(1, 4)   # every 11th image: no object at all
        payload, objects = draw_scene(rng, COCO_SIDE, count, edge=i == 3)
        (src / "images" / name).write_bytes(payload)
        images.append({"id": i, "file_name": name, "width": COCO_SIDE[0], "height": COCO_SIDE[1]})
        for box, shape in objects:
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": CLASSES.index(shape) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    images.append({"id": n + 1, "file_name": "scene_lost.png", "width": COCO_SIDE[0], "height": COCO_SIDE[1]})
    annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": 1, "bbox": [10, 10, 16, 16],
                        "area": 256, "iscrowd": 0})             # its file was never exported
    doc = {"info": {"description": "shapes, exported by the labelling tool"}, "images": images,
           "annotations": annotations,
           "categories": [{"id": k + 1, "name": c, "supercategory": "shape"} for k, c in enumerate(CLASSES)]}
    (src / "annotations.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return {"coco_export": {"images": n, "annotations": len(annotations)}}


def _xyxy(root: Path, n: int, rng: random.Random) -> dict:
    src = root / "labeled_xyxy"
    (src / "images").mkdir(parents=True, exist_ok=True)
    (src / "labels").mkdir(parents=True, exist_ok=True)
    boxes = 0
    for i in range(1, n + 1):
        name = f"cam_{i:04d}"
        count = 0 if i % 9 == 4 else rng.randint(1, 4)
        payload, objects = draw_scene(rng, XYXY_SIZE, count)
        (src / "images" / f"{name}.png").write_bytes(payload)
        spelled = [{"class": "Rect" if shape == "square" and rng.random() < 0.3 else shape.capitalize(), "box": box}
                   for box, shape in objects]
        doc = {"image": f"{name}.png", "size": list(XYXY_SIZE), "objects": spelled}
        (src / "labels" / f"{name}.json").write_text(json.dumps(doc) + "\n", encoding="utf-8")
        boxes += len(objects)
    return {"labeled_xyxy": {"images": n, "boxes": boxes}}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the raw sources into ``dest_dir``; returns counts per source."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    n_coco, n_xyxy = SIZES[size]
    rng = random.Random(f"object_detection:{seed}")
    return {**_coco(root, n_coco, rng), **_xyxy(root, n_xyxy, rng)}
