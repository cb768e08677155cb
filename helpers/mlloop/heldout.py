"""The report's one look at the held-out test split (``dataset_config.test_ratio``).

``mlloop report`` scores its top 3 versions on ``test/`` with the frozen evaluation harness, in
a child process (``python -m mlloop.runtime.heldout``), writing into ``<report>/test/<version>/``
(the version's own folder is never touched). A version whose checkpoint and ``03_eval.py`` were
already scored on test by an earlier report is copied from there, not scored again: the test
split is looked at once per checkpoint, so re-running the report cannot fish for a better number.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Findings, MlloopError
from .formats.intervals import parse_intervals
from .jsonio import JsonProblems, read_json, sha256_file
from .layout import BEST_CKPT, EVAL_SCORE, INTERVALS, Project
from .leaderboard import EXTERNAL, Ranking, fmt

TEST_DIR = "test"
TOP = 3
FEW_SAMPLES = 100  # below this a test interval is rough, and a perfect score gives a zero-width one


def few_samples_note(held: "HeldOut") -> str | None:
    """A warning when the test split is small: the bootstrap only resamples what is there."""
    n = min((t.num_samples for t in held.scores.values()), default=None)
    if n is None or n >= FEW_SAMPLES:
        return None
    return (f"Only {n} test samples: the intervals resample these {n} alone, so they are rough, and a score that is "
            "the same on every resample (e.g. all correct) gets a zero-width interval that proves nothing. "
            "More test data, not a re-run, narrows them.")


@dataclass
class TestScore:
    """One version's test-split result, as the report shows it."""

    version: str
    num_samples: int
    metrics: dict                 # name -> {"value", "low", "high", ...}
    folder: str                   # relative to the report folder
    reused_from: str | None = None

    def value(self, name: str):
        return (self.metrics.get(name) or {}).get("value")

    def interval(self, name: str) -> tuple:
        m = self.metrics.get(name) or {}
        return m.get("low"), m.get("high")

    def cell(self, name: str) -> str:
        low, high = self.interval(name)
        shown = fmt(self.value(name))
        return f"{shown} [{fmt(low)}, {fmt(high)}]" if low is not None else shown


@dataclass
class HeldOut:
    """What the report knows about the test split: used or not, and the scores."""

    test_ratio: float | None
    scores: dict[str, TestScore] = field(default_factory=dict)

    @property
    def used(self) -> bool:
        return bool(self.test_ratio)

    def summary(self, primary: str) -> dict | None:
        """``{version: {value, low, high, num_samples}}`` of the primary metric; None without a test split."""
        if not self.used:
            return None
        return {vid: {"value": t.value(primary), "low": t.interval(primary)[0], "high": t.interval(primary)[1],
                      "num_samples": t.num_samples, "outputs": t.folder} for vid, t in self.scores.items()}


def score_top(project: Project, rules, dataset_id: str, ranking: Ranking, report_dir: Path, progress) -> HeldOut:
    """Test-split scores of the top ``TOP`` loop versions, written under ``report_dir/test/``."""
    held = HeldOut(rules.values["dataset_config"].get("test_ratio"))
    if not held.used:
        return held
    if not (project.prepdata(dataset_id) / TEST_DIR).is_dir():
        raise MlloopError(f"dataset_config.test_ratio is {held.test_ratio} but {project.rel(project.prepdata(dataset_id))}/"
                          "test/ does not exist; re-run 01_data_pipeline.py (it writes the held-out split).")
    top = [row for row in ranking.rows if row.kind != EXTERNAL][:TOP]
    for i, row in enumerate(top, start=1):
        out = report_dir / TEST_DIR / row.name
        earlier = _earlier_score(project, row.name, report_dir)
        if earlier is not None:
            shutil.copytree(earlier, out)
            progress(f"[{i}/{len(top)}] {row.name}: test split already scored in {project.rel(earlier)}; copied")
        else:
            progress(f"[{i}/{len(top)}] scoring {row.name} on the held-out test split (once)")
            _run_child(project, row.name, out)
        held.scores[row.name] = read_test_score(out, row.name, f"{TEST_DIR}/{row.name}",
                                                project.rel(earlier) if earlier else None)
    return held


def _run_child(project: Project, vid: str, out: Path) -> None:
    args = [sys.executable, "-m", "mlloop.runtime.heldout", "--project", str(project.root), "--version", vid,
            "--output-dir", str(out)]
    proc = subprocess.run(args, cwd=project.root, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        tail = ((proc.stderr or "").strip() or (proc.stdout or "").strip()).splitlines()[-6:]
        raise MlloopError(f"{vid}: scoring the held-out test split failed (exit {proc.returncode}); the report was "
                          "not built. Last lines of its output:\n" + "\n".join(f"  {line}" for line in tail))


def read_test_score(folder: Path, vid: str, rel: str, reused_from: str | None = None) -> TestScore:
    try:
        score = read_json(folder / EVAL_SCORE)
        found = Findings()
        metrics = parse_intervals(read_json(folder / INTERVALS), f"{rel}/{INTERVALS}", found)
    except JsonProblems as exc:
        found = Findings(problems=exc.problems)
    if found.problems:
        raise MlloopError(f"{vid}: the test-split outputs are unreadable ({found.problems[0].line()}).") from None
    for m in score.get("metrics") or []:
        metrics.setdefault(m["name"], {"value": m["value"], "low": None, "high": None})
    return TestScore(vid, int(score.get("num_samples") or 0), metrics, rel, reused_from)


def _earlier_score(project: Project, vid: str, report_dir: Path) -> Path | None:
    """An earlier report's test/<vid>/ scored from this very checkpoint and 03_eval.py, newest first."""
    ckpt = project.artifact_dir(vid) / BEST_CKPT
    if not ckpt.is_file() or not project.eval_script.is_file() or not project.report_root.is_dir():
        return None
    want = (sha256_file(ckpt), sha256_file(project.eval_script))
    for report in sorted(project.report_root.iterdir(), reverse=True):
        folder = report / TEST_DIR / vid
        if report == report_dir or report.name.startswith(".") or not (folder / INTERVALS).is_file():
            continue
        try:
            doc = read_json(folder / EVAL_SCORE)
        except JsonProblems:
            continue
        if not isinstance(doc, dict):
            continue
        if (doc.get("checkpoint_sha256"), doc.get("eval_script_sha256")) == want and doc.get("split") == "test":
            return folder
    return None


def analysis_lines(held: HeldOut, ranking: Ranking) -> list[str]:
    """final-analysis.md's section on the test split (or on why the winner's score is optimistic)."""
    primary = ranking.primary
    if not held.used:
        return ["## How far to trust the winner's score", "",
                "> **The best version's score is optimistic.** It was selected on the same validation split it is "
                "reported on (and the loop tuned its changes against that split), so the number above is biased "
                "upwards. Set `dataset_config.test_ratio` (e.g. 0.1) and re-run 01_data_pipeline.py to hold out a "
                "test split that `mlloop report` scores once for the top 3.", ""]
    out = ["## Held-out test split", "",
           f"The top {len(held.scores)} version(s) were scored once on the held-out test split (test_ratio "
           f"{held.test_ratio}), which no training run, smoke test or per-version evaluation read. Intervals: 95% "
           "percentile bootstrap over the test samples (2,000 seeded resamples, the metric recomputed per resample).",
           "", f"| rank | version_id | valid {primary} | test {primary} [95% interval] | test samples |",
           "|---|---|---|---|---|"]
    for i, row in enumerate(ranking.rows, start=1):
        t = held.scores.get(row.name)
        if t is not None:
            out.append(f"| {i} | {row.name} | {fmt(row.primary)} | {t.cell(primary)} | {t.num_samples} |")
    note = few_samples_note(held)
    if note:
        out += ["", f"> {note}"]
    reused = [t for t in held.scores.values() if t.reused_from]
    if reused:
        out += ["", "Already scored on test by an earlier report (same checkpoint and 03_eval.py), copied, not "
                "re-scored: " + ", ".join(f"{t.version} ({t.reused_from})" for t in reused) + "."]
    out += ["", f"Outputs: `{TEST_DIR}/<version>/` (eval_score.json, eval_samples.jsonl, infer_samples/, "
            "intervals.json).", ""]
    return out
