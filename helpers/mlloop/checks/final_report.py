"""The final report (Step 7): ``Models/Report/<stamp>/`` with leaderboard.csv, final-analysis.md
and the best version's artifacts. The ranking is recomputed from the eval_score.json files with
the same code ``mlloop report`` uses, and every ``artifact_relpath`` must resolve inside the
project."""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

from ..formats import final_analysis
from ..formats.eval_score import read_eval_score
from ..formats.leaderboard_csv import parse_leaderboard
from ..layout import ASSETS, BEST_CKPT, EVAL_SCORE, LEADERBOARD_CSV, SPEC, version_number
from ..leaderboard import EXTERNAL, VERSION, Row, metric_cells, rank
from ..stages import read_json_quiet
from .context import Context

REPORT_NAME_RE = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}(?:_\d+)?")


def check_reports(ctx: Context, required: bool) -> None:
    reports = [p for p in ctx.project.reports()]
    if not reports:
        if required:
            ctx.problem("report.missing", ctx.project.report_root, "no report yet; `mlloop report` builds it (Step 7)")
        return
    named = [p for p in reports if REPORT_NAME_RE.fullmatch(p.name)]
    newest = max(named, key=lambda p: p.name) if named else None
    for folder in reports:
        if not REPORT_NAME_RE.fullmatch(folder.name):
            ctx.warn("report.stray", folder, f"{folder.name!r} is not a report folder name (YYYY-MM-DD_HH-MM); it is ignored")
            continue
        # Only the newest report is checked: an older one is history, written from the scores of
        # its time, and what changed since (a re-evaluation, a removed external model) is not a
        # problem of the loop now. A later `mlloop report` supersedes it.
        if folder == newest and ctx.dir_ok(folder):
            check_report(ctx, folder, newest=True)


def _source(ctx: Context, name: str) -> tuple[str, Path] | None:
    if version_number(name) is not None and (ctx.project.artifact_dir(name) / EVAL_SCORE).is_file():
        return VERSION, ctx.project.artifact_dir(name)
    ext = ctx.project.external_root / name
    if name and "/" not in name and name not in (".", "..") and (ext / EVAL_SCORE).is_file():
        return EXTERNAL, ext
    return None


def _score(ctx: Context, kind: str, folder: Path):
    if kind == VERSION:
        return ctx.eval_score(folder.name)[0]
    path = folder / EVAL_SCORE
    if not ctx.safe(path):
        return None
    return read_eval_score(ctx.project, path, folder.name, primary_metric=ctx.rules.primary_metric)


def check_report(ctx: Context, folder: Path, newest: bool = True) -> None:
    board = folder / LEADERBOARD_CSV
    analysis = folder / "final-analysis.md"
    if not ctx.exists(analysis):
        ctx.problem("report.missing_file", analysis, "final-analysis.md is missing; `mlloop report` writes it")
    else:
        _check_analysis(ctx, analysis, newest)
    if not ctx.exists(board):
        ctx.problem("report.missing_file", board, "leaderboard.csv is missing; `mlloop report` writes it")
        return
    text = ctx.read_text(board, "report")
    if text is None:
        return
    table, gaps = parse_leaderboard(text)
    for kind, message in gaps:
        ctx.problem(f"report.{kind}", board, message)
    if table is None:
        return
    header = table.header
    rows, cells_by_name = [], {}
    for i, record in table.rows:
        name = record["version_id"]
        if ctx.dataset_id and record["dataset_id"] != ctx.dataset_id:
            ctx.problem("report.dataset_id", board, f"line {i}: dataset_id is {record['dataset_id']!r}, the loop's is {ctx.dataset_id!r}")
        source = _source(ctx, name)
        if source is None:
            ctx.problem("report.unknown_row", board, f"line {i}: {name!r} has no eval_score.json in Models/Artifacts/ or Models/external/")
            continue
        score = _score(ctx, *source)
        if score is None:
            continue
        row = Row(name, source[0], source[1], score)
        rows.append(row)
        cells_by_name[name] = (i, record)
    outdated = _check_values(ctx, board, header, rows, cells_by_name)
    ranking = rank(rows, ctx.rules)
    expected = [r.name for r in ranking.rows]
    found = [r.name for r in sorted(rows, key=lambda r: cells_by_name[r.name][0])]
    if expected != found:
        at = next(i for i, (a, b) in enumerate(zip(expected, found)) if a != b)
        message = (f"the row order differs from the ranking recomputed from the eval_score.json files by "
                   f"{ranking.primary} ({'higher' if ranking.higher_is_better else 'lower'} is better): rank {at + 1} should be "
                   f"{expected[at]}, found {found[at]}")
        (ctx.warn if outdated else ctx.problem)("report.ranking", board, message + ("; re-run `mlloop report`" if outdated else ""))
    best = ranking.best_version()
    for row in rows:
        line, record = cells_by_name[row.name]
        _check_relpath(ctx, board, folder, line, row, record["artifact_relpath"], best.name if best else None)
    if best is not None:
        _check_best(ctx, folder, best)


def _check_values(ctx: Context, board: Path, header: list[str], rows: list[Row], cells_by_name: dict) -> bool:
    """Leaderboard cells against the scores; True when some row is merely outdated."""
    outdated = False
    for row in rows:
        line, record = cells_by_name[row.name]
        want = metric_cells(row.score)
        same_eval = record["created_at"] == str(row.score.doc.get("created_at"))
        shown_cols = {c for c in header[5:] if c.startswith("metric__") and record.get(c, "") != ""}
        for col in sorted(set(want) | shown_cols):
            have = record.get(col)
            if col not in header:
                ctx.problem("report.columns", board, f"line {line}: {row.name} reports {col[8:]!r} but there is no {col} column")
                continue
            if _same(have, want.get(col)):
                continue
            shown = f"{row.name} {col}: leaderboard.csv has {have or 'an empty cell'}, eval_score.json has {want.get(col, 'nothing')}"
            if same_eval:
                ctx.problem("report.value_mismatch", board, f"line {line}: {shown}; the leaderboard is built by "
                            "`mlloop report`, not edited")
            else:
                outdated = True
                ctx.warn("report.outdated", board, f"line {line}: {shown} (re-evaluated since); re-run `mlloop report`")
    return outdated


def _same(cell: str | None, value) -> bool:
    if value is None:
        return cell in (None, "")
    try:
        return math.isclose(float(cell), float(value), rel_tol=1e-12, abs_tol=0.0)
    except (TypeError, ValueError):
        return False


def relpath_problem(value: str) -> str | None:
    if not value:
        return "is empty"
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        return f"{value!r} is absolute; it must be relative to the report folder"
    if "://" in value or value.startswith("file:") or "\\" in value or any(ord(c) < 32 for c in value) or "#" in value:
        return f"{value!r} is not a plain relative POSIX path"
    return None


def _check_relpath(ctx: Context, board: Path, folder: Path, line: int, row: Row, value: str, best: str | None) -> None:
    reason = relpath_problem(value)
    if reason:
        ctx.problem("report.artifact_relpath", board, f"line {line}: artifact_relpath {reason}")
        return
    target = folder / value
    real = os.path.realpath(target)
    if not (real == ctx.root or real.startswith(ctx.root + os.sep)):
        ctx.problem("report.artifact_relpath", board, f"line {line}: artifact_relpath {value!r} resolves outside the project")
        return
    if row.kind == VERSION and row.name == best:
        if value != f"Artifacts/{best}/best.ckpt":
            ctx.problem("report.artifact_relpath", board,
                        f"line {line}: the best version's artifact_relpath must be Artifacts/{best}/best.ckpt, found {value!r}")
        return
    if not os.path.exists(real):
        ctx.problem("report.artifact_relpath", board, f"line {line}: artifact_relpath {value!r} does not exist")
    elif row.kind == VERSION and real != os.path.realpath(row.checkpoint):
        ctx.problem("report.artifact_relpath", board,
                    f"line {line}: artifact_relpath {value!r} is not {row.name}'s best.ckpt (../../Artifacts/{row.name}/best.ckpt)")


def _check_best(ctx: Context, folder: Path, best: Row) -> None:
    where = folder / "Artifacts" / best.name
    if not ctx.dir_ok(where):
        return
    for name in (BEST_CKPT, SPEC):
        path = where / name
        try:
            st = os.lstat(path)
        except OSError:
            ctx.problem("report.best_missing", path, f"{name} of the best version {best.name} is not in the report")
            continue
        if not stat.S_ISREG(st.st_mode):
            ctx.problem("report.best_missing", path, f"{name} must be a copied file, not a link or a folder")
            continue
        want = best.score.doc.get("checkpoint_sha256")
        if name == BEST_CKPT and isinstance(want, str) and ctx.sha256(path) != want:
            ctx.problem("report.best_mismatch", path, f"this best.ckpt is not the checkpoint {best.name} was evaluated with")
    src_spec = ctx.project.artifact_dir(best.name) / SPEC
    spec = read_json_quiet(src_spec) if ctx.safe(src_spec) else None  # its problems are the version's
    if isinstance(spec, dict) and isinstance(spec.get("additional_assets"), list) and spec["additional_assets"]:
        assets = where / ASSETS
        if not assets.is_dir() or assets.is_symlink():
            ctx.problem("report.best_missing", assets, f"additional_assets/ of the best version {best.name} is not in the report")


def _check_analysis(ctx: Context, path: Path, newest: bool) -> None:
    text = ctx.read_text(path, "report")
    if text is None:
        return
    for gap in final_analysis.gaps(text):
        # Step 7 ends with the agent's explanation of the top 3; an older, superseded report only warns.
        pending = gap.code == "report.analysis_pending" and not newest
        (ctx.warn if pending else ctx.problem)(gap.code, path, gap.message)
