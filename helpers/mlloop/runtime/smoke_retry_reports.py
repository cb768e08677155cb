"""Writers for the training side's markdown documents (docs/contracts.md): the smoke test report
(``_tests/baseline_smoke_test_report.md``) and the retry history. ``spec.json`` is
``mlloop.formats.spec``.

All writes are atomic (``mlloop.jsonio``); JSON never holds NaN. Markdown keeps the machine-read
lines as ``- key: value`` bullets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..formats import retry_report, smoke_report
from ..jsonio import to_jsonable, write_text_atomic


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- retry history --------------------------------------------------------------------------


@dataclass
class Attempt:
    attempt: int
    error_summary: str
    root_cause_hypothesis: str
    code_change_summary: str
    status: str

    def markdown(self, level: int = 2) -> str:
        return retry_report.render_attempt(self.attempt, {name: getattr(self, name) for name in retry_report.FIELDS},
                                           level)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "none"


def read_attempts(text: str) -> list[Attempt]:
    """The attempts recorded in a retry report or in a smoke report's retry section."""
    records, _ = retry_report.parse(text)
    return [Attempt(r.number, r.fields.get("error_summary", ""), r.fields.get("root_cause_hypothesis", ""),
                    r.fields.get("code_change_summary", ""), r.fields.get("status", ""))
            for r in records if r.number is not None]


def next_attempt(previous: list[Attempt], *, status: str, error: BaseException | str | None,
                 cause: str | None, change: str | None) -> Attempt:
    """The attempt this run is. Its error is its own (``none`` when it passed); the cause and
    change are what the agent gave with ``--RETRY_CAUSE`` / ``--RETRY_CHANGE`` for this retry."""
    n = (previous[-1].attempt if previous else 0) + 1
    if error is None:
        summary = "none"
    elif isinstance(error, BaseException):
        summary = error_summary(error)
    else:
        summary = str(error)
    if n == 1:
        default_cause = default_change = "none (first attempt)"
    else:
        default_cause = "not given (pass --RETRY_CAUSE=... when retrying)"
        default_change = "not given (pass --RETRY_CHANGE=... when retrying)"
    return Attempt(n, summary, cause or default_cause, change or default_change, status)


def error_summary(exc: BaseException) -> str:
    """``Type: first line of the message (script.py:LINE)`` — the innermost frame in a script."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        name = Path(tb.tb_frame.f_code.co_filename).name
        if name.startswith("02_train_"):
            where = f" ({name}:{tb.tb_lineno})"
        tb = tb.tb_next
    return f"{type(exc).__name__}: {text[:300]}{where}"


def append_retry_report(path: Path, attempt: Attempt, version_id: str) -> None:
    """Add one attempt to ``_tests/train_retry_report.md`` (versions)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else f"# Training retry report — {version_id}\n"
    write_text_atomic(path, text.rstrip("\n") + "\n\n" + attempt.markdown(2))


# A retried run records its attempt when it starts, so a kill cannot lose it; the status is
# replaced when the run ends. It starts with FAIL so that a run that never ends reads as failed.
IN_PROGRESS = "FAIL (in progress: if this stays, the run was killed or interrupted before it ended)"
UNRECORDED = "none recorded: the run ended without recording an error (killed or interrupted)"


def begin_retry_attempt(path: Path, version_id: str, cause: str | None, change: str | None) -> None:
    """At the start of a retried version run: record the earlier run if nothing did (a killed
    first run, a retry left in progress), then this run's attempt, in progress."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    attempts = read_attempts(text)
    if not attempts:
        append_retry_report(path, Attempt(1, UNRECORDED, "none (first attempt)", "none (first attempt)", "FAIL"),
                            version_id)
    elif attempts[-1].status == IN_PROGRESS:
        finish_retry_attempt(path, "FAIL", UNRECORDED)
    previous = read_attempts(path.read_text(encoding="utf-8"))
    append_retry_report(path, next_attempt(previous, status=IN_PROGRESS, error="none yet (running)", cause=cause,
                                           change=change), version_id)


def finish_retry_attempt(path: Path, status: str, error: BaseException | str | None) -> bool:
    """Close the attempt left in progress at the start; False when there is none."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    records = [r for r in retry_report.parse(text)[0] if r.number is not None]
    attempts = read_attempts(text)
    if not attempts or attempts[-1].status != IN_PROGRESS:
        return False
    last = attempts[-1]
    summary = "none" if error is None else error_summary(error) if isinstance(error, BaseException) else str(error)
    done = Attempt(last.attempt, summary, last.root_cause_hypothesis, last.code_change_summary, status)
    kept = "".join(text.splitlines(keepends=True)[:records[-1].line - 1])
    write_text_atomic(path, kept + done.markdown(records[-1].level))
    return True


# ---- the smoke test report ------------------------------------------------------------------

@dataclass
class SmokeReport:
    """What the smoke test found, step by step; unfilled parts print as "not run"."""

    version_id: str
    dataset_id: str
    task_type: str
    overall_result: str = "FAIL"
    stopped_at: str = ""
    error: str = ""
    contract: Any = None          # contract.ContractResult
    probe: Any = None             # probe.ProbeResult
    search: Any = None            # batch_search.SearchResult
    search_trials: list = field(default_factory=list)  # trials of a failed search
    train_batch_size: int | None = None
    train_batch_size_source: str = ""
    smoke_run: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    time_estimate: dict = field(default_factory=dict)  # smoke.estimate_version_time
    attempts: list = field(default_factory=list)
    device: str = ""
    precision: str = ""

    def markdown(self) -> str:
        out = ["# Baseline smoke test report" if self.version_id == "baseline" else f"# Smoke test report — {self.version_id}",
               f"- {smoke_report.RESULT}: {self.overall_result}"]
        if self.search is not None:
            out.append(f"- optimal_batch_size: {self.search.batch_size}")
        if self.train_batch_size is not None:
            out.append(f"- train_batch_size: {self.train_batch_size}")
        out += [f"- dataset_id: {self.dataset_id}", f"- version_id: {self.version_id}", f"- task_type: {self.task_type}",
                f"- device: {self.device}", f"- precision: {self.precision}", f"- created_at: {now_iso()}"]
        if self.stopped_at:
            out.append(f"- stopped_at: {self.stopped_at}")
        if self.error:
            out.append(f"- error: {_one_line(self.error)}")
        contract, probe, search, smoke_run = smoke_report.SECTIONS
        out += ["", f"## {contract}"] + self._contract()
        out += ["", f"## {probe}"] + self._probe()
        out += ["", f"## {search}"] + self._search()
        out += ["", f"## {smoke_run}"] + self._smoke_run()
        out += ["", "## Steps per epoch"] + self._steps()
        out += ["", "## Time estimate"] + self._time()
        out += ["", f"## {smoke_report.RETRY_HISTORY}"]
        if self.attempts:
            out += [a.markdown(3).rstrip("\n") + "\n" for a in self.attempts]
        else:
            out.append("none: passed on the first attempt" if self.overall_result == "PASS" else "none recorded yet")
        return "\n".join(out).rstrip("\n") + "\n"

    def _contract(self) -> list[str]:
        c = self.contract
        if c is None:
            return ["- contract_result: NOT RUN"]
        rows = ["- contract_result: " + c.overall_result,
                f"- expected_tolerance: {c.tolerance:g}",
                f"- expected_allow_missing_keys: {str(c.allow_missing).lower()}",
                "", "expected_map:", "```json", json.dumps(to_jsonable(c.expected_map), indent=2, ensure_ascii=False), "```",
                "", "observed_map:", "```json", json.dumps(to_jsonable(c.observed_map), indent=2, ensure_ascii=False), "```",
                "", "validation_table:", "", "| key | expected | observed | status | reason |", "|---|---|---|---|---|"]
        for r in c.validation_table:
            rows.append(f"| {r['key']} | {_cell(r['expected'])} | {_cell(r['observed'])} | {r['status']} | {_md(r['reason'])} |")
        if not c.validation_table:
            rows.append("| (no expected_* keys in model_config) | | | SKIP | nothing was claimed |")
        return rows

    def _probe(self) -> list[str]:
        p = self.probe
        if p is None:
            return ["- probe_result: NOT RUN"]
        rows = [f"- probe_result: {p.status}"]
        if p.status == "SKIP":
            return rows + [f"- note: {p.note}"]
        rows += [f"- samples: {p.samples} (seeded draw from the training split)",
                 f"- steps: {p.steps} of at most {p.max_steps}, {p.seconds:.2f} s",
                 f"- loss: {_num(p.initial_loss)} → {_num(p.final_loss)} "
                 f"(drop {_num(p.loss_drop)}×, required ≥ {p.loss_drop_factor:g}×)"]
        if p.metric:
            op = "≥" if p.higher_is_better else "≤"
            level = f" (required {op} {p.threshold:g})" if p.threshold is not None else " (no level for this metric)"
            rows.append(f"- metric: {p.metric} {_num(p.metric_value)}{level}")
        if p.note:
            rows.append(f"- note: {p.note}")
        if p.diagnosis:
            rows.append(f"- diagnosis: {p.diagnosis}")
        rows += ["", f"| step | loss | {p.metric or 'metric'} |", "|---|---|---|"]
        rows += [f"| {s} | {_num(loss)} | {_num(m) if m is not None else ''} |" for s, loss, m in p.sampled_curve()]
        return rows

    def _search(self) -> list[str]:
        s = self.search
        trials = s.trials if s is not None else self.search_trials
        if s is None and not trials:
            return ["- search_result: NOT RUN"]
        rows = [f"- search_result: {'PASS' if s is not None else 'FAIL'}"]
        if s is not None:
            rows += [f"- optimal_batch_size: {s.batch_size}",
                     f"- candidates: {', '.join(map(str, s.candidates))} (powers of two, largest first, first success wins)",
                     f"- search_seconds: {s.seconds:.2f}"]
        rows += ["", "| batch_size | status | steps | seconds | error |", "|---|---|---|---|---|"]
        rows += [f"| {t.batch_size} | {t.status} | {t.steps} | {t.seconds:.2f} | {_md(t.error)} |" for t in trials]
        return rows

    def _smoke_run(self) -> list[str]:
        r = self.smoke_run
        if not r:
            return ["- smoke_run_result: NOT RUN"]
        rows = [f"- smoke_run_result: {r.get('result', 'FAIL')}"]
        for key in ("train_samples", "valid_samples"):
            used, asked, available = r.get(f"{key}_used"), r.get(f"{key}_asked"), r.get(f"{key}_available")
            if used is None:
                continue
            text = f"- {key}: {used}"
            if asked is not None and available is not None and asked > available:
                text += f" (asked for {asked}, the split has {available}: all of them are used)"
            rows.append(text)
        for key in ("batch_size", "epochs", "steps", "monitor", "best_score", "wall_time_s", "peak_memory_mb"):
            if key in r and r[key] is not None:
                rows.append(f"- {key}: {r[key] if not isinstance(r[key], float) else _num(r[key])}")
        for name, size in (r.get("artifact_bytes") or {}).items():
            rows.append(f"- artifact {name}: {size / 2 ** 20:.2f} MB")
        return rows

    def _time(self) -> list[str]:
        return _time_rows(self.time_estimate)

    def _steps(self) -> list[str]:
        s = self.steps
        if not s:
            return ["- steps_per_epoch: not computed"]
        rows = [f"- basis: {s.get('basis', '')}",
                f"- train_batch_size: {s.get('batch_size')} ({self.train_batch_size_source})",
                f"- steps_per_epoch: {s.get('per_epoch')}", f"- total_steps: {s.get('total')}",
                f"- min_steps_per_epoch: {s.get('min_steps_per_epoch')}", f"- min_total_steps: {s.get('min_total_steps')}",
                f"- too_few_steps: {str(s.get('too_few')).lower()}"]
        if s.get("warning"):
            rows.append(f"- steps_warning: {s['warning']}")
        return rows


def _time_rows(e: dict) -> list[str]:
    if not e:
        return ["- estimated_version_minutes: not estimated"]
    minutes, budget = e.get("minutes"), e.get("max_minutes_per_version")
    rows = [f"- estimated_version_minutes: {_num(minutes) if minutes is not None else 'not estimated'}"]
    if e.get("step_ms") is not None:
        rows.append(f"- measured_step_ms: {_num(e['step_ms'])} (batch {e.get('smoke_batch_size')})")
    rows += [f"- basis: {e.get('basis', '')}",
             f"- max_minutes_per_version: {_num(budget) if budget is not None else 'not set'}"]
    if budget is not None and minutes is not None:
        rows.append(f"- time_budget: {'OVER' if e.get('warning') else 'OK'}")
    if e.get("warning"):
        rows.append(f"- time_warning: {e['warning']}")
    return rows


def _num(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _cell(v) -> str:
    return _md(json.dumps(to_jsonable(v), ensure_ascii=False)) if v is not None else ""


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def previous_smoke_attempts(path: Path) -> list[Attempt]:
    """Attempts already in a smoke report's ``## Retry history`` (kept across resets in ``_tests/``)."""
    if not path.is_file():
        return []
    body = smoke_report.history(path.read_text(encoding="utf-8"))
    return read_attempts(body) if body is not None else []


def write_smoke_report(path: Path, report: SmokeReport) -> str:
    text = report.markdown()
    write_text_atomic(path, text)
    return text
