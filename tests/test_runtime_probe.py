"""The learnability probe (issue 7): a pipeline that cannot memorise one small batch fails, with a hint."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlloop.runtime.probe import ProbeError, enforce, run_probe
from train_fixture import one_thread  # noqa: F401  (a fixture: one torch thread)

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(L.LightningModule):
    """A 4-class MLP on random points; each flag breaks it one way a real pipeline breaks."""

    def __init__(self, lr=1e-2, ignore_input=False, frozen=False, wrong_decoding=False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
        self.bias = nn.Parameter(torch.zeros(4))
        self.lr, self.ignore_input, self.wrong_decoding = lr, ignore_input, wrong_decoding
        if frozen:
            for p in self.parameters():
                p.requires_grad_(False)

    def forward(self, x):
        if self.ignore_input:  # a head whose output does not depend on the input
            return self.bias.expand(len(x), -1)
        return self.net(x) + self.bias

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        if not out.requires_grad:  # frozen: keep the graph so backward runs (and changes nothing)
            out = out + torch.zeros((), requires_grad=True)
        return nn.functional.cross_entropy(out, y)

    def score_batch(self, batch):
        x, y = batch
        out = self(x)
        pred = out.argmax(0)[: len(y)] if self.wrong_decoding else out.argmax(1)  # argmax over the wrong axis
        return {"accuracy": (pred == y[: len(pred)]).float().mean().item()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def data(n=32):
    g = torch.Generator().manual_seed(3)
    return TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g))


def probe(module, **kw):
    return run_probe(module, data(), samples=8, max_steps=kw.pop("max_steps", 150), loss_drop_factor=10.0,
                     seed=42, **kw)


def test_a_working_pipeline_passes_early_and_is_left_untouched():
    module = Toy()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = probe(module)
    assert result.status == "PASS", result.summary()
    assert result.steps < 150  # stopped as soon as loss and metric were there
    assert result.loss_drop >= 10 and result.metric == "accuracy" and result.metric_value >= 0.9
    assert result.threshold == 0.9 and result.higher_is_better is True
    assert result.curve[0][0] == 0 and len(result.curve) == result.steps
    assert len(result.sample_ids) == 8 and result.sample_ids == probe(Toy()).sample_ids  # seeded
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert enforce(result) is result


def test_learning_rate_zero_fails_with_a_learning_rate_hint():
    result = probe(Toy(lr=0.0), max_steps=30)
    assert result.status == "FAIL"
    assert result.diagnosis.startswith("the optimizer's learning rate is 0")
    with pytest.raises(ProbeError, match=r"learnability probe FAIL after 30 steps on 8 samples: loss .* Hint: the "
                                         r"optimizer's learning rate is 0"):
        enforce(result)


def test_a_head_that_ignores_the_input_fails_with_a_loss_hint():
    result = probe(Toy(ignore_input=True))
    assert result.status == "FAIL" and result.steps == 150
    assert result.loss_drop < 10
    assert result.diagnosis.startswith("the loss does not depend on the input")


def test_frozen_parameters_fail_with_a_frozen_hint():
    result = probe(Toy(frozen=True), max_steps=20)
    assert result.status == "FAIL"
    assert result.diagnosis.startswith("no trainable parameters")


def test_a_falling_loss_with_a_wrong_metric_points_at_decoding():
    result = probe(Toy(wrong_decoding=True), max_steps=60)
    assert result.status == "FAIL" and result.loss_ok and not result.metric_ok
    assert "check the decoding" in result.diagnosis


def test_metric_threshold_and_disabled_probe():
    strict = probe(Toy(), metric_threshold=1.5, max_steps=40)  # an accuracy no model reaches
    assert strict.status == "FAIL" and strict.threshold == 1.5
    skipped = run_probe(Toy(), data(), enabled=False)
    assert skipped.status == "SKIP" and "disabled" in skipped.note and enforce(skipped) is skipped


def test_the_report_curve_keeps_first_and_last_step():
    result = probe(Toy(lr=0.0), max_steps=30)
    rows = result.sampled_curve(rows=5)
    assert rows[0][0] == 0 and rows[-1][0] == 29 and len(rows) <= 5 + 3


# ---- the script's own DataLoader (issue 15): variable-length text padded by its collate_fn ----------

class Tokens(torch.utils.data.Dataset):
    """Variable-length token sequences (3 to 12 tokens) with a class each: default_collate cannot stack them."""

    def __init__(self, n=24, broken_at=None):
        g = torch.Generator().manual_seed(5)
        self.items = [(torch.randint(1, 50, (3 + i % 10,), generator=g), i % 4) for i in range(n)]
        self.broken_at = broken_at

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if i == self.broken_at:
            raise KeyError("text")
        return self.items[i]


def line_of(marker: str) -> int:
    """The line of this file holding ``marker``: where the one-line error must point."""
    from pathlib import Path

    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, start=1) if marker in text and "line_of(" not in text)


def pad_batch(items):
    """Pads to the longest sequence: the script's collate_fn."""
    width = max(len(x) for x, _ in items)
    tokens = torch.zeros(len(items), width, dtype=torch.long)
    for i, (x, _) in enumerate(items):
        tokens[i, :len(x)] = x
    return {"tokens": tokens, "labels": torch.tensor([y for _, y in items])}


def broken_collate(items):
    return {"tokens": torch.stack([x for x, _ in items])}  # the script's bug: no padding


class BagOfTokens(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.emb = nn.EmbeddingBag(50, 32, padding_idx=0)
        self.head = nn.Linear(32, 4)

    def forward(self, tokens):
        return self.head(self.emb(tokens))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch["tokens"]), batch["labels"])

    def score_batch(self, batch):
        return {"accuracy": (self(batch["tokens"]).argmax(1) == batch["labels"]).float().mean().item()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=5e-2)


class TextData(L.LightningDataModule):
    def __init__(self, dataset, collate_fn=pad_batch, sampler=None, fail=False):
        super().__init__()
        self.dataset, self.collate_fn, self.sampler, self.fail = dataset, collate_fn, sampler, fail

    def train_dataloader(self):
        if self.fail:
            raise FileNotFoundError("train.jsonl")
        return torch.utils.data.DataLoader(self.dataset, batch_size=4, shuffle=self.sampler is None,
                                           sampler=self.sampler, collate_fn=self.collate_fn, num_workers=2)


def test_the_probe_and_the_search_use_the_scripts_collate_fn():
    from mlloop.runtime.batch_search import module_trainer, search
    from mlloop.runtime.loader import train_loader

    loader = train_loader(TextData(Tokens()))
    result = run_probe(BagOfTokens(), loader, samples=8, max_steps=200, seed=42)
    assert result.status == "PASS", result.summary()
    assert result.sample_ids == run_probe(BagOfTokens(), Tokens(), collate_fn=pad_batch, max_steps=1).sample_ids
    train_steps, _ = module_trainer(BagOfTokens(), loader, torch.device("cpu"))
    assert search(train_steps, 2, 32, steps=1).batch_size == 32  # 32 > 24 samples: cycled, padded


def test_the_scripts_sampler_chooses_the_probe_batch():
    from mlloop.runtime.loader import train_loader

    only_odd = torch.utils.data.SubsetRandomSampler(list(range(1, 24, 2)))
    loader = train_loader(TextData(Tokens(), sampler=only_odd))
    result = run_probe(BagOfTokens(), loader, samples=8, max_steps=1, seed=42)
    assert len(result.sample_ids) == 8 and all(i % 2 == 1 for i in result.sample_ids)
    assert result.sample_ids == run_probe(BagOfTokens(), loader, samples=8, max_steps=1, seed=42).sample_ids


def test_a_failure_in_the_scripts_data_code_is_one_line_naming_it():
    from mlloop.runtime.loader import ScriptError, train_loader

    def failing(loader):
        with pytest.raises(ScriptError) as err:
            run_probe(BagOfTokens(), loader, samples=8, max_steps=5, seed=42)
        assert "\n" not in str(err.value)
        return str(err.value)

    line = failing(train_loader(TextData(Tokens(), collate_fn=broken_collate)))
    assert line.startswith("the DataLoader's collate_fn broken_collate failed on 8 samples: RuntimeError: stack expects "
                           "each tensor to be equal size")
    assert line.endswith(f"(test_runtime_probe.py:{line_of('the script' + chr(39) + 's bug: no padding')})")
    line = failing(train_loader(TextData(Tokens(), collate_fn=None)))
    assert line.startswith("the DataLoader's collate_fn default_collate failed on 8 samples: RuntimeError: ")
    assert line.endswith("; items of different sizes need a collate_fn that pads them; give the DataLoader one")
    picks = run_probe(BagOfTokens(), Tokens(), collate_fn=pad_batch, max_steps=1).sample_ids
    line = failing(train_loader(TextData(Tokens(broken_at=picks[0]))))
    assert line == f"Tokens.__getitem__({picks[0]}) failed: KeyError: 'text' (test_runtime_probe.py:{line_of('raise KeyError')})"
    with pytest.raises(ScriptError) as err:
        train_loader(TextData(Tokens(), fail=True))
    assert str(err.value) == ("TextData.train_dataloader() failed: FileNotFoundError: train.jsonl "
                              f"(test_runtime_probe.py:{line_of('raise FileNotFoundError')})")
