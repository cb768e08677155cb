"""Step 7 of progressive-training: the final report, built once after the loop ends.

Usage (from the project root):

    python 04_final_report.py            # same as `mlloop report`
    python 04_final_report.py --project DIR

It re-evaluates every version whose score is stale (checkpoint or 03_eval.py changed since,
edited by hand, never evaluated) with `python 03_eval.py --version vNNN`, ranks all versions
and the external models in Models/external/ by the primary metric, and writes
Models/Report/YYYY-MM-DD_HH-MM/{leaderboard.csv, final-analysis.md, Artifacts/<best>/}.
An existing report is never overwritten: a second run in the same minute gets a `_2` suffix.

The work is in the mlloop library (mlloop.final_report), so this script and `mlloop report`
produce the same report. What is left to you: the section of final-analysis.md between
<!-- mlloop:analysis:start --> and <!-- mlloop:analysis:end --> (why the top 3 ranked high).
"""

import argparse
import sys

PROJECT_DIR = "."  # the project root: this script lives there and is run from there
LOCK_TIMEOUT_S = 30.0  # how long to wait for another mlloop writer (report, new-version) to finish


def main(argv=None):
    from mlloop.script import Project, build_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=PROJECT_DIR, help="the project folder (default: %(default)s)")
    args = parser.parse_args(argv)
    result = build_report(Project.at(args.project), progress=lambda message: print(message, file=sys.stderr),
                          lock_timeout=LOCK_TIMEOUT_S)
    for line in result.lines():
        print(line)
    return result.to_dict()


if __name__ == "__main__":
    from mlloop.script import MlloopError

    try:
        main()
    except MlloopError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
