"""Step-time case: the segmentation template's Segmenter (timm resnet18 encoder + FPN-lite decoder, 64x64, 4 classes)."""

import torch
from torch.utils.data import DataLoader, TensorDataset

TEMPLATE = "image_segmentation.py"
BATCH, STEPS, IMAGE, CLASSES = 16, 24, 64, 4


def scenes(n, seed):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, IMAGE, IMAGE, generator=g),
                         torch.randint(0, CLASSES, (n, IMAGE, IMAGE), generator=g))


def build(tpl, seed):
    torch.manual_seed(seed)
    model = tpl.Segmenter({"backbone": "resnet18", "pretrained": False, "out_indices": [1, 2, 3, 4],
                           "decoder_channels": 64, "image_size": IMAGE, "num_classes": CLASSES,
                           "classes": [str(i) for i in range(CLASSES)], "lr": 1e-3, "weight_decay": 1e-4,
                           "dice_weight": 0.0})
    return {"model": model,
            "train": DataLoader(scenes(BATCH * STEPS, seed), batch_size=BATCH, shuffle=True),
            "valid": DataLoader(scenes(BATCH * 4, seed + 1), batch_size=BATCH),
            "loss": lambda m, batch: m.loss(m(batch[0]), batch[1])}
