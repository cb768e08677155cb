"""`mlloop hook`: SessionStart context, PreToolUse denials, Stop blocks (at most 3 in a row), and
never a locked session — from sample hook payloads as Claude Code sends them."""

import json
import os

import pytest
from click.testing import CliRunner

from mlloop.checks import run_check
from mlloop.cli import cli
from mlloop.layout import Project
from mlloop.state import loop_status

STATE = ".claude/.mlloop-hook-state.json"


@pytest.fixture(autouse=True)
def _no_outer_claude(monkeypatch):
    """Tests may themselves run inside Claude Code; its project must not leak in."""
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    monkeypatch.delenv("MLLOOP_DEBUG", raising=False)


def hook(root, payload, event=None):
    stdin = payload if isinstance(payload, str) else json.dumps(payload)
    args = ["hook", *([event] if event else []), "--project", str(root)]
    result = CliRunner().invoke(cli, args, input=stdin)
    assert result.exit_code == 0, result.output  # a hook never exits non-zero
    out = result.stdout.strip()
    return json.loads(out) if out else None


def write(root, path, tool="Write", **extra):
    tool_input = {"notebook_path": path} if tool == "NotebookEdit" else {"file_path": path}
    return hook(root, {"hook_event_name": "PreToolUse", "session_id": "s1", "cwd": str(root), "tool_name": tool,
                       "tool_input": {**tool_input, "content": "x", **extra}}, "pre-tool-use")


def denial(out):
    assert out is not None, "expected a denial"
    spec = out["hookSpecificOutput"]
    assert spec["hookEventName"] == "PreToolUse" and spec["permissionDecision"] == "deny"
    return spec["permissionDecisionReason"]


def stop(root, active=False, session="s1"):
    return hook(root, {"hook_event_name": "Stop", "session_id": session, "cwd": str(root),
                       "stop_hook_active": active, "last_assistant_message": "done"}, "stop")


# ---- SessionStart -------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["startup", "resume", "clear", "compact"])
def test_session_start_gives_the_status_as_context(factory, source):
    factory.complete(versions=1)
    out = hook(factory.root, {"hook_event_name": "SessionStart", "source": source, "session_id": "s1"})
    spec = out["hookSpecificOutput"]
    assert spec["hookEventName"] == "SessionStart"
    context = spec["additionalContext"]
    assert context.startswith("mlloop status (the loop's state, read from the files by `mlloop status`):\n")
    for line in loop_status(Project(factory.root.resolve())).lines():
        assert line in context
    assert ("The conversation was compacted: re-read the SKILL.md" in context) == (source == "compact")


def test_session_start_reads_the_project_from_claude_project_dir(factory, monkeypatch, tmp_path):
    factory.complete(versions=1)
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(factory.root))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["hook", "session-start"], input=json.dumps({"source": "startup"}))
    assert "additionalContext" in result.stdout


def test_hooks_are_silent_outside_an_mlloop_project(tmp_path):
    for event, payload in [("session-start", {"source": "startup"}),
                           ("pre-tool-use", {"tool_name": "Write", "tool_input": {"file_path": "eval_score.json"}}),
                           ("stop", {"stop_hook_active": False}), (None, "not json")]:
        result = CliRunner().invoke(cli, ["hook", *([event] if event else []), "--project", str(tmp_path)],
                                    input=payload if isinstance(payload, str) else json.dumps(payload))
        assert (result.exit_code, result.output) == (0, "")
    assert list(tmp_path.iterdir()) == []


# ---- PreToolUse ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    (".claude/skills/build-baseline/user_defined_rules.json", "only the user changes them"),
    (".claude/skills/progressive-training/user_defined_rules.json", "only the user changes them"),
    (".claude/skills/build-baseline/user_instruction.md", "only the user changes them"),
    (".claude/skills/progressive-training/user_instruction.md", "only the user changes them"),
    (".claude/skills/build-baseline/task_format.yaml", "`mlloop check prepdata` enforces"),
    ("Models/Artifacts/v001/eval_score.json", "Run `python 03_eval.py --version v001`"),
    ("Models/Artifacts/v002/trivial_baselines.json", "Run `python 03_eval.py --version v002`"),
    ("Models/Artifacts/v001/eval_samples.jsonl", "Run `python 03_eval.py --version v001`"),
    ("Models/Artifacts/v001/infer_samples/0001/output.txt", "Run `python 03_eval.py --version v001`"),
    ("Models/external/ref/eval_score.json", "python Models/external/ref/evaluation.py"),
    ("dataset/rawdata/src_a/cat/src_a_0.png", "raw input data, which is never modified"),
    ("dataset/rawdata/new_notes.txt", "raw input data, which is never modified"),
    ("03_eval.py", "frozen evaluation protocol and v001 was already evaluated"),
    ("02_train_v001.py", "was trained and evaluated; its eval_score.json describes exactly this code"),
    ("02_train_baseline.py", "is the baseline that v001 was copied from; the loop has started"),
])
@pytest.mark.parametrize("absolute", [True, False])
def test_pre_tool_use_denies_protected_files_with_the_proper_way(factory, path, expected, absolute):
    factory.complete(versions=1)
    before = factory.snapshot()
    reason = denial(write(factory.root, str(factory.root / path) if absolute else path))
    assert reason.startswith(f"mlloop: {path} ")
    assert expected in reason
    assert factory.snapshot() == before


@pytest.mark.parametrize("tool", ["Edit", "MultiEdit", "NotebookEdit"])
def test_every_edit_tool_is_covered(factory, tool):
    factory.complete(versions=1)
    assert "03_eval.py --version v001" in denial(write(factory.root, "Models/Artifacts/v001/eval_score.json", tool))


@pytest.mark.parametrize("path", [
    "dataset/rawdata/profiling.md",            # the agent writes this one
    "02_train_v002.py", "01_data_pipeline.py", "Models/Artifacts/v001/result-analysis.md",
    "Models/Artifacts/v001/action-extract.md", "notes/eval_score.md", "/tmp/elsewhere/eval_score.json",
])
def test_pre_tool_use_allows_the_agents_own_files(factory, path):
    factory.complete(versions=1)
    assert write(factory.root, path) is None


def test_eval_script_is_free_until_a_version_is_evaluated(factory):
    factory.build_baseline_done()
    factory.version(1, "trained")
    assert write(factory.root, "03_eval.py") is None
    factory.evaluation("v001", 0.6)
    assert "v001 was already evaluated" in denial(write(factory.root, "03_eval.py"))


def test_reading_is_never_denied(factory):
    factory.complete(versions=1)
    out = hook(factory.root, {"tool_name": "Read", "tool_input": {"file_path": "Models/Artifacts/v001/eval_score.json"},
                              "cwd": str(factory.root)}, "pre-tool-use")
    assert out is None


def test_a_link_to_a_protected_file_is_protected(factory):
    factory.complete(versions=1)
    os.symlink(factory.root / "Models/Artifacts/v001/eval_score.json", factory.root / "score_copy.json")
    assert "03_eval.py --version v001" in denial(write(factory.root, "score_copy.json"))


def test_relative_paths_are_taken_from_the_payload_cwd(factory):
    factory.complete(versions=1)
    (factory.root / "Models").mkdir(exist_ok=True)
    out = hook(factory.root, {"tool_name": "Write", "cwd": str(factory.root / "Models"),
                              "tool_input": {"file_path": "Artifacts/v001/eval_score.json"}}, "pre-tool-use")
    assert "Models/Artifacts/v001/eval_score.json" in denial(out)


# ---- Stop ---------------------------------------------------------------------------------

def broken(factory):
    """An evaluated version whose eval_score.json is missing: the open step breaks the contract."""
    factory.build_baseline_done()
    factory.version(1, "evaluated")
    (factory.root / "Models/Artifacts/v001/eval_score.json").unlink()
    findings = run_check(Project(factory.root.resolve()), "all")
    assert not findings.ok
    return findings


def test_stop_lets_a_valid_project_end_the_turn(factory):
    factory.complete(versions=2)
    assert stop(factory.root) is None and stop(factory.root, active=True) is None
    assert not (factory.root / STATE).exists()  # nothing to remember


def test_stop_blocks_three_times_in_a_row_then_lets_go(factory):
    findings = broken(factory)
    for n in (1, 2, 3):
        out = stop(factory.root, active=n > 1)
        assert out["decision"] == "block"
        reason = out["reason"]
        assert reason.startswith(f"mlloop: the open loop step breaks the contract; `mlloop check` finds "
                                 f"{len(findings.problems)} problem(s):\n")
        for p in findings.problems:
            assert f"- {p.line()}" in reason
        assert reason.endswith(f"This is block {n} of at most 3 in a row.")
    out = stop(factory.root, active=True)
    assert set(out) == {"systemMessage"}
    assert "blocked 3 times in a row, so it ends anyway" in out["systemMessage"]
    assert json.loads((factory.root / STATE).read_text())["stop_blocks"] == {"s1": 3}
    # The next turn of the session (a fresh stop) is checked again.
    assert stop(factory.root, active=False)["reason"].endswith("block 1 of at most 3 in a row.")


def test_a_fresh_stop_restarts_the_count_and_sessions_count_apart(factory):
    broken(factory)
    assert stop(factory.root)["decision"] == "block"
    assert stop(factory.root, active=True)["reason"].endswith("block 2 of at most 3 in a row.")
    assert stop(factory.root, session="other")["reason"].endswith("block 1 of at most 3 in a row.")
    assert stop(factory.root, active=False)["reason"].endswith("block 1 of at most 3 in a row.")
    assert json.loads((factory.root / STATE).read_text())["stop_blocks"] == {"other": 1, "s1": 1}


def test_a_passing_stop_resets_the_count(factory):
    broken(factory)
    stop(factory.root)
    stop(factory.root, active=True)
    factory.evaluation("v001", 0.6)  # the agent fixed it
    assert stop(factory.root, active=True) is None
    assert json.loads((factory.root / STATE).read_text())["stop_blocks"] == {}


def test_problems_only_the_user_can_fix_do_not_block(factory):
    """A broken rules file is the user's to fix; the problems it causes elsewhere do not block."""
    factory.complete(versions=1)
    factory.write(".claude/skills/progressive-training/user_defined_rules.json", '{"seed": ')
    findings = run_check(Project(factory.root.resolve()), "all")
    assert any(p.path.endswith("user_defined_rules.json") for p in findings.problems)
    assert stop(factory.root) is None


# ---- bad input and internal errors never lock a session -----------------------------------

@pytest.mark.parametrize("stdin", ["", "not json", "[1, 2]", '{"tool_name": "Write", "tool_input": '])
def test_malformed_stdin_is_reported_and_allowed(factory, stdin):
    broken(factory)
    for event in ("pre-tool-use", "stop"):
        out = hook(factory.root, stdin, event)
        assert set(out) == {"systemMessage"}
        assert out["systemMessage"].startswith(f"mlloop hook ({'PreToolUse' if event == 'pre-tool-use' else 'Stop'}): "
                                               "the hook input on stdin ")
        assert out["systemMessage"].endswith("nothing was checked this time.")
    assert "additionalContext" in hook(factory.root, stdin, "session-start")["hookSpecificOutput"]


def test_event_comes_from_the_payload_when_not_given(factory):
    factory.complete(versions=1)
    out = hook(factory.root, {"hook_event_name": "PreToolUse", "tool_name": "Write", "cwd": str(factory.root),
                              "tool_input": {"file_path": "03_eval.py"}})
    assert "frozen evaluation protocol" in denial(out)
    assert "additionalContext" in hook(factory.root, {"hook_event_name": "SessionStart"})["hookSpecificOutput"]


def test_unknown_event_is_reported_not_raised(factory):
    factory.complete(versions=1)
    out = hook(factory.root, {"hook_event_name": "PostToolUse"}, "post-tool-use")
    assert out == {"systemMessage": "mlloop hook: unknown event 'post-tool-use'; expected one of session-start, "
                                    "pre-tool-use, stop. Nothing was checked."}


def test_an_internal_error_is_reported_and_the_turn_ends(factory, monkeypatch):
    broken(factory)

    def explode(project, target):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("mlloop.checks.run_check", explode)
    out = stop(factory.root)
    assert out["systemMessage"].startswith("mlloop hook (Stop): internal error: RuntimeError: disk on fire. "
                                           "The session goes on unchecked")


def test_an_unwritable_counter_never_blocks(factory, monkeypatch):
    broken(factory)

    def refuse(path, text):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("mlloop.hooks.write_text_atomic", refuse)
    out = stop(factory.root)
    assert "cannot be written, so the Stop hook does not block" in out["systemMessage"]


@pytest.mark.slow
def test_hooks_import_nothing_heavy(factory):
    """Hooks run on every edit and every stop: they must start as fast as the CLI."""
    import subprocess
    import sys

    factory.complete(versions=1)
    code = ("import sys; from mlloop.hooks import run_hook\n"
            f"for e in ('session-start', 'pre-tool-use', 'stop'): run_hook(e, '{{}}', {str(factory.root)!r})\n"
            "print(sorted(m for m in ('torch', 'lightning', 'timm', 'torchvision', 'pandas', 'numpy', 'pyarrow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # numpy at most: the Stop hook runs `mlloop check`, which recomputes corpus metrics with mlloop.bootstrap
    assert out.stdout.strip() in ("[]", "['numpy']")


def test_a_version_script_is_free_until_that_version_is_evaluated(factory):
    factory.build_baseline_done()
    assert write(factory.root, "02_train_baseline.py") is None  # Step 0's one-time patch
    factory.version(1, "trained")
    assert write(factory.root, "02_train_v001.py") is None      # fixing a failed or retried run
    assert "the loop has started" in denial(write(factory.root, "02_train_baseline.py"))
    factory.evaluation("v001", 0.6)
    assert "frozen" in denial(write(factory.root, "02_train_v001.py"))


# ---- Bash and MCP writes (every way to write) -----------------------------------------------

def bash(root, command, cwd=None):
    return hook(root, {"hook_event_name": "PreToolUse", "session_id": "s1", "cwd": str(cwd or root),
                       "tool_name": "Bash", "tool_input": {"command": command, "description": "x"}}, "pre-tool-use")


SCORE = "Models/Artifacts/v001/eval_score.json"
RULES = ".claude/skills/progressive-training/user_defined_rules.json"


@pytest.mark.parametrize("command, expected", [
    (f"echo '{{}}' > {SCORE}", "a `>` redirection"),
    (f"echo 1 >> {SCORE}", "a `>>` redirection"),
    (f"ls; cat x | tee {SCORE} >/dev/null", "`tee`"),
    (f"sed -i 's/0.6/0.9/' {SCORE} && echo ok", "`sed -i`"),
    (f"perl -pi -e 's/0.6/0.9/' {SCORE}", "`perl -i`"),
    (f"cp /tmp/forged.json {SCORE}", "`cp`"),
    ("cp /tmp/eval_score.json Models/Artifacts/v001/", "`cp`"),
    (f"mv {SCORE} /tmp/x.json", "`mv`"),
    (f"rm -f {SCORE}", "`rm`"),
    ("rm -rf Models", "`rm`"),
    ("rm Models/Artifacts/*/eval_score.json", "`rm`"),
    (f"truncate -s 0 {SCORE}", "`truncate`"),
    (f"dd if=/dev/zero of={SCORE} bs=1 count=1", "`dd of=`"),
    (f"touch {SCORE}", "`touch`"),
    (f"ln -sf /tmp/x {SCORE}", "`ln`"),
    (f"install -m 644 /tmp/x {SCORE}", "`install`"),
    (f"F={SCORE}; rm $F", "`rm`"),
    (f"true && (cd Models/Artifacts && rm v001/eval_score.json)", "`rm`"),
    (f"echo $(rm {SCORE})", "`rm`"),
    (f"bash -c 'echo 1 > {SCORE}'", "a `>` redirection"),
    (f"sudo -n nice -n 5 cp /tmp/x {SCORE}", "`cp`"),
    (f"python -c \"import json; json.dump({{}}, open('{SCORE}', 'w'))\"", "`python` inline code"),
    (f"python3 - <<'EOF'\nfrom pathlib import Path\np = Path('{SCORE}')\np.write_text('{{}}')\nEOF", "`python3` inline code"),
    (f"uv run python -c \"from pathlib import Path; Path('Models/Artifacts/v001/eval_score.json').unlink()\"",
     "`python` inline code"),
    (f"git checkout -- {SCORE}", "`git checkout`"),
    ("git restore 03_eval.py", "`git restore`"),
    ("git clean -fdx", "`git clean`"),
    ("find Models -name 'eval_score.json' -delete", "`find -delete/-exec`"),
    ("find . -name '*.json' -exec rm {} +", "`find -delete/-exec`"),
    ("ls Models/Artifacts/*/eval_score.json | xargs rm", "`xargs rm`"),
    (f"cat > {SCORE} <<EOF\n{{\"x\": 1}}\nEOF", "a `>` redirection"),
    (f"echo \"$(rm -f {SCORE})\"", "`rm`"),
    (f"echo \"`truncate -s0 {SCORE}`\"", "`truncate`"),
    (f"ln -s {SCORE} s.json && echo '{{}}' > s.json", "`ln`"),
])
def test_bash_writes_to_protected_files_are_denied(factory, command, expected):
    factory.complete(versions=1)
    before = factory.snapshot()
    reason = denial(bash(factory.root, command))
    assert reason.startswith("mlloop: ")
    assert expected in reason
    assert "reading it is fine" in reason
    assert factory.snapshot() == before


@pytest.mark.parametrize("command, expected", [
    (f"sed -i s/seed/x/ {RULES}", "only the user changes them"),
    ("echo x >> dataset/rawdata/src_a/notes.txt", "raw input data, which is never modified"),
    ("rm -r dataset", "raw input data"),
    ("echo '# x' >> 03_eval.py", "frozen evaluation protocol"),
    ("cp 02_train_v001.py /tmp/ && echo 1 >> 02_train_v001.py", "its eval_score.json describes exactly this code"),
    ("echo '{}' > .claude/.mlloop-hook-state.json", "the Stop hook's own block counter"),
    ("echo '{}' > .claude/settings.json", "holds mlloop's hooks"),
    ("sed -i /mlloop/d .claude/settings.json", "holds mlloop's hooks"),
])
def test_bash_denials_say_the_proper_way(factory, command, expected):
    factory.complete(versions=1)
    assert expected in denial(bash(factory.root, command))


@pytest.mark.parametrize("command", [
    f"cat {SCORE}", f"jq .metrics {SCORE}", f"head -5 {SCORE} > /tmp/head.txt", f"grep -r accuracy Models > notes.txt",
    f"python -c \"import json; print(json.load(open('{SCORE}')))\"",
    f"python - <<'EOF'\nimport json\nd = json.load(open('{SCORE}'))\nopen('notes.md', 'w').write(str(d))\nEOF",
    "python 03_eval.py --version v001", "python 02_train_v002.py > Models/Artifacts/v002/train.log 2>&1",
    "cp 02_train_v001.py 02_train_v002.py", "mlloop new-version v002 && mlloop check v002",
    "rm -rf dataset/prepdata/v1 && python 01_data_pipeline.py", "find . -name '*.pyc' -delete",
    "echo done > Models/Artifacts/v001/result-analysis.md", "sed -n 1,5p 03_eval.py",
    "git status && git diff 03_eval.py", "ls -la > /dev/null 2>&1", "echo 'unclosed",
    "echo hi > dataset/rawdata/profiling.md", "cd /tmp && rm -f eval_score.json",
])
def test_bash_reads_and_own_files_are_allowed(factory, command):
    factory.complete(versions=1)
    assert bash(factory.root, command) is None


def test_removing_a_folder_that_holds_protected_files_is_denied(factory):
    factory.complete(versions=1)
    reason = denial(bash(factory.root, "rm -rf Models"))
    assert reason.startswith("mlloop: Models/ holds a protected file: Models/Artifacts/v001/")
    assert "(This Bash command writes it with `rm`; reading it is fine.)" in reason
    for command in ("rm -rf ..", "rm -rf /", "mv . /tmp/elsewhere"):
        assert "holds a protected file" in denial(bash(factory.root, command)), command
    assert bash(factory.root, "rm -rf Models/Artifacts/v001/_tests") is None


def test_bash_paths_are_taken_from_the_payload_cwd(factory):
    factory.complete(versions=1)
    assert "`rm`" in denial(bash(factory.root, "rm Artifacts/v001/eval_score.json", cwd=factory.root / "Models"))
    assert "frozen evaluation protocol" in denial(bash(factory.root, "rm ../03_eval.py", cwd=factory.root / "Models"))
    assert bash(factory.root, "rm 03_eval.py", cwd=factory.root / "Models") is None  # Models/03_eval.py: not it


@pytest.mark.parametrize("tool, tool_input", [
    ("mcp__filesystem__write_file", {"path": SCORE, "content": "{}"}),
    ("mcp__filesystem__edit_file", {"path": RULES, "edits": [{"oldText": "a", "newText": "b"}]}),
    ("mcp__filesystem__move_file", {"source": SCORE, "destination": "/tmp/x.json"}),
    ("mcp__fs__delete_directory", {"path": "Models"}),
    ("mcp__files__write", {"target": "file://" + SCORE}),
])
def test_mcp_writes_to_protected_files_are_denied(factory, tool, tool_input):
    factory.complete(versions=1)
    out = hook(factory.root, {"hook_event_name": "PreToolUse", "cwd": str(factory.root), "tool_name": tool,
                              "tool_input": tool_input}, "pre-tool-use")
    assert f"(The MCP tool {tool} would write it; reading it is fine.)" in denial(out)


@pytest.mark.parametrize("tool, tool_input", [
    ("mcp__filesystem__read_file", {"path": SCORE}),
    ("mcp__filesystem__read_multiple_files", {"paths": [SCORE, RULES]}),
    ("mcp__filesystem__list_directory", {"path": "Models"}),
    ("mcp__filesystem__write_file", {"path": "notes/summary.md", "content": SCORE}),
])
def test_mcp_reads_and_own_files_are_allowed(factory, tool, tool_input):
    factory.complete(versions=1)
    out = hook(factory.root, {"hook_event_name": "PreToolUse", "cwd": str(factory.root), "tool_name": tool,
                              "tool_input": tool_input}, "pre-tool-use")
    assert out is None


def test_the_registered_matcher_covers_every_writing_tool():
    """The same matcher in settings.json (mlloop init) and the plugin's hooks.json; a regex."""
    import re
    from pathlib import Path

    from mlloop.hooks import PRE_TOOL_USE_MATCHER
    from mlloop.install import HOOKS

    assert HOOKS["PreToolUse"][0] == PRE_TOOL_USE_MATCHER
    plugin = json.loads((Path(__file__).parents[1] / "hooks/hooks.json").read_text())
    assert plugin["hooks"]["PreToolUse"][0]["matcher"] == PRE_TOOL_USE_MATCHER
    for tool in ("Write", "Edit", "MultiEdit", "NotebookEdit", "Bash", "mcp__filesystem__write_file"):
        assert re.search(PRE_TOOL_USE_MATCHER, tool)
    for tool in ("Read", "Grep", "TodoWrite", "BashOutput"):
        assert not re.search(PRE_TOOL_USE_MATCHER, tool)


# ---- the guard guards itself ------------------------------------------------------------------

def test_the_hook_state_file_cannot_be_written(factory):
    factory.complete(versions=1)
    for tool in ("Write", "Edit"):
        assert "the Stop hook's own block counter" in denial(write(factory.root, STATE, tool))


def test_settings_edits_keep_mlloops_hooks(factory):
    from mlloop.install import init_project

    factory.complete(versions=1)
    init_project(Project(factory.root.resolve()))
    path = factory.root / ".claude/settings.json"
    settings = json.loads(path.read_text())
    # The user's own settings may change; mlloop's entries may not.
    assert write(factory.root, ".claude/settings.json", content=json.dumps({**settings, "model": "x"})) is None
    assert "would change, remove or turn them off" in denial(
        write(factory.root, ".claude/settings.json", content=json.dumps({**settings, "hooks": {}})))
    assert "would change, remove or turn them off" in denial(
        write(factory.root, ".claude/settings.json", content=json.dumps({**settings, "disableAllHooks": True})))
    assert "would change, remove or turn them off" in denial(
        write(factory.root, ".claude/settings.local.json", content='{"disableAllHooks": true}'))
    assert "no longer be valid JSON" in denial(write(factory.root, ".claude/settings.json", content="{"))
    text = path.read_text()
    old = next(line for line in text.splitlines() if "pre-tool-use" in line)
    assert "would change" in denial(write(factory.root, ".claude/settings.json", "Edit",
                                          old_string=old, new_string=old.replace("pre-tool-use", "session-start")))
    assert write(factory.root, ".claude/settings.json", "Edit", old_string='"hooks"',
                 new_string='"env": {"A": "1"}, "hooks"') is None


def state_of(factory):
    return json.loads((factory.root / STATE).read_text())["stop_blocks"]


@pytest.mark.parametrize("forged", [-100, 3.5, "0", True, None, [0], 10**30])
def test_a_hand_edited_counter_never_grants_more_blocks(factory, forged):
    broken(factory)
    assert stop(factory.root)["decision"] == "block"
    factory.write(STATE, json.dumps({"stop_blocks": {"s1": forged}}))
    out = stop(factory.root, active=True)
    assert set(out) == {"systemMessage"} and "so it ends anyway" in out["systemMessage"]


@pytest.mark.parametrize("text", ["{", "[]", '{"stop_blocks": []}'])
def test_a_broken_state_file_never_grants_more_blocks(factory, text):
    broken(factory)
    stop(factory.root)
    factory.write(STATE, text)
    assert set(stop(factory.root, active=True)) == {"systemMessage"}
    # A fresh stop starts over and leaves a sound file behind.
    assert stop(factory.root)["reason"].endswith("block 1 of at most 3 in a row.")
    assert state_of(factory) == {"s1": 1}


def test_blocks_in_a_row_never_exceed_three_even_from_zero(factory):
    broken(factory)
    outs = [stop(factory.root, active=n > 0) for n in range(6)]
    assert [("decision" in o) for o in outs] == [True, True, True, False, False, False]


def test_session_start_says_when_the_guard_is_from_an_older_init(factory):
    from mlloop.install import init_project

    factory.complete(versions=1)
    init_project(Project(factory.root.resolve()))
    context = lambda: hook(factory.root, {"hook_event_name": "SessionStart", "source": "startup"})[
        "hookSpecificOutput"]["additionalContext"]
    assert "from an older mlloop" not in context()
    path = factory.root / ".claude/settings.json"
    settings = json.loads(path.read_text())
    settings["hooks"]["PreToolUse"][0]["matcher"] = "Write|Edit|MultiEdit|NotebookEdit"
    path.write_text(json.dumps(settings))
    assert context().endswith("mlloop's PreToolUse hook in .claude/settings.json is from an older mlloop and does not "
                              "guard every tool (matcher 'Write|Edit|MultiEdit|NotebookEdit'); ask the user to run "
                              "`mlloop init` to update it.")
