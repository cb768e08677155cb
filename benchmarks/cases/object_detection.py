"""Step-time case: the detection template's CenterNet (timm resnet18, stride-4 head, 3 classes) at 64x64."""

import functools

import torch
from torch.utils.data import DataLoader, Dataset

TEMPLATE = "object_detection.py"
BATCH, STEPS, IMAGE, CLASSES = 16, 24, 64, ("circle", "square", "triangle")


class Scenes(Dataset):
    """Random images with 1-4 random boxes each, as DetectionDataset returns them (already resized)."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            k = int(torch.randint(1, 5, (), generator=g))
            xy = torch.rand(k, 2, generator=g) * (IMAGE - 24)
            wh = 8 + torch.rand(k, 2, generator=g) * 16
            boxes = torch.cat([xy, xy + wh], 1)
            labels = [CLASSES[int(i)] for i in torch.randint(0, len(CLASSES), (k,), generator=g)]
            self.items.append((torch.randn(3, IMAGE, IMAGE, generator=g), boxes, labels, boxes.tolist(), (IMAGE, IMAGE)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def build(tpl, seed):
    torch.manual_seed(seed)
    model = tpl.CenterNet({"backbone": "resnet18", "pretrained": False, "out_indices": [1, 2, 3], "image_size": IMAGE,
                           "classes": list(CLASSES), "neck_channels": 64, "gaussian_alpha": 0.54, "size_weight": 0.1,
                           "score_threshold": 0.05, "nms_iou": 0.5, "max_detections": 50, "lr": 2e-3,
                           "weight_decay": 1e-4})
    collate = functools.partial(tpl.collate, classes=list(CLASSES), stride=model.stride, image_size=IMAGE, alpha=0.54)
    return {"model": model,
            "train": DataLoader(Scenes(BATCH * STEPS, seed), batch_size=BATCH, shuffle=True, collate_fn=collate),
            "valid": DataLoader(Scenes(BATCH * 4, seed + 1), batch_size=BATCH, collate_fn=collate),
            "loss": lambda m, batch: m.losses(m(batch["images"]), batch).mean()}
