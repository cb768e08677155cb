"""Image-segmentation example: 64x64 scenes of circles, squares and triangles on a noisy background.

    mod = <load examples/image_segmentation/generate.py by path>   # or examples/registry.py
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

Writes into ``dest_dir``:
  scenes_voc/     JPEGImages/<name>.jpg + SegmentationClass/<name>.png (VOC style: palette PNGs
                  whose pixel values are the class ids) + labelmap.txt (one class name per line,
                  line n = id n)
  scenes_export/  images/<id>.png + masks/<id>_mask.png (8-bit grey masks "made visible": class
                  value k stored as 85·k, i.e. 0, 85, 170, 255) + classes.json ({name: value}, with
                  its own spellings: "bg", "Circle", "square ", "Triangle")
Every pixel has a class: background (0), circle (1), square (2), triangle (3); the class is the
shape, never the colour. Mess: a VOC image without its mask, a VOC mask at another size than its
image (48x48 for a 64x64 image), an export mask without its image, a .DS_Store, and the two
sources' different mask encodings and class spellings. Same seed and size -> the same bytes.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

CLASSES = ("background", "circle", "square", "triangle")  # id = position
SIZES = {"tiny": (14, 10), "small": (60, 40), "medium": (300, 200)}  # (scenes_voc, scenes_export)
SIDE = 64
VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]  # VOC's first four colours
EXPORT_SPELLINGS = {"bg": 0, "Circle": 85, "square ": 170, "Triangle": 255}  # name -> stored value


def draw_scene(rng: random.Random, side: int = SIDE):
    """(RGB image, L mask of class ids): 1–3 shapes of random colour over a dark noisy background."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), tuple(rng.randint(0, 80) for _ in range(3)))
    mask = Image.new("L", (side, side), 0)
    for _ in range(rng.randint(1, 3)):
        cls = rng.randint(1, 3)
        r = rng.randint(side // 10, side // 5)
        cx, cy = rng.randint(r, side - r - 1), rng.randint(r, side - r - 1)
        colour = tuple(rng.randint(120, 255) for _ in range(3))
        for target, fill in ((image, colour), (mask, cls)):
            draw = ImageDraw.Draw(target)
            if cls == 1:
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            elif cls == 2:
                draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(40, 120)):  # sensor noise on the image only: the mask stays exact
        draw.point((rng.randrange(side), rng.randrange(side)), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return image, mask


def _png(image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, **kw)
    return buf.getvalue()


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _voc(root: Path, n: int, rng: random.Random) -> dict:
    src = root / "scenes_voc"
    (src / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (src / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"2026_{i:06d}"
        image, mask = draw_scene(rng)
        (src / "JPEGImages" / f"{name}.jpg").write_bytes(_jpeg(image))
        if i == 3:
            continue                                                   # an image whose mask was never exported
        palette = mask.copy()
        palette.putpalette(VOC_PALETTE)                                # "P" mode: pixel value = class id
        if i == 5:
            palette = palette.resize((48, 48))                         # annotated on a downscaled copy
        (src / "SegmentationClass" / f"{name}.png").write_bytes(_png(palette))
    (src / "labelmap.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    (src / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(24))
    return {"images": n, "masks": n - 1}


def _export(root: Path, n: int, rng: random.Random) -> dict:
    from PIL import Image

    src = root / "scenes_export"
    (src / "images").mkdir(parents=True, exist_ok=True)
    (src / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sid = f"{rng.getrandbits(40):010x}"
        image, mask = draw_scene(rng)
        (src / "images" / f"{sid}.png").write_bytes(_png(image))
        visible = Image.eval(mask, lambda v: v * 85)                   # 0, 85, 170, 255: "so the mask can be seen"
        (src / "masks" / f"{sid}_mask.png").write_bytes(_png(visible))
    _, orphan = draw_scene(rng)
    (src / "masks" / "deadbeef00_mask.png").write_bytes(_png(Image.eval(orphan, lambda v: v * 85)))  # no image
    (src / "classes.json").write_text(json.dumps(EXPORT_SPELLINGS, indent=2) + "\n", encoding="utf-8")
    return {"images": n, "masks": n + 1}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the raw sources into ``dest_dir``; returns counts per source."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    n_voc, n_export = SIZES[size]
    rng = random.Random(f"image_segmentation:{seed}")
    return {"scenes_voc": _voc(root, n_voc, rng), "scenes_export": _export(root, n_export, rng)}
