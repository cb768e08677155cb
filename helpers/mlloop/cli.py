"""The ``mlloop`` command line. It only parses, calls the library and prints.

Every command takes ``--project DIR`` (default: the current folder) and ``--json`` (one JSON
document on stdout; progress goes to stderr). Exit codes: 0 ok, 1 problems found or a clean
failure, 2 usage error. Nothing here imports torch, lightning, timm or pandas: the modules
that need them are imported inside the commands that run training.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from . import __version__
from .errors import Findings, MlloopError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
TARGETS = "all | rules | profiling | prepdata | baseline | vNNN | report"


def project_options(fn):
    """``--project`` and ``--json`` on every command, so options work in any order."""

    @click.option("--project", "project_dir", type=click.Path(file_okay=False), default=None,
                  help="The project folder (default: the current folder).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlloopError as exc:
            _fail(exc, kwargs.get("as_json", False))
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
            raise
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as exc:  # never a traceback for the user; MLLOOP_DEBUG=1 shows it
            if os.environ.get("MLLOOP_DEBUG"):
                raise
            _fail(MlloopError(f"internal error: {type(exc).__name__}: {exc} "
                              "(set MLLOOP_DEBUG=1 to see where, and please report it)"), kwargs.get("as_json", False))

    return wrapper


def _quiet_broken_pipe() -> None:
    """`mlloop status | head` closed our stdout early: stop quietly, as `cat` would."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def _fail(exc: MlloopError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "error": str(exc), "problems": [p.to_dict() for p in exc.problems]},
                              ensure_ascii=False, indent=2))
    for p in exc.problems:
        click.echo(p.line(), err=True)
    click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _project(project_dir: str):
    from .layout import Project

    return Project.at(project_dir)


def _emit(as_json: bool, payload: dict, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        for line in lines:
            click.echo(line)


def _findings_lines(findings: Findings, ok_line: str) -> list[str]:
    lines = [f"problem: {p.line()}" for p in findings.problems]
    lines += [f"warning: {w.line()}" for w in findings.warnings]
    if findings.ok:
        lines.append(ok_line)
    else:
        lines.append(f"{len(findings.problems)} problem(s) found.")
    return lines


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings=CONTEXT, epilog="Exit codes: 0 ok, 1 problems found or a clean failure, 2 usage error.")
@click.version_option(__version__, prog_name="mlloop")
def cli():
    """mlloop: raw data to a checked baseline, a one-change-per-version training loop and a
    ranked leaderboard. Start with `mlloop init`, then `mlloop status`; `mlloop check` at
    every step."""


@cli.command()
@project_options
@click.option("--lang", type=click.Choice(["en", "ko"]), default="en", show_default=True,
              help="Language of the installed skills.")
@click.option("--force", is_flag=True, help="Overwrite the installed skill files and example rules.")
def init(project_dir, as_json, lang, force):
    """Install the skills, example rules and Claude Code hooks into a project.

    Creates .claude/skills/{build-baseline,progressive-training}/ and dataset/rawdata/, and
    merges mlloop's hooks into .claude/settings.json. Safe to run twice; your edited rules
    are kept unless you pass --force.
    """
    from .install import init_project

    result = init_project(_project(project_dir), lang=lang, force=force)
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
def rules(project_dir, as_json):
    """Validate both rules files and print the resolved rules with defaults."""
    from .rules import resolve

    resolved = resolve(_project(project_dir))
    f = resolved.findings
    payload = {**f.to_dict(), "files": {s: {"path": rf.rel, "exists": rf.exists} for s, rf in resolved.files.items()},
               "rules": resolved.to_dict()}
    lines = [f"{s}: {rf.rel}" + ("" if rf.exists else " (absent: defaults apply)") for s, rf in resolved.files.items()]
    lines += ["", json.dumps(resolved.to_dict(), indent=2, ensure_ascii=False), ""]
    _emit(as_json, payload, lines + _findings_lines(f, "rules ok"))
    sys.exit(0 if f.ok else 1)


@cli.command()
@project_options
@click.option("--task", "task_type", default=None, metavar="TASK_TYPE",
              help="Only the metrics that fit this task type (task_format.yaml's names).")
def metrics(project_dir, as_json, task_type):
    """List the metrics the rules may name: direction, the predict() fields each needs, the
    task families it fits and its trivial floor."""
    from .metrics import listing, task_families

    rows = listing(task_type)
    families = task_families(task_type) if task_type else None
    payload = {"ok": True, "task_type": task_type, "families": list(families) if families is not None else None,
               "metrics": rows}
    lines = [f"{'name':<24} {'better':<7} {'needs':<28} {'fits':<28} aliases"]
    for m in rows:
        lines.append(f"{m['name']:<24} {'higher' if m['higher_is_better'] else 'lower':<7} {', '.join(m['needs']):<28} "
                     f"{', '.join(m['families']):<28} {', '.join(m['aliases'])}")
    if task_type and families is None:
        lines.append(f"({task_type!r} is not a task type mlloop maps to metric families: every metric is listed)")
    _emit(as_json, payload, lines)


@cli.command()
@project_options
@click.option("--force", is_flag=True, help="Rewrite an existing profiling.md (the old one is kept as .bak).")
@click.option("--load-test", "load_test", is_flag=True,
              help="Run Step 0's seeded load test with 01_data_pipeline.py's parse_sources() instead (writes nothing).")
@click.option("--samples", type=int, default=10, show_default=True, help="Records drawn per source (--load-test).")
@click.option("--allow", multiple=True, metavar="DEFECT",
              help="A defect kind that does not fail the load test (e.g. missing_asset, documented under Edge cases).")
def profile(project_dir, as_json, force, load_test, samples, allow):
    """Inventory dataset/rawdata/ and write a profiling.md draft (facts filled, gaps marked)."""
    if load_test:
        from .loadtest import run_load_test

        tested = run_load_test(_project(project_dir), samples, tuple(allow))
        _emit(as_json, tested.to_dict(), tested.lines())
        sys.exit(0 if tested.ok else 1)
    from .profiling_draft import draft_profiling

    result = draft_profiling(_project(project_dir), force=force)
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
def status(project_dir, as_json):
    """Where the loop stands: phase, step, dataset_id, cur, and the exact next command."""
    from .state import loop_status

    result = loop_status(_project(project_dir))
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
@click.argument("target", default="all", metavar="[TARGET]")
def check(project_dir, as_json, target):
    f"""Check the contracts of TARGET: {TARGETS}. Never changes the tree."""
    from .checks import run_check

    findings = run_check(_project(project_dir), target)
    _emit(as_json, {**findings.to_dict(), "target": target}, _findings_lines(findings, f"check {target}: ok"))
    sys.exit(0 if findings.ok else 1)


check.help = f"Check the contracts of TARGET ({TARGETS}; default all). Never changes the tree."


@cli.command("new-version")
@project_options
@click.option("--from", "from_", metavar="vNNN|best|previous|baseline", default=None,
              help="Parent version (default: loop_config.branch_from).")
def new_version(project_dir, as_json, from_):
    """Author the next version script from its parent and lay out its folder (Steps 0 and 6)."""
    from .authoring import new_version as author

    result = author(_project(project_dir), from_=from_)
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
@click.argument("version", metavar="vNNN")
@click.option("--force", is_flag=True, help="Rewrite an existing result-analysis.md (kept as .bak).")
def analyze(project_dir, as_json, version, force):
    """Write the result-analysis.md skeleton for VERSION with the computed parts filled in."""
    from .analysis import draft_analysis

    result = draft_analysis(_project(project_dir), version, force=force)
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
@click.argument("version_a", metavar="vA")
@click.argument("version_b", metavar="vB")
def compare(project_dir, as_json, version_a, version_b):
    """Delta vB − vA of every rules metric with a 95% interval, and a verdict.

    The interval is a seeded paired bootstrap over the records in each version's
    eval_samples.jsonl: records are paired by id (two versions evaluated on different records
    are refused), assumed i.i.d., resampled 2,000 times with the rules' seed, and the 2.5th and
    97.5th percentiles of the resampled deltas are reported. Corpus metrics (CER, F1, ...) are
    recomputed on each resample. The verdict is better or worse when the interval excludes 0 (in
    the metric's direction), else within noise. Running it again gives the same numbers.
    """
    from .compare import compare_versions

    result = compare_versions(_project(project_dir), version_a, version_b)
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
def report(project_dir, as_json):
    """Step 7: re-evaluate stale versions, build the leaderboard and the final report."""
    from .final_report import build_report

    result = build_report(_project(project_dir), progress=_progress)
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
@click.option("--task", default="image-classification", show_default=True,
              help="The example's task type: image-classification, text-classification, object-detection, "
                   "image-segmentation, time-series-forecasting, audio-classification, ocr-line-recognition or "
                   "tabular-classification.")
@click.option("--versions", type=click.IntRange(1, 6), default=3, show_default=True, help="Versions to train.")
@click.option("--size", type=click.Choice(["tiny", "small", "medium"]), default="small", show_default=True,
              help="Size of the generated raw data.")
@click.option("--test-ratio", type=click.FloatRange(0, 0.5, min_open=True), default=None,
              help="Hold out this share as a test split that `mlloop report` scores once (dataset_config.test_ratio).")
@click.option("--primary-metric", default=None, metavar="NAME",
              help="Rank the loop by this metric (any name `mlloop metrics` lists for the task).")
def demo(project_dir, as_json, task, versions, size, test_ratio, primary_metric):
    """Run the whole loop headless on a generated example dataset, in a new folder.

    Without --project the demo goes into ./mlloop-demo; it never writes into a folder that is
    not empty. Progress goes to stderr; each command's output to mlloop-demo.log there.
    """
    from .demo import run_demo

    result = run_demo(project_dir, task=task, versions=versions, size=size, primary_metric=primary_metric,
                      progress=_progress, test_ratio=test_ratio)
    _emit(as_json, result.to_dict(), result.lines())


@cli.command()
@project_options
@click.argument("event", required=False, metavar="[EVENT]")
def hook(project_dir, as_json, event):
    """Claude Code hook entry point: reads the hook JSON on stdin (EVENT: session-start,
    pre-tool-use, stop; default: the payload's hook_event_name)."""
    from .hooks import run_hook

    outcome = run_hook(event, sys.stdin.read() if not sys.stdin.isatty() else "", project_dir)
    if outcome.stdout:
        click.echo(outcome.stdout)
    if outcome.stderr:
        click.echo(outcome.stderr, err=True)
    sys.exit(outcome.exit_code)


def main():
    cli()
