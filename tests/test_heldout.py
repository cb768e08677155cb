"""The held-out test split: drawn by the rules' strategy, never read by training or per-version
evaluation (the runtime refuses and records), and `mlloop check` calls a touch a problem."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from factory import BB_RULES, PT_RULES
from mlloop.cli import cli
from mlloop.errors import MlloopError
from mlloop.runtime import artifacts, data


def _records(n=60, groups=12):
    return [{"sample_id": f"s{i:03d}", "group_id": f"g{i % groups}", "category": "ab"[i % 2], "source": "x"}
            for i in range(n)]


@pytest.mark.parametrize("strategy", ["random", "stratified", "group"])
def test_split_with_test_is_disjoint_seeded_and_sized(strategy):
    train, valid, test = data.split_with_test(_records(), strategy, 0.2, 0.2, 42)
    ids = [set(r["sample_id"] for r in part) for part in (train, valid, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 60
    assert {r["split"] for r in test} == {"test"} and {r["split"] for r in valid} == {"valid"}
    if strategy == "group":  # whole groups: no group straddles test and the rest
        assert not {r["group_id"] for r in test} & {r["group_id"] for r in train + valid}
    else:
        assert (len(test), len(valid)) == (12, 12)  # valid_ratio is a share of all records
    again = data.split_with_test(_records(), strategy, 0.2, 0.2, 42)
    assert [[r["sample_id"] for r in part] for part in again] == [[r["sample_id"] for r in p] for p in (train, valid, test)]


def test_split_without_test_ratio_is_the_plain_split():
    train, valid, test = data.split_with_test(_records(), "random", 0.2, None, 42)
    plain = data.split_records(_records(), "random", 0.2, 42)
    assert test == [] and [r["sample_id"] for r in valid] == [r["sample_id"] for r in plain[1]]


def test_split_refuses_ratios_that_leave_no_training_data():
    with pytest.raises(data.PipelineError, match=r"^valid_ratio 0.5 \+ test_ratio 0.5 leave no training data"):
        data.split_with_test(_records(), "random", 0.5, 0.5, 42)


def test_test_leakage_is_found():
    train, valid = [{"sample_id": "a", "hash": "h1"}], [{"sample_id": "b", "hash": "h2"}]
    found = data.test_leakage_findings(train, valid, [{"sample_id": "c", "hash": "h1"}], group_key=None)
    assert [p.message for p in found.problems] == ["1 content hash(s) in both train and test (e.g. 'h1')"]


def test_read_index_refuses_the_test_split_outside_the_report(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test.jsonl").write_text('{"id": "t1"}\n', encoding="utf-8")
    with pytest.raises(MlloopError, match=r"^the test split is held out: training, the smoke test and per-version "):
        artifacts.read_index(tmp_path, "test")
    assert "test" not in artifacts.splits_read()
    with artifacts.held_out_access():
        assert artifacts.read_index(tmp_path, "test") == [{"id": "t1"}]
    assert "test" in artifacts.splits_read()
    with pytest.raises(MlloopError):  # the permission ends with the block
        artifacts.read_index(tmp_path, "test")


# ---- mlloop check ---------------------------------------------------------------------------------

def _with_test_split(factory, test_ratio=0.2):
    bb = copy.deepcopy(BB_RULES)
    bb["dataset_config"]["test_ratio"] = test_ratio
    factory.complete(versions=2)
    factory.rules(bb, PT_RULES)
    base = f"dataset/prepdata/{factory.dataset_id}"
    lines = [json.dumps({"id": f"t{i}", "image_path": f"image/t{i}.png", "label": "cat", "source": "src_a"})
             for i in range(3)]
    for i in range(3):
        factory.write(f"{base}/test/image/t{i}.png", b"\x89PNG fake")
    factory.write(f"{base}/test/test.jsonl", "\n".join(lines) + "\n")
    stats = factory.read_json(f"{base}/stats.json")
    stats["counts"]["test"] = 3
    stats["test_ratio"] = test_ratio
    factory.write_json(f"{base}/stats.json", stats)
    return factory


def check(root, *args):
    result = CliRunner().invoke(cli, ["check", *args, "--json", "--project", str(root)])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def test_check_accepts_an_untouched_test_split(factory):
    _with_test_split(factory)
    code, payload = check(factory.root, "prepdata")
    assert code == 0, payload["problems"]
    code, payload = check(factory.root, "v001")
    assert code == 0, payload["problems"]


def test_check_refuses_a_version_whose_training_read_test(factory):
    _with_test_split(factory)
    spec = factory.read_json("Models/Artifacts/v002/spec.json")
    spec["splits_read"] = ["test", "train", "valid"]
    factory.write_json("Models/Artifacts/v002/spec.json", spec)
    code, payload = check(factory.root, "v002")
    assert code == 1
    assert [(p["code"], p["path"], p["message"]) for p in payload["problems"] if p["code"].startswith("heldout")] == [
        ("heldout.touched", "Models/Artifacts/v002/spec.json",
         'its training run read the held-out test split (splits_read ["test", "train", "valid"]); only `mlloop report` '
         "may read test/: retrain or re-evaluate v002 on train and valid only")]


def test_check_refuses_an_evaluation_that_scored_test_ids(factory):
    _with_test_split(factory)
    path = factory.root / "Models/Artifacts/v001/eval_samples.jsonl"
    path.write_text(path.read_text(encoding="utf-8") + json.dumps({"id": "t1", "prediction": "cat", "target": "cat"}) + "\n",
                    encoding="utf-8")
    code, payload = check(factory.root, "all")
    assert code == 1
    assert ("heldout.touched", "Models/Artifacts/v001/eval_samples.jsonl",
            "1 scored id(s) are in the held-out test split (e.g. 't1'); evaluate v001 with 03_eval.py, which scores "
            "the validation split only") in [(p["code"], p["path"], p["message"]) for p in payload["problems"]]


def test_check_wants_test_exactly_when_the_rules_ask(factory):
    _with_test_split(factory)
    factory.rules(BB_RULES, PT_RULES)  # test_ratio gone, test/ still there
    code, payload = check(factory.root, "prepdata")
    assert code == 1
    assert {p["code"] for p in payload["problems"]} >= {"prepdata.test_unasked", "prepdata.test_ratio"}


def test_rules_refuse_valid_plus_test_ratio_of_one(factory):
    bb = copy.deepcopy(BB_RULES)
    bb["dataset_config"]["test_ratio"] = 0.8
    factory.rules(bb, PT_RULES)
    code, payload = check(factory.root, "rules")
    assert code == 1
    assert [p["message"] for p in payload["problems"]] == [
        "valid_ratio 0.2 + test_ratio 0.8 leave no training data; their sum must be below 1"]
