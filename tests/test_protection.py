"""The protected files are defined once (`mlloop.protection`): the hook refuses exactly those, and
every rendered copy (the skills in both languages, docs/contracts.md) equals the definition.

When a copy drifts, regenerate it: `uv run python -m mlloop.protection`.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlloop import protection
from mlloop.cli import cli
from mlloop.layout import Project
from mlloop.protection import END, PROTECTED, PROTECTED_NAMES, RENDERED, START, protected_reason, render, rerendered

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("rel", sorted(RENDERED))
def test_every_rendered_copy_equals_the_definition(rel):
    text = (REPO / rel).read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, f"{rel} must hold one protected-files block"
    assert rerendered(text, RENDERED[rel]) == text, \
        f"{rel}: the protected-files block drifted from mlloop.protection; run `uv run python -m mlloop.protection`"


def test_a_drifted_copy_is_caught_and_regenerated(tmp_path):
    for rel, lang in RENDERED.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (REPO / rel).read_text(encoding="utf-8")
        target.write_text(text.replace(f"- {getattr(PROTECTED[0], lang)}\n", ""), encoding="utf-8")
        assert rerendered(target.read_text(encoding="utf-8"), lang) != target.read_text(encoding="utf-8")
    assert protection.main([str(tmp_path)]) == 0
    assert all((tmp_path / rel).read_text(encoding="utf-8") == (REPO / rel).read_text(encoding="utf-8")
               for rel in RENDERED)


def test_a_copy_without_its_block_is_one_clean_line(tmp_path, capsys):
    for rel in RENDERED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("no block here\n", encoding="utf-8")
    assert protection.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{next(iter(RENDERED))}: expected one")


def test_the_block_keeps_its_indent():
    text = f"7. Never edit:\n   {START}\n   - old\n   {END}\n   after\n"
    assert rerendered(text, "en").splitlines()[1:-1] == render("en", "   ").splitlines()


def test_both_languages_name_the_same_files():
    for entry in PROTECTED:
        assert sorted(re.findall(r"`[^`]+`", entry.en)) == sorted(re.findall(r"`[^`]+`", entry.ko)), entry.key
        assert re.search(r"[\uac00-\ud7a3]", entry.ko) or entry.ko == entry.en, entry.key


# ---- the hook refuses each entry, and only those -------------------------------------------

def pre_tool_use(root: Path, tool: str, tool_input: dict):
    payload = {"hook_event_name": "PreToolUse", "session_id": "s1", "cwd": str(root), "tool_name": tool,
               "tool_input": tool_input}
    result = CliRunner().invoke(cli, ["hook", "pre-tool-use", "--project", str(root)], input=json.dumps(payload))
    assert result.exit_code == 0, result.output
    out = result.stdout.strip()
    return json.loads(out)["hookSpecificOutput"]["permissionDecisionReason"] if out else None


@pytest.mark.parametrize("entry", PROTECTED, ids=lambda e: e.key)
def test_the_hook_refuses_every_listed_file(factory, entry):
    factory.complete(versions=1)   # v001 trained and evaluated: every conditional entry applies
    (factory.root / ".claude" / "settings.json").write_text("{}", encoding="utf-8")
    before = factory.snapshot()
    assert pre_tool_use(factory.root, "Write", {"file_path": entry.example, "content": "x"})
    assert pre_tool_use(factory.root, "Bash", {"command": f"echo x > {shlex.quote(entry.example)}"})
    assert factory.snapshot() == before
    if entry.reason:  # the definition itself says why, for the path alone
        project = Project.at(factory.root)
        assert entry.reason(project, entry.example, entry.example.split("/"))
        assert protected_reason(project, entry.example)
    for name in entry.names:
        assert name in PROTECTED_NAMES


@pytest.mark.parametrize("path", ["02_train_v002.py", "notes.md", "dataset/rawdata/profiling.md",
                                  "Models/Artifacts/v001/result-analysis.md", ".claude/notes.json"])
def test_the_hook_lets_other_files_be(factory, path):
    factory.complete(versions=1)
    assert pre_tool_use(factory.root, "Write", {"file_path": path, "content": "x"}) is None
    assert protected_reason(Project.at(factory.root), path) is None
