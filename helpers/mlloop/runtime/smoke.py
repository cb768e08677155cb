"""build-baseline Step 2: model contract → learnability probe → batch-size search → subset run.

Each stage must pass before the next starts; the first failure stops the smoke test, and the
report (``_tests/baseline_smoke_test_report.md``) says where and why, with the retry history
carried over from earlier attempts. The subset run trains on the seeded draw of
``train_samples`` / ``valid_samples`` for ``epoch`` epochs with the memory-fit batch size, and
writes every artifact a version writes (best.ckpt, last.ckpt, spec.json, logs/, assets).

The training batch size for the versions is its own setting (issue 7): ``training_config.batch_size``
if the rules set it, else derived from the memory fit so that an epoch still has
``min_steps_per_epoch`` steps and the run ``min_total_steps``; the report shows the numbers and
warns when even that is too few.
"""

from __future__ import annotations

import os
from typing import Callable

from ..errors import MlloopError
from ..layout import BEST_CKPT
from . import batch_search, checkpoint, contract, metrics, probe, smoke_retry_reports
from .evaluation import _plain_value
from .loader import train_loader
from .seeding import seed_everything
from .callbacks import step_timer
from .training import count_steps, fit as fit_once, resolve_devices, torch_device

# Under DDP, Lightning re-runs the script for ranks 1..N-1; they take rank 0's batch size from here
# instead of searching again (the search ran once, before the processes were started).
ENV_BATCH = "MLLOOP_SMOKE_BATCH_SIZE"


def _new_report(run) -> smoke_retry_reports.SmokeReport:
    report = smoke_retry_reports.SmokeReport(run.vid, run.dataset_id, run.task_type, device=run.devices.label,
                                 precision=run.precision)
    report.attempts = smoke_retry_reports.previous_smoke_attempts(run.paths.smoke_report())
    return report


def _finish_attempts(run, report: smoke_retry_reports.SmokeReport, status: str, exc: BaseException | None) -> None:
    if status == "PASS" and not report.attempts:
        return  # passed on the first attempt: nothing to retry
    report.attempts.append(smoke_retry_reports.next_attempt(report.attempts, status=status, error=exc,
                                                cause=run.switches.get("RETRY_CAUSE"),
                                                change=run.switches.get("RETRY_CHANGE")))


def write_failed_report(run, exc: BaseException, stage: str, report: smoke_retry_reports.SmokeReport | None = None) -> None:
    report = report or _new_report(run)
    report.overall_result = "FAIL"
    report.stopped_at = stage
    report.error = smoke_retry_reports.error_summary(exc)
    _finish_attempts(run, report, "FAIL", exc)
    smoke_retry_reports.write_smoke_report(run.paths.smoke_report(), report)
    run.failure_recorded = True


def planned_steps(run, optimal: int):
    """Batch size and steps of the full training the versions will run (not of this subset run)."""
    tc = run.training_config
    try:
        devices = resolve_devices(tc.get("num_gpus"), tc.get("num_nodes", 1), run.switches["CPU_DEVICES"])
    except MlloopError:
        devices = run.devices  # training runs elsewhere (more GPUs than here): count for this machine
    n_train = len(run.full_index("train"))
    bs, source, _ = run.choose_batch_size(n_train, optimal, devices)
    steps = count_steps(n_train, bs, int(tc["epochs"]), int(tc["min_steps_per_epoch"]), int(tc["min_total_steps"]),
                        devices.world_size, run.trainer.accumulate)
    basis = (f"planned training of the versions: {n_train} training samples, batch {bs}, {tc['epochs']} epoch(s), "
             f"{devices.world_size} device(s)")
    return bs, source, {**steps.to_dict(), "basis": basis}


def estimate_version_time(run, timer, smoke_batch: int, steps: dict, valid_used: int) -> dict:
    """How long one full version will train, from the smoke run's measured batch time: the planned
    batches (``steps``) at the training batch size, the time per batch scaled linearly from the
    smoke run's batch size, plus one validation of the whole split per epoch."""
    batch_s, measured = timer.batch_seconds()
    budget = run.training_config.get("max_minutes_per_version")
    out = {"max_minutes_per_version": budget, "measured_batches": measured}
    if batch_s is None or not steps.get("total"):
        return {**out, "minutes": None, "basis": "not estimated: the smoke run timed no training batch"}
    bs, epochs = int(steps["batch_size"]), int(steps["epochs"])
    batches = count_steps(int(steps["train_samples"]), bs, epochs, 1, 1, int(steps.get("world_size", 1))).total
    train_s = batch_s * bs / smoke_batch * batches
    n_valid = len(run.full_index("valid"))
    valid_s = (sum(timer.validation) / len(timer.validation) / max(1, valid_used)) * n_valid * epochs \
        if timer.validation else 0.0
    minutes = (train_s + valid_s) / 60
    out.update(minutes=round(minutes, 2), step_ms=round(batch_s * 1e3, 2), smoke_batch_size=smoke_batch,
               basis=(f"{batches} training batches of {bs} (median {batch_s * 1e3:.1f} ms per batch of {smoke_batch} "
                      f"over {measured} smoke-run batches, scaled by batch size) + {epochs} validation pass(es) "
                      f"over {n_valid} samples; this machine ({run.devices.label})"))
    if budget is not None and minutes > float(budget):
        out["warning"] = (f"a full version is estimated at {minutes:.1f} minutes, over "
                          f"training_config.max_minutes_per_version={budget:g}: lower epochs, the image size or "
                          f"the model size, or raise the budget")
    return out


EVAL_CHECK_RECORDS = 32


def check_evaluation(run, device, limit: int = EVAL_CHECK_RECORDS) -> dict:
    """The evaluation interface (docs/contracts.md) on a few validation records through the
    smoke run's best.ckpt, and every configured metric computed from what ``predict`` returned:
    a metric the script cannot feed (``roc_auc`` without ``scores``) stops Step 2 with the
    field named, instead of 03_eval.py after a full training. A value that is merely undefined
    on so few records (ROC AUC with one class among them) is noted, not a failure."""
    import torch


    script = run.paths.script
    module = checkpoint.import_script(script)
    missing = [n for n in ("load_for_eval", "eval_records", "make_batch", "predict") if not callable(getattr(module, n, None))]
    if missing:
        raise MlloopError(f"{script.name} does not define {', '.join(m + '()' for m in missing)}; 03_eval.py needs the "
                          "evaluation interface of docs/contracts.md (copy it from the template).")
    ckpt = run.paths.dir / BEST_CKPT
    with checkpoint.forced_weights_only():
        model = module.load_for_eval(str(ckpt), str(device))
    if hasattr(model, "eval"):
        model.eval()
    chosen = {str(r["id"]) for r in run.records("valid")}
    records = [r for r in module.eval_records(str(run.prepdata_dir), "valid") if str(r.get("id")) in chosen][:limit]
    if not records:
        raise MlloopError(f"{script.name}: eval_records() returned none of the smoke test's validation records.")
    with torch.no_grad():
        out = module.predict(model, module.make_batch(records, str(run.prepdata_dir), str(device)))
    if not isinstance(out, list) or len(out) != len(records):
        raise MlloopError(f"{script.name}: predict() must return one dict per record ({len(records)}).")

    results = [{k: _plain_value(v) for k, v in r.items()} if isinstance(r, dict) else r for r in out]
    ids = [r["id"] for r in records]
    for n, r in enumerate(results):
        if not isinstance(r, dict) or "prediction" not in r or "target" not in r:
            raise MlloopError(f"{script.name}: predict() must return dicts with \"prediction\", \"target\" and "
                              f"\"loss\"; sample {ids[n]!r} got {r!r:.80}.")
    for spec in run.rules.metrics:
        reason = metrics.can_compute(spec["name"], results, ids)
        if reason:
            raise MlloopError(f"metric {spec['name']!r} (eval_config.metrics) cannot be computed from "
                              f"{script.name}'s predict(): {reason}; return what it needs or change the rules.")
    scored = metrics.compute_metrics(results, run.rules.metrics, ids=ids, allow_missing=True)
    return {"records": len(records), "metrics": {m["name"]: m["value"] for m in scored.values},
            "undefined_on_these_records": scored.skipped, "warnings": scored.warnings}


def run_smoke(run, module, datamodule, observe: Callable | None = None, monitor: str = "val_loss",
              mode: str = "min") -> dict:
    report = _new_report(run)
    stage = "data set-up"
    sc = run.smoke_config
    device = torch_device(run.devices)
    child = not run.rank_zero and os.environ.get(ENV_BATCH, "").isdigit()
    try:
        datamodule.setup("fit")
        train_ds = datamodule.train_dataset
        if child:
            optimal = int(os.environ[ENV_BATCH])
        else:
            stage = "model contract"
            observed = observe(module) if observe is not None else {}
            report.contract = contract.check(run.model_config, observed)
            run.log(report.contract.summary())
            contract.enforce(report.contract)

            stage = "learnability probe"
            pc = sc.get("learnability_probe") or {}
            loader = train_loader(datamodule)  # the script's own: its collate_fn and sampler build the batches
            report.probe = probe.run_probe(
                module, loader, samples=int(pc.get("samples", 8)), max_steps=int(pc.get("max_steps", 300)),
                loss_drop_factor=float(pc.get("loss_drop_factor", 10.0)), metric_threshold=pc.get("metric_threshold"),
                seed=run.seed, device=device, precision=run.precision,
                enabled=bool(pc.get("enabled", True)), log=run.log)
            probe.enforce(report.probe)

            stage = "batch-size search"
            train_steps, _keeper = batch_search.module_trainer(module, loader, device, run.precision)
            report.search = batch_search.search(train_steps, int(sc["min_batch_size"]), int(sc["max_batch_size"]),
                                                steps=int(sc.get("search_steps", 10)), log=run.log)
            optimal = report.search.batch_size

        stage = "training batch size"
        report.train_batch_size, report.train_batch_size_source, report.steps = planned_steps(run, optimal)
        if report.steps.get("warning"):
            run.log(f"WARNING: {report.steps['warning']}")

        stage = "smoke run"
        seed_everything(run.seed, deterministic=bool(run.switches["DETERMINISTIC"]))  # same start whatever the search did
        epochs = int(sc["epoch"])
        datamodule.batch_size = optimal
        smoke_steps = count_steps(len(train_ds), optimal, epochs, 1, 1, run.devices.world_size, run.trainer.accumulate)
        if run.devices.world_size > 1:
            os.environ[ENV_BATCH] = str(optimal)
        timer = step_timer()
        extra = run.fit_kwargs()
        extra["callbacks"] = [timer, *extra["callbacks"]]
        try:
            outcome = fit_once(run.paths.dir, module, datamodule, epochs=epochs, devices=run.devices,
                               precision=run.precision, monitor=monitor, mode=mode,
                               steps_per_epoch=smoke_steps.per_epoch, deterministic=bool(run.switches["DETERMINISTIC"]),
                               **extra)
        finally:
            if run.rank_zero:
                os.environ.pop(ENV_BATCH, None)
        if not outcome.is_global_zero:
            return {"version_id": run.vid, "rank": outcome.trainer.global_rank}

        stage = "evaluation interface"
        evaluation = check_evaluation(run, device)
        run.log(f"evaluation interface: {evaluation['records']} validation records, metrics "
                + ", ".join(f"{k}={v:.4g}" for k, v in evaluation["metrics"].items()))

        counts = run.data_counts
        report.time_estimate = estimate_version_time(run, timer, optimal, report.steps,
                                                     len(datamodule.valid_dataset))
        if report.time_estimate.get("warning"):
            run.log(f"WARNING: {report.time_estimate['warning']}")
        training = {"epochs": epochs, "batch_size": optimal, "optimal_batch_size": optimal,
                    "train_batch_size": report.train_batch_size, "train_batch_size_source": report.train_batch_size_source,
                    "train_samples": len(train_ds), "valid_samples": len(datamodule.valid_dataset),
                    "lr": run.settings.get("LR"), "global_step": outcome.global_step,
                    "fit_wall_time_s": outcome.wall_time_s, "devices": run.devices.to_dict()}
        spec = run.spec(module=module, outcome=outcome, training=training, steps=report.steps,
                        extra={"smoke_test": {
                            "train_samples": counts.get("train"), "valid_samples": counts.get("valid"),
                            "steps": {"per_epoch": smoke_steps.per_epoch, "total": smoke_steps.total},
                            "contract": report.contract.overall_result, "evaluation": evaluation,
                            "probe": report.probe.to_dict() if report.probe else None,
                            "batch_search": report.search.to_dict() if report.search else None,
                            "time_estimate": report.time_estimate}})
        report.smoke_run = {
            "result": "PASS", "batch_size": optimal, "epochs": epochs, "steps": outcome.global_step,
            "monitor": f"{monitor} ({mode})", "best_score": outcome.best.get("score"),
            "wall_time_s": round(outcome.wall_time_s, 2), "peak_memory_mb": spec["peak_memory_mb"],
            "artifact_bytes": spec["artifact_bytes"],
            **{f"{split}_samples_{k}": v for split in ("train", "valid") for k, v in (counts.get(split) or {}).items()}}
        report.overall_result = "PASS"
        _finish_attempts(run, report, "PASS", None)
        smoke_retry_reports.write_smoke_report(run.paths.smoke_report(), report)
        return run.summary({
            "version_id": run.vid, "mode": "smoke", "overall_result": "PASS",
            "contract": report.contract.overall_result, "probe": report.probe.status,
            "optimal_batch_size": optimal, "train_batch_size": report.train_batch_size,
            "evaluation_interface": evaluation,
            "too_few_steps": bool(report.steps.get("too_few")), "monitor": monitor,
            "estimated_version_minutes": report.time_estimate.get("minutes"),
            "best_score": outcome.best.get("score"), "wall_time_s": spec["wall_time_s"],
            "peak_memory_mb": spec["peak_memory_mb"], "precision": run.precision,
            "report": run.paths.project.rel(run.paths.smoke_report())})
    except Exception as exc:
        if run.rank_zero and not child:
            if isinstance(exc, batch_search.BatchSearchError):
                report.search_trials = exc.trials
            write_failed_report(run, exc, stage, report)
        raise
