"""One run of a training script: what it reads, where it writes, and ``fit`` for both modes.

A template's ``main`` is three calls::

    run = start(__file__, globals(), argv, from_rules=FROM_RULES, task_types=TASK_TYPES)
    ... build the LightningDataModule (reading run.records(split)) and the LightningModule ...
    return run.fit(model, data, observe=observe)

``start`` resolves the rules (``mlloop.rules.resolve``: the merged view), the settings (script →
rules → ``--KEY=VALUE``), the mode (``02_train_baseline.py`` → smoke test, ``02_train_vNNN.py`` →
full training, ``--SMOKE=True`` forces the smoke test), devices and precision, the script's Trainer
options (``TRAINER``, ``callbacks()``: ``trainer_options``) and the machine's defaults (threads,
workers, image size: ``defaults``); seeds everything;
and, on rank 0, gets the version folder ready (an evaluated version is refused, a failed run is
moved aside with ``_tests/`` kept). ``fit`` runs build-baseline Step 2 (``smoke.run_smoke``) or the
full training, writes ``spec.json`` and the reports, prints a ``key: value`` summary and returns it.

``entry(main)`` is the ``__main__`` guard: a ``MlloopError`` prints as one ``Error:`` line and exit
code 1; any other exception keeps its traceback (the agent needs it) after it is recorded in the
retry history.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import MlloopError
from ..formats import smoke_report
from ..formats.spec import write_spec
from ..layout import BASELINE, BEST_CKPT, LAST_CKPT
from ..rules import resolve
from ..stages import locked_dataset_id
from . import defaults, smoke_retry_reports
from .artifacts import (VersionPaths, assets_listing, forget_splits_read, is_rank_zero, parent_of,
                        paths_for_script, prepare_version_dir, read_index, save_asset, splits_read)
from .config import resolve_settings, script_settings
from .seeding import seed_everything, seeded_sample
from .smoke import run_smoke, write_failed_report
from .trainer_options import TrainerOptions, from_script as trainer_options_from_script
from .training import (Devices, count_steps, derive_train_batch_size, device_name, file_sizes,
                       fit as fit_once, libraries, peak_memory_mb, quiet_lightning, resolve_devices,
                       resolve_precision)

_ACTIVE: "Run | None" = None
defaults.remember_torch_threads()  # torch's own thread count, before the script's code can change it


@dataclass
class Run:
    paths: VersionPaths
    rules: Any                     # mlloop.rules.Rules (the merged view)
    settings: dict
    sources: dict
    switches: dict
    mode: str                      # "smoke" | "train"
    seed: int
    dataset_id: str
    task_type: str
    devices: Devices
    precision: str
    started: float = field(default_factory=time.perf_counter)
    moved_aside: Path | None = None
    data_counts: dict = field(default_factory=dict)
    failure_recorded: bool = False
    trainer: TrainerOptions = field(default_factory=TrainerOptions)  # the script's TRAINER and callbacks()
    rules_overrides: list = field(default_factory=list)  # settings whose script value the rules replaced
    runtime_defaults: dict = field(default_factory=dict)  # threads, workers, image size chosen here, and why
    _index: dict = field(default_factory=dict)

    # ---- what a script asks --------------------------------------------------------------
    @property
    def vid(self) -> str:
        return self.paths.vid

    @property
    def is_smoke(self) -> bool:
        return self.mode == "smoke"

    @property
    def prepdata_dir(self) -> Path:
        return self.paths.prepdata(self.dataset_id)

    @property
    def model_config(self) -> dict:
        return self.rules.values.get("model_config") or {}

    @property
    def smoke_config(self) -> dict:
        return self.rules.values["baseline_smoke_test"]

    @property
    def training_config(self) -> dict:
        return self.rules.values["training_config"]

    @property
    def rank_zero(self) -> bool:
        return is_rank_zero()

    def log(self, message: str) -> None:
        if self.rank_zero:
            print(f"[mlloop] {message}", flush=True)

    def full_index(self, split: str) -> list[dict]:
        """Every record of ``split`` in prepdata (the smoke test's subset is ``records``)."""
        if split not in self._index:
            folder = self.prepdata_dir / split
            rows = read_index(self.prepdata_dir, split)
            if any(not isinstance(r, dict) or "id" not in r for r in rows):
                raise MlloopError(f"{self.paths.project.rel(folder)}: every {split} record needs an \"id\".")
            self._index[split] = rows
        return self._index[split]

    def records(self, split: str) -> list[dict]:
        """The records this run trains or validates on: all of them, or in the smoke test the
        seeded draw of ``train_samples`` / ``valid_samples`` (all of them when the split is smaller)."""
        rows = self.full_index(split)
        if not self.is_smoke:
            self.data_counts[split] = {"used": len(rows), "available": len(rows), "asked": None}
            return list(rows)
        asked = int(self.smoke_config["train_samples" if split == "train" else "valid_samples"])
        chosen = set(seeded_sample([str(r["id"]) for r in rows], asked, self.seed))
        picked = [r for r in rows if str(r["id"]) in chosen]
        self.data_counts[split] = {"used": len(picked), "available": len(rows), "asked": asked}
        if asked > len(rows) and self.rank_zero and not getattr(self, f"_said_{split}", False):
            setattr(self, f"_said_{split}", True)
            self.log(f"smoke test asked for {asked} {split} samples, the split has {len(rows)}: using all {len(rows)}")
        return picked

    def save_asset(self, name: str, content: Any) -> None:
        """``additional_assets/<name>`` (rank 0); listed in spec.json."""
        if self.rank_zero:
            save_asset(self.paths, name, content)

    # ---- the work -------------------------------------------------------------------------
    def fit(self, module, datamodule, observe: Callable | None = None, monitor: str = "val_loss",
            mode: str = "min") -> dict:
        if self.is_smoke:
            return run_smoke(self, module, datamodule, observe=observe, monitor=monitor, mode=mode)
        return run_training(self, module, datamodule, monitor=monitor, mode=mode)

    # ---- shared by both modes -------------------------------------------------------------
    def choose_batch_size(self, train_samples: int, optimal: int | None, devices: Devices) -> tuple[int, str, int | None]:
        """``(training batch size, where it came from, memory-fit size)``.

        training_config.batch_size (rules) wins, then the script's BATCH_SIZE, else the largest
        power of two ≤ the smoke test's memory fit that keeps min_steps_per_epoch/min_total_steps.
        """
        tc = self.training_config
        if optimal is None:
            optimal = read_optimal_batch_size(self.paths)
        if tc.get("batch_size"):
            return int(tc["batch_size"]), "training_config.batch_size", optimal
        if self.settings.get("BATCH_SIZE"):
            return int(self.settings["BATCH_SIZE"]), "the script's BATCH_SIZE", optimal
        if optimal is None:
            raise MlloopError(
                f"{self.paths.project.rel(self.paths.baseline_smoke_report)} has no optimal_batch_size: run "
                "02_train_baseline.py (the smoke test) first, or set training_config.batch_size in the rules.")
        floor = int(self.smoke_config.get("min_batch_size") or 1)
        bs = derive_train_batch_size(optimal, train_samples, int(tc["epochs"]), int(tc["min_steps_per_epoch"]),
                                     int(tc["min_total_steps"]), floor=floor, world_size=devices.world_size,
                                     accumulate=self.trainer.accumulate)
        source = (f"derived: the largest power of two ≤ optimal_batch_size={optimal} that gives ≥ "
                  f"{tc['min_steps_per_epoch']} steps/epoch and ≥ {tc['min_total_steps']} steps in total "
                  f"(floor min_batch_size={floor})")
        return bs, source, optimal

    def spec(self, *, module, outcome, training: dict, steps: dict, extra: dict | None = None) -> dict:
        peak, peak_source = peak_memory_mb(self.devices)
        names = [BEST_CKPT, LAST_CKPT]
        sizes = file_sizes(self.paths.dir, names)
        if self.paths.assets.is_dir():
            sizes["additional_assets"] = sum(p.stat().st_size for p in self.paths.assets.rglob("*") if p.is_file())
        hparams = dict(getattr(module, "hparams", {}) or {})
        return write_spec(
            self.paths.spec, version_id=self.vid, dataset_id=self.dataset_id, parent=parent_of(self.paths),
            seed=self.seed, task_type=self.task_type, mode=self.mode, script=self.paths.script, model=hparams,
            training=training, best_checkpoint=outcome.best, additional_assets=assets_listing(self.paths),
            steps=steps, libraries=libraries(), device=self.devices.label, device_name=device_name(self.devices),
            num_devices=self.devices.devices, num_nodes=self.devices.num_nodes, strategy=self.devices.strategy,
            precision=self.precision, wall_time_s=time.perf_counter() - self.started, peak_memory_mb=peak,
            peak_memory_source=peak_source, artifact_bytes=sizes,
            settings={k: {"value": v, "source": self.sources.get(k, "script")} for k, v in self.settings.items()},
            extra={"trainer": self.trainer.to_dict(), "rules_overrides": self.rules_overrides,
                   "runtime_defaults": self.runtime_defaults, **(extra or {}),
                   "splits_read": splits_read(), "parameters": parameter_counts(module)})

    def fit_kwargs(self) -> dict:
        """The script's own Trainer options and callbacks, for ``training.fit``."""
        return {**self.trainer.options, "callbacks": list(self.trainer.callbacks)}

    def summary(self, values: dict) -> dict:
        """Print the autoresearch-style ``key: value`` block (rank 0) and return ``values``."""
        if self.rank_zero:
            print("---", flush=True)
            for key, value in values.items():
                shown = f"{value:.6g}" if isinstance(value, float) else value
                print(f"{key + ':':<22}{shown}", flush=True)
        return values

    def record_failure(self, exc: BaseException) -> None:
        """Add this failed run to the retry history (rank 0, once)."""
        if self.failure_recorded or not self.rank_zero:
            return
        self.failure_recorded = True
        if self.is_smoke:
            write_failed_report(self, exc, stage="script set-up (before fit)")
            return
        if smoke_retry_reports.finish_retry_attempt(self.paths.retry_report, "FAIL", exc):
            return
        previous = smoke_retry_reports.read_attempts(self.paths.retry_report.read_text(encoding="utf-8")) \
            if self.paths.retry_report.is_file() else []
        attempt = smoke_retry_reports.next_attempt(previous, status="FAIL", error=exc,
                                                   cause=self.switches.get("RETRY_CAUSE"),
                                                   change=self.switches.get("RETRY_CHANGE"))
        smoke_retry_reports.append_retry_report(self.paths.retry_report, attempt, self.vid)

    def record_success(self) -> None:
        """After a retry passes, the retry report gets its PASS attempt (versions)."""
        if not self.rank_zero or not self.paths.retry_report.is_file():
            return
        if smoke_retry_reports.finish_retry_attempt(self.paths.retry_report, "PASS", None):
            return
        previous = smoke_retry_reports.read_attempts(self.paths.retry_report.read_text(encoding="utf-8"))
        if previous:
            attempt = smoke_retry_reports.next_attempt(previous, status="PASS", error=None,
                                                       cause=self.switches.get("RETRY_CAUSE"),
                                                       change=self.switches.get("RETRY_CHANGE"))
            smoke_retry_reports.append_retry_report(self.paths.retry_report, attempt, self.vid)


def parameter_counts(module) -> dict | None:
    """``{"total", "trainable"}`` parameters of the LightningModule (the report's cost chart)."""
    params = getattr(module, "parameters", None)
    if not callable(params):
        return None
    total = trainable = 0
    for p in params():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"total": int(total), "trainable": int(trainable)}


def read_optimal_batch_size(paths: VersionPaths) -> int | None:
    """``optimal_batch_size`` from the baseline's smoke report (its machine-read bullet)."""
    report = paths.baseline_smoke_report
    if not report.is_file():
        return None
    return smoke_report.optimal_batch_size(report.read_text(encoding="utf-8"))


def start(script_file: str | os.PathLike, namespace: dict, argv: list[str] | None = None, *,
          from_rules: dict[str, str] | None = None, task_types: tuple[str, ...] | None = None,
          project_root: str | os.PathLike | None = None) -> Run:
    """Everything a run needs before the model is built; see the module docstring."""
    global _ACTIVE

    forget_splits_read()
    paths = paths_for_script(script_file, project_root)
    rules = resolve(paths.project)
    if rules.findings.problems:
        lines = "\n".join(p.line() for p in rules.findings.problems)
        raise MlloopError(f"the rules have problems; fix them (mlloop rules shows the merged view):\n{lines}")
    settings, switches, sources = resolve_settings(namespace, argv, rules.values, from_rules)
    trainer = trainer_options_from_script(settings, namespace)
    smoke = switches["SMOKE"] if switches["SMOKE"] is not None else paths.vid == BASELINE
    if paths.vid == BASELINE:
        dataset_id = rules.dataset_id
    else:
        dataset_id, _ = locked_dataset_id(paths.project, rules.dataset_id)
    if not dataset_id:
        raise MlloopError("dataset_config.dataset_id is not set in the rules; set it (e.g. \"v1\").")
    task_type = rules.task_type
    if not task_type:
        raise MlloopError("dataset_config.task_type is not set in the rules; set it to one of task_format.yaml's types.")
    if task_types and task_type not in task_types:
        raise MlloopError(
            f"{paths.script.name} trains {', '.join(task_types)}, but the rules say task_type {task_type!r}; "
            "start from the template for that task type.")
    if not paths.prepdata(dataset_id).is_dir():
        raise MlloopError(
            f"{paths.project.rel(paths.prepdata(dataset_id))}: prepdata for dataset_id {dataset_id!r} does not exist; "
            "run 01_data_pipeline.py first.")
    section = rules.values["baseline_smoke_test"] if smoke else rules.values["training_config"]
    where = "baseline_smoke_test" if smoke else "training_config"
    num_nodes = 1 if smoke else rules.values["training_config"].get("num_nodes", 1)
    devices = resolve_devices(section.get("num_gpus"), num_nodes, switches["CPU_DEVICES"], where=where)
    precision = resolve_precision(devices, switches["PRECISION"])
    seed = seed_everything(rules.seed, deterministic=bool(switches["DETERMINISTIC"]))
    quiet_lightning()
    if devices.accelerator == "gpu":
        import torch

        torch.set_float32_matmul_precision("high")  # TF32 matmuls for the fp32 parts (Lightning's advice)
    moved = prepare_version_dir(paths) if is_rank_zero() else None
    run = Run(paths, rules, settings, sources, switches, "smoke" if smoke else "train", seed, dataset_id, task_type,
              devices, precision, moved_aside=moved, trainer=trainer,
              rules_overrides=rules_overrides(script_settings(namespace), settings, sources))
    if moved is not None:
        run.log(f"the previous run's folder was moved to {paths.project.rel(moved)} (_tests/ kept)")
    for o in run.rules_overrides:
        run.log(f"{o['setting']} = {o['rules']!r} from the rules ({o['path']}), not the script's {o['script']!r}")
    if trainer.options or trainer.callbacks:
        shown = ", ".join([f"{k}={v!r}" for k, v in trainer.options.items()]
                          + [type(cb).__name__ for cb in trainer.callbacks])
        run.log(f"Trainer options from the script: {shown}")
    if not smoke and is_rank_zero() and (moved is not None or switches.get("RETRY_CAUSE") or switches.get("RETRY_CHANGE")):
        # A retry: its attempt is on disk before any work, so a kill cannot lose it.
        smoke_retry_reports.begin_retry_attempt(paths.retry_report, run.vid, switches.get("RETRY_CAUSE"),
                                                switches.get("RETRY_CHANGE"))
    _ACTIVE = run
    run.runtime_defaults = defaults.apply(run)
    return run


def rules_overrides(script_values: dict, settings: dict, sources: dict) -> list[dict]:
    """``[{setting, script, rules, path}]`` for each setting the rules changed from the script's value."""
    out = []
    for key, source in sources.items():
        if source.startswith("rules:") and script_values.get(key) != settings.get(key):
            out.append({"setting": key, "script": script_values.get(key), "rules": settings.get(key),
                        "path": source[len("rules:"):]})
    return out


def run_training(run: Run, module, datamodule, monitor: str = "val_loss", mode: str = "min") -> dict:
    """Full training of a version (``02_train_vNNN.py``): Step 1 of progressive-training."""
    tc = run.training_config
    try:
        datamodule.setup("fit")
        n_train = len(datamodule.train_dataset)
        epochs = int(tc["epochs"])
        bs, source, optimal = run.choose_batch_size(n_train, None, run.devices)
        steps = count_steps(n_train, bs, epochs, int(tc["min_steps_per_epoch"]), int(tc["min_total_steps"]),
                            run.devices.world_size, run.trainer.accumulate)
        if steps.warning:
            run.log(f"WARNING: {steps.warning}")
        if optimal is not None and bs > optimal:
            run.log(f"WARNING: batch size {bs} is above the smoke test's memory fit ({optimal}); it may run out of memory")
        datamodule.batch_size = bs
        outcome = fit_once(run.paths.dir, module, datamodule, epochs=epochs, devices=run.devices,
                           precision=run.precision, monitor=monitor, mode=mode, steps_per_epoch=steps.per_epoch,
                           deterministic=bool(run.switches["DETERMINISTIC"]), **run.fit_kwargs())
        if not outcome.is_global_zero:
            return {"version_id": run.vid, "rank": outcome.trainer.global_rank}
        training = {"epochs": epochs, "batch_size": bs, "batch_size_source": source, "optimal_batch_size": optimal,
                    "train_samples": n_train, "valid_samples": len(datamodule.valid_dataset),
                    "lr": run.settings.get("LR"), "global_step": outcome.global_step, "fit_wall_time_s": outcome.wall_time_s,
                    "devices": run.devices.to_dict()}
        spec = run.spec(module=module, outcome=outcome, training=training,
                        steps={**steps.to_dict(), "basis": "this run"})
        run.record_success()
        return run.summary({
            "version_id": run.vid, "mode": "train", "monitor": monitor, "best_score": outcome.best.get("score"),
            "best_epoch": outcome.best.get("epoch"), "epochs": epochs, "batch_size": bs,
            "steps_per_epoch": steps.per_epoch, "total_steps": steps.total, "too_few_steps": steps.too_few,
            "wall_time_s": spec["wall_time_s"], "peak_memory_mb": spec["peak_memory_mb"],
            "precision": run.precision, "num_devices": run.devices.world_size,
            "artifacts": run.paths.project.rel(run.paths.dir)})
    except Exception as exc:
        run.record_failure(exc)
        raise


def entry(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """The ``__main__`` guard of a training script: ``raise SystemExit(entry(main))``."""
    global _ACTIVE
    _ACTIVE = None
    try:
        main(sys.argv[1:] if argv is None else argv)
        return 0
    except MlloopError as exc:
        if _ACTIVE is not None:
            _ACTIVE.record_failure(exc)
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        if _ACTIVE is not None:
            _ACTIVE.record_failure(exc)
        raise
