"""Tabular classification and regression: standardised features into an MLP, trained with Lightning.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --HIDDEN=256 --NUM_WORKERS=0

Reads dataset/prepdata/<dataset_id>/{train,valid}/<split>.jsonl (id, features: {name: value},
label for tabular-classification or target for tabular-regression) and, when the pipeline wrote
them, common/feature_stats.json and common/label_map.json. Numeric features are standardised
with the training split's mean/std (a missing value becomes 0 plus a "missing" flag);
categorical ones are one-hot (an unseen value is all zeros). Regression targets are standardised
for the loss and de-standardised for predictions. Writes Models/Artifacts/<version>/:
best.ckpt, last.ckpt, spec.json, logs/version_0/, additional_assets/feature_encoding.json, _tests/.
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import json
import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional import r2_score

from mlloop.script import entry, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
HIDDEN = 128          # width of the two hidden layers
DEPTH = 2             # hidden layers
DROPOUT = 0.1         # after each hidden layer
LR = 3e-3             # AdamW learning rate
WEIGHT_DECAY = 1e-4   # AdamW weight decay
BATCH_SIZE = None     # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = 0       # rows are tiny: worker processes cost more than they save
TRAINER = {}          # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("tabular-classification", "tabular-regression")
FROM_RULES = {"HIDDEN": "model_config.hidden", "DEPTH": "model_config.depth"}


# ---- data -----------------------------------------------------------------------------------------
def feature_stats(records):
    """Per feature: numeric {mean, std, missing} or categorical {values} (the pipeline's format)."""
    names = sorted({k for r in records for k in (r.get("features") or {})})
    stats = {}
    for name in names:
        values = [(r.get("features") or {}).get(name) for r in records]
        # NaN and inf are missing values, as encode() treats them: one would make the mean NaN
        present = [v for v in values if v is not None and not (isinstance(v, float) and not math.isfinite(v))]
        if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            mean = sum(present) / len(present)
            std = math.sqrt(sum((v - mean) ** 2 for v in present) / len(present))
            stats[name] = {"type": "numeric", "mean": mean, "std": std, "missing": len(values) - len(present)}
        else:
            stats[name] = {"type": "categorical", "values": sorted({str(v) for v in present}),
                           "missing": len(values) - len(present)}
    return stats


def encode(features, stats):
    """One row of features -> a flat list of floats, in the order of ``stats``."""
    out = []
    for name, st in stats.items():
        value = (features or {}).get(name)
        if st["type"] == "numeric":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            out.append((value - st["mean"]) / (st["std"] or 1.0) if ok else 0.0)
            out.append(0.0 if ok else 1.0)  # the "missing" flag
        else:
            out.extend(1.0 if value is not None and str(value) == v else 0.0 for v in st["values"])
    return out


class RowDataset(Dataset):
    def __init__(self, records, enc):
        self.x = torch.tensor([encode(r.get("features"), enc["stats"]) for r in records], dtype=torch.float32)
        if enc["task"] == "classification":
            self.y = torch.tensor([enc["label_map"][str(r["label"])] for r in records], dtype=torch.long)
        else:
            self.y = torch.tensor([(float(r["target"]) - enc["target_mean"]) / enc["target_std"] for r in records])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class RowData(L.LightningDataModule):
    def __init__(self, run, enc, num_workers, batch_size=32):
        super().__init__()
        self.run, self.enc, self.num_workers, self.batch_size = run, enc, num_workers, batch_size
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        self.train_dataset = RowDataset(self.run.records("train"), self.enc)
        self.valid_dataset = RowDataset(self.run.records("valid"), self.enc)

    def _loader(self, dataset, shuffle):
        # drop_last in training: a last batch of one sample breaks BatchNorm (runtime.training.count_steps agrees)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle and len(dataset) > self.batch_size,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.valid_dataset, shuffle=False)


def encoding_for(run):
    """What turns a record into tensors, fitted on the whole training split (kept in hparams)."""
    common = run.prepdata_dir / "common"
    train = run.full_index("train")
    path = common / "feature_stats.json"
    stats = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else feature_stats(train)
    stats = {k: v for k, v in sorted(stats.items()) if v.get("type") in ("numeric", "categorical")}
    if run.task_type == "tabular-classification":
        path = common / "label_map.json"
        labels = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else \
            {v: i for i, v in enumerate(sorted({str(r["label"]) for r in train + run.full_index("valid")}))}
        return {"task": "classification", "stats": stats, "label_map": labels}
    targets = [float(r["target"]) for r in train]
    mean = sum(targets) / len(targets)
    std = math.sqrt(sum((t - mean) ** 2 for t in targets) / len(targets)) or 1.0
    return {"task": "regression", "stats": stats, "target_mean": mean, "target_std": std}


# ---- model ----------------------------------------------------------------------------------------
class TabularMLP(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        layers, width = [], h.in_features
        for _ in range(h.depth):
            layers += [nn.Linear(width, h.hidden), nn.ReLU(), nn.Dropout(h.dropout)]
            width = h.hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, h.out_features))
        self.classify = h.encoding["task"] == "classification"

    def forward(self, x):
        out = self.net(x)
        return out if self.classify else out.squeeze(-1)

    def loss(self, out, y, reduction="mean"):
        return F.cross_entropy(out, y, reduction=reduction) if self.classify else F.mse_loss(out, y, reduction=reduction)

    def training_step(self, batch, batch_idx):
        x, y = batch
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return self.loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.log("val_loss", self.loss(out, y), on_epoch=True, sync_dist=True)
        if self.classify:
            self.log("val_accuracy", (out.argmax(1) == y).float().mean(), on_epoch=True, sync_dist=True)

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        x, y = batch
        out = self(x)
        if self.classify:
            return {"accuracy": (out.argmax(1) == y).float().mean().item()}
        return {"r2": float(r2_score(out.float(), y.float()))}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def observe(model):
    """observed_* for the expected_* contract: one dummy forward pass, batch 1."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, model.hparams.in_features))
    model.train(was_training)
    return {"in_features": model.hparams.in_features, "num_outputs": model.hparams.out_features,
            "output_shape": list(out.shape), "num_classes": model.hparams.out_features if model.classify else None}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = TabularMLP(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    return read_index(prepdata_dir, split)


def make_batch(records, prepdata_dir, device):
    return {"features": [r.get("features") for r in records],
            "targets": [r.get("label") if "label" in r else r.get("target") for r in records], "device": device}


def predict(model, batch):
    enc = model.hparams.encoding
    x = torch.tensor([encode(f, enc["stats"]) for f in batch["features"]], dtype=torch.float32, device=batch["device"])
    out = model(x).float()
    results = []
    if model.classify:
        classes = [label for label, _ in sorted(enc["label_map"].items(), key=lambda kv: kv[1])]
        probabilities = out.softmax(-1).tolist()  # scores: roc_auc, log_loss, top_k_accuracy need them
        for row, target, probs in zip(out, batch["targets"], probabilities):
            known = target is not None and str(target) in enc["label_map"]
            loss = F.cross_entropy(row[None], torch.tensor([enc["label_map"][str(target)]], device=row.device)).item() \
                if known else None
            results.append({"prediction": classes[int(row.argmax())], "target": None if target is None else str(target),
                            "loss": loss, "scores": dict(zip(classes, probs))})
        return results
    for value, target in zip(out.tolist(), batch["targets"]):
        prediction = value * enc["target_std"] + enc["target_mean"]
        loss = ((prediction - float(target)) / enc["target_std"]) ** 2 if target is not None else None
        results.append({"prediction": prediction, "target": None if target is None else float(target), "loss": loss})
    return results


def write_sample(record, result, folder, prepdata_dir):
    folder = Path(folder)
    (folder / "input.json").write_text(json.dumps(record.get("features"), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (folder / "output.txt").write_text(f"{result['prediction']}\n", encoding="utf-8")
    (folder / "gt.txt").write_text(f"{result['target']}\n", encoding="utf-8")


# ---- Trainer options (forwarded to lightning.Trainer; the harness refuses the keys it owns) -------
def callbacks():
    """Extra Lightning callbacks for this version, e.g. [EarlyStopping("val_loss", patience=3)] or
    [StochasticWeightAveraging(swa_lrs=1e-4)] from lightning.pytorch.callbacks; [] for none."""
    return []


# ---- main -----------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    run = start(__file__, globals(), argv, from_rules=FROM_RULES, task_types=TASK_TYPES)
    s = run.settings
    enc = encoding_for(run)
    in_features = len(encode({}, enc["stats"]))
    out_features = len(enc["label_map"]) if enc["task"] == "classification" else 1
    model = TabularMLP({"in_features": in_features, "out_features": out_features, "hidden": s["HIDDEN"],
                        "depth": s["DEPTH"], "dropout": s["DROPOUT"], "lr": s["LR"], "weight_decay": s["WEIGHT_DECAY"],
                        "encoding": enc})
    run.save_asset("feature_encoding.json", enc)
    return run.fit(model, RowData(run, enc, s["NUM_WORKERS"]), observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
