"""Training-side benchmarks: the template against a plain PyTorch loop, and mlloop's batch-size
search against Lightning's Tuner. Not a test: it prints ratios side by side in one run.

    uv run python benchmarks/train_bench.py                     # CPU: step time + batch search
    uv run python benchmarks/train_bench.py --reps 7 --threads 2
    uv run python benchmarks/train_bench.py --only search       # just the search comparison
    uv run python benchmarks/train_bench.py --gpu               # + bf16-mixed throughput (needs CUDA)

1. Step time (target: template/plain <= 1.05 for timm resnet18 at 64x64 on CPU). Both sides
   train the image template's own Classifier on the same random in-memory data, interleaved
   (plain, template, plain, template ...), seeds fixed. The template side is mlloop.runtime's
   Trainer set-up (CSVLogger, best.ckpt weights-only + last.ckpt full, one self.log per step);
   the plain side is a hand loop that also validates each epoch and saves best/last with
   torch.save. Step time = gap between consecutive step-end timestamps, the first steps of each
   epoch dropped; the ratio is per repetition (paired), reported as median [min..max].
2. Batch-size search on a simulated memory ceiling (the model raises CUDA's out-of-memory error
   above N samples): mlloop's search (powers of two, largest first, 10 steps each) against
   Lightning's Tuner.scale_batch_size (power and binsearch, max_val = the range's maximum).
   Counts are deterministic; "untested" marks a returned size the method never trained with.
3. --gpu: bf16-mixed throughput of the template's Trainer against a plain loop under
   torch.autocast(bfloat16), resnet18 at 224, when CUDA is available.
4. --only threads: the template's step time with mlloop's thread default (the CPUs this process
   may use: affinity and cgroup quota, fewer when the load average says every CPU is already
   busy; mlloop.runtime.defaults) against the usable CPUs alone, torch's own default, 4x the
   usable CPUs (what torch picks in a container whose quota is below the cores it sees) and
   1 thread. Configurations are interleaved and rotated per repetition; ratios are against
   mlloop's default. On a machine shared with other jobs the numbers are noisy: read the
   spread, not one value.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlloop.bundle import template

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from template_steps import step_gaps  # noqa: E402  (one definition of a step's time for both benchmarks)
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before main() sets --threads


def load_template():
    spec = importlib.util.spec_from_file_location("bench_image_template", template("train/image_classification.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_model(tpl, backbone: str, image: int, classes: int = 10):
    return tpl.Classifier({"backbone": backbone, "pretrained": False, "image_size": image, "num_classes": classes,
                           "classes": [str(i) for i in range(classes)], "dropout": 0.0, "lr": 1e-3,
                           "weight_decay": 1e-4, "label_smoothing": 0.0})


def make_data(n: int, image: int, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, image, image, generator=g), torch.randint(0, classes, (n,), generator=g))


# ---- 1. template vs plain ---------------------------------------------------------------------

def run_plain(tpl, args, device) -> dict:
    torch.manual_seed(0)
    model = make_model(tpl, args.backbone, args.image).to(device)
    opt = model.configure_optimizers()
    train = DataLoader(make_data(args.bs * args.steps, args.image), batch_size=args.bs, shuffle=True)
    valid = DataLoader(make_data(args.bs * 4, args.image, seed=1), batch_size=args.bs)
    stamps, best, t0 = [], float("inf"), time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        log = open(Path(out) / "metrics.csv", "w")
        step = 0
        for epoch in range(args.epochs):
            model.train()
            for x, y in train:
                x, y = x.to(device), y.to(device)
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                step += 1
                if step % 50 == 0:
                    log.write(f"{epoch},{step},{loss.item()}\n")
                stamps.append(time.perf_counter())
            model.eval()
            with torch.no_grad():
                val = sum(nn.functional.cross_entropy(model(x.to(device)), y.to(device)).item() for x, y in valid)
            if val < best:
                best = val
                torch.save({"state_dict": model.state_dict()}, Path(out) / "best.ckpt")
            torch.save({"state_dict": model.state_dict(), "optimizer": opt.state_dict()}, Path(out) / "last.ckpt")
        log.close()
    return {"gaps": step_gaps(stamps, args.steps, args.skip), "wall": time.perf_counter() - t0}


def run_template(tpl, args, device) -> dict:
    import lightning as L

    from mlloop.runtime import training

    class Stamps(L.Callback):
        def __init__(self):
            self.stamps = []

        def on_train_batch_end(self, *a, **k):
            self.stamps.append(time.perf_counter())

    class Data(L.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.batch_size = args.bs
            self.train_dataset, self.valid_dataset = make_data(args.bs * args.steps, args.image), make_data(args.bs * 4, args.image, 1)

        def train_dataloader(self):
            return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self):
            return DataLoader(self.valid_dataset, batch_size=self.batch_size)

    torch.manual_seed(0)
    model = make_model(tpl, args.backbone, args.image)
    stamps = Stamps()
    devices = training.resolve_devices(1 if device.type == "cuda" else 0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        training.fit(Path(out), model, Data(), epochs=args.epochs, devices=devices, precision="32-true",
                     steps_per_epoch=args.steps, callbacks=[stamps], num_sanity_val_steps=0)
    return {"gaps": step_gaps(stamps.stamps, args.steps, args.skip), "wall": time.perf_counter() - t0}


def bench_steps(args) -> dict:
    tpl = load_template()
    device = torch.device("cpu")
    run_plain(tpl, argparse.Namespace(**{**vars(args), "epochs": 1, "steps": 6}), device)  # warm-up, untimed
    run_template(tpl, argparse.Namespace(**{**vars(args), "epochs": 1, "steps": 6}), device)
    rows = []
    for rep in range(args.reps):
        plain = run_plain(tpl, args, device)
        template = run_template(tpl, args, device)
        p, t = statistics.median(plain["gaps"]), statistics.median(template["gaps"])
        rows.append({"rep": rep, "plain_ms": p * 1e3, "template_ms": t * 1e3, "ratio": t / p,
                     "wall_ratio": template["wall"] / plain["wall"]})
        print(f"  rep {rep}: plain {p * 1e3:7.2f} ms/step   template {t * 1e3:7.2f} ms/step   "
              f"ratio x{t / p:.3f}   wall x{template['wall'] / plain['wall']:.3f}", flush=True)
    ratios, walls = [r["ratio"] for r in rows], [r["wall_ratio"] for r in rows]
    return {"rows": rows, "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "wall_median": statistics.median(walls), "wall_min": min(walls),
            "wall_max": max(walls)}


# ---- 2. batch-size search vs Lightning's Tuner --------------------------------------------------

def ceiling_module(ceiling: int):
    import lightning as L

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                     nn.Flatten(), nn.Linear(8, 10))
            self.trained: list[int] = []   # batch sizes of completed training steps
            self.attempted: list[int] = []  # batch sizes of every step started (out-of-memory ones too)

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.attempted.append(int(x.shape[0]))
            if x.shape[0] > ceiling:
                raise RuntimeError(f"CUDA out of memory. Tried to allocate {x.shape[0]} samples (simulated ceiling {ceiling})")
            self.trained.append(int(x.shape[0]))
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            if batch[0].shape[0] > ceiling:
                raise RuntimeError("CUDA out of memory. Tried to allocate (simulated)")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Net()


def trials_of(attempted: list[int]) -> int:
    """Trials = runs of consecutive steps at one batch size."""
    return sum(1 for i, b in enumerate(attempted) if i == 0 or attempted[i - 1] != b)


def mlloop_search(lo, hi, ceiling, n_train, steps=10) -> dict:
    from mlloop.runtime import batch_search

    module = ceiling_module(ceiling)
    train_steps, _ = batch_search.module_trainer(module, make_data(n_train, 16), torch.device("cpu"))
    t0 = time.perf_counter()
    try:
        returned = batch_search.search(train_steps, lo, hi, steps=steps).batch_size
    except batch_search.BatchSearchError:
        returned = None
    return {"returned": returned, "trials": trials_of(module.attempted), "steps": len(module.trained),
            "samples": sum(module.trained), "tried_ok": sorted(set(module.trained)), "wall": time.perf_counter() - t0}


def lightning_search(lo, hi, ceiling, n_train, mode) -> dict:
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    class Data(L.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.batch_size = lo
            self.ds = make_data(n_train, 16)

        def train_dataloader(self):
            return DataLoader(self.ds, batch_size=self.batch_size, shuffle=True)

        def val_dataloader(self):
            return DataLoader(self.ds, batch_size=self.batch_size)

    module = ceiling_module(ceiling)
    with tempfile.TemporaryDirectory() as out:
        trainer = L.Trainer(default_root_dir=out, accelerator="cpu", max_epochs=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        t0 = time.perf_counter()
        try:
            returned = Tuner(trainer).scale_batch_size(module, datamodule=Data(), mode=mode, init_val=lo,
                                                       max_val=hi, steps_per_trial=3, max_trials=25)
        except Exception as exc:  # noqa: BLE001 - report whatever it does
            returned = f"error: {type(exc).__name__}"
    return {"returned": returned, "trials": trials_of(module.attempted), "steps": len(module.trained),
            "samples": sum(module.trained), "tried_ok": sorted(set(module.trained)), "wall": time.perf_counter() - t0}


SCENARIOS = [  # (label, min, max, ceiling, training samples)
    ("smoke config [4,32], ceiling 24", 4, 32, 24, 100),
    ("[4,32], max fits (ceiling 1000)", 4, 32, 1000, 100),
    ("[4,256], ceiling 48", 4, 256, 48, 1000),
    ("[4,256], ceiling 200", 4, 256, 200, 1000),
    ("nothing fits (ceiling 3 < min 4)", 4, 32, 3, 100),
]


def verdict(r, lo, hi, ceiling) -> str:
    got = r["returned"]
    if not isinstance(got, int):
        return "clear error" if got is None else str(got)
    notes = []
    if got not in r["tried_ok"]:
        notes.append("UNTESTED")
    if got > ceiling:
        notes.append("> ceiling: would run out of memory")
    if got < lo or got > hi:
        notes.append("outside [min,max]")
    return ", ".join(notes) or "ok"


def bench_search() -> list[dict]:
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows = []
    for label, lo, hi, ceiling, n in SCENARIOS:
        for method in ("mlloop", "pl_power", "pl_binsearch"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = mlloop_search(lo, hi, ceiling, n) if method == "mlloop" else \
                    lightning_search(lo, hi, ceiling, n, method.split("_")[1])
            r.update(scenario=label, method=method, verdict=verdict(r, lo, hi, ceiling))
            rows.append(r)
    return rows


# ---- 3. GPU bf16-mixed throughput ---------------------------------------------------------------

def bench_gpu(args) -> dict | None:
    if not torch.cuda.is_available():
        return None
    from mlloop.runtime import training

    tpl = load_template()
    device = torch.device("cuda")
    n_steps, bs, image = args.gpu_steps, args.gpu_bs, 224
    data = make_data(bs * 8, image)
    x_all, y_all = data.tensors[0].to(device), data.tensors[1].to(device)

    def plain():
        torch.manual_seed(0)
        model = make_model(tpl, "resnet18", image).to(device)
        opt = model.configure_optimizers()
        for i in range(n_steps + 10):
            if i == 10:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            x, y = x_all[(i % 8) * bs:(i % 8 + 1) * bs], y_all[(i % 8) * bs:(i % 8 + 1) * bs]
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return n_steps * bs / (time.perf_counter() - t0)

    def template():
        import lightning as L

        stamps = []

        class Sync(L.Callback):
            def on_train_batch_end(self, *a, **k):
                if len(stamps) in (10, n_steps + 10):
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())

        class Data(L.LightningDataModule):
            batch_size = bs

            def train_dataloader(self):
                return DataLoader(data, batch_size=bs, shuffle=False, pin_memory=True)

            def val_dataloader(self):
                return DataLoader(make_data(bs, image, 1), batch_size=bs)

        torch.manual_seed(0)
        model = make_model(tpl, "resnet18", image)
        with tempfile.TemporaryDirectory() as out:
            training.fit(Path(out), model, Data(), epochs=(n_steps + 12) // 8 + 1,
                         devices=training.resolve_devices(1), precision="bf16-mixed", steps_per_epoch=8,
                         callbacks=[Sync()], num_sanity_val_steps=0, max_steps=n_steps + 11)
        return n_steps * bs / (stamps[n_steps + 10] - stamps[10])

    rows = []
    for _ in range(args.reps):
        p, t = plain(), template()
        rows.append({"plain_samples_s": p, "template_samples_s": t, "ratio": t / p})
        print(f"  plain {p:8.1f} samples/s   template {t:8.1f} samples/s   template/plain x{t / p:.3f}", flush=True)
    ratios = [r["ratio"] for r in rows]
    return {"device": torch.cuda.get_device_name(0), "rows": rows, "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "note": "GPU-resident batches; epoch ends include validation"}


# ---- 4. thread defaults ---------------------------------------------------------------------------

def bench_threads(args) -> dict:
    from mlloop.runtime import defaults

    tpl = load_template()
    cpus, why = defaults.usable_cpus()
    chosen, reason = defaults.default_threads()  # what start() picks now (the load average counts)
    configs = [("mlloop default", chosen), ("usable CPUs", cpus), ("torch default", TORCH_DEFAULT_THREADS),
               ("4x usable CPUs", 4 * cpus), ("1 thread", 1)]
    print(f"   mlloop's default: {chosen} ({reason}); torch's own default here: {TORCH_DEFAULT_THREADS}")
    warm = argparse.Namespace(**{**vars(args), "epochs": 1, "steps": 6})
    run_template(tpl, warm, torch.device("cpu"))  # warm-up, untimed
    times: dict[str, list[float]] = {name: [] for name, _ in configs}
    for rep in range(args.reps):
        order = configs[rep % len(configs):] + configs[:rep % len(configs)]  # rotate: no config always goes first
        cells = []
        for name, threads in order:
            torch.set_num_threads(threads)
            ms = statistics.median(run_template(tpl, args, torch.device("cpu"))["gaps"]) * 1e3
            times[name].append(ms)
            cells.append(f"{name} ({threads}) {ms:7.2f} ms")
        print(f"  rep {rep}: " + "   ".join(cells), flush=True)
    torch.set_num_threads(args.threads)
    base = times["mlloop default"]
    out = {"usable_cpus": cpus, "why": why, "mlloop_default": chosen, "mlloop_why": reason,
           "torch_default": TORCH_DEFAULT_THREADS, "ms": times, "ratios": {}}
    for name, threads in configs[1:]:
        ratios = [t / b for t, b in zip(times[name], base)]
        out["ratios"][name] = {"threads": threads, "median": statistics.median(ratios), "min": min(ratios),
                               "max": max(ratios)}
    return out


# ---- main -----------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("steps", "search", "gpu", "threads"), default=None)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image", type=int, default=64)
    parser.add_argument("--bs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=24, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps dropped at the start of each epoch")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    parser.add_argument("--gpu", action="store_true", help="also run the bf16-mixed throughput comparison")
    parser.add_argument("--gpu-steps", type=int, default=100)
    parser.add_argument("--gpu-bs", type=int, default=128)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import lightning

    from mlloop.runtime.training import quiet_lightning

    quiet_lightning()
    env = {"torch": torch.__version__, "lightning": lightning.__version__, "threads": args.threads,
           "cuda": torch.cuda.is_available()}
    print(f"environment: {json.dumps(env)}")
    results: dict = {"environment": env}
    if args.only in (None, "steps"):
        print(f"\n1. step time: timm {args.backbone} at {args.image}x{args.image}, batch {args.bs}, {args.steps} steps x "
              f"{args.epochs} epochs, {args.reps} interleaved repetitions (CPU)")
        s = bench_steps(args)
        results["steps"] = s
        print(f"   template/plain step time: median x{s['ratio_median']:.3f} [{s['ratio_min']:.3f}..{s['ratio_max']:.3f}]"
              f"  (target <= 1.05)   wall incl. set-up/validation/checkpoints: x{s['wall_median']:.3f} "
              f"[{s['wall_min']:.3f}..{s['wall_max']:.3f}]")
    if args.only in (None, "search"):
        print("\n2. batch-size search on a simulated memory ceiling (mlloop: 10 steps per trial; Lightning: 3)")
        rows = bench_search()
        results["search"] = rows
        print(f"   {'scenario':<36} {'method':<13} {'returned':>9} {'trials':>6} {'steps':>6} {'samples':>8} "
              f"{'wall s':>7}  verdict")
        for r in rows:
            print(f"   {r['scenario']:<36} {r['method']:<13} {str(r['returned']):>9} {str(r['trials']):>6} "
                  f"{r['steps']:>6} {r['samples']:>8} {r['wall']:>7.2f}  {r['verdict']}")
    if args.only == "gpu" or args.gpu:
        print("\n3. bf16-mixed throughput on the GPU: template Trainer vs plain autocast loop (resnet18 at 224)")
        g = bench_gpu(args)
        results["gpu"] = g
        if g is None:
            print("   not run: CUDA is not available on this machine")
        else:
            print(f"   {g['device']}: template/plain throughput median x{g['ratio_median']:.3f} "
                  f"[{g['ratio_min']:.3f}..{g['ratio_max']:.3f}]")
    if args.only == "threads":
        print(f"\n4. thread defaults: template step time, timm {args.backbone} at {args.image}x{args.image}, batch "
              f"{args.bs}, {args.steps} steps x {args.epochs} epochs, {args.reps} interleaved repetitions (CPU; "
              "noisy on a shared machine)")
        th = bench_threads(args)
        results["threads"] = th
        base = statistics.median(th["ms"]["mlloop default"])
        print(f"   {'threads':<28} {'median ms/step':>14}  ratio to mlloop's default (median [min..max])")
        print(f"   {'mlloop default (' + str(th['mlloop_default']) + ')':<28} {base:14.2f}  x1.000")
        for name, r in th["ratios"].items():
            print(f"   {name + ' (' + str(r['threads']) + ')':<28} {statistics.median(th['ms'][name]):14.2f}  "
                  f"x{r['median']:.3f} [{r['min']:.3f}..{r['max']:.3f}]")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
