"""Step-time case: the forecasting template's Forecaster (72 h context, its default; 24 h horizon; linear + MLP)."""

import math

import torch
from torch.utils.data import DataLoader, TensorDataset

TEMPLATE = "time_series_forecasting.py"
# BATCH: the rules' default max_batch_size, what the template trains with once the data gives enough steps
BATCH, STEPS, CONTEXT, HORIZON = 128, 40, 72, 24


def windows(n, seed):
    """Daily-season windows at random phases and levels, with noise: shaped like the template's batches."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(CONTEXT + HORIZON, dtype=torch.float32) + 24 * torch.rand(n, 1, generator=g)
    series = 50 * torch.rand(n, 1, generator=g) + 10 * torch.sin(2 * math.pi * t / 24)
    series = series + torch.randn(series.shape, generator=g)
    return TensorDataset(series[:, :CONTEXT].contiguous(), series[:, CONTEXT:].contiguous())


def build(tpl, seed):
    torch.manual_seed(seed)
    model = tpl.Forecaster({"context": CONTEXT, "horizon": HORIZON, "hidden": 128, "depth": 2, "dropout": 0.1,
                            "lr": 3e-3, "weight_decay": 1e-4})
    return {"model": model,
            "train": DataLoader(windows(BATCH * STEPS, seed), batch_size=BATCH, shuffle=True, drop_last=True),
            "valid": DataLoader(windows(BATCH * 4, seed + 1), batch_size=BATCH),
            "loss": lambda m, batch: m.loss(batch[0], batch[1])}
