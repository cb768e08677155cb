"""``report.html``: the report as one self-contained page (opens from disk, no network).

The leaderboard as a table (validation score, held-out test score with its interval, floor),
the headline facts, and every picture of ``mlloop.report_pictures`` embedded as a data URI, so
the file can be mailed or opened anywhere without its folder. No script, no external style.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from .heldout import few_samples_note
from .leaderboard import EXTERNAL, Ranking, fmt

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.facts{color:#555;margin:.2rem 0 1rem 0}.note{background:#fff6e0;border-left:4px solid #f0a020;padding:.6rem 1rem}
.warn{background:#fdecea;border-left:4px solid #d62728;padding:.6rem 1rem}
table{border-collapse:collapse;font-size:.9rem}th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
th{background:#f4f6f8}tr.best td{background:#eef7ee;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.2rem 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.85rem}
"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(*, name: str, dataset_id: str, ranking: Ranking, floors: dict, best, held, pictures, report_dir: Path,
                warnings: list[str], none_beat: bool) -> str:
    primary = ranking.primary
    direction = "higher is better" if ranking.higher_is_better else "lower is better"
    used = held is not None and held.used
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>mlloop report {escape(name)}</title>", f"<style>{STYLE}</style></head><body>",
           f"<h1>mlloop report — {escape(name)}</h1>",
           f'<p class="facts">dataset <b>{escape(dataset_id)}</b> · primary metric <b>{escape(primary)}</b> '
           f"({direction}) · best version <b>{escape(best.name)}</b> ({escape(primary)} {escape(fmt(best.primary))})</p>"]
    if none_beat:
        out.append('<p class="warn"><b>No version beats its trivial baseline.</b> The leaderboard ranks failures.</p>')
    if not used:
        out.append('<p class="note"><b>The best score is optimistic:</b> the winner was selected on the same '
                   "validation split it is reported on. Set <code>dataset_config.test_ratio</code> to hold out a "
                   "test split that the report scores once.</p>")
    out += ["<h2>Leaderboard</h2>", '<table id="leaderboard"><thead><tr><th>rank</th><th>version</th>',
            f"<th>valid {escape(primary)}</th>"]
    if used:
        out.append(f"<th>test {escape(primary)} [95% interval]</th>")
    out.append("<th>trivial floor</th><th>beats floor</th><th>latency ms</th></tr></thead><tbody>")
    for i, row in enumerate(ranking.rows, start=1):
        floor = floors.get(row.name)
        beats = "-" if floor is None else {True: "yes", False: "NO", None: "-"}[floor.beaten_by(row.score.value(floor.metric))]
        cls = ' class="best"' if row.name == best.name and row.kind != EXTERNAL else ""
        cells = [str(i), escape(row.name + (" (external)" if row.kind == EXTERNAL else "")),
                 f'<td class="num">{escape(fmt(row.primary))}</td>']
        if used:
            test = held.scores.get(row.name)
            cells.append(f'<td class="num">{escape(test.cell(primary)) if test else "not scored (top 3 only)"}</td>')
        cells += [escape(f"{floor.metric} {fmt(floor.value)} ({floor.predictor})") if floor else "-", beats,
                  f'<td class="num">{escape(fmt(row.score.latency_ms))}</td>']
        out.append(f"<tr{cls}>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    if used:
        note = few_samples_note(held)
        if note:
            out.append(f'<p class="note">{escape(note)}</p>')
    out.append("<p>The full table, every metric: <code>leaderboard.csv</code>; the analysis: "
               "<code>final-analysis.md</code>.</p>")
    if warnings:
        out += ["<h2>Warnings</h2>", "<ul>"] + [f"<li>{escape(w)}</li>" for w in warnings] + ["</ul>"]
    out.append("<h2>Pictures</h2>")
    for pic in pictures:
        out.append(f'<figure><img src="{data_uri(report_dir / pic.file)}" alt="{escape(pic.title)}">'
                   f"<figcaption><b>{escape(pic.title)}.</b> {escape(pic.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
