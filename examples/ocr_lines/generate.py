"""OCR line-recognition example: text lines rendered with Pillow, two sources, real mess.

    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location("ocr_generate", "examples/ocr_lines/generate.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

(``examples/`` is not a package; ``examples/registry.py`` does the loading for every example.)

Writes into ``dest_dir`` (normally ``dataset/rawdata``):
  lines_jsonl/   images/line_NNNNN.png (32 px high) + labels.jsonl {"file": ..., "text": ...}
  receipts_zip/  crops.zip (members crops/rNNNN.png, 40 px high, never extracted) +
                 labels.csv (UTF-8 with BOM, header image_name,transcript,receipt; names in
                 upper case, e.g. R0001.PNG; transcripts with commas are quoted)
and the edge cases a real export has: empty, null and over-long labels, whitespace around
labels, images wider than the largest width bucket, a label whose image is missing, an image
without a label, duplicate images (within and across sources), a truncated PNG member and
macOS junk in the zip. Same seed and size -> the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from pathlib import Path

SIZES = {"tiny": (24, 16), "small": (120, 80), "medium": (600, 400)}  # (lines_jsonl, receipts_zip)
ZIP_DATE = (2024, 1, 1, 0, 0, 0)  # fixed member timestamps: the zip's bytes depend on the seed only

WORDS = ["open", "save", "file", "edit", "view", "help", "menu", "print", "close", "tools", "data",
         "report", "total", "sum", "tax", "cash", "card", "item", "price", "order", "date", "time",
         "name", "user", "error", "ready", "done", "next", "back", "home", "search", "login"]
ITEMS = ["MILK", "BREAD", "EGGS", "TEA", "RICE", "SOAP", "APPLE", "JUICE", "PASTA", "SALT"]


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def render(text: str, rng: random.Random, height: int, font_size: int, width: int | None = None) -> bytes:
    """One text line as PNG bytes: grey paper, dark ink, a few specks and a stray rule."""
    from PIL import Image, ImageDraw

    font = _font(font_size)
    left, top, right, bottom = font.getbbox(text or " ")
    pad = rng.randint(3, 8)
    w = width or max(right - left + 2 * pad, 8)
    paper = rng.randint(205, 250)
    im = Image.new("L", (w, height), paper)
    draw = ImageDraw.Draw(im)
    y = (height - (bottom - top)) // 2 - top + rng.randint(-2, 2)
    draw.text((pad - left, y), text, fill=rng.randint(0, 70), font=font)
    for _ in range(rng.randint(5, 25)):
        x, yy = rng.randrange(w), rng.randrange(height)
        draw.point((x, yy), fill=rng.randint(90, 180))
    if rng.random() < 0.3:
        yy = rng.choice([1, height - 2])
        draw.line((0, yy, w, yy), fill=rng.randint(120, 190))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _ui_text(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
    words[0] = words[0].capitalize() if rng.random() < 0.6 else words[0]
    if rng.random() < 0.3:
        words.append(str(rng.randint(1, 99)))
    return " ".join(words)[:20]


def _receipt_text(rng: random.Random) -> str:
    item = rng.choice(ITEMS)
    price = f"{rng.randint(0, 19)}.{rng.randint(0, 99):02d}"
    if rng.random() < 0.15:
        return f"{item}, x{rng.randint(2, 4)} {price}"  # a comma: quoted in the csv
    return f"{item} {price}"


def _zip_write(z: zipfile.ZipFile, name: str, payload: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    z.writestr(info, payload)


def _lines_jsonl(root: Path, n: int, rng: random.Random) -> dict:
    src = root / "lines_jsonl"
    (src / "images").mkdir(parents=True, exist_ok=True)
    rows, images = [], {}
    for i in range(1, n + 1):
        text = _ui_text(rng)
        images[i] = render(text, rng, height=32, font_size=18)
        rows.append({"file": f"images/line_{i:05d}.png", "text": text})
    # Edge cases, appended so the first n are clean.
    k = n + 1
    rows.append({"file": f"images/line_{k:05d}.png", "text": ""})                               # empty label
    images[k] = render("", rng, 32, 18, width=40)
    rows.append({"file": f"images/line_{k + 1:05d}.png", "text": None})                         # null label
    images[k + 1] = render("save", rng, 32, 18)
    long_text = "Please remember to save the report before closing"                            # over-long (and wide)
    rows.append({"file": f"images/line_{k + 2:05d}.png", "text": long_text})
    images[k + 2] = render(long_text, rng, 32, 18)
    rows.append({"file": f"images/line_{k + 3:05d}.png", "text": "Help"})                        # badly cropped: 420 px
    images[k + 3] = render("Help", rng, 32, 18, width=420)
    rows.append({"file": f"images/line_{k + 4:05d}.png", "text": "  Open file  "})               # whitespace around
    images[k + 4] = render("Open file", rng, 32, 18)
    rows.append({"file": f"images/line_{k + 5:05d}.png", "text": rows[2]["text"]})              # duplicate of line 3
    images[k + 5] = images[3]
    rows.append({"file": f"images/line_{k + 6:05d}.png", "text": "Print"})                      # image missing
    images[k + 7] = render("orphan", rng, 32, 18)                                                # image, no label
    for i, payload in sorted(images.items()):
        (src / "images" / f"line_{i:05d}.png").write_bytes(payload)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(len(lines) // 2, "")                                                            # a blank line
    (src / "labels.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"lines_jsonl": {"labels": len(rows), "images": len(images)}, "_dup": images[3], "_dup_text": rows[2]["text"]}


def _receipts_zip(root: Path, n: int, rng: random.Random, dup: bytes, dup_text: str) -> dict:
    src = root / "receipts_zip"
    src.mkdir(parents=True, exist_ok=True)
    rows, members = [], {}
    for i in range(1, n + 1):
        text = _receipt_text(rng)
        members[f"crops/r{i:04d}.png"] = render(text, rng, height=40, font_size=22)
        rows.append([f"R{i:04d}.PNG", text, f"receipt_{(i - 1) // 4 + 1:03d}"])
    k = n + 1
    members[f"crops/r{k:04d}.png"] = render(" ", rng, 40, 22, width=48)
    rows.append([f"R{k:04d}.PNG", "", f"receipt_{k:03d}"])                                     # empty transcript
    long_text = "SUBTOTAL BEFORE DISCOUNTS AND LOYALTY POINTS 99.99"
    members[f"crops/r{k + 1:04d}.png"] = render(long_text, rng, 40, 22)
    rows.append([f"R{k + 1:04d}.PNG", long_text, f"receipt_{k:03d}"])                          # over-long
    members[f"crops/r{k + 2:04d}.png"] = render("TEA 1.20", rng, 40, 22, width=520)
    rows.append([f"R{k + 2:04d}.PNG", "TEA 1.20", f"receipt_{k:03d}"])                         # wide
    members[f"crops/r{k + 3:04d}.png"] = dup                                                     # same as a lines_jsonl image
    rows.append([f"R{k + 3:04d}.PNG", dup_text, f"receipt_{k + 1:03d}"])
    good = render("SOAP 2.10", rng, 40, 22)
    members[f"crops/r{k + 4:04d}.png"] = good[: len(good) // 2]                                 # truncated PNG
    rows.append([f"R{k + 4:04d}.PNG", "SOAP 2.10", f"receipt_{k + 1:03d}"])
    rows.append([f"R{k + 5:04d}.PNG", "EGGS 3.00", f"receipt_{k + 1:03d}"])                    # no such member
    with zipfile.ZipFile(src / "crops.zip", "w") as z:
        info = zipfile.ZipInfo("crops/", date_time=ZIP_DATE)
        info.external_attr = 0o40755 << 16
        z.writestr(info, b"")
        for name, payload in sorted(members.items()):
            _zip_write(z, name, payload)
        _zip_write(z, "__MACOSX/crops/._r0001.png", b"\x00\x05\x16\x07junk")                  # macOS resource fork
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["image_name", "transcript", "receipt"])
    writer.writerows(rows)
    (src / "labels.csv").write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    return {"receipts_zip": {"labels": len(rows), "members": len(members)}}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the raw sources into ``dest_dir``; returns counts per source."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    n_lines, n_receipts = SIZES[size]
    rng = random.Random(f"ocr_lines:{seed}")
    first = _lines_jsonl(root, n_lines, rng)
    second = _receipts_zip(root, n_receipts, rng, first.pop("_dup"), first.pop("_dup_text"))
    return {**first, **second}
