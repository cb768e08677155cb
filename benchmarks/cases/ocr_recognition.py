"""Step-time case: the OCR template's CTCRecognizer (timm resnet18 to stride 8, BiLSTM 128, CTC; 36
characters) on 32 px lines of 3-12 characters, 30-120 px wide, batched by the template's own collate
into (64, 3, 32, 128): buckets are 64 and 128 px, and nearly every batch holds a line over 64 px."""

import functools

import torch
from torch.utils.data import DataLoader

TEMPLATE = "ocr_recognition.py"
# BATCH 64, not the rules' 128: a step of 128 lines takes ~1.9 s of CPU on one thread (~5 min for
# --reps 1); 64 lines (~0.75 s) costs about what a step of the other resnet18 cases does
BATCH, STEPS, HEIGHT, BUCKETS, MAX_TOKENS = 64, 24, 32, [64, 128], 12
CHARSET = list("0123456789abcdefghijklmnopqrstuvwxyz")
CHAR_WIDTH = 10  # px per character: the widest line (12 characters) fits the 128 px bucket, 16 frames


def lines(n, seed):
    """(image, encoded target, text) triples like LineDataset's items; ids start at 1 (0 is the CTC blank)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for k in torch.randint(3, MAX_TOKENS + 1, (n,), generator=g).tolist():
        ids = torch.randint(1, len(CHARSET) + 1, (k,), generator=g)
        text = "".join(CHARSET[i - 1] for i in ids.tolist())
        items.append((torch.randn(3, HEIGHT, CHAR_WIDTH * k, generator=g), ids, text))
    return items


def build(tpl, seed):
    torch.manual_seed(seed)
    model = tpl.CTCRecognizer({"vision_backbone": "resnet18", "vision_pretrained": False, "out_indices": [2],
                               "h_target": HEIGHT, "w_buckets": list(BUCKETS), "max_tokens": MAX_TOKENS,
                               "hidden": 128, "dropout": 0.1, "lr": 1e-3, "weight_decay": 1e-4,
                               "charset": list(CHARSET)})
    collate = functools.partial(tpl.collate, buckets=list(BUCKETS))
    return {"model": model,
            "train": DataLoader(lines(BATCH * STEPS, seed), batch_size=BATCH, shuffle=True, collate_fn=collate),
            "valid": DataLoader(lines(BATCH * 4, seed + 1), batch_size=BATCH, collate_fn=collate),
            "loss": lambda m, batch: m.ctc(m(batch["images"]), batch)}
