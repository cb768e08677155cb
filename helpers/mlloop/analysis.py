"""Step 3's result-analysis.md skeleton, and the reading of both analysis documents.

``mlloop analyze vNNN`` fills in what code can compute (metric deltas against the parent and the
previous version, the trivial-baseline floor, too-few-steps, the last training-log values, the
infer_samples list) and leaves the judgement to the agent behind placeholders that
``mlloop check`` rejects until they are replaced.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .compare import CompareError, compare_versions
from .errors import Findings, MlloopError
from .formats import change_summary, result_analysis
from .formats.eval_score import EvalScore, read_eval_score
from .formats.sample_meta import read_sample_meta_quiet
from .formats.spec import too_few_steps
from .formats.trivial_baselines import Floor, read_floor
from .jsonio import JsonProblems, read_text_file, write_text_atomic
from .layout import (BASELINE, EVAL_SCORE, INFER_SAMPLES, SPEC, Project, free_backup_path,
                     version_id, version_number)
from .leaderboard import fmt
from .rules import resolve
from .scores import FRESH, provenance
from .stages import ANALYSIS_DOC, locked_dataset_id, read_json_quiet

TEXT_SUFFIXES = {".txt", ".json", ".md", ".csv", ".tsv"}


# ---- reading ------------------------------------------------------------

def read_text_quiet(path: Path) -> str | None:
    try:
        return read_text_file(path)  # a FIFO or device is refused from its stat, never opened
    except (OSError, UnicodeDecodeError, JsonProblems):
        return None


def version_parent(project: Project, vid: str) -> str:
    """A version's parent: its script header, else its spec.json, else the version before it."""
    parent = change_summary.read_fields(project.script(vid)).get("parent")
    if not parent:
        spec = read_json_quiet(project.artifact_dir(vid) / SPEC)
        parent = spec.get("parent") if isinstance(spec, dict) and isinstance(spec.get("parent"), str) else None
    if not parent:
        n = version_number(vid)
        parent = version_id(n - 1) if n and n > 1 else BASELINE
    return parent


# ---- the skeleton -------------------------------------------------------------------------

@dataclass
class AnalysisResult:
    version: str
    path: str
    parent: str
    previous: str
    beats_floor: bool | None
    floor_line: str
    backup: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ok": True, "version": self.version, "path": self.path, "parent": self.parent,
                "previous": self.previous, "beats_floor": self.beats_floor, "floor": self.floor_line,
                "backup": self.backup, "warnings": self.warnings,
                "next": f"fill Summary, Evidence, Hypotheses and Next focus candidates in {self.path}, "
                        f"then `mlloop check {self.version}`"}

    def lines(self) -> list[str]:
        out = [f"wrote {self.path} (metric deltas vs {self.parent}"
               + ("" if self.previous == self.parent else f" and {self.previous}") + ", floor, infer_samples)"]
        if self.backup:
            out.append(f"the previous version is kept as {self.backup}")
        out += [f"warning: {w}" for w in self.warnings]
        out.append(f"next: fill Summary, Evidence, Hypotheses and Next focus candidates, then `mlloop check {self.version}`")
        return out


def draft_analysis(project: Project, vid: str, force: bool = False) -> AnalysisResult:
    if version_number(vid) is None:
        err = MlloopError(f"{vid!r} is not a version id; use vNNN, e.g. v001.")
        err.exit_code = 2
        raise err
    folder = project.artifact_dir(vid)
    score_path = folder / EVAL_SCORE
    if vid not in project.versions():
        raise MlloopError(f"{vid} does not exist (no 02_train_{vid}.py, no Models/Artifacts/{vid}/); "
                          "`mlloop status` lists the versions.")
    if not score_path.is_file():
        raise MlloopError(f"{project.rel(score_path)} does not exist: {vid} is not evaluated yet; "
                          f"run `python 03_eval.py --version {vid}` first.")
    rules = resolve(project)
    dataset_id, _ = locked_dataset_id(project, rules.dataset_id)
    findings = Findings()
    score = read_eval_score(project, score_path, vid, primary_metric=rules.primary_metric,
                            dataset_id=dataset_id, findings=findings)
    if score is None:
        raise MlloopError(f"{project.rel(score_path)} cannot be read; re-run `python 03_eval.py --version {vid}`.",
                          problems=findings.problems)
    target = folder / ANALYSIS_DOC
    if target.exists() and not target.is_file():
        raise MlloopError(f"{project.rel(target)} is not a regular file (a folder, pipe or device); move it away, "
                          f"then run `mlloop analyze {vid}` again.")
    if target.exists() and not force:
        raise MlloopError(f"{project.rel(target)} already exists; edit it, or pass --force to rewrite it "
                          f"(the old one is kept as {ANALYSIS_DOC}.bak).")

    n = version_number(vid)
    parent = version_parent(project, vid)
    previous = version_id(n - 1) if n > 1 else BASELINE
    floor = read_floor(project, vid)
    beats, floor_line = floor_sentence(vid, score, floor, rules.primary_metric)
    warnings = [] if beats is not False else [floor_warning(vid, score, floor)]
    state, why = provenance(project, vid, score)
    if state != FRESH:
        warnings.append(f"the score is {state} ({why}); these deltas may not hold: run "
                        f"`python 03_eval.py --version {vid}`, then `mlloop analyze {vid} --force`")
    spec = read_json_quiet(folder / SPEC)
    too_few = too_few_steps(spec)
    if too_few:
        warnings.append(too_few)

    # The parent the script header names (not simply the version numbered before).
    deltas_title = f"Metric deltas ({parent} → {vid}" + ("" if previous == parent else f"; previous {previous}") + ")"
    deltas = [""] + delta_block(project, vid, score, parent, previous, rules) + ["", f"- {floor_line}"]
    if too_few:
        deltas.append(f"- **Too few steps**: {too_few}")
    log_line = training_log_line(project, folder)
    if log_line:
        deltas.append(f"- {log_line}")
    evidence = [result_analysis.PLACEHOLDERS["Evidence"], ""] + samples_comment(project, folder)
    text = result_analysis.render(vid, {"Metric deltas": deltas, "Evidence": evidence},
                                  titles={"Metric deltas": deltas_title})

    backup = None
    if target.exists():
        backup_path = free_backup_path(folder / ANALYSIS_DOC)
        shutil.copy2(target, backup_path)
        backup = project.rel(backup_path)
    write_text_atomic(target, text)
    return AnalysisResult(vid, project.rel(target), parent, previous, beats, floor_line, backup, warnings)


def floor_sentence(vid: str, score: EvalScore, floor: Floor | None, primary: str) -> tuple[bool | None, str]:
    """Whether ``vid`` beats its trivial floor, and the sentence that says so with the numbers."""
    if floor is None:
        return None, (f"Floor: unknown (no readable trivial_baselines.json); re-run `python 03_eval.py --version {vid}` "
                      "to record the trivial baselines.")
    value = score.value(floor.metric)
    if value is None:
        return None, f"Floor: {floor.metric} is not in eval_score.json, so the floor {fmt(floor.value)} cannot be compared."
    beats = floor.beaten_by(value)
    note = "" if floor.metric == primary else f" (the primary metric {primary} has no trivial predictor)"
    if beats:
        return True, (f"Floor: {floor.metric} {fmt(value)} beats the trivial baseline {floor.predictor} "
                      f"({fmt(floor.value)}) by {fmt(abs(value - floor.value))}{note}.")
    return False, (f"**Floor: {vid} does not beat the trivial baseline: {floor.metric} {fmt(value)} vs "
                   f"{floor.predictor} {fmt(floor.value)}{note}.** The model has learned nothing a constant "
                   "predictor does not know; check the steps per epoch, the learning rate and the loss/label "
                   "pairing before changing the model.")


def floor_warning(vid: str, score: EvalScore, floor: Floor) -> str:
    return (f"{vid} does not beat the trivial baseline: {floor.metric} {fmt(score.value(floor.metric))} "
            f"vs {floor.predictor} {fmt(floor.value)}")


def _other_score(project: Project, vid: str) -> EvalScore | None:
    path = project.artifact_dir(vid) / EVAL_SCORE
    return read_eval_score(project, path, vid) if path.is_file() else None


def delta_table(score: EvalScore, other: EvalScore, other_name: str, vid: str, primary: str) -> list[str]:
    rows = [f"| metric | {other_name} | {vid} | delta | |", "|---|---|---|---|---|"]
    seen = set()
    for m in score.metrics:
        name = m["name"]
        if name in seen:
            continue
        seen.add(name)
        before = other.value(name)
        label = f"{name} (primary)" if name == primary else name
        if before is None:
            rows.append(f"| {label} | - | {fmt(m['value'])} | - | not measured in {other_name} |")
            continue
        delta = m["value"] - before
        verdict = "same" if delta == 0 else ("better" if (delta > 0) == m["higher_is_better"] else "worse")
        rows.append(f"| {label} | {fmt(before)} | {fmt(m['value'])} | {delta:+.6g} | {verdict} |")
    return rows


def delta_block(project: Project, vid: str, score: EvalScore, parent: str, previous: str, rules) -> list[str]:
    out = []
    targets = [(parent, "parent and previous version" if parent == previous else "parent")]
    if previous != parent:
        targets.append((previous, "previous version"))
    for other, role in targets:
        if other == BASELINE:
            out += baseline_note(project, vid)
            out += [f"| metric | {vid} |", "|---|---|"]
            out += [f"| {m['name']}{' (primary)' if m['name'] == rules.primary_metric else ''} | {fmt(m['value'])} |"
                    for m in score.metrics]
            out.append("")
            continue
        other_score = _other_score(project, other)
        out.append(f"vs {other} ({role}):")
        out.append("")
        if other_score is None:
            out.append(f"{other} has no readable eval_score.json, so there are no deltas against it.")
        else:
            table, why = noise_aware_table(project, other, vid, rules)
            if table is None:
                table = [f"No intervals: {why} The verdicts below compare raw values only.", ""] + delta_table(
                    score, other_score, other, vid, rules.primary_metric)
            out += table
        out.append("")
    return out[:-1] if out and out[-1] == "" else out


def noise_aware_table(project: Project, other: str, vid: str, rules) -> tuple[list[str] | None, str]:
    """The deltas ``vid`` − ``other`` with their bootstrap intervals (``mlloop compare``), or
    (None, why they cannot be computed)."""
    try:
        comparison = compare_versions(project, other, vid, rules)
    except CompareError as exc:
        return None, str(exc)
    return [comparison.about(), ""] + comparison.table(), ""


def baseline_note(project: Project, vid: str) -> list[str]:
    """v001 against the baseline: the smoke run is another protocol, so only an indication."""
    base = read_json_quiet(project.artifact_dir(BASELINE) / SPEC)
    mine = read_json_quiet(project.artifact_dir(vid) / SPEC)
    out = [f"vs baseline (parent): the baseline smoke run is a different protocol (subset, smoke) and has no "
           f"eval_score.json, so deltas vs baseline are indicative only."]
    b = base.get("best_checkpoint") if isinstance(base, dict) else None
    m = mine.get("best_checkpoint") if isinstance(mine, dict) else None
    if isinstance(b, dict) and isinstance(m, dict) and b.get("monitor") == m.get("monitor") and b.get("monitor"):
        out += ["", f"| training monitor | baseline (smoke) | {vid} |", "|---|---|---|",
                f"| best {b['monitor']} | {fmt(b.get('score'))} | {fmt(m.get('score'))} |"]
    return out + [""]


def read_training_log(folder: Path) -> tuple[str, list[dict]] | None:
    """(relative log name, rows) of a version's logs/version_0/metrics.csv, else the latest
    version_N (Lightning's CSVLogger); None when there is none or it cannot be read."""
    logs = sorted((p for p in (folder / "logs").glob("version_*/metrics.csv") if p.is_file()),
                  key=lambda p: (p.parent.name != "version_0", p.parent.name))
    if not logs:
        return None
    try:
        with open(logs[0], newline="", encoding="utf-8") as fh:
            return f"logs/{logs[0].parent.name}/metrics.csv", list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def training_log_line(project: Project, folder: Path) -> str | None:
    """The last logged value of each column of the training log (version_0, else the latest)."""
    log = read_training_log(folder)
    if log is None:
        return None
    name, rows = log
    last: dict[str, str] = {}
    for row in rows:
        for key, value in row.items():
            if key and value not in (None, "") and key not in ("epoch", "step"):
                last[key] = value
    if not last:
        return None
    values = ", ".join(f"{k} {v}" for k, v in last.items())
    return f"Training log ({project.rel(folder / name)}, last logged values): {values}"


def _text_of(folder: Path, stem: str) -> tuple[str | None, str]:
    """(text, file name) of ``stem.*`` when it is a short text file; (None, name) otherwise."""
    files = sorted(p for p in folder.glob(f"{stem}.*") if p.is_file())
    if not files:
        return None, "-"
    path = files[0]
    if path.suffix.lower() in TEXT_SUFFIXES and path.stat().st_size <= 4096:
        text = read_text_quiet(path)
        if text is not None:
            return " ".join(text.split()), path.name
    return None, path.name


def _cell(text: str, limit: int = 60) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # Inside an HTML comment "--" would end it early; inside a table "|" splits a cell.
    return text.replace("--", "- -").replace("|", "\\|") or '""'


def samples_comment(project: Project, folder: Path) -> list[str]:
    """The infer_samples as a table inside a comment: facts for the agent, not the evidence itself."""
    samples = sorted(p for p in (folder / INFER_SAMPLES).glob("[0-9][0-9][0-9][0-9]") if p.is_dir())
    if not samples:
        return ["<!-- no infer_samples/ folders to cite -->"]
    out = [f"<!-- mlloop analyze: {project.rel(folder / 'infer_samples')} (output vs gt). Keep it or delete it.",
           "| sample | id | output | gt | |", "|---|---|---|---|---|"]
    for sample in samples:
        sid = read_sample_meta_quiet(sample).get("sample_id")
        out_text, out_name = _text_of(sample, "output")
        gt_text, gt_name = _text_of(sample, "gt")
        verdict = "" if out_text is None or gt_text is None else ("match" if out_text == gt_text else "differs")
        out.append(f"| {sample.name} | {_cell(str(sid)) if sid is not None else '-'} | "
                   f"{_cell(out_text) if out_text is not None else out_name} | "
                   f"{_cell(gt_text) if gt_text is not None else gt_name} | {verdict} |")
    out.append("-->")
    return out
