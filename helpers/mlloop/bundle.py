"""Where the shipped files are: skills, templates and examples.

In a wheel they are package data under ``mlloop/_bundle``; in a checkout (``uv sync`` installs
the project editable) they are the repository's own top-level folders.
"""

from __future__ import annotations

from pathlib import Path

from .errors import MlloopError


def bundle_root() -> Path:
    packaged = Path(__file__).resolve().parent / "_bundle"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "skills").is_dir():
        return checkout
    raise MlloopError("the mlloop installation has no skills/templates folder; reinstall it (uv sync).")


def skills_dir() -> Path:
    return bundle_root() / "skills"


def templates_dir() -> Path:
    return bundle_root() / "templates"


def examples_dir() -> Path:
    return bundle_root() / "examples"
