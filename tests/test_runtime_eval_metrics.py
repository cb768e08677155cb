"""Metrics by name: torchmetrics where it has them, the open choices fixed and tested."""

from __future__ import annotations

import random

import pytest
import torch

from mlloop.rules import KNOWN_METRICS
from mlloop.runtime.metrics import MetricError, can_compute, compute_metrics


def spec(*names):
    return [{"name": n, "higher_is_better": KNOWN_METRICS[n]} for n in names]


def results(preds, targets, losses=None):
    losses = losses or [None] * len(preds)
    return [{"prediction": p, "target": t, "loss": l} for p, t, l in zip(preds, targets, losses)]


def test_classification_averages_match_torchmetrics():
    from torchmetrics.functional import classification as C

    rng = random.Random(0)
    labels = ["a", "b", "c", "d", "e"]
    targets = [rng.choice(labels[:4]) for _ in range(60)]       # "e" only ever predicted
    preds = [rng.choice(labels) for _ in range(60)]
    got = compute_metrics(results(preds, targets), spec("accuracy", "macro_f1", "micro_f1", "weighted_f1",
                                                        "f1", "precision", "recall"))
    p = torch.tensor([labels.index(x) for x in preds])
    t = torch.tensor([labels.index(x) for x in targets])
    ref = {"accuracy": C.multiclass_accuracy(p, t, num_classes=5, average="micro"),
           "macro_f1": C.multiclass_f1_score(p, t, num_classes=5, average="macro"),
           "micro_f1": C.multiclass_f1_score(p, t, num_classes=5, average="micro"),
           "weighted_f1": C.multiclass_f1_score(p, t, num_classes=5, average="weighted"),
           "f1": C.multiclass_f1_score(p, t, num_classes=5, average="macro"),
           "precision": C.multiclass_precision(p, t, num_classes=5, average="macro"),
           "recall": C.multiclass_recall(p, t, num_classes=5, average="macro")}
    assert {m["name"]: m["value"] for m in got.values} == pytest.approx({k: v.item() for k, v in ref.items()}, abs=1e-6)
    assert [row["accuracy"] for row in got.per_sample] == [float(a == b) for a, b in zip(preds, targets)]


def test_balanced_accuracy_averages_recall_over_classes_in_the_targets():
    # recall: a 1/2, b 1/1; "c" is predicted but never a target, so it is left out
    got = compute_metrics(results(["a", "c", "b"], ["a", "a", "b"]), spec("balanced_accuracy"))
    assert got.values == [{"name": "balanced_accuracy", "value": 0.75, "higher_is_better": True}]


def test_single_label_and_integer_labels():
    got = compute_metrics(results([3, 3], [3, 3]), spec("accuracy", "macro_f1"))
    assert [m["value"] for m in got.values] == [1.0, 1.0]


def test_cer_and_wer_are_corpus_level_and_match_torchmetrics():
    from torchmetrics.functional.text import char_error_rate, word_error_rate

    preds, targets = ["helo world", "abc", "the cat sat"], ["hello world", "abd", "the cat sat down"]
    got = compute_metrics(results(preds, targets), spec("cer", "wer"))
    assert got.value("cer") == pytest.approx(char_error_rate(preds, targets).item(), abs=1e-6)
    assert got.value("wer") == pytest.approx(word_error_rate(preds, targets).item(), abs=1e-6)
    assert got.value("cer") == (1 + 1 + 5) / (11 + 3 + 16)
    assert [row["wer"] for row in got.per_sample] == [1 / 2, 1.0, 1 / 4]


def test_empty_targets():
    # corpus: insertions of an empty target count as edits, add nothing to the total
    got = compute_metrics(results(["", "ab", "abc"], ["", "", "abd"]), spec("cer", "exact_match"))
    assert got.value("cer") == (0 + 2 + 1) / 3
    assert [row["cer"] for row in got.per_sample] == [0.0, 2.0, 1 / 3]
    assert [row["exact_match"] for row in got.per_sample] == [1.0, 0.0, 0.0]
    with pytest.raises(MetricError) as err:
        compute_metrics(results(["a", ""], ["", ""]), spec("cer"))
    assert str(err.value) == ("metric 'cer' cannot be computed: every validation target is empty, "
                              "so the error rate has no denominator.")


def test_regression_metrics():
    got = compute_metrics(results([1.0, 2.0, 4.0], [1.0, 3.0, 2.0]), spec("mse", "rmse", "mae", "mape", "r2"))
    assert got.value("mse") == pytest.approx(5 / 3, abs=1e-12)
    assert got.value("rmse") == pytest.approx((5 / 3) ** 0.5, abs=1e-12)
    assert got.value("mae") == pytest.approx(1.0, abs=1e-12)
    assert got.value("mape") == pytest.approx((0 + 1 / 3 + 1) / 3, abs=1e-9)
    assert got.value("r2") == pytest.approx(1 - 5 / 2, abs=1e-12)   # SS_res 0+1+4, SS_tot around 2: 1+1+0
    assert [row["mae"] for row in got.per_sample] == [0.0, 1.0, 2.0]
    with pytest.raises(MetricError, match=r"^metric 'r2' cannot be computed: r2 needs at least 2 validation samples\.$"):
        compute_metrics(results([1.0], [2.0]), spec("r2"))


def test_loss_is_the_mean_of_per_sample_losses():
    got = compute_metrics(results(["a", "b"], ["a", "a"], [0.5, 1.5]), spec("loss"))
    assert got.values == [{"name": "loss", "value": 1.0, "higher_is_better": False}]
    assert got.per_sample == [{"loss": 0.5}, {"loss": 1.5}]
    with pytest.raises(MetricError) as err:
        compute_metrics(results(["a", "b"], ["a", "a"], [0.5, None]), spec("loss"), ids=["s1", "s2"])
    assert str(err.value) == ("metric 'loss' cannot be computed: predict() returned loss=null for sample 's2'; "
                              "it must return each sample's loss.")
    with pytest.raises(MetricError, match=r"non-finite loss \(nan\) for sample 's1'"):
        compute_metrics(results(["a"], ["a"], [float("nan")]), spec("loss"), ids=["s1"])


def test_metrics_that_cannot_be_computed_are_named():
    with pytest.raises(MetricError) as err:
        compute_metrics(results(["a"], ["a"]), spec("auroc"))
    assert str(err.value) == ("metric 'auroc' cannot be computed: predict() returned no 'scores' for sample 0; roc_auc "
                              "needs it (a {class: probability} dict per record, e.g. the softmax of the logits).")
    with pytest.raises(MetricError) as err:
        compute_metrics(results(["a"], ["a"]), [{"name": "my_score", "higher_is_better": True}])
    assert str(err.value) == ("mlloop has no implementation of metric 'my_score': 'my_score' is not a metric mlloop "
                              "knows; the closest known metric is 'r2' (`mlloop metrics` lists them).")
    with pytest.raises(MetricError) as err:
        compute_metrics(results([1.5], [2.0]), spec("cer"), ids=["s9"])
    assert str(err.value) == "metric 'cer' cannot be computed: it needs text, but the prediction of sample 's9' is float."
    with pytest.raises(MetricError, match=r"sample 's1' has a str prediction but a int target"):
        compute_metrics(results(["1"], [1]), spec("accuracy"), ids=["s1"])
    assert can_compute("rmse", results(["x"], [1.0])) == "it needs numbers, but the prediction of sample 0 is str"
    assert can_compute("exact_match", results([[1]], [[1]])) is None


def test_allow_missing_records_what_was_skipped():
    got = compute_metrics(results(["a"], ["a"]), spec("loss", "accuracy"), allow_missing=True)
    assert [m["name"] for m in got.values] == ["accuracy"]
    assert set(got.skipped) == {"loss"}


def test_bleu_and_chrf_match_torchmetrics():
    from torchmetrics.functional.text import bleu_score, chrf_score

    preds, targets = ["the cat is on the mat"], ["there is a cat on the mat"]
    got = compute_metrics(results(preds, targets), spec("bleu", "chrf"))
    assert got.value("bleu") == pytest.approx(bleu_score(preds, [[t] for t in targets]).item())
    assert got.value("chrf") == pytest.approx(chrf_score(preds, [[t] for t in targets]).item())
    assert got.per_sample == [{}]
