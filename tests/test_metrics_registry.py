"""The metric registry: names and aliases, and every metric against a value computed by hand on a
tiny case (scikit-learn's or torchmetrics' definition where they fix a choice)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from mlloop import metrics as registry
from mlloop.cli import cli
from mlloop.runtime import trivial
from mlloop.runtime.metrics import COMPUTE, MetricError, can_compute, compute_metrics


def spec(*names):
    return [{"name": n, "higher_is_better": registry.higher_is_better(n)} for n in names]


def value(results, name, **kw):
    return compute_metrics(results, spec(name), **kw).value(name)


# ---- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("written, canonical", [
    ("auc", "roc_auc"), ("roc-auc", "roc_auc"), ("AUROC", "roc_auc"), ("logloss", "log_loss"), ("mAP", "map"),
    ("macro_f1", "macro_f1"), ("f1_macro", "macro_f1"), ("top5_accuracy", "top_k_accuracy@5"),
    ("top_k_accuracy@2", "top_k_accuracy@2"), ("NDCG@10", "ndcg@10"), ("ndcg", "ndcg"), ("precision@5", "precision@5"),
    ("precision", "precision"), ("map@10", "map@10"), ("pr_auc", "average_precision"), ("mase@7", "mase@7"),
    ("binary_f1@Churn", "binary_f1@Churn"), ("kappa", "cohen_kappa"), ("mean_iou", "miou"),
])
def test_aliases_resolve_to_one_canonical_name(written, canonical):
    assert registry.canonical(written) == canonical


@pytest.mark.parametrize("name", ["roc_acu", "top_k_accuracy", "precision@0", "ndcg@x", "accuracy@3", "", "my_score"])
def test_unknown_names_are_none(name):
    assert registry.parse(name) is None


def test_every_registry_entry_has_a_compute_function_and_fits_a_family():
    assert {m.usage for m in registry.REGISTRY} == set(COMPUTE)
    for m in registry.REGISTRY:
        assert m.floor in registry.FLOORS and m.needs
        assert set(m.families) <= set(registry.FAMILIES) | {registry.ANY}


def test_unknown_message_names_the_closest():
    assert registry.unknown_message("roc_acu") == ("'roc_acu' is not a metric mlloop knows; the closest known metric "
                                                   "is 'roc_auc' (`mlloop metrics` lists them)")


def test_fits_the_task_type():
    assert registry.fits("roc_auc", "tabular-classification")
    assert registry.fits("loss", "object-detection") and registry.fits("anything_custom", "custom")
    assert not registry.fits("cer", "image-classification")
    assert registry.fits("mase@7", "time-series-forecasting") and registry.fits("rmse", "time-series-forecasting")
    assert registry.fits("auc", "recommendation")  # a task alias


def test_mlloop_metrics_json_lists_every_metric_with_its_fields():
    out = CliRunner().invoke(cli, ["metrics", "--json"])
    assert out.exit_code == 0
    doc = json.loads(out.output)
    names = {m["name"] for m in doc["metrics"]}
    for name in ("accuracy", "balanced_accuracy", "top_k_accuracy@k", "macro_precision", "micro_recall", "weighted_f1",
                 "binary_f1[@label]", "roc_auc", "average_precision", "log_loss", "brier", "mcc", "cohen_kappa",
                 "mse", "rmse", "mae", "mape", "smape", "r2", "mase[@m]", "cer", "wer", "bleu", "chrf", "exact_match",
                 "map", "map_50", "map_75", "miou", "dice", "pixel_accuracy", "ndcg[@k]", "precision@k", "recall@k",
                 "mrr", "map@k"):
        assert name in names, name
    roc = next(m for m in doc["metrics"] if m["name"] == "roc_auc")
    assert roc["needs"] == ["scores", "target"] and roc["higher_is_better"] is True and "auc" in roc["aliases"]
    assert roc["families"] == ["classification"]
    task = json.loads(CliRunner().invoke(cli, ["metrics", "--task", "object-detection", "--json"]).output)
    assert {m["name"] for m in task["metrics"]} == {"loss", "exact_match", "map", "map_50", "map_75"}
    assert task["families"] == ["detection"]


# ---- classification from scores -----------------------------------------------------------

def binary():
    p_b = [0.1, 0.8, 0.3, 0.35]
    return [{"prediction": "b" if p > 0.5 else "a", "target": t, "loss": None, "scores": {"a": 1 - p, "b": p}}
            for t, p in zip(["a", "b", "b", "a"], p_b)]


@pytest.mark.slow
def test_binary_scores_metrics_by_hand():
    rows = binary()
    assert value(rows, "roc_auc") == pytest.approx(0.75)            # 3 of 4 positive/negative pairs in order
    assert value(rows, "average_precision") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert value(rows, "log_loss") == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.3) + math.log(0.65)) / 4)
    assert value(rows, "brier") == pytest.approx((0.01 + 0.04 + 0.49 + 0.1225) / 4)
    assert value(rows, "top_k_accuracy@1") == pytest.approx(0.75)


def test_binary_scores_match_scikit_learn():
    from sklearn import metrics as S

    rows = binary()
    y = [1 if r["target"] == "b" else 0 for r in rows]
    p = [r["scores"]["b"] for r in rows]
    assert value(rows, "roc_auc") == pytest.approx(S.roc_auc_score(y, p))
    assert value(rows, "average_precision") == pytest.approx(S.average_precision_score(y, p))
    assert value(rows, "log_loss") == pytest.approx(S.log_loss(y, p))
    assert value(rows, "brier") == pytest.approx(S.brier_score_loss(y, p))


def test_multiclass_scores_top_k_ties_brier_and_an_absent_class():
    rows = [{"prediction": "x", "target": "z", "loss": None, "scores": {"x": 0.5, "y": 0.3, "z": 0.2}},
            {"prediction": "x", "target": "y", "loss": None, "scores": {"x": 0.4, "y": 0.4, "z": 0.2}},
            {"prediction": "x", "target": "x", "loss": None, "scores": {"x": 0.5, "y": 0.3, "z": 0.2}}]
    # the tie of y with x counts the expected hit in a random order: 1/2 at k=1, 1 at k=2
    assert value(rows, "top_k_accuracy@1") == pytest.approx((0 + 0.5 + 1) / 3)
    assert value(rows, "top_k_accuracy@2") == pytest.approx((0 + 1 + 1) / 3)
    uniform = [{"prediction": "x", "target": t, "loss": None, "scores": {"x": 0.25, "y": 0.25, "z": 0.25, "w": 0.25}}
               for t in "xyzw"]
    assert value(uniform, "top_k_accuracy@1") == pytest.approx(0.25)  # constant scores: k / classes, never 1
    brier = ((0.25 + 0.09 + 0.64) + (0.16 + 0.36 + 0.04) + (0.25 + 0.09 + 0.04)) / 3
    assert value(rows, "brier") == pytest.approx(brier)
    # every class appears in the targets: one-vs-rest macro equals scikit-learn's
    from sklearn.metrics import roc_auc_score

    P = [[r["scores"][c] for c in "xyz"] for r in rows]
    assert value(rows, "roc_auc") == pytest.approx(roc_auc_score([r["target"] for r in rows], P, multi_class="ovr"))
    # "z" is absent from the targets: left out of the average, with a warning
    rows[0]["target"] = "x"
    got = compute_metrics(rows, spec("roc_auc"))
    assert got.warnings == ["roc_auc: roc_auc leaves out 'z': absent from the validation targets (or the only class there)"]
    assert math.isfinite(got.value("roc_auc"))


def test_undefined_scores_metric_is_one_clear_line_never_nan():
    rows = [{**r, "target": "a"} for r in binary()]
    with pytest.raises(MetricError) as err:
        compute_metrics(rows, spec("roc_auc"))
    assert str(err.value) == "metric 'roc_auc' cannot be computed: roc_auc is undefined: every validation target is 'a'."
    assert compute_metrics(rows, spec("roc_auc"), allow_missing=True).skipped == {
        "roc_auc": "roc_auc is undefined: every validation target is 'a'"}


def test_scores_fields_are_checked():
    rows = binary()
    rows[1]["scores"] = {"a": 0.5, "b": 0.7}
    assert can_compute("log_loss", rows) == ("scores of sample 1 sum to 1.2; log_loss needs probabilities "
                                             "(non-negative, summing to 1: apply softmax)")
    rows[1]["scores"] = {"a": 0.5, "c": 0.5}
    assert can_compute("auc", rows) == ("scores of sample 1 has other classes than the first sample's; every record "
                                        "needs every class")
    del rows[2]["scores"]
    assert can_compute("top5_accuracy", rows, ids=["s1", "s2", "s3", "s4"]).startswith(
        "predict() returned no 'scores' for sample 's3'; top_k_accuracy@5 needs it")


# ---- classification from labels -----------------------------------------------------------

def labels(preds, targets):
    return [{"prediction": p, "target": t, "loss": None} for p, t in zip(preds, targets)]


def test_label_metrics_by_hand():
    rows = labels([1, 0, 0, 0], [1, 1, 0, 0])
    assert value(rows, "mcc") == pytest.approx(2 / math.sqrt(12))
    assert value(rows, "cohen_kappa") == pytest.approx(0.5)
    assert value(rows, "binary_f1") == pytest.approx(2 / 3)          # positive: 1, the last label
    assert value(rows, "binary_f1@0") == pytest.approx(0.8)
    assert value(rows, "binary_precision") == pytest.approx(1.0)
    assert value(rows, "binary_recall") == pytest.approx(0.5)
    assert value(rows, "micro_precision") == pytest.approx(0.75)
    assert value(rows, "weighted_recall") == pytest.approx(0.75)
    assert value(rows, "macro_recall") == pytest.approx((0.5 + 1.0) / 2)


def test_multilabel_labels():
    rows = labels([["a", "b"], ["a"]], [["a", "b"], ["b"]])
    assert value(rows, "accuracy") == pytest.approx(0.5)              # the whole label set
    # a: tp 1 fp 1 fn 0 -> f1 2/3; b: tp 1 fp 0 fn 1 -> f1 2/3; micro: tp 2 fp 1 fn 1
    assert value(rows, "macro_f1") == pytest.approx(2 / 3)
    assert value(rows, "micro_precision") == pytest.approx(2 / 3)
    assert can_compute("mcc", rows) == "mcc is defined for single-label classification, and the targets are label lists"


def test_kappa_undefined_is_an_error_not_nan():
    with pytest.raises(MetricError, match="Cohen's kappa is undefined when targets and predictions are all one class"):
        compute_metrics(labels(["a", "a"], ["a", "a"]), spec("cohen_kappa"))


# ---- regression and forecasting -----------------------------------------------------------

def test_smape_and_lists():
    rows = labels([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
    assert value(rows, "smape") == pytest.approx((0 + 0.4 + 4 / 6) / 3)
    forecast = labels([[1.0, 2.0], [4.0, 4.0]], [[1.0, 3.0], [2.0, 4.0]])
    assert value(forecast, "mae") == pytest.approx((0 + 1 + 2 + 0) / 4)
    assert can_compute("mae", labels([[1.0]], [[1.0, 2.0]])) == "sample 0 has 1 predicted values for 2 targets"


def test_mase_against_the_seasonal_naive_forecast():
    rows = [{"prediction": [5.0, 5.0], "target": [5.0, 7.0], "history": [1.0, 2.0, 3.0, 4.0], "loss": None},
            {"prediction": [1.0], "target": [2.0], "history": [0.0, 2.0, 0.0, 2.0], "loss": None}]
    assert value(rows, "mase") == pytest.approx((1.0 / 1.0 + 1.0 / 2.0) / 2)
    assert can_compute("mase@2", rows) == ("the history of sample 1 repeats every 2 step(s), so the seasonal naive "
                                           "error that scales MASE is 0")
    del rows[0]["history"]
    assert can_compute("mase", rows).startswith("predict() returned no 'history' for sample 0; mase needs it")


# ---- detection, segmentation, ranking -----------------------------------------------------

def test_detection_map_by_iou():
    target = {"boxes": [[0, 0, 10, 10]], "labels": ["car"]}
    exact = [{"prediction": {"boxes": [[0, 0, 10, 10]], "labels": ["car"], "scores": [0.9]}, "target": target}]
    got = compute_metrics(exact, spec("map", "map_50", "map_75"))
    assert [m["value"] for m in got.values] == pytest.approx([1.0, 1.0, 1.0])
    loose = [{"prediction": {"boxes": [[0, 0, 10, 6.8]], "labels": ["car"], "scores": [0.9]}, "target": target}]
    got = compute_metrics(loose, spec("map", "map_50", "map_75"))  # IoU 0.68: matched at 0.50..0.65
    assert [m["value"] for m in got.values] == pytest.approx([0.4, 1.0, 0.0])
    assert can_compute("map", [{"prediction": [[0, 0, 1, 1]], "target": target}]) == (
        "the prediction of sample 0 must be a dict with boxes, labels, scores lists (boxes as [x1, y1, x2, y2] in pixels)")


def test_segmentation_from_masks_and_from_counts():
    rows = [{"prediction": [[0, 0], [1, 1]], "target": [[0, 1], [1, 1]], "loss": None}]
    got = compute_metrics(rows, spec("miou", "dice", "pixel_accuracy"))
    assert [m["value"] for m in got.values] == pytest.approx([(1 / 2 + 2 / 3) / 2, (2 / 3 + 0.8) / 2, 0.75])
    from mlloop.runtime.metrics import sample_fields

    stored = sample_fields(rows[0], spec("miou"))
    assert stored["prediction"] is None and stored["pixel_counts"]["tp"] == [1, 2]
    again = compute_metrics([json.loads(json.dumps(stored))], spec("miou"))
    assert again.value("miou") == pytest.approx(got.value("miou"))
    assert can_compute("dice", [{"prediction": [[0, 1]], "target": [[0], [1]]}]) == \
        "sample 0 has a [1, 2] prediction mask for a [2, 1] target mask"


def test_ranking_by_hand():
    rows = [{"prediction": ["a", "b", "c", "d"], "target": ["b", "d"], "loss": None}]
    l3, l5 = math.log2(3), math.log2(5)
    assert value(rows, "ndcg@2") == pytest.approx((1 / l3) / (1 + 1 / l3))
    assert value(rows, "ndcg") == pytest.approx((1 / l3 + 1 / l5) / (1 + 1 / l3))
    assert value(rows, "precision@2") == pytest.approx(0.5)
    assert value(rows, "recall@2") == pytest.approx(0.5)
    assert value(rows, "mrr") == pytest.approx(0.5)
    assert value(rows, "map@4") == pytest.approx(0.5)
    assert value(rows, "map@2") == pytest.approx(0.25)
    graded = [{"prediction": ["a", "b"], "target": {"a": 1, "b": 3}, "loss": None}]
    assert value(graded, "ndcg") == pytest.approx((1 + 3 / l3) / (3 + 1 / l3))
    assert can_compute("mrr", [{"prediction": ["a"], "target": []}]) == \
        "sample 0 has no relevant item in its target, so mrr is undefined for it"


# ---- floors ---------------------------------------------------------------------------------

def test_classification_floor_from_the_class_prior():
    doc = trivial.score_trivial(trivial.CLASSIFICATION, ["a", "a", "b"], ["a", "b"],
                                spec("roc_auc", "log_loss", "brier", "top_k_accuracy@1"), "roc_auc", 0)
    majority = {m["name"]: m["value"] for m in doc["predictors"][0]["metrics"]}
    assert majority["roc_auc"] == pytest.approx(0.5)                 # a constant score ranks nothing
    assert majority["log_loss"] == pytest.approx(-(math.log(2 / 3) + math.log(1 / 3)) / 2)
    assert majority["brier"] == pytest.approx(((1 / 3) ** 2 + (2 / 3) ** 2) / 2)
    assert majority["top_k_accuracy@1"] == pytest.approx(0.5)
    assert doc["floor"] == {"metric": "roc_auc", "value": 0.5, "predictor": "majority_class", "higher_is_better": True}


def test_floors_from_results():
    forecast = [{"prediction": [9.0, 9.0], "target": [5.0, 7.0], "history": [1.0, 2.0, 3.0, 4.0], "loss": 0.1}]
    doc = trivial.score_from_results(trivial.FORECASTING, forecast, spec("mase", "mase@2"), "mase", 0)
    assert [p["name"] for p in doc["predictors"]] == ["naive", "seasonal_naive@2"]
    assert doc["predictors"][0]["metrics"][0]["value"] == pytest.approx(2.0)   # [4, 4] for [5, 7], scale 1
    assert doc["floor"]["value"] == pytest.approx(2.0)
    # the seasonal naive forecast repeats the last season: y[T+h] = y[T+h-m], one season back
    seasonal = [{"prediction": [0.0] * 3, "target": [10.0, 20.0, 30.0], "history": [1.0, 10.0, 20.0, 30.0], "loss": None}]
    doc = trivial.score_from_results(trivial.FORECASTING, seasonal, spec("mae", "mase@3"), "mae", 0)
    assert doc["floor"] == {"metric": "mae", "value": 0.0, "predictor": "seasonal_naive@3", "higher_is_better": False}
    # a season longer than a history: that predictor is left out, with the reason, not an IndexError
    doc = trivial.score_from_results(trivial.FORECASTING, forecast, spec("mae", "mase@6"), "mae", 0)
    assert [p["name"] for p in doc["predictors"]] == ["naive"]
    assert doc["not_computable"]["seasonal_naive@6"] == "a history is shorter than the season (6)"

    target = {"boxes": [[0, 0, 10, 10]], "labels": ["car"]}
    doc = trivial.score_from_results(trivial.DETECTION, [{"prediction": {}, "target": target}], spec("map"), "map", 0)
    assert doc["floor"] == {"metric": "map", "value": 0.0, "predictor": "no_boxes", "higher_is_better": True}

    seg = [{"prediction": [[0, 0], [1, 1]], "target": [[0, 1], [1, 1]], "loss": None}]
    doc = trivial.score_from_results(trivial.SEGMENTATION, seg, spec("pixel_accuracy", "miou"), "miou", 0)
    values = {m["name"]: m["value"] for m in doc["predictors"][0]["metrics"]}
    assert values == pytest.approx({"pixel_accuracy": 0.75, "miou": (0 + 0.75) / 2})

    ranked = [{"prediction": ["a", "b", "c", "d"], "target": ["a"], "loss": None}]
    doc = trivial.score_from_results(trivial.RANKING, ranked, spec("mrr"), "mrr", 3)
    again = trivial.score_from_results(trivial.RANKING, ranked, spec("mrr"), "mrr", 3)
    assert doc == again and doc["predictors"][0]["name"] == "shuffled"
    assert 0.25 <= doc["floor"]["value"] <= 1.0


def test_task_format_documents_one_representation_per_family():
    import yaml

    from mlloop.bundle import skills_dir

    data = yaml.safe_load((skills_dir() / "build-baseline" / "task_format.yaml").read_text(encoding="utf-8"))
    assert set(data["predictions"]) == set(registry.FAMILIES)
    for task in data["supported_tasks"]:
        assert task in registry.TASK_FAMILIES or task == "custom", task


def test_perplexity_is_exp_of_the_mean_loss():
    rows = [{"prediction": "a", "target": "a", "loss": 1.0}, {"prediction": "b", "target": "a", "loss": 3.0}]
    assert value(rows, "perplexity") == pytest.approx(math.exp(2.0))
    with pytest.raises(MetricError, match="the mean loss 800 is too large for a finite perplexity"):
        compute_metrics([{**rows[0], "loss": 800.0}], spec("perplexity"))
