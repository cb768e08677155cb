"""`mlloop analyze vNNN`: the result-analysis.md skeleton, computed parts filled, the rest rejected until written."""

import json

from click.testing import CliRunner

from factory import RESULT_ANALYSIS
from mlloop import markdown as md
from mlloop.analysis import draft_analysis
from mlloop.formats import action_extract, result_analysis
from mlloop.formats.result_analysis import PLACEHOLDERS
from mlloop.cli import cli

DOC = "Models/Artifacts/{vid}/result-analysis.md"


def invoke(factory, *args):
    return CliRunner().invoke(cli, ["analyze", *args, "--project", str(factory.root)])


def text_of(factory, vid):
    return (factory.root / DOC.format(vid=vid)).read_text()


def section(text, name):
    return md.find(md.sections(text), name, prefix=True)[0].body


def test_placeholders_are_recognised_as_placeholders():
    assert all(md.is_placeholder(p) for p in PLACEHOLDERS.values())


def test_v001_skeleton_says_the_baseline_is_another_protocol(factory):
    factory.build_baseline_done().version(1, "evaluated")
    result = invoke(factory, "v001")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "wrote Models/Artifacts/v001/result-analysis.md (metric deltas vs baseline, floor, infer_samples)",
        "next: fill Summary, Evidence, Hypotheses and Next focus candidates, then `mlloop check v001`",
    ]
    deltas = section(text_of(factory, "v001"), "Metric deltas")
    assert ("vs baseline (parent): the baseline smoke run is a different protocol (subset, smoke) and has no "
            "eval_score.json, so deltas vs baseline are indicative only.") in deltas
    assert "| best val_loss | 1 | 1 |" in deltas
    assert "| accuracy (primary) | 0.6 |" in deltas
    assert "- Floor: accuracy 0.6 beats the trivial baseline majority_class (0.34) by 0.26." in deltas


def test_skeleton_fails_the_document_check_until_filled(factory):
    factory.build_baseline_done().version(1, "evaluated")
    draft_analysis(factory.project, "v001")
    text = text_of(factory, "v001")
    assert [g.message for g in result_analysis.gaps(text)] == [
        f"the section {s!r} is empty or placeholder text; write it"
        for s in ("Summary", "Evidence", "Hypotheses", "Next focus candidates")]
    filled = text
    for name, placeholder in PLACEHOLDERS.items():
        filled = filled.replace(placeholder, f"Written by the agent about {name}.")
    assert result_analysis.gaps(filled) == []


def test_deltas_against_the_parent_and_the_previous_version(factory):
    factory.build_baseline_done()
    factory.version(1, "action", accuracy=0.8).version(2, "action", accuracy=0.6)
    factory.version(3, "evaluated", accuracy=0.7, parent="v001")
    result = draft_analysis(factory.project, "v003")
    assert (result.parent, result.previous) == ("v001", "v002")
    deltas = section(text_of(factory, "v003"), "Metric deltas").splitlines()
    parent_at = deltas.index("vs v001 (parent):")
    # the factory's eval_samples.jsonl do not give these scores, so there is no interval, and it says so
    assert deltas[parent_at + 2] == (
        "No intervals: Models/Artifacts/v001/eval_samples.jsonl gives accuracy 1 but its eval_score.json says 0.8; "
        "they come from different evaluations: re-run `python 03_eval.py --version v001`. The verdicts below "
        "compare raw values only.")
    assert deltas[parent_at + 4:parent_at + 9] == [
        "| metric | v001 | v003 | delta | |", "|---|---|---|---|---|",
        "| loss | 0.7 | 0.8 | +0.1 | worse |",
        "| accuracy (primary) | 0.8 | 0.7 | -0.1 | worse |",
        "| macro_f1 | 0.72 | 0.63 | -0.09 | worse |"]
    previous_at = deltas.index("vs v002 (previous version):")
    assert deltas[previous_at + 6:previous_at + 9] == [
        "| loss | 0.9 | 0.8 | -0.1 | better |",
        "| accuracy (primary) | 0.6 | 0.7 | +0.1 | better |",
        "| macro_f1 | 0.54 | 0.63 | +0.09 | better |"]


def test_deltas_carry_their_bootstrap_interval_and_verdict(tmp_path):
    from factory import ProjectFactory
    from test_compare import records

    factory = ProjectFactory(tmp_path / "proj", n_samples=500)  # 100 validation records
    factory.build_baseline_done().version(1, "action").version(2, "evaluated")
    ids = factory.sample_ids("valid")
    factory.scored("v001", records(ids, [i % 2 == 0 for i in range(100)]))  # 50 right
    factory.scored("v002", records(ids, [i % 2 == 0 or i < 6 for i in range(100)]))  # 3 more right
    draft_analysis(factory.project, "v002")
    deltas = section(text_of(factory, "v002"), "Metric deltas").splitlines()
    at = deltas.index("vs v001 (parent and previous version):")
    assert deltas[at + 2] == ("v002 − v001 on 100 paired records (dataset_id v1); paired by record id, i.i.d. "
                              "records, seeded percentile bootstrap (2000 resamples, 95% interval of B − A), seed 42.")
    assert deltas[at + 4:at + 6] == ["| metric | v001 | v002 | delta | 95% interval | verdict |",
                                     "|---|---|---|---|---|---|"]
    accuracy = deltas[at + 7]
    # +0.03 from 3 fixed records: under the noise of 100 records, and the table says so
    assert accuracy.startswith("| accuracy (primary) | 0.5 | 0.53 | +0.03 | [+0") and accuracy.endswith(
        "| within noise |")


def test_parent_equal_to_previous_gives_one_table(factory):
    factory.build_baseline_done().version(1, "action", accuracy=0.6).version(2, "evaluated", accuracy=0.7)
    draft_analysis(factory.project, "v002")
    deltas = section(text_of(factory, "v002"), "Metric deltas")
    assert "vs v001 (parent and previous version):" in deltas
    assert "previous version):" not in deltas.replace("(parent and previous version):", "")


def test_a_metric_the_other_version_lacks(factory):
    factory.build_baseline_done().version(1, "action", accuracy=0.6)
    factory.version(2, "evaluated", metrics=[{"name": "accuracy", "value": 0.7, "higher_is_better": True},
                                             {"name": "top5_accuracy", "value": 0.9, "higher_is_better": True}])
    draft_analysis(factory.project, "v002")
    assert "| top5_accuracy | - | 0.9 | - | not measured in v001 |" in text_of(factory, "v002")


def test_trivial_level_is_flagged_in_the_skeleton(factory):
    factory.build_baseline_done().version(1, "evaluated", accuracy=0.34, floor=0.34)
    result = invoke(factory, "v001", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["beats_floor"] is False
    assert doc["warnings"] == ["v001 does not beat the trivial baseline: accuracy 0.34 vs majority_class 0.34"]
    assert ("- **Floor: v001 does not beat the trivial baseline: accuracy 0.34 vs majority_class 0.34.** The model "
            "has learned nothing a constant predictor does not know; check the steps per epoch, the learning rate "
            "and the loss/label pairing before changing the model.") in text_of(factory, "v001")
    lines = invoke(factory, "v001", "--force").stdout.splitlines()
    assert "warning: v001 does not beat the trivial baseline: accuracy 0.34 vs majority_class 0.34" in lines


def test_unknown_floor_and_too_few_steps(factory):
    factory.build_baseline_done().version(1, "evaluated")
    (factory.root / "Models/Artifacts/v001/trivial_baselines.json").unlink()
    spec = factory.read_json("Models/Artifacts/v001/spec.json")
    spec["steps"] = {"per_epoch": 2, "total": 6, "min_steps_per_epoch": 10, "min_total_steps": 200, "too_few": True}
    factory.write_json("Models/Artifacts/v001/spec.json", spec)
    result = draft_analysis(factory.project, "v001")
    text = text_of(factory, "v001")
    assert ("- Floor: unknown (no readable trivial_baselines.json); re-run `python 03_eval.py --version v001` "
            "to record the trivial baselines.") in text
    assert ("- **Too few steps**: 2 optimizer steps per epoch, 6 in total (minimum 10 per epoch, 200 in total)"
            in text)
    assert result.beats_floor is None


def test_evidence_lists_the_infer_samples_inside_a_comment(factory):
    factory.build_baseline_done().version(1, "evaluated")
    factory.write("Models/Artifacts/v001/infer_samples/0002/output.txt", "dog -- | x\n")
    draft_analysis(factory.project, "v001")
    evidence = section(text_of(factory, "v001"), "Evidence")
    assert md.is_placeholder(evidence)  # the facts are there, the evidence is still to be written
    rows = [line for line in evidence.splitlines() if line.startswith("| 000")]
    assert rows == ["| 0001 | s0000 | cat | cat | match |",
                    "| 0002 | s0003 | dog - - \\| x | cat | differs |",
                    "| 0003 | s0001 | cat | cat | match |"]


def test_refuses_to_overwrite_and_keeps_backups_with_force(factory):
    factory.build_baseline_done().version(1, "analysed")
    before = factory.snapshot()
    result = invoke(factory, "v001")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: Models/Artifacts/v001/result-analysis.md already exists; edit it, or pass --force to rewrite it "
        "(the old one is kept as result-analysis.md.bak).")
    assert factory.snapshot() == before
    original = text_of(factory, "v001")
    result = invoke(factory, "v001", "--force")
    assert result.exit_code == 0
    assert "the previous version is kept as Models/Artifacts/v001/result-analysis.md.bak" in result.stdout
    assert (factory.root / "Models/Artifacts/v001/result-analysis.md.bak").read_text() == original
    assert invoke(factory, "v001", "--force").exit_code == 0
    assert (factory.root / "Models/Artifacts/v001/result-analysis.md.bak").read_text() == original
    assert (factory.root / "Models/Artifacts/v001/result-analysis.md.bak.1").read_text() == text_of(factory, "v001")


def test_refusals(factory):
    factory.build_baseline_done().version(1, "trained")
    before = factory.snapshot()
    cases = [
        (("v001",), 1, "Error: Models/Artifacts/v001/eval_score.json does not exist: v001 is not evaluated yet; "
                       "run `python 03_eval.py --version v001` first."),
        (("v005",), 1, "Error: v005 does not exist (no 02_train_v005.py, no Models/Artifacts/v005/); "
                       "`mlloop status` lists the versions."),
        (("1",), 2, "Error: '1' is not a version id; use vNNN, e.g. v001."),
    ]
    for args, code, message in cases:
        result = invoke(factory, *args)
        assert (result.exit_code, result.stderr.splitlines()[-1]) == (code, message)
    factory.write("Models/Artifacts/v001/eval_score.json", '{"dataset_id": "v1", "metrics": [NaN]}')
    result = invoke(factory, "v001")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Models/Artifacts/v001/eval_score.json::$.metrics[0]: NaN is not a finite number; JSON allows only finite "
        "numbers (write null for a missing value)",
        "Error: Models/Artifacts/v001/eval_score.json cannot be read; re-run `python 03_eval.py --version v001`."]
    assert {k: v for k, v in factory.snapshot().items() if "eval_score" not in k} == \
        {k: v for k, v in before.items() if "eval_score" not in k}


def test_factory_documents_pass_the_readers():
    text = RESULT_ANALYSIS.format(vid="v001", acc=0.6, delta=0.1)
    assert result_analysis.gaps(text) == []
    assert action_extract.parse("## Selected Action\n- Goal: g\n- Change: c\n- Where: w\n- Expected impact: e\n"
                       "- Risk: r\n- Verification: v\n") == (
        {"Goal": "g", "Change": "c", "Where": "w", "Expected impact": "e", "Risk": "r", "Verification": "v"}, [])


def test_a_stale_score_is_warned_about(factory):
    factory.build_baseline_done().version(1, "evaluated")
    factory.write("Models/Artifacts/v001/best.ckpt", b"retrained since")
    result = draft_analysis(factory.project, "v001")
    assert result.warnings == [
        "the score is stale (best.ckpt changed since this score was computed); these deltas may not hold: run "
        "`python 03_eval.py --version v001`, then `mlloop analyze v001 --force`"]


def test_heading_names_the_parent_from_the_header_not_the_version_before(factory):
    factory.build_baseline_done()
    factory.version(1, "action", accuracy=0.8).version(2, "action", accuracy=0.6)
    factory.version(3, "evaluated", accuracy=0.7, parent="v001")
    draft_analysis(factory.project, "v003")
    assert "## Metric deltas (v001 → v003; previous v002)" in text_of(factory, "v003").splitlines()
    factory.version(4, "evaluated", accuracy=0.7, parent="v003")
    draft_analysis(factory.project, "v004")
    assert "## Metric deltas (v003 → v004)" in text_of(factory, "v004").splitlines()
