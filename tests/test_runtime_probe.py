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
