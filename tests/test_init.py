"""`mlloop init`: installs the skills, templates and hooks; safe to run twice; keeps the user's files."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlloop.bundle import SKILL_DIRS, bundle_root, template, train_templates
from mlloop.cli import cli
from mlloop.install import HOOKS, USER_FILES, bundle_files, hook_command, init_project, is_mlloop_command
from mlloop.layout import SKILLS, Project

BB = ".claude/skills/build-baseline"
PT = ".claude/skills/progressive-training"
SETTINGS = ".claude/settings.json"


def init(root, *args):
    return CliRunner().invoke(cli, ["init", "--project", str(root), *args])


def test_init_installs_skills_templates_rules_and_hooks(factory):
    result = init(factory.root)
    assert result.exit_code == 0, result.output
    root, bundle = factory.root, bundle_root()
    for skill in ("build-baseline", "progressive-training"):
        assert (root / f".claude/skills/{skill}/SKILL.md").read_bytes() == (bundle / "skills" / skill / "SKILL.md").read_bytes()
        for name in ("user_defined_rules.json", "user_instruction.md"):
            assert (root / f".claude/skills/{skill}/{name}").is_file(), name
        for ref in (bundle / "skills" / skill / "reference").glob("*.md"):
            assert (root / f".claude/skills/{skill}/reference/{ref.name}").read_bytes() == ref.read_bytes()
    assert (root / BB / "task_format.yaml").read_bytes() == (bundle / "skills/build-baseline/task_format.yaml").read_bytes()
    # The templates sit where the repository (the plugin) has them, so the skills' paths hold.
    installed = Path(root / ".claude/skills")
    assert template("01_data_pipeline.py", installed) == root / BB / "templates/01_data_pipeline.py"
    train = train_templates()
    assert train and {n: p.read_bytes() for n, p in train_templates(installed).items()} == \
        {n: p.read_bytes() for n, p in train.items()}
    assert template("03_eval.py", installed).read_bytes() == template("03_eval.py").read_bytes()
    assert template("04_final_report.py", installed) == root / PT / "templates/04_final_report.py"
    assert (root / "dataset/rawdata").is_dir()

    settings = json.loads((root / SETTINGS).read_text())
    assert set(settings["hooks"]) == {"SessionStart", "PreToolUse", "Stop"}
    assert settings["hooks"]["PreToolUse"][0]["matcher"] == "^(Write|Edit|MultiEdit|NotebookEdit|Bash|mcp__.*)$"
    assert settings["hooks"]["Stop"][0]["hooks"][0]["command"] == hook_command("stop")
    assert "created  .claude/skills/build-baseline/SKILL.md" in result.output
    assert result.output.rstrip().endswith("then type /build-baseline in Claude Code.")


def test_init_twice_changes_nothing(factory):
    assert init(factory.root).exit_code == 0
    before = factory.snapshot()
    result = init(factory.root)
    assert result.exit_code == 0, result.output
    assert factory.snapshot() == before
    n = len(bundle_files("en"))
    assert f"mlloop init (en): {n} unchanged; nothing to change." in result.output


def test_init_json_reports_every_file(factory):
    result = CliRunner().invoke(cli, ["init", "--project", str(factory.root), "--json"])
    doc = json.loads(result.output)
    assert doc["ok"] is True and doc["lang"] == "en"
    assert {f["action"] for f in doc["files"]} == {"created"}
    assert {f["path"] for f in doc["files"]} == set(bundle_files("en"))
    assert doc["settings"] == {"path": SETTINGS, "action": "created", "hook_command": hook_command("<event>")}


def test_init_merges_into_existing_settings(factory):
    user = {
        "permissions": {"allow": ["Bash(ls:*)"], "deny": ["Read(./secrets/**)"]},
        "env": {"FOO": "1"},
        "hooks": {
            "Stop": [{"hooks": [{"type": "command", "command": "echo bye"}]}],
            "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "echo ran"}]}],
        },
        "model": "opus",
    }
    factory.write_json(SETTINGS, user)
    result = init(factory.root)
    assert result.exit_code == 0, result.output
    assert f"updated  {SETTINGS} (mlloop hooks: SessionStart, PreToolUse, Stop)" in result.output
    merged = factory.read_json(SETTINGS)
    assert merged["permissions"] == user["permissions"] and merged["env"] == {"FOO": "1"} and merged["model"] == "opus"
    assert merged["hooks"]["PostToolUse"] == user["hooks"]["PostToolUse"]
    assert merged["hooks"]["Stop"][0] == user["hooks"]["Stop"][0]  # the user's hook stays first
    assert merged["hooks"]["Stop"][1]["hooks"][0]["command"] == hook_command("stop")
    assert list(merged) == ["permissions", "env", "hooks", "model"]  # key order kept


def test_init_replaces_its_own_old_hook_entries_in_place(factory):
    """An older init (another interpreter path, or `mlloop` on PATH) is updated, not duplicated."""
    factory.write_json(SETTINGS, {"hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "'/old path/bin/python' -m mlloop hook stop"},
                            {"type": "command", "command": "echo mine"}]},
                 {"hooks": [{"type": "command", "command": "echo after"}]}],
        "SessionStart": [{"hooks": [{"type": "command", "command": "mlloop hook session-start"}]}],
    }})
    assert init(factory.root).exit_code == 0
    hooks = factory.read_json(SETTINGS)["hooks"]
    assert hooks["Stop"] == [{"hooks": [{"type": "command", "command": "echo mine"}]},
                             {"hooks": [{"type": "command", "command": hook_command("stop"), "timeout": 120}]},
                             {"hooks": [{"type": "command", "command": "echo after"}]}]
    assert [g["hooks"][0]["command"] for g in hooks["SessionStart"]] == [hook_command("session-start")]


@pytest.mark.parametrize("content, where", [
    ('{"hooks": {', "invalid JSON"),
    ('{"a": 1, "a": 2}', "duplicate key"),
    ("", "the file is empty"),
])
def test_broken_settings_is_a_clean_error_and_nothing_changes(factory, content, where):
    factory.write(SETTINGS, content)
    before = factory.snapshot()
    result = init(factory.root)
    assert result.exit_code == 1
    assert f"Error: {SETTINGS} is not valid JSON, so mlloop's hooks were not added and the file was left as it is; " \
           "fix it (or move it away) and run `mlloop init` again." in result.output
    assert SETTINGS in result.output and where in result.output
    assert "Traceback" not in result.output
    assert factory.snapshot() == before  # nothing installed either


def test_settings_with_wrong_shape_is_a_clean_error(factory):
    factory.write_json(SETTINGS, {"hooks": {"Stop": {"command": "x"}}})
    result = init(factory.root)
    assert result.exit_code == 1
    assert (f"Error: {SETTINGS}::$.hooks.Stop must be a list of matcher groups; fix it and run `mlloop init` again."
            in result.output)


def test_edited_rules_are_kept_without_force_and_backed_up_with_force(factory):
    assert init(factory.root).exit_code == 0
    rules = factory.root / BB / "user_defined_rules.json"
    instruction = factory.root / PT / "user_instruction.md"
    rules.write_text('{"seed": 7}\n')
    instruction.write_text("Prefer small models.\n")
    before = factory.snapshot()

    result = init(factory.root)
    assert result.exit_code == 0
    assert (f"kept     {BB}/user_defined_rules.json (your edits; `mlloop init --force` replaces it, keeping a .bak)"
            in result.output)
    assert factory.snapshot() == before

    result = init(factory.root, "--force")
    assert result.exit_code == 0
    assert (f"replaced {BB}/user_defined_rules.json (your version is kept as {BB}/user_defined_rules.json.bak)"
            in result.output)
    assert (factory.root / BB / "user_defined_rules.json.bak").read_text() == '{"seed": 7}\n'
    assert (factory.root / PT / "user_instruction.md.bak").read_text() == "Prefer small models.\n"
    assert rules.read_bytes() == (bundle_root() / "skills/build-baseline/user_defined_rules.json").read_bytes()

    rules.write_text('{"seed": 8}\n')  # a second --force never overwrites the first backup
    assert init(factory.root, "--force").exit_code == 0
    assert (factory.root / BB / "user_defined_rules.json.bak").read_text() == '{"seed": 7}\n'
    assert (factory.root / BB / "user_defined_rules.json.bak.1").read_text() == '{"seed": 8}\n'


def test_files_as_installed_are_updated_but_edited_skill_files_are_kept(factory):
    """A file still as init left it is mlloop's to update; one the user changed is theirs."""
    assert init(factory.root).exit_code == 0
    manifest = factory.read_json(".claude/.mlloop-install.json")
    skill = factory.root / BB / "SKILL.md"
    # Pretend an older mlloop installed a different SKILL.md and the user never touched it.
    skill.write_text("old SKILL.md\n")
    import hashlib
    manifest["files"][f"{BB}/SKILL.md"] = hashlib.sha256(b"old SKILL.md\n").hexdigest()
    factory.write_json(".claude/.mlloop-install.json", manifest)
    result = init(factory.root)
    assert f"updated  {BB}/SKILL.md" in result.output
    assert skill.read_bytes() == (bundle_root() / "skills/build-baseline/SKILL.md").read_bytes()
    skill.write_text("my own notes\n")
    result = init(factory.root)
    assert f"kept     {BB}/SKILL.md" in result.output and skill.read_text() == "my own notes\n"


def test_lang_ko_installs_the_korean_skills_and_switching_back_needs_no_force(factory):
    assert init(factory.root, "--lang", "ko").exit_code == 0
    ko = bundle_root() / "skills-ko"
    for skill in ("build-baseline", "progressive-training"):
        assert (factory.root / f".claude/skills/{skill}/SKILL.md").read_bytes() == (ko / skill / "SKILL.md").read_bytes()
    assert (factory.root / BB / "task_format.yaml").is_file()
    result = init(factory.root, "--lang", "en")  # unedited Korean files are bundle files: replaced freely
    assert result.exit_code == 0 and "kept" not in result.output
    assert (factory.root / BB / "SKILL.md").read_bytes() == (bundle_root() / "skills/build-baseline/SKILL.md").read_bytes()


def test_init_refuses_a_missing_project_folder(tmp_path):
    result = init(tmp_path / "nope")
    assert result.exit_code == 1
    assert "the project folder does not exist" in result.output


def test_hook_command_survives_spaces_and_runs_mlloop(tmp_path, monkeypatch):
    """The recorded command is a shell command that really reaches `mlloop hook`, even with spaces
    in the interpreter's path and the project's (here: outside an mlloop project, a silent no-op)."""
    spaced = tmp_path / "an env with spaces"
    spaced.mkdir()
    python = spaced / "python it's"
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    command = hook_command("stop")
    assert shlex.split(command) == [str(python), "-m", "mlloop", "hook", "stop"]
    assert is_mlloop_command(command) and is_mlloop_command("mlloop hook stop")
    assert not is_mlloop_command("echo mlloop hook") and not is_mlloop_command("python -m other hook")
    project = tmp_path / "a project"
    project.mkdir()
    out = subprocess.run(["sh", "-c", command], input='{"hook_event_name": "Stop"}', capture_output=True, text=True,
                         cwd=project, env={"PATH": "/usr/bin:/bin", "CLAUDE_PROJECT_DIR": str(project)}, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    (project / "dataset/rawdata").mkdir(parents=True)  # now an mlloop project: the hook answers
    out = subprocess.run(["sh", "-c", hook_command("pre-tool-use")], capture_output=True, text=True, cwd=project,
                         input=json.dumps({"tool_name": "Write", "tool_input": {"file_path": "dataset/rawdata/x.csv"}}),
                         env={"PATH": "/usr/bin:/bin", "CLAUDE_PROJECT_DIR": str(project)}, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_every_hook_event_is_registered():
    assert {e: a for e, (_, a, _) in HOOKS.items()} == {"SessionStart": "session-start", "PreToolUse": "pre-tool-use",
                                                         "Stop": "stop"}


# ---- the installed skill folders are the repository's ---------------------------------------

def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, through links (as init reads the bundle)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith((".pyc", ".bak")):
                path = Path(dirpath) / name
                out[path.relative_to(folder).as_posix()] = path.read_bytes()
    return out


@pytest.mark.parametrize("lang", sorted(SKILL_DIRS))
def test_init_installs_exactly_the_skill_folders(factory, lang):
    assert init(factory.root, "--lang", lang).exit_code == 0
    for skill in SKILLS:
        bundled = tree(bundle_root() / SKILL_DIRS[lang] / skill)
        english = tree(bundle_root() / "skills" / skill)
        # A translation may leave out a data file (task_format.yaml); init takes it from English.
        expected = bundled | {n: english[n] for n in USER_FILES if n in english and n not in bundled}
        assert tree(factory.root / ".claude/skills" / skill) == expected
        assert any(n.startswith("templates/") for n in expected)


REPO = Path(__file__).resolve().parents[1]


def links_in_skills_ko() -> list[Path]:
    return sorted(p for p in (REPO / "skills-ko").rglob("*") if p.is_symlink())


def test_korean_templates_are_relative_links_to_the_english_ones():
    links = links_in_skills_ko()
    assert [p.relative_to(REPO).as_posix() for p in links] == [f"skills-ko/{s}/templates" for s in SKILLS]
    for link in links:
        target = os.readlink(link)
        assert not os.path.isabs(target), f"{link} must be a relative link (it travels with the checkout)"
        assert link.resolve() == (REPO / "skills" / link.relative_to(REPO / "skills-ko")).resolve()
    # Committed as links (mode 120000), not as copies of the code.
    staged = subprocess.run(["git", "ls-files", "-s", "skills-ko"], cwd=REPO, capture_output=True, text=True).stdout
    if staged:  # a checkout (an unpacked sdist has no git)
        modes = {line.split("\t")[1]: line.split()[0] for line in staged.splitlines()}
        assert all(modes.get(p.relative_to(REPO).as_posix()) == "120000" for p in links), modes


def test_korean_init_needs_no_links_in_the_bundle(factory, tmp_path):
    """Wheels and sdists leave links out: init --lang ko from such a bundle installs the same files."""
    bundle = tmp_path / "bundle"
    for top in ("skills", "skills-ko"):
        shutil.copytree(REPO / top, bundle / top, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for link in (bundle / "skills-ko").rglob("*"):
        if link.is_symlink():
            link.unlink()
    linked = bundle_files("ko")
    unlinked = bundle_files("ko", bundle)
    assert sorted(unlinked) == sorted(linked)
    assert all(unlinked[d].read_bytes() == linked[d].read_bytes() for d in linked)
    assert any("/templates/train/" in d for d in unlinked)
    init_project(Project.at(factory.root), "ko", bundle=bundle)
    assert (factory.root / BB / "templates/01_data_pipeline.py").read_bytes() == template("01_data_pipeline.py").read_bytes()


def test_init_removes_what_an_older_layout_installed_and_keeps_edited_files(factory):
    """Before the templates moved into templates/train/, init installed them flat."""
    import hashlib

    assert init(factory.root).exit_code == 0
    manifest_path = factory.root / ".claude/.mlloop-install.json"
    manifest = json.loads(manifest_path.read_text())
    old, edited = f"{BB}/templates/tabular.py", f"{BB}/templates/ocr_recognition.py"
    stale_dir = f"{BB}/old_folder/notes.md"
    for dest, text in ((old, "as installed\n"), (edited, "as installed\n"), (stale_dir, "x\n")):
        (factory.root / dest).parent.mkdir(parents=True, exist_ok=True)
        (factory.root / dest).write_text(text)
        manifest["files"][dest] = hashlib.sha256(text.encode()).hexdigest()
    (factory.root / edited).write_text("the user's edit\n")
    manifest_path.write_text(json.dumps(manifest))

    result = init(factory.root)
    assert result.exit_code == 0, result.output
    assert f"removed  {old}" in result.output and f"removed  {stale_dir}" in result.output
    assert edited not in result.output
    assert not (factory.root / old).exists() and not (factory.root / BB / "old_folder").exists()
    assert (factory.root / edited).read_text() == "the user's edit\n"
    assert (factory.root / BB / "templates/train/tabular.py").is_file()
    files = json.loads(manifest_path.read_text())["files"]
    assert old not in files and edited not in files and stale_dir not in files
    assert "nothing to change" in init(factory.root).output
