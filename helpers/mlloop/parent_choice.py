"""Which version the next one branches from (``loop_config.branch_from`` or ``--from``): the
baseline, the previous version, a named one, or the best by the report's ranking when it is
better beyond noise. ``mlloop new-version`` uses it to author, ``mlloop status`` to say what
the next version will start from.
"""

from __future__ import annotations

from .compare import deltas_from
from .errors import MlloopError
from .layout import BASELINE, Project, is_inside, script_name, version_id, version_number
from .leaderboard import VERSION, load_versions, rank
from .rules import Rules

CHOICES = "vNNN, best, previous or baseline"


def usage_error(message: str) -> MlloopError:
    """A bad ``--from`` is a usage error (exit 2)."""
    err = MlloopError(message)
    err.exit_code = 2
    return err


def choose_parent(project: Project, rules: Rules, dataset_id: str | None, from_: str | None = None,
                  rows=None) -> tuple[str, str]:
    """``(parent version, why)`` for the next version; a clean refusal when there is none.

    ``rows`` are already-loaded leaderboard rows (status passes them to avoid a second read).
    """
    cur = project.cur()
    choice = (from_ or (rules.branch_from if cur else BASELINE)).strip()
    if choice in ("best", "previous", BASELINE) and cur is None:
        parent, why = BASELINE, "Step 0: v001 starts from the baseline"
    elif choice == BASELINE:
        parent, why = BASELINE, "--from baseline"
    elif choice == "previous":
        parent, why = version_id(cur), ("--from previous" if from_ else "branch_from: previous")
    elif choice == "best":
        rows = rows if rows is not None else load_versions(project, rules, dataset_id)
        ranking = rank(list(rows), rules)
        best = next((r for r in ranking.rows if r.primary is not None and project.script(r.name).is_file()), None)
        if best is None:
            raise MlloopError(
                f"the parent would be the best evaluated version, but no version has an evaluated "
                f"{rules.primary_metric} yet; evaluate one (`python 03_eval.py --version {version_id(cur)}`) "
                "or pass --from previous.")
        parent, why = beyond_noise(project, rules, ranking, best, "--from best" if from_ else "branch_from: best")
    elif version_number(choice) is not None:
        parent, why = choice, f"--from {choice}"
    else:
        raise usage_error(f"--from must be {CHOICES}; got {choice!r}.")
    script = project.script(parent)
    if not script.is_file():
        if parent == BASELINE:
            raise MlloopError(f"{script_name(BASELINE)} does not exist; finish build-baseline first "
                              "(`mlloop status` shows where it stands).")
        raise MlloopError(f"{script.name} does not exist, so {parent} cannot be the parent; "
                          f"pick an existing version ({CHOICES}).")
    if not is_inside(project.root, script):
        raise MlloopError(f"{script.name} is a link that leaves the project; copy the script into the project.")
    return parent, why


def beyond_noise(project: Project, rules: Rules, ranking, best, label: str) -> tuple[str, str]:
    """``(parent, why)`` for ``best``: the #1 version only when it is better beyond noise (the
    paired-bootstrap interval of the primary metric excludes 0) than every earlier evaluated
    version; else the earliest version it does not beat, the simpler one. The why names the interval."""
    primary = rules.primary_metric
    n_best = version_number(best.name)
    earlier = sorted((r for r in ranking.rows if r.kind == VERSION and r.primary is not None
                      and version_number(r.name) < n_best and project.script(r.name).is_file()),
                     key=lambda r: version_number(r.name))
    why = f"{label}, {primary} {best.primary:.6g}"
    if not earlier:
        return best.name, why
    beaten = []
    compared, failed = deltas_from(project, rules, ranking, best, earlier)
    for row, m in compared:
        span = f"{best.name} − {row.name} = {m.delta:+.6g}, 95% interval {m.interval()}"
        if m.verdict != "better":
            return row.name, (f"{label}: {best.name} ({primary} {best.primary:.6g}) is #1 but not better than the "
                              f"earlier {row.name} beyond noise ({span}); the earlier, simpler {row.name}")
        beaten.append((m.delta if ranking.higher_is_better else -m.delta, row.name, span))
    if beaten:
        why += f"; better beyond noise than every earlier version (closest: {min(beaten)[2]})"
    if failed:
        names = ", ".join(name for name, _ in failed)
        why += f"; not compared with {names}: {failed[0][1]}"
    return best.name, why
