"""One module per file the loop reads and writes: each owns that file's names, its parser (values
plus gaps) and its renderer. Checks, status, analysis, authoring, report and the runtime use only
these, so two readers of one file can never disagree.

JSON and CSV documents: ``spec`` (spec.json), ``eval_score`` (eval_score.json), ``eval_samples``
(eval_samples.jsonl), ``trivial_baselines`` (trivial_baselines.json), ``prepdata_stats``
(dataset/prepdata/<id>/stats.json), ``leaderboard_csv`` (a report's leaderboard.csv). Where each
file lives is ``mlloop.layout``'s (the one place for paths); the two files the user writes are
``mlloop.rules`` and ``mlloop.taskformat``.
"""
