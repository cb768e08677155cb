"""The documents an agent writes: the version script header, result-analysis.md,
action-extract.md, the baseline smoke report and the retry reports.

Lenient about form (heading level, case, bold field names), strict about substance: a section
holding only TODO is empty, and a heading inside a code fence is not a heading.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .. import markdown as md
from ..layout import BASELINE, EVAL_OUTPUTS, version_id, version_number
from ..stages import ACTION_DOC, ANALYSIS_DOC, RETRY_REPORT, SMOKE_REPORT
from .context import Context

ANALYSIS_SECTIONS = ("Summary", "Metric deltas", "Evidence", "Hypotheses", "Next focus candidates")
ACTION_FIELDS = ("Goal", "Change", "Where", "Expected impact", "Risk", "Verification")
SMOKE_SECTIONS = ("Model contract", "Learnability probe", "Batch-size search", "Smoke run")
RETRY_FIELDS = ("attempt", "error_summary", "root_cause_hypothesis", "code_change_summary", "status")
PATCH_REPORT = "_tests/baseline_patch_report.md"
PATCH_FIELDS = ("issues_found", "patch_summary", "files_changed", "compatibility_notes")
HEADER_START = "# === mlloop change summary ==="
HEADER_END = "# === end change summary ==="
HEADER_FIELDS = ("version", "parent", "action_source", "goal", "change", "where")
EVAL_OUTPUT_NAMES = EVAL_OUTPUTS
_EVAL_NAME_RE = re.compile("|".join(re.escape(n.split(".")[0]) for n in EVAL_OUTPUT_NAMES), re.IGNORECASE)


# ---- sections ---------------------------------------------------------------------------------

def _key(title: str) -> str:
    return md.normalise(title).replace("&", "and")


def matches(title: str, name: str) -> bool:
    """``Metric deltas (v001 → v002)`` counts as ``Metric deltas``; ``Summaryish`` does not."""
    return _key_matches(_key(title), _key(name))


def _key_matches(key: str, want: str) -> bool:
    return key == want or (key.startswith(want) and not key[len(want)].isalnum())


def require_sections(ctx: Context, path: Path, text: str, names, code: str) -> dict[str, md.Section]:
    keyed = [(_key(s.title), s) for s in md.sections(text)]
    found = {}
    for name in names:
        want = _key(name)
        hits = [s for key, s in keyed if _key_matches(key, want)]
        if not hits:
            fenced = any(_key_matches(_key(t), want) for t in md.fenced_headings(text))
            hint = " (it appears only inside a code block, which does not count)" if fenced else ""
            ctx.problem(f"{code}.missing_section", path, f"the section {name!r} is missing{hint}")
        elif md.is_placeholder(hits[0].body):
            ctx.problem(f"{code}.empty_section", path, f"the section {name!r} is empty or placeholder text; write it")
        else:
            found[name] = hits[0]
    return found


# ---- result-analysis.md and action-extract.md ----------------------------------------------------

def check_analysis(ctx: Context, vid: str) -> None:
    path = ctx.project.artifact_dir(vid) / ANALYSIS_DOC
    text = ctx.document(path, "analysis", f"result-analysis.md is missing (Step 3; `mlloop analyze {vid}` drafts it)")
    if text is not None:
        require_sections(ctx, path, text, ANALYSIS_SECTIONS, "analysis")


def check_action(ctx: Context, vid: str) -> None:
    path = ctx.project.artifact_dir(vid) / ACTION_DOC
    text = ctx.document(path, "action", "action-extract.md is missing (Step 4: choose exactly one action)")
    if text is None:
        return
    selected = [s for s in md.sections(text) if _key(s.title).startswith("selected action")]
    if not selected:
        hint = " (it appears only inside a code block)" if any(_key(t).startswith("selected action") for t in md.fenced_headings(text)) else ""
        ctx.problem("action.selected", path, f"no 'Selected Action' heading{hint}; exactly one action is chosen per version")
        return
    if len(selected) > 1:
        lines = ", ".join(str(s.line) for s in selected)
        ctx.problem("action.selected", path, f"{len(selected)} 'Selected Action' headings (lines {lines}); exactly one action "
                    "is chosen per version; move the others under 'Deferred Candidates'")
        return
    body = selected[0].body
    for name in ACTION_FIELDS:
        pattern = re.compile(md.FIELD_RE.format(name=re.escape(name)), re.IGNORECASE)
        count = sum(1 for line in body.splitlines() if pattern.match(line))
        count += sum(1 for s in md.sections(body) if s.key == md.normalise(name))
        value = md.field_value(body, name)
        if value is None:
            ctx.problem("action.missing_field", path, f"the Selected Action has no {name!r} field")
        elif count > 1:
            ctx.problem("action.selected", path, f"the Selected Action has {count} {name!r} fields; it describes one action")
        elif md.is_placeholder(value):
            ctx.problem("action.empty_field", path, f"the Selected Action's {name!r} is empty or placeholder text")


# ---- the version script ----------------------------------------------------------------------

def script_text(ctx: Context, vid: str) -> str | None:
    path = ctx.project.script(vid)
    if not ctx.exists(path) or not path.is_file():
        return None
    return ctx.read_text(path, "script")


def parse_header(text: str) -> dict | None:
    """The change-summary fields, or None when the header is absent from the top of the file."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and i < 2 and (lines[i].startswith("#!") or re.match(r"^#.*coding[:=]", lines[i])):
        i += 1
    if i >= len(lines) or lines[i].strip() != HEADER_START:
        return None
    fields = {}
    for line in lines[i + 1:i + 40]:
        if line.strip() == HEADER_END:
            return fields
        m = re.match(r"^#\s*([a-z_]+)\s*:\s*(.*?)\s*$", line)
        if m:
            fields.setdefault(m.group(1), m.group(2))
    return None


def check_script(ctx: Context, vid: str, text: str | None) -> str | None:
    """The script's header and its hands-off rule for evaluation outputs; returns the parent."""
    path = ctx.project.script(vid)
    if text is None:
        return None
    check_no_eval_writes(ctx, path, text)
    if vid == BASELINE:
        return None
    header = parse_header(text)
    if header is None:
        ctx.problem("script.header", path, f"no change-summary header at the top ('{HEADER_START}' … '{HEADER_END}'); "
                    "`mlloop new-version` writes it")
        return None
    from_baseline = header.get("parent") == BASELINE  # Step 0's copy changes nothing ("where: -")
    for name in HEADER_FIELDS:
        if name not in header:
            ctx.problem("script.header", path, f"the change summary has no '# {name}:' line")
        elif name in ("goal", "change", "where") and not from_baseline and md.is_placeholder(header[name]):
            ctx.problem("script.header", path, f"the change summary's {name!r} is empty or placeholder text")
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


def code_body(text: str) -> list[str]:
    """The script without its change-summary header, blank lines and whole-line comments: what
    runs. Two scripts with equal bodies train the same way whatever their headers say."""
    lines = text.splitlines()
    if HEADER_START in (line.strip() for line in lines[:3]):
        start = next(i for i, line in enumerate(lines) if line.strip() == HEADER_START)
        end = next((i for i in range(start, min(len(lines), start + 40)) if lines[i].strip() == HEADER_END), None)
        if end is not None:
            lines = lines[:start] + lines[end + 1:]
    return [line.rstrip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _check_change_applied(ctx: Context, vid: str, path: Path, text: str, parent: str) -> None:
    parent_path = ctx.project.script(parent)
    if not (ctx.safe(parent_path) and parent_path.is_file()):
        return
    parent_text = ctx.read_text(parent_path, "script")
    if parent_text is not None and code_body(text) == code_body(parent_text):
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
    if text is None:
        return
    fields = md.bullets(text)
    result = fields.get("overall_result")
    if result is None:
        ctx.problem("smoke.result", path, "no '- overall_result: PASS|FAIL' line")
    elif result.strip().upper().startswith("FAIL"):
        ctx.problem("smoke.failed", path, "the smoke test FAILED (overall_result: FAIL); fix 02_train_baseline.py and re-run it")
    elif result.strip().upper() != "PASS":
        ctx.problem("smoke.result", path, f"overall_result is {result!r}; expected PASS or FAIL")
    else:
        for part in ("contract_result", "probe_result"):
            if fields.get(part, "PASS").strip().upper().startswith("FAIL"):
                ctx.problem("smoke.inconsistent", path, f"overall_result is PASS but {part} is FAIL; PASS needs every part to pass")
        obs = fields.get("optimal_batch_size")
        if obs is None or not re.fullmatch(r"[1-9][0-9]*", obs.strip()):
            ctx.problem("smoke.result", path, f"optimal_batch_size must be a positive integer, found {obs!r}")
    did = fields.get("dataset_id")
    if did is not None and ctx.dataset_id and did.strip().strip("`") != ctx.dataset_id:
        ctx.problem("smoke.dataset_id", path, f"the smoke test ran on dataset_id {did!r}, not the loop's {ctx.dataset_id!r}")
    secs = md.sections(text)
    for name in SMOKE_SECTIONS:
        if not any(matches(s.title, name) for s in secs):
            ctx.problem("smoke.section", path, f"the section {name!r} is missing")
    history = [s for s in secs if matches(s.title, "Retry history")]
    if history:
        _check_attempts(ctx, path, md.sections(history[0].body))


def check_patch_report(ctx: Context) -> None:
    """progressive-training Step 0's one-time baseline patch, recorded only when one was made."""
    path = ctx.project.artifact_dir(BASELINE) / PATCH_REPORT
    text = ctx.document(path, "patch")
    if text is None:
        return
    fields = md.bullets(text)
    for name in PATCH_FIELDS:
        if name not in fields or md.is_placeholder(fields[name]):
            ctx.problem("patch.field", path, f"no '- {name}: ...' line; the patch report records "
                        + ", ".join(PATCH_FIELDS))


def check_retry_report(ctx: Context, vid: str) -> None:
    path = ctx.project.artifact_dir(vid) / RETRY_REPORT
    text = ctx.document(path, "retry")
    if text is not None:
        _check_attempts(ctx, path, md.sections(text))


def _check_attempts(ctx: Context, path: Path, secs) -> None:
    for sec in secs:
        if not _key(sec.title).startswith("attempt"):
            continue
        fields = md.bullets(sec.body)
        for name in RETRY_FIELDS:
            if name not in fields or md.is_placeholder(fields[name]):
                ctx.problem("retry.field", path, f"'{sec.title}' has no {name} (each attempt records attempt, error_summary, "
                            "root_cause_hypothesis, code_change_summary, status)")
        status = fields.get("status", "")
        if status and not re.match(r"^(PASS|FAIL)\b", status.strip(), re.IGNORECASE):
            ctx.problem("retry.field", path, f"'{sec.title}' status is {status!r}; expected PASS or FAIL")
