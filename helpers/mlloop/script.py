"""The public API of mlloop for project scripts: the one module they import from.

Templates (``01_data_pipeline.py``, ``02_train_*.py``, ``03_eval.py``, ``04_final_report.py``) and
every version script copied from them write ``from mlloop.script import ...`` and nothing else
from mlloop, so the modules behind these names can move without breaking a version written
months ago. ``API_VERSION`` changes only when a name here is removed or changes meaning
(tests/test_script_api.py keeps the templates to these names).

Nothing here imports torch, lightning, timm or pandas: the runtime imports them when it runs.
"""

from __future__ import annotations

from .errors import MlloopError
from .final_report import build_report
from .formats import boxes
from .layout import Project
from .rules import resolve as resolve_rules
from .runtime import data, prepdata
from .runtime.artifacts import read_index
from .runtime.checkpoint import load_checkpoint
from .runtime.contract import feature_observations
from .runtime.evaluation import evaluate_version
from .runtime.run import entry, start
from .taskformat import load_task_format

API_VERSION = 1

__all__ = [
    # every script
    "API_VERSION", "MlloopError",
    # 02_train_*.py: the run (settings, mode, folders, fit, spec.json, reports) and its helpers
    "start", "entry", "read_index", "load_checkpoint", "feature_observations",
    # detection scripts and pipelines: label/<id>.json (boxes.read, boxes.render, boxes.from_xywh, boxes.clip)
    "boxes",
    # 01_data_pipeline.py: the rules, the project layout, task_format.yaml and the pipeline's fixed tail
    "Project", "resolve_rules", "load_task_format", "data", "prepdata",
    # 03_eval.py and 04_final_report.py
    "evaluate_version", "build_report",
]
