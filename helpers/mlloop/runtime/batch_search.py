"""The memory-fit batch-size search of build-baseline Step 2, as the seed defines it.

Candidates are the powers of two in ``[min_batch_size, max_batch_size]``, tried largest first,
``steps`` training steps each (forward, backward, optimizer step); the first that runs without
running out of memory wins. The result is always a size that was actually trained with, inside
the range; if even the smallest fails the search stops with a clear error. Errors other than
out-of-memory are bugs, not memory limits: they propagate at once.

Lightning's ``Tuner.scale_batch_size`` is not used: with ``max_val`` set it can return a size it
never tried (``benchmarks/train_bench.py`` shows it; docs/contracts.md, "Batch-size search").
"""

from __future__ import annotations

import copy
import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import MlloopError
from .loader import Batches

OOM_PATTERNS = (
    "out of memory",                              # CUDA, HIP, MPS: "CUDA out of memory. Tried to allocate ..."
    "DefaultCPUAllocator: can't allocate memory",  # CPU allocator
    "CUDNN_STATUS_NOT_SUPPORTED",                  # cuDNN refusing a too-large batch (Lightning treats it as OOM)
    "CUBLAS_STATUS_ALLOC_FAILED",
)
# After these the CUDA context is unusable: retrying would hide the real failure (timm's rule).
FATAL_PATTERNS = ("illegal memory access", "device-side assert")


class BatchSearchError(MlloopError):
    """No candidate fits (or the range holds none); carries the trials for the smoke report."""

    def __init__(self, message: str, trials: list["Trial"] | None = None):
        super().__init__(message)
        self.trials = list(trials or [])


@dataclass
class Trial:
    batch_size: int
    status: str          # PASS | OOM
    steps: int           # steps completed
    seconds: float
    error: str = ""


@dataclass
class SearchResult:
    batch_size: int
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    candidates: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"optimal_batch_size": self.batch_size, "candidates": self.candidates,
                "seconds": round(self.seconds, 3),
                "trials": [t.__dict__ | {"seconds": round(t.seconds, 3)} for t in self.trials]}


def candidates(min_batch_size: int, max_batch_size: int) -> list[int]:
    """Powers of two in ``[min, max]``, largest first."""
    if min_batch_size < 1 or max_batch_size < min_batch_size:
        raise BatchSearchError(
            f"batch-size range [{min_batch_size}, {max_batch_size}] is empty; set baseline_smoke_test."
            "min_batch_size ≤ max_batch_size (both ≥ 1).")
    out, p = [], 1
    while p <= max_batch_size:
        if p >= min_batch_size:
            out.append(p)
        p *= 2
    if not out:
        raise BatchSearchError(
            f"no power of two lies in [{min_batch_size}, {max_batch_size}]; widen baseline_smoke_test."
            "min_batch_size / max_batch_size.")
    return out[::-1]


def is_oom(exc: BaseException) -> bool:
    """Out of memory, by type or by the message patterns torch, cuDNN and cuBLAS use."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    if any(p in text for p in FATAL_PATTERNS):
        return False
    return any(p in text for p in OOM_PATTERNS)


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def search(train_steps: Callable[[int, int], Any], min_batch_size: int, max_batch_size: int,
           steps: int = 10, log: Callable[[str], None] | None = None) -> SearchResult:
    """Run ``train_steps(batch_size, steps)`` for each candidate, largest first; first success wins.

    ``train_steps`` must run exactly ``steps`` optimizer steps at ``batch_size`` and return the
    number of steps done (or None); it is the caller's job to start each trial from the same
    weights (``module_trainer`` below does).
    """
    sizes = candidates(min_batch_size, max_batch_size)
    trials: list[Trial] = []
    t0 = time.perf_counter()
    for bs in sizes:
        start = time.perf_counter()
        message = None
        try:
            done = train_steps(bs, steps)
        except Exception as exc:  # noqa: BLE001 - anything but OOM re-raises below
            if not is_oom(exc):
                raise
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            done = None
        if message is None:
            trials.append(Trial(bs, "PASS", steps if done is None else int(done), time.perf_counter() - start))
            if log:
                log(f"batch size {bs}: PASS ({steps} steps)")
            return SearchResult(bs, trials, time.perf_counter() - t0, sizes)
        # Outside the except block: the traceback (and the tensors its frames hold) is gone.
        free_memory()
        trials.append(Trial(bs, "OOM", 0, time.perf_counter() - start, message))
        if log:
            log(f"batch size {bs}: out of memory")
    raise BatchSearchError(
        f"even the smallest batch size {sizes[-1]} ran out of memory (tried {', '.join(map(str, sizes))}); "
        "use a smaller model or input size, a smaller baseline_smoke_test.min_batch_size, or a device with more memory.",
        trials)


# ---- the trial itself: N real training steps of a LightningModule ---------------------------

def optimizer_of(configured: Any):
    """The (first) optimizer from whatever ``configure_optimizers`` returned."""
    import torch

    if isinstance(configured, torch.optim.Optimizer):
        return configured
    if isinstance(configured, dict):
        return configured["optimizer"]
    if isinstance(configured, (list, tuple)) and configured:
        first = configured[0]
        if isinstance(first, (list, tuple)):
            return first[0]
        return optimizer_of(first)
    raise MlloopError("configure_optimizers() returned no optimizer; return one (or a dict with 'optimizer').")


def to_device(batch: Any, device) -> Any:
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast_for(precision: str, device):
    import contextlib

    import torch

    if precision.startswith("bf16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


class StateKeeper:
    """Snapshot a module's weights (on CPU) and put them back: trials leave the model as found."""

    def __init__(self, module):
        self.module = module
        self.state = copy.deepcopy({k: v.detach().cpu() for k, v in module.state_dict().items()})
        self.training = module.training
        self.device = next((p.device for p in module.parameters()), None)

    def restore(self) -> None:
        self.module.load_state_dict(self.state)
        self.module.zero_grad(set_to_none=True)
        self.module.train(self.training)
        if self.device is not None:
            self.module.to(self.device)


def run_steps(module, batch, steps: int, device, precision: str = "32-true",
              on_step: Callable[[int, float], Any] | None = None) -> int:
    """``steps`` optimizer steps of ``module.training_step`` on one batch (no Trainer).

    The same code the probe uses: a fresh optimizer from ``configure_optimizers``, the model's own
    loss, autocast for mixed precision. ``on_step(step, loss)`` may return True to stop early.
    """
    import warnings

    import torch

    module.to(device)
    module.train()
    optimizer = optimizer_of(module.configure_optimizers())
    batch = to_device(batch, device)
    scaler = torch.amp.GradScaler(device.type) if precision.startswith("16") and device.type == "cuda" else None
    done = 0
    with warnings.catch_warnings():
        # training_step's self.log() warns when no Trainer is attached; here that is expected.
        warnings.filterwarnings("ignore", message=".*self.log.*")
        warnings.filterwarnings("ignore", message=".*trainer.*")
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with autocast_for(precision, device):
                out = module.training_step(batch, step)
            loss = out["loss"] if isinstance(out, dict) else out
            if loss is None:
                raise MlloopError("training_step returned None; it must return the loss tensor.")
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            done += 1
            if on_step is not None and on_step(step, float(loss.detach().float().cpu())):
                break
    del optimizer
    module.zero_grad(set_to_none=True)
    return done


def cycled_batch(dataset, batch_size: int, collate_fn=None):
    """A batch of exactly ``batch_size`` samples, cycling through ``dataset`` when it is smaller:
    the memory a size needs does not depend on which samples fill it. ``dataset`` may be the
    script's DataLoader (its collate_fn builds the batch: ``mlloop.runtime.loader``)."""
    return Batches(dataset, collate_fn).cycled(batch_size)


def module_trainer(module, dataset, device, precision: str = "32-true", collate_fn=None) -> tuple[Callable, StateKeeper]:
    """``train_steps(batch_size, steps)`` for ``search``, starting every trial from the same weights;
    batches come from ``dataset`` (the script's DataLoader, or a dataset and ``collate_fn``)."""
    keeper = StateKeeper(module)
    batches = Batches(dataset, collate_fn)

    def train_steps(batch_size: int, steps: int) -> int:
        try:
            batch = batches.cycled(batch_size)
            return run_steps(module, batch, steps, device, precision)
        finally:
            keeper.restore()

    return train_steps, keeper
