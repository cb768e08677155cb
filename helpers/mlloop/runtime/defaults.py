"""Defaults that fit this machine and this data: torch threads, DataLoader workers, image size.

torch picks its intra-op threads from the cores it sees, not from the CPUs this process may use:
in a container with a 2-CPU quota on a 64-core host it spins 64 threads and trains several
times slower. ``start`` therefore sets the threads from the usable CPUs (affinity, cgroup v2
``cpu.max``, cgroup v1 ``cpu.cfs_quota_us``) unless the user chose (``--THREADS=N``,
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or ``torch.set_num_threads`` before ``start``).
A script setting left ``None`` is filled here: ``NUM_WORKERS`` from the usable CPUs and the
number of training samples, ``IMAGE_SIZE`` from the images' median side, for text lines
``H_TARGET`` / ``W_BUCKETS`` from their median height and width quartiles, and ``CLIP_SECONDS`` from
the audio clips' median duration. Every choice comes with
its reason, recorded in spec.json (``runtime_defaults``) and in the settings' sources.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from pathlib import Path

from ..errors import MlloopError
from .seeding import seeded_sample

TINY_DATASET = 512        # below this many samples worker start-up costs more than it saves
SAMPLES_PER_WORKER = 1000  # one worker more per this many training samples, up to the CPUs
MAX_CPU_WORKERS = 4        # training on the CPU: the model needs the cores more than the loader
MAX_GPU_WORKERS = 8
IMAGE_MULTIPLE = 32        # timm backbones downsample by 32
IMAGE_MIN, IMAGE_MAX = 32, 224  # bigger costs quadratic time for detail a first model rarely uses
IMAGE_SAMPLE = 256         # images opened (headers only) when df_meta.parquet has no sizes
LINE_MULTIPLE = 8          # a line's height: the OCR head reads stride-8 features (OUT_INDICES [2])
LINE_MIN, LINE_MAX = 16, 64  # taller lines cost time for no more characters per frame
BUCKET_MULTIPLE = 32       # bucket widths: the widest backbone stride
BUCKET_QUANTILES = (0.25, 0.5, 0.75, 1.0)  # four widths: little padding, few distinct batch shapes
BUCKET_MAX = 1024          # wider lines are squeezed to this (and the pipeline's filter says how many)
CLIP_STEP = 0.25           # clip lengths are rounded to quarter seconds: a few padded frames, not odd sizes
CLIP_MAX = 30.0            # longer fixed clips cost memory for context a first model rarely uses

_torch_default: int | None = None  # torch's own thread count, seen before the script's code ran
_set_by_mlloop: int | None = None  # what start() set last (a second start in one process is not "the user")


def remember_torch_threads() -> None:
    """Note torch's own thread count once, if torch is already imported (the templates import it
    before mlloop.script), so a later ``torch.set_num_threads`` by the script can be told apart."""
    global _torch_default
    if _torch_default is None and "torch" in sys.modules:
        _torch_default = sys.modules["torch"].get_num_threads()


# ---- usable CPUs ------------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = Path("/")) -> tuple[float | None, str]:
    """``(CPUs, source)`` allowed by the cgroup quota (v2 ``cpu.max``, v1 ``cfs_quota_us``), the
    tightest along this process's cgroup path; ``(None, ...)`` when there is no quota."""
    base = root / "sys/fs/cgroup"
    lines = (_read(root / "proc/self/cgroup") or "").splitlines()
    limits: list[tuple[float, str]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # cgroup v2: <base>/<path>/cpu.max = "max 100000" or "200000 100000"
            folders = [base / rel] + [base / p for p in _parents(rel)]
            for folder in folders:
                text = _read(folder / "cpu.max")
                if text and not text.startswith("max"):
                    quota, period = (text.split() + ["100000"])[:2]
                    limits.append((int(quota) / int(period), f"cgroup v2 {(folder / 'cpu.max').relative_to(root)}"))
        elif "cpu" in controllers.split(","):
            for mount in (base / controllers, base / "cpu", base / "cpu,cpuacct"):
                for folder in [mount / rel, mount]:
                    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                    if quota and period and quota.lstrip("-").isdigit() and int(quota) > 0 and int(period) > 0:
                        limits.append((int(quota) / int(period),
                                       f"cgroup v1 {(folder / 'cpu.cfs_quota_us').relative_to(root)}"))
    if not limits:
        return None, "no cgroup CPU quota"
    return min(limits)


def _parents(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


def usable_cpus(root: Path = Path("/")) -> tuple[int, str]:
    """``(CPUs this process may use, why)``: the affinity mask, capped by the cgroup quota."""
    try:
        affinity = len(os.sched_getaffinity(0))
        seen = f"affinity {affinity}"
    except AttributeError:  # macOS, Windows
        affinity = os.cpu_count() or 1
        seen = f"os.cpu_count() {affinity}"
    quota, source = cgroup_cpu_limit(root)
    if quota is None:
        return affinity, f"{seen}, {source}"
    n = max(1, min(affinity, math.floor(quota)))
    return n, f"{seen}, quota {quota:g} CPUs ({source})"


# ---- threads ----------------------------------------------------------------------------------

def set_threads(switch: int | None, processes: int = 1) -> dict:
    """Set torch's intra-op threads unless the user chose them; ``{"value", "why"}`` either way."""
    global _set_by_mlloop
    import torch

    remember_torch_threads()
    current = torch.get_num_threads()
    if switch:
        torch.set_num_threads(int(switch))
        _set_by_mlloop = int(switch)
        return {"value": int(switch), "why": "the THREADS switch"}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").strip():
            return {"value": current, "why": f"{var}={os.environ[var].strip()} (torch follows it; left as set)"}
    if current not in (_torch_default, _set_by_mlloop):
        return {"value": current, "why": "set by the script (torch.set_num_threads before start); left as set"}
    n, why = default_threads(processes)
    torch.set_num_threads(n)
    _set_by_mlloop = n
    if processes > 1:  # Lightning's DDP launcher would set its own (cores // processes) unless this is set
        os.environ["OMP_NUM_THREADS"] = str(n)
        why += "; exported as OMP_NUM_THREADS for the DDP processes"
    return {"value": n, "why": f"{why}; torch's own choice was {_torch_default}"}


def default_threads(processes: int = 1) -> tuple[int, str]:
    """``(threads, why)``: the usable CPUs, shared among ``processes``, fewer when the machine's
    CPUs already each have a runnable process."""
    cpus, why = usable_cpus()
    n = max(1, cpus // max(1, processes))
    text = f"{cpus} usable CPUs ({why})" + (f", shared by {processes} processes" if processes > 1 else "")
    load = load_per_cpu()
    if load > 1.0:
        # threads that wait for each other at every parallel region lose their turn and spin:
        # many times slower than fewer threads (benchmarks/train_bench.py --only threads)
        n = max(1, math.floor(n / load))
        text += f", {load:.1f} runnable processes per CPU already (load average): {n}"
    return n, text


def load_per_cpu() -> float:
    """The 1-minute load average per CPU of the machine (0 where the OS does not say)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return 0.0


# ---- DataLoader workers -----------------------------------------------------------------------

def choose_workers(train_samples: int, cpus: int, accelerator: str = "cpu") -> dict:
    """Worker processes for the DataLoaders: 0 for tiny datasets or one CPU, never more than
    ``cpus - 1`` (the main process trains)."""
    if cpus <= 1:
        return {"value": 0, "why": f"{cpus} usable CPU: data is loaded in the main process"}
    if train_samples < TINY_DATASET:
        return {"value": 0, "why": f"{train_samples} training samples (< {TINY_DATASET}): starting workers costs "
                                   "more than they save"}
    cap = MAX_GPU_WORKERS if accelerator == "gpu" else MAX_CPU_WORKERS
    n = max(1, min(cpus - 1, cap, math.ceil(train_samples / SAMPLES_PER_WORKER)))
    return {"value": n, "why": f"{train_samples} training samples, {cpus} usable CPUs: one worker per "
                               f"{SAMPLES_PER_WORKER} samples, at most {min(cpus - 1, cap)} "
                               f"(CPUs - 1, {cap} on {accelerator})"}


# ---- image size -------------------------------------------------------------------------------

def _sizes_from_meta(prepdata_dir: Path) -> list[tuple[int, int]] | None:
    path = prepdata_dir / "common" / "df_meta.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    names = set(pq.read_schema(path).names)
    if not {"width", "height"} <= names:
        return None
    table = pq.read_table(path, columns=[c for c in ("width", "height", "split") if c in names]).to_pylist()
    rows = [r for r in table if r.get("split", "train") == "train"] or table
    sizes = [(int(r["width"]), int(r["height"])) for r in rows if r.get("width") and r.get("height")]
    return sizes or None


def _sizes_from_index(prepdata_dir: Path, records: list[dict], field: str) -> list[tuple[int, int]]:
    from PIL import Image


    by_id = {str(r.get("id")): r for r in records if r.get(field)}
    sizes = []
    for rid in seeded_sample(sorted(by_id), IMAGE_SAMPLE, 0):
        with Image.open(prepdata_dir / "train" / by_id[rid][field]) as image:  # reads the header only
            sizes.append(tuple(image.size))
    return sizes


def train_image_sizes(prepdata_dir: Path, records: list[dict], field: str, setting: str) -> tuple[list, str]:
    """(width, height) of the training images: common/df_meta.parquet, else the images' headers."""
    prepdata_dir = Path(prepdata_dir)
    sizes, source = _sizes_from_meta(prepdata_dir), "common/df_meta.parquet"
    if sizes is None:
        sizes, source = _sizes_from_index(prepdata_dir, records, field), f"{min(len(records), IMAGE_SAMPLE)} train images"
    if not sizes:
        raise MlloopError(f"{setting} is None (from the data), but no training image size could be read from "
                          f"{prepdata_dir.name}/common/df_meta.parquet or the train index's {field!r}; set {setting}.")
    return sizes, source


def choose_image_size(prepdata_dir: Path, records: list[dict], field: str = "image_path") -> dict:
    """The square input side: the training images' median longer side, rounded to a multiple of
    32, within [32, 224]; from common/df_meta.parquet, else the images themselves."""
    sizes, source = train_image_sizes(prepdata_dir, records, field, "IMAGE_SIZE")
    median = statistics.median(max(w, h) for w, h in sizes)
    size = int(min(IMAGE_MAX, max(IMAGE_MIN, IMAGE_MULTIPLE * round(median / IMAGE_MULTIPLE))))
    return {"value": size, "why": f"median longer side {median:g} px over {len(sizes)} images ({source}), rounded "
                                  f"to a multiple of {IMAGE_MULTIPLE} within [{IMAGE_MIN}, {IMAGE_MAX}]"}


def choose_line_height(prepdata_dir: Path, records: list[dict], field: str = "image_path") -> dict:
    """A text line's height after resizing: the training lines' median height, rounded to a
    multiple of 8 within [16, 64]."""
    sizes, source = train_image_sizes(prepdata_dir, records, field, "H_TARGET")
    median = statistics.median(h for _, h in sizes)
    height = int(min(LINE_MAX, max(LINE_MIN, LINE_MULTIPLE * round(median / LINE_MULTIPLE))))
    return {"value": height, "why": f"median line height {median:g} px over {len(sizes)} images ({source}), rounded "
                                    f"to a multiple of {LINE_MULTIPLE} within [{LINE_MIN}, {LINE_MAX}]"}


def choose_width_buckets(prepdata_dir: Path, records: list[dict], height: int, field: str = "image_path") -> dict:
    """Padded widths: the quartiles and the maximum of the lines' widths once resized to
    ``height``, each rounded up to a multiple of 32, at most 1024."""
    sizes, source = train_image_sizes(prepdata_dir, records, field, "W_BUCKETS")
    widths = sorted(w * height / h for w, h in sizes)
    picks = [widths[min(len(widths) - 1, math.ceil(q * len(widths)) - 1)] for q in BUCKET_QUANTILES]
    buckets = sorted({min(BUCKET_MAX, BUCKET_MULTIPLE * max(1, math.ceil(w / BUCKET_MULTIPLE))) for w in picks})
    return {"value": buckets, "why": f"quartiles and maximum of {len(sizes)} line widths at height {height} "
                                     f"({source}), rounded up to a multiple of {BUCKET_MULTIPLE}, at most {BUCKET_MAX}"}


# ---- audio clip length ------------------------------------------------------------------------

def choose_clip_seconds(records: list[dict], field: str = "duration_sec") -> dict:
    """The fixed clip length: the training clips' median ``duration_sec`` (the pipeline fills it
    when it decodes each clip), rounded to a multiple of CLIP_STEP within [CLIP_STEP, CLIP_MAX]."""
    durations = [float(r[field]) for r in records if isinstance(r.get(field), (int, float)) and r[field] > 0]
    if not durations:
        raise MlloopError(f"CLIP_SECONDS is None (from the data), but no train record has {field!r} "
                          "(01_data_pipeline.py fills it when it decodes the clips); set CLIP_SECONDS.")
    median = statistics.median(durations)
    seconds = min(CLIP_MAX, max(CLIP_STEP, CLIP_STEP * round(median / CLIP_STEP)))
    return {"value": seconds, "why": f"median {field} {median:g} s over {len(durations)} train clips, rounded to a "
                                     f"multiple of {CLIP_STEP:g} s within [{CLIP_STEP:g}, {CLIP_MAX:g}]"}


# ---- all of it, for start() -------------------------------------------------------------------

def apply(run) -> dict:
    """Set the threads and fill the settings left None (``NUM_WORKERS``, ``IMAGE_SIZE``, ``H_TARGET``,
    ``W_BUCKETS``, ``CLIP_SECONDS``); ``{name: {value, why}}``."""
    chosen = {"threads": set_threads(run.switches.get("THREADS"), run.devices.devices)}  # processes on this node
    settings, sources = run.settings, run.sources
    if "NUM_WORKERS" in settings and settings["NUM_WORKERS"] is None:
        n = len(run.full_index("train"))
        if run.is_smoke:
            n = min(n, int(run.smoke_config["train_samples"]))
        cpus, _ = usable_cpus()
        chosen["num_workers"] = choose_workers(n, cpus, run.devices.accelerator)
    if "IMAGE_SIZE" in settings and settings["IMAGE_SIZE"] is None:
        chosen["image_size"] = choose_image_size(run.prepdata_dir, run.full_index("train"))
    if "H_TARGET" in settings and settings["H_TARGET"] is None:
        chosen["h_target"] = choose_line_height(run.prepdata_dir, run.full_index("train"))
    if "W_BUCKETS" in settings and settings["W_BUCKETS"] is None:
        height = chosen["h_target"]["value"] if "h_target" in chosen else settings.get("H_TARGET")
        if not isinstance(height, int):
            raise MlloopError("W_BUCKETS is None (from the data) but H_TARGET is not an integer; set H_TARGET or "
                              "leave it None too.")
        chosen["w_buckets"] = choose_width_buckets(run.prepdata_dir, run.full_index("train"), height)
    if "CLIP_SECONDS" in settings and settings["CLIP_SECONDS"] is None:
        chosen["clip_seconds"] = choose_clip_seconds(run.full_index("train"))
    for name, key in (("num_workers", "NUM_WORKERS"), ("image_size", "IMAGE_SIZE"), ("h_target", "H_TARGET"),
                      ("w_buckets", "W_BUCKETS"), ("clip_seconds", "CLIP_SECONDS")):
        if name in chosen:
            settings[key] = chosen[name]["value"]
            sources[key] = f"runtime default: {chosen[name]['why']}"
    for name, c in chosen.items():
        run.log(f"{name}: {c['value']} ({c['why']})")
    return chosen


remember_torch_threads()  # at import: the templates import torch before mlloop.script
