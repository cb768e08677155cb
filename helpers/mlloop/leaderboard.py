"""Ranking and leaderboard.csv (progressive-training Step 7, docs/contracts.md).

One ranking for everyone: the report orders its rows with it, ``mlloop new-version`` picks the
"best" parent with it, ``mlloop status`` shows it. Rows are ranked by the primary metric in its
direction; ties are broken by the other metrics in the rules' order (each in its own
direction), then by version id; rows without the primary metric go last. Plain ``csv``, no
pandas: the CLI stays light and 1,000 versions build in a few tens of milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Findings
from .formats.eval_score import PROVENANCE_FIELDS, EvalScore, parse_iso8601, read_eval_score
from .formats.leaderboard_csv import FIXED_COLUMNS, TEST_PREFIX, parse_leaderboard, render_leaderboard
from .jsonio import MAX_JSON_BYTES, JsonProblems, parse_json_text
from .layout import BEST_CKPT, EVAL_SCORE, Project, version_number
from .rules import Rules

VERSION, EXTERNAL = "version", "external"


@dataclass
class Row:
    """One leaderboard candidate: a loop version or an external reference model."""

    name: str
    kind: str
    folder: Path
    score: EvalScore
    primary: float | None = None
    values: dict = field(default_factory=dict)   # metric name -> its first value (set by rank)

    @property
    def checkpoint(self) -> Path:
        return self.folder / BEST_CKPT


@dataclass
class Tie:
    upper: str
    lower: str
    value: float
    decided_by: str            # a metric name, or "version_id"
    values: tuple | None = None  # (upper's, lower's) value of decided_by

    def sentence(self, primary: str) -> str:
        if self.decided_by == "version_id":
            return (f"{self.upper} and {self.lower} tie on {primary} = {fmt(self.value)} and on every other "
                    f"metric; {self.upper} is listed first by version_id.")
        return (f"{self.upper} and {self.lower} tie on {primary} = {fmt(self.value)}; "
                f"{self.decided_by} decides ({fmt(self.values[0])} vs {fmt(self.values[1])}).")


@dataclass
class Ranking:
    primary: str
    higher_is_better: bool
    tie_metrics: list[tuple[str, bool]]   # the rules' other metrics, in order, with directions
    rows: list[Row]
    ties: list[Tie] = field(default_factory=list)

    @property
    def missing_primary(self) -> list[Row]:
        return [r for r in self.rows if r.primary is None]

    def best_version(self) -> Row | None:
        """The top-ranked loop version (external models are references, never "best")."""
        return next((r for r in self.rows if r.kind == VERSION), None)

    def tie_rule(self) -> str:
        others = ", ".join(name for name, _ in self.tie_metrics)
        return (f"Ties on {self.primary} are broken by " + (f"{others} (the rules' order, each in its own "
                "direction), then " if others else "") + "version_id.")


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def direction(rules: Rules, name: str, rows: list[Row]) -> bool:
    """A metric's direction: the rules first, else what the scores record, else lower-is-better."""
    hib = rules.higher_is_better(name)
    if hib is not None:
        return hib
    for row in rows:
        recorded = row.score.direction(name)
        if recorded is not None:
            return recorded
    return False


def _clean_metrics(doc, primary: str | None, dataset_id: str | None) -> list[dict] | None:
    """The metrics of an eval_score document that ``read_eval_score`` would pass without a single
    problem, or None at the first doubt (the caller then asks ``read_eval_score`` what is wrong).
    Strict JSON parsing has already ruled out NaN, infinities and duplicate keys."""
    if type(doc) is not dict:
        return None
    did, ns, lat, raw = doc.get("dataset_id"), doc.get("num_samples"), doc.get("latency_ms"), doc.get("metrics")
    if type(did) is not str or not did or (dataset_id and did != dataset_id):
        return None
    if type(ns) is not int or ns < 1 or type(lat) not in (int, float) or not 0 <= lat < 1e300:
        return None
    if parse_iso8601(doc.get("created_at")) is None or type(raw) is not list or not raw:
        return None
    metrics, hits = [], 0
    for m in raw:
        if type(m) is not dict:
            return None
        name, value, hib = m.get("name"), m.get("value"), m.get("higher_is_better")
        if type(name) is not str or not name or type(value) not in (int, float) or type(hib) is not bool \
                or not -1e300 < value < 1e300:
            return None
        metrics.append({"name": name, "value": float(value), "higher_is_better": hib})
        hits += name == primary
    if primary and hits != 1:
        return None
    for key in PROVENANCE_FIELDS:
        if key in doc and not (type(doc[key]) is str and len(doc[key]) == 64):
            return None
    return metrics


def _fast_score(path: str, name: str, primary: str | None, dataset_id: str | None) -> EvalScore | None:
    """A clean score read without the bookkeeping of the full reader (1,000 of them per report)."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > MAX_JSON_BYTES:
                return None
            data = fh.read()
        doc = parse_json_text(data.decode("utf-8-sig"), path)
    except (OSError, UnicodeDecodeError, JsonProblems):
        return None
    metrics = _clean_metrics(doc, primary, dataset_id)
    return None if metrics is None else EvalScore(name, Path(path), doc, metrics)


def load_versions(project: Project, rules: Rules, dataset_id: str | None,
                  findings: Findings | None = None, exclude: set[str] = frozenset()) -> list[Row]:
    """Every version folder with a readable eval_score.json (unreadable ones go to findings)."""
    findings = findings if findings is not None else Findings()
    root = project.artifacts_root
    try:
        entries = [(version_number(e.name), e.name) for e in os.scandir(root) if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    rows, primary = [], rules.primary_metric
    for n, name in sorted(e for e in entries if e[0] is not None):
        if name in exclude:
            continue
        path = os.path.join(root, name, EVAL_SCORE)
        if not os.path.isfile(path):
            continue
        score = _fast_score(path, name, primary, dataset_id) or read_eval_score(
            project, Path(path), name, primary_metric=primary, dataset_id=dataset_id, findings=findings)
        if score is not None:
            rows.append(Row(name, VERSION, root / name, score))
    return rows


def _sort_key(row: Row, primary_hib: bool, tie_metrics: list[tuple[str, bool]]):
    n = version_number(row.name) if row.kind == VERSION else None
    # Versions by number (v999 before v1000), then external models by name.
    name_key = (0, n, "") if n is not None else (1, 0, row.name)
    values, key = row.values, []
    for name, hib in [(None, primary_hib), *tie_metrics]:
        value = row.primary if name is None else values.get(name)
        key.append((True, 0.0) if value is None else (False, -value if hib else value))
    key.append(name_key)
    return key


def rank(rows: list[Row], rules: Rules) -> Ranking:
    primary = rules.primary_metric
    hib = direction(rules, primary, rows)
    tie_metrics = [(m["name"], direction(rules, m["name"], rows)) for m in rules.metrics if m["name"] != primary]
    for row in rows:
        row.values = {m["name"]: m["value"] for m in reversed(row.score.metrics)}  # first occurrence wins
        row.primary = row.values.get(primary)
    ordered = sorted(rows, key=lambda r: _sort_key(r, hib, tie_metrics))
    ranking = Ranking(primary, hib, tie_metrics, ordered)
    for upper, lower in zip(ordered, ordered[1:]):
        if upper.primary is None or upper.primary != lower.primary:
            continue
        for name, _ in tie_metrics:
            a, b = upper.values.get(name), lower.values.get(name)
            if a != b:
                ranking.ties.append(Tie(upper.name, lower.name, upper.primary, name, (a, b)))
                break
        else:
            ranking.ties.append(Tie(upper.name, lower.name, upper.primary, "version_id"))
    return ranking


def metric_cells(score: EvalScore) -> dict[str, float]:
    """``metric__<name>`` cells of one score; a repeated name becomes ``__2``, ``__3``…"""
    cells, seen = {}, {}
    for m in score.metrics:
        k = seen.get(m["name"], 0) + 1
        seen[m["name"]] = k
        cells[f"metric__{m['name']}" if k == 1 else f"metric__{m['name']}__{k}"] = m["value"]
    return cells


def _cell(value) -> str:
    return "" if value is None else str(value)


def artifact_relpath(row: Row, report_dir: Path, best: str | None, artifacts_prefix: str | None = None) -> str:
    """Relative to the report folder: ``Artifacts/<best>/best.ckpt`` for the best row (its copy),
    the real relative path for the others (``../../Artifacts/v001/best.ckpt``)."""
    if row.kind == VERSION and row.name == best:
        return f"Artifacts/{best}/best.ckpt"
    if row.kind == VERSION:
        if artifacts_prefix is None:
            artifacts_prefix = Path(os.path.relpath(row.folder.parent, report_dir)).as_posix()
        return f"{artifacts_prefix}/{row.name}/best.ckpt"
    target = row.checkpoint if row.checkpoint.exists() else row.folder
    return Path(os.path.relpath(target, report_dir)).as_posix()


def leaderboard_csv(ranking: Ranking, report_dir: Path, best: str | None) -> str:
    """leaderboard.csv text: exactly the contract's columns, ``\n`` line ends."""
    records, columns = [], []
    known = set()
    prefix = None  # every version lives in Models/Artifacts/: one relpath for all of them
    for row in ranking.rows:
        cells = metric_cells(row.score)
        for col in cells:
            if col not in known:
                known.add(col)
                columns.append(col)
        doc = row.score.doc
        if row.kind == VERSION and prefix is None:
            prefix = Path(os.path.relpath(row.folder.parent, report_dir)).as_posix()
        record = {"version_id": row.name, "dataset_id": doc.get("dataset_id"), "created_at": doc.get("created_at"),
                  "latency_ms": doc.get("latency_ms"), "artifact_relpath": artifact_relpath(row, report_dir, best, prefix)}
        record.update(cells)
        records.append(record)
    header = list(FIXED_COLUMNS) + columns
    return render_leaderboard(header, [[_cell(record.get(col)) for col in header] for record in records])


def build_leaderboard(project: Project, rules: Rules, dataset_id: str | None, report_dir: Path,
                      externals: list[Row] = (), findings: Findings | None = None,
                      exclude: set[str] = frozenset()) -> tuple[Ranking, str]:
    """Load, rank and render: what the benchmark times (no re-evaluation, no copying)."""
    rows = [r for r in load_versions(project, rules, dataset_id, findings, exclude)] + list(externals)
    ranking = rank(rows, rules)
    best = ranking.best_version()
    return ranking, leaderboard_csv(ranking, report_dir, best.name if best else None)


def with_test_columns(csv_text: str, held, primary: str) -> str:
    """leaderboard.csv with the held-out test split's ``test__<primary>`` and its 95% interval
    (``__low``, ``__high``) after the metric columns; empty for rows not scored (the report scores
    its top 3). Unchanged when the loop has no test split."""
    if held is None or not held.used:
        return csv_text
    board, _ = parse_leaderboard(csv_text)  # our own text: never has gaps
    columns = [f"{TEST_PREFIX}{primary}", f"{TEST_PREFIX}{primary}__low", f"{TEST_PREFIX}{primary}__high"]
    rows = []
    for record in board.records():
        test = held.scores.get(record["version_id"])
        low, high = test.interval(primary) if test else (None, None)
        rows.append([record[c] for c in board.header] + [_cell(test.value(primary) if test else None), _cell(low),
                                                         _cell(high)])
    return render_leaderboard(board.header + columns, rows)
