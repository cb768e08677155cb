"""The example datasets: one entry point for the demo and the tests.

``examples/`` is not a package (it ships as data); load this file by path:

    import importlib.util
    from mlloop.bundle import examples_dir
    spec = importlib.util.spec_from_file_location("mlloop_examples", examples_dir() / "registry.py")
    registry = importlib.util.module_from_spec(spec); spec.loader.exec_module(registry)

    registry.prepare_project("image-classification", "demo_project", seed=42, size="small")
    #   rules + user_instruction.md into .claude/skills/<skill>/, raw data into dataset/rawdata/,
    #   01_data_pipeline.py = the template with this example's parse region filled in
    #   ... run `mlloop profile`, then:
    registry.complete_profiling("image-classification", "demo_project")
    #   fills the draft's <TODO> lines from the example's notes and runs the real load test
    #   ... then `python 01_data_pipeline.py` in the project.

Each example folder holds ``generate.py`` (``generate(dest_dir, seed=42, size="small")``),
``parse.py`` (the parse region: ``parse_sources(rawdata)`` and ``drop_reason(record, rules)``),
``profiling_notes.md`` (what an agent would write into profiling.md) and the two skills' folders
with ``user_defined_rules.json`` and ``user_instruction.md``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
EXAMPLES = {  # task type -> folder
    "ocr-line-recognition": "ocr_lines",
    "image-classification": "image_classification",
    "tabular-classification": "tabular",
    "text-classification": "text_classification",
    "time-series-forecasting": "time_series",
    "image-segmentation": "image_segmentation",
}
ALIASES = {  # other names the demo accepts
    "ocr": "ocr-line-recognition", "ocr_lines": "ocr-line-recognition",
    "image": "image-classification", "image_classification": "image-classification",
    "tabular": "tabular-classification",
    "text": "text-classification", "text_classification": "text-classification",
    "time_series": "time-series-forecasting", "timeseries": "time-series-forecasting",
    "segmentation": "image-segmentation", "image_segmentation": "image-segmentation",
}
SKILLS = ("build-baseline", "progressive-training")
REGION_START = "# ==== mlloop:parse-region:start"
REGION_END = "# ==== mlloop:parse-region:end"
# Defects the examples document under "Edge cases" and the pipeline drops with a reason.
DOCUMENTED_DEFECTS = ("missing_asset", "unreadable_asset", "missing_field")


def task_of(name: str) -> str:
    task = ALIASES.get(name, name)
    if task not in EXAMPLES:
        raise ValueError(f"no example for {name!r}; choose one of {', '.join(EXAMPLES)}")
    return task


def example_dir(task: str) -> Path:
    return HERE / EXAMPLES[task_of(task)]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generator(task: str) -> ModuleType:
    return _load(example_dir(task) / "generate.py", f"mlloop_example_{EXAMPLES[task_of(task)]}_generate")


def parser(task: str) -> ModuleType:
    return _load(example_dir(task) / "parse.py", f"mlloop_example_{EXAMPLES[task_of(task)]}_parse")


def generate(task: str, dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the example's raw sources into ``dest_dir`` (normally ``<project>/dataset/rawdata``)."""
    return generator(task).generate(dest_dir, seed=seed, size=size)


def template_path() -> Path:
    from mlloop.bundle import template

    return template("01_data_pipeline.py")


def fill_parse_region(template_text: str, region_text: str) -> str:
    """The template with everything between its parse-region marker lines replaced."""
    lines = template_text.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.startswith(REGION_START)]
    ends = [i for i, ln in enumerate(lines) if ln.startswith(REGION_END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError("the pipeline template must have exactly one mlloop:parse-region start and end marker")
    body = region_text if region_text.endswith("\n") else region_text + "\n"
    return "".join(lines[:starts[0] + 1]) + body + "\n\n" + "".join(lines[ends[0]:])


def pipeline_source(task: str) -> str:
    """01_data_pipeline.py for this example: the template with the example's parse region."""
    return fill_parse_region(template_path().read_text(encoding="utf-8"),
                             (example_dir(task) / "parse.py").read_text(encoding="utf-8"))


def install_rules(task: str, project_root) -> list[Path]:
    """Copy the example's rules and instructions into ``.claude/skills/<skill>/`` (overwriting:
    the demo project is the example's)."""
    written = []
    for skill in SKILLS:
        for name in ("user_defined_rules.json", "user_instruction.md"):
            target = Path(project_root) / ".claude" / "skills" / skill / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(example_dir(task) / skill / name, target)
            written.append(target)
    return written


def prepare_project(task: str, project_root, seed: int = 42, size: str = "small") -> dict:
    """Rules, raw data and 01_data_pipeline.py for the example, in ``project_root``."""
    root = Path(project_root)
    install_rules(task, root)
    counts = generate(task, root / "dataset" / "rawdata", seed=seed, size=size)
    (root / "01_data_pipeline.py").write_text(pipeline_source(task), encoding="utf-8")
    return {"task": task_of(task), "example": EXAMPLES[task_of(task)], "raw": counts}


# ---- profiling.md: the agent's part, scripted ----------------------------------------------------

def _notes(task: str) -> dict[str, dict[str, str]]:
    """{"Overview": {"": text}, source: {sub-section: text}} from profiling_notes.md."""
    from mlloop.markdown import sections

    out: dict[str, dict[str, str]] = {}
    for sec in sections((example_dir(task) / "profiling_notes.md").read_text(encoding="utf-8")):
        if sec.level == 2:
            m = re.match(r"source:\s*(.+)", sec.title, re.IGNORECASE)
            current = m.group(1).strip() if m else sec.title.strip()
            out.setdefault(current, {})[""] = sec.body.split("\n###")[0].strip()
        elif sec.level == 3:
            out.setdefault(current, {})[sec.title.strip().lower()] = sec.body.strip()
    return out


def complete_profiling(task: str, project_root, seed: int | None = None, n: int = 10) -> dict:
    """Replace the draft's placeholder lines with the example's notes and each source's
    ``load_test`` line with a real load test (parse.py + mlloop.runtime.data.load_test)."""
    from mlloop.layout import Project
    from mlloop.markdown import PLACEHOLDER_RE
    from mlloop.rules import resolve
    from mlloop.runtime import data
    from mlloop.taskformat import load_task_format

    project = Project.at(project_root)
    rules = resolve(project)
    seed = rules.seed if seed is None else seed
    spec = data.task_spec(load_task_format(project), rules.task_type)
    records = data.as_records(parser(task).parse_sources(project.rawdata))
    tests = data.load_test(records, spec, project.rawdata, seed, n, allowed_defects=DOCUMENTED_DEFECTS)
    notes = _notes(task)
    out, source, sub = [], "Overview", ""
    for line in project.profiling_md.read_text(encoding="utf-8").splitlines():
        h2 = re.match(r"^##\s+(.*)$", line)
        h3 = re.match(r"^###\s+(.*)$", line)
        if h2:
            m = re.match(r"source:\s*(.+)", h2.group(1), re.IGNORECASE)
            source, sub = (m.group(1).strip() if m else h2.group(1).strip()), ""
        elif h3:
            sub = h3.group(1).strip().lower()
        if re.match(r"^\s*-\s*load_test\s*:", line) and source in tests:
            out.append(tests[source]["line"])
        elif PLACEHOLDER_RE.match(line):
            text = notes.get(source, {}).get(sub)
            out.append(text if text else line)
        else:
            out.append(line)
    project.profiling_md.write_text("\n".join(out) + "\n", encoding="utf-8")
    return {source: t["line"] for source, t in tests.items()}
