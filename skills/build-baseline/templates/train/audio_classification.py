"""Audio classification: log-mel spectrograms into a timm CNN (one input channel) and a linear head.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --LR=3e-4 --TIME_MASK=20 --NUM_WORKERS=0

Reads dataset/prepdata/<dataset_id>/{train,valid}/<split>.jsonl (id, audio_path, label,
duration_sec) and common/label_map.json. Clips are read with soundfile (libsndfile: PCM/float WAV,
FLAC, OGG), averaged to mono, resampled to SAMPLE_RATE and cut to CLIP_SECONDS: a longer clip is
cropped (a random window in training, the centre otherwise), a shorter one zero-padded at the end.
The model computes the log-mel spectrogram itself (torchaudio), so training, evaluation and serving
share one feature path. Writes Models/Artifacts/<version>/: best.ckpt (weights only, lowest
val_loss), last.ckpt, spec.json, logs/version_0/, additional_assets/label_map.json, _tests/. The
rules win over the settings FROM_RULES maps; the harness lives in mlloop.runtime.
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import functools
import json
import shutil
from pathlib import Path

import lightning as L
import soundfile
import timm
import torch
import torch.nn.functional as F
import torchaudio
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mlloop.script import entry, feature_observations, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
BACKBONE = "resnet18"    # any timm model that supports features_only; test_resnet for quick checks
PRETRAINED = False       # True downloads ImageNet weights (needs network access; they expect 3 channels)
SAMPLE_RATE = 16000      # every clip is resampled to this: 16 kHz keeps up to 8 kHz (speech, most sound events)
CLIP_SECONDS = None      # None: from the data (median duration_sec of the train clips); longer cropped, shorter padded
N_MELS = 64              # mel bands: the spectrogram's height
N_FFT = 512              # FFT window: 32 ms at 16 kHz, the usual trade of time against frequency detail
HOP_LENGTH = 160         # 10 ms between frames at 16 kHz: 100 frames per second
FREQ_MASK = 0            # SpecAugment in training: widest band of mel bins masked (0 = off)
TIME_MASK = 0            # SpecAugment in training: widest run of frames masked (0 = off)
DROPOUT = 0.0            # before the linear head; raise it when validation loss climbs while train falls
LR = 1e-3                # AdamW learning rate: 1e-3 suits training from scratch
WEIGHT_DECAY = 1e-4      # AdamW weight decay
LABEL_SMOOTHING = 0.0    # cross-entropy label smoothing
BATCH_SIZE = None        # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = None       # None: from the usable CPUs and dataset size; 0 loads in the main process (easiest to debug)
TRAINER = {}             # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("audio-classification",)
FROM_RULES = {"BACKBONE": "model_config.backbone", "PRETRAINED": "model_config.pretrained",
              "SAMPLE_RATE": "model_config.sample_rate", "CLIP_SECONDS": "model_config.clip_seconds"}


# ---- data -----------------------------------------------------------------------------------------
def read_label_map(prepdata_dir, records):
    """{label: index}: common/label_map.json from the pipeline, else the sorted labels seen."""
    path = Path(prepdata_dir) / "common" / "label_map.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {label: i for i, label in enumerate(sorted({str(r["label"]) for r in records}))}


@functools.lru_cache(maxsize=8)  # one per source rate: it keeps its filter kernel (~2x faster than functional)
def resampler(rate, sample_rate):
    return torchaudio.transforms.Resample(rate, sample_rate)


def load_clip(path, sample_rate):
    """A mono float32 waveform at ``sample_rate``: channels averaged, then resampled."""
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    wave = torch.from_numpy(samples.mean(axis=1))
    return wave if rate == sample_rate else resampler(rate, sample_rate)(wave)


def fit_length(wave, length, train):
    """Exactly ``length`` samples: a random window (training) or the centre of a longer clip,
    zeros appended to a shorter one."""
    if len(wave) > length:
        start = int(torch.randint(len(wave) - length + 1, ())) if train else (len(wave) - length) // 2
        return wave[start:start + length]
    return F.pad(wave, (0, length - len(wave)))


class ClipDataset(Dataset):
    def __init__(self, records, split_dir, label_map, sample_rate, length, train):
        self.records, self.split_dir, self.label_map = records, Path(split_dir), label_map
        self.sample_rate, self.length, self.train = sample_rate, length, train

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        wave = fit_length(load_clip(self.split_dir / r["audio_path"], self.sample_rate), self.length, self.train)
        return wave, self.label_map[str(r["label"])]


class AudioData(L.LightningDataModule):
    """Train/valid clips; run.records() gives the smoke test's seeded subset or the whole split."""

    def __init__(self, run, label_map, sample_rate, clip_samples, num_workers, batch_size=32):
        super().__init__()
        self.run, self.label_map, self.batch_size, self.num_workers = run, label_map, batch_size, num_workers
        self.sample_rate, self.clip_samples = sample_rate, clip_samples
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        root, args = self.run.prepdata_dir, (self.label_map, self.sample_rate, self.clip_samples)
        self.train_dataset = ClipDataset(self.run.records("train"), root / "train", *args, train=True)
        self.valid_dataset = ClipDataset(self.run.records("valid"), root / "valid", *args, train=False)

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
class LogMel(nn.Module):
    """[B, samples] waveforms -> [B, 1, n_mels, frames] log-mel, standardised per clip (the level
    of a recording is not its class)."""

    def __init__(self, h):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=h["sample_rate"], n_fft=h["n_fft"],
                                                        hop_length=h["hop_length"], n_mels=h["n_mels"])
        self.to_db = torchaudio.transforms.AmplitudeToDB(top_db=80.0)

    def forward(self, wave):
        # [B, 1, F, T]: AmplitudeToDB's top_db floor is then per clip, not over the whole batch
        x = self.to_db(self.mel(wave.unsqueeze(1)))
        mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)
        return (x - mean) / (std + 1e-5)


class Classifier(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        self.features = LogMel(h)
        self.augment = nn.Sequential(  # after standardising, so a masked cell is the clip's mean
            *([torchaudio.transforms.FrequencyMasking(h.freq_mask, iid_masks=True)] if h.freq_mask else []),
            *([torchaudio.transforms.TimeMasking(h.time_mask, iid_masks=True)] if h.time_mask else []))
        self.backbone = timm.create_model(h.backbone, pretrained=h.pretrained, in_chans=1, features_only=True,
                                          out_indices=[-1])
        channels = self.backbone.feature_info.channels()[-1]  # the head is sized by timm, not by a constant
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(h.dropout),
                                  nn.Linear(channels, h.num_classes))

    def forward(self, wave, augment=False):
        x = self.features(wave)
        if augment:
            x = self.augment(x)
        return self.head(self.backbone(x)[-1])

    def training_step(self, batch, batch_idx):
        wave, y = batch
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return F.cross_entropy(self(wave, augment=True), y, label_smoothing=self.hparams.label_smoothing)

    def validation_step(self, batch, batch_idx):
        wave, y = batch
        logits = self(wave)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean(), on_epoch=True, sync_dist=True)

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        wave, y = batch
        return {"accuracy": (self(wave).argmax(1) == y).float().mean().item()}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def clip_samples(h):
    return int(round(h["clip_seconds"] * h["sample_rate"]))


def observe(model):
    """observed_* for the expected_* contract: one silent clip, batch 1."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = model.features(torch.zeros(1, clip_samples(model.hparams), device=model.device))
        features = model.backbone(x)[-1]
        logits = model.head(features)
    model.train(was_training)
    return {**feature_observations(features, x.shape), "num_classes": logits.shape[-1],
            "input_size": list(x.shape[1:]), "output_shape": list(logits.shape)}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
_EVAL = {}  # load_for_eval keeps the checkpoint's audio settings here, so make_batch matches training


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = Classifier(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    _EVAL.update(hparams=dict(model.hparams))
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    # each record remembers its split: clip paths are relative to the split's folder
    return [{**r, "_split": split} for r in read_index(prepdata_dir, split)]


def clip_path(record, prepdata_dir):
    return Path(prepdata_dir) / record.get("_split", "valid") / record["audio_path"]


def make_batch(records, prepdata_dir, device):
    h = _EVAL["hparams"]
    waves = [fit_length(load_clip(clip_path(r, prepdata_dir), h["sample_rate"]), clip_samples(h), train=False)
             for r in records]
    return {"x": torch.stack(waves).to(device),
            "labels": [None if r.get("label") is None else str(r["label"]) for r in records]}


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
    """input.png: the log-mel spectrogram the model sees; input<ext>: the clip; output.txt, gt.txt."""
    folder, h, source = Path(folder), _EVAL["hparams"], clip_path(record, prepdata_dir)
    wave = fit_length(load_clip(source, h["sample_rate"]), clip_samples(h), train=False)
    spectrogram = LogMel(h)(wave[None])[0, 0].numpy()  # [n_mels, frames]: no parameters, so no gradient
    figure = Figure(figsize=(6, 3), dpi=100)  # no pyplot: the Agg canvas, no display needed
    axes = figure.subplots()
    axes.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma",
                extent=(0, h["clip_seconds"], 0, h["n_mels"]))
    shown = f" ({result['scores'][result['prediction']]:.2f})" if result.get("scores") else ""
    axes.set(title=f"true: {result['target']}   predicted: {result['prediction']}{shown}",
             xlabel="seconds", ylabel="mel band")
    figure.tight_layout()
    figure.savefig(folder / "input.png")
    shutil.copyfile(source, folder / f"input{source.suffix.lower()}")
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
        "backbone": s["BACKBONE"], "pretrained": s["PRETRAINED"], "sample_rate": s["SAMPLE_RATE"],
        "clip_seconds": s["CLIP_SECONDS"], "n_mels": s["N_MELS"], "n_fft": s["N_FFT"], "hop_length": s["HOP_LENGTH"],
        "freq_mask": s["FREQ_MASK"], "time_mask": s["TIME_MASK"], "num_classes": len(classes), "classes": classes,
        "dropout": s["DROPOUT"], "lr": s["LR"], "weight_decay": s["WEIGHT_DECAY"],
        "label_smoothing": s["LABEL_SMOOTHING"]})
    data = AudioData(run, label_map, s["SAMPLE_RATE"], clip_samples(model.hparams), s["NUM_WORKERS"])
    run.save_asset("label_map.json", label_map)
    return run.fit(model, data, observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
