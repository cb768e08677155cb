"""Step-time case: the image template's Classifier (timm resnet18 at 64x64, 10 classes)."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

TEMPLATE = "image_classification.py"
BATCH, STEPS, IMAGE, CLASSES = 16, 24, 64, 10


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, IMAGE, IMAGE, generator=g), torch.randint(0, CLASSES, (n,), generator=g))


def build(tpl, seed):
    torch.manual_seed(seed)
    model = tpl.Classifier({"backbone": "resnet18", "pretrained": False, "image_size": IMAGE, "num_classes": CLASSES,
                            "classes": [str(i) for i in range(CLASSES)], "dropout": 0.0, "lr": 1e-3,
                            "weight_decay": 1e-4, "label_smoothing": 0.0})
    return {"model": model,
            "train": DataLoader(images(BATCH * STEPS, seed), batch_size=BATCH, shuffle=True),
            "valid": DataLoader(images(BATCH * 4, seed + 1), batch_size=BATCH),
            "loss": lambda m, batch: F.cross_entropy(m(batch[0]), batch[1])}
