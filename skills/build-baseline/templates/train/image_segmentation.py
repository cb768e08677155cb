"""Semantic segmentation: a timm feature encoder and a light FPN decoder, trained with PyTorch Lightning.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --LR=3e-4 --NUM_WORKERS=0 --DICE_WEIGHT=0.5

Reads dataset/prepdata/<dataset_id>/{train,valid}/<split>.jsonl (id, image_path, mask_path) and
common/label_map.json ({class name: id}); a mask is a single-channel PNG of class ids 0..C-1.
Training resizes image and mask to IMAGE_SIZE; predictions are scored at each mask's own size.
Writes Models/Artifacts/<version>/: best.ckpt (weights only, lowest val_loss), last.ckpt,
spec.json, logs/version_0/, additional_assets/label_map.json, _tests/. The rules win over the
settings FROM_RULES maps. 03_eval.py evaluates through the interface below (miou, dice).
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import json
from pathlib import Path

import lightning as L
import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassJaccardIndex

from mlloop.script import MlloopError, entry, feature_observations, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
BACKBONE = "resnet18"     # any timm model that supports features_only; test_resnet for quick checks
PRETRAINED = False        # True downloads ImageNet weights (needs network access)
OUT_INDICES = [1, 2, 3, 4]  # encoder levels the decoder merges (timm feature_info index; strides 4..32 for resnets)
DECODER_CHANNELS = 64     # width of the FPN decoder; the encoder's widths come from feature_info
IMAGE_SIZE = None         # None: from the data (median image side, a multiple of 32, ≤ 224); masks resized by nearest
LR = 1e-3                 # AdamW learning rate: 1e-3 suits training from scratch, ~1e-4 fine-tuning
WEIGHT_DECAY = 1e-4       # AdamW weight decay
DICE_WEIGHT = 0.0         # weight of a soft Dice loss added to cross-entropy; helps classes that cover few pixels
HFLIP = True              # random horizontal flips of image and mask together (off when left/right matters)
BATCH_SIZE = None         # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = None        # None: from the usable CPUs and dataset size; 0 loads in the main process (easiest to debug)
TRAINER = {}              # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("image-segmentation",)
FROM_RULES = {"BACKBONE": "model_config.backbone", "PRETRAINED": "model_config.pretrained",
              "IMAGE_SIZE": "model_config.image_size"}
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180),  # class id ->
           (70, 240, 240), (245, 130, 48), (240, 50, 230), (128, 128, 128)]  # colour in the infer_samples pictures


# ---- data -----------------------------------------------------------------------------------------
def read_label_map(prepdata_dir):
    """{class name: id} from common/label_map.json; ids must be 0..C-1 (the mask pixel values)."""
    path = Path(prepdata_dir) / "common" / "label_map.json"
    if not path.is_file():
        raise MlloopError(f"{path} does not exist; the pipeline must write the class names of the mask ids "
                          "there (LABEL_MAP in the parse region of 01_data_pipeline.py).")
    label_map = json.loads(path.read_text(encoding="utf-8"))
    if sorted(label_map.values()) != list(range(len(label_map))):
        raise MlloopError(f"{path}: the class ids must be 0..{len(label_map) - 1}, got {sorted(label_map.values())}.")
    return label_map


def open_rgb(path):
    with Image.open(path) as image:
        return image.convert("RGB")


def open_mask(path, num_classes):
    """(H, W) long tensor of class ids; a mask that is not single-channel or holds other values is an error."""
    with Image.open(path) as image:
        mask = np.array(image)
    if mask.ndim != 2:
        raise ValueError(f"{path}: mask has shape {mask.shape}; masks are single-channel PNGs of class ids")
    if mask.size and int(mask.max()) >= num_classes:
        raise ValueError(f"{path}: mask value {int(mask.max())} is not a class id (label_map has {num_classes})")
    return torch.from_numpy(mask.astype(np.int64))


def image_tensor(image, size, mean, std):
    x = torch.from_numpy(np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0)
    return (x.permute(2, 0, 1) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


class SegDataset(Dataset):
    def __init__(self, records, split_dir, num_classes, size, mean, std, hflip=False):
        self.records, self.split_dir, self.num_classes = records, Path(split_dir), num_classes
        self.size, self.mean, self.std, self.hflip = size, mean, std, hflip

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        x = image_tensor(open_rgb(self.split_dir / r["image_path"]), self.size, self.mean, self.std)
        y = open_mask(self.split_dir / r["mask_path"], self.num_classes)
        y = F.interpolate(y[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0].long()
        if self.hflip and torch.rand(()) < 0.5:  # torch's RNG: seeded per worker by Lightning
            x, y = x.flip(-1), y.flip(-1)
        return x, y


class SegData(L.LightningDataModule):
    """Train/valid images and masks; run.records() gives the smoke test's seeded subset or the whole split."""

    def __init__(self, run, num_classes, image_size, mean, std, hflip, num_workers, batch_size=32):
        super().__init__()
        self.run, self.num_classes, self.image_size, self.mean, self.std = run, num_classes, image_size, mean, std
        self.hflip, self.num_workers, self.batch_size = hflip, num_workers, batch_size
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        root, args = self.run.prepdata_dir, (self.num_classes, self.image_size, self.mean, self.std)
        self.train_dataset = SegDataset(self.run.records("train"), root / "train", *args, hflip=self.hflip)
        self.valid_dataset = SegDataset(self.run.records("valid"), root / "valid", *args)

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
def soft_dice_loss(logits, target):
    """1 - mean over classes of the soft Dice coefficient (probabilities against one-hot masks)."""
    probs = logits.float().softmax(1)
    onehot = F.one_hot(target, probs.shape[1]).permute(0, 3, 1, 2).float()
    inter, total = (probs * onehot).sum((0, 2, 3)), (probs + onehot).sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (total + 1)).mean()


def mean_iou(pred, target, num_classes):
    """IoU averaged over the classes present in prediction or target (the registry's miou)."""
    confusion = torch.bincount(target.flatten() * num_classes + pred.flatten(), minlength=num_classes ** 2)
    confusion = confusion.view(num_classes, num_classes).double()
    tp, union = confusion.diag(), confusion.sum(0) + confusion.sum(1) - confusion.diag()
    return float((tp[union > 0] / union[union > 0]).mean())


class Segmenter(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        self.encoder = timm.create_model(h.backbone, pretrained=h.pretrained, features_only=True,
                                         out_indices=list(h.out_indices))
        d = h.decoder_channels  # the lateral convs are sized by timm's feature_info, not by constants
        self.lateral = nn.ModuleList(nn.Conv2d(c, d, 1) for c in self.encoder.feature_info.channels())
        self.smooth = nn.Sequential(nn.Conv2d(d, d, 3, padding=1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(d, h.num_classes, 1)
        self.val_iou = MulticlassJaccardIndex(h.num_classes)
        cfg = timm.data.resolve_model_data_config(self.encoder)
        self.mean, self.std = list(cfg["mean"]), list(cfg["std"])

    def decode(self, features):
        """FPN top-down path: each level's lateral conv plus the coarser level upsampled."""
        y = self.lateral[-1](features[-1])
        for f, lateral in zip(reversed(features[:-1]), reversed(self.lateral[:-1])):
            y = lateral(f) + F.interpolate(y, size=f.shape[-2:], mode="nearest")
        return self.classifier(self.smooth(y))

    def forward(self, x):
        """(B, 3, H, W) -> per-pixel class logits (B, C, H, W) at the input size."""
        return F.interpolate(self.decode(self.encoder(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, logits, y):
        loss = F.cross_entropy(logits, y)
        if self.hparams.dice_weight:
            loss = loss + self.hparams.dice_weight * soft_dice_loss(logits, y)
        return loss

    def training_step(self, batch, batch_idx):
        x, y = batch
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return self.loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss(logits, y), on_epoch=True, sync_dist=True)
        self.val_iou(logits.argmax(1), y)  # confusion counts summed over the epoch
        self.log("val_miou", self.val_iou, on_epoch=True)

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        x, y = batch
        return {"miou": mean_iou(self(x).argmax(1), y, self.hparams.num_classes)}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def observe(model):
    """observed_* for the expected_* contract: one dummy forward pass, batch 1."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, model.hparams.image_size, model.hparams.image_size)
    with torch.no_grad():
        features = model.encoder(x)
        logits = model(x)
    model.train(was_training)
    return {**feature_observations(features[-1], x.shape), "num_classes": logits.shape[1],
            "input_size": list(x.shape[1:]), "output_shape": list(logits.shape), "levels": len(features)}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
_EVAL = {}  # load_for_eval keeps the checkpoint's preprocessing here, so make_batch matches training


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = Segmenter(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    _EVAL.update(image_size=model.hparams.image_size, mean=model.mean, std=model.std,
                 num_classes=model.hparams.num_classes, classes=list(model.hparams.classes))
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    # each record remembers its split: image paths are relative to the split's folder
    return [{**r, "_split": split} for r in read_index(prepdata_dir, split)]


def make_batch(records, prepdata_dir, device):
    split_dir = Path(prepdata_dir) / records[0].get("_split", "valid")
    x = torch.stack([image_tensor(open_rgb(split_dir / r["image_path"]), _EVAL["image_size"], _EVAL["mean"],
                                  _EVAL["std"]) for r in records]).to(device)
    masks = [open_mask(split_dir / r["mask_path"], _EVAL["num_classes"]).to(device) for r in records]
    return {"x": x, "masks": masks}


def predict(model, batch):
    """Per record: the predicted and true masks at the mask's own size (2-D class ids) and the pixel loss."""
    logits, out = model(batch["x"]).float(), []
    for row, mask in zip(logits, batch["masks"]):
        row = F.interpolate(row[None], size=mask.shape, mode="bilinear", align_corners=False)
        out.append({"prediction": row.argmax(1)[0].cpu(), "target": mask.cpu(),
                    "loss": F.cross_entropy(row, mask[None]).item()})
    return out


def colour(mask):
    """A mask of class ids as an RGB picture with the fixed PALETTE (ids past it repeat its colours)."""
    return Image.fromarray(np.array(PALETTE, dtype=np.uint8)[np.asarray(mask) % len(PALETTE)])


def write_sample(record, result, folder, prepdata_dir):
    folder, split_dir = Path(folder), Path(prepdata_dir) / record.get("_split", "valid")
    image = open_rgb(split_dir / record["image_path"])
    pred, true = np.asarray(result["prediction"]), np.asarray(result["target"])
    image.save(folder / "input.png"), colour(true).save(folder / "gt.png"), colour(pred).save(folder / "output.png")
    Image.blend(image.resize(pred.shape[::-1]), colour(pred), 0.5).save(folder / "overlay.png")
    names = _EVAL.get("classes") or []
    lines = [f"pixel accuracy {float((pred == true).mean()):.3f}; colours: output.png, gt.png, overlay.png"]
    for c in sorted(set(np.unique(pred).tolist()) | set(np.unique(true).tolist())):
        inter, union = int(((pred == c) & (true == c)).sum()), int(((pred == c) | (true == c)).sum())
        lines.append(f"{names[c] if c < len(names) else c} (id {c}, rgb {PALETTE[c % len(PALETTE)]}): true {int((true == c).sum())} px, "
                     f"predicted {int((pred == c).sum())} px, IoU {inter / union:.3f}")
    (folder / "output.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---- Trainer options (forwarded to lightning.Trainer; the harness refuses the keys it owns) -------
def callbacks():
    """Extra Lightning callbacks for this version, e.g. [EarlyStopping("val_loss", patience=3)] or
    [StochasticWeightAveraging(swa_lrs=1e-4)] from lightning.pytorch.callbacks; [] for none."""
    return []


# ---- main -----------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    run = start(__file__, globals(), argv, from_rules=FROM_RULES, task_types=TASK_TYPES)
    s = run.settings
    label_map = read_label_map(run.prepdata_dir)
    classes = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    model = Segmenter({
        "backbone": s["BACKBONE"], "pretrained": s["PRETRAINED"], "out_indices": list(s["OUT_INDICES"]),
        "decoder_channels": s["DECODER_CHANNELS"], "image_size": s["IMAGE_SIZE"], "num_classes": len(classes),
        "classes": classes, "lr": s["LR"], "weight_decay": s["WEIGHT_DECAY"], "dice_weight": s["DICE_WEIGHT"]})
    data = SegData(run, len(classes), s["IMAGE_SIZE"], model.mean, model.std, s["HFLIP"], s["NUM_WORKERS"])
    run.save_asset("label_map.json", label_map)
    return run.fit(model, data, observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
