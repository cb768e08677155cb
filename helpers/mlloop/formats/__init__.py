"""One module per file the loop reads and writes: each owns that file's names, its parser (values
plus gaps) and its renderer. Checks, status, analysis, authoring, report and the runtime use only
these, so two readers of one file can never disagree.

JSON and CSV documents: ``spec`` (spec.json), ``eval_score`` (eval_score.json), ``eval_samples``
(eval_samples.jsonl), ``trivial_baselines`` (trivial_baselines.json), ``intervals``
(intervals.json), ``sample_meta`` (an infer sample's meta.json), ``prepdata_stats``
(dataset/prepdata/<id>/stats.json), ``leaderboard_csv`` (a report's leaderboard.csv). Markdown
documents: ``change_summary``, ``result_analysis``, ``action_extract``, ``profiling``,
``final_analysis``, ``smoke_report``, ``retry_report``, ``pipeline_report``, ``patch_report``
(``sections`` is their shared parsing). Where each file lives is ``mlloop.layout``'s (the one
place for paths); the two files the user writes are ``mlloop.rules`` and ``mlloop.taskformat``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """What a document lacks or gets wrong, as data: the check turns it into a problem (or a
    warning) naming the file; ``code`` is the problem code ``mlloop check`` prints."""

    code: str
    message: str
    warning: bool = False
