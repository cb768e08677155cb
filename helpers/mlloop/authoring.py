"""``mlloop new-version``: author the next version's script (progressive-training Steps 0 and 6).

The code is copied from the parent (``--from`` or ``loop_config.branch_from``: the best evaluated
version by the report's ranking, or the previous one); the Selected Action comes from the
latest version's action-extract.md (the analysis Step 4 just wrote). When the parent is the
latest version the two coincide. The change-summary header records both, replacing the
parent's header so that the diff parent → child shows the header and the one change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import MlloopError
from .formats import action_extract, change_summary
from .jsonio import write_text_atomic
from .layout import BASELINE, Project, script_name, version_id, version_number
from .lock import writer_lock
from .parent_choice import CHOICES, choose_parent, usage_error
from .rules import Rules, resolve
from .stages import ACTION_DOC, locked_dataset_id


# ---- new-version --------------------------------------------------------------------------

@dataclass
class NewVersion:
    version: str
    script: str
    folder: str
    parent: str
    why: str
    action_source: str | None
    header: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"ok": True, "version": self.version, "script": self.script, "folder": self.folder,
                "parent": self.parent, "parent_reason": self.why, "action_source": self.action_source,
                "header": self.header, "next": self.next_step()}

    def next_step(self) -> str:
        if self.action_source is None:
            return f"`python {self.script}` (Step 1: train {self.version})"
        return f"apply exactly the selected change to {self.script}, then `python {self.script}` (Step 1)"

    def lines(self) -> list[str]:
        out = [f"created {self.script} from {script_name(self.parent)} (parent {self.parent}: {self.why})",
               f"created {self.folder}/"]
        if self.action_source:
            out.append(f"selected action ({self.action_source}):")
            out += [f"  {key}: {self.header[key]}" for key in ("goal", "change", "where")]
        out.append(f"next: {self.next_step()}")
        return out


def new_version(project: Project, from_: str | None = None, lock_timeout: float | None = None) -> NewVersion:
    if from_ is not None and from_.strip() not in ("best", "previous", BASELINE) and version_number(from_.strip()) is None:
        raise usage_error(f"--from must be {CHOICES}; got {from_!r}.")
    rules = resolve(project)
    if rules.findings.problems:
        raise MlloopError(f"the rules have {len(rules.findings.problems)} problem(s); fix them first "
                          "(`mlloop rules` lists them).", problems=rules.findings.problems)
    dataset_id, _ = locked_dataset_id(project, rules.dataset_id)
    _plan(project, rules, dataset_id, from_)  # refuse before touching anything (not even the lock file)
    with writer_lock(project, "mlloop new-version", lock_timeout):
        plan = _plan(project, rules, dataset_id, from_)  # again: another writer may have got in between
        plan.folder.mkdir(parents=True)
        try:
            write_text_atomic(plan.target, change_summary.replace(plan.source, change_summary.render(plan.header)))
        except BaseException:
            plan.folder.rmdir()  # ours, and still empty: leave the tree as it was
            raise
    return NewVersion(plan.header["version"], plan.target.name, project.rel(plan.folder), plan.parent, plan.why,
                      plan.action_rel, plan.header)


@dataclass
class _Plan:
    target: Path
    folder: Path
    parent: str
    why: str
    action_rel: str | None
    source: str
    header: dict[str, str]


def _plan(project: Project, rules: Rules, dataset_id: str | None, from_: str | None) -> _Plan:
    """Everything new-version will write, or the refusal that stops it; reads only."""

    cur = project.cur()
    vid = version_id((cur or 0) + 1)
    if cur is not None and cur >= rules.max_versions:
        rules_rel = project.rel(project.rules_path("progressive-training"))
        raise MlloopError(f"max_versions={rules.max_versions} is reached ({version_id(cur)} is the last version); "
                          f"run `mlloop report` (Step 7), or raise loop_config.max_versions in {rules_rel}.")
    action_fields, action_rel = {}, None
    if cur is not None:
        action_path = project.artifact_dir(version_id(cur)) / ACTION_DOC
        action_rel = project.rel(action_path)
        if not action_path.is_file():
            raise MlloopError(f"{action_rel} does not exist; Step 4 of {version_id(cur)} (one Selected Action) "
                              f"comes before authoring {vid}.")
        try:
            text = action_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MlloopError(f"{action_rel} cannot be read ({exc}); save it as UTF-8 text.") from None
        action_fields, gaps = action_extract.parse(text)
        if gaps:
            raise MlloopError(f"{action_rel} is not a valid action extract: {'; '.join(g.message for g in gaps)}. "
                              "Fix it, then run `mlloop new-version` again.")
    target, folder = project.script(vid), project.artifact_dir(vid)
    for path in (target, folder):
        if path.exists() or path.is_symlink():
            raise MlloopError(f"{project.rel(path)} already exists; move it aside before authoring {vid} "
                              "(nothing was changed).")
    parent, why = choose_parent(project, rules, dataset_id, from_)
    try:
        source = project.script(parent).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MlloopError(f"{script_name(parent)} cannot be read ({exc}).") from None
    if cur is None:
        header = {"version": vid, "parent": BASELINE, "action_source": "none",
                  "goal": "start the loop from the baseline", "change": "none (copy of the baseline, Step 0)",
                  "where": "-"}
    else:
        header = {"version": vid, "parent": parent, "action_source": action_rel,
                  "goal": action_fields["Goal"], "change": action_fields["Change"], "where": action_fields["Where"]}
        if (from_ or rules.branch_from).strip() == "best":  # record the noise check behind the choice
            header["parent_choice"] = why
    header = {key: change_summary.one_line(value) for key, value in header.items()}
    return _Plan(target, folder, parent, why, action_rel, source, header)
