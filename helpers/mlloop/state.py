"""``mlloop status``: where the loop stands, read off the files on disk.

Nothing is stored about the loop itself, so the answer survives an interrupted session or a
compacted context. The status names the phase and step, the locked dataset_id, ``cur``, the
parent the next version will branch from, the exact command or file to produce next, what the
current step still lacks, and per evaluated version its primary metric, whether it beats its
trivial floor and whether it trained for too few steps. It runs in a SessionStart hook, so it is
cheap: small JSON and Markdown reads, one checkpoint hash at most (the current version's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import markdown as md
from .errors import Findings, MlloopError, Problem
from .formats.leaderboard_csv import parse_leaderboard
from .formats.spec import too_few_steps
from .formats.trivial_baselines import Floor, read_floor
from .jsonio import JsonProblems, read_text_file
from .layout import (ASSETS, BASELINE, BEST_CKPT, BUILD_BASELINE, LAST_CKPT, LEADERBOARD_CSV, LOGS,
                     PREPDATA_STATS, PROGRESSIVE_TRAINING, SPEC, TESTS, Project, version_id, version_number)
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
PROFILE_SUBSECTIONS = ("Sample unit definition", "Paths & naming rules", "Label schema", "Edge cases",
                       "Extraction rules", "Sanity checks")
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
    gaps, problems = profiling_gaps(project, profiling, sources)
    if gaps or problems:
        st.problems += problems
        _set(st, 0, f"complete {project.rel(profiling)}", "then `mlloop check profiling`", gaps)
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
    report = prep / TESTS / "pipeline_test_report.md"
    if missing:
        _set(st, 1, "python 01_data_pipeline.py", missing=missing)
        return False
    if _bullet(report, "overall_result").upper().startswith("FAIL"):
        st.problems.append(Problem("status.pipeline_fail", project.rel(report),
                                   "the pipeline tests FAILed; fix 01_data_pipeline.py and run it again"))
        _set(st, 1, "python 01_data_pipeline.py", "after fixing what the test report says failed")
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
    result = _bullet(smoke, "overall_result").upper()
    if result != "PASS":
        st.problems.append(Problem("status.smoke_fail", project.rel(smoke),
                                   f"overall_result is {result or 'missing'}, not PASS; fix 02_train_baseline.py "
                                   "(see the failing section), then run it again"))
        _set(st, 2, "python 02_train_baseline.py", "after fixing what the smoke report says failed")
        return False
    too_few = too_few_steps(read_json_quiet(base / SPEC))
    if too_few:
        st.warnings.append(Problem("status.too_few_steps", project.rel(base / SPEC), too_few))

    problems = list(st.problems)
    smoke_id = _bullet(smoke, "dataset_id")
    if smoke_id and smoke_id != dataset_id:
        problems.append(Problem("status.dataset_id", project.rel(smoke),
                                f"dataset_id is {smoke_id!r} but the loop's is {dataset_id!r}; rerun "
                                "`python 02_train_baseline.py`"))
    for problem in _cheap_check(project, "baseline"):
        # The checker's own crash is its bug, not the project's: shown, but it does not block the hand-over.
        (st.warnings if problem.code == "check.internal" else problems).append(problem)
    if problems:
        st.problems = _dedupe(problems)
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


def _cheap_check(project: Project, target: str) -> list[Problem]:
    """The checks engine's verdict on ``target`` if it is there; status must work without it."""
    try:
        from .checks import run_check
    except ImportError:
        return []
    try:
        return list(run_check(project, target).problems)
    except Exception:  # a broken check must never break the SessionStart status
        return []


def profiling_gaps(project: Project, path: Path, sources: list[str]) -> tuple[list[str], list[Problem]]:
    rel = project.rel(path)
    try:
        text = read_text_file(path)
    except (OSError, UnicodeDecodeError, JsonProblems):
        return [f"{rel} cannot be read as UTF-8 text"], []
    secs = md.sections(text)
    gaps, problems = [], []
    for name in ("Overview", "Sources"):
        found = md.find(secs, name)
        if not found or all(md.is_placeholder(s.body) for s in found):
            gaps.append(f"{rel}: section {name!r} is missing or empty")
    for source in sources:
        found = md.find(secs, f"Source: {source}")
        if not found:
            gaps.append(f"{rel}: section 'Source: {source}' is missing")
            continue
        subs = md.sections(found[0].body)
        for sub in PROFILE_SUBSECTIONS:
            hit = md.find(subs, sub)
            if not hit or all(md.is_placeholder(s.body) for s in hit):
                gaps.append(f"{rel}: 'Source: {source}' → {sub!r} is missing or empty")
        load = md.bullets(found[0].body).get("load_test", "")
        if not load:
            gaps.append(f"{rel}: 'Source: {source}' has no `- load_test: PASS|FAIL` line")
        elif load.upper().startswith("FAIL"):
            problems.append(Problem("status.load_test", rel, f"the load test of source {source!r} FAILed: {load}"))
    return gaps, problems


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


def _bullet(path: Path, key: str) -> str:
    try:
        return md.bullets(read_text_file(path)).get(key, "").strip()
    except (OSError, UnicodeDecodeError, JsonProblems):
        return ""


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
    folder = project.artifact_dir(vid)
    stage = version_stage(project, vid)
    train_missing = [project.rel(p) for p in _train_missing(folder)]
    pt = PROGRESSIVE_TRAINING
    if not stage.reached(TRAINED) or (stage.stage == TRAINED and train_missing):
        note = "" if not stage.reached(TRAINED) else \
            "a partial run: the runtime moves the old folder to Models/Artifacts/.trash/ and trains afresh"
        _set(st, 1, f"python 02_train_{vid}.py", note, train_missing, phase=pt)
        return
    if train_missing:
        st.problems += [Problem("status.train_missing", m, "missing: an evaluated version needs all its training "
                                "outputs") for m in train_missing]
    eval_cmd = f"python 03_eval.py --version {vid}"
    eval_missing = [project.rel(folder / name) for name in EVAL_ARTIFACTS if not (folder / name).exists()]
    if not project.eval_script.is_file():
        _set(st, 2, "write 03_eval.py", f"from the progressive-training skill's templates/03_eval.py; then `{eval_cmd}`",
             ["03_eval.py"] + eval_missing, phase=pt)
        return
    if eval_missing:
        _set(st, 2, eval_cmd, missing=eval_missing, phase=pt)
        return
    row = rows.get(vid)
    if row is None:
        _set(st, 2, eval_cmd, f"Models/Artifacts/{vid}/eval_score.json cannot be used (see the problems)", phase=pt)
        return
    state, why = provenance(project, vid, row.score)
    if state != FRESH:
        _set(st, 2, eval_cmd, f"the score is {state}: {why}", phase=pt)
        return
    analysis = folder / ANALYSIS_DOC
    if not stage.reached(ANALYSED):
        _set(st, 3, f"mlloop analyze {vid}", f"then fill the placeholders in {project.rel(analysis)}",
             [project.rel(analysis)], phase=pt)
        return
    from .analysis import analysis_gaps, read_action, read_text_quiet

    gaps = analysis_gaps(read_text_quiet(analysis) or "")
    if gaps:
        _set(st, 3, f"fill {project.rel(analysis)}", f"then `mlloop check {vid}`",
             [f"{project.rel(analysis)}: {g}" for g in gaps], phase=pt)
        return
    action = folder / ACTION_DOC
    if stage.stage != ACTION:
        _set(st, 4, f"write {project.rel(action)}",
             "exactly one Selected Action: Goal, Change, Where, Expected impact, Risk, Verification",
             [project.rel(action)], phase=pt)
        return
    _, gaps = read_action(read_text_quiet(action) or "")
    if gaps:
        _set(st, 4, f"fix {project.rel(action)}", f"then `mlloop check {vid}`",
             [f"{project.rel(action)}: {g}" for g in gaps], phase=pt)
        return
    if cur < rules.max_versions:
        _set(st, 6, "mlloop new-version",
             f"Step 5: cur {cur} < max_versions {rules.max_versions}; v{cur + 1:03d} copies "
             f"{st.next_parent or '?'} and applies {vid}'s Selected Action", phase=pt)
        return
    _final_report(project, st, vid, cur, rules.max_versions)


def _final_report(project: Project, st: Status, vid: str, cur: int, max_versions: int) -> None:
    from .final_report import ANALYSIS_END, ANALYSIS_START, agent_section

    loop_note = f"Step 5: cur {cur} >= max_versions {max_versions}; the loop is over"
    report = _latest_report_with(project, vid)
    if report is None:
        _set(st, 7, "mlloop report", loop_note, phase=PROGRESSIVE_TRAINING)
        return
    st.report = project.rel(report)
    analysis = report / "final-analysis.md"
    try:
        section = agent_section(read_text_file(analysis))
    except (OSError, UnicodeDecodeError, JsonProblems):
        section = None
    if section is None or md.is_placeholder(section):
        _set(st, 7, f"fill the agent section of {project.rel(analysis)}",
             f"why the top 3 ranked high, between {ANALYSIS_START} and {ANALYSIS_END}",
             [f"{project.rel(analysis)}: the section between the analysis markers"], phase=PROGRESSIVE_TRAINING)
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
