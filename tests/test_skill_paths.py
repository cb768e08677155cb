"""Every path a skill names relative to its own folder exists wherever the agent reads the skill:
in the plugin layout (the repository root is the Claude Code plugin: skills/ at the root; the
Korean skills are skills-ko/ beside it) and in a project after `mlloop init`, both languages.

A skill names its own files relative to its folder (`templates/…`, `reference/…`) and the other
skill's as its sibling (`../progressive-training/…`); Claude Code gives the agent the skill's base
directory, so those paths hold in every layout, while `.claude/skills/<skill>/templates/…` only
exists after `mlloop init`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlloop.bundle import SKILL_DIRS, train_templates
from mlloop.cli import cli
from mlloop.layout import SKILLS

REPO = Path(__file__).resolve().parents[1]
CODE_RE = re.compile(r"`([^`\n]+)`")
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
SIBLINGS = "|".join(re.escape(s) for s in SKILLS)
SKILL_PATH_RE = re.compile(rf"(?<![\w./-])((?:\.\./(?:{SIBLINGS})/|templates/|reference/)[\w./*<>-]*)")
INSTALL_ONLY_RE = re.compile(r"\.claude/skills/[\w-]+/(templates|reference|SKILL\.md)")
# What the skills must keep naming, so the check below cannot pass on an empty list.
MUST_NAME = {
    "build-baseline": {"templates/01_data_pipeline.py", "templates/train/", "reference/cli-output.md",
                       "../progressive-training/SKILL.md"},
    "progressive-training": {"templates/03_eval.py", "templates/04_final_report.py",
                             "../build-baseline/reference/cli-output.md"},
}


def skill_documents(folder: Path) -> list[Path]:
    """SKILL.md and the reference files it routes to."""
    return [folder / "SKILL.md", *sorted((folder / "reference").glob("*.md"))]


def skill_paths(text: str) -> set[str]:
    """Paths relative to the skill's folder, named in code or as a link target."""
    spans = CODE_RE.findall(text) + LINK_RE.findall(text)
    return {m.rstrip(".,:;…") for span in spans for m in SKILL_PATH_RE.findall(span)}


def missing(folder: Path, names: set[str]) -> list[str]:
    out = []
    for name in sorted(names):
        if "<" in name:  # a placeholder (`templates/<name>.py`): its folder must exist
            name = name.split("<", 1)[0].rsplit("/", 1)[0] + "/"
        path = folder / name
        found = any(folder.glob(name)) if "*" in name else (path.is_dir() if name.endswith("/") else path.is_file())
        if not found:
            out.append(name)
    return out


def check_layout(skills_root: Path) -> dict[str, set[str]]:
    named = {}
    for skill in SKILLS:
        folder = skills_root / skill
        for doc in skill_documents(folder):
            text = doc.read_text(encoding="utf-8")
            names = skill_paths(text)
            assert missing(folder, names) == [], f"{doc}: names paths that do not exist"
            assert not INSTALL_ONLY_RE.search(text), \
                f"{doc} names {INSTALL_ONLY_RE.search(text).group(0)!r}, which only exists after `mlloop init`"
            named.setdefault(skill, set()).update(names)
    for skill, needed in MUST_NAME.items():
        assert needed <= named[skill], f"{skill} no longer names {sorted(needed - named[skill])}"
    return named


@pytest.mark.parametrize("lang", sorted(SKILL_DIRS))
def test_every_skill_path_exists_in_the_plugin_layout(lang):
    check_layout(REPO / SKILL_DIRS[lang])


@pytest.mark.parametrize("lang", sorted(SKILL_DIRS))
def test_every_skill_path_exists_after_init(tmp_path, lang):
    result = CliRunner().invoke(cli, ["init", "--project", str(tmp_path), "--lang", lang])
    assert result.exit_code == 0, result.output
    assert check_layout(tmp_path / ".claude" / "skills") == check_layout(REPO / SKILL_DIRS[lang])


def test_the_plugin_serves_the_skills_folder():
    manifest = json.loads((REPO / ".claude-plugin" / "plugin.json").read_text(encoding="utf-8"))
    assert manifest.get("skills", "./skills") in ("./skills", "./skills/")  # Claude Code's default
    assert all((REPO / "skills" / skill / "SKILL.md").is_file() for skill in SKILLS)


def test_the_checker_finds_a_missing_path(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "a.py").write_text("")
    text = "Copy this skill's `templates/a.py` and `templates/b.py`; see [x](reference/x.md), `../build-baseline/y.md`."
    names = skill_paths(text)
    assert names == {"templates/a.py", "templates/b.py", "reference/x.md", "../build-baseline/y.md"}
    assert missing(tmp_path, names) == ["../build-baseline/y.md", "reference/x.md", "templates/b.py"]
    assert skill_paths("`.claude/skills/build-baseline/templates/a.py`") == set()  # not skill-relative
    assert INSTALL_ONLY_RE.search("`.claude/skills/build-baseline/templates/a.py`")


@pytest.mark.parametrize("lang", sorted(SKILL_DIRS))
def test_every_training_template_is_in_the_task_type_table(lang):
    """A new templates/train/<name>.py is listed where the agent picks a template."""
    table = (REPO / SKILL_DIRS[lang] / "build-baseline" / "reference" / "task-types.md").read_text(encoding="utf-8")
    listed = {p for p in skill_paths(table) if p.startswith("templates/train/") and p.endswith(".py")}
    assert listed == {f"templates/train/{name}.py" for name in train_templates()}
