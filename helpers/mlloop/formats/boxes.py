"""``label/<id>.json`` of object detection: the one home of its names, parser and renderer.

The file (task_format.yaml, object-detection ``label_schema_hint``)::

    {"boxes": [{"bbox": [x1, y1, x2, y2], "label": "car"}, ...]}

Boxes are ``[x1, y1, x2, y2]`` in pixels of the image (x to the right, y down; torchvision's
and torchmetrics' ``xyxy``), ``x1 < x2`` and ``y1 < y2``, inside ``[0, width] x [0, height]``.
An image without objects has ``{"boxes": []}``: a valid negative, kept. COCO exports
``[x, y, w, h]`` (top-left corner, width, height): :func:`from_xywh` converts it. A box that
reaches past the image is clipped to it (:func:`clip`); one with nothing left inside is None.

01_data_pipeline.py renders a record's label with :func:`render` (through
``data.json_asset``); training scripts read it back with :func:`read`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..errors import MlloopError

FIELD = "boxes"


def from_xywh(box: Iterable[float]) -> list[float]:
    """COCO's ``[x, y, w, h]`` as ``[x1, y1, x2, y2]``."""
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def clip(box: Iterable[float], width: float, height: float) -> list[float] | None:
    """The box cut to the image ``[0, width] x [0, height]``; None when no area is left."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None


def render(objects: Iterable[tuple[Iterable[float], str]]) -> dict:
    """The label document of ``(xyxy box, label)`` pairs (an empty iterable: an image without objects)."""
    out = []
    for i, (box, label) in enumerate(objects):
        problem = _problem(box, label)
        if problem:
            raise MlloopError(f"box {i}: {problem}")
        out.append({"bbox": [round(float(v), 2) for v in box], "label": str(label)})
    return {FIELD: out}


def _problem(box, label) -> str | None:
    if not isinstance(label, (str, int)) or isinstance(label, bool) or str(label) == "":
        return f"label {label!r} must be a non-empty string"
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return f"bbox {box!r} must be four numbers [x1, y1, x2, y2]"
    if not (x2 > x1 and y2 > y1):
        return f"bbox {list(box)} is not [x1, y1, x2, y2] with x1 < x2 and y1 < y2 (COCO's [x, y, w, h]? convert it)"
    return None


def read(path) -> tuple[list[list[float]], list[str]]:
    """``(boxes, labels)`` of a label file; anything malformed raises one line naming the file and JSON path."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MlloopError(f"{path}: not a readable label file ({type(exc).__name__}: {exc}).") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(FIELD), list):
        raise MlloopError(f'{path}: $.{FIELD} must be a list of {{"bbox": [x1, y1, x2, y2], "label": ...}}.')
    boxes, labels = [], []
    for i, item in enumerate(doc[FIELD]):
        if not isinstance(item, dict) or "bbox" not in item or "label" not in item:
            raise MlloopError(f'{path}: $.{FIELD}[{i}] must be {{"bbox": [x1, y1, x2, y2], "label": ...}}.')
        problem = _problem(item["bbox"], item["label"])
        if problem:
            raise MlloopError(f"{path}: $.{FIELD}[{i}]: {problem}.")
        boxes.append([float(v) for v in item["bbox"]])
        labels.append(str(item["label"]))
    return boxes, labels
