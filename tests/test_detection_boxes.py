"""Detection's box format (mlloop.formats.boxes), generated label assets (data.json_asset) and the
detection floor (trivial.fit_box_prior + score_from_results): small, exact, no training."""

import json

import pytest

from mlloop.errors import MlloopError
from mlloop.formats import boxes
from mlloop.runtime import data, trivial


def test_coco_xywh_converts_and_boxes_past_the_image_are_clipped():
    assert boxes.from_xywh([10, 20, 5, 8]) == [10.0, 20.0, 15.0, 28.0]
    assert boxes.clip([55, -3, 74, 45], 64, 64) == [55.0, 0.0, 64.0, 45.0]
    assert boxes.clip([70, 10, 90, 20], 64, 64) is None  # nothing left inside: the box goes, not the image


def test_render_and_read_round_trip_and_refuse_bad_boxes(tmp_path):
    doc = boxes.render([([1, 2, 3, 4], "car"), ([0, 0, 10.123, 5], "bus")])
    assert doc == {"boxes": [{"bbox": [1.0, 2.0, 3.0, 4.0], "label": "car"}, {"bbox": [0.0, 0.0, 10.12, 5.0], "label": "bus"}]}
    assert boxes.render([]) == {"boxes": []}  # an image without objects is a valid negative
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    assert boxes.read(path) == ([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 10.12, 5.0]], ["car", "bus"])
    with pytest.raises(MlloopError, match=r"box 0: bbox \[10, 20, 5, 8\] is not \[x1, y1, x2, y2\] with x1 < x2"):
        boxes.render([([10, 20, 5, 8], "car")])  # COCO's w, h smaller than x, y: not converted
    path.write_text(json.dumps({"boxes": [{"bbox": [1, 2, 3, 4], "label": "car"}, {"bbox": [1, 2, 3], "label": "x"}]}))
    with pytest.raises(MlloopError) as exc:
        boxes.read(path)
    assert str(exc.value) == f"{path}: $.boxes[1]: bbox [1, 2, 3] must be four numbers [x1, y1, x2, y2]."
    path.write_text(json.dumps({"objects": []}))
    with pytest.raises(MlloopError, match=r"\$\.boxes must be a list"):
        boxes.read(path)


def test_a_json_asset_is_read_like_a_raw_file_and_each_call_is_its_own_file(tmp_path):
    a, b = data.json_asset({"boxes": []}), data.json_asset({"boxes": []})
    assert a != b and a.endswith(".json") and data.suffix_of(a) == ".json"  # two negatives: two label files
    with data.AssetReader(tmp_path) as reader:
        assert json.loads(reader.read(a)) == {"boxes": []}
        assert reader.digest(a) == reader.digest(b)  # equal content hashes equal (de-duplication sees it)
        reader.check(a)
        with pytest.raises(FileNotFoundError):
            reader.check("generated:9999999.json")


def spec(*names):
    from mlloop import metrics as registry

    return [{"name": n, "higher_is_better": registry.higher_is_better(n)} for n in names]


def test_the_detection_floor_is_no_boxes_or_the_training_prior_whichever_is_better():
    prior = trivial.fit_box_prior([([0.1, 0.1, 0.5, 0.5], "car"), ([0.1, 0.1, 0.5, 0.7], "car"),
                                   ([0.5, 0.5, 0.9, 0.9], "bus")])
    assert prior == [{"label": "bus", "box": [0.5, 0.5, 0.9, 0.9], "share": pytest.approx(1 / 3)},
                     {"label": "car", "box": [0.1, 0.1, 0.5, 0.6], "share": pytest.approx(2 / 3)}]
    results = [{"prediction": {}, "target": {"boxes": [[10, 10, 50, 60]], "labels": ["car"]}},   # where cars usually are
               {"prediction": {}, "target": {"boxes": [[0, 0, 20, 20]], "labels": ["bus"]}}]     # nowhere near the prior
    doc = trivial.score_from_results(trivial.DETECTION, results, spec("map_50"), "map_50", 0,
                                     box_prior=prior, image_sizes=[(100, 100), (100, 100)])
    values = {p["name"]: p["metrics"][0]["value"] for p in doc["predictors"]}
    assert values["no_boxes"] == 0.0 and values["prior_boxes"] == pytest.approx(0.5)  # car found, bus missed
    assert doc["floor"] == {"metric": "map_50", "value": pytest.approx(0.5), "predictor": "prior_boxes",
                            "higher_is_better": True}
    alone = trivial.score_from_results(trivial.DETECTION, results, spec("map_50"), "map_50", 0)
    assert [p["name"] for p in alone["predictors"]] == ["no_boxes"]  # no training prior: no_boxes only


def test_the_probe_asks_a_detector_for_map_50():
    from mlloop.runtime.probe import level_for

    assert level_for("map_50", None) == (0.8, True) and level_for("map_50", 0.5) == (0.5, True)
