"""The learnability probe (issue 7): can this pipeline memorise one small batch?

A smoke test proves a script runs, not that it learns. The probe trains on one small fixed
batch (a seeded draw from the training split) for a bounded number of steps, with the model's
own ``training_step`` and ``configure_optimizers``, and requires both:

- the loss to fall by ``loss_drop_factor`` (first loss / median of the last five), and
- the task metric on that batch (``module.score_batch(batch)``, eval mode) to reach a level
  that a model which has memorised 8 samples reaches: accuracy ≥ 0.9, CER ≤ 0.1, R² ≥ 0.9 …
  (``metric_threshold`` in the rules overrides the level).

It stops as soon as both hold. A FAIL stops the smoke test like a contract FAIL, with the loss
curve and a hint at the usual causes: learning rate, frozen parameters, a loss that does not
depend on the parameters, a loss/label mismatch, or decoding. The model's weights are restored
afterwards. Settings: ``baseline_smoke_test.learnability_probe`` in the rules.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from ..errors import MlloopError
from ..rules import KNOWN_METRICS
from .batch_search import StateKeeper, autocast_for, optimizer_of, run_steps, to_device
from .loader import Batches

# Level the task metric must reach on the memorised batch: (threshold, higher_is_better).
DEFAULT_LEVELS: dict[str, tuple[float, bool]] = {
    "accuracy": (0.9, True), "exact_match": (0.9, True), "balanced_accuracy": (0.9, True),
    "macro_f1": (0.9, True), "f1": (0.9, True),
    "cer": (0.1, False), "wer": (0.2, False),
    "r2": (0.9, True),
    "miou": (0.8, True), "dice": (0.85, True), "pixel_accuracy": (0.95, True),
    "map_50": (0.8, True), "map": (0.5, True),  # detection: 8 memorised images are found at IoU 0.5
}
CHECK_EVERY = 10  # steps between metric checks (the metric is a forward pass in eval mode)


class ProbeError(MlloopError):
    """The probe failed: the smoke test stops before the batch search."""

    def __init__(self, message: str, result: "ProbeResult"):
        super().__init__(message)
        self.result = result


@dataclass
class ProbeResult:
    status: str                       # PASS | FAIL | SKIP
    samples: int = 0
    sample_ids: list = field(default_factory=list)
    steps: int = 0
    max_steps: int = 0
    seconds: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) at every step
    metric_curve: list[tuple[int, float]] = field(default_factory=list)
    initial_loss: float | None = None
    final_loss: float | None = None
    loss_drop: float | None = None
    loss_drop_factor: float = 10.0
    metric: str | None = None
    metric_value: float | None = None
    threshold: float | None = None
    higher_is_better: bool | None = None
    diagnosis: str = ""
    note: str = ""

    @property
    def loss_ok(self) -> bool:
        return self.loss_drop is not None and self.loss_drop >= self.loss_drop_factor

    @property
    def metric_ok(self) -> bool:
        if self.metric is None or self.threshold is None:
            return True
        if self.metric_value is None or not math.isfinite(self.metric_value):
            return False
        return self.metric_value >= self.threshold if self.higher_is_better else self.metric_value <= self.threshold

    def summary(self) -> str:
        if self.status == "SKIP":
            return f"learnability probe SKIP ({self.note})"
        drop = f"{self.loss_drop:.1f}×" if self.loss_drop is not None and math.isfinite(self.loss_drop) else "n/a"
        bits = [f"loss {_fmt(self.initial_loss)} → {_fmt(self.final_loss)} ({drop}, needs ≥ {self.loss_drop_factor:g}×)"]
        if self.metric:
            op = "≥" if self.higher_is_better else "≤"
            level = f", needs {op} {self.threshold:g}" if self.threshold is not None else ""
            bits.append(f"{self.metric} {_fmt(self.metric_value)}{level}")
        return f"learnability probe {self.status} after {self.steps} steps on {self.samples} samples: " + "; ".join(bits)

    def sampled_curve(self, rows: int = 12) -> list[tuple[int, float, float | None]]:
        """About ``rows`` (step, loss, metric) points for the report, first and last included."""
        if not self.curve:
            return []
        metrics = dict(self.metric_curve)
        n = len(self.curve)
        picks = {round(i * (n - 1) / max(1, rows - 1)) for i in range(rows)}
        picks |= {i for i, (step, _) in enumerate(self.curve) if step in metrics}
        return [(self.curve[i][0], self.curve[i][1], metrics.get(self.curve[i][0])) for i in sorted(picks)]

    def to_dict(self) -> dict:
        return {"status": self.status, "samples": self.samples, "steps": self.steps, "max_steps": self.max_steps,
                "seconds": round(self.seconds, 3), "initial_loss": self.initial_loss, "final_loss": self.final_loss,
                "loss_drop": self.loss_drop, "loss_drop_factor": self.loss_drop_factor, "metric": self.metric,
                "metric_value": self.metric_value, "threshold": self.threshold,
                "higher_is_better": self.higher_is_better, "diagnosis": self.diagnosis, "note": self.note}


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def level_for(metric: str, threshold: float | None) -> tuple[float | None, bool | None]:
    default = DEFAULT_LEVELS.get(metric)
    higher = default[1] if default else KNOWN_METRICS.get(metric)
    if threshold is not None:
        return float(threshold), higher if higher is not None else True
    return (default[0], default[1]) if default else (None, higher)


def _trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _learning_rates(module) -> list[float]:
    try:
        opt = optimizer_of(module.configure_optimizers())
    except Exception:  # noqa: BLE001 - only for the hint
        return []
    return [float(g.get("lr", 0.0)) for g in opt.param_groups]


def _score(module, batch, device, precision) -> dict:
    import torch

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), autocast_for(precision, device):
            scores = module.score_batch(to_device(batch, device))
    finally:
        module.train(was_training)
    return {k: float(v) for k, v in scores.items()}


def input_ignored(module, batch, device, precision: str) -> bool | None:
    """True when the loss has no gradient with respect to any input tensor (float, ≥ 2 dims: images,
    feature rows): the forward pass does not look at its input. None when the batch has no such tensor."""
    import warnings

    import torch

    inputs: list = []

    def mark(obj):
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and obj.dim() >= 2:
                obj = obj.detach().clone().requires_grad_(True)
                inputs.append(obj)
            return obj
        if isinstance(obj, dict):
            return {k: mark(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(mark(v) for v in obj)
        return obj

    marked = mark(to_device(batch, device))
    if not inputs:
        return None
    module.to(device).train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        with autocast_for(precision, device):
            out = module.training_step(marked, 0)
    loss = out["loss"] if isinstance(out, dict) else out
    if loss is None or not loss.requires_grad:
        return None
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    module.zero_grad(set_to_none=True)
    return all(g is None or not bool(torch.any(g != 0)) for g in grads)


def diagnose(result: ProbeResult, trainable: int, lrs: list[float], grads_seen: bool | None,
             ignores_input: bool | None = None) -> str:
    """One or two sentences pointing at the likely cause of a FAIL."""
    if trainable == 0:
        return ("no trainable parameters: every parameter has requires_grad=False (a frozen backbone and a frozen "
                "head?); unfreeze at least the head.")
    if lrs and all(lr == 0 for lr in lrs):
        return "the optimizer's learning rate is 0: nothing can change; set LR to a positive value (e.g. 1e-3 for Adam)."
    if grads_seen is False:
        return ("no gradient reached any parameter: the loss does not depend on the model's parameters "
                "(a detached tensor, torch.no_grad() in training_step, or a constant loss).")
    if ignores_input:
        return ("the loss does not depend on the input (its gradient with respect to the input is zero): the "
                "forward pass ignores x — check that the head is fed the backbone's features of this batch, not a "
                "constant or a cached tensor.")
    last = result.final_loss
    if last is None or not math.isfinite(last) or any(not math.isfinite(v) for _, v in result.curve):
        return ("the loss became NaN/inf: lower the learning rate, check inputs and labels for NaN, or train in "
                "32-true precision.")
    drop = result.loss_drop or 0.0
    lr_text = f" (LR={lrs[0]:g})" if lrs else ""
    if drop < 1.05:
        return (f"the loss did not move ({_fmt(result.initial_loss)} → {_fmt(last)}): check the learning rate{lr_text}, "
                "frozen parameters, and that configure_optimizers() gets self.parameters().")
    if not result.loss_ok:
        return (f"the loss fell only {drop:.1f}× (needs {result.loss_drop_factor:g}×), so {result.samples} samples were "
                f"not memorised in {result.steps} steps: raise the learning rate{lr_text} or max_steps; check the "
                "loss/label pairing (labels matched to the right inputs, class indices, targets encoded as the loss "
                "expects); a loss stuck at a constant predictor's level means the output ignores the input.")
    return (f"the loss fell {drop:.1f}× but {result.metric} is {_fmt(result.metric_value)} (needs "
            f"{'≥' if result.higher_is_better else '≤'} {result.threshold:g}): the predictions do not follow the loss — "
            "check the decoding (argmax axis, label map / charset, CTC blank and repeat collapse, de-normalisation) "
            "and the eval-mode forward (dropout/BatchNorm).")


def run_probe(module, dataset, *, samples: int = 8, max_steps: int = 300, loss_drop_factor: float = 10.0,
              metric_threshold: float | None = None, seed: int = 42, device=None, precision: str = "32-true",
              collate_fn=None, enabled: bool = True, log=None) -> ProbeResult:
    """Overfit one seeded batch of ``samples`` items of ``dataset``; see the module docstring.

    ``dataset`` is the script's training DataLoader (its dataset, collate_fn and sampler build
    the batch: ``mlloop.runtime.loader``) or a plain dataset with ``collate_fn``."""
    import torch

    if not enabled:
        return ProbeResult("SKIP", note="disabled in the rules (baseline_smoke_test.learnability_probe.enabled)")
    device = device or torch.device("cpu")
    batches = Batches(dataset, collate_fn)  # the script's DataLoader: its collate_fn and sampler
    if not batches.iterable and len(batches) == 0:
        raise MlloopError("the training split is empty: the learnability probe has nothing to learn.")
    picks, batch = batches.sample(samples, seed)
    result = ProbeResult("FAIL", samples=len(picks), sample_ids=picks, max_steps=max_steps,
                         loss_drop_factor=float(loss_drop_factor))
    keeper = StateKeeper(module)
    trainable, lrs = _trainable(module), _learning_rates(module)
    has_score = callable(getattr(module, "score_batch", None))
    grads_seen: list[bool] = []
    t0 = time.perf_counter()

    def update_loss() -> None:
        losses = [v for _, v in result.curve]
        result.initial_loss = losses[0]
        result.final_loss = statistics.median(losses[-5:])
        if result.final_loss and math.isfinite(result.final_loss) and math.isfinite(result.initial_loss):
            result.loss_drop = result.initial_loss / result.final_loss if result.final_loss > 0 else math.inf
        else:
            result.loss_drop = 0.0

    def check_metric(step: int) -> None:
        if not has_score:
            return
        scores = _score(module, batch, device, precision)
        if not scores:
            return
        name = result.metric or next(iter(scores))
        if result.metric is None:
            result.metric = name
            result.threshold, result.higher_is_better = level_for(name, metric_threshold)
        result.metric_value = scores.get(name)
        result.metric_curve.append((step, result.metric_value))

    def on_step(step: int, loss: float) -> bool:
        if step == 0:
            grads_seen.append(any(p.grad is not None and bool(torch.any(p.grad != 0))
                                  for p in module.parameters() if p.requires_grad))
        result.curve.append((step, loss))
        if not math.isfinite(loss):
            return True
        if (step + 1) % CHECK_EVERY == 0 or step + 1 == max_steps:
            update_loss()
            if result.loss_ok:
                check_metric(step)
                return result.metric_ok
        return False

    try:
        result.steps = run_steps(module, batch, max_steps, device, precision, on_step=on_step)
        update_loss()
        if result.metric is None or (result.metric_curve and result.metric_curve[-1][0] != result.curve[-1][0]):
            check_metric(result.curve[-1][0])
    finally:
        keeper.restore()
    result.seconds = time.perf_counter() - t0
    if not has_score:
        result.note = "the module has no score_batch(batch): only the loss was checked"
    result.status = "PASS" if result.loss_ok and result.metric_ok else "FAIL"
    if result.status == "FAIL":
        try:
            ignores = input_ignored(module, batch, device, precision)
        except Exception:  # noqa: BLE001 - only for the hint
            ignores = None
        finally:
            keeper.restore()
        result.diagnosis = diagnose(result, trainable, lrs, grads_seen[0] if grads_seen else None, ignores)
    if log:
        log(result.summary())
    return result


def enforce(result: ProbeResult) -> ProbeResult:
    if result.status == "FAIL":
        raise ProbeError(f"{result.summary()}. Hint: {result.diagnosis}", result)
    return result
