"""A version's own Trainer options: the script's ``TRAINER = {...}`` and optional ``callbacks()``.

Both are forwarded to ``lightning.Trainer`` by ``training.build_trainer``, so gradient clipping,
accumulation, early stopping or SWA is a one-line change in a version::

    TRAINER = {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

    def callbacks():
        from lightning.pytorch.callbacks import EarlyStopping
        return [EarlyStopping("val_loss", patience=2)]

What the harness owns (devices, precision, logging, the two checkpoints, epochs from the rules,
the version folder) is refused with one line per key, before anything is trained.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import MlloopError

_DEVICES = "devices come from the rules (num_gpus, num_nodes) or the --CPU_DEVICES switch"
_CHECKPOINTS = "best.ckpt and last.ckpt are written by the harness's own ModelCheckpoint callbacks"
# Trainer arguments the harness sets itself, each with where to change it instead.
OWNED: dict[str, str] = {
    "accelerator": _DEVICES, "devices": _DEVICES, "num_nodes": _DEVICES, "strategy": _DEVICES,
    "precision": "set it with the --PRECISION switch (bf16-mixed on GPUs that support it, 32-true on CPU)",
    "plugins": "plugins can change the precision and the cluster set-up, which the harness owns",
    "logger": "the CSVLogger writing logs/version_0/metrics.csv is fixed",
    "enable_checkpointing": _CHECKPOINTS,
    "callbacks": "define callbacks() in the script; it returns the extra callbacks",
    "max_epochs": "epochs come from the rules (training_config.epochs; baseline_smoke_test.epoch in the smoke test)",
    "default_root_dir": "the version folder Models/Artifacts/<version>/ is fixed",
    "deterministic": "use the --DETERMINISTIC=True switch",
    "fast_dev_run": "it turns off checkpoints and logging; use --SMOKE=True for a short run",
    "barebones": "it turns off checkpoints and logging",
}


def trainer_arguments() -> set[str]:
    from lightning.pytorch import Trainer

    return set(inspect.signature(Trainer.__init__).parameters) - {"self"}


def check_options(options: Any, where: str = "TRAINER") -> dict:
    """The options as a dict, or an ``MlloopError`` with one line per refused key."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise MlloopError(f"{where} must be a dict of lightning.Trainer arguments (e.g. {{\"gradient_clip_val\": 1.0}}), "
                          f"got {type(options).__name__}.")
    known = trainer_arguments()
    problems = []
    for key in options:
        if not isinstance(key, str):
            problems.append(f"{where}[{key!r}]: keys are lightning.Trainer argument names (strings).")
        elif key in OWNED:
            problems.append(f"{where}[{key!r}]: the harness owns {key} ({OWNED[key]}); remove it from {where}.")
        elif key not in known:
            near = difflib.get_close_matches(key, sorted(known - set(OWNED)), n=1, cutoff=0.7)
            hint = f"; did you mean {near[0]!r}?" if near else "."
            problems.append(f"{where}[{key!r}]: not an argument of lightning.Trainer{hint}")
    if problems:
        raise MlloopError("\n".join(problems))
    accumulate = options.get("accumulate_grad_batches", 1)
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise MlloopError(f"{where}['accumulate_grad_batches']: expected a positive integer, got {accumulate!r}.")
    return dict(options)


def check_callbacks(made: Any, where: str = "callbacks()") -> list:
    """The list ``callbacks()`` returned, checked: Lightning callbacks, and no checkpoint callback."""
    from lightning.pytorch.callbacks import Callback, Checkpoint

    if made is None:
        return []
    if not isinstance(made, (list, tuple)):
        raise MlloopError(f"{where} must return a list of lightning callbacks, got {type(made).__name__}.")
    problems = []
    for i, cb in enumerate(made):
        if isinstance(cb, Checkpoint):
            problems.append(f"{where} item {i} is a {type(cb).__name__}: {_CHECKPOINTS}; remove it.")
        elif not isinstance(cb, Callback):
            problems.append(f"{where} item {i} is a {type(cb).__name__}, not a lightning callback.")
    if problems:
        raise MlloopError("\n".join(problems))
    return list(made)


@dataclass
class TrainerOptions:
    """What a script adds to the harness's Trainer (``Run.trainer``)."""

    options: dict = field(default_factory=dict)
    callbacks: list = field(default_factory=list)

    @property
    def accumulate(self) -> int:
        return int(self.options.get("accumulate_grad_batches", 1))

    def to_dict(self) -> dict:
        """For spec.json: the options as given and the callbacks' class names."""
        return {"options": self.options, "callbacks": [type(cb).__name__ for cb in self.callbacks]}


def from_script(settings: dict, namespace: dict) -> TrainerOptions:
    """``TRAINER`` (a setting, so ``--TRAINER={...}`` works) and ``callbacks()`` of a script."""
    options = check_options(settings.get("TRAINER"))
    factory: Callable | None = namespace.get("callbacks")
    if factory is None:
        return TrainerOptions(options, [])
    if not callable(factory):
        raise MlloopError(f"callbacks in the script must be a function returning a list of lightning callbacks, "
                          f"got {type(factory).__name__}.")
    return TrainerOptions(options, check_callbacks(factory()))
