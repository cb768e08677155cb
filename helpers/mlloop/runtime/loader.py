"""The script's own training DataLoader, as the learnability probe and the batch-size search use it.

Both build batches outside the Trainer. They take the dataset, the ``collate_fn`` and the
sampler from the script's ``train_dataloader()``, so a dataset that trains (variable-length
text padded by its collate_fn, a weighted or bucketing sampler) also probes, and a failure in
the script's data code is one line naming the function and the script line:

    LineData.train_dataloader() failed: ...
    TextDataset.__getitem__(3) failed: KeyError: 'text' (02_train_baseline.py:88)
    the DataLoader's collate_fn pad_batch failed on 8 samples: RuntimeError: ... (02_train_baseline.py:61)

A plain dataset is accepted too (with ``collate_fn`` or torch's ``default_collate``).
"""

from __future__ import annotations

import functools
import itertools
import sysconfig
from pathlib import Path
from typing import Any

from ..errors import MlloopError
from .seeding import seeded_sample

_LIBRARY_PARTS = ("site-packages", "dist-packages", str(Path(__file__).resolve().parents[1]),
                  str(Path(sysconfig.get_paths()["stdlib"]).resolve()))


class ScriptError(MlloopError):
    """The training script's own code failed while the probe or the search built or ran a batch."""


def where(exc: BaseException) -> str:
    """`` (file.py:LINE)`` of the innermost frame outside the libraries and mlloop, or ''."""
    found, tb = "", exc.__traceback__
    while tb is not None:
        path = str(Path(tb.tb_frame.f_code.co_filename).resolve())
        if not any(part in path for part in _LIBRARY_PARTS) and not path.startswith("<"):
            found = f" ({Path(path).name}:{tb.tb_lineno})"
        tb = tb.tb_next
    return found


def failure(what: str, exc: BaseException, hint: str = "", on: str = "") -> ScriptError:
    """One line: what failed (on what), the exception's type and first line, where in the script."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return ScriptError(f"{what} failed{on}: {type(exc).__name__}: {text}{where(exc)}" + (f"; {hint}" if hint else ""))


def function_name(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def train_loader(datamodule) -> Any:
    """``datamodule.train_dataloader()``, its failure as one line."""
    from torch.utils.data import DataLoader

    owner = f"{type(datamodule).__name__}.train_dataloader()"
    try:
        loader = datamodule.train_dataloader()
    except MlloopError:
        raise
    except Exception as exc:  # noqa: BLE001 - the script's code: any error, one line
        raise failure(owner, exc) from None
    if not isinstance(loader, DataLoader):
        raise ScriptError(f"{owner} returned {type(loader).__name__}, not a torch DataLoader; the probe and the "
                          "batch-size search build their batches with its dataset, collate_fn and sampler.")
    return loader


class Batches:
    """Items and batches drawn the way the script's DataLoader draws them (no worker processes)."""

    def __init__(self, source: Any, collate_fn=None):
        from torch.utils.data import DataLoader, default_collate

        self.loader = source if isinstance(source, DataLoader) else None
        self.dataset = source.dataset if self.loader is not None else source
        self.collate_fn = (self.loader.collate_fn if self.loader is not None else collate_fn) or default_collate

    @property
    def iterable(self) -> bool:
        from torch.utils.data import IterableDataset

        return isinstance(self.dataset, IterableDataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def draw(self, n: int, seed: int) -> list:
        """``n`` seeded indices: a seeded draw of the split, or the first ``n`` the script's own
        (custom) sampler yields under the seed."""
        from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

        loader = self.loader
        plain = loader is None or (type(loader.sampler) in (RandomSampler, SequentialSampler)
                                   and type(loader.batch_sampler) in (BatchSampler, type(None)))
        if plain:
            return seeded_sample(list(range(len(self))), n, seed)
        import torch

        source = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
        owner = f"the DataLoader's {'batch_sampler' if loader.batch_sampler is not None else 'sampler'} {type(source).__name__}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                flat = (i for item in source for i in (item if isinstance(item, (list, tuple)) else [item]))
                picks = list(itertools.islice(flat, n))
            except Exception as exc:  # noqa: BLE001 - the script's sampler
                raise failure(owner, exc) from None
        if not picks:
            raise ScriptError(f"{owner} yielded no index: the training split has nothing to draw from.")
        return picks

    def items(self, indices: list) -> list:
        owner = type(self.dataset).__name__
        out = []
        for i in indices:
            try:
                out.append(self.dataset[i])
            except Exception as exc:  # noqa: BLE001 - the script's dataset
                raise failure(f"{owner}.__getitem__({i!r})", exc) from None
        return out

    def first_items(self, n: int) -> list:
        """The first ``n`` items of an iterable dataset, cycling when it holds fewer."""
        owner = f"iterating {type(self.dataset).__name__}"
        try:
            got = list(itertools.islice(iter(self.dataset), n))
        except Exception as exc:  # noqa: BLE001 - the script's dataset
            raise failure(owner, exc) from None
        if not got:
            raise MlloopError("the training split is empty: there is no batch to build.")
        return [got[i % len(got)] for i in range(n)]

    def collate(self, items: list) -> Any:
        name = function_name(self.collate_fn)
        try:
            return self.collate_fn(items)
        except Exception as exc:  # noqa: BLE001 - the script's collate_fn
            hint = ("items of different sizes need a collate_fn that pads them; give the DataLoader one"
                    if name == "default_collate" else "")
            raise failure(f"the DataLoader's collate_fn {name}", exc, hint, on=f" on {len(items)} samples") from None

    def sample(self, n: int, seed: int) -> tuple[list, Any]:
        """(indices, batch) of a seeded draw of ``n`` training samples."""
        if self.iterable:
            return list(range(n)), self.collate(self.first_items(n))
        if len(self) == 0:
            raise MlloopError("the training split is empty: there is no batch to build.")
        picks = self.draw(n, seed)
        return picks, self.collate(self.items(picks))

    def cycled(self, n: int) -> Any:
        """A batch of exactly ``n`` samples, cycling through the split when it is smaller."""
        if self.iterable:
            return self.collate(self.first_items(n))
        if len(self) == 0:
            raise MlloopError("the training split is empty: nothing to search a batch size with.")
        return self.collate(self.items([i % len(self) for i in range(n)]))
