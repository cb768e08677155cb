"""The step-time benchmark compares each template with a plain loop on the same model and data:
every training template has a case, and a case's plain-torch loss is what the template's
training_step returns (benchmarks/template_steps.py)."""

import sys
from pathlib import Path

import pytest
import torch

from train_fixture import TRAIN_TEMPLATES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import template_steps  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

CASES = template_steps.case_names()


def test_every_training_template_has_a_step_time_case():
    covered = {template_steps.load_file(template_steps.CASES / f"{name}.py", f"case_{name}").TEMPLATE
               for name in CASES}
    assert covered == {Path(p).name for p in TRAIN_TEMPLATES.values()}


@pytest.mark.slow  # builds each case's model and data
@pytest.mark.parametrize("name", CASES)
def test_a_cases_loss_is_what_training_step_returns(name, monkeypatch):
    case, tpl = template_steps.load_case(name)
    monkeypatch.setattr(case, "BATCH", 4)  # build() reads it: small loaders, same shapes
    torch.manual_seed(0)
    parts = case.build(tpl, 0)
    model = parts["model"].eval()  # no dropout: the two computations see the same network
    model.log = lambda *args, **kwargs: None
    batch = next(iter(parts["train"]))
    with torch.no_grad():
        torch.manual_seed(1)
        plain = parts["loss"](model, batch)
        torch.manual_seed(1)
        template = model.training_step(batch, 0)
    assert torch.isfinite(plain) and torch.equal(plain, template)
