"""``mlloop check [TARGET]``: every contract of docs/contracts.md as a check that can fail.

TARGET is ``all`` (default), ``rules``, ``profiling``, ``prepdata``, ``baseline``, a version id
(``v001``) or ``report``. ``all`` checks the rules, everything that exists (a step not yet
started is not a problem, so a fresh project passes), the chain between steps, and warns about
stray names. A named target requires its artifacts to exist. Checks only read: the tree is
never changed, and a link that leaves the project is never followed.
"""

from __future__ import annotations

import difflib
import os

from ..errors import Findings, MlloopError
from ..layout import Project, version_number
from ..stages import version_stage
from . import evaluation, final_report, heldout, prepdata, profiling, rulefiles, versions
from .context import Context
from .versions import check_version_step, misspelled_version

TARGETS = ("all", "rules", "profiling", "prepdata", "baseline", "report")


class UnknownTarget(MlloopError):
    """A TARGET that is none of the above: a usage error (exit 2)."""

    exit_code = 2


def _target_error(target: str) -> UnknownTarget:
    meant = misspelled_version(target)
    close = [meant] if meant else difflib.get_close_matches(target, TARGETS, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownTarget(f"unknown check target {target!r}; valid targets: {', '.join(TARGETS)}, or a version id "
                         f"like v001.{hint}")


def run_check(project: Project, target: str = "all") -> Findings:
    """Check ``target`` in ``project``; problems and warnings come back in the Findings."""
    target = target or "all"
    if target not in TARGETS and version_number(target) is None:
        raise _target_error(target)

    ctx = Context(project)
    steps = {
        "rules": [rulefiles.check_rules],
        "profiling": [lambda c: profiling.check_profiling(c, required=True)],
        "prepdata": [lambda c: prepdata.check_prepdata(c, required=True), heldout.check_prepdata_test],
        "baseline": [lambda c: versions.check_baseline(c, required=True),
                     lambda c: heldout.check_version_test(c, "baseline")],
        "report": [lambda c: final_report.check_reports(c, required=True), heldout.check_newest_report_test],
        "all": [rulefiles.check_rules,
                lambda c: profiling.check_profiling(c, required=False),
                lambda c: prepdata.check_prepdata(c, required=False),
                lambda c: versions.check_baseline(c, required=False),
                heldout.check_prepdata_test,
                versions.check_all_versions,
                heldout.check_all_versions_test,
                evaluation.check_externals,
                lambda c: final_report.check_reports(c, required=False),
                heldout.check_newest_report_test],
    }.get(target) or [lambda c: versions.check_one_version(c, target), lambda c: heldout.check_version_test(c, target)]
    if target not in ("all", "rules") and ctx.rules.findings.problems:
        ctx.warn("rules.invalid", "", f"the rules have {len(ctx.rules.findings.problems)} problem(s); "
                 "`mlloop check rules` lists them (defaults were used where they are broken)")
    for step in steps:
        _run(ctx, step, target)
    return ctx.out


def _run(ctx: Context, step, target: str) -> None:
    """One part of the check; a crash in it becomes a problem instead of hiding the others."""
    try:
        step(ctx)
    except MlloopError:
        raise
    except Exception as exc:  # pragma: no cover - only on a bug; MLLOOP_DEBUG=1 shows where
        if os.environ.get("MLLOOP_DEBUG"):
            raise
        ctx.problem("check.internal", "", f"internal error while checking {target}: {type(exc).__name__}: {exc} "
                    "(set MLLOOP_DEBUG=1 to see where, and please report it)")


class StepChecks:
    """The part of ``mlloop check vNNN`` for one step of one version, as ``mlloop status`` asks
    for the step it stands on: the same functions, one Context (each file read and hashed once)."""

    def __init__(self, project: Project):
        self.ctx = Context(project)

    def version(self, vid: str, step: int) -> Findings:
        self.ctx.out, found = Findings(), self.ctx.out
        try:
            _run(self.ctx, lambda c: check_version_step(c, vid, version_stage(c.project, vid), step), vid)
            return self.ctx.out
        finally:
            self.ctx.out = found
