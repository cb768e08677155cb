"""The held-out test split (``dataset_config.test_ratio``): present exactly when the rules ask for
it, and never touched by a version.

A touch is what the runtime records: ``spec.json`` and ``eval_score.json`` list the prepdata
splits their process read (``splits_read``, from ``mlloop.runtime.artifacts.read_index``), and
``eval_samples.jsonl`` lists the ids it scored. A version whose training, smoke test or
evaluation read ``test/``, or scored a test id, is a problem: its numbers were tuned on the data
the report keeps for its one unbiased measurement.
"""

from __future__ import annotations

import json

from ..formats.eval_samples import parse_eval_samples
from ..formats.leaderboard_csv import parse_leaderboard
from ..formats.prepdata_stats import counts_of
from ..layout import BASELINE, EVAL_SAMPLES, EVAL_SCORE, LEADERBOARD_CSV, PREPDATA_STATS, SPEC
from .context import Context
from .final_report import REPORT_NAME_RE
from .prepdata import base_dir, read_index

TEST = "test"


def check_prepdata_test(ctx: Context) -> None:
    """test/ exists when, and only when, the rules set test_ratio; stats.json agrees."""
    base = base_dir(ctx)
    if base is None or not (base / PREPDATA_STATS).is_file() or not ctx.safe(base / PREPDATA_STATS):
        return  # no prepdata yet (or prepdata's own check says what is wrong)
    ok, stats = ctx.read_json(base / PREPDATA_STATS)
    if not ok or not isinstance(stats, dict):
        return
    want = ctx.rules.values["dataset_config"].get("test_ratio")
    stats_path = base / PREPDATA_STATS
    has_dir = (base / TEST).exists() or (base / TEST).is_symlink()
    if "test_ratio" in stats and stats["test_ratio"] != want:
        ctx.problem("prepdata.test_ratio", stats_path,
                    f"test_ratio is {json.dumps(stats['test_ratio'])} but the rules say {json.dumps(want)}; "
                    "re-run 01_data_pipeline.py", "$.test_ratio")
    if want and not has_dir:
        ctx.problem("prepdata.test_missing", base / TEST,
                    f"dataset_config.test_ratio is {want} but there is no test/ split; re-run 01_data_pipeline.py")
        return
    if not want:
        if has_dir:
            ctx.problem("prepdata.test_unasked", base / TEST,
                        "test/ exists but dataset_config.test_ratio is not set; re-run 01_data_pipeline.py")
        return
    path, records, problems = read_index(ctx, TEST)
    for code, where, message in problems:
        ctx.problem(code, where, message)
    if records is None:
        return
    counts = counts_of(stats)
    if counts.get(TEST) != len(records):
        ctx.problem("prepdata.counts", stats_path,
                    f"counts.test is {json.dumps(counts.get(TEST))} but the test index has {len(records)} records",
                    "$.counts.test")
    overlap = set(_ids(records)) & set(_ids(read_index(ctx, "train")[1]) + _ids(read_index(ctx, "valid")[1]))
    if overlap:
        ctx.problem("prepdata.test_leak_id", path,
                    f"{len(overlap)} test id(s) also in train or valid (e.g. {sorted(map(str, overlap))[0]!r})")


def check_version_test(ctx: Context, vid: str) -> None:
    """The version never read test/: not in training, not in its smoke test, not in evaluation."""
    folder = ctx.project.artifact_dir(vid)
    for path in (folder / SPEC, folder / EVAL_SCORE):  # the smoke test writes spec.json too
        if not path.is_file() or not ctx.safe(path):
            continue
        ok, doc = ctx.read_json(path)
        read = doc.get("splits_read") if ok and isinstance(doc, dict) else None
        if isinstance(read, list) and TEST in read:
            what = "its evaluation" if path.name == EVAL_SCORE else "its training run"
            ctx.problem("heldout.touched", path,
                        f"{what} read the held-out test split (splits_read {json.dumps(read)}); only `mlloop report` "
                        f"may read test/: retrain or re-evaluate {vid} on train and valid only", "$.splits_read")
    samples = folder / EVAL_SAMPLES
    test_ids = set(map(str, _ids(read_index(ctx, TEST)[1]))) if ctx.dataset_id else set()
    if not test_ids or not samples.is_file() or not ctx.safe(samples):
        return
    text = ctx.read_text(samples, "heldout")
    # Broken lines are the evaluation check's to report; the records that parse are enough here.
    scored = {str(row["id"]) for row in parse_eval_samples(text or "", ctx.rel(samples))[0]}
    touched = scored & test_ids
    if touched:
        ctx.problem("heldout.touched", samples,
                    f"{len(touched)} scored id(s) are in the held-out test split (e.g. {sorted(touched)[0]!r}); "
                    f"evaluate {vid} with 03_eval.py, which scores the validation split only")


def check_all_versions_test(ctx: Context) -> None:
    for vid in [BASELINE] + ctx.project.versions():
        if ctx.project.artifact_dir(vid).is_dir():
            check_version_test(ctx, vid)


def _ids(records) -> list:
    return [r.get("id") for r in records or [] if isinstance(r, dict) and r.get("id") is not None]


def check_newest_report_test(ctx: Context) -> None:
    """The newest report: report.html exists; with a test split, its test__ cells are the scores
    in test/<version>/ and were scored on the test split; without one, final-analysis.md says that
    the winner's score is optimistic."""
    named = [p for p in ctx.project.reports() if REPORT_NAME_RE.fullmatch(p.name)]
    if not named:
        return
    folder = max(named, key=lambda p: p.name)
    if not ctx.dir_ok(folder):
        return
    if not (folder / "report.html").is_file():
        ctx.problem("report.html_missing", folder / "report.html",
                    "the report has no report.html (its pictures); re-run `mlloop report`")
    want = ctx.rules.values["dataset_config"].get("test_ratio")
    board = folder / LEADERBOARD_CSV
    if not want:
        text = ctx.read_text(folder / "final-analysis.md", "report") if (folder / "final-analysis.md").is_file() else None
        if text is not None and "optimistic" not in text:
            ctx.problem("report.optimistic_note", folder / "final-analysis.md",
                        "without a test split (dataset_config.test_ratio) final-analysis.md must say that the best "
                        "score is optimistic; re-run `mlloop report`")
        return
    text = ctx.read_text(board, "report") if board.is_file() and ctx.safe(board) else None
    if text is None:
        return
    table, _ = parse_leaderboard(text)  # the report check lists its problems
    rows = table.records() if table else []
    primary = ctx.rules.primary_metric
    col = f"test__{primary}"
    if rows and col not in rows[0]:
        ctx.problem("report.test_missing", board, f"dataset_config.test_ratio is {want} but leaderboard.csv has no {col} "
                    "column; re-run `mlloop report`")
        return
    scored = [r for r in rows if r.get(col)]
    if not scored:
        ctx.problem("report.test_missing", board, f"no version has a {col} value; `mlloop report` scores the top 3 on test")
    for r in scored:
        vid = r.get("version_id")
        path = folder / TEST / str(vid) / EVAL_SCORE
        if not path.is_file() or not ctx.safe(path):
            ctx.problem("report.test_missing", path, f"{vid} has a {col} cell but no {TEST}/{vid}/eval_score.json")
            continue
        ok, doc = ctx.read_json(path)
        if not ok or not isinstance(doc, dict):
            continue
        if doc.get("split") != TEST:
            ctx.problem("report.test_split", path, f"split is {json.dumps(doc.get('split'))}, not \"test\"", "$.split")
        value = next((m.get("value") for m in doc.get("metrics") or [] if isinstance(m, dict) and m.get("name") == primary), None)
        try:
            same = value is not None and abs(float(r[col]) - float(value)) <= 1e-9 * max(1.0, abs(float(value)))
        except ValueError:
            same = False
        if not same:
            ctx.problem("report.value_mismatch", board, f"{vid} {col}: leaderboard.csv has {r[col]}, "
                        f"{TEST}/{vid}/eval_score.json has {value}; the leaderboard is built by `mlloop report`, not edited")
