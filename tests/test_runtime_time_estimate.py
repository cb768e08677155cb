"""The smoke test estimates a full version's training time and warns over max_minutes_per_version."""

from types import SimpleNamespace

import pytest

from mlloop.layout import Project
from mlloop.markdown import bullets
from mlloop.rules import DEFAULTS, resolve
from mlloop.runtime.smoke import estimate_version_time
from mlloop.runtime.training import count_steps
from train_fixture import install_script, load_script, one_thread, tabular_prepdata, write_rules  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeTimer:
    def __init__(self, batch_s, validation):
        self._batch_s, self.validation = batch_s, validation

    def batch_seconds(self):
        return self._batch_s, 7


def fake_run(budget, n_valid=50):
    return SimpleNamespace(training_config={"max_minutes_per_version": budget},
                           full_index=lambda split: [{}] * n_valid, devices=SimpleNamespace(label="cpu"))


def test_the_estimate_scales_the_measured_batch_time_to_the_planned_steps():
    steps = count_steps(1000, 32, 3, 10, 10, accumulate=2).to_dict()  # 31 batches -> 16 steps per epoch, 48 in all
    # 0.1 s per batch of 16 -> 0.2 s per batch of 32, 93 batches = 18.6 s; validation 1 s per 10 samples -> 5 s x 3
    e = estimate_version_time(fake_run(None), FakeTimer(0.1, [1.0, 1.0]), 16, steps, valid_used=10)
    assert e["minutes"] == round((18.6 + 15.0) / 60, 2) and "warning" not in e
    assert e["basis"].startswith("93 training batches of 32 (median 100.0 ms per batch of 16 over 7 smoke-run batches")
    over = estimate_version_time(fake_run(0.5), FakeTimer(0.1, [1.0]), 16, steps, valid_used=10)
    assert over["warning"] == ("a full version is estimated at 0.6 minutes, over training_config.max_minutes_per_version"
                               "=0.5: lower epochs, the image size or the model size, or raise the budget")
    assert estimate_version_time(fake_run(1.0), FakeTimer(None, []), 16, steps, 10)["minutes"] is None


@pytest.mark.slow  # trains
def test_the_smoke_report_shows_the_estimate_and_the_budget_warning(tmp_path, capsys):
    write_rules(tmp_path, "tabular-classification", training={"max_minutes_per_version": 1e-6, "epochs": 50})
    tabular_prepdata(tmp_path)
    summary = load_script(install_script(tmp_path, "tabular"), "t_budget").main(["--NUM_WORKERS=0"])
    assert summary["overall_result"] == "PASS" and summary["estimated_version_minutes"] > 0
    report = (tmp_path / "Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md").read_text()
    fields = bullets(report)
    assert "## Time estimate" in report and fields["time_budget"] == "OVER"
    assert fields["max_minutes_per_version"] == "1e-06"
    assert fields["time_warning"].startswith("a full version is estimated at ")
    assert "over training_config.max_minutes_per_version=1e-06" in capsys.readouterr().out


def test_max_minutes_per_version_is_optional_null_by_default_and_typed(tmp_path):
    assert DEFAULTS["training_config"]["max_minutes_per_version"] is None
    write_rules(tmp_path, "tabular-classification", training={"max_minutes_per_version": -5})
    problems = [p.line() for p in resolve(Project(tmp_path)).findings.problems]
    assert len(problems) == 1 and "max_minutes_per_version" in problems[0]
    write_rules(tmp_path, "tabular-classification", training={"max_minutes_per_version": 30})
    rules = resolve(Project(tmp_path))
    assert rules.findings.ok and rules.values["training_config"]["max_minutes_per_version"] == 30
