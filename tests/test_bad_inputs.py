"""Bad inputs: each breaks one thing in a valid project and must give its one expected problem
(code, file, message), exit 1, no traceback, and an unchanged tree."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from factory import BB_RULES, PT_RULES, build_report, fake_checkpoint
from mlloop.cli import cli
from mlloop.formats.eval_score import score_digest

V1 = "Models/Artifacts/v001"
V2 = "Models/Artifacts/v002"
PREP = "dataset/prepdata/v1"
PT = ".claude/skills/progressive-training/user_defined_rules.json"
BB = ".claude/skills/build-baseline/user_defined_rules.json"


@dataclass
class Case:
    id: str
    mutate: Callable
    code: str
    path: str
    message: str
    target: str = "all"
    report: bool = False


# ---- mutation helpers ------------------------------------------------------------------------

def put(rel, content):
    return lambda f, out: f.write(rel, content)


def edit_json(rel, fn, resign=False):
    def run(f, out):
        doc = f.read_json(rel)
        fn(doc)
        if resign:  # keep the score's own digest valid so only the intended problem shows
            doc["score_sha256"] = score_digest(doc)
        f.write_json(rel, doc)
    return run


def edit_score(vid, fn):
    return edit_json(f"Models/Artifacts/{vid}/eval_score.json", fn, resign=True)


def replace(rel, old, new):
    def run(f, out):
        text = (f.root / rel).read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {rel}"
        f.write(rel, text.replace(old, new, 1))
    return run


def remove(rel):
    def run(f, out):
        p = f.root / rel
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return run


def symlink(rel, target):
    """``rel`` becomes a link to ``target`` (a callable of the outside folder, or a relative path)."""
    def run(f, out):
        p = f.root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target(out) if callable(target) else target, p)
    return run


def both(*fns):
    def run(f, out):
        for fn in fns:
            fn(f, out)
    return run


def rules_pt(**changes):
    def run(f, out):
        pt = json.loads(json.dumps(PT_RULES))
        for dotted, value in changes.items():
            node = pt
            *parents, last = dotted.split("__")
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        f.write_json(PT, pt)
    return run


def index_lines(split, fn):
    """Rewrite the records of a split's index with ``fn(records)``."""
    rel = f"{PREP}/{split}/{split}.jsonl"

    def run(f, out):
        records = [json.loads(line) for line in (f.root / rel).read_text().splitlines() if line.strip()]
        fn(records)
        f.write(rel, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return run


def set_first(field, value):
    def fn(records):
        records[0][field] = value
    return fn


def outside_file(out):
    p = out / "secret.txt"
    p.write_text("not yours\n")
    return str(p)


def outside_dir(out):
    d = out / "elsewhere"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    (d / "eval_score.json").write_text("{}")
    return str(d)


def drop_line(rel, startswith):
    def run(f, out):
        lines = (f.root / rel).read_text(encoding="utf-8").splitlines(keepends=True)
        f.write(rel, "".join(ln for ln in lines if not ln.startswith(startswith)))
    return run


def fifo(rel):
    """``rel`` becomes a named pipe: opening it would block for ever."""
    def run(f, out):
        p = f.root / rel
        p.unlink()
        os.mkfifo(p)
    return run


def folder_at(rel):
    def run(f, out):
        (f.root / rel).unlink()
        (f.root / rel).mkdir()
    return run


def resign_outputs(vid):
    """Re-sign v's eval_score.json over its current eval_samples.jsonl / trivial_baselines.json:
    a forger who knows the format (only recomputation can catch what follows)."""
    from mlloop.jsonio import sha256_file

    def run(f, out):
        base = f.root / "Models/Artifacts" / vid
        doc = json.loads((base / "eval_score.json").read_text())
        doc["eval_samples_sha256"] = sha256_file(base / "eval_samples.jsonl")
        doc["trivial_baselines_sha256"] = sha256_file(base / "trivial_baselines.json")
        doc["score_sha256"] = score_digest(doc)
        f.write_json(f"Models/Artifacts/{vid}/eval_score.json", doc)
    return run


def many_opcodes_ckpt(n=600_000):
    """A torch-layout zip whose data.pkl is n NONE/POP pairs: tiny on disk, millions of opcodes."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("best/data.pkl", b"\x80\x02" + b"N0" * n + b"N.")
        z.writestr("best/version", "3\n")
        z.writestr("best/byteorder", "little")
    return buf.getvalue()


SCORE = f"{V1}/eval_score.json"
ANALYSIS = f"{V1}/result-analysis.md"
ACTION = f"{V1}/action-extract.md"
SMOKE = "Models/Artifacts/baseline/_tests/baseline_smoke_test_report.md"
PROFILE = "dataset/rawdata/profiling.md"
REPORT = "Models/Report/2026-11-21_12-00"
BOARD = f"{REPORT}/leaderboard.csv"


def board_edit(fn):
    def run(f, out):
        lines = (f.root / BOARD).read_text().splitlines()
        f.write(BOARD, "\n".join(fn(lines)) + "\n")
    return run


CASES = [
    # -- strict JSON, in every kind of file --------------------------------------------------------
    Case("score-nan", replace(SCORE, '"value": 0.6,', '"value": NaN,'), "json.non_finite", SCORE, "NaN is not a finite number"),
    Case("score-1e400", replace(SCORE, '"latency_ms": 2.5', '"latency_ms": 1e400'), "json.non_finite", SCORE, "1e400 is not a finite"),
    Case("score-duplicate-key", replace(SCORE, '"num_samples": 4,', '"num_samples": 4, "num_samples": 5,'),
         "json.duplicate_key", SCORE, "duplicate key 'num_samples'"),
    Case("score-list-not-object", lambda f, o: f.write_json(SCORE, [f.read_json(SCORE)]), "eval.not_object", SCORE, "found a list"),
    Case("score-truncated", lambda f, o: f.write(SCORE, (f.root / SCORE).read_text()[:60]), "json.invalid", SCORE, "truncated"),
    Case("score-empty", put(SCORE, ""), "json.empty", SCORE, "the file is empty"),
    Case("score-not-utf8", put(SCORE, b'{"dataset_id": "v\xff1"}'), "json.encoding", SCORE, "not valid UTF-8"),
    Case("spec-truncated", lambda f, o: f.write(f"{V1}/spec.json", (f.root / V1 / "spec.json").read_text()[:40]),
         "json.invalid", f"{V1}/spec.json", "invalid JSON"),
    Case("spec-list", lambda f, o: f.write_json(f"{V1}/spec.json", [1, 2]), "spec.not_object", f"{V1}/spec.json", "found a list"),
    Case("meta-nan", replace(f"{V1}/infer_samples/0001/meta.json", '"loss": 0.5', '"loss": NaN'),
         "json.non_finite", f"{V1}/infer_samples/0001/meta.json", "NaN"),
    Case("meta-list", lambda f, o: f.write_json(f"{V1}/infer_samples/0002/meta.json", [{"sample_id": "s0001"}]),
         "infer.meta", f"{V1}/infer_samples/0002/meta.json", "one JSON object"),
    Case("stats-duplicate-key", replace(f"{PREP}/stats.json", '"seed": 42,', '"seed": 42, "seed": 7,'),
         "json.duplicate_key", f"{PREP}/stats.json", "duplicate key 'seed'"),
    Case("rules-infinity", replace(PT, '"seed": 42', '"seed": Infinity'), "json.non_finite", PT, "Infinity"),
    Case("trivial-truncated", put(f"{V1}/trivial_baselines.json", '{"floor": {"metric": "acc'),
         "json.invalid", f"{V1}/trivial_baselines.json", "truncated"),
    Case("index-line-nan", replace(f"{PREP}/train/train.jsonl", '"label": "cat"', '"label": NaN'), "prepdata.index_record",
         f"{PREP}/train/train.jsonl", "line 1: NaN"),
    # -- rules: schema and semantics ------------------------------------------------------------------
    Case("rules-max-versions-string", rules_pt(loop_config__max_versions="10"), "rules.schema", PT, "expected integer"),
    Case("rules-primary-not-in-metrics", rules_pt(eval_config__primary_metric="cer"), "rules.primary_metric", PT,
         "'cer' is not one of the metrics"),
    Case("rules-split-uniform", lambda f, o: f.write_json(BB, {**BB_RULES, "dataset_config": {**BB_RULES["dataset_config"],
         "split_strategy": "uniform"}}), "rules.schema", BB, "'uniform' is not one of"),
    Case("rules-task-typo", lambda f, o: f.write_json(BB, {**BB_RULES, "dataset_config": {**BB_RULES["dataset_config"],
         "task_type": "image-clasification"}}), "rules.task_type", BB, "did you mean 'image-classification'"),
    Case("rules-dataset-id-lock", both(rules_pt(dataset_config__dataset_id="v2"),
                                       lambda f, o: f.write_json(BB, {**BB_RULES, "dataset_config": {**BB_RULES["dataset_config"], "dataset_id": "v2"}})),
         "versions.dataset_id", PT, "locked to 'v1'"),
    # -- eval_score.json semantics and provenance ---------------------------------------------------
    Case("score-created-at", edit_score("v001", lambda d: d.update(created_at="yesterday")), "eval.created_at", SCORE,
         "'yesterday' is not an ISO-8601 time"),
    Case("score-primary-missing", edit_score("v001", lambda d: d.update(metrics=d["metrics"][:1])), "eval.primary_missing",
         SCORE, "'accuracy' is not in metrics"),
    Case("score-dataset-id", edit_score("v001", lambda d: d.update(dataset_id="v9")), "eval.dataset_id", SCORE,
         "the loop's dataset_id is 'v1'"),
    Case("score-value-string", edit_score("v001", lambda d: d["metrics"][1].update(value="0.93")), "eval.metric", SCORE,
         'value must be a finite number, found "0.93"'),
    Case("score-num-samples-zero", edit_score("v001", lambda d: d.update(num_samples=0)), "eval.num_samples", SCORE,
         "positive integer"),
    Case("score-tampered", edit_json(SCORE, lambda d: d["metrics"][1].update(value=0.99)), "eval.tampered", SCORE,
         "edited after 03_eval.py wrote it"),
    Case("score-stale-eval-script", put("03_eval.py", "# changed\n"), "eval.stale", SCORE, "03_eval.py changed"),
    Case("score-stale-checkpoint", put(f"{V1}/best.ckpt", fake_checkpoint({"epoch": 3})), "eval.stale", SCORE,
         "best.ckpt changed"),
    # -- missing, empty and broken artifacts --------------------------------------------------------------
    Case("best-ckpt-missing", remove(f"{V1}/best.ckpt"), "train.missing", f"{V1}/best.ckpt", "best.ckpt is missing"),
    Case("last-ckpt-empty", put(f"{V1}/last.ckpt", b""), "ckpt.empty", f"{V1}/last.ckpt", "0 bytes"),
    Case("best-ckpt-garbage", put("Models/Artifacts/baseline/best.ckpt", b"\x00garbage" * 10), "ckpt.not_zip",
         "Models/Artifacts/baseline/best.ckpt", "not a torch zip checkpoint"),
    Case("ckpt-renamed-json", put(f"{V2}/last.ckpt", '{"state_dict": {}}'), "ckpt.not_zip", f"{V2}/last.ckpt", "not a torch zip"),
    Case("hparams-missing", remove(f"{V1}/logs/version_0/hparams.yaml"), "train.logs", f"{V1}/logs/version_0/hparams.yaml",
         "hparams.yaml is missing"),
    Case("output-missing", remove(f"{V1}/infer_samples/0002/output.txt"), "infer.file_missing", f"{V1}/infer_samples/0002",
         "no output.* file"),
    Case("analysis-missing", remove(ANALYSIS), "analysis.missing", ANALYSIS, "result-analysis.md is missing"),
    Case("eval-samples-missing", remove(f"{V2}/eval_samples.jsonl"), "eval.missing", f"{V2}/eval_samples.jsonl",
         "eval_samples.jsonl is missing"),
    Case("asset-missing", remove(f"{V1}/additional_assets/label_map.json"), "spec.assets",
         f"{V1}/additional_assets/label_map.json", "missing from additional_assets/"),
    Case("assets-empty-list", edit_json(f"{V1}/spec.json", lambda d: d.update(additional_assets=[])), "spec.assets",
         f"{V1}/spec.json", 'write "not_required"'),
    Case("spec-wrong-version", edit_json(f"{V2}/spec.json", lambda d: d.update(version_id="baseline")), "spec.version_id",
         f"{V2}/spec.json", "the folder is v002"),
    Case("spec-dataset-id", edit_json(f"{V2}/spec.json", lambda d: d.update(dataset_id="v7")), "spec.dataset_id",
         f"{V2}/spec.json", "the loop's dataset_id is 'v1'"),
    Case("spec-mode", edit_json(f"{V2}/spec.json", lambda d: d["best_checkpoint"].update(mode="lowest")), "spec.field",
         f"{V2}/spec.json", 'mode must be "min" or "max"'),
    Case("smoke-fail", replace(SMOKE, "overall_result: PASS", "overall_result: FAIL"), "smoke.failed", SMOKE, "FAILED"),
    Case("smoke-no-probe", replace(SMOKE, "## Learnability probe", "## Notes"), "smoke.section", SMOKE, "'Learnability probe'"),
    Case("retry-no-status", put(f"{V2}/_tests/train_retry_report.md", "## Attempt 1\n- attempt: 1\n- error_summary: OOM\n"
         "- root_cause_hypothesis: batch too big\n- code_change_summary: BATCH_SIZE 64 -> 16\n"), "retry.field",
         f"{V2}/_tests/train_retry_report.md", "has no status"),
    Case("patch-report-no-files-changed", put("Models/Artifacts/baseline/_tests/baseline_patch_report.md",
         "# Baseline patch report\n- issues_found: DATASET_ID was hard-coded\n- patch_summary: read it from the rules\n"
         "- compatibility_notes: none\n"), "patch.field", "Models/Artifacts/baseline/_tests/baseline_patch_report.md",
         "no '- files_changed: ...' line"),
    Case("profiling-load-fail", replace(PROFILE, "load_test: PASS", "load_test: FAIL"), "profiling.load_test_failed",
         PROFILE, "src_a"),
    Case("profiling-source-missing", put("dataset/rawdata/src_b/x/1.png", b"png"), "profiling.source_missing", PROFILE,
         "dataset/rawdata/src_b/"),
    Case("profiling-section-empty", replace(PROFILE, "None found in the sampled files.", "TBD"), "profiling.source_section",
         PROFILE, "'Edge cases' is empty"),
    # -- prepdata -----------------------------------------------------------------------------------------
    Case("stats-counts", edit_json(f"{PREP}/stats.json", lambda d: d["counts"].update(train=99)), "prepdata.counts",
         f"{PREP}/stats.json", "counts.train is 99 but the train index has 16"),
    Case("index-field-missing", index_lines("valid", lambda rs: rs[1].pop("label")), "prepdata.field_missing",
         f"{PREP}/valid/valid.jsonl", "'label' is missing or null in 1 record(s) (lines 2)"),
    Case("index-id-in-both", index_lines("train", set_first("id", "s0000")), "prepdata.leak_id", f"{PREP}/valid/valid.jsonl",
         "in both train and valid"),
    Case("index-group-leak", both(edit_json(f"{PREP}/stats.json", lambda d: d.update(split_strategy="group")),
                                  index_lines("valid", set_first("group_id", "gs0010"))),
         "prepdata.leak_group", f"{PREP}/valid/valid.jsonl", "group_id value(s) are in both"),
    Case("index-missing", remove(f"{PREP}/valid/valid.jsonl"), "prepdata.index_missing", f"{PREP}/valid", "no valid index"),
    Case("df-meta-not-parquet", put(f"{PREP}/common/df_meta.parquet", "sample_id,source\n"), "prepdata.common",
         f"{PREP}/common/df_meta.parquet", "not a readable parquet file"),
    # -- infer_samples ------------------------------------------------------------------------------------
    Case("infer-too-many", both(put(f"{V1}/infer_samples/0004/input.png", b"x"), put(f"{V1}/infer_samples/0004/output.txt", "x"),
                                put(f"{V1}/infer_samples/0004/meta.json", '{"sample_id": "s0000"}')),
         "infer.count", f"{V1}/infer_samples", "allows at most 3"),
    Case("infer-wrong-sample", edit_json(f"{V1}/infer_samples/0001/meta.json", lambda d: d.update(sample_id="s0019")),
         "infer.sample_id", f"{V1}/infer_samples/0001/meta.json", "random.Random(42).sample"),
    Case("infer-bad-folder-name", put(f"{V1}/infer_samples/abc/input.png", b"x"), "infer.name", f"{V1}/infer_samples/abc",
         "'abc' is not a sample folder"),
    Case("infer-unicode-folder", put(f"{V1}/infer_samples/０００４/input.png", b"x"), "infer.name",
         f"{V1}/infer_samples/０００４", "is not a sample folder"),
    # -- names --------------------------------------------------------------------------------------------
    Case("name-v1", put("Models/Artifacts/v1/spec.json", "{}"), "versions.misnamed", "Models/Artifacts/v1",
         "looks like version v001"),
    Case("name-V003", put("Models/Artifacts/V003/notes.txt", "x"), "versions.misnamed", "Models/Artifacts/V003", "rename it to v003"),
    Case("name-trailing-space", put("Models/Artifacts/v003 /notes.txt", "x"), "versions.misnamed", "Models/Artifacts/v003 ",
         "looks like version v003"),
    Case("name-fullwidth-digits", put("Models/Artifacts/v００３/notes.txt", "x"), "versions.misnamed",
         "Models/Artifacts/v００３", "looks like version v003"),
    Case("name-script-v1", put("02_train_v1.py", "# a copy\n"), "versions.misnamed_script", "02_train_v1.py",
         "not a training script name"),
    # -- markdown sections ----------------------------------------------------------------------------------
    Case("analysis-no-evidence", replace(ANALYSIS, "## Evidence", "## Observations"), "analysis.missing_section", ANALYSIS,
         "'Evidence' is missing"),
    Case("analysis-fenced-heading", replace(ANALYSIS, "## Hypotheses\nThe head underfits: one epoch is too short.\n",
                                            "```\n## Hypotheses\nThe head underfits.\n```\n"),
         "analysis.missing_section", ANALYSIS, "only inside a code block"),
    Case("analysis-placeholder", replace(ANALYSIS, "v001 reached accuracy 0.600 on the validation split.", "TODO"),
         "analysis.empty_section", ANALYSIS, "'Summary' is empty or placeholder"),
    Case("action-two-selected", lambda f, o: f.write(ACTION, (f.root / ACTION).read_text() + "\n## Selected Action 2\n- Goal: x\n"),
         "action.selected", ACTION, "2 'Selected Action' headings"),
    Case("action-no-risk", drop_line(ACTION, "- Risk:"), "action.missing_field", ACTION, "no 'Risk' field"),
    Case("action-placeholder-goal", replace(ACTION, "- Goal: raise accuracy by training longer", "- Goal: <fill in>"),
         "action.empty_field", ACTION, "'Goal' is empty or placeholder"),
    Case("action-none-selected", replace(ACTION, "## Selected Action (only 1)", "## Chosen"), "action.selected", ACTION,
         "no 'Selected Action' heading"),
    Case("script-no-header", lambda f, o: f.write("02_train_v002.py", '"""no header"""\n'), "script.header", "02_train_v002.py",
         "no change-summary header"),
    Case("script-parent-unknown", replace("02_train_v002.py", "# parent: v001", "# parent: v005"), "script.parent",
         "02_train_v002.py", "parent v005 is not an earlier version"),
    Case("script-writes-eval", lambda f, o: f.write("02_train_v002.py", (f.root / "02_train_v002.py").read_text()
         + '\nOUT = "Models/Artifacts/v002/eval_score.json"\n'), "script.writes_eval", "02_train_v002.py", "eval_score"),
    # -- escaping paths and symlinks ---------------------------------------------------------------------
    Case("index-path-dotdot", index_lines("train", set_first("image_path", "../../etc/passwd")), "prepdata.path_unsafe",
         f"{PREP}/train/train.jsonl", "'../../etc/passwd' leaves the split folder"),
    Case("index-path-absolute", index_lines("valid", set_first("image_path", "/etc/passwd")), "prepdata.path_unsafe",
         f"{PREP}/valid/valid.jsonl", "is absolute"),
    Case("index-asset-symlink-out", symlink(f"{PREP}/train/image/s0004.png", outside_file), "prepdata.path_unsafe",
         f"{PREP}/train/train.jsonl", "symbolic link that leaves the split folder"),
    Case("version-dir-symlink-out", both(symlink("Models/Artifacts/v003", outside_dir), put("02_train_v003.py", "x = 1\n")),
         "path.symlink_escape", "Models/Artifacts/v003", "leaves the project"),
    Case("score-symlink-out", symlink(f"{V2}/eval_score.json", outside_file), "path.symlink_escape", f"{V2}/eval_score.json",
         "never follows it"),
    Case("infer-samples-symlink-out", symlink(f"{V1}/infer_samples", outside_dir), "path.symlink_escape",
         f"{V1}/infer_samples", "leaves the project"),
    Case("last-ckpt-link", symlink(f"{V2}/last.ckpt", "best.ckpt"), "train.ckpt_link", f"{V2}/last.ckpt", "symbolic link"),
    # -- chain between steps and versions ---------------------------------------------------------------------
    Case("chain-previous-incomplete", remove(ACTION), "versions.chain", V1, "v002 exists, so v001 must be complete"),
    Case("chain-folder-without-script", put("Models/Artifacts/v003/notes.txt", "x"), "versions.no_script", "02_train_v003.py",
         "02_train_v003.py does not"),
    Case("chain-gap", both(remove("02_train_v002.py"), remove(V2), put("02_train_v003.py", "x = 1\n")), "versions.gap",
         V2, "v002 is missing"),
    Case("chain-max-versions", rules_pt(loop_config__max_versions=1), "versions.max", "02_train_v002.py",
         "exceeds loop_config.max_versions = 1"),
    Case("chain-prepdata-missing", remove(PREP), "chain.prepdata", PREP, "run 01_data_pipeline.py"),
    # -- targets ------------------------------------------------------------------------------------------
    Case("target-unknown-version", lambda f, o: None, "versions.unknown", "Models/Artifacts/v007", "v007 does not exist",
         target="v007"),
    Case("target-report-none", lambda f, o: None, "report.missing", "Models/Report", "no report yet", target="report"),
    # -- the report -----------------------------------------------------------------------------------------
    Case("report-relpath-escape", board_edit(lambda ls: [ls[0], ls[1], ls[2].replace("../../Artifacts/v001/best.ckpt",
         "../../../../etc/passwd")]), "report.artifact_relpath", BOARD, "resolves outside the project", report=True),
    Case("report-relpath-absolute", board_edit(lambda ls: [ls[0], ls[1], ls[2].replace("../../Artifacts/v001/best.ckpt",
         "/etc/passwd")]), "report.artifact_relpath", BOARD, "is absolute", report=True),
    Case("report-extra-column", board_edit(lambda ls: [ls[0] + ",notes"] + [line + ",x" for line in ls[1:]]),
         "report.columns", BOARD, "notes are not allowed", report=True),
    Case("report-wrong-order", board_edit(lambda ls: [ls[0], ls[2], ls[1]]), "report.ranking", BOARD,
         "rank 1 should be v002, found v001", report=True),
    Case("report-edited-value", board_edit(lambda ls: [ls[0], ls[1].replace(",0.7,", ",0.95,"), ls[2]]),
         "report.value_mismatch", BOARD, "leaderboard.csv has 0.95", report=True),
    Case("report-no-analysis", remove(f"{REPORT}/final-analysis.md"), "report.missing_file", f"{REPORT}/final-analysis.md",
         "final-analysis.md is missing", report=True),
    Case("report-best-missing", remove(f"{REPORT}/Artifacts/v002/best.ckpt"), "report.best_missing",
         f"{REPORT}/Artifacts/v002/best.ckpt", "best version v002", report=True),
    Case("report-unicode-row", board_edit(lambda ls: ls + [ls[2].replace("v001", "v٠٠١", 1)]), "report.unknown_row", BOARD,
         "'v٠٠١' has no eval_score.json", report=True),
    # -- forged scores (issue 13, class 2) -----------------------------------------------------------------
    Case("score-forged-resigned", edit_score("v001", lambda d: d["metrics"][1].update(value=0.99)), "eval.recompute", SCORE,
         "accuracy is 0.99 but eval_samples.jsonl gives 0.6"),
    Case("score-forged-samples-too", both(replace(f"{V1}/eval_samples.jsonl", '"accuracy": 0.6', '"accuracy": 0.99'),
                                          edit_score("v001", lambda d: d["metrics"][1].update(value=0.99))),
         "eval.tampered", SCORE, "eval_samples.jsonl was edited after 03_eval.py wrote it"),
    Case("score-forged-loss-column", both(replace(f"{V1}/eval_samples.jsonl", '"loss": 0.9', '"loss": 0.1'),
                                          resign_outputs("v001")),
         "eval.recompute", SCORE, "loss is 0.9 but eval_samples.jsonl gives 0.7"),
    Case("trivial-floor-lowered", edit_json(f"{V1}/trivial_baselines.json", lambda d: d["floor"].update(value=0.01)),
         "eval.tampered", SCORE, "trivial_baselines.json was edited after 03_eval.py wrote it"),
    Case("trivial-floor-lowered-resigned", both(edit_json(f"{V1}/trivial_baselines.json", lambda d: d["floor"].update(value=0.01)),
                                                resign_outputs("v001")),
         "floor.mismatch", f"{V1}/trivial_baselines.json", "floor.value is 0.01 but the best predictor on accuracy scores 0.34"),
    Case("script-changed-after-training", replace("02_train_v001.py", "EPOCHS = 1", "EPOCHS = 9"), "spec.script_changed",
         "02_train_v001.py", "02_train_v001.py changed after training"),
    Case("score-stale-train-script", replace("02_train_v002.py", "EPOCHS = 2", "EPOCHS = 5"), "eval.stale",
         f"{V2}/eval_score.json", "02_train_v002.py changed since this score was computed"),
    Case("score-stale-valid-data", index_lines("valid", lambda rs: rs.reverse()), "eval.stale", SCORE,
         "the validation data (dataset/prepdata/v1/valid/valid.jsonl) changed"),
    Case("script-change-never-applied", replace("02_train_v002.py", "EPOCHS = 2", "EPOCHS = 1"), "script.unchanged",
         "02_train_v002.py", "the code is v001's unchanged (only the change summary differs)"),
    # -- hostile trees (issue 13, class 3) ----------------------------------------------------------------
    Case("stray-v100000", put("02_train_v100000.py", "x = 1\n"), "versions.gap", "Models/Artifacts/v003",
         "v003…v99999 (99,997 versions) are missing before v100000"),
    Case("score-fifo", fifo(SCORE), "file.not_regular", SCORE, "is a named pipe (FIFO), not a regular file"),
    Case("rules-fifo", fifo(PT), "file.not_regular", PT, "is a named pipe (FIFO)"),
    Case("samples-fifo", fifo(f"{V1}/eval_samples.jsonl"), "eval.not_regular", f"{V1}/eval_samples.jsonl", "named pipe"),
    Case("rules-symlink-out", symlink(PT, outside_file), "path.symlink_escape", PT, "leaves the project"),
    Case("score-is-folder", folder_at(SCORE), "file.not_a_file", SCORE, "expected a JSON file, found a folder"),
    Case("score-huge-integer", replace(SCORE, '"latency_ms": 2.5', '"latency_ms": ' + "9" * 5000), "json.huge_integer",
         SCORE, "an integer with 5000 digits"),
    Case("rules-600-deep", replace(PT, '"seed": 42', '"seed": 42, "x": ' + "[" * 600 + "]" * 600), "json.too_deep", PT,
         "more than 100 levels deep"),
    Case("rules-float-for-int", rules_pt(eval_config__infer_samples=3.0), "rules.schema", PT, "expected integer"),
    Case("name-not-utf8", put(os.fsdecode(b"02_train_v\xff.py"), "x = 1\n"), "versions.misnamed_script",
         "02_train_v\\xff.py", "not a training script name"),
    Case("ckpt-millions-of-opcodes", put(f"{V1}/last.ckpt", many_opcodes_ckpt()), "ckpt.too_complex", f"{V1}/last.ckpt",
         "more than 500,000 pickle opcodes"),
    # -- unicode names ------------------------------------------------------------------------------------
    Case("unicode-source-missing", put("dataset/rawdata/데이터/a.png", b"png"), "profiling.source_missing", PROFILE,
         "dataset/rawdata/데이터/"),
]


def test_at_least_forty_distinct_bad_inputs():
    assert len({c.id for c in CASES}) == len(CASES) >= 40


SLOW_CASES = {"ckpt-millions-of-opcodes"}  # seconds of pickle scanning: left out of `pytest -m "not slow"`


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.id in SLOW_CASES else c for c in CASES],
                         ids=[c.id for c in CASES])
def test_bad_input(factory, tmp_path, case: Case):
    factory.complete(versions=2)
    if case.report:
        build_report(factory)
    outside = tmp_path / "outside"
    outside.mkdir()
    case.mutate(factory, outside)
    before = factory.snapshot()
    outside_before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    runner = CliRunner()

    result = runner.invoke(cli, ["check", case.target, "--project", str(factory.root), "--json"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"ok", "problems", "warnings"} and payload["ok"] is False
    hits = [p for p in payload["problems"] if p["code"] == case.code and p["path"] == case.path]
    assert hits, f"expected {case.code} at {case.path}; got {json.dumps(payload['problems'], ensure_ascii=False, indent=1)}"
    assert any(case.message in p["message"] for p in hits), [p["message"] for p in hits]
    assert not any(p["code"] == "check.internal" for p in payload["problems"])

    text = runner.invoke(cli, ["check", case.target, "--project", str(factory.root)])
    assert text.exit_code == 1
    assert "Traceback" not in text.output
    assert case.path in text.output

    assert factory.snapshot() == before
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == outside_before


def test_a_stray_far_version_is_one_gap_problem_not_thousands(factory):
    factory.complete(versions=2)
    factory.write("02_train_v100000.py", "x = 1\n")
    result = CliRunner().invoke(cli, ["check", "--project", str(factory.root), "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    problems = json.loads(result.stdout)["problems"]
    assert [p["code"] for p in problems if p["code"] == "versions.gap"] == ["versions.gap"]
    assert len(problems) <= 4, problems  # the gap, max_versions, the stray's missing header
    status = CliRunner().invoke(cli, ["status", "--project", str(factory.root), "--json"])
    assert "Traceback" not in status.output and json.loads(status.stdout)["cur"] == "v100000"


@pytest.mark.parametrize("special", ["/dev/null", "/dev/zero"])
def test_the_file_reader_refuses_devices_unopened(tmp_path, special):
    """read_json refuses what is not a regular file from its stat: /dev/zero would never end."""
    from mlloop.jsonio import JsonProblems, read_json

    with pytest.raises(JsonProblems) as err:
        read_json(Path(special), "rules.json")
    [problem] = err.value.problems
    assert (problem.code, problem.path) == ("file.not_regular", "rules.json")
    assert problem.message.startswith("is a character device, not a regular file")
    link = tmp_path / "proj" / "rules.json"
    link.parent.mkdir()
    os.symlink(special, link)
    with pytest.raises(JsonProblems) as err:
        read_json(link, "rules.json", root=tmp_path / "proj")
    assert err.value.problems[0].code == "path.symlink_escape"


@pytest.mark.parametrize("rel", [ANALYSIS.replace("v001", "v002"), ACTION.replace("v001", "v002"), PROFILE, BOARD,
                                 f"{REPORT}/final-analysis.md", "02_train_v002.py"])
def test_status_and_analyze_never_open_a_fifo(factory, rel):
    """status runs in the SessionStart hook: a named pipe where a document belongs must not block it."""
    factory.complete(versions=2)
    build_report(factory)
    fifo(rel)(factory, None)
    runner = CliRunner()
    status = runner.invoke(cli, ["status", "--project", str(factory.root), "--json"])
    assert status.exit_code == 0 and "Traceback" not in status.output, status.output
    json.loads(status.stdout)
    analyze = runner.invoke(cli, ["analyze", "v002", "--force", "--project", str(factory.root)])
    assert "Traceback" not in analyze.output and "internal error" not in analyze.output, analyze.output
    if rel.endswith("result-analysis.md"):
        assert analyze.exit_code == 1
        assert "Models/Artifacts/v002/result-analysis.md is not a regular file" in analyze.output


@pytest.mark.parametrize("text", [
    '{"a": ' + '{"x": ' * 600 + "1" + "}" * 600 + "}",
    '{"a": NaN, "b": ' + '{"x": ' * 600 + "1" + "}" * 600 + "}",   # the strict re-parse path
    "[" * 100_000 + "]" * 100_000,
])
def test_deep_nesting_is_one_line_on_every_parse_path(text):
    from mlloop.jsonio import JsonProblems, parse_json_text

    with pytest.raises(JsonProblems) as err:
        parse_json_text(text, "x.json")
    assert [p.line() for p in err.value.problems] == [
        "x.json: the document nests lists/objects more than 100 levels deep; refused"]
