"""Step-time case: the text template's TextClassifier (embedding + 1-D CNN, max pooled; 2,000 words,
texts of 8-64 tokens padded per batch by the template's own collate, 3 classes)."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

TEMPLATE = "text_classification.py"
# BATCH: the rules' default max_batch_size, what the template trains with once the data gives enough steps
BATCH, STEPS, VOCAB, MAX_LENGTH, CLASSES = 128, 24, 2000, 64, 3


def texts(n, seed):
    """(token ids, label) pairs like TextDataset's items: ids >= 2 (0 is [PAD], 1 is [UNK])."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, MAX_LENGTH + 1, (n,), generator=g).tolist()
    return [(torch.randint(2, VOCAB, (k,), generator=g).tolist(), int(torch.randint(0, CLASSES, (1,), generator=g)))
            for k in lengths]


def build(tpl, seed):
    torch.manual_seed(seed)
    model = tpl.TextClassifier({"vocab_size": VOCAB, "max_length": MAX_LENGTH, "encoder": "cnn", "embed_dim": 64,
                                "hidden": 128, "layers": 1, "kernel_size": 3, "heads": 4, "pool": "max",
                                "dropout": 0.1, "num_classes": CLASSES, "classes": [str(i) for i in range(CLASSES)],
                                "lr": 2e-3, "weight_decay": 1e-4, "label_smoothing": 0.0, "tokenizer_sha256": ""})
    return {"model": model,
            "train": DataLoader(texts(BATCH * STEPS, seed), batch_size=BATCH, shuffle=True, collate_fn=tpl.collate),
            "valid": DataLoader(texts(BATCH * 4, seed + 1), batch_size=BATCH, collate_fn=tpl.collate),
            "loss": lambda m, batch: F.cross_entropy(m(batch[0]), batch[1])}
