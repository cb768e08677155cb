"""Image classification: a timm backbone and a linear head, trained with PyTorch Lightning.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --LR=3e-4 --NUM_WORKERS=0 --SMOKE=True

Reads dataset/prepdata/<dataset_id>/{train,valid}/<split>.jsonl (id, image_path, label) and
common/label_map.json. Writes Models/Artifacts/<version>/: best.ckpt (weights only, lowest
val_loss), last.ckpt (full state), spec.json, logs/version_0/{metrics.csv,hparams.yaml},
additional_assets/label_map.json and _tests/ reports. The rules (user_defined_rules.json) win
over the settings that FROM_RULES maps. The harness (seeding, folders, checkpoints, batch-size
search, reports) lives in mlloop.runtime, so a version's diff shows only its one change.
03_eval.py evaluates a version through the five functions of the evaluation interface below.
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import json
from pathlib import Path

import lightning as L
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from mlloop.script import entry, feature_observations, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
BACKBONE = "resnet18"    # any timm model that supports features_only; test_resnet for quick checks
PRETRAINED = False       # True downloads ImageNet weights (needs network access)
IMAGE_SIZE = None        # None: from the data (median image side, a multiple of 32, ≤ 224); resized, not cropped
DROPOUT = 0.0            # before the linear head; raise it when validation loss climbs while train falls
LR = 1e-3                # AdamW learning rate: 1e-3 suits training from scratch, ~1e-4 fine-tuning
WEIGHT_DECAY = 1e-4      # AdamW weight decay
LABEL_SMOOTHING = 0.0    # cross-entropy label smoothing
HFLIP = True             # random horizontal flips in training (turn off for text, digits, asymmetric classes)
BATCH_SIZE = None        # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = None       # None: from the usable CPUs and dataset size; 0 loads in the main process (easiest to debug)
TRAINER = {}             # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("image-classification",)
FROM_RULES = {"BACKBONE": "model_config.backbone", "PRETRAINED": "model_config.pretrained",
              "IMAGE_SIZE": "model_config.image_size"}


# ---- data -----------------------------------------------------------------------------------------
def read_label_map(prepdata_dir, records):
    """{label: index}: common/label_map.json from the pipeline, else the sorted labels seen."""
    path = Path(prepdata_dir) / "common" / "label_map.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {label: i for i, label in enumerate(sorted({str(r["label"]) for r in records}))}


def image_transform(image_size, mean, std, train, hflip=False):
    steps = [transforms.Resize((image_size, image_size))]
    if train and hflip:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(mean, std)])


def open_rgb(path):
    with Image.open(path) as image:
        return image.convert("RGB")


class ImageDataset(Dataset):
    def __init__(self, records, split_dir, label_map, transform):
        self.records, self.split_dir, self.label_map, self.transform = records, Path(split_dir), label_map, transform

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        return self.transform(open_rgb(self.split_dir / r["image_path"])), self.label_map[str(r["label"])]


class ImageData(L.LightningDataModule):
    """Train/valid images; run.records() gives the smoke test's seeded subset or the whole split."""

    def __init__(self, run, label_map, image_size, mean, std, hflip, num_workers, batch_size=32):
        super().__init__()
        self.run, self.label_map, self.batch_size, self.num_workers = run, label_map, batch_size, num_workers
        self.train_tf = image_transform(image_size, mean, std, train=True, hflip=hflip)
        self.valid_tf = image_transform(image_size, mean, std, train=False)
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        root = self.run.prepdata_dir
        self.train_dataset = ImageDataset(self.run.records("train"), root / "train", self.label_map, self.train_tf)
        self.valid_dataset = ImageDataset(self.run.records("valid"), root / "valid", self.label_map, self.valid_tf)

    def _loader(self, dataset, shuffle):
        # drop_last in training: a last batch of one sample breaks BatchNorm (runtime.training.count_steps agrees)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle and len(dataset) > self.batch_size,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.valid_dataset, shuffle=False)


# ---- model ----------------------------------------------------------------------------------------
class Classifier(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        self.backbone = timm.create_model(h.backbone, pretrained=h.pretrained, features_only=True, out_indices=[-1])
        channels = self.backbone.feature_info.channels()[-1]  # the head is sized by timm, not by a constant
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(h.dropout),
                                  nn.Linear(channels, h.num_classes))
        cfg = timm.data.resolve_model_data_config(self.backbone)
        self.mean, self.std = list(cfg["mean"]), list(cfg["std"])

    def forward(self, x):
        return self.head(self.backbone(x)[-1])

    def training_step(self, batch, batch_idx):
        x, y = batch
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return F.cross_entropy(self(x), y, label_smoothing=self.hparams.label_smoothing)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean(), on_epoch=True, sync_dist=True)

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        x, y = batch
        return {"accuracy": (self(x).argmax(1) == y).float().mean().item()}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def observe(model):
    """observed_* for the expected_* contract: one dummy forward pass, batch 1."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, model.hparams.image_size, model.hparams.image_size)
    with torch.no_grad():
        features = model.backbone(x)[-1]
        logits = model.head(features)
    model.train(was_training)
    return {**feature_observations(features, x.shape), "num_classes": logits.shape[-1],
            "input_size": list(x.shape[1:]), "output_shape": list(logits.shape)}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
_EVAL = {}  # load_for_eval keeps the checkpoint's preprocessing here, so make_batch matches training


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = Classifier(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    _EVAL.update(image_size=model.hparams.image_size, mean=model.mean, std=model.std)
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    # each record remembers its split: image paths are relative to the split's folder
    return [{**r, "_split": split} for r in read_index(prepdata_dir, split)]


def make_batch(records, prepdata_dir, device):
    tf = image_transform(_EVAL["image_size"], _EVAL["mean"], _EVAL["std"], train=False)
    split_dir = Path(prepdata_dir) / records[0].get("_split", "valid")
    x = torch.stack([tf(open_rgb(split_dir / r["image_path"])) for r in records]).to(device)
    return {"x": x, "labels": [None if r.get("label") is None else str(r["label"]) for r in records]}


def predict(model, batch):
    logits = model(batch["x"]).float()
    classes = list(model.hparams.classes)
    index = {c: i for i, c in enumerate(classes)}
    out = []
    probabilities = logits.softmax(-1).tolist()  # scores: roc_auc, log_loss, top_k_accuracy need them
    for row, label, probs in zip(logits, batch["labels"], probabilities):
        loss = None
        if label in index:
            loss = F.cross_entropy(row[None], torch.tensor([index[label]], device=row.device)).item()
        out.append({"prediction": classes[int(row.argmax())], "target": label, "loss": loss,
                    "scores": dict(zip(classes, probs))})
    return out


def write_sample(record, result, folder, prepdata_dir):
    folder = Path(folder)
    open_rgb(Path(prepdata_dir) / record.get("_split", "valid") / record["image_path"]).save(folder / "input.png")
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
    label_map = read_label_map(run.prepdata_dir, run.full_index("train") + run.full_index("valid"))
    classes = [label for label, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    model = Classifier({
        "backbone": s["BACKBONE"], "pretrained": s["PRETRAINED"], "image_size": s["IMAGE_SIZE"],
        "num_classes": len(classes), "classes": classes, "dropout": s["DROPOUT"], "lr": s["LR"],
        "weight_decay": s["WEIGHT_DECAY"], "label_smoothing": s["LABEL_SMOOTHING"]})
    data = ImageData(run, label_map, s["IMAGE_SIZE"], model.mean, model.std, s["HFLIP"], s["NUM_WORKERS"])
    run.save_asset("label_map.json", label_map)
    return run.fit(model, data, observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
