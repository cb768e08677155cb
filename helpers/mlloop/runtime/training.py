"""The Lightning set-up every version shares, so that every version writes the same artifacts.

- ``logs/version_N/{metrics.csv, hparams.yaml}`` from ``CSVLogger(<version dir>, name="logs")``;
- ``best.ckpt``: weights only (state_dict + plain-dict hyper-parameters), chosen by ``monitor``
  in ``mode``, no ``best-v1.ckpt`` (``enable_version_counter=False``);
- ``last.ckpt``: the full state (optimizer, schedulers, loops) for resuming, a real file;
- devices from ``num_gpus`` / ``num_nodes`` (DDP when more than one process), artifacts written
  by rank 0 only (Lightning's checkpoint and logger calls already are);
- bf16-mixed on GPUs that support it, 32-true on CPU; no progress bar;
- ``train_loss_step`` (every ``log_every_n_steps``) and ``train_loss_epoch`` logged by the harness
  from the loss ``training_step`` returns, so a script's ``training_step`` only returns it.

Both checkpoints load with ``torch.load(path, weights_only=True)`` as long as the module's
hyper-parameters are a plain dict (``self.save_hyperparameters(hparams)`` with a dict of str,
numbers, bools, None, lists and dicts).
"""

from __future__ import annotations

import math
import os
import platform
import resource
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import MlloopError
from ..layout import BEST_CKPT, LAST_CKPT
from .callbacks import keyed_once, train_loss_logger
from .checkpoint import CheckpointError, load_checkpoint

MONITOR, MODE = "val_loss", "min"


# ---- devices and precision ------------------------------------------------------------------

@dataclass(frozen=True)
class Devices:
    accelerator: str   # "cpu" | "gpu"
    devices: int       # processes per node
    num_nodes: int
    strategy: str      # "auto" | "ddp"

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def label(self) -> str:
        return "cpu" if self.accelerator == "cpu" else "cuda"

    def to_dict(self) -> dict:
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
                "strategy": self.strategy, "world_size": self.world_size}


def resolve_devices(num_gpus: int | None, num_nodes: int = 1, cpu_devices: int | None = None,
                    where: str = "training_config") -> Devices:
    """``num_gpus``: None → one GPU if any is visible, else the CPU; 0 → CPU; n → n GPUs per node.
    ``cpu_devices`` (the ``--CPU_DEVICES`` switch) runs n CPU processes instead (DDP over gloo)."""
    import torch

    num_nodes = int(num_nodes or 1)
    if cpu_devices:
        n = int(cpu_devices)
        return Devices("cpu", n, num_nodes, "ddp" if n * num_nodes > 1 else "auto")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_gpus is None:
        n, acc = (1, "gpu") if visible else (1, "cpu")
    elif num_gpus == 0:
        n, acc = 1, "cpu"
    else:
        if visible < num_gpus:
            raise MlloopError(
                f"{where}.num_gpus is {num_gpus} but {visible} GPU(s) are visible; set it to 0 for the CPU, "
                "null for whatever is available, or run where the GPUs are.")
        n, acc = int(num_gpus), "gpu"
    if acc == "cpu" and num_nodes > 1:
        raise MlloopError(f"{where}.num_nodes is {num_nodes} but training runs on the CPU; multi-node needs GPUs.")
    return Devices(acc, n, num_nodes, "ddp" if n * num_nodes > 1 else "auto")


def resolve_precision(devices: Devices, requested: str | None = None) -> str:
    import torch

    if requested:
        return str(requested)
    if devices.accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def torch_device(devices: Devices):
    import torch

    return torch.device("cuda", 0) if devices.accelerator == "gpu" else torch.device("cpu")


# ---- steps ----------------------------------------------------------------------------------

MIN_USEFUL_BATCH = 4  # below this, BatchNorm statistics are noise: never advise a smaller batch


@dataclass
class Steps:
    per_epoch: int
    total: int
    min_steps_per_epoch: int
    min_total_steps: int
    batch_size: int
    train_samples: int
    epochs: int
    world_size: int = 1
    accumulate: int = 1  # TRAINER's accumulate_grad_batches: one optimizer step per this many batches

    @property
    def too_few(self) -> bool:
        return self.per_epoch < self.min_steps_per_epoch or self.total < self.min_total_steps

    @property
    def warning(self) -> str | None:
        if not self.too_few:
            return None
        parts = []
        if self.per_epoch < self.min_steps_per_epoch:
            parts.append(f"{self.per_epoch} optimizer steps per epoch is below min_steps_per_epoch={self.min_steps_per_epoch}")
        if self.total < self.min_total_steps:
            parts.append(f"{self.total} optimizer steps in total is below min_total_steps={self.min_total_steps}")
        devices = f" on {self.world_size} devices" if self.world_size > 1 else ""
        if self.accumulate > 1:
            devices += f", accumulate_grad_batches={self.accumulate}"
        per_rank = self.train_samples / self.world_size / self.accumulate
        b_needed = max(1, math.floor(min(per_rank / self.min_steps_per_epoch,
                                         per_rank * self.epochs / self.min_total_steps)))
        advice = []
        if self.per_epoch > 0:
            advice.append(f"raise training_config.epochs to ≥ {math.ceil(self.min_total_steps / self.per_epoch)} "
                          "(the user's rules)")
        if MIN_USEFUL_BATCH <= b_needed < self.batch_size:
            advice.append(f"use a batch size ≤ {b_needed} (training_config.batch_size in the rules, or BATCH_SIZE "
                          "in the next version's script when the rules leave it open)")
        elif b_needed < self.batch_size:
            advice.append(f"(a batch small enough would be ≤ {b_needed}: too small for BatchNorm statistics, so "
                          "more epochs or more data is the way)")
        tail = f"; to fix it, {' or '.join(advice)}" if advice else ""
        return (" and ".join(parts) + f" (batch {self.batch_size}, {self.train_samples} training samples, "
                f"{self.epochs} epoch(s){devices}): the model may not learn{tail}.")

    def to_dict(self) -> dict:
        out = {"per_epoch": self.per_epoch, "total": self.total, "min_steps_per_epoch": self.min_steps_per_epoch,
               "min_total_steps": self.min_total_steps, "too_few": self.too_few, "batch_size": self.batch_size,
               "train_samples": self.train_samples, "epochs": self.epochs, "world_size": self.world_size}
        if self.accumulate > 1:
            out["accumulate_grad_batches"] = self.accumulate
        if self.warning:
            out["warning"] = self.warning
        return out


def count_steps(train_samples: int, batch_size: int, epochs: int, min_steps_per_epoch: int, min_total_steps: int,
                world_size: int = 1, accumulate: int = 1) -> Steps:
    """Optimizer steps as the templates' training loaders give them: a DistributedSampler under
    DDP, and drop_last when the split holds more than one batch (a last batch of one sample
    breaks BatchNorm). With ``accumulate`` > 1, Lightning steps the optimizer every ``accumulate``
    batches and once more for a shorter remainder at the end of the epoch."""
    per_rank = math.ceil(train_samples / world_size) if train_samples else 0
    batches = (per_rank // batch_size if per_rank > batch_size else 1) if per_rank else 0
    per_epoch = math.ceil(batches / max(1, accumulate))
    return Steps(per_epoch, per_epoch * epochs, min_steps_per_epoch, min_total_steps, batch_size,
                 train_samples, epochs, world_size, max(1, accumulate))


def derive_train_batch_size(optimal: int, train_samples: int, epochs: int, min_steps_per_epoch: int,
                            min_total_steps: int, floor: int = 1, world_size: int = 1, accumulate: int = 1) -> int:
    """The training batch size when the rules leave it open: the largest power of two ≤ the memory
    fit that still gives ``min_steps_per_epoch`` and ``min_total_steps``; ``floor`` if none does."""
    b = 1 << (max(1, optimal).bit_length() - 1)
    floor = max(1, min(floor, b))
    while b > floor:
        s = count_steps(train_samples, b, epochs, min_steps_per_epoch, min_total_steps, world_size, accumulate)
        if not s.too_few:
            return b
        b //= 2
    return floor


# ---- the Trainer ----------------------------------------------------------------------------

def build_trainer(version_dir: Path, *, max_epochs: int, devices: Devices, precision: str,
                  monitor: str = MONITOR, mode: str = MODE, steps_per_epoch: int | None = None,
                  deterministic: bool = False, callbacks: list | None = None, **trainer_kwargs):
    """``(trainer, best_callback, last_callback)`` writing into ``version_dir``."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    if mode not in ("min", "max"):
        raise MlloopError(f"checkpoint mode must be 'min' or 'max', got {mode!r}.")
    version_dir = Path(version_dir)
    checkpoint = keyed_once(ModelCheckpoint)
    best = checkpoint(dirpath=version_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                      save_weights_only=True, save_last=False, enable_version_counter=False,
                      auto_insert_metric_name=False)
    # monitor=None + save_top_k=1: one file, overwritten at every epoch end with the full state.
    last = checkpoint(dirpath=version_dir, filename="last", monitor=None, save_top_k=1,
                      save_weights_only=False, save_last=False, enable_version_counter=False,
                      auto_insert_metric_name=False)
    logger = CSVLogger(save_dir=str(version_dir), name="logs")
    log_every = max(1, min(50, steps_per_epoch or 50))
    kwargs: dict[str, Any] = dict(
        default_root_dir=str(version_dir), max_epochs=max_epochs, accelerator=devices.accelerator,
        devices=devices.devices, num_nodes=devices.num_nodes, strategy=devices.strategy, precision=precision,
        logger=logger, callbacks=[best, last, train_loss_logger(), *(callbacks or [])], enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=log_every, deterministic=deterministic or None,
        benchmark=(devices.accelerator == "gpu" and not deterministic))
    if devices.strategy == "ddp" and devices.accelerator == "cpu":
        from lightning.pytorch.strategies import DDPStrategy

        kwargs["strategy"] = DDPStrategy(process_group_backend="gloo")
    kwargs.update(trainer_kwargs)
    return Trainer(**kwargs), best, last


def quiet_lightning() -> None:
    """Silence Lightning's advice that does not apply to mlloop's fixed layout."""
    import logging

    for pattern in (r".*Checkpoint directory .* exists and is not empty.*",
                    r".*does not have many workers.*",
                    r".*The number of training batches .* is smaller than the logging interval.*",
                    r".*GPU available but not used.*",
                    r".*`self.log\(.*on_epoch=True.*` but.*",
                    r".*Consider setting `persistent_workers=True`.*",
                    r".*isinstance\(treespec, LeafSpec\).*",
                    # train_loss is logged per step without a cross-process sync (that would cost a
                    # collective per step); its epoch mean under DDP is rank 0's, val_* are synced.
                    r".*when logging on epoch level in distributed setting.*"):
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed", "lightning.fabric.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)


def best_checkpoint_info(best_cb, monitor: str, mode: str) -> dict:
    """``{monitor, mode, score, epoch, step}`` of best.ckpt (epoch/step read from the file)."""
    info: dict[str, Any] = {"monitor": monitor, "mode": mode, "score": None, "epoch": None, "step": None,
                            "file": BEST_CKPT}
    score = best_cb.best_model_score
    if score is not None:
        value = float(score)
        info["score"] = value if math.isfinite(value) else None
    path = best_cb.best_model_path
    if path and os.path.isfile(path):
        try:
            meta = load_checkpoint(path, project_root=os.path.dirname(os.path.abspath(path)), mmap=True)
        except CheckpointError as exc:
            raise MlloopError(
                f"best.ckpt does not load with weights_only=True ({exc}); pass save_hyperparameters a plain "
                "dict (str, numbers, bools, None, lists, dicts) and retrain.") from None
        info["epoch"], info["step"] = meta.get("epoch"), meta.get("global_step")
    return info


# ---- what spec.json records about the environment -----------------------------------------

def libraries() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "lightning", "timm", "torchmetrics", "torchvision", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    try:
        out["mlloop"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return out


def device_name(devices: Devices) -> str:
    import torch

    if devices.accelerator == "gpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine() or "cpu"


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(devices: Devices) -> tuple[float, str]:
    """``(MB, source)``: the GPU's max allocated memory, or this process's max resident set."""
    import torch

    if devices.accelerator == "gpu" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20, "torch.cuda.max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    mb = rss / 2 ** 20 if platform.system() == "Darwin" else rss / 1024
    return mb, "process max RSS"


def file_sizes(folder: Path, names: list[str]) -> dict:
    return {n: (folder / n).stat().st_size for n in names if (folder / n).is_file()}


# ---- one fit --------------------------------------------------------------------------------

@dataclass
class FitOutcome:
    trainer: Any
    wall_time_s: float
    best: dict
    global_step: int
    epochs_run: int
    is_global_zero: bool


def fit(version_dir: Path, module, datamodule, *, epochs: int, devices: Devices, precision: str,
        monitor: str = MONITOR, mode: str = MODE, steps_per_epoch: int | None = None,
        deterministic: bool = False, **trainer_kwargs) -> FitOutcome:
    """Train ``module`` on ``datamodule`` and check that best.ckpt and last.ckpt were written."""
    import time

    trainer, best_cb, _last_cb = build_trainer(version_dir, max_epochs=epochs, devices=devices, precision=precision,
                                               monitor=monitor, mode=mode, steps_per_epoch=steps_per_epoch,
                                               deterministic=deterministic, **trainer_kwargs)
    reset_peak_memory()
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    wall = time.perf_counter() - t0
    best = {"monitor": monitor, "mode": mode}
    if trainer.is_global_zero:
        version_dir = Path(version_dir)
        missing = [n for n in (BEST_CKPT, LAST_CKPT) if not (version_dir / n).is_file()]
        if missing:
            raise MlloopError(
                f"{', '.join(missing)} not written after training: validation_step must log {monitor!r} "
                "(self.log(..., on_epoch=True)) and at least one epoch must finish.")
        best = best_checkpoint_info(best_cb, monitor, mode)
    return FitOutcome(trainer, wall, best, int(trainer.global_step), int(trainer.current_epoch),
                      bool(trainer.is_global_zero))
