"""Where the shipped files are: the skill folders (with their templates) and the examples.

In a wheel they are package data under ``mlloop/_bundle``; in a checkout (``uv sync`` installs
the project editable) they are the repository's own top-level folders. Each skill folder is
self-contained: ``skills/<skill>/`` holds its SKILL.md, ``reference/``, ``templates/`` and example
rules, so the repository (the Claude Code plugin), a wheel and a project after ``mlloop init``
give the agent the same paths. ``skills-ko/<skill>/templates`` is a relative link to the English
folder: one copy of the code, the same paths in both languages (init reads the English folder,
since wheels and sdists leave links out).

Every caller finds a template through `template` (or `train_templates` for the list); nothing
else spells out where templates live.
"""

from __future__ import annotations

from pathlib import Path

from .errors import MlloopError
from .layout import SKILLS

SKILL_DIRS = {"en": "skills", "ko": "skills-ko"}   # language -> the bundle folder of its skills
TEMPLATES = "templates"                            # <skill>/templates/: the scripts the agent copies
TRAIN = "train"                                    # templates/train/<name>.py: one per task family


def bundle_root() -> Path:
    packaged = Path(__file__).resolve().parent / "_bundle"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "skills").is_dir():
        return checkout
    raise MlloopError("the mlloop installation has no skills folder; reinstall it (uv sync).")


def skills_dir(lang: str = "en") -> Path:
    return bundle_root() / SKILL_DIRS[lang]


def examples_dir() -> Path:
    return bundle_root() / "examples"


def template(name: str, skills: Path | None = None) -> Path:
    """The template ``name`` (``01_data_pipeline.py``, ``train/tabular.py``, ``03_eval.py``…) in
    the one skill whose ``templates/`` holds it, under ``skills`` (default: the bundle's English
    skills; a project's ``.claude/skills`` works the same, since init installs the skill folders)."""
    root = skills if skills is not None else skills_dir()
    found = [root / skill / TEMPLATES / name for skill in SKILLS if (root / skill / TEMPLATES / name).is_file()]
    if len(found) != 1:
        where = "no skill" if not found else "more than one skill"
        raise MlloopError(f"{root}: {where} has {TEMPLATES}/{name}; reinstall mlloop (uv sync) or run `mlloop init`.")
    return found[0]


def train_templates(skills: Path | None = None) -> dict[str, Path]:
    """Every training template by name (``image_classification`` -> its path), sorted."""
    root = skills if skills is not None else skills_dir()
    paths = sorted(p for skill in SKILLS for p in (root / skill / TEMPLATES / TRAIN).glob("*.py"))
    if not paths:
        raise MlloopError(f"{root}: no skill has {TEMPLATES}/{TRAIN}/*.py; reinstall mlloop (uv sync).")
    return {p.stem: p for p in paths}
