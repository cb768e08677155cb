"""Step-time case: the audio template's Classifier (log-mel 64 bands of 1 s at 16 kHz into timm
resnet18, 10 classes); the mel spectrogram is part of the model, so both sides compute it."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

TEMPLATE = "audio_classification.py"
BATCH, STEPS, CLASSES = 16, 24, 10
HPARAMS = {"backbone": "resnet18", "pretrained": False, "sample_rate": 16000, "clip_seconds": 1.0, "n_mels": 64,
           "n_fft": 512, "hop_length": 160, "freq_mask": 0, "time_mask": 0, "num_classes": CLASSES,
           "classes": [str(i) for i in range(CLASSES)], "dropout": 0.0, "lr": 1e-3, "weight_decay": 1e-4,
           "label_smoothing": 0.0}


def clips(n, seed, samples):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(0.1 * torch.randn(n, samples, generator=g), torch.randint(0, CLASSES, (n,), generator=g))


def build(tpl, seed):
    torch.manual_seed(seed)
    model = tpl.Classifier(dict(HPARAMS))
    samples = tpl.clip_samples(HPARAMS)
    return {"model": model,
            "train": DataLoader(clips(BATCH * STEPS, seed, samples), batch_size=BATCH, shuffle=True),
            "valid": DataLoader(clips(BATCH * 4, seed + 1, samples), batch_size=BATCH),
            "loss": lambda m, batch: F.cross_entropy(m(batch[0], augment=True), batch[1])}
