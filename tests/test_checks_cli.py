"""`mlloop check` from the command line: targets, output shape, exit codes, what is a warning
and what a problem, and the stage semantics (an unstarted step is fine, a half-finished one not)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from factory import PT_RULES, build_report
from mlloop.checks import TARGETS, run_check
from mlloop.cli import cli


def check(root, *args):
    result = CliRunner().invoke(cli, ["check", *args, "--project", str(root)])
    assert "Traceback" not in result.output
    return result


def check_json(root, *args):
    result = check(root, *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def codes(payload, kind="problems"):
    return [p["code"] for p in payload[kind]]


# ---- a valid project passes every target ------------------------------------------------------

@pytest.mark.slow
def test_complete_project_passes_every_target(factory):
    factory.complete(versions=2)
    build_report(factory)
    before = factory.snapshot()
    for target in ("all", "rules", "profiling", "prepdata", "baseline", "v001", "v002", "report"):
        code, payload = check_json(factory.root, target)
        assert code == 0, (target, payload["problems"])
        assert payload == {"ok": True, "problems": [], "warnings": [], "target": target}
    result = check(factory.root)
    assert result.exit_code == 0 and result.output.strip().endswith("check all: ok")
    assert factory.snapshot() == before


def test_json_shape_of_problems_and_warnings(factory):
    factory.complete(versions=1)
    (factory.root / "Models/Artifacts/v001.bak").mkdir()
    factory.write("Models/Artifacts/v001/result-analysis.md", "# nothing\n")
    code, payload = check_json(factory.root)
    assert code == 1
    assert set(payload) == {"ok", "problems", "warnings", "target"} and payload["ok"] is False
    for item in payload["problems"] + payload["warnings"]:
        assert {"code", "path", "message"} <= set(item) <= {"code", "path", "message", "json_path"}
        assert all(isinstance(item[k], str) for k in item)
        assert len(item["code"].split(".")) == 2 and item["code"] == item["code"].lower()
    assert "versions.stray" in codes(payload, "warnings")
    assert codes(payload).count("analysis.missing_section") == 5


def test_text_output_is_one_line_per_problem(factory):
    factory.complete(versions=1)
    factory.write("Models/Artifacts/v001/eval_score.json", '{"a": NaN, "a": 1}')
    result = check(factory.root, "v001")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert "problem: Models/Artifacts/v001/eval_score.json::$.a: NaN is not a finite number" in lines[0]
    assert lines[-1] == f"{len(lines) - 1} problem(s) found."


# ---- targets ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, hint", [("V001", "Did you mean 'v001'"), ("v1", "Did you mean 'v001'"),
                                          ("prepdta", "Did you mean 'prepdata'"), ("everything", "")])
def test_unknown_target_is_a_usage_error(factory, target, hint):
    factory.complete(versions=1)
    result = check(factory.root, target)
    assert result.exit_code == 2
    assert f"unknown check target {target!r}; valid targets: {', '.join(TARGETS)}, or a version id like v001." in result.output
    assert hint in result.output
    code, payload = check_json(factory.root, target)
    assert code == 2 and payload["ok"] is False and "unknown check target" in payload["error"]


def test_named_targets_require_their_artifacts(factory):
    factory.root.mkdir(exist_ok=True)
    assert check_json(factory.root)[0] == 0  # nothing started: nothing wrong
    expected = {"profiling": ("profiling.missing", "dataset/rawdata/profiling.md"),
                "prepdata": ("prepdata.dataset_id", "dataset/prepdata"),
                "baseline": ("baseline.missing", "Models/Artifacts/baseline"),
                "report": ("report.missing", "Models/Report"),
                "v001": ("versions.unknown", "Models/Artifacts/v001")}
    for target, (code_, path) in expected.items():
        code, payload = check_json(factory.root, target)
        assert code == 1 and [(p["code"], p["path"]) for p in payload["problems"]] == [(code_, path)], target
    factory.rules()
    code, payload = check_json(factory.root, "prepdata")
    assert [(p["code"], p["path"]) for p in payload["problems"]] == [("prepdata.missing", "dataset/prepdata/v1")]


def test_fresh_init_project_passes(tmp_path):
    root = tmp_path / "fresh"
    root.mkdir()
    init = CliRunner().invoke(cli, ["init", "--project", str(root)])
    assert init.exit_code == 0, init.output
    for target in ("all", "rules"):
        code, payload = check_json(root, target)
        assert code == 0, payload


def test_rules_problems_belong_to_all_and_rules(factory):
    factory.complete(versions=1)
    pt = json.loads(json.dumps(PT_RULES))
    pt["loop_config"]["max_versions"] = 0
    factory.rules(pt=pt)
    for target in ("all", "rules"):
        assert "rules.schema" in codes(check_json(factory.root, target)[1])
    code, payload = check_json(factory.root, "v001")
    assert code == 0 and codes(payload, "warnings") == ["rules.invalid"]


# ---- warnings are not problems ------------------------------------------------------------------

def _warnings_only(root, target="all"):
    code, payload = check_json(root, target)
    assert code == 0, payload["problems"]
    return payload["warnings"]


def test_below_the_floor_is_a_warning(factory):
    factory.build_baseline_done()
    factory.version(1, "action", accuracy=0.3, floor=0.34)
    (w,) = _warnings_only(factory.root)
    assert w["code"] == "eval.below_floor" and w["path"] == "Models/Artifacts/v001/eval_score.json"
    assert "v001 does not beat the trivial baseline: accuracy 0.3 vs 0.34 for majority_class" in w["message"]


def test_equal_to_the_floor_does_not_beat_it(factory):
    factory.build_baseline_done()
    factory.version(1, "evaluated", accuracy=0.34, floor=0.34)
    assert [w["code"] for w in _warnings_only(factory.root)] == ["eval.below_floor"]


def test_too_few_steps_is_a_warning(factory):
    factory.complete(versions=1)
    spec = factory.read_json("Models/Artifacts/v001/spec.json")
    spec["steps"].update(too_few=True, warning="4 optimizer steps in total is below min_total_steps=200")
    factory.write_json("Models/Artifacts/v001/spec.json", spec)
    (w,) = _warnings_only(factory.root)
    assert w["code"] == "train.too_few_steps" and "below min_total_steps=200" in w["message"]


def test_score_without_provenance_is_a_warning(factory):
    factory.complete(versions=1)
    doc = factory.read_json("Models/Artifacts/v001/eval_score.json")
    for key in ("checkpoint_sha256", "eval_script_sha256", "score_sha256"):
        doc.pop(key)
    factory.write_json("Models/Artifacts/v001/eval_score.json", doc)
    (w,) = _warnings_only(factory.root)
    assert w["code"] == "eval.provenance_unknown" and "not written by 03_eval.py" in w["message"]


def test_near_miss_rules_key_is_a_warning(factory):
    factory.complete(versions=1)
    pt = json.loads(json.dumps(PT_RULES))
    pt["loop_config"]["max_version"] = 3
    factory.rules(pt=pt)
    (w,) = _warnings_only(factory.root)
    assert w["code"] == "rules.unknown_key" and "did you mean 'max_versions'" in w["message"]


def test_stray_backup_folder_is_a_warning(factory):
    factory.complete(versions=1)
    factory.write("Models/Artifacts/v001.bak/spec.json", "not even json")
    (w,) = _warnings_only(factory.root)
    assert (w["code"], w["path"]) == ("versions.stray", "Models/Artifacts/v001.bak")


def test_unwritten_top3_analysis_is_a_problem_in_the_newest_report_only(factory):
    factory.complete(versions=2)
    folder = build_report(factory)
    text = (folder / "final-analysis.md").read_text().replace("Longer training helped.", "TODO")
    (folder / "final-analysis.md").write_text(text)
    code, payload = check_json(factory.root, "report")
    assert code == 1 and codes(payload) == ["report.analysis_pending"]
    assert payload["problems"][0]["message"].startswith("the analysis of the top 3 (between the mlloop:analysis "
                                                        "markers) is not written yet")
    # a newer report supersedes it: the old one is history and is no longer checked
    newer = folder.with_name(folder.name + "_2")
    shutil.copytree(folder, newer)
    (newer / "final-analysis.md").write_text(text.replace("TODO", "Longer training helped."))
    assert _warnings_only(factory.root, "report") == []


def test_outdated_report_is_a_warning_and_tampered_one_a_problem(factory):
    factory.complete(versions=2)
    build_report(factory)
    factory.evaluation("v001", 0.65)  # re-evaluated after the report, same created_at
    code, payload = check_json(factory.root, "report")
    assert code == 1 and codes(payload) == ["report.value_mismatch"] * 3
    doc = factory.read_json("Models/Artifacts/v001/eval_score.json")
    doc["created_at"] = "2026-11-22T09:00:00+00:00"
    from mlloop.formats.eval_score import score_digest
    doc["score_sha256"] = score_digest(doc)
    factory.write_json("Models/Artifacts/v001/eval_score.json", doc)
    assert {w["code"] for w in _warnings_only(factory.root, "report")} == {"report.outdated"}


# ---- stages: unstarted is fine, half-finished is not ----------------------------------------------

@pytest.mark.parametrize("stage", ["authored", "trained", "evaluated", "analysed", "action"])
def test_each_stage_of_a_version_passes(factory, stage):
    factory.build_baseline_done()
    factory.version(1, stage)
    before = factory.snapshot()
    assert check_json(factory.root)[0] == 0
    assert check_json(factory.root, "v001")[0] == 0
    assert factory.snapshot() == before


@pytest.mark.parametrize("steps", [[], ["rules"], ["rules", "rawdata"], ["rules", "rawdata", "prepdata"],
                                   ["rules", "rawdata", "prepdata", "baseline"]])
def test_each_step_of_build_baseline_passes(factory, steps):
    factory.root.mkdir(exist_ok=True)
    for step in steps:
        getattr(factory, step)()
    assert check_json(factory.root)[0] == 0


def test_half_finished_evaluation_is_a_problem(factory):
    factory.build_baseline_done()
    factory.version(1, "trained")
    factory.write("Models/Artifacts/v001/eval_score.json", (factory.root / "Models/Artifacts/baseline/spec.json").read_text())
    code, payload = check_json(factory.root, "v001")
    assert code == 1
    missing = [p["path"] for p in payload["problems"] if p["code"] == "eval.missing"]
    assert missing == ["Models/Artifacts/v001/infer_samples", "Models/Artifacts/v001/eval_samples.jsonl",
                       "Models/Artifacts/v001/trivial_baselines.json"]


def test_a_later_artifact_requires_the_earlier_ones(factory):
    factory.build_baseline_done()
    factory.version(1, "authored")
    factory.write("Models/Artifacts/v001/action-extract.md", "## Selected Action\n- Goal: x\n")
    code, payload = check_json(factory.root, "v001")
    assert code == 1
    found = set(codes(payload))
    assert {"train.missing", "eval.missing", "analysis.missing", "action.missing_field"} <= found


def test_version_target_checks_the_chain_to_its_parent(factory):
    factory.build_baseline_done()
    factory.version(1, "evaluated")
    factory.version(2, "authored")
    code, payload = check_json(factory.root, "v002")
    assert code == 1 and [(p["code"], p["path"]) for p in payload["problems"]] == [("versions.chain", "Models/Artifacts/v001")]
    code, payload = check_json(factory.root, "v001")
    assert code == 0


def test_versions_before_a_baseline_are_a_problem(factory):
    factory.rules().rawdata().prepdata()
    factory.version(1, "authored")
    code, payload = check_json(factory.root)
    assert code == 1 and "chain.baseline" in codes(payload)


@pytest.mark.slow
def test_run_check_library_call(factory):
    factory.complete(versions=1)
    found = run_check(factory.project, "v001")
    assert found.ok and found.to_dict() == {"ok": True, "problems": [], "warnings": []}


def test_created_at_with_or_without_offset(factory):
    factory.complete(versions=1)
    from mlloop.formats.eval_score import score_digest
    for stamp in ("2026-11-21T10:00:00", "2026-11-21T10:00:00Z", "2026-11-21T10:00:00.123456+09:00"):
        doc = factory.read_json("Models/Artifacts/v001/eval_score.json")
        doc["created_at"] = stamp
        doc["score_sha256"] = score_digest(doc)
        factory.write_json("Models/Artifacts/v001/eval_score.json", doc)
        assert check_json(factory.root, "v001")[0] == 0, stamp


def test_unicode_source_names_match_across_normalisation(factory):
    import unicodedata

    factory.rules().rawdata(sources=(unicodedata.normalize("NFC", "café"),))
    text = (factory.root / "dataset/rawdata/profiling.md").read_text(encoding="utf-8")
    (factory.root / "dataset/rawdata/profiling.md").write_text(
        text.replace("## Source: café", "## Source: " + unicodedata.normalize("NFD", "café")), encoding="utf-8")
    assert check_json(factory.root, "profiling") == (0, {"ok": True, "problems": [], "warnings": [], "target": "profiling"})


def test_external_models_are_checked(factory):
    factory.complete(versions=1)
    factory.write("Models/external/glm-ocr/eval_score.json", '{"dataset_id": "v1", "metrics": []}')
    factory.write("Models/external/empty/README.md", "nothing here\n")
    code, payload = check_json(factory.root)
    assert code == 1
    assert {(p["code"], p["path"]) for p in payload["problems"]} >= {
        ("eval.missing_field", "Models/external/glm-ocr/eval_score.json"),
        ("eval.metrics", "Models/external/glm-ocr/eval_score.json")}
    assert ("external.unevaluable", "Models/external/empty") in {(w["code"], w["path"]) for w in payload["warnings"]}
