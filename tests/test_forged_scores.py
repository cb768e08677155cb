"""Issue 13, class 2, for corpus metrics: a hand-edited macro_f1 or CER in eval_score.json with a
re-signed score_sha256 is a problem (mlloop.bootstrap's vectorised value on all records), an
honest score is not, and a metric that cannot be recomputed without torch is only listed."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mlloop.cli import cli
from mlloop.runtime.metrics import compute_metrics
from mlloop.formats.eval_score import score_digest

SCORE = "Models/Artifacts/v001/eval_score.json"
PT = ".claude/skills/progressive-training/user_defined_rules.json"


def label_records(ids):
    classes = ("cat", "dog", "fox")
    return [{"id": sid, "prediction": classes[i % 3] if i % 4 else classes[(i + 1) % 3], "target": classes[i % 3],
             "loss": 0.2 + 0.1 * (i % 3)} for i, sid in enumerate(ids)]


def text_records(ids):
    targets = ("ab cd", "abc", "a b c d", "xyz")
    rows = [{"id": sid, "prediction": targets[i % 4].replace("b", "x") if i % 2 else targets[i % 4],
             "target": targets[i % 4], "loss": 0.5} for i, sid in enumerate(ids)]
    per = compute_metrics(rows, [{"name": "cer", "higher_is_better": False}]).per_sample
    return [{**r, **p} for r, p in zip(rows, per)]  # per-record rates, as 03_eval.py writes them


def check(factory):
    result = CliRunner().invoke(cli, ["check", "all", "--project", str(factory.root), "--json"])
    return result.exit_code, json.loads(result.stdout)


def forge(factory, name, value):
    doc = factory.read_json(SCORE)
    next(m for m in doc["metrics"] if m["name"] == name).update(value=value)
    doc["score_sha256"] = score_digest(doc)
    factory.write_json(SCORE, doc)


def recompute_problems(payload):
    return [(p["path"], p["message"], p.get("json_path")) for p in payload["problems"] if p["code"] == "eval.recompute"]


def test_a_resigned_forged_macro_f1_is_a_problem(factory):
    factory.complete(versions=2)
    ids = factory.sample_ids("valid")
    factory.scored("v001", label_records(ids)).scored("v002", label_records(ids))
    code, payload = check(factory)
    assert recompute_problems(payload) == [] and code == 0, payload
    honest = next(m["value"] for m in factory.read_json(SCORE)["metrics"] if m["name"] == "macro_f1")
    forge(factory, "macro_f1", 0.99)
    code, payload = check(factory)
    assert code == 1
    assert recompute_problems(payload) == [
        (SCORE, f"macro_f1 is 0.99 but eval_samples.jsonl gives {honest:.6g}; scores come from 03_eval.py only: "
                "re-run python 03_eval.py --version v001", "$.metrics[2].value")]


def test_a_resigned_forged_cer_is_a_problem_and_chrf_is_listed_unchecked(factory):
    factory.complete(versions=2)
    rules = factory.read_json(PT)
    rules["eval_config"].update(primary_metric="cer", metrics=[{"name": "loss", "higher_is_better": False},
                                                                 {"name": "cer", "higher_is_better": False},
                                                                 {"name": "chrf", "higher_is_better": True}])
    factory.write_json(PT, rules)
    ids = factory.sample_ids("valid")
    factory.scored("v001", text_records(ids)).scored("v002", text_records(ids))
    code, payload = check(factory)
    assert recompute_problems(payload) == [], payload
    assert [(w["path"], w["message"]) for w in payload["warnings"] if w["code"] == "eval.unchecked"][0] == (
        SCORE, "chrf cannot be cross-checked against eval_samples.jsonl without torch; `mlloop compare` "
               "recomputes them from the records")
    honest = next(m["value"] for m in factory.read_json(SCORE)["metrics"] if m["name"] == "cer")
    forge(factory, "cer", 0.01)
    code, payload = check(factory)
    assert code == 1
    assert recompute_problems(payload) == [
        (SCORE, f"cer is 0.01 but eval_samples.jsonl gives {honest:.6g}; scores come from 03_eval.py only: "
                "re-run python 03_eval.py --version v001", "$.metrics[1].value")]
