"""The Lightning callbacks the harness adds to every Trainer (and the smoke test's timer).

Each is built inside a function so that importing this module imports no Lightning: the CLI's
start-up path stays light.
"""

from __future__ import annotations


def keyed_once(checkpoint_class):
    """``checkpoint_class`` with its ``state_key`` formatted once. Lightning formats every
    callback's key on every hook call (about six per training step), and ModelCheckpoint's is a
    repr of five settings that never change after ``__init__``; the key itself is Lightning's,
    class name included, so last.ckpt resumes as before."""

    class KeyedOnce(checkpoint_class):
        @property
        def state_key(self) -> str:
            key = self.__dict__.get("_state_key_once")
            if key is None:
                key = self.__dict__["_state_key_once"] = super().state_key
            return key

    KeyedOnce.__name__ = KeyedOnce.__qualname__ = checkpoint_class.__qualname__
    return KeyedOnce


def train_loss_logger():
    """A Lightning callback that logs the loss ``training_step`` returns: ``train_loss_step`` on
    the steps Lightning writes (``log_every_n_steps``) and ``train_loss_epoch``, the mean over the
    epoch's batches. ``self.log`` in ``training_step`` costs about half a millisecond per call on
    a CPU (Lightning moves its result's whole state every call), a tenth or more of a small
    model's step; here a step costs one tensor addition. A script that logs ``train_loss*`` itself
    keeps its own values and this logger stays silent."""
    from collections.abc import Mapping

    import torch
    from lightning.pytorch.callbacks import Callback

    class TrainLossLogger(Callback):
        def __init__(self):
            self._sum, self._batches, self._script_logs = None, 0, None

        def on_train_epoch_start(self, trainer, pl_module):
            self._sum, self._batches = None, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self._script_logs is None:
                # what training_step logged this batch (Lightning's results, keyed "training_step.<name>")
                logged = getattr(trainer, "_results", None) or {}
                self._script_logs = any(str(k).split(".")[-1].startswith("train_loss") for k in logged)
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if self._script_logs or not isinstance(loss, torch.Tensor):
                return
            loss = loss.detach()
            if pl_module.automatic_optimization:  # Lightning divides it by accumulate_grad_batches
                loss = loss * trainer.accumulate_grad_batches
            self._sum = loss if self._sum is None else self._sum + loss
            self._batches += 1
            if _writes_this_step(trainer):
                pl_module.log("train_loss_step", loss, on_step=True, on_epoch=False, batch_size=1)

        def on_train_epoch_end(self, trainer, pl_module):
            if self._batches and not self._script_logs:
                pl_module.log("train_loss_epoch", self._sum / self._batches, on_step=False, on_epoch=True,
                              batch_size=1)

    return TrainLossLogger()


def _writes_this_step(trainer) -> bool:
    """Whether Lightning writes the step's logged values to the logger after this batch."""
    connector = getattr(trainer, "_logger_connector", None)
    if connector is not None and hasattr(connector, "should_update_logs"):
        return bool(connector.should_update_logs)
    every = trainer.log_every_n_steps  # the same rule for a Lightning without that property
    return bool(every) and trainer.global_step % every == 0


def step_timer():
    """A Lightning callback that times the training batches (data loading included: the time from
    one batch's end, or the epoch's start, to the next batch's end) and the validation passes."""
    import time

    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def __init__(self):
            self.epochs: list[list[float]] = []  # per epoch: seconds per training batch
            self.validation: list[float] = []    # seconds per validation pass (sanity check left out)
            self._last = self._valid_start = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs.append([])
            self._last = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            self.epochs[-1].append(now - self._last)
            self._last = now

        def on_validation_epoch_start(self, trainer, pl_module):
            self._valid_start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.validation.append(time.perf_counter() - self._valid_start)
            self._last = time.perf_counter()  # validation inside an epoch is not a training batch

        def batch_seconds(self) -> tuple[float | None, int]:
            """Median seconds per batch and how many batches it is over; each epoch's first batch
            (worker start-up, warm-up) is left out when the epoch has others."""
            import statistics

            times = [s for epoch in self.epochs for s in (epoch[1:] if len(epoch) > 1 else epoch)]
            return (statistics.median(times) if times else None), len(times)

    return StepTimer()
