"""`mlloop demo`: the whole loop, headless, on a generated example dataset.

The same files an agent would produce, made by the same code an agent would run: `mlloop init`,
the example's raw data, `mlloop profile`, 01_data_pipeline.py, the baseline smoke test, then
v001…vN — each trained, evaluated by 03_eval.py, analysed (`mlloop analyze` plus computed text)
and given ONE scripted change (`examples/<name>/demo_actions.json`) authored with
`mlloop new-version` — and finally `mlloop report` and `mlloop check`. Only the judgement an
agent would add is scripted; every number comes from training and evaluation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import bundle
from . import markdown as md
from . import metrics as registry
from .analysis import draft_analysis
from .authoring import new_version
from .bundle import examples_dir
from .checks import run_check
from .errors import MlloopError
from .final_report import build_report
from .formats import action_extract, final_analysis
from .formats.eval_samples import read_eval_samples
from .formats.eval_score import read_eval_score
from .formats.leaderboard_csv import parse_leaderboard
from .formats.trivial_baselines import read_floor
from .install import init_project
from .jsonio import read_json, write_json_atomic, write_text_atomic
from .layout import EVAL_SCORE, LEADERBOARD_CSV, PROGRESSIVE_TRAINING, Project, version_id
from .profiling_draft import draft_profiling
from .rules import resolve

DEFAULT_DIR = "mlloop-demo"
TEMPLATE_OF_TASK = {  # example task type -> the training template it starts from
    "ocr-line-recognition": "train/ocr_recognition.py",
    "image-classification": "train/image_classification.py",
    "tabular-classification": "train/tabular.py",
    "text-classification": "train/text_classification.py",
    "time-series-forecasting": "train/time_series_forecasting.py",
    "image-segmentation": "train/image_segmentation.py",
    "object-detection": "train/object_detection.py",
    "audio-classification": "train/audio_classification.py",
}
LOG_NAME = "mlloop-demo.log"
FILL_RE = re.compile(r"^_fill in:.*_\s*$")


@dataclass
class DemoResult:
    project: str
    task: str
    seconds: float
    report: str
    primary: str
    versions: list[dict] = field(default_factory=list)
    leaderboard: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ok": True, "project": self.project, "task": self.task, "seconds": round(self.seconds, 1),
                "report": self.report, "primary_metric": self.primary, "versions": self.versions,
                "leaderboard": self.leaderboard, "warnings": self.warnings}

    def lines(self) -> list[str]:
        out = [f"leaderboard ({self.report}/leaderboard.csv, ranked by {self.primary}):"]
        floors = {v["version"]: v for v in self.versions}
        for rank, row in enumerate(self.leaderboard, start=1):
            v = floors.get(row["version_id"], {})
            value = row.get("metric__" + self.primary, "")
            shown = f"{float(value):.4g}" if value else "-"
            out.append(f"  {rank}. {row['version_id']:<6} {self.primary} {shown:<8} {v.get('floor_text', '')}")
        out += [f"warning: {w}" for w in self.warnings]
        out.append(f"report: {self.report}/final-analysis.md")
        out.append(f"mlloop check: ok ({self.seconds:.0f} s in all). Look around: mlloop status --project {self.project}")
        return out


def load_registry():
    """examples/registry.py, loaded by path (examples/ ships as data, not as a package)."""
    path = examples_dir() / "registry.py"
    spec = importlib.util.spec_from_file_location("mlloop_examples_registry", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_setting(text: str, name: str, value) -> tuple[str, str]:
    """Change one UPPER_CASE setting line of a script; returns the new text and the old value."""
    pattern = re.compile(rf"^({re.escape(name)}\s*=\s*)(.+?)(\s+#.*)?$", re.MULTILINE)
    matches = list(pattern.finditer(text))
    if len(matches) != 1:
        raise MlloopError(f"the script has {len(matches)} '{name} = ...' lines; the demo changes exactly one.")
    m = matches[0]
    new_line = f"{m.group(1)}{value!r}{m.group(3) or ''}"
    return text[:m.start()] + new_line + text[m.end():], m.group(2).strip()


def demo_primary(name: str | None, task: str) -> str | None:
    """The canonical name of ``--primary-metric``; an unknown or unfitting name stops the demo."""
    if name is None:
        return None
    parsed = registry.parse(name)
    if parsed is None:
        raise MlloopError(f"--primary-metric: {registry.unknown_message(name)}.")
    if not registry.fits(name, task):
        raise MlloopError(f"--primary-metric: {name} does not fit the {task} example; "
                          f"`mlloop metrics --task {task}` lists the metrics that do.")
    return parsed.name


def use_primary(rules: dict, name: str) -> None:
    """Make ``name`` the rules' primary metric, listed after the loss with the registry's direction."""
    ec = rules.setdefault("eval_config", {})
    listed = [m for m in ec.get("metrics", []) if registry.canonical(m["name"] if isinstance(m, dict) else m) != name]
    ec["metrics"] = listed + [{"name": name, "higher_is_better": registry.higher_is_better(name)}]
    ec["primary_metric"] = name


class Demo:
    def __init__(self, root: Path, task: str, versions: int, size: str, progress, test_ratio: float | None = None,
                 primary_metric: str | None = None):
        self.root, self.task, self.versions, self.size = root, task, versions, size
        self.test_ratio, self.primary_metric = test_ratio, primary_metric
        self.progress = progress or (lambda message: None)
        self.total = 7 + 4 * versions
        self.done = 0
        self.log = root / LOG_NAME

    # ---- plumbing ---------------------------------------------------------------------------
    def step(self, label: str):
        demo = self

        class _Step:
            def __enter__(self):
                demo.done += 1
                self.t0 = time.perf_counter()
                demo.progress(f"[{demo.done}/{demo.total}] {label} ...")
                return self

            def __exit__(self, exc_type, exc, tb):
                if exc_type is None:
                    demo.progress(f"        done in {time.perf_counter() - self.t0:.1f}s" +
                                  (f": {self.note}" if getattr(self, "note", "") else ""))
                return False

        return _Step()

    def run(self, *args: str) -> str:
        """Run ``python ARGS`` in the project, as the agent would; output goes to the log."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run([sys.executable, *args], cwd=self.root, capture_output=True, text=True, env=env)
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"$ python {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise MlloopError(f"`python {' '.join(args)}` failed in {self.root} (exit {proc.returncode}); "
                              f"the full output is in {LOG_NAME}:\n{tail}")
        return proc.stdout

    def check(self, target: str) -> None:
        findings = run_check(self.project, target)
        if not findings.ok:
            raise MlloopError(f"mlloop check {target} found {len(findings.problems)} problem(s) in the demo project",
                              findings.problems)

    @property
    def project(self) -> Project:
        return Project(self.root.resolve())

    # ---- the loop ---------------------------------------------------------------------------
    def build_baseline(self, registry) -> None:
        with self.step(f"mlloop init + example raw data ({self.task}, {self.size})") as s:
            init_project(self.project)
            info = registry.prepare_project(self.task, self.root, size=self.size)
            rules_path = self.project.rules_path(PROGRESSIVE_TRAINING)
            rules = read_json(rules_path)
            rules.setdefault("loop_config", {})["max_versions"] = self.versions
            if self.primary_metric:
                use_primary(rules, self.primary_metric)
            write_json_atomic(rules_path, rules)
            if self.test_ratio:  # a held-out test split, scored once by `mlloop report`
                bb_path = self.project.rules_path("build-baseline")
                bb = read_json(bb_path)
                bb.setdefault("dataset_config", {})["test_ratio"] = self.test_ratio
                write_json_atomic(bb_path, bb)
            s.note = ", ".join(f"{k}: {v}" for k, v in info["raw"].items())
        with self.step("Step 0: mlloop profile, then the agent's part of profiling.md"):
            draft_profiling(self.project)
            registry.complete_profiling(self.task, self.root)
            self.check("profiling")
        with self.step("Step 1: python 01_data_pipeline.py") as s:
            s.note = self.run("01_data_pipeline.py").strip().splitlines()[-1]
            self.check("prepdata")
        with self.step("Step 2: 02_train_baseline.py (contract, learnability probe, batch search, smoke run)") as s:
            # The copies `mlloop init` installed, as the agent would take them.
            template = bundle.template(TEMPLATE_OF_TASK[self.task], self.project.skills_dir)
            text, _ = set_setting(template.read_text(encoding="utf-8"), "NUM_WORKERS", 0)  # per user_instruction.md
            write_text_atomic(self.project.script("baseline"), text)
            for name in ("03_eval.py", "04_final_report.py"):
                src = bundle.template(name, self.project.skills_dir)
                write_text_atomic(self.root / name, src.read_text(encoding="utf-8"))
            out = self.run("02_train_baseline.py")
            s.note = ", ".join(" ".join(line.split()) for line in out.splitlines()
                               if line.split(":")[0].strip() in ("overall_result", "optimal_batch_size", "probe"))
        with self.step("Step 3: mlloop check baseline"):
            self.check("baseline")

    def loop(self, actions: list[dict]) -> list[dict]:
        summaries = []
        for n in range(1, self.versions + 1):
            vid = version_id(n)
            with self.step(f"{vid}: mlloop new-version" + (" + its one change" if n > 1 else "")) as s:
                made = new_version(self.project)
                if n > 1:
                    self.apply_action(vid, actions[n - 2])
                s.note = f"parent {made.parent}"
            with self.step(f"{vid}: python 02_train_{vid}.py"):
                self.run(f"02_train_{vid}.py")
            with self.step(f"{vid}: python 03_eval.py --version {vid}") as s:
                self.run("03_eval.py", "--version", vid)
                summary = self.version_summary(vid, made.parent)
                s.note = f"{summary['primary_text']}; {summary['floor_text']}"
            with self.step(f"{vid}: result-analysis.md and action-extract.md"):
                self.write_analysis(vid, summary, actions, n)
                self.write_action(vid, actions[n - 1], actions[n:n + 3], summary)
                self.check(vid)
            summaries.append(summary)
        return summaries

    def apply_action(self, vid: str, action: dict) -> None:
        """The agent's Step 6: exactly the one change the Selected Action names."""
        script = self.project.script(vid)
        text, old = set_setting(script.read_text(encoding="utf-8"), action["setting"], action["value"])
        write_text_atomic(script, text)
        action["applied_from"] = old

    def version_summary(self, vid: str, parent: str) -> dict:
        project, rules = self.project, resolve(self.project)
        score = read_eval_score(project, project.artifact_dir(vid) / EVAL_SCORE, vid)
        floor = read_floor(project, vid)
        primary = rules.primary_metric
        value = score.value(primary) if score else None
        if floor is None:
            floor_text = "no trivial floor for this task"
        else:
            beats = floor.beaten_by(score.value(floor.metric) if score else None)
            floor_text = (f"floor {floor.metric} {floor.value:.4g} ({floor.predictor}): "
                          + ("beats it" if beats else "DOES NOT BEAT IT"))
        return {"version": vid, "parent": parent, "primary": primary, "value": value,
                "primary_text": f"{primary} {value:.4g}" if value is not None else f"no {primary}",
                "floor_text": floor_text, "num_samples": score.doc.get("num_samples") if score else None}

    def write_analysis(self, vid: str, summary: dict, actions: list[dict], n: int) -> None:
        """`mlloop analyze` writes the computed parts; the demo fills the judgement parts."""
        draft_analysis(self.project, vid)
        path = self.project.artifact_dir(vid) / "result-analysis.md"
        change = ("none: v001 is the baseline script trained in full" if n == 1 else
                  f"{actions[n - 2]['setting']} {actions[n - 2].get('applied_from')} -> {actions[n - 2]['value']!r}")
        fills = {
            "summary": f"{vid} (change: {change}; parent {summary['parent']}) reached {summary['primary_text']} "
                       f"on {summary['num_samples']} validation samples; {summary['floor_text']}.",
            "evidence": self.evidence(vid),
            "hypotheses": f"- {actions[n - 1]['hypothesis']}.",
            "next focus candidates": "\n".join(f"- {a['setting']} -> {a['value']!r}: {a['goal']}"
                                               for a in actions[n - 1:n + 2]),
        }
        out, current = [], None
        for line in path.read_text(encoding="utf-8").splitlines():
            heading = md.HEADING_RE.match(line)
            if heading:
                current = md.normalise(heading.group(2))
            out.append(fills.get(current, line) if FILL_RE.match(line) and current in fills else line)
        write_text_atomic(path, "\n".join(out) + "\n")

    def evidence(self, vid: str) -> str:
        rows, _ = read_eval_samples(self.project.eval_samples_path(vid))
        wrong = [r for r in rows if str(r.get("prediction")) != str(r.get("target"))]
        if not wrong:
            return f"All {len(rows)} validation samples are predicted exactly (eval_samples.jsonl)."
        shown = "; ".join(f"{r['id']}: {str(r.get('prediction'))[:30]!r} for {str(r.get('target'))[:30]!r}"
                          for r in wrong[:3])
        return f"{len(wrong)} of {len(rows)} validation samples are not exact (eval_samples.jsonl), e.g. {shown}."

    def write_action(self, vid: str, action: dict, deferred: list[dict], summary: dict) -> None:
        primary = summary["primary"]
        text = action_extract.render(vid, {
            "Goal": action["goal"],
            "Change": f"{action['setting']} -> {action['value']!r}",
            "Where": f"the `{action['setting']}` setting at the top of the next version's script",
            "Expected impact": action["expected_impact"],
            "Risk": action["risk"],
            "Verification": f"{primary} in the next version's eval_score.json against {vid}'s "
                            f"({summary['primary_text']}) and against the trivial floor"},
            deferred=[f"{a['setting']} -> {a['value']!r}: {a['goal']}" for a in deferred])
        write_text_atomic(self.project.artifact_dir(vid) / "action-extract.md", text)

    def final_report(self, summaries: list[dict]) -> tuple[str, list[dict]]:
        with self.step("Step 7: mlloop report, then the agent's part of final-analysis.md") as s:
            result = build_report(self.project, progress=self.progress)
            path = self.root / result.path / "final-analysis.md"
            text = path.read_text(encoding="utf-8")
            start, end = text.index(final_analysis.START) + len(final_analysis.START), text.index(final_analysis.END)
            by_version = {x["version"]: x for x in summaries}
            table, _ = parse_leaderboard((self.root / result.path / LEADERBOARD_CSV).read_text(encoding="utf-8"))
            rows = table.records()
            lines = ["", "Written by `mlloop demo` (a scripted stand-in for the agent's judgement):", ""]
            for rank, row in enumerate(rows[:3], start=1):
                v = by_version.get(row["version_id"], {})
                lines.append(f"{rank}. {row['version_id']}: {v.get('primary_text', '')}, {v.get('floor_text', '')}; "
                             f"built from {v.get('parent', '?')} — see its result-analysis.md for the evidence.")
            lines.append("")
            write_text_atomic(path, text[:start] + "\n".join(lines) + text[end:])
            s.note = f"best {result.best} ({result.primary} {result.best_value:.4g})" if result.best_value is not None else ""
        with self.step("mlloop check (everything)"):
            self.check("all")
        return result.path, rows


def run_demo(project_dir: str | None, task: str = "image-classification", versions: int = 3, size: str = "small",
             progress=None, test_ratio: float | None = None, primary_metric: str | None = None) -> DemoResult:
    t0 = time.perf_counter()
    registry = load_registry()
    try:
        task = registry.task_of(task)
    except ValueError as exc:
        raise MlloopError(str(exc)) from None
    primary_metric = demo_primary(primary_metric, task)
    actions = json.loads((registry.example_dir(task) / "demo_actions.json").read_text(encoding="utf-8"))
    if versions > len(actions):
        raise MlloopError(f"the {task} demo scripts {len(actions)} changes, so --versions can be at most {len(actions)}.")
    root = Path(project_dir or DEFAULT_DIR).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise MlloopError(f"{root} already exists and is not empty; the demo never writes into an existing project. "
                          "Pass --project NEW_DIR or remove it.")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    demo = Demo(root, task, versions, size, progress, test_ratio, primary_metric)
    demo.progress(f"mlloop demo: {task}, {versions} version(s), in {root} (commands' output: {LOG_NAME})")
    demo.build_baseline(registry)
    summaries = demo.loop(actions)
    report, rows = demo.final_report(summaries)
    warnings = []
    if not any("beats it" in s["floor_text"] for s in summaries):
        warnings.append("no version beats its trivial baseline: the leaderboard ranks failures")
    primary = summaries[0]["primary"] if summaries else ""
    return DemoResult(project=str(root), task=task, seconds=time.perf_counter() - t0, report=report,
                      primary=primary, versions=summaries, leaderboard=rows, warnings=warnings)
