"""``mlloop status``: where the loop stands, read off the files on disk.

Nothing is stored about the loop itself, so the answer survives an interrupted session or a
compacted context. The status names the phase and step, the locked dataset_id, ``cur``, the
parent the next version will branch from, the exact command or file to produce next, what the
current step still lacks, and per evaluated version its primary metric, whether it beats its
trivial floor and whether it trained for too few steps.

What the current step lacks or gets wrong comes from that step's check: the same functions
``mlloop check <step>`` runs (``checks.run_check`` for build-baseline and the report,
``checks.StepChecks`` for a version's steps), so the two can never disagree. It runs in a
SessionStart hook, so only the current step is checked, and the current version's checkpoint is
hashed once (its check and the score's provenance share the hash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import checks
from .errors import Findings, MlloopError, Problem
from .formats import final_analysis
from .formats.leaderboard_csv import parse_leaderboard
from .formats.spec import too_few_steps
from .formats.trivial_baselines import Floor, read_floor
from .jsonio import JsonProblems, read_text_file
from .layout import (ASSETS, BASELINE, BEST_CKPT, BUILD_BASELINE, LAST_CKPT, LEADERBOARD_CSV, LOGS,
                     PREPDATA_STATS, PROGRESSIVE_TRAINING, SPEC, Project, version_id, version_number)
from .leaderboard import load_versions
from .parent_choice import choose_parent
from .rules import resolve
from .scores import FRESH, provenance
from .stages import (ACTION, ACTION_DOC, ANALYSED, ANALYSIS_DOC, EVAL_ARTIFACTS, EVALUATED, SMOKE_REPORT,
                     TRAINED, locked_dataset_id, read_json_quiet, version_stage)

BB_STEPS = {0: "profile the raw data", 1: "data pipeline", 2: "baseline smoke test",
            3: "final check and hand-over"}
PT_STEPS = {0: "initialise the loop", 1: "train", 2: "evaluate", 3: "analyse the result",
            4: "extract one action", 5: "loop check", 6: "author the next version", 7: "final report"}
MAX_VERSION_LINES = 12  # the SessionStart hook puts these lines into a limited context
MAX_WARNING_LINES = 10
STAGE_LABEL = {None: "-", "authored": "authored", TRAINED: "trained", EVALUATED: "evaluated",
               ANALYSED: "analysed", ACTION: "action"}


@dataclass
class VersionInfo:
    vid: str
    stage: str | None
    primary: float | None = None
    floor: Floor | None = None
    floor_value: float | None = None
    beats_floor: bool | None = None
    too_few: str | None = None

    def to_dict(self) -> dict:
        return {"version": self.vid, "stage": self.stage, "primary": self.primary,
                "floor": None if self.floor is None else {
                    "metric": self.floor.metric, "value": self.floor.value, "predictor": self.floor.predictor,
                    "higher_is_better": self.floor.higher_is_better},
                "beats_floor": self.beats_floor, "too_few_steps": self.too_few}

    def line(self, primary: str) -> str:
        parts = [f"  {self.vid:<6} {STAGE_LABEL.get(self.stage, self.stage):<9}"]
        if self.primary is not None:
            parts.append(f"{primary} {_fmt(self.primary)}")
        elif self.stage in (None, "authored", TRAINED):
            parts.append("not evaluated")
        else:
            parts.append(f"no {primary}")
        if self.floor is not None:
            verdict = {True: "beats it", False: "DOES NOT BEAT IT", None: "not comparable"}[self.beats_floor]
            parts.append(f"floor {self.floor.metric} {_fmt(self.floor.value)} ({self.floor.predictor}): {verdict}")
        if self.too_few:
            parts.append("too few steps")
        return "  ".join(parts)


@dataclass
class Status:
    project: str
    phase: str = BUILD_BASELINE
    step: int | None = 0
    step_name: str = ""
    next_step: str = ""
    next_command: str = ""
    dataset_id: str | None = None
    dataset_id_source: str = "unset"
    cur: str | None = None
    max_versions: int | None = None
    branch_from: str | None = None
    next_parent: str | None = None
    next_parent_note: str = ""
    primary_metric: str | None = None
    report: str | None = None
    missing: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    versions: list[VersionInfo] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ok": not self.problems, "phase": self.phase, "step": self.step, "step_name": self.step_name,
                "next_step": self.next_step, "next_command": self.next_command,
                "dataset_id": self.dataset_id, "dataset_id_source": self.dataset_id_source,
                "cur": self.cur, "max_versions": self.max_versions, "branch_from": self.branch_from,
                "next_parent": self.next_parent, "next_parent_note": self.next_parent_note,
                "primary_metric": self.primary_metric, "report": self.report, "missing": self.missing,
                "problems": [p.to_dict() for p in self.problems],
                "warnings": [w.to_dict() for w in self.warnings],
                "versions": [v.to_dict() for v in self.versions]}

    def lines(self) -> list[str]:
        where = "done" if self.phase == "done" else f"{self.phase}, Step {self.step} ({self.step_name})"
        out = [f"phase: {where}"]
        source = {"unset": "not set yet", "rules": "from the rules"}.get(self.dataset_id_source,
                                                                      f"locked by {self.dataset_id_source}")
        out.append(f"dataset_id: {self.dataset_id or '-'} ({source})")
        if self.phase != BUILD_BASELINE:
            cur = self.cur or "none yet"
            out.append(f"cur: {cur} (max_versions {self.max_versions}); next version's parent: "
                       f"{self.next_parent or '-'} ({self.next_parent_note})")
        out.append(f"next: {self.next_command}")
        if self.next_step and self.next_step != self.next_command:
            out.append(f"  {self.next_step}")
        out += [f"missing: {m}" for m in self.missing]
        out += [f"problem: {p.line()}" for p in self.problems]
        out += [f"warning: {w.line()}" for w in self.warnings[:MAX_WARNING_LINES]]
        if len(self.warnings) > MAX_WARNING_LINES:
            out.append(f"warning: … and {len(self.warnings) - MAX_WARNING_LINES} more (`mlloop status --json` lists all)")
        if self.versions:
            shown = self.versions[-MAX_VERSION_LINES:]
            out.append(f"versions ({self.primary_metric}):")
            if len(shown) < len(self.versions):
                out.append(f"  … {len(self.versions) - len(shown)} earlier versions (`mlloop status --json` lists all)")
            out += [v.line(self.primary_metric) for v in shown]
        return out


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def loop_status(project: Project) -> Status:
    rules = resolve(project)
    st = Status(project=str(project.root), max_versions=rules.max_versions, branch_from=rules.branch_from,
                primary_metric=rules.primary_metric)
    st.problems += rules.findings.problems
    st.dataset_id, st.dataset_id_source = locked_dataset_id(project, rules.dataset_id)
    if rules.dataset_id and st.dataset_id and rules.dataset_id != st.dataset_id:
        rel = project.rel(project.rules_path(PROGRESSIVE_TRAINING))
        st.problems.append(Problem("status.dataset_id", rel,
                                   f"the rules say dataset_id {rules.dataset_id!r}, but the loop is locked to "
                                   f"{st.dataset_id!r} ({st.dataset_id_source}); set it back to {st.dataset_id!r}",
                                   "$.dataset_config.dataset_id"))
    if project.cur() is None and not _build_baseline(project, rules, st):
        return st
    _progressive(project, rules, st)
    return st


# ---- build-baseline -----------------------------------------------------------------------

def _set(st: Status, step: int, command: str, note: str = "", missing=(), phase: str = BUILD_BASELINE) -> None:
    st.phase, st.step = phase, step
    st.step_name = (BB_STEPS if phase == BUILD_BASELINE else PT_STEPS)[step]
    st.next_command, st.next_step = command, note
    st.missing += list(missing)


def _build_baseline(project: Project, rules, st: Status) -> bool:
    """Fill ``st`` for the first unfinished build-baseline step; True when all four are done."""
    sources = sorted(p.name for p in Project._listdir(project.rawdata) if p.is_dir() and not p.name.startswith("."))
    rel_raw = project.rel(project.rawdata)
    if not sources:
        _set(st, 0, f"put each data source in its own folder under {rel_raw}/, then `mlloop profile`",
             missing=[f"{rel_raw}/<source>/ (no source folder yet)"])
        return False
    profiling = project.profiling_md
    if not profiling.is_file():
        _set(st, 0, "mlloop profile", f"then complete {project.rel(profiling)} (one section per source)",
             missing=[project.rel(profiling)])
        return False
    problems = _step_check(st, lambda: checks.run_check(project, "profiling"))
    if problems:
        st.problems += problems
        _set(st, 0, f"complete {project.rel(profiling)}", "then `mlloop check profiling`")
        return False

    dataset_id = st.dataset_id
    if not dataset_id:
        rel = project.rel(project.rules_path(BUILD_BASELINE))
        _set(st, 1, f"ask the user to set dataset_config.dataset_id in {rel}",
             "only the user edits the rules; `mlloop rules` then validates them",
             missing=[f"{rel}::$.dataset_config.dataset_id"])
        return False
    if not project.pipeline_script.is_file():
        _set(st, 1, "write 01_data_pipeline.py",
             "start from the build-baseline skill's templates/01_data_pipeline.py; then `python 01_data_pipeline.py`",
             missing=["01_data_pipeline.py"])
        return False
    prep = project.prepdata(dataset_id)
    missing = [project.rel(p) for p in _prepdata_missing(prep)]
    if missing:
        _set(st, 1, "python 01_data_pipeline.py", missing=missing)
        return False
    problems = _step_check(st, lambda: checks.run_check(project, "prepdata"))
    if problems:
        st.problems += problems
        _set(st, 1, "python 01_data_pipeline.py", "after fixing the problems below (`mlloop check prepdata` lists them)")
        return False

    base = project.artifact_dir(BASELINE)
    if not project.script(BASELINE).is_file():
        _set(st, 2, "write 02_train_baseline.py",
             "start from the build-baseline skill's templates for the task type; then `python 02_train_baseline.py`",
             missing=["02_train_baseline.py"])
        return False
    smoke = base / SMOKE_REPORT
    missing = [project.rel(p) for p in _train_missing(base)]
    if not smoke.is_file():
        missing.append(project.rel(smoke))
    if missing:
        _set(st, 2, "python 02_train_baseline.py", missing=missing)
        return False
    too_few = too_few_steps(read_json_quiet(base / SPEC))
    if too_few:
        st.warnings.append(Problem("status.too_few_steps", project.rel(base / SPEC), too_few))
    problems = _step_check(st, lambda: checks.run_check(project, "baseline"))
    if any(p.code.startswith("smoke.") for p in problems):
        st.problems = _dedupe(st.problems + problems)
        _set(st, 2, "python 02_train_baseline.py", "after fixing what the smoke report says failed")
        return False
    if problems or st.problems:
        st.problems = _dedupe(st.problems + problems)
        _set(st, 3, "mlloop check", "fix the problems below; build-baseline hands over when the check is ok")
        return False
    return True


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if p.line() not in seen:
            seen.add(p.line())
            out.append(p)
    return out


def _step_check(st: Status, run, missing=()) -> list[Problem]:
    """The problems the check of the current step finds (the same functions `mlloop check`
    runs), less those of files already listed as missing. Its warnings say what the status's own
    warnings say (floor, too few steps), so they are left to `mlloop check`. A crash of the
    checker is its bug: shown as a warning, it never breaks the SessionStart status."""
    try:
        found = run()
    except Exception:  # a broken check must never break the SessionStart status
        return []
    problems = []
    for p in found.problems:
        if p.code == "check.internal":
            st.warnings.append(p)
        elif p.path not in missing:
            problems.append(p)
    return problems


def _prepdata_missing(prep: Path) -> list[Path]:
    missing = []
    if not (prep / PREPDATA_STATS).is_file():
        missing.append(prep / PREPDATA_STATS)
    for split in ("train", "valid"):
        if not any((prep / split / f"{split}.{ext}").is_file() for ext in ("jsonl", "parquet")):
            missing.append(prep / split / f"{split}.jsonl")
    for rel in ("common/df_meta.parquet", "_tests/pipeline_test_report.md"):
        if not (prep / rel).is_file():
            missing.append(prep / rel)
    return missing


def _train_missing(folder: Path) -> list[Path]:
    missing = [folder / name for name in (BEST_CKPT, LAST_CKPT, SPEC) if not (folder / name).is_file()]
    logs = list((folder / LOGS).glob("version_*/metrics.csv"))
    if not logs:
        missing.append(folder / LOGS / "version_N" / "metrics.csv")
    elif not any((p.parent / "hparams.yaml").is_file() for p in logs):
        missing.append(logs[0].parent / "hparams.yaml")
    spec = read_json_quiet(folder / SPEC)
    if isinstance(spec, dict) and isinstance(spec.get("additional_assets"), list) \
            and not (folder / ASSETS).is_dir():
        missing.append(folder / ASSETS)
    return missing


# ---- progressive-training -----------------------------------------------------------------

def _versions(project: Project, rules, st: Status):
    findings = Findings()
    rows = load_versions(project, rules, st.dataset_id, findings)
    by_name = {r.name: r for r in rows}
    infos = []
    for vid in project.versions():
        info = VersionInfo(vid, version_stage(project, vid).stage)
        row = by_name.get(vid)
        if row is not None:
            info.primary = row.score.value(rules.primary_metric)
            info.floor = read_floor(project, vid, findings)
            if info.floor is not None:
                info.floor_value = row.score.value(info.floor.metric)
                info.beats_floor = info.floor.beaten_by(info.floor_value)
        spec_path = project.spec_path(vid)
        info.too_few = too_few_steps(read_json_quiet(spec_path)) if spec_path.is_file() else None
        infos.append(info)
    return rows, infos, findings


def _progressive(project: Project, rules, st: Status) -> None:
    st.phase = PROGRESSIVE_TRAINING
    rows, st.versions, findings = _versions(project, rules, st)
    st.problems += findings.problems
    for info in st.versions:
        if info.beats_floor is False:
            st.warnings.append(Problem("status.floor", f"Models/Artifacts/{info.vid}/trivial_baselines.json",
                                       f"{info.vid} does not beat the trivial baseline: {info.floor.metric} "
                                       f"{_fmt(info.floor_value)} vs {info.floor.predictor} {_fmt(info.floor.value)}"))
        if info.too_few:
            st.warnings.append(Problem("status.too_few_steps", project.rel(project.spec_path(info.vid)), info.too_few))
    verdicts = [v.beats_floor for v in st.versions if v.floor is not None]
    if verdicts and not any(v is True for v in verdicts):
        st.warnings.insert(0, Problem("status.no_version_beats_floor", "",
                                      "no version beats its trivial baseline: every score is at the level of a "
                                      "constant predictor, so any ranking ranks failures"))
    try:
        st.next_parent, st.next_parent_note = choose_parent(project, rules, st.dataset_id, rows=rows)
    except MlloopError as exc:
        unranked = rules.branch_from == "best" and not any(r.score.value(rules.primary_metric) is not None for r in rows)
        st.next_parent = None
        st.next_parent_note = (f"branch_from: best; no version has an evaluated {rules.primary_metric} yet"
                               if unranked else str(exc))

    cur = project.cur()
    if cur is None:
        st.missing.append("02_train_v001.py")
        _set(st, 0, "mlloop new-version", f"build-baseline is complete (dataset_id {st.dataset_id}); "
             "this copies 02_train_baseline.py to 02_train_v001.py", phase=PROGRESSIVE_TRAINING)
        return
    vid = version_id(cur)
    st.cur = vid
    _other_versions(project, st, cur)
    _current_step(project, rules, st, vid, cur, {r.name: r for r in rows})


def _other_versions(project: Project, st: Status, cur: int) -> None:
    for info in st.versions:
        n = version_number(info.vid)
        if n > cur:
            st.problems.append(Problem("status.orphan_folder", f"Models/Artifacts/{info.vid}",
                                       f"the folder exists but 02_train_{info.vid}.py does not; move the folder "
                                       "aside (new-version will not overwrite it)"))
        elif n < cur and (info.stage is None or info.stage in ("authored", TRAINED)):
            st.warnings.append(Problem("status.unevaluated", f"Models/Artifacts/{info.vid}",
                                       f"{info.vid} was never evaluated; `mlloop report` evaluates it if it has "
                                       "best.ckpt"))


def _current_step(project: Project, rules, st: Status, vid: str, cur: int, rows: dict) -> None:
    """The step ``vid`` stands on: the first whose artifacts are missing, or whose part of
    ``mlloop check vid`` finds problems (listed as the status's problems)."""
    folder = project.artifact_dir(vid)
    stage = version_stage(project, vid)
    parts = checks.StepChecks(project)
    pt = PROGRESSIVE_TRAINING
    script = project.script(vid).name

    def step_problems(step: int, missing=()) -> list[Problem]:
        found = _step_check(st, lambda: parts.version(vid, step), missing)
        st.problems = _dedupe(st.problems + found)
        return found

    train_missing = [project.rel(p) for p in _train_missing(folder)]
    if not stage.reached(TRAINED) or (stage.stage == TRAINED and train_missing):
        note = "" if not stage.reached(TRAINED) else \
            "a partial run: the runtime moves the old folder to Models/Artifacts/.trash/ and trains afresh"
        if step_problems(1, train_missing) and not stage.reached(TRAINED):
            _set(st, 1, f"fix {script}", f"then `mlloop check {vid}` and `python {script}`", phase=pt)
            return
        _set(st, 1, f"python {script}", note, train_missing, phase=pt)
        return
    if step_problems(1):
        _set(st, 1, f"python {script}", f"after fixing the problems below (`mlloop check {vid}` lists them)", phase=pt)
        return
    eval_cmd = f"python 03_eval.py --version {vid}"
    eval_missing = [project.rel(folder / name) for name in EVAL_ARTIFACTS if not (folder / name).exists()]
    if not project.eval_script.is_file():
        _set(st, 2, "write 03_eval.py", f"from the progressive-training skill's templates/03_eval.py; then `{eval_cmd}`",
             ["03_eval.py"] + eval_missing, phase=pt)
        return
    if eval_missing:
        step_problems(2, eval_missing)
        _set(st, 2, eval_cmd, missing=eval_missing, phase=pt)
        return
    eval_problems = step_problems(2)
    row = rows.get(vid)
    if row is None:
        _set(st, 2, eval_cmd, f"Models/Artifacts/{vid}/eval_score.json cannot be used (see the problems)", phase=pt)
        return
    state, why = provenance(project, vid, row.score, sha256=parts.ctx.sha256)
    if state != FRESH:
        _set(st, 2, eval_cmd, f"the score is {state}: {why}", phase=pt)
        return
    if eval_problems:
        _set(st, 2, eval_cmd, f"after fixing the problems below (`mlloop check {vid}` lists them)", phase=pt)
        return
    analysis = folder / ANALYSIS_DOC
    if not stage.reached(ANALYSED):
        _set(st, 3, f"mlloop analyze {vid}", f"then fill the placeholders in {project.rel(analysis)}",
             [project.rel(analysis)], phase=pt)
        return
    if step_problems(3):
        _set(st, 3, f"fill {project.rel(analysis)}", f"then `mlloop check {vid}`", phase=pt)
        return
    action = folder / ACTION_DOC
    if stage.stage != ACTION:
        _set(st, 4, f"write {project.rel(action)}",
             "exactly one Selected Action: Goal, Change, Where, Expected impact, Risk, Verification",
             [project.rel(action)], phase=pt)
        return
    if step_problems(4):
        _set(st, 4, f"fix {project.rel(action)}", f"then `mlloop check {vid}`", phase=pt)
        return
    if cur < rules.max_versions:
        _set(st, 6, "mlloop new-version",
             f"Step 5: cur {cur} < max_versions {rules.max_versions}; v{cur + 1:03d} copies "
             f"{st.next_parent or '?'} and applies {vid}'s Selected Action", phase=pt)
        return
    _final_report(project, st, vid, cur, rules.max_versions)


def _final_report(project: Project, st: Status, vid: str, cur: int, max_versions: int) -> None:
    loop_note = f"Step 5: cur {cur} >= max_versions {max_versions}; the loop is over"
    report = _latest_report_with(project, vid)
    if report is None:
        _set(st, 7, "mlloop report", loop_note, phase=PROGRESSIVE_TRAINING)
        return
    st.report = project.rel(report)
    analysis = report / "final-analysis.md"
    problems = _step_check(st, lambda: checks.run_check(project, "report"))
    st.problems = _dedupe(st.problems + problems)
    if any(p.code.startswith("report.analysis") for p in problems):
        _set(st, 7, f"fill the agent section of {project.rel(analysis)}",
             f"why the top 3 ranked high, between {final_analysis.START} and {final_analysis.END}",
             phase=PROGRESSIVE_TRAINING)
        return
    if problems:
        _set(st, 7, "mlloop report", "the newest report has the problems below; `mlloop report` builds a fresh one",
             phase=PROGRESSIVE_TRAINING)
        return
    st.phase, st.step, st.step_name = "done", None, "loop complete"
    st.next_command = "nothing: the loop is complete"
    st.next_step = (f"the report is {st.report}/; to go on, raise loop_config.max_versions "
                    "and run `mlloop new-version`")


def _report_order(path: Path):
    """YYYY-MM-DD_HH-MM[_k] in time order, then k (``_10`` after ``_9``)."""
    suffix = path.name[17:]
    return path.name[:16], int(suffix) if suffix.isdigit() else 1


def _latest_report_with(project: Project, vid: str) -> Path | None:
    """The newest report whose leaderboard includes ``vid`` (an older one predates the loop's end)."""
    for report in sorted(project.reports(), key=_report_order, reverse=True):
        try:
            text = read_text_file(report / LEADERBOARD_CSV)  # never a FIFO: status runs at session start
        except (OSError, UnicodeDecodeError, JsonProblems):
            continue
        table, _ = parse_leaderboard(text)
        if table and any(record["version_id"] == vid for record in table.records()):
            return report
    return None
