"""Metric names in the rules are refused early: `mlloop rules` and `mlloop check rules` name an
unknown metric with the closest known one, a direction against the registry's, and a metric that
does not fit the task type; aliases resolve to the registry's canonical name."""

from __future__ import annotations

import json
import types

import pytest
from click.testing import CliRunner

from factory import PT_RULES
from mlloop.cli import cli
from mlloop.errors import MlloopError

PT_FILE = ".claude/skills/progressive-training/user_defined_rules.json"


def with_metrics(factory, metrics, primary):
    pt = json.loads(json.dumps(PT_RULES))
    pt["eval_config"].update(metrics=metrics, primary_metric=primary)
    factory.rules(pt=pt)
    return factory.root


@pytest.mark.parametrize("command", [["rules"], ["check", "rules"]])
def test_unknown_metric_is_one_line_with_the_closest_name(factory, command):
    root = with_metrics(factory, ["loss", "roc_acu"], "loss")
    out = CliRunner().invoke(cli, [*command, "--project", str(root)])
    assert out.exit_code == 1
    assert (f"problem: {PT_FILE}::$.eval_config.metrics[1]: 'roc_acu' is not a metric mlloop knows; the closest "
            "known metric is 'roc_auc' (`mlloop metrics` lists them)") in out.output.splitlines()


def test_unknown_primary_metric_is_a_problem(factory):
    root = with_metrics(factory, ["loss"], "acuracy")
    out = CliRunner().invoke(cli, ["rules", "--project", str(root)])
    assert out.exit_code == 1
    assert (f"problem: {PT_FILE}::$.eval_config.primary_metric: 'acuracy' is not a metric mlloop knows; the closest "
            "known metric is 'accuracy' (`mlloop metrics` lists them)") in out.output.splitlines()


def test_aliases_resolve_and_the_direction_comes_from_the_registry(factory):
    root = with_metrics(factory, ["loss", "auc", {"name": "logloss", "higher_is_better": False}, "top5_accuracy"], "AUC")
    out = CliRunner().invoke(cli, ["rules", "--json", "--project", str(root)])
    assert out.exit_code == 0, out.output
    ec = json.loads(out.output)["rules"]["eval_config"]
    assert ec["primary_metric"] == "roc_auc"
    assert ec["metrics"] == [{"name": "loss", "higher_is_better": False}, {"name": "roc_auc", "higher_is_better": True},
                             {"name": "log_loss", "higher_is_better": False},
                             {"name": "top_k_accuracy@5", "higher_is_better": True}]


def test_a_direction_against_the_registry_is_a_problem(factory):
    root = with_metrics(factory, [{"name": "roc_auc", "higher_is_better": False}], "roc_auc")
    out = CliRunner().invoke(cli, ["check", "rules", "--project", str(root)])
    assert out.exit_code == 1
    assert (f"problem: {PT_FILE}::$.eval_config.metrics[0].higher_is_better: roc_auc is higher-is-better, but the "
            "rules say higher_is_better=false; set it to true or leave it out") in out.output.splitlines()


def test_an_alias_listed_twice_is_a_duplicate(factory):
    root = with_metrics(factory, ["auc", "roc_auc"], "roc_auc")
    out = CliRunner().invoke(cli, ["rules", "--project", str(root)])
    assert out.exit_code == 1
    assert (f"problem: {PT_FILE}::$.eval_config.metrics[1]: metric 'roc_auc' is listed twice (as roc_auc); metric "
            "names must be unique") in out.output.splitlines()


def test_a_metric_that_does_not_fit_the_task_is_a_warning(factory):
    root = with_metrics(factory, ["loss", "accuracy", "cer"], "accuracy")
    out = CliRunner().invoke(cli, ["rules", "--project", str(root)])
    assert out.exit_code == 0
    assert (f"warning: {PT_FILE}::$.eval_config.metrics[2]: cer is a text metric and task_type 'image-classification' "
            "is classification; `mlloop metrics --task image-classification` lists the metrics that fit"
            ) in out.output.splitlines()


# ---- the smoke test computes every configured metric from predict() ---------------------------

SCRIPT = '''
def load_for_eval(path, device):
    return "model"

def eval_records(prepdata_dir, split="valid"):
    return [{"id": i, "label": "ab"[i % 2]} for i in range(6)]

def make_batch(records, prepdata_dir, device):
    return records

def predict(model, batch):
    return [{"prediction": "a", "target": r["label"], "loss": 0.5} for r in batch]
'''


def fake_run(tmp_path, metrics):
    script = tmp_path / "02_train_baseline.py"
    script.write_text(SCRIPT, encoding="utf-8")
    rules = types.SimpleNamespace(metrics=[{"name": n, "higher_is_better": h} for n, h in metrics])
    paths = types.SimpleNamespace(script=script, dir=tmp_path)
    return types.SimpleNamespace(paths=paths, rules=rules, prepdata_dir=tmp_path,
                                 records=lambda split: [{"id": i} for i in range(6)])


def test_smoke_evaluation_fails_early_naming_the_missing_field(tmp_path):
    from mlloop.runtime.smoke import check_evaluation

    run = fake_run(tmp_path, [("loss", False), ("accuracy", True), ("roc_auc", True)])
    with pytest.raises(MlloopError) as err:
        check_evaluation(run, "cpu")
    assert str(err.value) == ("metric 'roc_auc' (eval_config.metrics) cannot be computed from 02_train_baseline.py's "
                              "predict(): predict() returned no 'scores' for sample 0; roc_auc needs it (a {class: "
                              "probability} dict per record, e.g. the softmax of the logits); return what it needs or "
                              "change the rules.")


def test_smoke_evaluation_computes_every_metric(tmp_path):
    from mlloop.runtime.smoke import check_evaluation

    run = fake_run(tmp_path, [("loss", False), ("accuracy", True), ("cohen_kappa", True)])
    got = check_evaluation(run, "cpu")
    assert got["records"] == 6
    assert got["metrics"] == {"loss": 0.5, "accuracy": 0.5, "cohen_kappa": 0.0}
