"""``mlloop report`` (progressive-training Step 7): re-evaluate, rank, copy the best, explain.

Under the writer lock: every version whose score is not provably fresh (stale, tampered, no
provenance, unreadable, never evaluated) is evaluated again with the project's frozen
``03_eval.py``; external models are read (or evaluated with their own ``evaluation.py``); the
report is built in a hidden folder beside ``Models/Report/YYYY-MM-DD_HH-MM/`` and renamed into
place, so a reader never sees half a report and no earlier report is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .analysis import read_text_quiet, version_parent
from .checkpoint_scan import inspect_checkpoint
from .compare import ranking_noise
from .errors import Findings, MlloopError
from .formats import action_extract, change_summary
from .formats import final_analysis as final_doc  # final_analysis() below writes it
from .formats.eval_score import read_eval_score
from .formats.trivial_baselines import read_floor
from .heldout import analysis_lines, score_top
from .jsonio import sha256_file, write_text_atomic
from .layout import (ASSETS, BEST_CKPT, EVAL_SCORE, EVAL_SCRIPT, LEADERBOARD_CSV, SPEC, TRIVIAL_BASELINES,
                     Project, is_inside, version_id)
from .leaderboard import EXTERNAL, Ranking, Row, build_leaderboard, fmt, with_test_columns
from .lock import writer_lock
from .report_html import render_html as render
from .report_pictures import render_pictures
from .rules import resolve
from .scores import FRESH, TAMPERED, UNKNOWN, provenance
from .stages import ACTION_DOC, ANALYSIS_DOC, locked_dataset_id

TAIL_LINES = 6


@dataclass
class ReportResult:
    path: str
    best: str
    best_value: float | None
    primary: str
    rows: int
    reevaluated: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    none_beat_floor: bool = False
    test_scores: dict | None = None
    tied_with_best: list[str] = field(default_factory=list)    # within noise of the best on the primary metric
    metrics_disagree: list[str] = field(default_factory=list)  # other metrics whose winner is another version

    def to_dict(self) -> dict:
        return {"ok": True, "report": self.path, "leaderboard": f"{self.path}/leaderboard.csv",
                "final_analysis": f"{self.path}/final-analysis.md", "best": self.best,
                "best_value": self.best_value, "primary_metric": self.primary, "rows": self.rows,
                "reevaluated": [{"version": v, "reason": r} for v, r in self.reevaluated],
                "none_beat_floor": self.none_beat_floor, "test_scores": self.test_scores,
                "tied_with_best": self.tied_with_best, "metrics_disagree": self.metrics_disagree,
                "report_html": f"{self.path}/report.html", "warnings": self.warnings, "next": self.next_step()}

    def next_step(self) -> str:
        return (f"fill the section between {final_doc.START} and {final_doc.END} in "
                f"{self.path}/final-analysis.md (why the top 3 ranked high)")

    def lines(self) -> list[str]:
        out = [f"re-evaluated {v} ({r})" for v, r in self.reevaluated]
        out.append(f"wrote {self.path}/ (leaderboard.csv: {self.rows} rows, final-analysis.md, report.html, "
                   f"Artifacts/{self.best}/)")
        out.append(f"best: {self.best} ({self.primary} {fmt(self.best_value)})")
        for vid, t in (self.test_scores or {}).items():
            out.append(f"held-out test: {vid} {self.primary} {fmt(t['value'])} [{fmt(t['low'])}, {fmt(t['high'])}] "
                       f"on {t['num_samples']} samples")
        if self.test_scores is None:
            out.append("note: no test split (dataset_config.test_ratio), so the best score is optimistic")
        if self.tied_with_best:
            out.append(f"statistically tied with {self.best} on {self.primary}: {', '.join(self.tied_with_best)} "
                       "(final-analysis.md gives the intervals)")
        if self.metrics_disagree:
            out.append(f"another winner by {', '.join(self.metrics_disagree)} (final-analysis.md says which)")
        if self.none_beat_floor:
            out.append("warning: no version beats its trivial baseline; the leaderboard ranks failures")
        out += [f"warning: {w}" for w in self.warnings]
        out.append(f"next: {self.next_step()}")
        return out


def build_report(project: Project, progress=None, now: datetime | None = None,
                 lock_timeout: float | None = None) -> ReportResult:
    progress = progress or (lambda message: None)
    rules = resolve(project)
    if rules.findings.problems:
        raise MlloopError(f"the rules have {len(rules.findings.problems)} problem(s); fix them first "
                          "(`mlloop rules` lists them).", problems=rules.findings.problems)
    dataset_id, _ = locked_dataset_id(project, rules.dataset_id)
    if dataset_id is None:
        raise MlloopError("the loop has no dataset_id (no Models/Artifacts/baseline/spec.json and none in the rules); "
                          "set dataset_config.dataset_id in the rules.")
    with writer_lock(project, "mlloop report", lock_timeout):
        warnings: list[str] = []
        excluded = set()
        reevaluated = refresh_versions(project, rules, dataset_id, progress, warnings, excluded)
        externals = load_externals(project, rules, dataset_id, progress, warnings)
        name = free_report_name(project, now or datetime.now())
        final = project.report_root / name
        findings = Findings()
        ranking, csv_text = build_leaderboard(project, rules, dataset_id, final, externals, findings, excluded)
        # A missing primary metric is summed up once below ("ranked last"), not once per file.
        warnings += [p.line() for p in findings.problems if p.code != "eval.primary_missing"]
        best = ranking.best_version()
        if best is None:
            raise MlloopError("no version has an eval_score.json, so there is nothing to rank; "
                              "evaluate with `python 03_eval.py --version vNNN` first.")
        for vid in project.versions():
            if vid not in {r.name for r in ranking.rows} and vid not in excluded \
                    and not (project.artifact_dir(vid) / BEST_CKPT).is_file():
                warnings.append(f"{vid}: not trained (no best.ckpt) and not evaluated; it is not on the leaderboard.")
        if ranking.missing_primary:
            names = ", ".join(r.name for r in ranking.missing_primary)
            warnings.append(f"no {ranking.primary} in eval_score.json for {names}; ranked last.")
        floors = {r.name: read_floor(project, r.name) for r in ranking.rows if r.kind != EXTERNAL}
        none_beat = _none_beat(ranking, floors)
        noise = ranking_noise(project, rules, ranking, best)
        project.report_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=project.report_root))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0o700); a report is a normal folder
        try:
            held, pictures = report_extras(project, rules, dataset_id, ranking, floors, best, tmp, progress)
            csv_text = add_test_columns(csv_text, held, ranking.primary)
            text = final_analysis(project, rules, ranking, floors, best, reevaluated, warnings, none_beat,
                                  dataset_id, name, held=held, pictures=pictures, noise=noise)
            write_text_atomic(tmp / LEADERBOARD_CSV, csv_text)
            write_text_atomic(tmp / "final-analysis.md", text)
            write_text_atomic(tmp / "report.html", render_html(
                name=name, dataset_id=dataset_id, ranking=ranking, floors=floors, best=best, held=held,
                pictures=pictures, report_dir=tmp, warnings=warnings, none_beat=none_beat))
            copy_best(project, best, tmp / "Artifacts" / best.name)
            if final.exists():  # cannot happen under the lock, unless someone made it by hand
                raise MlloopError(f"{project.rel(final)} appeared while the report was being built; run `mlloop report` again.")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    progress(f"report written to {project.rel(final)}/")
    return ReportResult(project.rel(final), best.name, best.primary, ranking.primary, len(ranking.rows),
                        reevaluated, warnings, none_beat, test_scores=held.summary(ranking.primary),
                        tied_with_best=noise.tied, metrics_disagree=noise.disagreements)


def report_extras(project: Project, rules, dataset_id: str, ranking: Ranking, floors: dict, best: Row,
                  report_dir: Path, progress):
    """The held-out test scores of the top 3 (when test_ratio is set) and the pictures."""
    held = score_top(project, rules, dataset_id, ranking, report_dir, progress)
    progress("drawing the report's pictures")
    return held, render_pictures(project, rules, ranking, floors, best, held, report_dir)


def render_html(**kwargs) -> str:
    return render(**kwargs)


def add_test_columns(csv_text: str, held, primary: str) -> str:
    return with_test_columns(csv_text, held, primary)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def free_report_name(project: Project, when: datetime) -> str:
    base = when.strftime("%Y-%m-%d_%H-%M")
    name, k = base, 1
    while (project.report_root / name).exists() or (project.report_root / name).is_symlink():
        k += 1
        name = f"{base}_{k}"
    return name


def _none_beat(ranking: Ranking, floors: dict) -> bool:
    verdicts = []
    for row in ranking.rows:
        floor = floors.get(row.name)
        if floor is not None:
            verdicts.append(floor.beaten_by(row.score.value(floor.metric)))
    return bool(verdicts) and not any(v is True for v in verdicts)


# ---- re-evaluation ------------------------------------------------------------------------

def refresh_versions(project: Project, rules, dataset_id: str, progress, warnings: list[str],
                     excluded: set[str]) -> list[tuple[str, str]]:
    """Evaluate again every version whose score is not provably fresh; ``[(vid, why)]``."""
    hashes: dict[Path, str] = {}

    def sha256_once(path: Path) -> str:  # 03_eval.py is shared by every version: hash it once
        if path not in hashes:
            hashes[path] = sha256_file(path)
        return hashes[path]

    plan = []
    for _, folder in project.version_dirs():
        vid = folder.name
        score_path = folder / EVAL_SCORE
        has_ckpt = (folder / BEST_CKPT).is_file()
        if not score_path.exists():
            if has_ckpt:
                plan.append((vid, "never evaluated"))
            continue
        found = Findings()
        score = read_eval_score(project, score_path, vid, primary_metric=rules.primary_metric,
                                dataset_id=dataset_id, findings=found)
        if score is None:
            reason = f"eval_score.json is unreadable: {found.problems[0].message}"
            warnings.append(f"{vid}: {reason}; re-evaluated.")
        elif any(p.code == "eval.dataset_id" for p in found.problems):
            reason = f"scored on dataset_id {score.dataset_id!r}, not the loop's {dataset_id!r}"
            warnings.append(f"{vid}: {reason}; re-evaluated.")
        else:
            state, why = provenance(project, vid, score, sha256=sha256_once)
            if state == FRESH:
                continue
            reason = f"{state}: {why}"
            if state in (TAMPERED, UNKNOWN):
                warnings.append(f"{vid}: {reason}; re-evaluated, the old file is kept under Models/Artifacts/.trash/.")
        if not has_ckpt:
            warnings.append(f"{vid}: {reason}, and best.ckpt is missing, so it cannot be re-evaluated; "
                            "it is not on the leaderboard.")
            excluded.add(vid)
            continue
        plan.append((vid, reason))
    if plan and not project.eval_script.is_file():
        names = ", ".join(v for v, _ in plan)
        raise MlloopError(f"{EVAL_SCRIPT} does not exist, and {names} must be (re-)evaluated before ranking; "
                          "write 03_eval.py from the template, then run `mlloop report` again.")
    for i, (vid, reason) in enumerate(plan, start=1):
        evaluate_version(project, vid, reason, f"[{i}/{len(plan)}]", progress)
    return plan


def _keep_old_scores(project: Project, vid: str) -> None:
    folder = project.artifact_dir(vid)
    old = [folder / name for name in (EVAL_SCORE, TRIVIAL_BASELINES) if (folder / name).is_file()]
    if not old:
        return
    aside = project.trash_root / f"{vid}-eval-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
    aside.mkdir(parents=True)
    for path in old:
        shutil.copy2(path, aside / path.name)


def _tail(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    lines = text.splitlines()[-TAIL_LINES:]
    return "\n".join(f"  {line}" for line in lines) if lines else "  (no output)"


def evaluate_version(project: Project, vid: str, reason: str, counter: str, progress) -> None:
    command = f"python {EVAL_SCRIPT} --version {vid}"
    progress(f"{counter} re-evaluating {vid} ({reason}): {command}")
    _keep_old_scores(project, vid)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, EVAL_SCRIPT, "--version", vid], cwd=project.root,
                          capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise MlloopError(f"{vid}: `{command}` failed (exit {proc.returncode}); the report was not built. "
                          f"Last lines of its output:\n{_tail(proc)}")
    path = project.artifact_dir(vid) / EVAL_SCORE
    found = Findings()
    score = read_eval_score(project, path, vid, findings=found) if path.is_file() else None
    if score is None:
        detail = found.problems[0].line() if found.problems else f"{project.rel(path)} was not written"
        raise MlloopError(f"{vid}: `{command}` exited 0 but left no valid eval_score.json ({detail}).")
    state, why = provenance(project, vid, score)
    if state != FRESH:
        raise MlloopError(f"{vid}: `{command}` ran, but its eval_score.json is still {state} ({why}); "
                          "03_eval.py must record checkpoint_sha256, eval_script_sha256 and score_sha256.")
    progress(f"{counter} {vid} evaluated in {time.monotonic() - started:.1f} s")


# ---- external models ----------------------------------------------------------------------

def load_externals(project: Project, rules, dataset_id: str, progress, warnings: list[str]) -> list[Row]:
    rows = []
    for folder in project.external_models():
        rel = project.rel(folder)
        if not is_inside(project.root, folder):
            warnings.append(f"{rel}: a link that leaves the project; skipped.")
            continue
        score_path = folder / EVAL_SCORE
        if not score_path.exists():
            if not (folder / "evaluation.py").is_file():
                warnings.append(f"{rel}: neither eval_score.json nor evaluation.py; skipped.")
                continue
            evaluate_external(project, folder, rules, dataset_id, progress)
        found = Findings()
        score = read_eval_score(project, score_path, folder.name, primary_metric=rules.primary_metric,
                                dataset_id=dataset_id, findings=found)
        if score is None:
            warnings.append(f"{rel}/eval_score.json is unreadable ({found.problems[0].message}); skipped.")
            continue
        if any(p.code == "eval.dataset_id" for p in found.problems):
            warnings.append(f"{rel}: scored on dataset_id {score.dataset_id!r}, not the loop's {dataset_id!r}; "
                            "left off the leaderboard.")
            continue
        rows.append(Row(folder.name, EXTERNAL, folder, score))
    return rows


def evaluate_external(project: Project, folder: Path, rules, dataset_id: str, progress) -> None:
    rel = project.rel(folder)
    args = [f"{rel}/evaluation.py", "--dataset_id", dataset_id, "--output_dir", rel,
            "--seed", str(rules.seed), "--infer_samples", str(rules.infer_samples)]
    progress(f"evaluating external model {folder.name}: python {' '.join(args)}")
    proc = subprocess.run([sys.executable, *args], cwd=project.root, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise MlloopError(f"{folder.name}: `python {rel}/evaluation.py` failed (exit {proc.returncode}); "
                          f"the report was not built. Last lines of its output:\n{_tail(proc)}")
    if not (folder / EVAL_SCORE).is_file():
        raise MlloopError(f"{folder.name}: `python {rel}/evaluation.py` exited 0 but wrote no {rel}/eval_score.json.")


# ---- best artifacts -----------------------------------------------------------------------

def copy_best(project: Project, best: Row, dest: Path) -> None:
    """best.ckpt, spec.json and additional_assets/ as regular files; links may not leave the project."""
    dest.mkdir(parents=True)
    for name in (BEST_CKPT, SPEC):
        src = best.folder / name
        if src.exists() or src.is_symlink():
            _copy_file(project, src, dest / name)
    assets = best.folder / ASSETS
    if assets.exists() or assets.is_symlink():
        _copy_tree(project, assets, dest / ASSETS, set())


def _refuse_escape(project: Project, src: Path) -> None:
    if not is_inside(project.root, src):
        raise MlloopError(f"{project.rel(src)} is a link that leaves the project; the report copies only files "
                          "inside it. Replace the link with the file itself.")


CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


def _copy_file(project: Project, src: Path, dst: Path) -> None:
    _refuse_escape(project, src)
    if src.is_file():
        if src.suffix.lower() in CHECKPOINT_SUFFIXES:
            _refuse_unsafe_checkpoint(project, src)
        shutil.copyfile(src, dst)  # follows an in-project link, writes a regular file


def _refuse_unsafe_checkpoint(project: Project, src: Path) -> None:
    """The report hands its checkpoint to whoever loads it next: only a weights-only one goes."""
    found = inspect_checkpoint(src)
    if found:
        raise MlloopError(f"{project.rel(src)}: {found[0].message}; the report copies only checkpoints that load "
                          "with torch.load(weights_only=True), so it was not built.")


def _copy_tree(project: Project, src: Path, dst: Path, seen: set[str]) -> None:
    _refuse_escape(project, src)
    real = os.path.realpath(src)
    if real in seen or not src.is_dir():
        return
    seen.add(real)
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        if entry.is_dir():
            _copy_tree(project, entry, dst / entry.name, seen)
        else:
            _copy_file(project, entry, dst / entry.name)


# ---- final-analysis.md --------------------------------------------------------------------

def _relative_link(project: Project, path: Path) -> str:
    return Path(os.path.relpath(path, project.report_root / "x")).as_posix()


def final_analysis(project: Project, rules, ranking: Ranking, floors: dict, best: Row,
                   reevaluated, warnings, none_beat: bool, dataset_id: str, name: str, *, held=None,
                   pictures=(), noise=None) -> str:
    primary = ranking.primary
    direction = "higher is better" if ranking.higher_is_better else "lower is better"
    out = []
    if none_beat:
        shown = next(iter(f for f in floors.values() if f is not None))
        out += [f"> **WARNING: no version beats its trivial baseline.** No version's score is better than what a "
                f"trivial predictor gets (e.g. {shown.predictor}: {shown.metric} {fmt(shown.value)}), so this "
                "leaderboard ranks failures: its \"best\" is only the least bad. Check the steps per epoch, the "
                "learning rate and the loss/label pairing before another loop.", ""]
    out += [f"# Final analysis — {name}", "",
            f"- dataset_id: {dataset_id}",
            f"- primary metric: {primary} ({direction})",
            f"- best version: {best.name} ({primary} {fmt(best.primary)}); its artifacts are in Artifacts/{best.name}/",
            f"- rows: {len(ranking.rows)} (see leaderboard.csv)"]
    if reevaluated:
        out.append("- re-evaluated before ranking: " + "; ".join(f"{v} ({r})" for v, r in reevaluated))
    others = [m for m, _ in ranking.tie_metrics]
    out += ["", "## Ranking", "",
            "| rank | version_id | " + " | ".join([primary] + others) + " | trivial floor | beats floor | parent |",
            "|" + "---|" * (5 + len(others) + 1)]
    parents = {}
    for i, row in enumerate(ranking.rows, start=1):
        floor = floors.get(row.name)
        if floor is None:
            floor_cell, beats = "-", "-"
        else:
            verdict = floor.beaten_by(row.score.value(floor.metric))
            floor_cell = f"{floor.metric} {fmt(floor.value)} ({floor.predictor})"
            beats = {True: "yes", False: "**NO**", None: "-"}[verdict]
        parents[row.name] = "external" if row.kind == EXTERNAL else version_parent(project, row.name)
        values = " | ".join(fmt(row.score.value(m)) for m in [primary] + others)
        out.append(f"| {i} | {row.name} | {values} | {floor_cell} | {beats} | {parents[row.name]} |")
    out += ["", ranking.tie_rule()]
    out += [f"- {tie.sentence(primary)}" for tie in ranking.ties]
    out += noise.lines if noise else []
    if held is not None:
        out += [""] + analysis_lines(held, ranking)
    if pictures:
        out += ["", "## Pictures", "", "All of them, with the leaderboard, in [report.html](report.html).", ""]
        out += [f"- [{p.title}]({p.file}): {p.caption}" for p in pictures]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]

    out += ["", "## Top 3", ""]
    for i, row in enumerate(ranking.rows[:3], start=1):
        out.append(f"### {i}. {row.name} — {primary} {fmt(row.primary)}")
        if row.kind == EXTERNAL:
            out += [f"- external reference model ({project.rel(row.folder)}/), not built by the loop", ""]
            continue
        header = change_summary.read_fields(project.script(row.name))
        folder = project.artifact_dir(row.name)
        out += [f"- parent: {parents[row.name]}",
                f"- change: {header.get('change', '(no change-summary header in the script)')}"
                + (f" (goal: {header['goal']})" if header.get("goal") and header["goal"] != "-" else ""),
                f"- documents: [result-analysis.md]({_relative_link(project, folder / ANALYSIS_DOC)}), "
                f"[action-extract.md]({_relative_link(project, folder / ACTION_DOC)}), "
                f"script {project.script(row.name).name}", ""]

    cur = project.cur()
    out += ["## Next step (selected, not built)", ""]
    if cur is None:
        out += ["No version script exists.", ""]
    else:
        last = version_id(cur)
        action_path = project.artifact_dir(last) / ACTION_DOC
        text = read_text_quiet(action_path)
        fields, gaps = action_extract.parse(text) if text is not None else ({}, ["missing"])
        if gaps:
            out += [f"{last} has no valid {ACTION_DOC}, so no next step was recorded.", ""]
        else:
            why = (f"the loop ended at max_versions={rules.max_versions}" if cur >= rules.max_versions
                   else f"the loop stopped at {last}, before max_versions={rules.max_versions}")
            out += [f"The Selected Action of {last} ({project.rel(action_path)}) was never built: {why}.", ""]
            out += [f"- {key}: {' '.join(value.split())}" for key, value in fields.items()]
            out.append("")
    out += final_doc.render_agent_block()
    return "\n".join(out)
