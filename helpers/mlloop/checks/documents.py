"""The documents an agent writes: the version script header, result-analysis.md,
action-extract.md, the baseline smoke report and the retry reports (each read by its module
in mlloop.formats).

Lenient about form (heading level, case, bold field names), strict about substance: a section
holding only TODO is empty, and a heading inside a code fence is not a heading.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..formats import action_extract, change_summary, patch_report, result_analysis, retry_report, smoke_report
from ..layout import BASELINE, EVAL_OUTPUTS, version_id, version_number
from ..stages import ACTION_DOC, ANALYSIS_DOC, RETRY_REPORT, SMOKE_REPORT
from .context import Context

PATCH_REPORT = "_tests/baseline_patch_report.md"
EVAL_OUTPUT_NAMES = EVAL_OUTPUTS
_EVAL_NAME_RE = re.compile("|".join(re.escape(n.split(".")[0]) for n in EVAL_OUTPUT_NAMES), re.IGNORECASE)


# ---- result-analysis.md and action-extract.md ----------------------------------------------------

def check_analysis(ctx: Context, vid: str) -> None:
    path = ctx.project.artifact_dir(vid) / ANALYSIS_DOC
    text = ctx.document(path, "analysis", f"result-analysis.md is missing (Step 3; `mlloop analyze {vid}` drafts it)")
    if text is not None:
        report_gaps(ctx, path, result_analysis.gaps(text))


def check_action(ctx: Context, vid: str) -> None:
    path = ctx.project.artifact_dir(vid) / ACTION_DOC
    text = ctx.document(path, "action", "action-extract.md is missing (Step 4: choose exactly one action)")
    if text is not None:
        report_gaps(ctx, path, action_extract.parse(text)[1])


def report_gaps(ctx: Context, path: Path, gaps) -> None:
    """A format's gaps as this check's problems (and warnings), naming the file."""
    for gap in gaps:
        (ctx.warn if gap.warning else ctx.problem)(gap.code, path, gap.message)


# ---- the version script ----------------------------------------------------------------------

def script_text(ctx: Context, vid: str) -> str | None:
    path = ctx.project.script(vid)
    if not ctx.exists(path) or not path.is_file():
        return None
    return ctx.read_text(path, "script")


def check_script(ctx: Context, vid: str, text: str | None) -> str | None:
    """The script's header and its hands-off rule for evaluation outputs; returns the parent."""
    path = ctx.project.script(vid)
    if text is None:
        return None
    check_no_eval_writes(ctx, path, text)
    if vid == BASELINE:
        return None
    summary = change_summary.parse(text)
    report_gaps(ctx, path, summary.gaps)
    header = summary.fields
    if header is None:
        return None
    from_baseline = header.get("parent") == BASELINE  # Step 0's copy changes nothing ("where: -")
    if "version" in header and header["version"] != vid:
        ctx.problem("script.header", path, f"the change summary says version {header['version']!r} but the file is {vid}")
    parent = header.get("parent")
    if parent is None:
        return None
    n = version_number(vid)
    pn = version_number(parent)
    if parent == BASELINE:
        if not ctx.project.script(BASELINE).is_file() and not ctx.project.artifact_dir(BASELINE).is_dir():
            ctx.problem("script.parent", path, "the parent is the baseline, but neither 02_train_baseline.py nor Models/Artifacts/baseline/ exists")
    elif pn is None:
        ctx.problem("script.parent", path, f"parent {parent!r} is not 'baseline' or a version id like v001")
        return None
    elif n is not None and pn >= n:
        ctx.problem("script.parent", path, f"parent {parent} is not an earlier version than {vid}")
        return None
    elif not ctx.project.script(parent).is_file():
        ctx.problem("script.parent", path, f"parent {parent} does not exist (no 02_train_{parent}.py)")
    elif n is not None and n > 1 and header.get("action_source") != f"Models/Artifacts/{version_id(n - 1)}/{ACTION_DOC}":
        # The action comes from the version analysed just before this one was authored (the
        # latest), even when the code was copied from an older, better parent.
        ctx.warn("script.action_source", path, f"action_source should be Models/Artifacts/{version_id(n - 1)}/{ACTION_DOC}, "
                 "the Selected Action of the version analysed last")
    if pn is not None and (n is None or pn < n) and not from_baseline:
        _check_change_applied(ctx, vid, path, text, parent)
    return parent


def _check_change_applied(ctx: Context, vid: str, path: Path, text: str, parent: str) -> None:
    parent_path = ctx.project.script(parent)
    if not (ctx.safe(parent_path) and parent_path.is_file()):
        return
    parent_text = ctx.read_text(parent_path, "script")
    if parent_text is not None and change_summary.code_body(text) == change_summary.code_body(parent_text):
        ctx.problem("script.unchanged", path, f"the code is {parent}'s unchanged (only the change summary differs); "
                    f"apply the Selected Action the header describes before training {vid}")


def check_no_eval_writes(ctx: Context, path: Path, text: str) -> None:
    """A training script never names the evaluation outputs (docstrings and comments aside)."""
    if not _EVAL_NAME_RE.search(text):
        return  # the common case, without parsing
    hits = _eval_names_in_code(text)
    if hits:
        ctx.problem("script.writes_eval", path,
                    f"the training script refers to {', '.join(sorted(hits))}; only 03_eval.py writes evaluation outputs "
                    "(eval_score.json, infer_samples/, eval_samples.jsonl, trivial_baselines.json)")


def _eval_names_in_code(text: str) -> set[str]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        # Not parseable: fall back to the text outside comment lines.
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        return {m.group(0).lower() for m in _EVAL_NAME_RE.finditer(code)}
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
    hits = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            hits |= {m.group(0).lower() for m in _EVAL_NAME_RE.finditer(node.value)}
        elif isinstance(node, ast.Name):
            hits |= {m.group(0).lower() for m in _EVAL_NAME_RE.finditer(node.id)}
        elif isinstance(node, ast.Attribute):
            hits |= {m.group(0).lower() for m in _EVAL_NAME_RE.finditer(node.attr)}
        elif isinstance(node, ast.alias):
            hits |= {m.group(0).lower() for m in _EVAL_NAME_RE.finditer(node.name + " " + (node.asname or ""))}
    return hits


# ---- the baseline smoke report and retry reports ---------------------------------------------

def check_smoke_report(ctx: Context) -> None:
    path = ctx.project.artifact_dir(BASELINE) / SMOKE_REPORT
    text = ctx.document(path, "smoke", "the baseline smoke test report is missing; 02_train_baseline.py writes it")
    if text is not None:
        report_gaps(ctx, path, smoke_report.gaps(text, ctx.dataset_id))


def check_patch_report(ctx: Context) -> None:
    """progressive-training Step 0's one-time baseline patch, recorded only when one was made."""
    path = ctx.project.artifact_dir(BASELINE) / PATCH_REPORT
    text = ctx.document(path, "patch")
    if text is not None:
        report_gaps(ctx, path, patch_report.gaps(text))


def check_retry_report(ctx: Context, vid: str) -> None:
    path = ctx.project.artifact_dir(vid) / RETRY_REPORT
    text = ctx.document(path, "retry")
    if text is not None:
        report_gaps(ctx, path, retry_report.parse(text)[1])
