"""Step time of a training template under mlloop's Trainer set-up against a plain PyTorch loop on
the same model and data. Not a test: it prints the ratio per repetition, side by side.

    uv run python benchmarks/template_steps.py --case image_classification
    uv run python benchmarks/template_steps.py --case all --reps 5 --threads 1
    uv run python benchmarks/template_steps.py --case time_series_forecasting --batch 32
    uv run python benchmarks/template_steps.py --list

Target: template/plain step time <= 1.05 (median of paired repetitions). Each case trains at the
batch size its template trains with on a dataset of realistic size (``BATCH`` in the case; for the
small models that is the rules' default ``max_batch_size``, 128); ``--batch`` overrides it. Next to
the ratio the runner prints the template's extra time per step in ms: Lightning's loop costs a
roughly fixed amount per step, so the ratio of a model whose step is a few ms is that extra time
over the step time.

A case is ``benchmarks/cases/<name>.py`` with ``TEMPLATE = "<file>.py"`` (a training template in
the build-baseline skill's templates/train/, found through mlloop.bundle) and
``build(tpl, seed) -> dict`` returning ``model`` (a fresh LightningModule from the template),
``train`` and ``valid`` (DataLoaders of in-memory synthetic data shaped like the task's batches)
and ``loss`` (``callable(model, batch) -> scalar tensor``:
what training_step computes, in plain torch). Both sides get a model built with the same seed.

The template side is mlloop.runtime.training.fit: CSVLogger, best.ckpt (weights only) and
last.ckpt (full state), the template's own training_step and validation_step with their
self.log calls. The plain side is a hand loop that also validates each epoch and saves best and
last with torch.save. Step time is the gap between consecutive step ends inside an epoch, the
first ``--skip`` steps of each epoch dropped; repetitions are interleaved (plain, template,
plain, template ...) and the ratio is per repetition, reported as median [min..max]. On a
machine shared with other jobs read the spread, not one value, or use ``--clock cpu``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
# wall: what a user waits; cpu: this process's CPU time (all its threads), which other jobs on a
# shared machine disturb far less (with --threads 1 it is the step's own work)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = [time.perf_counter]
CASES = HERE / "cases"


def case_names() -> list[str]:
    return sorted(p.stem for p in CASES.glob("*.py") if not p.stem.startswith("_"))


def load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template_file(name: str) -> Path:
    from mlloop.bundle import template

    return template(f"train/{name}")


def load_case(name: str):
    case = load_file(CASES / f"{name}.py", f"bench_case_{name}")
    return case, load_file(template_file(case.TEMPLATE), f"bench_template_{name}")


def step_gaps(stamps: list[float], steps_per_epoch: int, skip: int) -> list[float]:
    """Gaps between consecutive step ends inside an epoch, after ``skip`` warm-up steps."""
    gaps = []
    for i in range(1, len(stamps)):
        if i % steps_per_epoch == 0 or i % steps_per_epoch < skip:
            continue  # straddles an epoch boundary (validation, checkpoint) or is warming up
        gaps.append(stamps[i] - stamps[i - 1])
    return gaps


def optimizer_of(model):
    """The optimizer configure_optimizers returns, whatever form Lightning accepts it in."""
    opt = model.configure_optimizers()
    if isinstance(opt, dict):
        opt = opt["optimizer"]
    if isinstance(opt, (list, tuple)):
        opt = opt[0]
        if isinstance(opt, (list, tuple)):
            opt = opt[0]
    return opt


def run_plain(build, tpl, epochs: int, skip: int) -> dict:
    torch.manual_seed(0)
    parts = build(tpl, 0)
    model, loss_of = parts["model"], parts["loss"]
    opt = optimizer_of(model)
    stamps, best, t0 = [], float("inf"), CLOCK[0]()
    with tempfile.TemporaryDirectory() as out:
        with open(Path(out) / "metrics.csv", "w") as log:
            step = 0
            for epoch in range(epochs):
                model.train()
                for batch in parts["train"]:
                    opt.zero_grad(set_to_none=True)
                    loss = loss_of(model, batch)
                    loss.backward()
                    opt.step()
                    step += 1
                    if step % 50 == 0:
                        log.write(f"{epoch},{step},{loss.item()}\n")
                    stamps.append(CLOCK[0]())
                model.eval()
                with torch.no_grad():
                    val = sum(float(loss_of(model, batch)) for batch in parts["valid"])
                if val < best:
                    best = val
                    torch.save({"state_dict": model.state_dict()}, Path(out) / "best.ckpt")
                torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict()}, Path(out) / "last.ckpt")
    return {"gaps": step_gaps(stamps, len(parts["train"]), skip), "wall": CLOCK[0]() - t0}


def run_template(build, tpl, epochs: int, skip: int) -> dict:
    import lightning as L

    from mlloop.runtime import training

    class Stamps(L.Callback):
        def __init__(self):
            self.stamps = []

        def on_train_batch_end(self, *a, **k):
            self.stamps.append(CLOCK[0]())

    torch.manual_seed(0)
    parts = build(tpl, 0)

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return parts["train"]

        def val_dataloader(self):
            return parts["valid"]

    stamps = Stamps()
    steps = len(parts["train"])
    t0 = CLOCK[0]()
    with tempfile.TemporaryDirectory() as out:
        training.fit(Path(out), parts["model"], Data(), epochs=epochs, devices=training.resolve_devices(0),
                     precision="32-true", steps_per_epoch=steps, callbacks=[stamps], num_sanity_val_steps=0)
    return {"gaps": step_gaps(stamps.stamps, steps, skip), "wall": CLOCK[0]() - t0}


def bench_case(name: str, reps: int, epochs: int, skip: int, batch: int | None = None) -> dict:
    case, tpl = load_case(name)
    if batch:
        case.BATCH = batch  # build() reads the module's BATCH when it makes the loaders
    run_plain(case.build, tpl, 1, skip)  # warm-up, untimed
    run_template(case.build, tpl, 1, skip)
    rows = []
    for rep in range(reps):
        plain = run_plain(case.build, tpl, epochs, skip)
        template = run_template(case.build, tpl, epochs, skip)
        p, t = statistics.median(plain["gaps"]), statistics.median(template["gaps"])
        rows.append({"rep": rep, "plain_ms": p * 1e3, "template_ms": t * 1e3, "ratio": t / p,
                     "extra_ms": (t - p) * 1e3, "wall_ratio": template["wall"] / plain["wall"]})
        print(f"  {name} rep {rep}: plain {p * 1e3:8.2f} ms/step   template {t * 1e3:8.2f} ms/step   "
              f"ratio x{t / p:.3f}   extra {(t - p) * 1e3:+.2f} ms   wall x{template['wall'] / plain['wall']:.3f}",
              flush=True)
    ratios, walls = [r["ratio"] for r in rows], [r["wall_ratio"] for r in rows]
    return {"case": name, "template": case.TEMPLATE, "batch": case.BATCH, "rows": rows,
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "plain_ms_median": statistics.median(r["plain_ms"] for r in rows),
            "extra_ms_median": statistics.median(r["extra_ms"] for r in rows),
            "wall_median": statistics.median(walls)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="all", help="a case name from benchmarks/cases/, or all")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="batch size for every case (default: each case's BATCH)")
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps dropped at the start of each epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (steadier on a shared machine)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    CLOCK[0] = CLOCKS[args.clock]
    if args.list:
        print("\n".join(case_names()))
        return {"cases": case_names()}
    names = case_names() if args.case == "all" else [args.case]
    unknown = [n for n in names if n not in case_names()]
    if unknown:
        raise SystemExit(f"no benchmark case {unknown[0]!r}; choose one of {', '.join(case_names())}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from mlloop.runtime.training import quiet_lightning

    quiet_lightning()
    results = {"threads": args.threads, "clock": args.clock, "torch": torch.__version__, "cases": []}
    for name in names:
        print(f"{name}: {args.reps} interleaved repetitions, {args.epochs} epochs, {args.threads} thread(s), "
              f"{args.clock} clock", flush=True)
        results["cases"].append(bench_case(name, args.reps, args.epochs, args.skip, args.batch))
    print(f"\ntemplate/plain step time, {args.clock} clock (target <= 1.05):")
    for r in results["cases"]:
        print(f"  {r['case']:<28} batch {r['batch']:>4}   median x{r['ratio_median']:.3f} "
              f"[{r['ratio_min']:.3f}..{r['ratio_max']:.3f}]   plain {r['plain_ms_median']:8.2f} ms/step   "
              f"extra {r['extra_ms_median']:+.2f} ms/step   wall x{r['wall_median']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
