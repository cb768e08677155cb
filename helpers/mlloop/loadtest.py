"""`mlloop profile --load-test`: build-baseline Step 0's seeded load test, one tool for every agent.

The extraction rules are the ones written in ``01_data_pipeline.py``'s parse region
(``parse_sources(rawdata)``); the script is imported (no work at import, no bytecode written),
``parse_sources`` is called, and ``mlloop.runtime.data.load_test`` opens a seeded draw per source.

The draw, so that any run can be repeated: per source, the parsed records sorted by
``sample_id``, then ``random.Random(seed).sample(records, min(n, len(records)))`` with the rules'
``seed`` and ``n`` = 10 (``--samples``). A drawn record passes when its assets open and decode and
the task's required fields are set; a defect kind named with ``--allow`` (documented under Edge
cases, dropped by the pipeline) is counted but does not fail the source. The printed
``- load_test: PASS (n/n samples, seed S)`` lines go into profiling.md as they are. Nothing is
written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import MlloopError
from .formats import profiling
from .layout import PIPELINE_SCRIPT, Project
from .rules import resolve
from .runtime import data
from .runtime.checkpoint import import_script
from .taskformat import load_task_format

DEFAULT_SAMPLES = 10


@dataclass
class LoadTestResult:
    seed: int
    samples: int
    sources: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.sources) and all(s["passed"] for s in self.sources.values())

    def to_dict(self) -> dict:
        return {"ok": self.ok, "seed": self.seed, "samples": self.samples, "sources": self.sources}

    def lines(self) -> list[str]:
        out = []
        for name, s in self.sources.items():
            out += [f"Source: {name}", s["line"]]
        out.append(f"load test: {sum(s['passed'] for s in self.sources.values())}/{len(self.sources)} source(s) "
                   f"pass (seed {self.seed}, {self.samples} per source); copy each line into the source's "
                   "'Sanity checks' in profiling.md.")
        return out


def run_load_test(project: Project, samples: int = DEFAULT_SAMPLES, allow: tuple[str, ...] = ()) -> LoadTestResult:
    if samples < 1:
        raise MlloopError(f"--samples must be at least 1, not {samples}.")
    rules = resolve(project)
    if not rules.task_type:
        raise MlloopError("dataset_config.task_type is not set in the rules, so the load test cannot tell which "
                          "fields a sample needs; choose one from task_format.yaml and ask the user to set it.")
    script = project.pipeline_script
    if not script.is_file():
        raise MlloopError(f"{PIPELINE_SCRIPT} does not exist; copy the build-baseline skill's "
                          "templates/01_data_pipeline.py here and write parse_sources() in its parse region "
                          "from profiling.md's extraction rules, then run the load test.")
    spec = data.task_spec(load_task_format(project), rules.task_type)
    module = import_script(script, "mlloop_load_test_pipeline")
    parse = getattr(module, "parse_sources", None)
    if not callable(parse):
        raise MlloopError(f"{PIPELINE_SCRIPT} has no parse_sources(rawdata); keep the parse region's signatures.")
    try:
        records = data.as_records(parse(project.rawdata))
    except NotImplementedError as exc:
        raise MlloopError(f"{PIPELINE_SCRIPT}: {exc}") from None
    except Exception as exc:
        if os.environ.get("MLLOOP_DEBUG"):
            raise
        raise MlloopError(f"{PIPELINE_SCRIPT}: parse_sources() failed: {type(exc).__name__}: {exc}; fix the "
                          "parse region (MLLOOP_DEBUG=1 shows where).") from None
    data.validate_records(records, spec)
    result = LoadTestResult(rules.seed, samples, data.load_test(records, spec, project.rawdata, rules.seed, samples,
                                                                allowed_defects=allow))
    folders = sorted(p.name for p in project.rawdata.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in folders:
        if name not in result.sources:
            result.sources[name] = {"passed": False, "drawn": 0, "loaded": 0, "defects": {},
                                    "line": profiling.load_test_line(False, f"0/0 samples, seed {rules.seed}; parse_sources() "
                                                                           "gave no record for this source")}
    result.sources = dict(sorted(result.sources.items()))
    return result
