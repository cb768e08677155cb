"""CLI speed as ratios against a bare interpreter start, measured in the same run.

    uv run python benchmarks/cli_bench.py [--reps 9]

Prints, interleaved and median-of-reps (fresh processes):
  - `mlloop --help` start-up / `python -c pass`              (target <= 6x)
  - `mlloop check` on a generated 100-version project / bare  (a light CLI start-up would be <= 13x)
  - `mlloop status` on the same project / bare                (it runs in the SessionStart hook)
and, in-process (imports done, median of reps):
  - the report's leaderboard build on 1,000 versions          (target <= 0.1 s)

Not a test: timings depend on the machine; the ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from factory import PT_RULES, ProjectFactory  # noqa: E402


def mlloop_command() -> list[str]:
    script = Path(sys.executable).parent / "mlloop"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mlloop"]


def timed(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, proc.returncode


def project_with_versions(root: Path, n: int) -> ProjectFactory:
    """A finished loop of ``n`` analysed versions, built by the test factory (no training)."""
    pt = copy.deepcopy(PT_RULES)
    pt["loop_config"]["max_versions"] = n
    factory = ProjectFactory(root)
    factory.build_baseline_done().rules(pt=pt)
    for i in range(1, n + 1):
        factory.version(i, "action", accuracy=0.4 + (i % 37) / 100)
    return factory


def scores_only(root: Path, n: int) -> ProjectFactory:
    """``n`` eval_score.json files as 03_eval.py writes them (4 metrics, ~5 % without the primary,
    ~2 % with a repeated name): all the leaderboard reads."""
    factory = ProjectFactory(root)
    factory.rules()
    for i in range(1, n + 1):
        metrics = [{"name": "loss", "value": 1.0 / i, "higher_is_better": False},
                   {"name": "macro_f1", "value": (i % 97) / 100, "higher_is_better": True}]
        if i % 20:
            metrics.insert(1, {"name": "accuracy", "value": (i % 89) / 100, "higher_is_better": True})
        if i % 50 == 0:
            metrics.append({"name": "macro_f1", "value": 0.1, "higher_is_better": True})
        doc = {"dataset_id": "v1", "created_at": "2026-11-21T10:00:00+00:00", "num_samples": 500,
               "metrics": metrics, "latency_ms": 3.2, "version_id": f"v{i:03d}", "seed": 42,
               "checkpoint_sha256": "0" * 64, "eval_script_sha256": "1" * 64, "score_sha256": "2" * 64}
        path = root / "Models" / "Artifacts" / f"v{i:03d}" / "eval_score.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
    return factory


def leaderboard_seconds(factory: ProjectFactory, reps: int) -> dict:
    """Median seconds of: the whole build (strict load + validate + rank + render), the rank and
    render alone, and a plain ``json.load`` of the same files (the floor any builder pays)."""
    from mlloop.leaderboard import build_leaderboard, leaderboard_csv, load_versions, rank
    from mlloop.rules import resolve

    rules = resolve(factory.project)
    report_dir = factory.project.report_root / "2026-01-01_00-00"
    paths = sorted(factory.project.artifacts_root.glob("v*/eval_score.json"))
    build_leaderboard(factory.project, rules, "v1", report_dir)  # warm the file cache
    rows = load_versions(factory.project, rules, "v1")
    out = {"build": [], "rank_render": [], "json_load": []}
    for _ in range(reps):  # interleaved, like the processes above
        start = time.perf_counter()
        ranking, _ = build_leaderboard(factory.project, rules, "v1", report_dir)
        out["build"].append(time.perf_counter() - start)
        start = time.perf_counter()
        leaderboard_csv(rank(list(rows), rules), report_dir, "v001")
        out["rank_render"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for path in paths:
            with open(path, "rb") as fh:
                json.load(fh)
        out["json_load"].append(time.perf_counter() - start)
    result = {key: statistics.median(values) for key, values in out.items()}
    result["rows"] = len(ranking.rows)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="mlloop CLI benchmark")
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlloop-bench-") as tmp:
        tmp = Path(tmp)
        print("generating a 100-version project and 1,000 eval_score.json files ...", flush=True)
        hundred = project_with_versions(tmp / "p100", 100)
        thousand = scores_only(tmp / "p1000", 1000)
        mlloop = mlloop_command()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "mlloop --help": mlloop + ["--help"],
            "mlloop check (100 versions)": mlloop + ["check", "--project", str(hundred.root)],
            "mlloop status (100 versions)": mlloop + ["status", "--project", str(hundred.root)],
        }
        samples = {name: [] for name in commands}
        codes = {}
        for name, cmd in commands.items():  # one untimed run each: file cache, .pyc
            timed(cmd)
        for _ in range(args.reps):
            for name, cmd in commands.items():  # interleaved, so drift hits every command alike
                seconds, codes[name] = timed(cmd)
                samples[name].append(seconds)
        bare = statistics.median(samples["python -c pass"])
        results = {}
        print(f"\n{'command':32s} {'median':>10s} {'x bare':>8s}  [min..max] x bare   exit")
        for name in commands:
            med = statistics.median(samples[name])
            lo, hi = min(samples[name]) / bare, max(samples[name]) / bare
            results[name] = {"median_s": med, "ratio": med / bare, "exit": codes[name]}
            print(f"{name:32s} {med * 1000:8.1f}ms {med / bare:7.2f}x  [{lo:.2f}..{hi:.2f}]  {codes[name]:>5d}")
        lb = leaderboard_seconds(thousand, args.reps)
        results["leaderboard (1,000 versions, in-process)"] = {**lb, "ratio": lb["build"] / bare}
        print(f"{'leaderboard build, 1,000 versions':32s} {lb['build'] * 1000:8.1f}ms {lb['build'] / bare:7.2f}x  "
              f"(in-process, {lb['rows']} rows; target <= 100 ms)")
        print(f"{'  of which rank + render':32s} {lb['rank_render'] * 1000:8.1f}ms")
        print(f"{'  plain json.load of the files':32s} {lb['json_load'] * 1000:8.1f}ms  "
              f"(build = {lb['build'] / lb['json_load']:.1f}x a bare JSON load)")
        print(f"\ntargets: --help <= 6x: {'met' if results['mlloop --help']['ratio'] <= 6 else 'NOT met'}; "
              f"leaderboard <= 0.1 s: {'met' if lb['build'] <= 0.1 else 'NOT met'}")
    return results


if __name__ == "__main__":
    main()
