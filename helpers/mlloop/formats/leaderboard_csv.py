"""leaderboard.csv of a final report (docs/contracts.md, "leaderboard.csv"): one row per
version or external model in rank order, the fixed columns, then ``metric__<name>`` (and, with a
test split, ``test__<name>``) columns. Owns the column names, the one parser
(``parse_leaderboard``: the table plus one gap per problem) and the renderer. ``mlloop report``
writes it; the report and held-out checks, status and the demo read it here.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

FIXED_COLUMNS = ("version_id", "dataset_id", "created_at", "latency_ms", "artifact_relpath")
METRIC_PREFIX, TEST_PREFIX = "metric__", "test__"
EXTRA_COLUMN_RE = re.compile(r"(metric|test)__.+")
LEADERBOARD, COLUMNS = "leaderboard", "columns"     # the kinds of gap (check codes report.<kind>)


@dataclass
class Leaderboard:
    header: list[str]
    rows: list[tuple[int, dict]] = field(default_factory=list)   # (line number, {column: cell}), in file order

    def records(self) -> list[dict]:
        return [record for _, record in self.rows]


def parse_leaderboard(text: str) -> tuple[Leaderboard | None, list[tuple[str, str]]]:
    """``(table, gaps)``; each gap is ``(kind, message)``. The table is None when the file is no
    usable CSV or its fixed columns are wrong; rows with a wrong cell count or a repeated
    version_id are left out of it (and are gaps)."""
    try:
        table = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        return None, [(LEADERBOARD, f"not a readable CSV file ({exc})")]
    if not table:
        return None, [(LEADERBOARD, "leaderboard.csv is empty")]
    header, body = table[0], table[1:]
    if tuple(header[:len(FIXED_COLUMNS)]) != FIXED_COLUMNS:
        return None, [(COLUMNS, f"the columns must start with {', '.join(FIXED_COLUMNS)}; found "
                                f"{', '.join(header[:len(FIXED_COLUMNS)])}")]
    gaps = []
    extra = [c for c in header[len(FIXED_COLUMNS):] if not EXTRA_COLUMN_RE.fullmatch(c)]
    if extra:
        gaps.append((COLUMNS, f"column(s) {', '.join(extra)} are not allowed; only {', '.join(FIXED_COLUMNS)}, "
                              f"{METRIC_PREFIX}<name> and (with a test split) {TEST_PREFIX}<name> columns"))
    if len(set(header)) != len(header):
        gaps.append((COLUMNS, f"a column name repeats; repeated metric names become {METRIC_PREFIX}<name>__2, …"))
    board, seen = Leaderboard(header), set()
    for line, cells in enumerate(body, start=2):
        if len(cells) != len(header):
            gaps.append((LEADERBOARD, f"line {line} has {len(cells)} cells but the header has {len(header)}"))
            continue
        record = dict(zip(header, cells))
        if record["version_id"] in seen:
            gaps.append((LEADERBOARD, f"line {line}: {record['version_id']!r} appears twice"))
            continue
        seen.add(record["version_id"])
        board.rows.append((line, record))
    return board, gaps


def render_leaderboard(header: list[str], rows: list[list]) -> str:
    """The CSV text: ``header`` then ``rows`` (cells already formatted), ``\\n`` line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
