"""Seeding: one call makes a run repeatable (torch, numpy, random, DataLoader workers).

``seed_everything(seed)`` is Lightning's, with ``workers=True`` so that every DataLoader worker
gets its own derived seed. ``deterministic=True`` also asks torch for deterministic kernels
(slower; some ops then raise instead of running non-deterministically, so it warns only).
"""

from __future__ import annotations

import os
import random


def seed_everything(seed: int, deterministic: bool = False) -> int:
    import torch
    from lightning.pytorch import seed_everything as pl_seed_everything

    pl_seed_everything(int(seed), workers=True, verbose=False)
    if deterministic:
        # cuBLAS needs a fixed workspace for deterministic matmuls (torch docs, "Reproducibility").
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return int(seed)


def seeded_sample(items: list, k: int, seed: int) -> list:
    """``random.Random(seed).sample(sorted(items), k)`` with k capped at len(items): the one way
    mlloop draws a seeded subset (smoke-run samples, the probe batch)."""
    ordered = sorted(items)
    return random.Random(seed).sample(ordered, min(k, len(ordered)))


def generator(seed: int):
    """A torch.Generator seeded with ``seed`` (for samplers that must not touch global state)."""
    import torch

    g = torch.Generator()
    g.manual_seed(int(seed))
    return g
