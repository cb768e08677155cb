"""Time-series forecasting: a window of past values into a linear map plus an MLP, trained with Lightning.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --CONTEXT=48 --HIDDEN=256

Reads dataset/prepdata/<dataset_id>/{train,valid}/<split>.jsonl (id, series_path, start, horizon,
target; meta.context_rows). series_path is a CSV with a header row whose LAST column is the
value; ``start`` is the data row (0-based) of the first target value, so the model reads the
CONTEXT rows before it. The pipeline guarantees meta.context_rows clean rows there (no gap,
repeated hour or missing value); CONTEXT may not exceed it. Each window is scaled by the mean
and standard deviation of its own context (fitted on the history only: nothing of the target or
of later rows leaks in) and the forecast is scaled back, so series in different units share one
model. Writes Models/Artifacts/<version>/: best.ckpt, last.ckpt, spec.json, logs/version_0/,
additional_assets/forecast_window.json (context, horizon, scaling) and _tests/.
predict() returns each record's forecast, target and the context it read as ``history``
(mase@m scales by that history's seasonal naive error; the floor is its seasonal naive forecast).
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import json
import math
from functools import lru_cache
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlloop.script import MlloopError, entry, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
CONTEXT = 72          # past rows the model reads (3 days of hours); at most the records' meta.context_rows
HIDDEN = 128          # width of the MLP's hidden layers
DEPTH = 2             # hidden layers of the MLP (0: the linear map alone)
DROPOUT = 0.1         # after each hidden layer
LR = 3e-3             # AdamW learning rate
WEIGHT_DECAY = 1e-4   # AdamW weight decay
BATCH_SIZE = None     # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = 0       # windows are in memory: worker processes cost more than they save
TRAINER = {}          # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("time-series-forecasting",)
FROM_RULES = {"CONTEXT": "model_config.context_length", "HIDDEN": "model_config.hidden"}
MIN_SCALE = 1e-3      # a flat context would divide by ~0: its scale is floored here


# ---- data -----------------------------------------------------------------------------------------
def read_series(path: str) -> tuple:
    """The value column (the last) of a series CSV; a cell that is not a number becomes NaN. Many
    windows share one file: it is read once (again only when it changes)."""
    st = Path(path).stat()
    return _read_values(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=256)
def _read_values(path: str, mtime_ns: int, size: int) -> tuple:
    values = []
    for line in Path(path).read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            cell = line.rpartition(",")[2].strip()
            try:
                values.append(float(cell))
            except ValueError:
                values.append(math.nan)
    return tuple(values)


def history_of(record, split_dir, context):
    """The ``context`` values before the record's first target row, checked clean."""
    values, begin = read_series(str(Path(split_dir) / record["series_path"])), int(record["start"]) - context
    window = values[max(begin, 0):int(record["start"])]
    clean = (record.get("meta") or {}).get("context_rows")  # beyond these rows the pipeline checked nothing
    if begin < 0 or len(window) != context or (isinstance(clean, int) and context > clean) \
            or not all(math.isfinite(v) for v in window):
        clean = min(n for n in (clean, int(record["start"])) if isinstance(n, int))
        raise MlloopError(f"record {record.get('id')!r}: CONTEXT {context} reads the rows before row {record['start']} "
                          f"of {record['series_path']}, but only {clean} of them are checked clean (meta.context_rows); "
                          f"lower CONTEXT to at most {clean}.")
    return list(window)


def windows(records, split_dir, context):
    """(x, y): the records' contexts and targets as float tensors, in the series' own units."""
    x = torch.tensor([history_of(r, split_dir, context) for r in records], dtype=torch.float32)
    y = torch.tensor([[float(v) for v in r["target"]] for r in records], dtype=torch.float32)
    return x, y


class WindowData(L.LightningDataModule):
    def __init__(self, run, context, num_workers, batch_size=32):
        super().__init__()
        self.run, self.context, self.num_workers, self.batch_size = run, context, num_workers, batch_size
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        root = self.run.prepdata_dir
        self.train_dataset = TensorDataset(*windows(self.run.records("train"), root / "train", self.context))
        self.valid_dataset = TensorDataset(*windows(self.run.records("valid"), root / "valid", self.context))

    def _loader(self, dataset, shuffle):
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle and len(dataset) > self.batch_size,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.valid_dataset, shuffle=False)


# ---- model ----------------------------------------------------------------------------------------
class Forecaster(L.LightningModule):
    """forecast = linear(context) + mlp(context), on the window's own scale (NLinear-style)."""

    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        self.linear = nn.Linear(h.context, h.horizon)
        layers, width = [], h.context
        for _ in range(h.depth):
            layers += [nn.Linear(width, h.hidden), nn.GELU(), nn.Dropout(h.dropout)]
            width = h.hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, h.horizon)) if h.depth else None

    @staticmethod
    def scale_of(x):
        """Mean and standard deviation of each window's context: the history only."""
        return x.mean(1, keepdim=True), x.std(1, keepdim=True).clamp_min(MIN_SCALE)

    def forward_scaled(self, x_scaled):
        out = self.linear(x_scaled)
        return out + self.mlp(x_scaled) if self.mlp is not None else out

    def forward(self, x):
        """The forecast in the series' units."""
        mean, std = self.scale_of(x)
        return self.forward_scaled((x - mean) / std) * std + mean

    def loss(self, x, y, reduction="mean"):
        """MSE on the context's scale, so every series weighs the same whatever its unit."""
        mean, std = self.scale_of(x)
        return F.mse_loss(self.forward_scaled((x - mean) / std), (y - mean) / std, reduction=reduction)

    def training_step(self, batch, batch_idx):
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return self.loss(*batch)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", self.loss(x, y), on_epoch=True, sync_dist=True)
        self.log("val_mae", (self(x) - y).abs().mean(), on_epoch=True, sync_dist=True)

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        x, y = batch
        return {"mae": (self(x) - y).abs().mean().item()}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def observe(model):
    """observed_* for the expected_* contract: one dummy forward pass, batch 1."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, model.hparams.context))
    model.train(was_training)
    return {"context_length": model.hparams.context, "horizon": model.hparams.horizon, "output_shape": list(out.shape)}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = Forecaster(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    # each record remembers its split: series paths are relative to the split's folder
    return [{**r, "_split": split} for r in read_index(prepdata_dir, split)]


def make_batch(records, prepdata_dir, device):
    return {"records": records, "prepdata_dir": Path(prepdata_dir), "device": device}


def predict(model, batch):
    h = model.hparams
    records = batch["records"]
    x = torch.tensor([history_of(r, batch["prepdata_dir"] / r.get("_split", "valid"), h.context) for r in records],
                     dtype=torch.float32, device=batch["device"])
    forecast = model(x).float().tolist()
    targets = [None if r.get("target") is None else [float(v) for v in r["target"]] for r in records]
    losses = [None] * len(records)
    scored = [i for i, t in enumerate(targets) if t is not None and len(t) == h.horizon]
    if scored:  # the training loss per window (on its context's scale)
        y = torch.tensor([targets[i] for i in scored], device=x.device)
        per_window = model.loss(x[scored], y, reduction="none").mean(1).tolist()
        for i, value in zip(scored, per_window):
            losses[i] = value
    return [{"prediction": pred, "target": target, "loss": loss, "history": hist}
            for pred, target, loss, hist in zip(forecast, targets, losses, x.tolist())]


def write_sample(record, result, folder, prepdata_dir):
    """input.json (the context), output.json / gt.json (forecast, target) and plot.png of all three."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder, hist, pred, target = Path(folder), result["history"], result["prediction"], result["target"]
    (folder / "input.json").write_text(json.dumps({"series_id": record.get("series_id"), "start": record.get("start"),
                                                   "history": hist}) + "\n", encoding="utf-8")
    (folder / "output.json").write_text(json.dumps(pred) + "\n", encoding="utf-8")
    if target is not None:
        (folder / "gt.json").write_text(json.dumps(target) + "\n", encoding="utf-8")
    future = range(len(hist), len(hist) + len(pred))
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    ax.plot(range(len(hist)), hist, color="0.4", label="history")
    if target is not None:
        ax.plot(future, target, color="tab:green", label="target")
    ax.plot(future, pred, color="tab:orange", linestyle="--", label="forecast")
    ax.axvline(len(hist) - 0.5, color="0.8", linewidth=1)
    ax.set_title(f"{record.get('series_id')} from row {record.get('start')}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(folder / "plot.png")
    plt.close(fig)


# ---- Trainer options (forwarded to lightning.Trainer; the harness refuses the keys it owns) -------
def callbacks():
    """Extra Lightning callbacks for this version, e.g. [EarlyStopping("val_loss", patience=3)] or
    [StochasticWeightAveraging(swa_lrs=1e-4)] from lightning.pytorch.callbacks; [] for none."""
    return []


# ---- main -----------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    run = start(__file__, globals(), argv, from_rules=FROM_RULES, task_types=TASK_TYPES)
    s = run.settings
    horizons = {int(r["horizon"]) for r in run.full_index("train") + run.full_index("valid")}
    if len(horizons) != 1:
        raise MlloopError(f"the windows forecast {sorted(horizons)} rows; this model predicts one fixed horizon.")
    model = Forecaster({"context": s["CONTEXT"], "horizon": horizons.pop(), "hidden": s["HIDDEN"],
                        "depth": s["DEPTH"], "dropout": s["DROPOUT"], "lr": s["LR"],
                        "weight_decay": s["WEIGHT_DECAY"]})
    run.save_asset("forecast_window.json", {"context": model.hparams.context, "horizon": model.hparams.horizon,
                                            "scaling": "each window by its context's mean and standard deviation"})
    return run.fit(model, WindowData(run, s["CONTEXT"], s["NUM_WORKERS"]), observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
