"""``mlloop check rules``: both rules files (schema, semantics, near-misses) and task_format.yaml."""

from __future__ import annotations

from ..layout import BUILD_BASELINE
from .context import Context

LAYOUT_MODES = ("index_only", "index_only_or_files", "assets_plus_index")
FIELD_TYPES = ("string", "integer", "number", "boolean", "list", "object")


def check_rules(ctx: Context) -> None:
    ctx.out.extend(ctx.rules.findings)
    check_task_format(ctx)


def check_task_format(ctx: Context) -> None:
    project = ctx.project
    path = project.task_format_path
    if not path.exists() and (project.skill_dir(BUILD_BASELINE) / "SKILL.md").is_file():
        # The skill reads the copy beside its SKILL.md and stops without it.
        ctx.problem("taskformat.missing", path,
                    "build-baseline is installed but its task_format.yaml is missing; restore it with `mlloop init`")
    if ctx.task_format is None:
        if path.exists():
            ctx.problem("taskformat.invalid", path, (ctx.task_format_error or "unusable").split(": ", 1)[-1])
        return
    tf = ctx.task_format
    rel = ctx.rel(tf.path) if str(tf.path).startswith(ctx.root) else "task_format.yaml (bundled)"
    for problem, where in task_format_problems(tf.data):
        ctx.problem("taskformat.schema", rel, problem, where)


def task_format_problems(data: dict) -> list[tuple[str, str]]:
    """What is wrong with a task_format document: ``(message, json_path)`` pairs."""
    out = []
    meta = data.get("meta")
    if not isinstance(meta, dict):
        out.append(("meta must be a mapping (version, base_dir_template, required_dirs, required_files, index_policy)", "$.meta"))
    else:
        for key in ("required_dirs", "required_files"):
            if not _str_list(meta.get(key)):
                out.append((f"{key} must be a list of names", f"$.meta.{key}"))
        policy = meta.get("index_policy")
        if not isinstance(policy, dict):
            out.append(("index_policy must be a mapping", "$.meta.index_policy"))
        else:
            for key in ("train_index_candidates", "valid_index_candidates"):
                if not _str_list(policy.get(key)) or not policy.get(key):
                    out.append((f"{key} must list the index files to look for (e.g. train/train.jsonl)", f"$.meta.index_policy.{key}"))
    tasks = data.get("supported_tasks") or {}
    for name, task in tasks.items():
        where = f"$.supported_tasks[{name!r}]".replace("'", '"')
        if not isinstance(task, dict):
            out.append(("each task must be a mapping", where))
            continue
        layout = task.get("split_layout")
        mode = layout.get("mode") if isinstance(layout, dict) else None
        if mode not in LAYOUT_MODES:
            out.append((f"split_layout.mode must be one of {', '.join(LAYOUT_MODES)}, found {mode!r}", where + ".split_layout.mode"))
        elif not _str_list(layout.get("assets_required", [])):
            out.append(("split_layout.assets_required must be a list of folder names", where + ".split_layout.assets_required"))
        schema = task.get("index_schema")
        if not isinstance(schema, dict):
            out.append(("index_schema must be a mapping with required and optional field lists", where + ".index_schema"))
            continue
        required = schema.get("required")
        if not _str_list(required) or "id" not in required:
            out.append(("index_schema.required must be a list of field names that includes id", where + ".index_schema.required"))
        for key in ("optional", "path_fields"):
            if not _str_list(schema.get(key, [])):
                out.append((f"index_schema.{key} must be a list of field names", f"{where}.index_schema.{key}"))
        target = schema.get("target_field")
        if target is not None and not isinstance(target, str):
            out.append(("index_schema.target_field must be a field name or null", where + ".index_schema.target_field"))
        types = schema.get("types", {})
        if not isinstance(types, dict) or any(t not in FIELD_TYPES for t in types.values()):
            out.append((f"index_schema.types maps fields to one of {', '.join(FIELD_TYPES)}", where + ".index_schema.types"))
    aliases = data.get("task_aliases", {})
    if not isinstance(aliases, dict):
        out.append(("task_aliases must map an alias to a task type", "$.task_aliases"))
    else:
        for alias, target in aliases.items():
            if target not in tasks:
                out.append((f"alias {alias!r} points to {target!r}, which is not in supported_tasks", f"$.task_aliases[{alias!r}]".replace("'", '"')))
            if alias in tasks:
                out.append((f"{alias!r} is both a task type and an alias; keep one", f"$.task_aliases[{alias!r}]".replace("'", '"')))
    return out


def _str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
