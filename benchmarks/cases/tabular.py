"""Step-time case: the tabular template's TabularMLP (2 hidden layers of 128, 3 classes) on rows of 12
numeric features (one in ten missing) and 2 categorical ones of 4 values each, encoded by the
template's own feature_stats/encode/RowDataset into 32 floats; batches of 128."""

import torch
from torch.utils.data import DataLoader

TEMPLATE = "tabular.py"
BATCH, STEPS, NUMERIC, CATEGORICAL, CLASSES = 128, 32, 12, 2, ("a", "b", "c")


def records(n, seed):
    """Records like the prepdata index's: {"features": {name: value or None}, "label": class}."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(n, NUMERIC, generator=g).masked_fill(torch.rand(n, NUMERIC, generator=g) < 0.1, float("nan"))
    kinds = torch.randint(0, 4, (n, CATEGORICAL), generator=g).tolist()
    labels = torch.randint(0, len(CLASSES), (n,), generator=g).tolist()
    return [{"features": {**{f"x{j}": None if v != v else v for j, v in enumerate(row)},  # NaN: missing
                          **{f"c{j}": f"v{k}" for j, k in enumerate(kind)}}, "label": CLASSES[y]}
            for row, kind, y in zip(values.tolist(), kinds, labels)]


def build(tpl, seed):
    torch.manual_seed(seed)
    train = records(BATCH * STEPS, seed)
    # what encoding_for fits on the training split when there is no feature_stats.json or label_map.json
    enc = {"task": "classification", "stats": tpl.feature_stats(train),
           "label_map": {c: i for i, c in enumerate(CLASSES)}}
    model = tpl.TabularMLP({"in_features": len(tpl.encode({}, enc["stats"])), "out_features": len(CLASSES),
                            "hidden": 128, "depth": 2, "dropout": 0.1, "lr": 3e-3, "weight_decay": 1e-4,
                            "encoding": enc})
    return {"model": model,
            "train": DataLoader(tpl.RowDataset(train, enc), batch_size=BATCH, shuffle=True),
            "valid": DataLoader(tpl.RowDataset(records(BATCH * 4, seed + 1), enc), batch_size=BATCH),
            "loss": lambda m, batch: m.loss(m(batch[0]), batch[1])}
