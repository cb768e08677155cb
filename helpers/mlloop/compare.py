"""Noise-aware deltas between two evaluated versions (``mlloop compare``), and the uses the
loop makes of them (the report's ties with the best version and metrics that disagree).

For every metric in the rules: the delta B − A, a 95% interval for it from a seeded paired
bootstrap over the per-sample records in ``eval_samples.jsonl`` (``mlloop.bootstrap``), and a
verdict (better, worse, within noise) in the metric's direction. The assumptions, stated once
(``--help`` and docs/contracts.md repeat them):

- **paired**: both versions were scored on the same records; they are matched by ``id`` and one
  resample draws the same records for both, so the noise the two share (hard samples) cancels;
- **i.i.d. records**: the validation records are exchangeable draws from one population (a
  grouped split with strongly correlated records makes the interval too narrow);
- **percentile interval**: the 2.5th and 97.5th percentiles (numpy's linear interpolation) of
  2,000 resampled deltas;
- **seeded**: the resamples depend only on the rules' seed, the number of records and the resample
  count, so running the comparison again gives the same numbers; re-running cannot shop for a
  better interval.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from .bootstrap import (BETTER, LEVEL, RESAMPLES, CompareError, MetricDelta, close, fmt_value, is_number,
                        paired_bootstrap, signed)
from .formats.eval_samples import read_eval_samples
from .formats.eval_score import read_eval_score
from .jsonio import JsonProblems
from .layout import EVAL_SCORE, Project, version_number
from .leaderboard import VERSION
from .rules import resolve

ASSUMPTIONS = ("paired by record id, i.i.d. records, seeded percentile bootstrap "
               f"({RESAMPLES} resamples, {LEVEL:.0%} interval of B − A)")


@dataclass
class Comparison:
    a: str
    b: str
    dataset_id: str | None
    num_samples: int
    seed: int
    resamples: int
    primary: str | None
    metrics: list[MetricDelta] = field(default_factory=list)

    def metric(self, name: str) -> MetricDelta | None:
        return next((m for m in self.metrics if m.name == name), None)

    def to_dict(self) -> dict:
        return {"ok": True, "a": self.a, "b": self.b, "dataset_id": self.dataset_id,
                "num_samples": self.num_samples, "paired": True, "interval": "percentile",
                "level": LEVEL, "resamples": self.resamples, "seed": self.seed, "primary_metric": self.primary,
                "metrics": [m.to_dict() for m in self.metrics]}

    def table(self) -> list[str]:
        """Markdown rows: metric, A, B, delta, interval, verdict."""
        rows = [f"| metric | {self.a} | {self.b} | delta | {LEVEL:.0%} interval | verdict |",
                "|---|---|---|---|---|---|"]
        for m in self.metrics:
            label = f"{m.name} (primary)" if m.name == self.primary else m.name
            rows.append(f"| {label} | {fmt_value(m.a)} | {fmt_value(m.b)} | {signed(m.delta)} | {m.interval()} | {m.verdict} |")
        return rows

    def about(self) -> str:
        return (f"{self.b} − {self.a} on {self.num_samples} paired records (dataset_id {self.dataset_id}); "
                f"{ASSUMPTIONS.replace(f'{RESAMPLES} resamples', f'{self.resamples} resamples')}, seed {self.seed}.")

    def lines(self) -> list[str]:
        out = [self.about(), ""] + self.table()
        recomputed = [m.name for m in self.metrics if m.method == "recomputed"]
        if recomputed:
            out.append(f"recomputed per resample through compute_metrics: {', '.join(recomputed)}")
        out += [f"warning: {m.name}: {m.undefined_resamples} of {self.resamples} resamples leave it undefined; "
                "the interval uses the others" for m in self.metrics if m.undefined_resamples]
        out += [f"warning: {m.name}: {m.note}" for m in self.metrics if m.note]
        return out



# ---- reading the records ------------------------------------------------------------------

def version_records(project: Project, vid: str) -> list[dict]:
    """The records of ``Models/Artifacts/<vid>/eval_samples.jsonl``; one clean line on any fault."""
    path = project.eval_samples_path(vid)
    rel = project.rel(path)
    if not path.is_file():
        raise CompareError(f"{rel} does not exist: {vid} is not evaluated; run `python 03_eval.py --version {vid}`.")
    try:
        rows, gaps = read_eval_samples(path, rel)
    except (OSError, JsonProblems) as exc:
        why = exc.problems[0].message if isinstance(exc, JsonProblems) else str(exc)
        raise CompareError(f"{rel} cannot be read ({why}); re-run `python 03_eval.py --version {vid}`.") from None
    if gaps:
        n, reason = gaps[0]
        raise CompareError(f"{rel}: line {n}: {reason}; re-run `python 03_eval.py --version {vid}`.")
    seen = set()
    for row in rows:
        key = _id_key(row["id"])
        if key in seen:
            raise CompareError(f"{rel}: id {row['id']!r} appears twice; one record per sample.")
        seen.add(key)
    if not rows:
        raise CompareError(f"{rel} has no records; re-run `python 03_eval.py --version {vid}`.")
    return rows


def _id_key(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _read_score(project: Project, vid: str):
    path = project.artifact_dir(vid) / EVAL_SCORE
    if not path.is_file():
        raise CompareError(f"{project.rel(path)} does not exist: {vid} is not evaluated; "
                           f"run `python 03_eval.py --version {vid}`.")
    score = read_eval_score(project, path, vid)
    if score is None:
        raise CompareError(f"{project.rel(path)} cannot be read; `mlloop check {vid}` says why.")
    return score


def pair_records(a: str, rows_a: list[dict], b: str, rows_b: list[dict]) -> tuple[list[dict], list[dict]]:
    """Both versions' records in one order (sorted by id), or a one-line refusal."""
    keys_a = {_id_key(r["id"]): r for r in rows_a}
    keys_b = {_id_key(r["id"]): r for r in rows_b}
    only_a = sorted(set(keys_a) - set(keys_b))
    only_b = sorted(set(keys_b) - set(keys_a))
    if only_a or only_b:
        example = only_a[0] if only_a else only_b[0]
        raise CompareError(
            f"{a} and {b} were evaluated on different records ({len(only_a)} id(s) only in {a}, {len(only_b)} only "
            f"in {b}, e.g. {example}); a paired comparison needs the same validation records: re-evaluate both "
            "with `python 03_eval.py --version vNNN`.")
    order = sorted(keys_a)
    return [keys_a[k] for k in order], [keys_b[k] for k in order]


# ---- the comparison -----------------------------------------------------------------------

def compare_versions(project: Project, a: str, b: str, rules=None, metrics: list[dict] | None = None,
                     resamples: int = RESAMPLES) -> Comparison:
    """Compare evaluated versions ``a`` and ``b`` on ``metrics`` (default: the rules' metrics)."""
    if rules is None:
        rules = resolve(project)
        if rules.findings.problems:
            raise CompareError(f"the rules have {len(rules.findings.problems)} problem(s); fix them first "
                               "(`mlloop rules` lists them).", problems=rules.findings.problems)
    for vid in (a, b):
        if version_number(vid) is None:
            err = CompareError(f"{vid!r} is not a version id; use vNNN, e.g. v001.")
            err.exit_code = 2
            raise err
    score_a, score_b = _read_score(project, a), _read_score(project, b)
    if score_a.dataset_id != score_b.dataset_id:
        raise CompareError(f"{a} was evaluated on dataset_id {score_a.dataset_id!r} and {b} on "
                           f"{score_b.dataset_id!r}; compare versions evaluated on the same dataset.")
    samples_a, samples_b = version_records(project, a), version_records(project, b)
    _in_sync(a, samples_a, score_a)
    _in_sync(b, samples_b, score_b)
    rows_a, rows_b = pair_records(a, samples_a, b, samples_b)
    specs = list(metrics if metrics is not None else rules.metrics)
    results = paired_bootstrap(rows_a, rows_b, specs, seed=rules.seed, resamples=resamples,
                               recorded=({a: score_a, b: score_b}, a, b))
    return Comparison(a, b, score_a.dataset_id, len(rows_a), rules.seed, resamples, rules.primary_metric, results)


def _in_sync(vid: str, rows: list[dict], score) -> None:
    """Cheap proof that the records and the score come from one evaluation: the record count and
    the mean loss (a definition no metric registry changes) match eval_score.json."""
    rel = f"Models/Artifacts/{vid}/eval_samples.jsonl"
    again = f"they come from different evaluations: re-run `python 03_eval.py --version {vid}`."
    recorded = score.doc.get("num_samples")
    if isinstance(recorded, int) and recorded != len(rows):
        raise CompareError(f"{rel} has {len(rows)} records but its eval_score.json says num_samples {recorded}; {again}")
    loss = score.value("loss")
    losses = [r.get("loss") for r in rows]
    if loss is not None and all(is_number(v) for v in losses):
        mean = math.fsum(losses) / len(losses)
        if not close(mean, loss):
            raise CompareError(f"{rel} gives loss {fmt_value(mean)} but its eval_score.json says {fmt_value(loss)}; {again}")



# ---- the report: ties with the best version, metrics that disagree on the winner -----------

@dataclass
class RankingNoise:
    tied: list[str]                       # versions whose primary metric is within noise of the best
    disagreements: list[str]              # other metrics whose winner is not the best version
    lines: list[str]


def deltas_from(project: Project, rules, ranking, best, rows) -> tuple[list, list[tuple[str, str]]]:
    """``[(row, MetricDelta of best − row on the primary metric)]`` for the ``rows`` that can be
    compared, and ``[(name, why not)]`` for the others: the one loop behind every noise-aware choice."""
    spec = [{"name": ranking.primary, "higher_is_better": ranking.higher_is_better}]
    compared, failed = [], []
    for row in rows:
        try:
            compared.append((row, compare_versions(project, row.name, best.name, rules, metrics=spec).metrics[0]))
        except CompareError as exc:
            failed.append((row.name, str(exc)))
    return compared, failed


def ranking_noise(project: Project, rules, ranking, best) -> RankingNoise:
    """Which versions the best does not beat beyond noise on the primary metric, and which other
    metrics name another winner (each with its paired-bootstrap interval)."""
    primary = ranking.primary
    versions = [r for r in ranking.rows if r.kind == VERSION]
    tied, beaten, lines = [], [], []
    compared, failed = deltas_from(project, rules, ranking, best,
                                   [r for r in versions if r is not best and r.primary is not None])
    for row, m in compared:
        entry = f"{row.name} ({best.name} − {row.name} = {m.delta:+.6g}, 95% interval {m.interval()})"
        (beaten if m.verdict == BETTER else tied).append((abs(m.delta), row.name, entry))
    if tied:
        lines.append(f"- **Statistically tied with {best.name} on {primary}** (the paired-bootstrap 95% interval "
                     f"of the difference includes 0): {'; '.join(e for _, _, e in tied)}. The ranking between them "
                     "is within noise; prefer the simpler (earlier) one unless another metric separates them.")
    elif beaten:
        lines.append(f"- {best.name} is better on {primary} than every other version beyond noise "
                     f"(closest: {min(beaten)[2]}).")
    if failed:
        lines.append(f"- No noise estimate against {', '.join(n for n, _ in failed)}: {failed[0][1]}")
    disagreements = []
    for name, hib in ranking.tie_metrics:
        scored = [r for r in versions if r.values.get(name) is not None]
        if not scored or best.values.get(name) is None:
            continue
        winner = min(scored, key=lambda r: (-r.values[name] if hib else r.values[name], version_number(r.name)))
        if winner is best or winner.values[name] == best.values[name]:
            continue
        disagreements.append(name)
        line = (f"- **{primary} and {name} disagree on the winner**: {primary} ranks {best.name} first, {name} "
                f"ranks {winner.name} first ({name} {fmt_value(winner.values[name])} vs {fmt_value(best.values[name])}")
        try:
            m = compare_versions(project, best.name, winner.name, rules,
                                 metrics=[{"name": name, "higher_is_better": hib}]).metrics[0]
            line += f"; {winner.name} − {best.name} 95% interval {m.interval()}, {m.verdict})."
        except CompareError:
            line += "; no interval, see above)."
        lines.append(line)
    return RankingNoise([n for _, n, _ in tied], disagreements, lines)
