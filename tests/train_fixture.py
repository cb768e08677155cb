"""Tiny prepdata trees (docs/contracts.md "prepdata") and rules for the training tests.

Everything is generated here, offline and seeded: 16×16 colour images whose class is their
colour, short digit strings drawn with PIL's built-in bitmap font, and tabular rows whose label
is a simple function of the features, so a working pipeline can learn them in a few steps.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from mlloop.bundle import train_templates

REPO = Path(__file__).resolve().parents[1]
TRAIN_TEMPLATES = train_templates()  # name -> path, every templates/train/*.py of the bundle
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    return path


def write_rules(root: Path, task_type: str, model_config: dict | None = None, smoke: dict | None = None,
                training: dict | None = None, metrics: list | None = None, primary: str = "loss",
                dataset_id: str = "v1", dataset: dict | None = None) -> None:
    bb = {"seed": 42,
          "dataset_config": {"dataset_id": dataset_id, "task_type": task_type, **(dataset or {})},
          "model_config": model_config or {},
          "baseline_smoke_test": {"num_gpus": 0, "epoch": 1, "train_samples": 24, "valid_samples": 12,
                                  "min_batch_size": 2, "max_batch_size": 8, "search_steps": 2, **(smoke or {})}}
    pt = {"seed": 42, "dataset_config": {"dataset_id": dataset_id},
          "training_config": {"num_gpus": 0, "epochs": 1, "min_steps_per_epoch": 2, "min_total_steps": 2,
                              **(training or {})},
          "eval_config": {"primary_metric": primary, "metrics": metrics or ["loss"], "infer_samples": 3}}
    write_json(root / ".claude/skills/build-baseline/user_defined_rules.json", bb)
    write_json(root / ".claude/skills/progressive-training/user_defined_rules.json", pt)


def _index(root: Path, dataset_id: str, task_type: str, splits: dict[str, list[dict]], common: dict | None = None) -> Path:
    base = root / "dataset" / "prepdata" / dataset_id
    for split, rows in splits.items():
        (base / split).mkdir(parents=True, exist_ok=True)
        (base / split / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for name, obj in (common or {}).items():
        write_json(base / "common" / name, obj)
    write_json(base / "stats.json", {"dataset_id": dataset_id, "task_type": task_type, "seed": 42,
                                     "split_strategy": "random", "valid_ratio": 0.2,
                                     "counts": {s: len(r) for s, r in splits.items()}, "sources": {},
                                     "created_at": "2026-11-21T10:00:00+00:00"})
    return base


def image_prepdata(root: Path, n_train: int = 30, n_valid: int = 12, size: int = 16, dataset_id: str = "v1") -> Path:
    from PIL import Image

    rng = random.Random(0)
    names = sorted(COLOURS)
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        rows = []
        for i in range(n):
            label = names[i % len(names)]
            sid = f"{split}-{i:03d}"
            base = COLOURS[label]
            pixels = [tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in base) for _ in range(size * size)]
            image = Image.new("RGB", (size, size))
            image.putdata(pixels)
            path = root / "dataset" / "prepdata" / dataset_id / split / "image" / f"{sid}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            rows.append({"id": sid, "image_path": f"image/{sid}.png", "label": label, "source": "gen"})
        splits[split] = rows
    return _index(root, dataset_id, "image-classification", splits,
                  {"label_map.json": {n: i for i, n in enumerate(names)}})


def ocr_prepdata(root: Path, n_train: int = 24, n_valid: int = 8, height: int = 16, dataset_id: str = "v1") -> Path:
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(1)
    font = ImageFont.load_default()
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        rows = []
        for i in range(n):
            text = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 4)))
            sid = f"{split}-{i:03d}"
            image = Image.new("L", (8 * len(text) + 8, height), 255)
            ImageDraw.Draw(image).text((4, 2), text, fill=0, font=font)
            path = root / "dataset" / "prepdata" / dataset_id / split / "image" / f"{sid}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            rows.append({"id": sid, "image_path": f"image/{sid}.png", "target": text, "source": "gen"})
        splits[split] = rows
    return _index(root, dataset_id, "ocr-recognition", splits)


def tabular_prepdata(root: Path, regression: bool = False, n_train: int = 40, n_valid: int = 12,
                     dataset_id: str = "v1") -> Path:
    rng = random.Random(2)
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        rows = []
        for i in range(n):
            x1, x2 = rng.uniform(-2, 2), rng.uniform(-2, 2)
            colour = rng.choice(["red", "blue"])
            features = {"x1": round(x1, 4), "x2": round(x2, 4), "colour": colour,
                        "maybe": None if i % 7 == 0 else round(rng.uniform(0, 1), 3)}
            row = {"id": f"{split}-{i:03d}", "features": features, "source": "gen"}
            if regression:
                row["target"] = round(3 * x1 - 2 * x2 + (1.5 if colour == "red" else 0.0) + 10, 4)
            else:
                row["label"] = "pos" if x1 + x2 + (0.5 if colour == "red" else -0.5) > 0 else "neg"
            rows.append(row)
        splits[split] = rows
    task = "tabular-regression" if regression else "tabular-classification"
    common = {} if regression else {"label_map.json": {"neg": 0, "pos": 1}}
    return _index(root, dataset_id, task, splits, common)


TEXT_WORDS = {"positive": ["great", "love", "excellent", "works"], "negative": ["broken", "awful", "refund", "late"],
              "neutral": ["arrived", "ordered", "package", "today"]}


def text_prepdata(root: Path, n_train: int = 36, n_valid: int = 12, dataset_id: str = "v1") -> Path:
    """Short reviews whose class shows in its words (plus shared filler), three classes."""
    rng = random.Random(3)
    filler = ["the", "it", "this", "product", "was", "and", "a"]
    names = sorted(TEXT_WORDS)
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        rows = []
        for i in range(n):
            label = names[i % len(names)]
            words = rng.sample(filler, 3) + rng.sample(TEXT_WORDS[label], 2)
            rng.shuffle(words)
            rows.append({"id": f"{split}-{i:03d}", "input": " ".join(words).capitalize() + ".", "label": label,
                         "source": "gen"})
        splits[split] = rows
    return _index(root, dataset_id, "text-classification", splits,
                  {"label_map.json": {n: i for i, n in enumerate(names)}})


def series_prepdata(root: Path, n_series: int = 3, hours: int = 240, context: int = 48, horizon: int = 12,
                    stride: int = 6, valid_share: float = 0.25, dataset_id: str = "v1") -> Path:
    """Hourly series with a daily season, a trend and noise (units differ per series), cut into
    windows by time: per series the last ``valid_share`` of the origins are valid, and the windows
    whose target crosses that cut are left out (the pipeline's time split)."""
    import math

    rng = random.Random(3)
    splits: dict[str, list[dict]] = {"train": [], "valid": []}
    for k in range(n_series):
        level, amplitude = rng.uniform(5, 50) * (k + 1), rng.uniform(2, 8) * (k + 1)
        values = [level + amplitude * math.sin(2 * math.pi * t / 24) + 0.02 * t + rng.gauss(0, 0.3 * (k + 1))
                  for t in range(hours)]
        text = "time,value\n" + "".join(f"{t},{v:.4f}\n" for t, v in enumerate(values))
        origins = list(range(context, hours - horizon + 1, stride))
        cut = origins[len(origins) - max(1, round(len(origins) * valid_share))]
        for split in ("train", "valid"):
            path = root / "dataset" / "prepdata" / dataset_id / split / "series" / "shared" / f"s{k}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for origin in origins:
            split = "valid" if origin >= cut else "train" if origin + horizon <= cut else None
            if split:
                splits[split].append({"id": f"s{k}-t{origin:04d}", "series_path": f"series/shared/s{k}.csv",
                                      "series_id": f"s{k}", "start": origin, "horizon": horizon, "freq": "1h",
                                      "target": [round(v, 4) for v in values[origin:origin + horizon]],
                                      "source": "gen", "meta": {"context_rows": context}})
    base = _index(root, dataset_id, "time-series-forecasting", splits)
    stats = json.loads((base / "stats.json").read_text(encoding="utf-8"))
    write_json(base / "stats.json", {**stats, "split_strategy": "time"})
    return base


def seg_prepdata(root: Path, n_train: int = 24, n_valid: int = 8, size: int = 32, dataset_id: str = "v1") -> Path:
    """Images with a red disc (class 1) and a green square (class 2) on a dark noisy background
    (class 0); masks are single-channel PNGs of class ids, the label map names them."""
    from PIL import Image, ImageDraw

    rng = random.Random(3)
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        rows = []
        for i in range(n):
            sid = f"{split}-{i:03d}"
            image = Image.new("RGB", (size, size), tuple(rng.randint(0, 60) for _ in range(3)))
            mask = Image.new("L", (size, size), 0)
            for cls, fill in ((1, (220, 40, 40)), (2, (40, 200, 60))):
                r = rng.randint(size // 8, size // 4)
                cx, cy = rng.randint(r, size - r - 1), rng.randint(r, size - r - 1)
                box = (cx - r, cy - r, cx + r, cy + r)
                for target, value in ((image, fill), (mask, cls)):
                    (ImageDraw.Draw(target).ellipse if cls == 1 else ImageDraw.Draw(target).rectangle)(box, fill=value)
            base = root / "dataset" / "prepdata" / dataset_id / split
            for folder, picture in (("image", image), ("mask", mask)):
                (base / folder).mkdir(parents=True, exist_ok=True)
                picture.save(base / folder / f"{sid}.png")
            rows.append({"id": sid, "image_path": f"image/{sid}.png", "mask_path": f"mask/{sid}.png", "source": "gen"})
        splits[split] = rows
    return _index(root, dataset_id, "image-segmentation", splits,
                  {"label_map.json": {"background": 0, "disc": 1, "square": 2}})


def install_script(root: Path, template: str, name: str = "02_train_baseline.py", header: str = "") -> Path:
    """Copy the training template ``template`` into the project as ``name`` (with an optional header)."""
    target = root / name
    text = TRAIN_TEMPLATES[template].read_text(encoding="utf-8")
    target.write_text(header + text, encoding="utf-8")
    return target


def v001_header(parent: str = "baseline") -> str:
    return ("# === mlloop change summary ===\n# version: v001\n# parent: " + parent + "\n# action_source: none\n"
            "# goal: start the loop from the baseline\n# change: none (copy of the baseline, Step 0)\n"
            "# where: -\n# === end change summary ===\n")


def load_script(path: Path, name: str | None = None):
    """Import a training script by path (as 03_eval.py does), without running main."""
    from mlloop.runtime.checkpoint import import_script

    return import_script(path, name)


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


try:
    import pytest

    @pytest.fixture(autouse=False)
    def one_thread():
        """One torch thread: on a shared 2-core machine two spinning threads are many times slower."""
        import torch

        from mlloop.runtime import defaults

        n, saved = torch.get_num_threads(), (defaults._torch_default, defaults._set_by_mlloop)
        torch.set_num_threads(1)
        # the 1 is the user's choice, whatever ran in this process before: start() leaves it as set
        defaults._torch_default, defaults._set_by_mlloop = 0, None
        yield
        torch.set_num_threads(n)
        defaults._torch_default, defaults._set_by_mlloop = saved
except ImportError:  # pragma: no cover - the fixture is only for pytest
    pass
