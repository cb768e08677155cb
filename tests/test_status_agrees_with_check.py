"""`mlloop status` and `mlloop check <step>` read the same documents with the same functions, so
they never disagree: status stands on a step exactly while that step's check finds problems, and
it shows that check's problems, word for word. One case per step of both skills, with and
without a defect, including three disagreements of old (a repeated change-summary field, a
profiling section only the check accepted, a load test of 'maybe')."""

import pytest

from factory import ACTION_EXTRACT, SMOKE_REPORT, build_report
from mlloop.checks import run_check
from mlloop.formats import final_analysis
from mlloop.state import loop_status

BB, PT = "build-baseline", "progressive-training"
PROFILING = "dataset/rawdata/profiling.md"


def edit(factory, rel, old, new):
    path = factory.root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def profiling_todo(f):
    f.rules().rawdata()
    edit(f, PROFILING, "label: one of cat, dog, fox.", "TODO")


def profiling_in_other_words(f):
    # The check always accepted these headings; status used to stay on Step 0 for them.
    f.rules().rawdata()
    edit(f, PROFILING, "## Source: src_a", "## Source: `src_a/`")
    edit(f, PROFILING, "### Paths & naming rules", "### **Paths and naming rules**")


def load_test_maybe(f):
    # Status used to move on (only FAIL stopped it) while the check failed.
    f.rules().rawdata()
    edit(f, PROFILING, "- load_test: PASS (10/10 samples, seed 42)", "- load_test: maybe")


def pipeline_failed(f):
    f.rules().rawdata().prepdata()
    edit(f, "dataset/prepdata/v1/_tests/pipeline_test_report.md", "overall_result: PASS", "overall_result: FAIL")


def smoke_failed(f):
    f.build_baseline_done()
    f.write("Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md",
            SMOKE_REPORT.replace("overall_result: PASS", "overall_result: FAIL"))


def smoke_maybe(f):
    f.build_baseline_done()
    f.write("Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md",
            SMOKE_REPORT.replace("overall_result: PASS", "overall_result: maybe"))


def patch_report_incomplete(f):
    f.build_baseline_done()
    f.write("Models/Artifacts/baseline/_tests/baseline_patch_report.md", "# Baseline patch report\n- issues_found: x\n")


def header_field_twice(f):
    # The old status-side reader kept the last 'parent', the check the first.
    f.build_baseline_done().version(1, "action").version(2, "authored")
    edit(f, "02_train_v002.py", "# parent: v001\n", "# parent: v001\n# parent: baseline\n")


def header_placeholder(f):
    f.build_baseline_done().version(1, "action").version(2, "authored")
    edit(f, "02_train_v002.py", "# change: EPOCHS 1 -> 2", "# change: TODO")


def unchanged_copy(f):
    f.build_baseline_done().version(1, "action").version(2, "authored")
    f.write("02_train_v002.py", f.header("v002", "v001") + (f.root / "02_train_v001.py").read_text().split(
        "# === end change summary ===\n", 1)[1])


def trained_then_header_broken(f):
    f.build_baseline_done().version(1, "trained")
    edit(f, "02_train_v001.py", "# where: -\n", "")


def score_tampered(f):
    f.build_baseline_done().version(1, "evaluated")
    edit(f, "Models/Artifacts/v001/eval_score.json", '"value": 0.6', '"value": 0.99')


def analysis_skeleton(f):
    f.build_baseline_done().version(1, "analysed")
    edit(f, "Models/Artifacts/v001/result-analysis.md", "The head underfits: one epoch is too short.", "TODO")


def analysis_heading_suffix(f):
    # 'Metric deltas (baseline → v001)' is the section mlloop analyze writes; both accept it.
    f.build_baseline_done().version(1, "analysed")
    edit(f, "Models/Artifacts/v001/result-analysis.md", "## Metric deltas", "## Metric deltas (baseline → v001)")


def action_placeholder(f):
    f.build_baseline_done().version(1, "analysed")
    f.write("Models/Artifacts/v001/action-extract.md",
            ACTION_EXTRACT.format(vid="v001").replace("- Risk: low; doubles training time", "- Risk: TBD"))


def action_twice(f):
    f.build_baseline_done().version(1, "action")
    edit(f, "Models/Artifacts/v001/action-extract.md", "## Deferred Candidates", "## Selected Action 2\n- Goal: more\n"
         "## Deferred Candidates")


def report_done(f):
    f.complete(versions=3)
    build_report(f)


def report_pending(f):
    report_done(f)
    edit(f, "Models/Report/2026-11-21_12-00/final-analysis.md", "Longer training helped.", final_analysis.PLACEHOLDER)


def report_without_markers(f):
    report_done(f)
    edit(f, "Models/Report/2026-11-21_12-00/final-analysis.md", final_analysis.START, "")


# name: (builder, status's (phase, step), the check of that step, the codes of the problems it finds).
# The status's problems are that check's problems.
CASES = {
    "bb0 profiling with a TODO": (profiling_todo, (BB, 0), "profiling", "profiling.source_section"),
    "bb0 profiling in other words (was: status stuck on 0)": (profiling_in_other_words, (BB, 1), "profiling", ""),
    "bb0 load test 'maybe' (was: status moved on)": (load_test_maybe, (BB, 0), "profiling", "profiling.load_test"),
    "bb1 pipeline tests failed": (pipeline_failed, (BB, 1), "prepdata", "prepdata.pipeline_failed"),
    "bb1 prepdata complete": (lambda f: f.rules().rawdata().prepdata(), (BB, 2), "prepdata", ""),
    "bb2 smoke test failed": (smoke_failed, (BB, 2), "baseline", "smoke.failed"),
    "bb2 smoke result 'maybe'": (smoke_maybe, (BB, 2), "baseline", "smoke.result"),
    "bb3 final check finds an incomplete patch report": (patch_report_incomplete, (BB, 3), "baseline", "patch.field"),
    "pt0 build-baseline handed over": (lambda f: f.build_baseline_done(), (PT, 0), "baseline", ""),
    "pt1 authored": (lambda f: f.build_baseline_done().version(1, "authored"), (PT, 1), "v001", ""),
    "pt1 a change-summary field twice (was: read two ways)": (header_field_twice, (PT, 1), "v002", "script.header"),
    "pt1 a placeholder change": (header_placeholder, (PT, 1), "v002", "script.header"),
    "pt1 the parent's code unchanged": (unchanged_copy, (PT, 1), "v002", "script.unchanged"),
    "pt1 trained, then its header broken": (trained_then_header_broken, (PT, 1), "v001",
                                            "script.header spec.script_changed"),
    "pt2 trained": (lambda f: f.build_baseline_done().version(1, "trained"), (PT, 2), "v001", ""),
    "pt2 tampered score": (score_tampered, (PT, 2), "v001", "eval.recompute eval.tampered"),
    "pt3 evaluated": (lambda f: f.build_baseline_done().version(1, "evaluated"), (PT, 3), "v001", ""),
    "pt3 an analysis section left TODO": (analysis_skeleton, (PT, 3), "v001", "analysis.empty_section"),
    "pt3 a section title with a suffix": (analysis_heading_suffix, (PT, 4), "v001", ""),
    "pt4 a placeholder field": (action_placeholder, (PT, 4), "v001", "action.empty_field"),
    "pt4 two selected actions": (action_twice, (PT, 4), "v001", "action.selected"),
    "pt6 the loop goes on": (lambda f: f.complete(versions=2), (PT, 6), "v002", ""),
    "pt7 no report yet": (lambda f: f.complete(versions=3), (PT, 7), "v003", ""),
    "pt7 the agent's section pending": (report_pending, (PT, 7), "report", "report.analysis_pending"),
    "pt7 the markers removed": (report_without_markers, (PT, 7), "report", "report.analysis_pending"),
    "done": (report_done, ("done", None), "report", ""),
}


@pytest.mark.parametrize("name", list(CASES))
def test_status_shows_exactly_the_problems_of_its_steps_check(factory, name):
    build, where, target, codes = CASES[name]
    build(factory)
    st = loop_status(factory.project)
    checked = run_check(factory.project, target)
    assert (st.phase, st.step) == where, st.lines()
    # status.* problems are the status's own cross-step findings (none in these projects). Where
    # the status has moved past the step, the equality says that the step's check passes.
    shown = [p.line() for p in st.problems if not p.code.startswith("status.")]
    assert sorted(shown) == sorted(p.line() for p in checked.problems)
    assert sorted({p.code for p in checked.problems}) == codes.split()


def test_every_step_of_both_skills_is_covered():
    steps = {where for _, where, _, _ in CASES.values()}
    assert {(BB, n) for n in range(4)} | {(PT, n) for n in (0, 1, 2, 3, 4, 6, 7)} | {("done", None)} <= steps
