"""Trivial baselines are exact: each template task type on a hand-made validation set.

Every expected number below is worked out by hand from the targets (no metric library), so a
change in how a trivial predictor or a metric is computed shows up here.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from mlloop.runtime import trivial
from mlloop.taskformat import load_task_format


def metrics(*names):
    from mlloop.rules import KNOWN_METRICS

    return [{"name": n, "higher_is_better": KNOWN_METRICS[n]} for n in names]


def values(doc):
    return {p["name"]: {m["name"]: m["value"] for m in p["metrics"]} for p in doc["predictors"]}


def hand_f1(preds, targets):
    """Macro F1 over the classes seen in either list (what torchmetrics' macro average keeps)."""
    scores = []
    for c in sorted(set(preds) | set(targets)):
        tp = sum(p == c and t == c for p, t in zip(preds, targets))
        fp = sum(p == c and t != c for p, t in zip(preds, targets))
        fn = sum(p != c and t == c for p, t in zip(preds, targets))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def test_classification_majority_and_class_prior():
    train = ["cat"] * 3 + ["dog"] * 2 + ["fox"]
    valid = ["cat", "dog", "dog", "fox", "cat"]
    doc = trivial.score_trivial("classification", train, valid, metrics("accuracy", "macro_f1"), "accuracy", 42)
    got = values(doc)
    # majority "cat": right on the 2 cats -> 2/5; F1 cat = 2*2/(2*2+3+0) = 4/7, dog 0, fox 0
    assert got["majority_class"] == {"accuracy": 0.4, "macro_f1": pytest.approx(4 / 7 / 3, abs=1e-12)}
    # class prior: the seeded draw over the labels in sorted order, weighted by training counts
    draw = random.Random(42).choices(["cat", "dog", "fox"], weights=[3, 2, 1], k=5)
    hits = sum(p == t for p, t in zip(draw, valid))
    assert got["class_prior"]["accuracy"] == hits / 5
    assert got["class_prior"]["macro_f1"] == pytest.approx(hand_f1(draw, valid), abs=1e-12)
    assert doc["predictors"][1]["fitted"] == {"labels": ["cat", "dog", "fox"], "counts": [3, 2, 1], "seed": 42}
    best = max([("majority_class", 0.4), ("class_prior", hits / 5)], key=lambda kv: kv[1])  # first wins ties
    assert doc["floor"] == {"metric": "accuracy", "value": best[1], "predictor": best[0], "higher_is_better": True}


def test_class_prior_is_reproducible_and_seeded():
    train, valid = ["a", "b", "c", "c"], ["a", "b", "c"] * 20
    first = trivial.score_trivial("classification", train, valid, metrics("accuracy"), "accuracy", 3)
    again = trivial.score_trivial("classification", train, valid, metrics("accuracy"), "accuracy", 3)
    other = trivial.score_trivial("classification", train, valid, metrics("accuracy"), "accuracy", 4)
    assert first == again
    draws = [random.Random(s).choices(["a", "b", "c"], weights=[1, 1, 2], k=60) for s in (3, 4)]
    assert [values(d)["class_prior"]["accuracy"] for d in (first, other)] == [
        sum(p == t for p, t in zip(draw, valid)) / 60 for draw in draws]


def test_majority_ties_go_to_the_first_label_in_sorted_order():
    doc = trivial.score_trivial("classification", ["b", "a", "a", "b"], ["a", "b"], metrics("accuracy"), "accuracy", 0)
    assert doc["predictors"][0]["fitted"] == {"constant": "a"}
    doc = trivial.score_trivial("classification", [10, 2, 2, 10], [2, 10], metrics("accuracy"), "accuracy", 0)
    assert doc["predictors"][0]["fitted"] == {"constant": 2}  # integer labels sort as numbers


def test_regression_mean_and_median():
    train = [1.0, 2.0, 3.0, 10.0]          # mean 4, median 2.5
    valid = [2.0, 4.0, 6.0]                # mean 4: SS_tot = 4 + 0 + 4 = 8
    doc = trivial.score_trivial("regression", train, valid, metrics("loss", "rmse", "mae", "mse", "r2"), "rmse", 42)
    got = values(doc)
    # mean 4: errors -2, 0, 2 -> SSE 8
    assert got["mean"] == pytest.approx({"rmse": math.sqrt(8 / 3), "mae": 4 / 3, "mse": 8 / 3, "r2": 0.0}, abs=1e-12)
    # median 2.5: errors 0.5, -1.5, -3.5 -> SSE 0.25 + 2.25 + 12.25 = 14.75
    assert got["median"] == pytest.approx({"rmse": math.sqrt(14.75 / 3), "mae": 5.5 / 3, "mse": 14.75 / 3,
                                           "r2": 1 - 14.75 / 8}, abs=1e-12)
    assert doc["floor"] == {"metric": "rmse", "value": pytest.approx(math.sqrt(8 / 3), abs=1e-12),
                            "predictor": "mean", "higher_is_better": False}
    assert doc["not_computable"] == {"loss": trivial.LOSS_REASON}


def test_text_empty_and_most_frequent_string_with_a_loss_primary():
    train = ["ab", "ab", "c", ""]
    valid = ["ab", "abc", "x"]             # 2 + 3 + 1 = 6 reference characters, 3 words
    doc = trivial.score_trivial("text", train, valid, metrics("loss", "cer", "wer", "exact_match"), "loss", 42)
    got = values(doc)
    # empty: deletes every character (6/6) and every word (3/3)
    assert got["empty_string"] == {"cer": 1.0, "wer": 1.0, "exact_match": 0.0}
    # "ab": 0 edits, 1 ("abc"), 2 ("x") -> 3/6; words: 0 + 1 + 1 -> 2/3
    assert got["most_frequent_string"] == {"cer": 0.5, "wer": 2 / 3, "exact_match": 1 / 3}
    # the primary metric (a loss) is not computable: the floor is the first rules metric that is
    assert doc["floor"] == {"metric": "cer", "value": 0.5, "predictor": "most_frequent_string", "higher_is_better": False}


def test_floor_ties_keep_the_first_predictor():
    doc = trivial.score_trivial("text", ["zz"], ["ab"], metrics("exact_match", "cer"), "exact_match", 0)
    assert values(doc)["empty_string"]["exact_match"] == values(doc)["most_frequent_string"]["exact_match"] == 0.0
    assert doc["floor"]["predictor"] == "empty_string"


def test_no_trivial_predictors_is_a_null_floor_with_a_note():
    doc = trivial.score_trivial(None, None, None, metrics("loss"), "loss", 42, note="no trivial predictors for task type 'object-detection'")
    assert doc == {"predictors": [], "floor": None, "note": "no trivial predictors for task type 'object-detection'"}
    doc = trivial.score_trivial("regression", ["a"], [1.0], metrics("mae"), "mae", 0)
    assert doc["floor"] is None and doc["note"] == "no trivial predictors: the train index holds a str target where a number belongs"
    doc = trivial.score_trivial("classification", ["a", "b"], ["a"], metrics("loss"), "loss", 0)
    assert doc["floor"] is None and doc["note"] == "no trivial predictor can compute any of the configured metrics"
    json.dumps(doc, allow_nan=False)


def test_task_families_follow_task_format():
    tf = load_task_format()
    expected = {
        "image-classification": ("classification", "label"), "tabular-classification": ("classification", "label"),
        "text-classification": ("classification", "label"), "audio-classification": ("classification", "label"),
        "tabular-regression": ("regression", "target"), "image-regression": ("regression", "target"),
        "ocr-recognition": ("text", "target"), "text-generation": ("text", "target"),
        "speech-recognition": ("text", "target"), "image-captioning": ("text", "target"),
        "object-detection": (None, "label_path"), "token-classification": (None, "tags"), "custom": (None, None),
    }
    got = {t: (trivial.task_family(t, tf), trivial.declared_target(t, tf)) for t in expected}
    assert got == expected
    assert trivial.task_family("my-regression") == "regression" and trivial.task_family(None) is None


def test_target_field_and_index_reading(tmp_path):
    from mlloop.runtime.artifacts import read_index  # what the harness fits the trivial predictors from

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.jsonl").write_text('{"id": "a", "label": "x"}\n\n{"id": "b", "label": "y"}\n')
    records = read_index(tmp_path, "train")
    assert records == [{"id": "a", "label": "x"}, {"id": "b", "label": "y"}]
    assert trivial.target_field("classification", records) == "label"
    assert trivial.target_field("classification", records, declared="target") is None
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "valid").mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": "c", "target": 1.5}]), tmp_path / "valid" / "valid.parquet")
    assert read_index(tmp_path, "valid") == [{"id": "c", "target": 1.5}]


def test_segmentation_floor_is_the_majority_mask_whatever_the_model_predicted():
    """Two 2x2 masks, background (0) on 5 of 8 pixels: the floor predicts 0 everywhere. IoU of 0 is
    5/8, classes 1 and 2 get 0 (present in the targets); class 3, only in the model's masks, is not a
    class of the floor's. Masks may come as tensors (what predict() returns) or as lists."""
    import torch

    from mlloop.jsonio import to_jsonable

    targets = [[[0, 0], [1, 1]], [[0, 0], [0, 2]]]
    model_masks = [torch.tensor([[3, 3], [3, 3]]), torch.tensor([[0, 1], [2, 2]])]
    results = [{"prediction": to_jsonable(p), "target": to_jsonable(torch.tensor(t)), "loss": 0.1}
               for p, t in zip(model_masks, targets)]
    assert results[0]["prediction"] == [[3, 3], [3, 3]] and results[1]["target"] == [[0, 0], [0, 2]]
    doc = trivial.score_from_results(trivial.SEGMENTATION, results, metrics("miou", "dice", "pixel_accuracy"), "miou", 0)
    assert doc["predictors"][0]["name"] == "majority_pixel" and doc["predictors"][0]["fitted"] == {"class": 0}
    assert values(doc)["majority_pixel"] == pytest.approx({"miou": (5 / 8) / 3, "dice": (2 * 5 / (2 * 5 + 3)) / 3,
                                                           "pixel_accuracy": 5 / 8})
    assert doc["floor"]["metric"] == "miou" and doc["floor"]["value"] == pytest.approx(5 / 24)
    results[0]["prediction"] = [[0, 0], [1, 1]]  # another model: the same floor
    again = trivial.score_from_results(trivial.SEGMENTATION, results, metrics("miou"), "miou", 0)
    assert again["floor"]["value"] == pytest.approx(5 / 24)
