"""`mlloop report`: re-evaluation, ranking, leaderboard.csv, best artifacts, final-analysis.md, the lock."""

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from factory import PT_RULES, fake_checkpoint
from mlloop import markdown as md
from mlloop.bundle import template
from mlloop.cli import cli
from mlloop.errors import MlloopError
from mlloop.layout import Project
from mlloop.leaderboard import VERSION, Row, rank
from mlloop.lock import writer_lock
from mlloop.final_report import build_report
from mlloop.formats.final_analysis import PLACEHOLDER as ANALYSIS_PLACEHOLDER
from mlloop.formats.final_analysis import agent_section
from mlloop.rules import resolve
from mlloop.formats.eval_score import EvalScore, read_eval_score
from mlloop.scores import FRESH, provenance

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

NOW = datetime(2026, 1, 2, 3, 4)
STAMP = "2026-01-02_03-04"
TEMPLATE = template("04_final_report.py")

FAKE_EVAL = '''"""03_eval.py stand-in for the report tests: writes a fresh, valid eval_score.json for --version."""
import argparse
import json
import sys
import time
from pathlib import Path

from mlloop.formats.eval_score import score_digest
from mlloop.jsonio import sha256_file


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    root = Path.cwd()
    plan = json.loads((root / "fake_eval.json").read_text()) if (root / "fake_eval.json").exists() else {}
    acc = plan.get(args.version, 0.5)
    if acc == "fail":
        print("loading the model", file=sys.stderr)
        print("RuntimeError: size mismatch for head.weight", file=sys.stderr)
        return 1
    time.sleep(float(plan.get("sleep", 0)))
    folder = root / "Models" / "Artifacts" / args.version
    doc = {"dataset_id": "v1", "created_at": "2026-11-22T10:00:00+00:00", "num_samples": 4,
           "metrics": [{"name": "loss", "value": round(1.5 - acc, 6), "higher_is_better": False},
                       {"name": "accuracy", "value": acc, "higher_is_better": True},
                       {"name": "macro_f1", "value": round(acc * 0.9, 6), "higher_is_better": True}],
           "latency_ms": 1.0, "version_id": args.version, "seed": 42,
           "checkpoint_sha256": sha256_file(folder / "best.ckpt"),
           "eval_script_sha256": sha256_file(root / "03_eval.py")}
    doc["score_sha256"] = score_digest(doc)
    (folder / "eval_score.json").write_text(json.dumps(doc))
    # The per-sample records the score follows from (mlloop recomputes loss and accuracy from them).
    index = root / "dataset" / "prepdata" / "v1" / "valid" / "valid.jsonl"
    ids = [json.loads(line)["id"] for line in index.read_text().splitlines() if line.strip()]
    (folder / "eval_samples.jsonl").write_text("".join(json.dumps(
        {"id": i, "prediction": "cat", "target": "cat", "loss": round(1.5 - acc, 6), "accuracy": acc}) + "\\n" for i in ids))
    with open(root / "fake_eval.log", "a") as fh:
        fh.write(args.version + "\\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

EXTERNAL_EVAL = '''"""An external model's evaluation.py (test stand-in): writes eval_score.json into --output_dir."""
import argparse
import json
from pathlib import Path

parser = argparse.ArgumentParser()
for name in ("--dataset_id", "--output_dir", "--seed", "--infer_samples"):
    parser.add_argument(name, required=True)
args = parser.parse_args()
doc = {"dataset_id": args.dataset_id, "created_at": "2026-11-22T10:00:00", "num_samples": 4,
       "metrics": [{"name": "accuracy", "value": 0.65, "higher_is_better": True}], "latency_ms": 40,
       "seed": int(args.seed), "infer_samples": int(args.infer_samples)}
Path(args.output_dir, "eval_score.json").write_text(json.dumps(doc))
'''


def fake_project(factory, accuracies=(0.6, 0.8, 0.7), plan=None):
    """A finished loop whose 03_eval.py is the fake above (so every score starts fresh)."""
    factory.build_baseline_done()
    factory.write("03_eval.py", FAKE_EVAL)
    if plan is not None:
        factory.write_json("fake_eval.json", plan)
    for n, acc in enumerate(accuracies, start=1):
        factory.version(n, "action", accuracy=acc)
    return factory


def report_dirs(factory):
    root = factory.root / "Models/Report"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def csv_lines(factory, name=STAMP):
    return (factory.root / "Models/Report" / name / "leaderboard.csv").read_text().splitlines()


def analysis_text(factory, name=STAMP):
    return (factory.root / "Models/Report" / name / "final-analysis.md").read_text()


def with_metrics(factory, n, metrics, **kw):
    factory.version(n, "action", metrics=metrics, **kw)


def m(name, value, hib):
    return {"name": name, "value": value, "higher_is_better": hib}


# ---- the happy path -----------------------------------------------------------------------

def test_report_cli_builds_leaderboard_best_artifacts_and_analysis(factory):
    factory.complete(versions=3, accuracies=[0.6, 0.8, 0.7])
    result = CliRunner().invoke(cli, ["report", "--project", str(factory.root)])
    assert result.exit_code == 0, result.output
    (name,) = report_dirs(factory)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d", name)
    path = f"Models/Report/{name}"
    assert result.stdout.splitlines() == [
        f"wrote {path}/ (leaderboard.csv: 3 rows, final-analysis.md, report.html, Artifacts/v002/)",
        "best: v002 (accuracy 0.8)",
        "note: no test split (dataset_config.test_ratio), so the best score is optimistic",
        f"next: fill the section between <!-- mlloop:analysis:start --> and <!-- mlloop:analysis:end --> in "
        f"{path}/final-analysis.md (why the top 3 ranked high)",
    ]
    assert csv_lines(factory, name) == [
        "version_id,dataset_id,created_at,latency_ms,artifact_relpath,metric__loss,metric__accuracy,metric__macro_f1",
        "v002,v1,2026-11-21T10:00:00+00:00,2.5,Artifacts/v002/best.ckpt,0.7,0.8,0.72",
        "v003,v1,2026-11-21T10:00:00+00:00,2.5,../../Artifacts/v003/best.ckpt,0.8,0.7,0.63",
        "v001,v1,2026-11-21T10:00:00+00:00,2.5,../../Artifacts/v001/best.ckpt,0.9,0.6,0.54",
    ]
    assert b"\r" not in (factory.root / path / "leaderboard.csv").read_bytes()
    best = factory.root / path / "Artifacts/v002"
    for rel in ("best.ckpt", "spec.json", "additional_assets/label_map.json"):
        copied = best / rel
        assert copied.is_file() and not copied.is_symlink()
        assert copied.read_bytes() == (factory.root / "Models/Artifacts/v002" / rel).read_bytes()
    for row in csv_lines(factory, name)[1:]:  # every artifact_relpath resolves from the report folder
        assert (factory.root / path / row.split(",")[4]).resolve().is_file()
    text = analysis_text(factory, name)
    assert text.startswith(f"# Final analysis — {name}\n")
    assert md.is_placeholder(agent_section(text))
    assert "| 1 | v002 | 0.8 | 0.7 | 0.72 | accuracy 0.34 (majority_class) | yes | v001 |" in text
    assert "Ties on accuracy are broken by loss, macro_f1 (the rules' order, each in its own direction), then version_id." in text
    top = text[text.index("## Top 3"):text.index("## Next step")]
    assert [line for line in top.splitlines() if line.startswith("###")] == [
        "### 1. v002 — accuracy 0.8", "### 2. v003 — accuracy 0.7", "### 3. v001 — accuracy 0.6"]
    assert "- change: EPOCHS 1 -> 2 (goal: raise accuracy by training longer)" in top
    assert "[result-analysis.md](../../Artifacts/v002/result-analysis.md)" in top
    assert ("The Selected Action of v003 (Models/Artifacts/v003/action-extract.md) was never built: the loop ended "
            "at max_versions=3.") in text
    assert "- Change: EPOCHS 1 -> 2" in text[text.index("## Next step"):]
    assert not list((factory.root / "Models/Report").glob(".tmp*"))


def test_json_output(factory):
    factory.complete(versions=2)
    result = CliRunner().invoke(cli, ["report", "--json", "--project", str(factory.root)])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert (doc["ok"], doc["best"], doc["rows"], doc["reevaluated"], doc["none_beat_floor"]) == (True, "v002", 2, [], False)


def test_loop_stopped_early_and_missing_action(factory):
    factory.complete(versions=2)
    build_report(factory.project, now=NOW)
    assert "was never built: the loop stopped at v002, before max_versions=3." in analysis_text(factory)
    (factory.root / "Models/Artifacts/v002/action-extract.md").unlink()
    build_report(factory.project, now=NOW)
    assert "v002 has no valid action-extract.md, so no next step was recorded." in analysis_text(factory, STAMP + "_2")


# ---- ranking ------------------------------------------------------------------------------

def test_ties_are_broken_by_the_other_metrics_then_version_id(factory):
    factory.build_baseline_done()
    with_metrics(factory, 1, [m("loss", 0.5, False), m("accuracy", 0.7, True), m("macro_f1", 0.6, True)])
    with_metrics(factory, 2, [m("loss", 0.4, False), m("accuracy", 0.7, True), m("macro_f1", 0.6, True)])
    with_metrics(factory, 3, [m("loss", 0.4, False), m("accuracy", 0.7, True), m("macro_f1", 0.6, True)])
    build_report(factory.project, now=NOW)
    assert [line.split(",")[0] for line in csv_lines(factory)[1:]] == ["v002", "v003", "v001"]
    text = analysis_text(factory)
    assert "- v002 and v003 tie on accuracy = 0.7 and on every other metric; v002 is listed first by version_id." in text
    assert "- v003 and v001 tie on accuracy = 0.7; loss decides (0.4 vs 0.5)." in text


def test_missing_primary_goes_last_with_a_warning_and_empty_cells(factory):
    factory.build_baseline_done()
    factory.version(1, "action", accuracy=0.6)
    # macro_f1 1.0: what the factory's records (every prediction right) give; `check` recomputes it
    with_metrics(factory, 2, [m("loss", 0.1, False), m("macro_f1", 1.0, True)])
    factory.version(3, "action", accuracy=0.5)
    result = build_report(factory.project, now=NOW)
    assert csv_lines(factory)[1:] == [
        "v001,v1,2026-11-21T10:00:00+00:00,2.5,Artifacts/v001/best.ckpt,0.9,0.6,0.54",
        "v003,v1,2026-11-21T10:00:00+00:00,2.5,../../Artifacts/v003/best.ckpt,1.0,0.5,0.45",
        "v002,v1,2026-11-21T10:00:00+00:00,2.5,../../Artifacts/v002/best.ckpt,0.1,,1.0",
    ]
    assert result.warnings == ["no accuracy in eval_score.json for v002; ranked last."]
    assert "- no accuracy in eval_score.json for v002; ranked last." in analysis_text(factory)


def test_lower_is_better_primary_ranks_ascending(factory):
    pt = copy.deepcopy(PT_RULES)
    pt["eval_config"]["primary_metric"] = "loss"
    factory.build_baseline_done().rules(pt=pt)
    for n, acc in enumerate([0.6, 0.9, 0.7], start=1):
        factory.version(n, "action", accuracy=acc)   # loss = 1.5 - accuracy
    result = build_report(factory.project, now=NOW)
    assert [line.split(",")[0] for line in csv_lines(factory)[1:]] == ["v002", "v003", "v001"]
    assert (result.best, result.primary) == ("v002", "loss")
    assert "- primary metric: loss (lower is better)" in analysis_text(factory)


def test_duplicate_metric_names_get_numbered_columns(factory):
    factory.build_baseline_done()
    with_metrics(factory, 1, [m("accuracy", 0.6, True), m("macro_f1", 0.5, True), m("macro_f1", 0.4, True)])
    with_metrics(factory, 2, [m("accuracy", 0.7, True), m("top5_accuracy", 0.9, True)])
    build_report(factory.project, now=NOW)
    assert csv_lines(factory) == [
        "version_id,dataset_id,created_at,latency_ms,artifact_relpath,metric__accuracy,metric__top5_accuracy,"
        "metric__macro_f1,metric__macro_f1__2",
        "v002,v1,2026-11-21T10:00:00+00:00,2.5,Artifacts/v002/best.ckpt,0.7,0.9,,",
        "v001,v1,2026-11-21T10:00:00+00:00,2.5,../../Artifacts/v001/best.ckpt,0.6,,0.5,0.4",
    ]


def test_version_numbers_sort_numerically_on_a_full_tie(tmp_path):
    project = Project(tmp_path)
    rules = resolve(project)
    rows = [Row(name, VERSION, tmp_path / name, EvalScore(name, tmp_path, {}, [m("loss", 0.5, False)]))
            for name in ("v1000", "v999", "v010")]
    assert [r.name for r in rank(rows, rules).rows] == ["v010", "v999", "v1000"]


def test_external_models_are_ranked_by_folder_name(factory):
    fake_project(factory, accuracies=(0.6, 0.7))
    factory.write_json("Models/external/ref_big/eval_score.json", {
        "dataset_id": "v1", "created_at": "2026-11-22", "num_samples": 4,
        "metrics": [m("accuracy", 0.9, True)], "latency_ms": 80})
    factory.write("Models/external/ref_small/evaluation.py", EXTERNAL_EVAL)
    factory.write_json("Models/external/other_data/eval_score.json", {
        "dataset_id": "v9", "created_at": "2026-11-22", "num_samples": 4,
        "metrics": [m("accuracy", 0.99, True)], "latency_ms": 1})
    factory.write("Models/external/empty/README.md", "nothing here")
    messages = []
    result = build_report(factory.project, progress=messages.append, now=NOW)
    assert csv_lines(factory) == [  # metric columns in first-seen order over the ranked rows
        "version_id,dataset_id,created_at,latency_ms,artifact_relpath,metric__accuracy,metric__loss,metric__macro_f1",
        "ref_big,v1,2026-11-22,80,../../external/ref_big,0.9,,",
        "v002,v1,2026-11-21T10:00:00+00:00,2.5,Artifacts/v002/best.ckpt,0.7,0.8,0.63",
        "ref_small,v1,2026-11-22T10:00:00,40,../../external/ref_small,0.65,,",
        "v001,v1,2026-11-21T10:00:00+00:00,2.5,../../Artifacts/v001/best.ckpt,0.6,0.9,0.54",
    ]
    assert result.best == "v002"  # external models are references; the best is the loop's own
    assert factory.read_json("Models/external/ref_small/eval_score.json")["infer_samples"] == 3
    assert ("evaluating external model ref_small: python Models/external/ref_small/evaluation.py --dataset_id v1 "
            "--output_dir Models/external/ref_small --seed 42 --infer_samples 3") in messages
    assert result.warnings == [
        "Models/external/empty: neither eval_score.json nor evaluation.py; skipped.",
        "Models/external/other_data: scored on dataset_id 'v9', not the loop's 'v1'; left off the leaderboard.",
    ]
    assert "- external reference model (Models/external/ref_big/), not built by the loop" in analysis_text(factory)


# ---- re-evaluation ------------------------------------------------------------------------

def test_stale_version_is_re_evaluated_with_03_eval(factory):
    fake_project(factory, plan={"v002": 0.9})
    old = (factory.root / "Models/Artifacts/v002/eval_score.json").read_bytes()
    factory.write("Models/Artifacts/v002/best.ckpt", fake_checkpoint({"epoch": 5}))
    messages = []
    result = build_report(factory.project, progress=messages.append, now=NOW)
    assert (factory.root / "fake_eval.log").read_text() == "v002\n"
    assert messages[0] == ("[1/1] re-evaluating v002 (stale: best.ckpt changed since this score was computed): "
                           "python 03_eval.py --version v002")
    assert re.fullmatch(r"\[1/1\] v002 evaluated in \d+\.\d s", messages[1])
    assert result.reevaluated == [("v002", "stale: best.ckpt changed since this score was computed")]
    score = read_eval_score(factory.project, factory.root / "Models/Artifacts/v002/eval_score.json", "v002")
    assert provenance(factory.project, "v002", score)[0] == FRESH
    assert csv_lines(factory)[1].startswith("v002,v1,2026-11-22T10:00:00+00:00,1.0,Artifacts/v002/best.ckpt,")
    (kept,) = (factory.root / "Models/Artifacts/.trash").glob("v002-eval-*/eval_score.json")
    assert kept.read_bytes() == old
    assert ("- re-evaluated before ranking: v002 (stale: best.ckpt changed since this score was computed)"
            in analysis_text(factory))


def test_tampered_and_unevaluated_versions_are_evaluated_and_warned(factory):
    fake_project(factory, accuracies=(0.6, 0.7))
    doc = factory.read_json("Models/Artifacts/v001/eval_score.json")
    doc["metrics"][1]["value"] = 0.99
    factory.write_json("Models/Artifacts/v001/eval_score.json", doc)
    factory.version(3, "trained")
    result = build_report(factory.project, now=NOW)
    assert [v for v, _ in result.reevaluated] == ["v001", "v003"]
    assert result.reevaluated[1] == ("v003", "never evaluated")
    assert result.warnings == [
        "v001: tampered: eval_score.json was edited after 03_eval.py wrote it (score_sha256 does not match); "
        "re-evaluated, the old file is kept under Models/Artifacts/.trash/."]
    assert factory.read_json("Models/Artifacts/v001/eval_score.json")["metrics"][1]["value"] == 0.5


def test_changed_03_eval_re_evaluates_everything(factory):
    fake_project(factory)
    factory.write("03_eval.py", FAKE_EVAL + "\n# protocol changed\n")
    result = build_report(factory.project, now=NOW)
    assert [v for v, _ in result.reevaluated] == ["v001", "v002", "v003"]
    assert result.reevaluated[0][1] == "stale: 03_eval.py changed since this score was computed"


def test_a_failing_evaluation_stops_the_report_cleanly(factory):
    fake_project(factory, plan={"v002": "fail"})
    factory.write("Models/Artifacts/v002/best.ckpt", fake_checkpoint({"epoch": 9}))
    result = CliRunner().invoke(cli, ["report", "--project", str(factory.root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[-3:] == [
        "Error: v002: `python 03_eval.py --version v002` failed (exit 1); the report was not built. "
        "Last lines of its output:",
        "  loading the model",
        "  RuntimeError: size mismatch for head.weight",
    ]
    assert report_dirs(factory) == []


def test_stale_scores_without_03_eval_are_refused(factory):
    factory.complete(versions=2)
    factory.write("Models/Artifacts/v001/best.ckpt", fake_checkpoint({"epoch": 3}))
    (factory.root / "03_eval.py").unlink()
    with pytest.raises(MlloopError) as err:
        build_report(factory.project, now=NOW)
    assert str(err.value) == ("03_eval.py does not exist, and v001, v002 must be (re-)evaluated before ranking; "
                              "write 03_eval.py from the template, then run `mlloop report` again.")


def test_nothing_to_rank(factory):
    factory.build_baseline_done().version(1, "authored")
    with pytest.raises(MlloopError, match=r"^no version has an eval_score.json, so there is nothing to rank"):
        build_report(factory.project, now=NOW)
    assert report_dirs(factory) == []


def test_untrained_version_is_named_in_the_warnings(factory):
    factory.complete(versions=2).version(3, "authored")
    result = build_report(factory.project, now=NOW)
    assert result.warnings == ["v003: not trained (no best.ckpt) and not evaluated; it is not on the leaderboard."]


# ---- the floor ----------------------------------------------------------------------------

def test_all_versions_at_the_trivial_level_open_the_analysis_with_a_warning(factory):
    factory.build_baseline_done()
    for n in (1, 2, 3):
        factory.version(n, "action", accuracy=0.34, floor=0.34)
    result = CliRunner().invoke(cli, ["report", "--project", str(factory.root)])
    assert result.exit_code == 0
    assert "warning: no version beats its trivial baseline; the leaderboard ranks failures" in result.stdout.splitlines()
    (name,) = report_dirs(factory)
    text = analysis_text(factory, name)
    assert text.startswith("> **WARNING: no version beats its trivial baseline.** No version's score is better than "
                           "what a trivial predictor gets (e.g. majority_class: accuracy 0.34), so this leaderboard "
                           "ranks failures")
    assert "| 1 | v001 | 0.34 | 1.16 | 0.306 | accuracy 0.34 (majority_class) | **NO** | baseline |" in text


def test_a_loop_at_the_trivial_level_is_flagged_by_status_analyze_and_report(factory):
    """Issue 7's scenario: every version outputs what a constant predictor would (CER 1.0, say)."""
    from mlloop.analysis import draft_analysis
    from mlloop.state import loop_status

    factory.build_baseline_done()
    for n in (1, 2, 3):
        factory.version(n, "evaluated" if n == 3 else "action", accuracy=0.34, floor=0.34)
    st = loop_status(factory.project)
    assert st.warnings[0].code == "status.no_version_beats_floor"
    assert [v.beats_floor for v in st.versions] == [False, False, False]
    skeleton = draft_analysis(factory.project, "v003")
    assert skeleton.beats_floor is False
    assert skeleton.warnings == ["v003 does not beat the trivial baseline: accuracy 0.34 vs majority_class 0.34"]
    factory.write("Models/Artifacts/v003/action-extract.md",
                  (factory.root / "Models/Artifacts/v002/action-extract.md").read_text())
    report = build_report(factory.project, now=NOW)
    assert report.none_beat_floor is True
    text = analysis_text(factory)
    assert text.splitlines()[0].startswith("> **WARNING: no version beats its trivial baseline.**")
    assert "ranks failures" in text.splitlines()[0]
    assert text.count("| **NO** |") == 3
    assert "- v001 and v002 tie on accuracy = 0.34 and on every other metric; v001 is listed first by version_id." in text


def test_one_version_above_the_floor_means_no_opening_warning(factory):
    factory.build_baseline_done().version(1, "action", accuracy=0.34, floor=0.34).version(2, "action", accuracy=0.6)
    result = build_report(factory.project, now=NOW)
    assert result.none_beat_floor is False
    assert analysis_text(factory).startswith("# Final analysis")


# ---- safety: names, links, the lock -------------------------------------------------------

def test_name_collisions_get_a_suffix_and_nothing_is_overwritten(factory):
    factory.complete(versions=2)
    factory.write(f"Models/Report/{STAMP}/mine.txt", "keep me")
    first = build_report(factory.project, now=NOW)
    second = build_report(factory.project, now=NOW)
    assert (first.path, second.path) == (f"Models/Report/{STAMP}_2", f"Models/Report/{STAMP}_3")
    assert report_dirs(factory) == [STAMP, f"{STAMP}_2", f"{STAMP}_3"]
    assert (factory.root / f"Models/Report/{STAMP}/mine.txt").read_text() == "keep me"


def test_links_leaving_the_project_are_refused_and_inside_ones_copied_as_files(factory, tmp_path):
    factory.complete(versions=2)
    assets = factory.root / "Models/Artifacts/v002/additional_assets"
    (assets / "vocab.json").symlink_to(factory.root / "Models/Artifacts/v001/additional_assets/label_map.json")
    build_report(factory.project, now=NOW)
    copied = factory.root / f"Models/Report/{STAMP}/Artifacts/v002/additional_assets/vocab.json"
    assert copied.is_file() and not copied.is_symlink()
    outside = tmp_path / "secret.txt"
    outside.write_text("not the project's")
    (assets / "leak.txt").symlink_to(outside)
    with pytest.raises(MlloopError) as err:
        build_report(factory.project, now=NOW)
    assert str(err.value) == ("Models/Artifacts/v002/additional_assets/leak.txt is a link that leaves the project; "
                              "the report copies only files inside it. Replace the link with the file itself.")
    assert report_dirs(factory) == [STAMP]  # the failed build left nothing behind


def test_a_held_lock_times_out_with_the_holder_named(factory):
    factory.complete(versions=2)
    with writer_lock(factory.project, "test holder"):
        with pytest.raises(MlloopError) as err:
            build_report(factory.project, now=NOW, lock_timeout=0.2)
    assert str(err.value) == (f"Models/.mlloop.lock: another mlloop writer holds the lock (pid {os.getpid()}, "
                              "test holder); waited 0.2 s. Let it finish, then run `mlloop report` again.")
    assert report_dirs(factory) == []
    build_report(factory.project, now=NOW)  # released: the next writer gets it
    assert report_dirs(factory) == [STAMP]


def test_two_concurrent_reports_are_serialised(factory):
    fake_project(factory, plan={"sleep": 1.0})
    factory.write("Models/Artifacts/v001/best.ckpt", fake_checkpoint({"epoch": 7}))
    code = ("import sys, datetime; from mlloop.layout import Project; from mlloop.final_report import build_report; "
            "r = build_report(Project.at(sys.argv[1]), now=datetime.datetime(2026, 1, 2, 3, 4)); "
            "print(len(r.reevaluated))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(factory.root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # Without the lock both would have found v001 stale and evaluated it; with it, the second waits
    # and then finds the first one's fresh score.
    assert sorted(out.strip() for out, _ in outs) == ["0", "1"]
    assert (factory.root / "fake_eval.log").read_text() == "v001\n"
    assert report_dirs(factory) == [STAMP, f"{STAMP}_2"]
    assert csv_lines(factory) == csv_lines(factory, f"{STAMP}_2")
    assert len(csv_lines(factory)) == 4


# ---- 04_final_report.py -------------------------------------------------------------------

def test_template_script_builds_the_same_report(factory):
    factory.complete(versions=2)
    factory.write("04_final_report.py", TEMPLATE.read_text())
    proc = subprocess.run([sys.executable, "04_final_report.py"], cwd=factory.root, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "best: v002 (accuracy 0.7)" in proc.stdout.splitlines()
    spec = importlib.util.spec_from_file_location("final_report", factory.root / "04_final_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # no work at import
    assert len(report_dirs(factory)) == 1
    summary = module.main(["--project", str(factory.root)])
    assert (summary["best"], summary["rows"]) == ("v002", 2)
    assert len(report_dirs(factory)) == 2


def test_template_reports_a_clean_error(factory):
    factory.build_baseline_done()
    factory.write("04_final_report.py", TEMPLATE.read_text())
    proc = subprocess.run([sys.executable, "04_final_report.py"], cwd=factory.root, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["Error: no version has an eval_score.json, so there is nothing to rank; "
                                        "evaluate with `python 03_eval.py --version vNNN` first."]


def test_placeholder_constant_is_a_placeholder():
    assert md.is_placeholder(ANALYSIS_PLACEHOLDER)


# ---- with the real 03_eval.py -------------------------------------------------------------

def test_report_re_evaluates_with_the_real_03_eval(tmp_path):
    """The frozen protocol (templates/03_eval.py) on a tiny real torch model: a changed 03_eval.py
    makes the score stale, the report runs it again and ranks the fresh score."""
    import eval_fixture

    root = eval_fixture.build_project(tmp_path / "proj")
    project = Project.at(root)
    proc = subprocess.run([sys.executable, "03_eval.py", "--version", "v001"], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (root / "03_eval.py").write_text((root / "03_eval.py").read_text() + "\n# the protocol was touched\n")
    messages = []
    result = build_report(project, progress=messages.append, now=NOW)
    assert result.reevaluated == [("v001", "stale: 03_eval.py changed since this score was computed")]
    score = read_eval_score(project, root / "Models/Artifacts/v001/eval_score.json", "v001")
    assert provenance(project, "v001", score)[0] == FRESH
    header, row = (root / f"Models/Report/{STAMP}/leaderboard.csv").read_text().splitlines()
    assert header.startswith("version_id,dataset_id,created_at,latency_ms,artifact_relpath,metric__")
    assert row.startswith("v001,v1,") and ",Artifacts/v001/best.ckpt," in row
    assert (root / f"Models/Report/{STAMP}/Artifacts/v001/best.ckpt").read_bytes() == \
        (root / "Models/Artifacts/v001/best.ckpt").read_bytes()


def test_the_fast_score_reader_accepts_only_what_the_full_reader_passes(factory):
    """leaderboard's fast path must never accept a score the full reader would flag."""
    from mlloop.errors import Findings
    from mlloop.leaderboard import _clean_metrics

    factory.complete(versions=1)
    path = factory.root / "Models/Artifacts/v001/eval_score.json"
    clean = factory.read_json("Models/Artifacts/v001/eval_score.json")
    full = read_eval_score(factory.project, path, "v001", primary_metric="accuracy", dataset_id="v1")
    assert _clean_metrics(clean, "accuracy", "v1") == full.metrics

    def variant(change):
        doc = copy.deepcopy(clean)
        change(doc)
        return doc

    bad = [
        [clean],
        variant(lambda d: d.update(dataset_id="v2")),
        variant(lambda d: d.update(dataset_id="")),
        variant(lambda d: d.update(created_at="yesterday")),
        variant(lambda d: d.pop("created_at")),
        variant(lambda d: d.update(num_samples=0)),
        variant(lambda d: d.update(num_samples=True)),
        variant(lambda d: d.update(num_samples=2.0)),
        variant(lambda d: d.update(latency_ms=-1)),
        variant(lambda d: d.update(latency_ms="3")),
        variant(lambda d: d.update(latency_ms=10 ** 400)),
        variant(lambda d: d.update(metrics=[])),
        variant(lambda d: d.update(metrics={"accuracy": 0.5})),
        variant(lambda d: d["metrics"].append("accuracy")),
        variant(lambda d: d["metrics"][1].update(value=True)),
        variant(lambda d: d["metrics"][1].update(value=10 ** 400)),
        variant(lambda d: d["metrics"][1].pop("higher_is_better")),
        variant(lambda d: d["metrics"][0].update(name="")),
        variant(lambda d: d["metrics"].append(m("accuracy", 0.1, True))),
        variant(lambda d: d["metrics"].pop(1)),
        variant(lambda d: d.update(checkpoint_sha256="abc")),
    ]
    for doc in bad:
        assert _clean_metrics(doc, "accuracy", "v1") is None, doc
    for doc in bad[1:]:  # and the full reader indeed finds a problem in each (or refuses it)
        if doc.get("latency_ms") == 10 ** 400 or any(isinstance(x, dict) and x.get("value") == 10 ** 400
                                                    for x in doc.get("metrics", []) if isinstance(doc["metrics"], list)):
            continue  # ints beyond float range: the full reader's own business
        factory.write_json("Models/Artifacts/v001/eval_score.json", doc)
        found = Findings()
        score = read_eval_score(factory.project, path, "v001", primary_metric="accuracy", dataset_id="v1",
                                findings=found)
        assert score is None or found.problems, doc


def test_a_re_signed_forged_score_is_re_evaluated(factory):
    """Issue 13: a hand-edited value with a recomputed score_sha256 disagrees with eval_samples.jsonl."""
    from mlloop.formats.eval_score import score_digest

    fake_project(factory, accuracies=(0.6, 0.7), plan={"v001": 0.6})
    doc = factory.read_json("Models/Artifacts/v001/eval_score.json")
    doc["metrics"][1]["value"] = 0.99
    doc["score_sha256"] = score_digest(doc)
    factory.write_json("Models/Artifacts/v001/eval_score.json", doc)
    result = build_report(factory.project, now=NOW)
    assert result.reevaluated == [("v001", "tampered: eval_score.json was edited after 03_eval.py wrote it: its "
                                           "accuracy (0.99) is not what eval_samples.jsonl gives (0.6)")]
    assert factory.read_json("Models/Artifacts/v001/eval_score.json")["metrics"][1]["value"] == 0.6
    assert ",0.99," not in "\n".join(csv_lines(factory))


def test_report_folders_get_normal_permissions(factory):
    factory.complete(versions=2)
    old = os.umask(0o022)
    try:
        assert CliRunner().invoke(cli, ["report", "--project", str(factory.root)]).exit_code == 0
    finally:
        os.umask(old)
    (name,) = report_dirs(factory)
    assert (factory.root / "Models/Report" / name).stat().st_mode & 0o777 == 0o755


def test_a_later_report_supersedes_an_older_ones_problems(factory):
    """An older report is history: only the newest one is checked."""
    factory.complete(versions=2)
    runner = CliRunner()
    assert runner.invoke(cli, ["report", "--project", str(factory.root)]).exit_code == 0
    (first,) = report_dirs(factory)
    (factory.root / "Models/Report" / first / "leaderboard.csv").unlink()  # the old report is damaged
    result = runner.invoke(cli, ["check", "report", "--project", str(factory.root)])
    assert result.exit_code == 1 and "leaderboard.csv is missing" in result.output
    assert runner.invoke(cli, ["report", "--project", str(factory.root)]).exit_code == 0
    newest = max(report_dirs(factory))
    text = (factory.root / "Models/Report" / newest / "final-analysis.md").read_text()
    (factory.root / "Models/Report" / newest / "final-analysis.md").write_text(
        text.replace(ANALYSIS_PLACEHOLDER, "v002 trained longer and ranked first."))
    result = runner.invoke(cli, ["check", "report", "--project", str(factory.root), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["problems"] == []


def test_report_marks_ties_with_the_best_and_metrics_that_disagree(tmp_path):
    from factory import ProjectFactory
    from test_compare import records

    f = ProjectFactory(tmp_path / "proj", n_samples=500)  # 100 validation records
    f.complete(versions=3)
    ids = f.sample_ids("valid")
    f.scored("v001", records(ids, [i < 50 for i in range(100)]))
    f.scored("v002", records(ids, [i < 78 for i in range(100)], losses=[0.1] * 100))  # lowest loss
    f.scored("v003", records(ids, [i < 80 for i in range(100)]))
    result = build_report(f.project, now=NOW)
    assert (result.best, result.tied_with_best, result.metrics_disagree) == ("v003", ["v002"], ["loss"])
    lines = result.lines()
    at = lines.index("statistically tied with v003 on accuracy: v002 (final-analysis.md gives the intervals)")
    assert lines[at + 1] == "another winner by loss (final-analysis.md says which)"
    text = analysis_text(f)
    assert ("- **Statistically tied with v003 on accuracy** (the paired-bootstrap 95% interval of the difference "
            "includes 0): v002 (v003 − v002 = +0.02, 95% interval [+0, +0.05]). The ranking between them is within "
            "noise; prefer the simpler (earlier) one unless another metric separates them.") in text
    assert ("- **accuracy and loss disagree on the winner**: accuracy ranks v003 first, loss ranks v002 first "
            "(loss 0.1 vs 0.46; v002 − v003 95% interval [-0.464, -0.269], better).") in text
    assert "v001 (" not in text.split("Statistically tied")[1].split("\n")[0]  # v001 is beaten beyond noise
