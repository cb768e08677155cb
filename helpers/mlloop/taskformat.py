"""task_format.yaml: the one list of task types and the prepdata layout each one uses.

The project's copy (``.claude/skills/build-baseline/task_format.yaml``) wins; the bundled copy
is the fallback so that rules can be checked before ``mlloop init``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .bundle import skills_dir
from .errors import MlloopError
from .layout import Project


# The index field types task_format.yaml may declare, and how a value is checked against each.
TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


@dataclass(frozen=True)
class TaskFormat:
    path: Path
    data: dict

    @property
    def meta(self) -> dict:
        return self.data.get("meta") or {}

    @property
    def tasks(self) -> dict:
        return self.data.get("supported_tasks") or {}

    @property
    def task_types(self) -> set[str]:
        return set(self.tasks)

    @property
    def aliases(self) -> dict[str, str]:
        """Other names for an entry (the original README's names): alias -> task type."""
        raw = self.data.get("task_aliases") or {}
        return {str(k): str(v) for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {}

    @property
    def names(self) -> set[str]:
        """Every name a rules file may use: the task types and their aliases."""
        return self.task_types | set(self.aliases)

    def canonical(self, name: str) -> str:
        """The task type a name stands for (an alias resolved; anything else unchanged)."""
        return self.aliases.get(name, name)

    def task(self, name: str) -> dict | None:
        return self.tasks.get(self.canonical(name))

    def path_fields(self, name: str) -> list[str]:
        """The task's declared path fields (``inputs[].path`` names a field inside list items)."""
        schema = (self.task(name) or {}).get("index_schema") or {}
        declared = schema.get("path_fields") or []
        return [str(f) for f in declared] if isinstance(declared, list) else []

    @property
    def path_field_suffix(self) -> str | None:
        """Top-level fields ending with this suffix are path fields too (``_path``)."""
        suffix = (self.meta.get("index_policy") or {}).get("path_field_suffix")
        return suffix if isinstance(suffix, str) and suffix else None


def task_format_path(project: Project | None) -> Path | None:
    if project is not None and project.task_format_path.is_file():
        return project.task_format_path

    try:
        bundled = skills_dir() / "build-baseline" / "task_format.yaml"
    except MlloopError:
        return None
    return bundled if bundled.is_file() else None


def load_task_format(project: Project | None = None, path: Path | None = None) -> TaskFormat:
    """Load and sanity-check task_format.yaml; a clean ``MlloopError`` if it is unusable."""
    import yaml  # light, but only needed here

    path = path or task_format_path(project)
    if path is None:
        raise MlloopError("task_format.yaml was not found; run `mlloop init` to install it (build-baseline cannot run without it).")
    shown = project.rel(path) if project else str(path)
    try:
        # libyaml's safe loader when present: the same result, ten times faster (every check loads this).
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError) as exc:
        raise MlloopError(f"{shown}: cannot read task_format.yaml ({exc}).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MlloopError(f"{shown}: invalid YAML{where}; restore it with `mlloop init --force`.") from None
    if not isinstance(data, dict) or not isinstance(data.get("supported_tasks"), dict):
        raise MlloopError(f"{shown}: task_format.yaml needs a supported_tasks mapping; restore it with `mlloop init --force`.")
    return TaskFormat(path, data)


def known_task_types(project: Project | None) -> set[str] | None:
    """Task type names and their aliases, or None when no usable task_format.yaml is found (then
    not checked)."""
    try:
        return load_task_format(project).names
    except MlloopError:
        return None
