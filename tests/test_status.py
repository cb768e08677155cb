"""`mlloop status`: the phase, step and next command at every point of the loop, from disk only."""

import copy
import json

import pytest
from click.testing import CliRunner

from factory import ACTION_EXTRACT, BB_RULES, PT_RULES, SMOKE_REPORT, fake_checkpoint
from mlloop.cli import cli
from mlloop.final_report import build_report
from mlloop.formats.final_analysis import PLACEHOLDER as ANALYSIS_PLACEHOLDER
from mlloop.state import loop_status

LOCKED = "dataset_id: v1 (locked by Models/Artifacts/baseline/spec.json)"


def status(factory):
    return loop_status(factory.project)


def cli_status(factory, *args):
    return CliRunner().invoke(cli, ["status", "--project", str(factory.root), *args])


# ---- build-baseline -----------------------------------------------------------------------

def test_empty_project_is_build_baseline_step_0(factory):
    result = cli_status(factory)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "phase: build-baseline, Step 0 (profile the raw data)",
        "dataset_id: - (not set yet)",
        "next: put each data source in its own folder under dataset/rawdata/, then `mlloop profile`",
        "missing: dataset/rawdata/<source>/ (no source folder yet)",
    ]


def test_raw_data_without_profiling_asks_for_mlloop_profile(factory):
    factory.rules()
    factory.write("dataset/rawdata/src_a/x.png", b"x")
    assert status(factory).lines() == [
        "phase: build-baseline, Step 0 (profile the raw data)",
        "dataset_id: v1 (from the rules)",
        "next: mlloop profile",
        "  then complete dataset/rawdata/profiling.md (one section per source)",
        "missing: dataset/rawdata/profiling.md",
    ]


def test_incomplete_profiling_lists_the_gaps_and_a_failed_load_test(factory):
    factory.rules().rawdata(sources=("src_a", "src_b"))
    text = (factory.root / "dataset/rawdata/profiling.md").read_text()
    text = text.replace("- load_test: PASS (10/10 samples, seed 42)", "- load_test: FAIL (3/10 decode)", 1)
    text = text.replace("label: one of cat, dog, fox.", "TODO", 1)
    text = text.replace("## Source: src_b", "## Source: other")
    factory.write("dataset/rawdata/profiling.md", text)
    st = status(factory)
    assert (st.phase, st.step) == ("build-baseline", 0)
    assert st.next_command == "complete dataset/rawdata/profiling.md"
    # The problems are `mlloop check profiling`'s (an unnamed section is its warning, not status's).
    assert st.missing == []
    assert [p.line() for p in st.problems] == [
        "dataset/rawdata/profiling.md: 'Source: src_a' → 'Label schema' is empty or placeholder text",
        "dataset/rawdata/profiling.md: the load test of source 'src_a' FAILED (FAIL (3/10 decode)); fix the extraction "
        "rules and re-run Step 0",
        "dataset/rawdata/profiling.md: no 'Source: src_b' section for dataset/rawdata/src_b/; every source folder needs one"]


def test_step_1_pipeline_script_then_prepdata(factory):
    factory.rules().rawdata()
    st = status(factory)
    assert (st.phase, st.step, st.next_command) == ("build-baseline", 1, "write 01_data_pipeline.py")
    assert st.missing == ["01_data_pipeline.py"]
    factory.prepdata()
    (factory.root / "dataset/prepdata/v1/stats.json").unlink()
    (factory.root / "dataset/prepdata/v1/valid/valid.jsonl").unlink()
    st = status(factory)
    assert (st.step, st.next_command) == (1, "python 01_data_pipeline.py")
    assert st.missing == ["dataset/prepdata/v1/stats.json", "dataset/prepdata/v1/valid/valid.jsonl"]


def test_step_1_needs_a_dataset_id(factory):
    bb = copy.deepcopy(BB_RULES)
    del bb["dataset_config"]["dataset_id"]
    pt = copy.deepcopy(PT_RULES)
    del pt["dataset_config"]
    factory.rules(bb, pt).rawdata()
    st = status(factory)
    assert st.step == 1
    assert st.next_command == ("ask the user to set dataset_config.dataset_id in "
                               ".claude/skills/build-baseline/user_defined_rules.json")


def test_failed_pipeline_tests_are_a_problem(factory):
    factory.rules().rawdata().prepdata()
    factory.write("dataset/prepdata/v1/_tests/pipeline_test_report.md", "# Pipeline test report\n- overall_result: FAIL\n")
    st = status(factory)
    assert (st.step, st.next_command) == (1, "python 01_data_pipeline.py")
    assert [p.line() for p in st.problems] == [
        "dataset/prepdata/v1/_tests/pipeline_test_report.md: the pipeline test report says FAIL; fix 01_data_pipeline.py "
        "and re-run it"]


def test_step_2_baseline_script_then_smoke_run(factory):
    factory.rules().rawdata().prepdata()
    st = status(factory)
    assert (st.step, st.next_command, st.missing) == (2, "write 02_train_baseline.py", ["02_train_baseline.py"])
    factory.write("02_train_baseline.py", "x = 1\n")
    st = status(factory)
    assert (st.step, st.next_command) == (2, "python 02_train_baseline.py")
    assert st.missing == ["Models/Artifacts/baseline/best.ckpt", "Models/Artifacts/baseline/last.ckpt",
                          "Models/Artifacts/baseline/spec.json",
                          "Models/Artifacts/baseline/logs/version_N/metrics.csv",
                          "Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md"]


def test_failed_smoke_test_stays_at_step_2(factory):
    factory.build_baseline_done()
    factory.write("Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md",
                  SMOKE_REPORT.replace("overall_result: PASS", "overall_result: FAIL"))
    assert status(factory).lines() == [
        "phase: build-baseline, Step 2 (baseline smoke test)",
        LOCKED,
        "next: python 02_train_baseline.py",
        "  after fixing what the smoke report says failed",
        "problem: Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md: the smoke test FAILED "
        "(overall_result: FAIL); fix 02_train_baseline.py and re-run it",
    ]


def test_step_3_final_check_blocks_hand_over_on_a_dataset_id_mismatch(factory):
    factory.build_baseline_done()
    bb, pt = copy.deepcopy(BB_RULES), copy.deepcopy(PT_RULES)
    bb["dataset_config"]["dataset_id"] = pt["dataset_config"]["dataset_id"] = "v2"
    factory.rules(bb, pt)
    assert status(factory).lines() == [
        "phase: build-baseline, Step 3 (final check and hand-over)",
        LOCKED,
        "next: mlloop check",
        "  fix the problems below; build-baseline hands over when the check is ok",
        "problem: .claude/skills/progressive-training/user_defined_rules.json::$.dataset_config.dataset_id: "
        "the rules say dataset_id 'v2', but the loop is locked to 'v1' (Models/Artifacts/baseline/spec.json); "
        "set it back to 'v1'",
    ]


def test_completed_build_baseline_hands_over_to_step_0(factory):
    factory.build_baseline_done()
    result = cli_status(factory)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "phase: progressive-training, Step 0 (initialise the loop)",
        LOCKED,
        "cur: none yet (max_versions 3); next version's parent: baseline (Step 0: v001 starts from the baseline)",
        "next: mlloop new-version",
        "  build-baseline is complete (dataset_id v1); this copies 02_train_baseline.py to 02_train_v001.py",
        "missing: 02_train_v001.py",
    ]


# ---- progressive-training -----------------------------------------------------------------

def test_step_1_train_the_authored_version_and_a_partial_run(factory):
    factory.build_baseline_done().version(1, "authored")
    st = status(factory)
    assert (st.phase, st.step, st.cur, st.next_command) == ("progressive-training", 1, "v001", "python 02_train_v001.py")
    assert st.next_parent is None
    assert st.next_parent_note == "branch_from: best; no version has an evaluated accuracy yet"
    factory.write("Models/Artifacts/v001/best.ckpt", b"partial")
    st = status(factory)
    assert (st.step, st.next_command) == (1, "python 02_train_v001.py")
    assert st.next_step == "a partial run: the runtime moves the old folder to Models/Artifacts/.trash/ and trains afresh"
    assert st.missing == ["Models/Artifacts/v001/last.ckpt", "Models/Artifacts/v001/spec.json",
                          "Models/Artifacts/v001/logs/version_N/metrics.csv"]


def test_step_2_evaluate_then_stale_and_tampered_scores(factory):
    factory.build_baseline_done().version(1, "trained")
    st = status(factory)
    assert (st.step, st.next_command) == (2, "python 03_eval.py --version v001")
    assert st.missing == [f"Models/Artifacts/v001/{n}" for n in
                          ("eval_score.json", "infer_samples", "eval_samples.jsonl", "trivial_baselines.json")]
    factory.version(1, "evaluated")
    factory.write("Models/Artifacts/v001/best.ckpt", fake_checkpoint({"epoch": 2}))  # retrained
    st = status(factory)
    assert (st.step, st.next_command) == (2, "python 03_eval.py --version v001")
    assert st.next_step == "the score is stale: best.ckpt changed since this score was computed"
    factory.version(1, "evaluated")
    doc = factory.read_json("Models/Artifacts/v001/eval_score.json")
    doc["metrics"][1]["value"] = 0.99
    factory.write_json("Models/Artifacts/v001/eval_score.json", doc)
    st = status(factory)
    assert st.next_step.startswith("the score is tampered: eval_score.json was edited after 03_eval.py wrote it")


def test_step_2_without_03_eval_asks_for_it(factory):
    factory.build_baseline_done().version(1, "trained")
    (factory.root / "03_eval.py").unlink()
    st = status(factory)
    assert (st.step, st.next_command) == (2, "write 03_eval.py")
    assert st.missing[0] == "03_eval.py"


def test_step_3_analyse_then_fill_the_skeleton(factory):
    factory.build_baseline_done().version(1, "evaluated")
    st = status(factory)
    assert (st.step, st.next_command) == (3, "mlloop analyze v001")
    assert CliRunner().invoke(cli, ["analyze", "v001", "--project", str(factory.root)]).exit_code == 0
    st = status(factory)
    assert (st.step, st.next_command) == (3, "fill Models/Artifacts/v001/result-analysis.md")
    assert [p.line() for p in st.problems] == [
        f"Models/Artifacts/v001/result-analysis.md: the section {s!r} is empty or placeholder text; write it"
        for s in ("Summary", "Evidence", "Hypotheses", "Next focus candidates")]


def test_step_4_action_missing_then_invalid(factory):
    factory.build_baseline_done().version(1, "analysed")
    st = status(factory)
    assert (st.step, st.next_command) == (4, "write Models/Artifacts/v001/action-extract.md")
    factory.write("Models/Artifacts/v001/action-extract.md",
                  ACTION_EXTRACT.format(vid="v001").replace("- Risk: low; doubles training time", "- Risk: TBD"))
    st = status(factory)
    assert (st.step, st.next_command) == (4, "fix Models/Artifacts/v001/action-extract.md")
    assert [p.line() for p in st.problems] == [
        "Models/Artifacts/v001/action-extract.md: the Selected Action's 'Risk' is empty or placeholder text"]


def test_step_6_names_the_parent_by_branch_from(factory):
    factory.build_baseline_done().version(1, "action", accuracy=0.8).version(2, "action", accuracy=0.7)
    assert status(factory).lines() == [
        "phase: progressive-training, Step 6 (author the next version)",
        LOCKED,
        "cur: v002 (max_versions 3); next version's parent: v001 (branch_from: best, accuracy 0.8)",
        "next: mlloop new-version",
        "  Step 5: cur 2 < max_versions 3; v003 copies v001 and applies v002's Selected Action",
        "versions (accuracy):",
        "  v001   action     accuracy 0.8  floor accuracy 0.34 (majority_class): beats it",
        "  v002   action     accuracy 0.7  floor accuracy 0.34 (majority_class): beats it",
    ]
    pt = copy.deepcopy(PT_RULES)
    pt["loop_config"]["branch_from"] = "previous"
    factory.rules(pt=pt)
    st = status(factory)
    assert (st.next_parent, st.next_parent_note) == ("v002", "branch_from: previous")


@pytest.mark.slow
def test_step_7_report_then_fill_then_done(factory):
    factory.complete(versions=3)
    st = status(factory)
    assert (st.step, st.next_command, st.next_step) == (
        7, "mlloop report", "Step 5: cur 3 >= max_versions 3; the loop is over")
    result = build_report(factory.project)
    st = status(factory)
    analysis = f"{result.path}/final-analysis.md"
    assert (st.step, st.next_command, st.report) == (7, f"fill the agent section of {analysis}", result.path)
    path = factory.root / analysis
    path.write_text(path.read_text().replace(ANALYSIS_PLACEHOLDER, "v003 ranked first because it trained longer."))
    lines = status(factory).lines()
    assert lines[:4] == [
        "phase: done",
        LOCKED,
        # the factory's eval_samples.jsonl do not give its scores: no noise check, and the note says so
        "cur: v003 (max_versions 3); next version's parent: v003 (branch_from: best, accuracy 0.8; not compared "
        "with v001, v002: Models/Artifacts/v001/eval_samples.jsonl gives accuracy 1 but its eval_score.json says "
        "0.6; they come from different evaluations: re-run `python 03_eval.py --version v001`.)",
        "next: nothing: the loop is complete",
    ]
    assert lines[4] == (f"  the report is {result.path}/; to go on, raise loop_config.max_versions "
                        "and run `mlloop new-version`")
    assert status(factory).to_dict()["phase"] == "done"


@pytest.mark.slow
def test_a_report_that_predates_the_last_version_does_not_count(factory):
    factory.complete(versions=2)
    build_report(factory.project)
    factory.version(3, "action")
    assert (status(factory).step, status(factory).next_command) == (7, "mlloop report")


@pytest.mark.slow
def test_the_last_version_still_gets_analysis_and_action(factory):
    factory.complete(versions=2).version(3, "evaluated")
    assert (status(factory).step, status(factory).next_command) == (3, "mlloop analyze v003")


# ---- floor, too few steps, problems -------------------------------------------------------

def test_all_versions_at_the_trivial_level_are_flagged(factory):
    factory.build_baseline_done()
    for n in (1, 2, 3):
        factory.version(n, "action", accuracy=0.34, floor=0.34)
    st = status(factory)
    assert [w.line() for w in st.warnings] == [
        "no version beats its trivial baseline: every score is at the level of a constant predictor, "
        "so any ranking ranks failures"] + [
        f"Models/Artifacts/v00{n}/trivial_baselines.json: v00{n} does not beat the trivial baseline: "
        "accuracy 0.34 vs majority_class 0.34" for n in (1, 2, 3)]
    assert st.lines()[-1] == "  v003   action     accuracy 0.34  floor accuracy 0.34 (majority_class): DOES NOT BEAT IT"
    assert [v["beats_floor"] for v in st.to_dict()["versions"]] == [False, False, False]


def test_one_version_above_the_floor_clears_the_global_warning(factory):
    factory.build_baseline_done().version(1, "action", accuracy=0.34, floor=0.34).version(2, "action", accuracy=0.5)
    codes = [w.code for w in status(factory).warnings]
    assert codes == ["status.floor"]


def test_too_few_steps_is_reported_with_the_numbers(factory):
    factory.build_baseline_done().version(1, "evaluated")
    spec = factory.read_json("Models/Artifacts/v001/spec.json")
    spec["steps"] = {"per_epoch": 11, "total": 33, "min_steps_per_epoch": 10, "min_total_steps": 200,
                     "too_few": True, "warning": "33 optimizer steps in total is below min_total_steps=200"}
    factory.write_json("Models/Artifacts/v001/spec.json", spec)
    st = status(factory)
    assert [w.line() for w in st.warnings] == [
        "Models/Artifacts/v001/spec.json: 33 optimizer steps in total is below min_total_steps=200"]
    assert st.to_dict()["versions"][0]["too_few_steps"] == "33 optimizer steps in total is below min_total_steps=200"
    assert st.lines()[-1].endswith("too few steps")


def test_orphan_folder_and_unevaluated_earlier_version(factory):
    factory.build_baseline_done().version(1, "trained").version(2, "action")
    (factory.root / "Models/Artifacts/v003").mkdir()
    st = status(factory)
    assert [p.line() for p in st.problems] == [
        "Models/Artifacts/v003: the folder exists but 02_train_v003.py does not; move the folder aside "
        "(new-version will not overwrite it)"]
    assert [w.line() for w in st.warnings] == [
        "Models/Artifacts/v001: v001 was never evaluated; `mlloop report` evaluates it if it has best.ckpt"]


def test_json_is_one_document_and_the_tree_is_unchanged(factory):
    factory.complete(versions=2)
    before = factory.snapshot()
    result = cli_status(factory, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["phase"] == "progressive-training" and doc["step"] == 6 and doc["cur"] == "v002"
    assert doc["next_command"] == "mlloop new-version" and doc["dataset_id"] == "v1"
    assert [v["version"] for v in doc["versions"]] == ["v001", "v002"]
    assert factory.snapshot() == before


def test_long_loops_show_the_last_versions_only(factory):
    pt = copy.deepcopy(PT_RULES)
    pt["loop_config"]["max_versions"] = 20
    factory.build_baseline_done().rules(pt=pt)
    for n in range(1, 16):
        factory.version(n, "action", accuracy=0.5 + n / 100)
    lines = status(factory).lines()
    assert "  … 3 earlier versions (`mlloop status --json` lists all)" in lines
    assert sum(1 for line in lines if line.startswith("  v0")) == 12


def test_broken_files_never_break_the_status(factory):
    """It runs in the SessionStart hook: bad files are listed, never a traceback."""
    factory.complete(versions=2)
    factory.write("Models/Artifacts/v001/eval_score.json", "[1, 2]")
    factory.write("Models/Artifacts/v001/spec.json", '{"steps": NaN}')
    factory.write("Models/Artifacts/v002/trivial_baselines.json", "{")
    factory.write("Models/Artifacts/v002/result-analysis.md", b"\xff\xfe\x00bad")
    factory.write("Models/Report/2026-01-01_00-00/leaderboard.csv", b"\xff\x00")
    factory.write(".claude/skills/progressive-training/user_defined_rules.json", '{"seed": 1, "seed": 2}')
    result = cli_status(factory, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # v002's trivial_baselines.json changed after 03_eval.py signed it: re-evaluate (Step 2).
    assert doc["step"] == 2 and doc["cur"] == "v002"
    assert "trivial_baselines.json was edited" in json.dumps(doc)
    codes = {p["code"] for p in doc["problems"]}
    assert {"json.duplicate_key", "eval.not_object", "json.invalid"} <= codes


def test_final_check_uses_the_checks_engine_and_ignores_its_crashes(factory, monkeypatch):
    from mlloop.errors import Findings

    factory.build_baseline_done()
    calls = []

    def fake_run_check(project, target):
        calls.append(target)
        found = Findings()
        if target == "baseline":
            found.problem("baseline.ckpt", "Models/Artifacts/baseline/best.ckpt", "not a checkpoint")
        return found

    monkeypatch.setattr("mlloop.checks.run_check", fake_run_check)
    st = status(factory)
    # Each build-baseline step's check, in order: status stands on the first that finds problems.
    assert calls == ["profiling", "prepdata", "baseline"]
    assert (st.phase, st.step, st.next_command) == ("build-baseline", 3, "mlloop check")
    assert [p.line() for p in st.problems] == ["Models/Artifacts/baseline/best.ckpt: not a checkpoint"]

    def crashing_run_check(project, target):
        found = Findings()
        if target == "baseline":
            found.problem("check.internal", "", "internal error while checking baseline: KeyError")
        return found

    monkeypatch.setattr("mlloop.checks.run_check", crashing_run_check)
    st = status(factory)
    assert (st.phase, st.step) == ("progressive-training", 0)
    assert [w.line() for w in st.warnings] == ["internal error while checking baseline: KeyError"]

    monkeypatch.setattr("mlloop.checks.run_check", lambda project, target: 1 / 0)
    assert (status(factory).phase, status(factory).step) == ("progressive-training", 0)
