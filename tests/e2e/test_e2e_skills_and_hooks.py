"""The real client loads our skills and honours our hooks (issue 6, cases 1-4).

Each test runs the `claude` binary headless in a project made by `mlloop init`, against the
scripted model, then asserts on the requests the client sent and on the files.
"""

import json
from pathlib import Path

import pytest

from mlloop.checks import run_check
from mlloop.layout import Project
from mlloop.state import loop_status
from model_server import text, tool_use

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

SKILLS = ("build-baseline", "progressive-training")


def skill_body(path: Path) -> tuple[str, str]:
    """(description, body) of a SKILL.md: what the client lists and what it expands."""
    raw = path.read_text(encoding="utf-8")
    assert raw.startswith("---\n"), f"{path} has no frontmatter"
    front, body = raw[4:].split("\n---\n", 1)
    import yaml

    return str(yaml.safe_load(front)["description"]), body


# ---- 1. /build-baseline and /progressive-training expand to our SKILL.md -----------------

@pytest.mark.parametrize("lang", ["en", "ko"])
@pytest.mark.parametrize("skill", SKILLS)
def test_slash_command_expands_our_skill(factory, mlloop_init, claude, skill, lang):
    mlloop_init(factory.root, "--lang", lang)
    installed = factory.root / ".claude/skills" / skill / "SKILL.md"
    description, body = skill_body(installed)
    session = claude(factory.root, f"/{skill}", [[text("Reading the skill.")]])

    assert session.result["is_error"] is False, session.stdout
    first = session.scripted[0]
    expanded = first.last_user_text()
    assert f"Base directory for this skill: {factory.root.resolve()}/.claude/skills/{skill}" in expanded
    # The protected-files markers are HTML comments, which a client may leave out of what it shows.
    lines = [line for line in body.splitlines()
             if line.strip() and "$" not in line and not line.strip().startswith("<!--")]
    missing = [line for line in lines if line not in expanded]
    assert len(lines) > 10 and not missing, f"{len(missing)} lines of {installed} not expanded, e.g. {missing[:3]}"
    # The skill is also listed for the model with our description.
    assert f"- {skill}: {description.strip()[:200]}" in first.context_text() + first.system_text()


# ---- 2. the SessionStart hook's status reaches the model ---------------------------------

def test_session_start_status_reaches_the_model(factory, mlloop_init, claude):
    mlloop_init(factory.root)
    factory.complete(versions=1)
    session = claude(factory.root, "Where does the loop stand?", [[text("v001 is done.")]])

    context = session.scripted[0].context_text()
    assert "SessionStart hook additional context: mlloop status (the loop's state" in context
    for line in loop_status(Project(factory.root.resolve())).lines():
        assert line in context


# ---- 3. PreToolUse denies writes to evaluation outputs and rules --------------------------

def test_pre_tool_use_denies_eval_score_and_rules_writes(factory, mlloop_init, claude):
    mlloop_init(factory.root)
    factory.complete(versions=1)
    score = factory.root / "Models/Artifacts/v001/eval_score.json"
    rules = factory.root / ".claude/skills/progressive-training/user_defined_rules.json"
    before = {p: p.read_bytes() for p in (score, rules)}
    # The client refuses a Write or Edit of an existing file it has not read before it asks the
    # hooks, so the scripted agent reads first, as a real one would.
    script = [
        [text("Raising the score by hand."), tool_use("Read", file_path=str(score))],
        [tool_use("Write", file_path=str(score), content=json.dumps({"accuracy": 0.99}))],
        [tool_use("Read", file_path=str(rules))],
        [tool_use("Edit", file_path=str(rules), old_string='"max_versions": 3', new_string='"max_versions": 99')],
        [tool_use("Write", file_path=str(factory.root / "notes.md"), content="allowed\n")],
        [text("Done.")],
    ]
    session = claude(factory.root, "Improve the results.", script)

    assert len(session.scripted) == len(script)
    result, is_error = session.scripted[2].last_tool_result()
    assert is_error and result.startswith("mlloop: Models/Artifacts/v001/eval_score.json is an evaluation output")
    assert "Run `python 03_eval.py --version v001`" in result
    result, is_error = session.scripted[4].last_tool_result()
    assert is_error and result.startswith(
        "mlloop: .claude/skills/progressive-training/user_defined_rules.json is the user's")
    # The control: a write the hook allows really happens, so the denials above are the hook's.
    result, is_error = session.scripted[5].last_tool_result()
    assert not is_error and (factory.root / "notes.md").read_text() == "allowed\n"
    assert {p: p.read_bytes() for p in before} == before


def test_pre_tool_use_denies_bash_writes_to_protected_files(factory, mlloop_init, claude):
    """The client sends Bash commands to the hook as tool_input.command (issue 13, class 1)."""
    mlloop_init(factory.root)
    factory.complete(versions=1)
    score = factory.root / "Models/Artifacts/v001/eval_score.json"
    state = factory.root / ".claude/.mlloop-hook-state.json"
    before = score.read_bytes()
    script = [
        [text("Raising the score with a shell command."),
         tool_use("Bash", command="sed -i 's/0\\./0.9/' Models/Artifacts/v001/eval_score.json",
                  description="edit the score")],
        [tool_use("Bash", command="echo '{}' > .claude/.mlloop-hook-state.json", description="reset the counter")],
        [tool_use("Bash", command="cat Models/Artifacts/v001/eval_score.json > copy.json", description="read it")],
        [text("Done.")],
    ]
    session = claude(factory.root, "Improve the results.", script)

    assert len(session.scripted) == len(script)
    result, is_error = session.scripted[1].last_tool_result()
    assert is_error and result.startswith("mlloop: Models/Artifacts/v001/eval_score.json is an evaluation output")
    assert "(This Bash command writes it with `sed -i`; reading it is fine.)" in result
    result, is_error = session.scripted[2].last_tool_result()
    assert is_error and "the Stop hook's own block counter" in result
    # The control: reading a protected file with Bash goes through.
    result, is_error = session.scripted[3].last_tool_result()
    assert not is_error and (factory.root / "copy.json").read_bytes() == before
    assert score.read_bytes() == before and not state.exists()


# ---- 4. Stop blocks with the problems, three times at most -------------------------------

def test_stop_blocks_with_the_problems_then_lets_go_after_three(factory, mlloop_init, claude):
    mlloop_init(factory.root)
    factory.build_baseline_done()
    factory.version(1, "evaluated")
    (factory.root / "Models/Artifacts/v001/eval_score.json").unlink()
    problems = run_check(Project(factory.root.resolve()), "all").problems
    assert problems
    script = [[text(f"All done (attempt {n}).")] for n in range(1, 7)]
    session = claude(factory.root, "Finish v001.", script)

    # One answer, three blocked stops each sent back with the problems, then the turn ends.
    assert len(session.scripted) == 4 and session.model.turns_left == 2
    for n, request in enumerate(session.scripted[1:], start=1):
        feedback = request.last_user_text()
        assert feedback.startswith("Stop hook feedback:\nmlloop: the open loop step breaks the contract")
        for p in problems:
            assert p.line() in feedback
        assert f"This is block {n} of at most 3 in a row." in feedback
    assert session.result["is_error"] is False
    assert session.result["result"] == "All done (attempt 4)."
    state = json.loads((factory.root / ".claude/.mlloop-hook-state.json").read_text())
    assert list(state["stop_blocks"].values()) == [3]  # the run was let go; a fresh stop starts over


def test_status_comes_back_after_compaction(factory, mlloop_init, claude_bin, tmp_path):
    """After /compact the SessionStart hook (source "compact") puts the status back, with the
    reminder to re-read the skill: the loop's state survives a compacted context."""
    from claude_runner import run_claude

    mlloop_init(factory.root)
    factory.complete(versions=1)
    home = tmp_path / "home"
    home.mkdir()
    # Enough turns for the client to have something to compact.
    first = run_claude(claude_bin, home, factory.root, "Look around.",
                       [[tool_use("Bash", command=f"echo {n}", description="echo")] for n in range(3)]
                       + [[text("Looked.")]])
    session_id = first.result["session_id"]
    # The compaction summary request comes with tools, so it takes a script turn.
    compact = run_claude(claude_bin, home, factory.root, "/compact", [[text("<summary>Looked around.</summary>")]],
                         args=("--resume", session_id))
    assert compact.result["is_error"] is False and len(compact.scripted) == 1
    after = run_claude(claude_bin, home, factory.root, "Go on.", [[text("Going on.")]], args=("--resume", session_id))
    context = after.scripted[0].context_text()
    assert "Looked around." in context  # the compacted history
    assert "SessionStart hook additional context: mlloop status" in context
    assert "The conversation was compacted: re-read the SKILL.md of the skill in use" in context
    for line in loop_status(Project(factory.root.resolve())).lines():
        assert line in context
