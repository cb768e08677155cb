"""The two rules files: validated against JSON Schemas, resolved with the seed's defaults.

``user_defined_rules.json`` sits beside each skill's SKILL.md. Rules win over everything
(``user_instruction.md`` next, the agent's own ideas last). ``resolve`` returns the merged
view a step uses, so no step has to guess which file a key comes from.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from . import metrics as metric_registry
from .errors import Findings
from .jsonio import JsonProblems, json_path, read_json
from .layout import BUILD_BASELINE, PROGRESSIVE_TRAINING, SKILLS, Project
from .taskformat import known_task_types

# Task types whose samples are windows of a series: only a split by time keeps the future out of train.
TIME_ORDERED_TASKS = frozenset({"time-series-forecasting"})
# Direction of every metric name and alias the registry knows (mlloop.metrics owns the list).
KNOWN_METRICS: dict[str, bool] = {**{key: m.higher_is_better for key, m in metric_registry._BARE.items()},
                                  "top5_accuracy": True}

DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "dataset_config": {
        "dataset_id": None,
        "task_type": None,
        "valid_ratio": 0.1,
        "test_ratio": None,
        "split_strategy": "random",
        "stratify_key": "category",
        "group_key": "group_id",
        "max_profile_samples": 1000,
        "max_drop_share": 0.2,        # one drop reason removing more must be named in profiling.md
        "min_samples_per_class": 1,   # per split, for tasks with a label field
        "max_train_samples": None,
    },
    "model_config": {
        "expected_tolerance": 0.0,
        "expected_allow_missing_keys": False,
    },
    "baseline_smoke_test": {
        "num_gpus": None,
        "epoch": 1,
        "train_samples": 100,
        "valid_samples": 100,
        "min_batch_size": 4,
        "max_batch_size": 128,
        "search_steps": 10,
        "learnability_probe": {
            "enabled": True,
            "samples": 8,
            "max_steps": 300,
            "loss_drop_factor": 10.0,
            "metric_threshold": None,
        },
    },
    "loop_config": {"max_versions": 5, "branch_from": "best"},
    "training_config": {
        "num_gpus": None,
        "num_nodes": 1,
        "epochs": 3,
        "batch_size": None,
        "eval_step": "every_epoch",
        "loss_function": None,
        "min_steps_per_epoch": 10,
        "min_total_steps": 200,
        "max_minutes_per_version": None,
    },
    "eval_config": {
        "primary_metric": "loss",
        "metrics": [{"name": "loss", "higher_is_better": False}],
        "infer_samples": 10,
    },
}

# Sections each skill reads; a section in the other skill's file is kept but noted.
SECTIONS = {
    BUILD_BASELINE: ("seed", "dataset_config", "model_config", "baseline_smoke_test", "training_config", "eval_config"),
    PROGRESSIVE_TRAINING: ("seed", "loop_config", "dataset_config", "model_config", "training_config", "eval_config"),
}
FREE_FORM = ("model_config", "training_config")  # the user's own keys belong here


@lru_cache(maxsize=None)
def _schema_text(name: str) -> str:
    return resources.files("mlloop").joinpath("schemas", name).read_text(encoding="utf-8")


def schema(skill: str) -> dict:
    return json.loads(_schema_text(f"{skill}.rules.schema.json"))


@lru_cache(maxsize=None)
def _validator(skill: str):
    # jsonschema is imported here, not at start-up: `mlloop --help` never pays for it.
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    from jsonschema.validators import extend

    common = json.loads(_schema_text("rules-common.schema.json"))
    registry = Registry().with_resource(common["$id"], Resource.from_contents(common))
    # JSON Schema counts 3.0 as an integer; the code using the value does not (range(3.0) fails).
    strict = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    return extend(Draft202012Validator, type_checker=strict)(schema(skill), registry=registry)


@dataclass
class RulesFile:
    """One skill's rules file as read from disk (``data`` is {} when absent or unreadable)."""

    skill: str
    rel: str
    exists: bool
    data: dict = field(default_factory=dict)


@dataclass
class Rules:
    """The resolved view: defaults, then build-baseline's file, then progressive-training's."""

    values: dict
    files: dict[str, RulesFile]
    findings: Findings

    # The handful of values nearly every step asks for.
    @property
    def seed(self) -> int:
        return self.values["seed"]

    @property
    def dataset_id(self) -> str | None:
        value = self.values["dataset_config"]["dataset_id"]
        return value if isinstance(value, str) else None

    @property
    def task_type(self) -> str | None:
        value = self.values["dataset_config"]["task_type"]
        return value if isinstance(value, str) else None

    @property
    def primary_metric(self) -> str:
        return self.values["eval_config"]["primary_metric"]

    @property
    def metrics(self) -> list[dict]:
        """``[{name, higher_is_better}]`` in the rules' order (names resolved to objects)."""
        return self.values["eval_config"]["metrics"]

    def higher_is_better(self, name: str) -> bool | None:
        for m in self.metrics:
            if m["name"] == name:
                return m["higher_is_better"]
        return metric_registry.higher_is_better(name)

    @property
    def infer_samples(self) -> int:
        return self.values["eval_config"]["infer_samples"]

    @property
    def max_versions(self) -> int:
        return self.values["loop_config"]["max_versions"]

    @property
    def branch_from(self) -> str:
        return self.values["loop_config"]["branch_from"]

    def section(self, name: str) -> dict:
        return self.values[name]

    def to_dict(self) -> dict:
        return copy.deepcopy(self.values)


def read_rules_file(project: Project, skill: str, findings: Findings) -> RulesFile:
    path = project.rules_path(skill)
    rel = project.rel(path)
    if not os.path.lexists(path):
        return RulesFile(skill, rel, exists=False)
    try:
        data = read_json(path, rel, root=project.root)
    except JsonProblems as exc:
        findings.problems.extend(exc.problems)
        return RulesFile(skill, rel, exists=True)
    if not isinstance(data, dict):
        findings.problem("rules.not_object", rel, f"the rules must be one JSON object, found {_kind(data)}", "$")
        return RulesFile(skill, rel, exists=True)
    return RulesFile(skill, rel, exists=True, data=data)


def validate_file(rf: RulesFile, findings: Findings) -> None:
    """Every schema violation, each as ``file::$.path: message``, then the near-misses."""
    if not rf.data:
        return
    errors = sorted(_validator(rf.skill).iter_errors(rf.data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for err in errors:
        findings.problem("rules.schema", rf.rel, _schema_message(err), json_path(list(err.absolute_path)))
    _near_misses(rf, findings)


def _schema_message(err) -> str:
    if err.validator == "oneOf" and isinstance(err.instance, (dict, str)):
        return "a metric is either a known metric name or an object {\"name\": ..., \"higher_is_better\": true|false}"
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(repr, err.validator_value))}"
    if err.validator == "type":
        expected = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return f"expected {expected}, found {_kind(err.instance)} {json.dumps(err.instance)[:60]}"
    return err.message


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _near_misses(rf: RulesFile, findings: Findings) -> None:
    known_top = set(DEFAULTS)
    for key in rf.data:
        if key not in known_top:
            _suggest(rf, findings, key, known_top, "$")
        elif key not in SECTIONS[rf.skill]:
            other = PROGRESSIVE_TRAINING if rf.skill == BUILD_BASELINE else BUILD_BASELINE
            findings.warn("rules.other_skill_section", rf.rel,
                          f"{key} is read by {other}, not {rf.skill}; it is kept, but put it in {other}'s rules file",
                          json_path([key]))
    for section, defaults in DEFAULTS.items():
        block = rf.data.get(section)
        if not isinstance(block, dict) or not isinstance(defaults, dict):
            continue
        known = set(defaults) | ({"prepdata_version"} if section == "dataset_config" else set())
        for key in block:
            if key in known or (section == "model_config" and key.startswith("expected_")):
                continue
            if section in FREE_FORM:
                # The user's own settings: only flag an obvious typo of a known key.
                matches = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
                if matches:
                    _suggest(rf, findings, key, known, json_path([section]), matches)
            else:
                _suggest(rf, findings, key, known, json_path([section]))
        probe = block.get("learnability_probe") if section == "baseline_smoke_test" else None
        if isinstance(probe, dict):
            known_probe = set(DEFAULTS["baseline_smoke_test"]["learnability_probe"])
            for key in probe:
                if key not in known_probe:
                    _suggest(rf, findings, key, known_probe, json_path([section, "learnability_probe"]))


def _suggest(rf, findings, key, known, parent, matches=None) -> None:
    matches = matches if matches is not None else difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    where = json_path([key]) if parent == "$" else f"{parent}.{key}" if key.isidentifier() else parent + json_path([key])[1:]
    if matches:
        findings.warn("rules.unknown_key", rf.rel,
                      f"{key!r} is not a known key; did you mean {matches[0]!r}? (kept as your own setting)", where)
    elif parent != "$":
        findings.warn("rules.unknown_key", rf.rel, f"{key!r} is not a key mlloop reads; kept as your own setting", where)


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _normalise_metrics(values: dict, sources: list[RulesFile], findings: Findings) -> None:
    """Metric names become ``{name, higher_is_better}`` with the registry's canonical name
    (aliases resolved); unknown names, a direction against the registry's and duplicates are
    problems; a metric that does not fit the task type is a warning; primary among them."""
    ec = values["eval_config"]
    rel = next((rf.rel for rf in reversed(sources) if isinstance(rf.data.get("eval_config"), dict)), "")
    metrics_given = any(isinstance(rf.data.get("eval_config"), dict) and "metrics" in rf.data["eval_config"] for rf in sources)
    task = values["dataset_config"].get("task_type")
    resolved, seen = [], set()
    raw = ec.get("metrics") if isinstance(ec.get("metrics"), list) else []
    for i, m in enumerate(raw):
        written = m if isinstance(m, str) else m.get("name") if isinstance(m, dict) else None
        if not isinstance(written, str):
            continue  # the schema already reported it
        where = ["eval_config", "metrics", i] + ([] if isinstance(m, str) else ["name"])
        parsed = metric_registry.parse(written)
        if parsed is None:
            findings.problem("rules.metric_unknown", rel, metric_registry.unknown_message(written), json_path(where))
            continue
        name, known = parsed.name, parsed.metric.higher_is_better
        if isinstance(m, dict):
            if not isinstance(m.get("higher_is_better"), bool):
                continue  # the schema already reported it
            if m["higher_is_better"] != known:
                findings.problem("rules.metric_direction", rel,
                                 f"{written} is {'higher' if known else 'lower'}-is-better, but the rules say "
                                 f"higher_is_better={str(m['higher_is_better']).lower()}; set it to "
                                 f"{str(known).lower()} or leave it out",
                                 json_path(["eval_config", "metrics", i, "higher_is_better"]))
                continue
        if name in seen:
            findings.problem("rules.metric_duplicate", rel,
                             f"metric {written!r} is listed twice (as {name}); metric names must be unique",
                             json_path(where))
            continue
        _warn_fit(findings, rel, written, task, json_path(where))
        seen.add(name)
        resolved.append({"name": name, "higher_is_better": known})
    primary = ec["primary_metric"]
    parsed = metric_registry.parse(primary) if isinstance(primary, str) else None
    if parsed is None:
        if isinstance(primary, str):
            findings.problem("rules.metric_unknown", rel, metric_registry.unknown_message(primary),
                             "$.eval_config.primary_metric")
    else:
        ec["primary_metric"] = parsed.name
    if not metrics_given:
        # No metrics configured: the seed says use the training loss alone.
        resolved = [{"name": ec["primary_metric"], "higher_is_better": parsed.metric.higher_is_better if parsed else False}]
        if parsed is not None and primary != "loss":
            _warn_fit(findings, rel, primary, task, "$.eval_config.primary_metric")
    elif parsed is not None and ec["primary_metric"] not in seen and resolved:
        findings.problem("rules.primary_metric", rel,
                         f"primary_metric {primary!r} is not one of the metrics ({', '.join(sorted(seen))}); add it or pick one of them",
                         "$.eval_config.primary_metric")
    ec["metrics"] = resolved


def _warn_fit(findings: Findings, rel: str, written: str, task, where: str) -> None:
    if metric_registry.fits(written, task):
        return
    metric = metric_registry.parse(written).metric
    fitting = metric_registry.task_families(task) or ()
    findings.warn("rules.metric_task", rel,
                  f"{written} is a {'/'.join(metric.families)} metric and task_type {task!r} is "
                  f"{'/'.join(fitting) or 'evaluated by its loss only'}; `mlloop metrics --task {task}` lists the "
                  "metrics that fit", where)


def _semantic(values: dict, files: dict[str, RulesFile], findings: Findings, task_types: set[str] | None) -> None:
    bb, pt = files[BUILD_BASELINE], files[PROGRESSIVE_TRAINING]
    # dataset_id: prepdata_version is the README's old name for it.
    ids = {}
    for rf in (bb, pt):
        dc = rf.data.get("dataset_config")
        if not isinstance(dc, dict):
            continue
        did, alias = dc.get("dataset_id"), dc.get("prepdata_version")
        if isinstance(did, str) and isinstance(alias, str) and did != alias:
            findings.problem("rules.dataset_id", rf.rel,
                             f"dataset_id {did!r} and its alias prepdata_version {alias!r} disagree; keep one",
                             "$.dataset_config.prepdata_version")
        value = did if isinstance(did, str) else alias if isinstance(alias, str) else None
        if value is not None:
            ids[rf.skill] = value
    if len(set(ids.values())) > 1:
        findings.problem("rules.dataset_id", pt.rel,
                         f"dataset_id is {ids[BUILD_BASELINE]!r} in build-baseline's rules but {ids[PROGRESSIVE_TRAINING]!r} here; the loop uses one dataset, make them equal",
                         "$.dataset_config.dataset_id")
    if ids:
        values["dataset_config"]["dataset_id"] = ids.get(PROGRESSIVE_TRAINING, ids.get(BUILD_BASELINE))
    values["dataset_config"].pop("prepdata_version", None)

    seeds = {rf.skill: rf.data["seed"] for rf in (bb, pt) if isinstance(rf.data.get("seed"), int)}
    if len(set(seeds.values())) > 1:
        findings.warn("rules.seed", pt.rel,
                      f"seed is {seeds[BUILD_BASELINE]} in build-baseline's rules and {seeds[PROGRESSIVE_TRAINING]} here; each skill uses its own",
                      "$.seed")

    smoke = values["baseline_smoke_test"]
    lo, hi = smoke.get("min_batch_size"), smoke.get("max_batch_size")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        rel = bb.rel if isinstance(bb.data.get("baseline_smoke_test"), dict) else pt.rel
        findings.problem("rules.batch_range", rel, f"min_batch_size {lo} is larger than max_batch_size {hi}",
                         "$.baseline_smoke_test.min_batch_size")

    dc = values["dataset_config"]
    task = dc.get("task_type")
    if task_types and isinstance(task, str) and task not in task_types:
        rel = next((rf.rel for rf in (bb, pt) if isinstance(rf.data.get("dataset_config"), dict)
                    and rf.data["dataset_config"].get("task_type") == task), bb.rel)
        close = difflib.get_close_matches(task, sorted(task_types), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; see task_format.yaml for the list"
        findings.problem("rules.task_type", rel, f"task_type {task!r} is not in task_format.yaml{hint}",
                         "$.dataset_config.task_type")
    if dc.get("split_strategy") == "stratified" and not dc.get("stratify_key"):
        findings.problem("rules.split", bb.rel, "split_strategy is stratified but stratify_key is empty",
                         "$.dataset_config.stratify_key")
    if dc.get("split_strategy") == "group" and not dc.get("group_key"):
        findings.problem("rules.split", bb.rel, "split_strategy is group but group_key is empty", "$.dataset_config.group_key")
    if task in TIME_ORDERED_TASKS and dc.get("split_strategy") != "time":
        findings.problem("rules.split", bb.rel,
                         f"split_strategy is {dc.get('split_strategy')} but {task} must be split by time: a "
                         f"{dc.get('split_strategy')} split trains on the future of the windows it validates on; "
                         "set dataset_config.split_strategy to \"time\"", "$.dataset_config.split_strategy")
    vr, tr = dc.get("valid_ratio"), dc.get("test_ratio")
    if isinstance(vr, (int, float)) and isinstance(tr, (int, float)) and vr + tr >= 1:
        findings.problem("rules.split", bb.rel, f"valid_ratio {vr} + test_ratio {tr} leave no training data; their sum "
                         "must be below 1", "$.dataset_config.test_ratio")


def resolve(project: Project, task_types: set[str] | None = None) -> Rules:
    """Read, validate and merge both rules files. Problems are collected, never raised.

    ``task_types`` (from task_format.yaml) lets ``dataset_config.task_type`` be checked; when
    None it is looked up from the project's (or the bundled) task_format.yaml.
    """
    findings = Findings()
    files = {skill: read_rules_file(project, skill, findings) for skill in SKILLS}
    for rf in files.values():
        validate_file(rf, findings)
    schema_broken = any(p.code == "rules.schema" for p in findings.problems)
    values = copy.deepcopy(DEFAULTS)
    for skill in SKILLS:  # progressive-training's file wins where both set a key
        values = _merge(values, files[skill].data)
    if isinstance(files[PROGRESSIVE_TRAINING].data.get("seed"), int):
        values["seed"] = files[PROGRESSIVE_TRAINING].data["seed"]
    if schema_broken:
        # Do not reason about values of the wrong type; put back defaults where the schema failed.
        values = _restore_defaults(values, DEFAULTS)
    if task_types is None:
        task_types = known_task_types(project)
    _semantic(values, files, findings, task_types)
    _normalise_metrics(values, [files[s] for s in SKILLS], findings)
    return Rules(values=values, files=files, findings=findings)


def _restore_defaults(values: dict, defaults: dict) -> dict:
    out = dict(values)
    for key, default in defaults.items():
        got = out.get(key)
        if isinstance(default, dict):
            out[key] = _restore_defaults(got if isinstance(got, dict) else {}, default)
        elif default is not None and got is not None and type(got) is not type(default) \
                and not (isinstance(default, float) and isinstance(got, int) and not isinstance(got, bool)):
            out[key] = copy.deepcopy(default)
        elif key not in out:
            out[key] = copy.deepcopy(default)
    return out
