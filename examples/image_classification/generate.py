"""Image-classification example: tiny coloured shapes (circle, square, triangle) with noise.

    mod = <load examples/image_classification/generate.py by path>   # or examples/registry.py
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

Writes into ``dest_dir``:
  shapes_folders/  <class>/img_NNNN.png, 32x32 RGB: the folder name is the label
  shapes_csv/      images/<hex>.jpg + labels.csv (filename,label,session): the session is a
                   group id, every session shares one background and lighting, so a random split
                   would leak near-copies into valid
The class is the shape, never the colour, so it is learnable from pixels. Mess: a folder
``Triangle`` beside ``triangle``, a grayscale PNG, a JPEG among PNGs, a truncated PNG,
``.DS_Store`` and ``Thumbs.db`` files, labels with stray case and spaces, an empty label, a csv
row without its image, an image without a row, and the same image in both sources.
Same seed and size -> the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from pathlib import Path

CLASSES = ("circle", "square", "triangle")
SIZES = {"tiny": (6, 12), "small": (40, 60), "medium": (200, 300)}  # (per class in folders, csv rows)
SIDE = 32


def draw_shape(shape: str, rng: random.Random, background: tuple[int, int, int] | None = None,
               mode: str = "RGB", fmt: str = "PNG") -> bytes:
    from PIL import Image, ImageDraw

    bg = background or tuple(rng.randint(0, 90) for _ in range(3))
    im = Image.new("RGB", (SIDE, SIDE), bg)
    draw = ImageDraw.Draw(im)
    colour = tuple(rng.randint(140, 255) for _ in range(3))
    r = rng.randint(8, 12)
    cx, cy = rng.randint(r + 2, SIDE - r - 3), rng.randint(r + 2, SIDE - r - 3)
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    for _ in range(rng.randint(20, 60)):  # sensor noise
        draw.point((rng.randrange(SIDE), rng.randrange(SIDE)), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"optimize": False}))
    return buf.getvalue()


def _folders(root: Path, per_class: int, rng: random.Random) -> tuple[dict, bytes]:
    src = root / "shapes_folders"
    counts, first = {}, None
    for shape in CLASSES:
        (src / shape).mkdir(parents=True, exist_ok=True)
        for i in range(1, per_class + 1):
            payload = draw_shape(shape, rng)
            first = first or payload
            (src / shape / f"img_{i:04d}.png").write_bytes(payload)
        counts[shape] = per_class
    # Mess a hand-curated folder tree collects over time.
    (src / "Triangle").mkdir(exist_ok=True)                      # same class, other spelling
    for i in range(1, 3):
        (src / "Triangle" / f"IMG_{i:04d}.png").write_bytes(draw_shape("triangle", rng))
    (src / "circle" / "img_gray.png").write_bytes(draw_shape("circle", rng, mode="L"))
    (src / "square" / "img_photo.jpg").write_bytes(draw_shape("square", rng, fmt="JPEG"))
    broken = draw_shape("circle", rng)
    (src / "circle" / "img_broken.png").write_bytes(broken[: len(broken) // 3])
    (src / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(24))
    (src / "square" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(28))
    return {"shapes_folders": counts}, first


def _csv_source(root: Path, n: int, rng: random.Random, dup: bytes) -> dict:
    src = root / "shapes_csv"
    (src / "images").mkdir(parents=True, exist_ok=True)
    rows, sessions = [], {}
    for i in range(n):
        session = f"S{i // 6 + 1:02d}"  # six photos per session, one background each
        bg = sessions.setdefault(session, tuple(rng.randint(0, 90) for _ in range(3)))
        shape = CLASSES[rng.randrange(3)]
        name = hashlib.sha1(f"{session}-{i}".encode()).hexdigest()[:10] + ".jpg"
        (src / "images" / name).write_bytes(draw_shape(shape, rng, background=bg, fmt="JPEG"))
        label = shape
        if i % 17 == 3:
            label = f" {shape.capitalize()} "                    # stray case and spaces
        rows.append([name, label, session])
    last = f"S{n // 6 + 2:02d}"
    (src / "images" / "dup_of_folder.png").write_bytes(dup)       # same bytes as shapes_folders' first image
    rows.append(["dup_of_folder.png", "circle", last])
    (src / "images" / "no_label.jpg").write_bytes(draw_shape("square", rng, fmt="JPEG"))
    rows.append(["no_label.jpg", "", last])                       # empty label
    rows.append(["missing_file.jpg", "triangle", last])           # no such image
    (src / "images" / "not_in_csv.jpg").write_bytes(draw_shape("circle", rng, fmt="JPEG"))
    with open(src / "labels.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label", "session"])
        writer.writerows(rows)
    return {"shapes_csv": {"rows": len(rows), "sessions": len({r[2] for r in rows})}}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the raw sources into ``dest_dir``; returns counts per source."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    per_class, n_csv = SIZES[size]
    rng = random.Random(f"image_classification:{seed}")
    folders, dup = _folders(root, per_class, rng)
    return {**folders, **_csv_source(root, n_csv, rng, dup)}
