"""The report's pictures: matplotlib (Agg) PNGs in ``Models/Report/<stamp>/pictures/``.

- ``metric_by_version.png``: the primary metric of every leaderboard row, with a 95% interval
  where one is honest to give, the trivial floor, and the held-out test score of the top 3.
- ``training_curves.png``: each version's ``logs/version_N/metrics.csv`` (Lightning's CSVLogger).
- ``cost.png``: wall time, peak memory and parameters per version, from spec.json.
- ``samples.png``: the best version's ``infer_samples/`` (input, ground truth, prediction).
- ``confusion_matrix.png`` (label targets) or ``errors.png`` (the worst samples otherwise), from
  the best version's ``eval_samples.jsonl``.

Imported only by ``mlloop report`` (never on the CLI's start-up path); matplotlib is imported
inside ``render_pictures`` with the Agg backend, so no display is needed.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .analysis import read_training_log
from .bootstrap import bootstrap_intervals
from .formats.eval_samples import read_eval_samples
from .formats.sample_meta import read_sample_meta_quiet
from .formats.spec import read_spec_quiet
from .jsonio import JsonProblems
from .layout import EVAL_SAMPLES, INFER_SAMPLES, SPEC
from .leaderboard import EXTERNAL, Ranking, Row, fmt

PICTURES_DIR = "pictures"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GALLERY_MAX = 8
ERRORS_MAX = 12


@dataclass
class Picture:
    file: str        # relative to the report folder: pictures/<name>.png
    title: str
    caption: str


def primary_interval(rows: list[dict], name: str, higher_is_better: bool, value: float,
                     seed: int) -> tuple[float, float] | None:
    """Seeded 95% percentile bootstrap interval of ``name`` over a version's eval_samples.jsonl rows
    (``mlloop.bootstrap``, the statistic of `mlloop compare`), when its vectorised form gives the
    recorded ``value``; None otherwise (no records, or it would need torch per resample)."""
    if len(rows) < 2:
        return None
    (iv,) = bootstrap_intervals(rows, [{"name": name, "higher_is_better": higher_is_better}], seed=seed,
                                recorded={name: value}, recompute=False)
    return None if iv.low is None else (iv.low, iv.high)


def eval_records(folder: Path) -> list[dict]:
    """A version's eval_samples.jsonl records; broken lines are `mlloop check`'s to report."""
    path = folder / EVAL_SAMPLES
    if not path.is_file():
        return []
    try:
        return read_eval_samples(path)[0]
    except (OSError, JsonProblems):
        return []


def render_pictures(project, rules, ranking: Ranking, floors: dict, best: Row, held, report_dir: Path) -> list[Picture]:
    """Write every picture into ``report_dir/pictures/``; the list, in the page's order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    out = report_dir / PICTURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    versions = [r for r in ranking.rows if r.kind != EXTERNAL]
    pictures = [_metric_by_version(plt, ranking, floors, held, rules.seed, out)]
    for fn in (_training_curves, _cost):
        pic = fn(plt, project, versions, out)
        if pic is not None:
            pictures.append(pic)
    samples = eval_records(best.folder)
    pic = _gallery(plt, best, out)
    if pic is not None:
        pictures.append(pic)
    if samples:
        pic = (_confusion(plt, best, samples, out) if _is_labels(rules, samples)
               else _errors(plt, best, samples, ranking.primary, ranking.higher_is_better, out))
        if pic is not None:
            pictures.append(pic)
    return pictures


def _save(plt, fig, out: Path, name: str, title: str, caption: str) -> Picture:
    fig.tight_layout()
    fig.savefig(out / name, format="png")
    plt.close(fig)
    return Picture(f"{PICTURES_DIR}/{name}", title, caption)


# ---- the primary metric ------------------------------------------------------------------------

def _metric_by_version(plt, ranking: Ranking, floors: dict, held, seed: int, out: Path) -> Picture:
    primary = ranking.primary
    rows = sorted(ranking.rows, key=lambda r: (r.kind == EXTERNAL, r.name))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 3), 3.6))
    xs = list(range(len(rows)))
    labelled: set[str] = set()
    for x, row in zip(xs, rows):
        value = row.primary
        if value is None:
            continue
        ax.bar(x, value, width=0.55, color="#9ecae1" if row.kind != EXTERNAL else "#d9d9d9",
               label=None if "valid" in labelled else "validation")
        labelled.add("valid")
        ci = primary_interval(eval_records(row.folder), primary, ranking.higher_is_better, value, seed)
        if ci is not None:
            labelled.add("interval")
            ax.errorbar(x, value, yerr=[[max(value - ci[0], 0)], [max(ci[1] - value, 0)]], fmt="none",
                        ecolor="#08519c", capsize=4, lw=1.2)
        floor = floors.get(row.name)
        if floor is not None and floor.metric == primary:
            ax.hlines(floor.value, x - 0.35, x + 0.35, colors="#d62728", linestyles="--", lw=1.5,
                      label=None if "floor" in labelled else "trivial floor")
            labelled.add("floor")
        test = held.scores.get(row.name) if held is not None else None
        if test is not None and test.value(primary) is not None:
            tv = test.value(primary)
            low, high = test.interval(primary)
            yerr = [[max(tv - low, 0)], [max(high - tv, 0)]] if low is not None else None
            ax.errorbar(x + 0.18, tv, yerr=yerr, fmt="D", color="#31a354", ms=5, capsize=4,
                        label=None if "test" in labelled else "held-out test")
            labelled.add("test")
    ax.set_xticks(xs, [r.name for r in rows], rotation=30 if len(rows) > 6 else 0)
    ax.set_ylabel(primary)
    ax.set_title(f"{primary} by version ({'higher' if ranking.higher_is_better else 'lower'} is better)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # never over a bar
    if "interval" in labelled:
        how = (f", with a 95% bootstrap interval (2,000 resamples seeded with the rules' seed, {primary} "
               "recomputed on each)")
    else:
        how = f" (eval_samples.jsonl gives no interval of {primary} here; see `mlloop compare`)"
    caption = (f"Bars: {primary} on the validation split{how}. Dashed red: the trivial floor."
               + (" Green diamonds: the held-out test score with its 95% interval." if held is not None and held.scores else ""))
    return _save(plt, fig, out, "metric_by_version.png", f"{primary} by version", caption)


# ---- training curves ---------------------------------------------------------------------------

def _series(rows: list[dict], column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        try:
            y = float(r.get(column) or "")
            x = float(r.get("step") or r.get("epoch") or len(xs))
        except ValueError:
            continue
        xs.append(x)
        ys.append(y)
    return xs, ys


def _training_curves(plt, project, versions: list[Row], out: Path) -> Picture | None:
    logs = [(row.name, read_training_log(row.folder)) for row in sorted(versions, key=lambda r: r.name)]
    logs = [(name, log) for name, log in logs if log is not None and log[1]]
    if not logs:
        return None
    fig, (train_ax, val_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, (_, rows) in logs:
        columns = list(rows[0])
        train_col = next((c for c in columns if c.startswith("train_loss")), None)
        val_col = next((c for c in columns if c.startswith("val_loss")), None)
        for ax, col in ((train_ax, train_col), (val_ax, val_col)):
            if col:
                xs, ys = _series(rows, col)
                if ys:
                    ax.plot(xs, ys, marker="o" if len(ys) < 15 else None, ms=3, label=name)
    for ax, title in ((train_ax, "training loss"), (val_ax, "validation loss")):
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7, frameon=False)
    return _save(plt, fig, out, "training_curves.png", "Training curves",
                 "Loss by step from each version's " + ", ".join(sorted({log[0] for _, log in logs})) + " (Lightning's CSVLogger).")


# ---- cost --------------------------------------------------------------------------------------

def read_spec(folder: Path) -> dict:
    return read_spec_quiet(folder / SPEC) or {}


def _cost(plt, project, versions: list[Row], out: Path) -> Picture | None:
    specs = [(row.name, read_spec(row.folder)) for row in sorted(versions, key=lambda r: r.name)]
    specs = [(n, s) for n, s in specs if s]
    if not specs:
        return None
    names = [n for n, _ in specs]

    def number(spec, *keys, scale: float = 1.0):
        value = spec
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return float(value) / scale if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    panels = [("wall time (s)", [number(s, "wall_time_s") for _, s in specs]),
              ("peak memory (MB)", [number(s, "peak_memory_mb") for _, s in specs]),
              ("parameters (millions)", [number(s, "parameters", "total", scale=1e6) for _, s in specs])]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, (title, values) in zip(axes, panels):
        ax.bar(names, [v or 0.0 for v in values], color="#fdae6b")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30 if len(names) > 4 else 0)
        for x, v in enumerate(values):  # a value spec.json does not record is said so, not drawn as 0
            ax.annotate("n/a" if v is None else f"{v:.3g}", (x, v or 0.0), ha="center", va="bottom", fontsize=7)
    devices = ", ".join(f"{n}: {s.get('device_name') or s.get('device') or '?'}" for n, s in specs)
    return _save(plt, fig, out, "cost.png", "Cost per version",
                 f"From each version's spec.json (training run). Devices: {devices}.")


# ---- samples -----------------------------------------------------------------------------------

def _short(value, width: int = 28) -> str:
    if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
        return f"{len(value)}x{len(value[0])} mask"  # a segmentation mask: its numbers say nothing at this size
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return textwrap.shorten(text, width=width, placeholder="…") if len(text) > width else text


def _gallery(plt, best: Row, out: Path) -> Picture | None:
    folders = sorted(p for p in (best.folder / INFER_SAMPLES).glob("[0-9]*") if p.is_dir())[:GALLERY_MAX]
    if not folders:
        return None
    cols = min(4, len(folders))
    rows = (len(folders) + cols - 1) // cols
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for f in folders for p in f.glob("input.*"))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, (2.6 if has_images else 1.7) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, folder in zip(axes.flat, folders):
        meta = read_sample_meta_quiet(folder)
        # a segmentation sample's overlay (the predicted mask over the input) shows what the masks say
        image = next((p for pattern in ("overlay.*", "input.*") for p in sorted(folder.glob(pattern))
                      if p.suffix.lower() in IMAGE_SUFFIXES), None)
        picture = _pil(image) if image is not None else None
        if picture is not None:
            ax.imshow(picture, cmap="gray", aspect="auto" if picture.width > 2 * picture.height else "equal")
        elif image is not None:  # shown as what it is, never a crash of the whole report
            ax.text(0.5, 0.5, f"{image.name}: not a readable image", ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
        else:
            text = next((p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.glob("input.*"))), "")
            ax.text(0.02, 0.62, textwrap.fill(" ".join(text.split())[:200], 36), va="top", family="monospace",
                    fontsize=6.5, transform=ax.transAxes)
        right = str(meta.get("prediction")) == str(meta.get("target"))
        ax.set_title(f"{meta.get('sample_id', folder.name)}\ntruth: {_short(meta.get('target'))}\n"
                     f"pred: {_short(meta.get('prediction'))}", fontsize=7, color="#2b7a2b" if right else "#b2182b")
    return _save(plt, fig, out, "samples.png", f"Sample gallery ({best.name})",
                 f"The first {len(folders)} of {best.name}'s infer_samples/ (a seeded draw from the validation split): "
                 "input (or overlay.png: the predicted mask over it), ground truth and prediction; red titles "
                 "are wrong predictions.")


def _pil(path: Path):
    """The image as RGB, or None when it does not decode (Pillow raises many types)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception:
        return None


# ---- confusion matrix / error list -------------------------------------------------------------

def _is_labels(rules, samples: list[dict]) -> bool:
    targets = [s.get("target") for s in samples]
    scalar = all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in targets)
    return scalar and "classification" in str(rules.task_type or "") and len(set(map(str, targets))) <= 50


def _confusion(plt, best: Row, samples: list[dict], out: Path) -> Picture:
    labels = sorted({str(s.get("target")) for s in samples} | {str(s.get("prediction")) for s in samples})
    index = {label: i for i, label in enumerate(labels)}
    counts = Counter((index[str(s.get("target"))], index[str(s.get("prediction"))]) for s in samples)
    matrix = [[counts.get((i, j), 0) for j in range(len(labels))] for i in range(len(labels))]
    size = max(3.5, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(matrix, cmap="Blues", vmin=0)
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                        color="white" if n > max(map(max, matrix)) / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"Confusion matrix ({best.name}, validation)")
    return _save(plt, fig, out, "confusion_matrix.png", f"Confusion matrix ({best.name})",
                 f"Counts over all {len(samples)} validation samples of {best.name} (eval_samples.jsonl).")


def _errors(plt, best: Row, samples: list[dict], primary: str, higher_is_better: bool, out: Path) -> Picture | None:
    key = primary if any(isinstance(s.get(primary), (int, float)) for s in samples) else "loss"
    scored = [s for s in samples if isinstance(s.get(key), (int, float)) and not isinstance(s.get(key), bool)]
    wrong = [s for s in scored if str(s.get("prediction")) != str(s.get("target"))]
    if not scored:
        return None
    worst = sorted(wrong or scored, key=lambda s: s[key], reverse=not (higher_is_better and key == primary))[:ERRORS_MAX]
    cells = [[_short(s.get("id"), 18), _short(s.get("target"), 34), _short(s.get("prediction"), 34), fmt(s[key])]
             for s in worst]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(cells) + 1.0))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=["id", "ground truth", "prediction", key], loc="upper center",
                     cellLoc="left", colWidths=[0.18, 0.35, 0.35, 0.12])
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    ax.set_title(f"Worst validation samples by {key} ({best.name})")
    return _save(plt, fig, out, "errors.png", f"Error list ({best.name})",
                 f"The {len(cells)} worst of {len(samples)} validation samples of {best.name} by per-sample {key} "
                 f"({len(wrong)} are not exact).")
