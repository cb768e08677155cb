"""Text recognition (OCR): a timm feature backbone, a BiLSTM over the width, CTC loss, greedy decoding.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --LR=3e-4 --NUM_WORKERS=0

Reads dataset/prepdata/<dataset_id>/{train,valid}/<split>.jsonl (id, image_path, target).
Images are resized to H_TARGET keeping their aspect ratio and padded to the smallest of
W_BUCKETS that fits. Writes Models/Artifacts/<version>/: best.ckpt (weights only, lowest
val_loss), last.ckpt, spec.json, logs/version_0/, additional_assets/charset.json, _tests/.
model_config in the rules wins over the settings FROM_RULES maps (vision_backbone,
vision_pretrained, vision_backbone_out_indices, H_TARGET, W_BUCKETS, MAX_TOKENS). The harness
lives in mlloop.runtime; 03_eval.py evaluates through the evaluation interface below.
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import functools
import math
from pathlib import Path

import lightning as L
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.text import char_error_rate

from mlloop.script import entry, feature_observations, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
VISION_BACKBONE = "resnet18"      # any timm model that supports features_only
VISION_PRETRAINED = False         # True downloads ImageNet weights (needs network access)
OUT_INDICES = [2]                 # feature map(s) used (timm feature_info index); the last one feeds the head
H_TARGET = None                   # line height after resizing (aspect kept); None: the median line height, a multiple of 8
W_BUCKETS = None                  # padded widths (fewer wasted columns than padding to the widest); None: width quartiles
MAX_TOKENS = 32                   # longest target expected; the sequence head must emit at least this many frames
HIDDEN = 128                      # BiLSTM hidden size per direction
DROPOUT = 0.1                     # before the per-frame classifier
LR = 1e-3                         # AdamW learning rate (CTC from scratch likes 1e-3; lower for pretrained)
WEIGHT_DECAY = 1e-4               # AdamW weight decay
BATCH_SIZE = None                 # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = None                # None: from the usable CPUs and dataset size; 0 loads in the main process
TRAINER = {}                      # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("ocr-recognition", "ocr-line-recognition")
FROM_RULES = {"VISION_BACKBONE": "model_config.vision_backbone", "VISION_PRETRAINED": "model_config.vision_pretrained",
              "OUT_INDICES": "model_config.vision_backbone_out_indices", "H_TARGET": "model_config.H_TARGET",
              "W_BUCKETS": "model_config.W_BUCKETS", "MAX_TOKENS": "model_config.MAX_TOKENS"}
MEAN, STD = 0.5, 0.5  # pixel normalisation; padding is 0 after it (mid grey)


# ---- data -----------------------------------------------------------------------------------------
def build_charset(records):
    """Every character of the training targets, sorted; index 0 is reserved for the CTC blank."""
    return sorted({ch for r in records for ch in str(r["target"])})


def load_line(path, height, max_width):
    """A (3, height, w) tensor: resized to ``height``, aspect kept, squeezed to ``max_width`` if wider."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        width = max(1, min(max_width, round(image.width * height / max(1, image.height))))
        image = image.resize((width, height), Image.BILINEAR)
    x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(height, width, 3)
    return (x.permute(2, 0, 1).float() / 255.0 - MEAN) / STD


def collate(items, buckets):
    """Pad images to the smallest bucket that fits the widest; targets concatenated for CTC."""
    widest = max(x.shape[-1] for x, _, _ in items)
    width = next((b for b in sorted(buckets) if b >= widest), max(buckets))
    images = torch.zeros(len(items), 3, items[0][0].shape[1], width)
    for i, (x, _, _) in enumerate(items):
        images[i, :, :, :x.shape[-1]] = x
    return {"images": images, "widths": torch.tensor([x.shape[-1] for x, _, _ in items]),
            "targets": torch.cat([t for _, t, _ in items]), "target_lengths": torch.tensor([len(t) for _, t, _ in items]),
            "texts": [text for _, _, text in items]}


class LineDataset(Dataset):
    def __init__(self, records, split_dir, charset, height, max_width):
        self.records, self.split_dir, self.height, self.max_width = records, Path(split_dir), height, max_width
        self.index = {ch: i + 1 for i, ch in enumerate(charset)}

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        text = str(r["target"])
        encoded = torch.tensor([self.index[ch] for ch in text if ch in self.index], dtype=torch.long)  # unknown: left out
        return load_line(self.split_dir / r["image_path"], self.height, self.max_width), encoded, text


class LineData(L.LightningDataModule):
    def __init__(self, run, charset, height, buckets, num_workers, batch_size=32):
        super().__init__()
        self.run, self.charset, self.height, self.buckets = run, charset, height, list(buckets)
        self.num_workers, self.batch_size = num_workers, batch_size
        self.collate_fn = functools.partial(collate, buckets=self.buckets)  # picklable for worker processes
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        root, width = self.run.prepdata_dir, max(self.buckets)
        self.train_dataset = LineDataset(self.run.records("train"), root / "train", self.charset, self.height, width)
        self.valid_dataset = LineDataset(self.run.records("valid"), root / "valid", self.charset, self.height, width)

    def _loader(self, dataset, shuffle):
        # drop_last in training: a last batch of one sample breaks BatchNorm (runtime.training.count_steps agrees)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle and len(dataset) > self.batch_size,
                          collate_fn=self.collate_fn, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.valid_dataset, shuffle=False)


# ---- model ----------------------------------------------------------------------------------------
class CTCRecognizer(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        self.backbone = timm.create_model(h.vision_backbone, pretrained=h.vision_pretrained, features_only=True,
                                          out_indices=list(h.out_indices))
        channels = self.backbone.feature_info.channels()[-1]  # sized by timm, not by a constant
        self.stride = self.backbone.feature_info.reduction()[-1]
        self.rnn = nn.LSTM(channels, h.hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Sequential(nn.Dropout(h.dropout), nn.Linear(2 * h.hidden, len(h.charset) + 1))

    def forward(self, images):
        """(B, 3, H, W) -> per-frame log-probabilities (B, T, 1 + len(charset)); class 0 is the blank."""
        features = self.backbone(images)[-1]
        sequence = features.mean(dim=2).transpose(1, 2)  # collapse the height: one frame per column
        sequence, _ = self.rnn(sequence)
        return self.classifier(sequence).float().log_softmax(-1)

    def frames(self, log_probs, widths):
        return torch.clamp(torch.div(widths + self.stride - 1, self.stride, rounding_mode="floor"), 1, log_probs.shape[1])

    def ctc(self, log_probs, batch, reduction="mean"):
        return F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], self.frames(log_probs, batch["widths"]),
                          batch["target_lengths"], blank=0, reduction=reduction, zero_infinity=True)

    def decode(self, log_probs, widths):
        """Greedy CTC decoding: best class per frame, repeats collapsed, blanks dropped."""
        best, lengths, out = log_probs.argmax(-1).tolist(), self.frames(log_probs, widths).tolist(), []
        for row, n in zip(best, lengths):
            chars, prev = [], 0
            for k in row[:n]:
                if k != prev and k != 0:
                    chars.append(self.hparams.charset[k - 1])
                prev = k
            out.append("".join(chars))
        return out

    def training_step(self, batch, batch_idx):
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return self.ctc(self(batch["images"]), batch)

    def validation_step(self, batch, batch_idx):
        log_probs = self(batch["images"])
        n = len(batch["texts"])
        self.log("val_loss", self.ctc(log_probs, batch), on_epoch=True, sync_dist=True, batch_size=n)
        cer = char_error_rate(self.decode(log_probs, batch["widths"]), batch["texts"])
        self.log("val_cer", cer, on_epoch=True, sync_dist=True, batch_size=n)

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        return {"cer": float(char_error_rate(self.decode(self(batch["images"]), batch["widths"]), batch["texts"]))}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def observe(model):
    """observed_* for the expected_* contract: one dummy forward pass, batch 1, the smallest bucket."""
    h, was_training = model.hparams, model.training
    model.eval()
    x = torch.zeros(1, 3, h.h_target, min(h.w_buckets))
    with torch.no_grad():
        features = model.backbone(x)[-1]
        log_probs = model(x)
    model.train(was_training)
    return {**feature_observations(features, x.shape), "seq_len": log_probs.shape[1],
            "num_classes": log_probs.shape[-1], "input_size": list(x.shape[1:]),
            "max_tokens_fit": log_probs.shape[1] >= h.max_tokens}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
_EVAL = {}  # load_for_eval keeps the checkpoint's preprocessing here, so make_batch matches training


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = CTCRecognizer(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    _EVAL.update(charset=list(model.hparams.charset), height=model.hparams.h_target, buckets=list(model.hparams.w_buckets))
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    # each record remembers its split: image paths are relative to the split's folder
    return [{**r, "_split": split} for r in read_index(prepdata_dir, split)]


def make_batch(records, prepdata_dir, device):
    dataset = LineDataset(records, Path(prepdata_dir) / records[0].get("_split", "valid"), _EVAL["charset"], _EVAL["height"], max(_EVAL["buckets"]))
    batch = collate([dataset[i] for i in range(len(records))], _EVAL["buckets"])
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def predict(model, batch):
    log_probs = model(batch["images"])
    texts = model.decode(log_probs, batch["widths"])
    losses = model.ctc(log_probs, batch, reduction="none") / batch["target_lengths"].clamp(min=1)
    return [{"prediction": p, "target": t, "loss": float(v) if math.isfinite(float(v)) else None}
            for p, t, v in zip(texts, batch["texts"], losses)]


def write_sample(record, result, folder, prepdata_dir):
    folder = Path(folder)
    with Image.open(Path(prepdata_dir) / record.get("_split", "valid") / record["image_path"]) as image:
        image.convert("RGB").save(folder / "input.png")
    (folder / "output.txt").write_text(result["prediction"] + "\n", encoding="utf-8")
    (folder / "gt.txt").write_text(result["target"] + "\n", encoding="utf-8")


# ---- Trainer options (forwarded to lightning.Trainer; the harness refuses the keys it owns) -------
def callbacks():
    """Extra Lightning callbacks for this version, e.g. [EarlyStopping("val_loss", patience=3)] or
    [StochasticWeightAveraging(swa_lrs=1e-4)] from lightning.pytorch.callbacks; [] for none."""
    return []


# ---- main -----------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    run = start(__file__, globals(), argv, from_rules=FROM_RULES, task_types=TASK_TYPES)
    s = run.settings
    charset = build_charset(run.full_index("train"))
    too_long = sum(len(str(r["target"])) > s["MAX_TOKENS"] for r in run.full_index("train"))
    if too_long:
        run.log(f"WARNING: {too_long} training targets are longer than MAX_TOKENS={s['MAX_TOKENS']}")
    model = CTCRecognizer({
        "vision_backbone": s["VISION_BACKBONE"], "vision_pretrained": s["VISION_PRETRAINED"],
        "out_indices": list(s["OUT_INDICES"]), "h_target": s["H_TARGET"], "w_buckets": list(s["W_BUCKETS"]),
        "max_tokens": s["MAX_TOKENS"], "hidden": s["HIDDEN"], "dropout": s["DROPOUT"], "lr": s["LR"],
        "weight_decay": s["WEIGHT_DECAY"], "charset": charset})
    data = LineData(run, charset, s["H_TARGET"], s["W_BUCKETS"], s["NUM_WORKERS"])
    run.save_asset("charset.json", {"blank_index": 0, "charset": charset})
    return run.fit(model, data, observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
