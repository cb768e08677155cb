"""A scripted agent drives one loop step through the CLI inside the real client (issue 6, case 5).

The project stands where a real run would after `python 03_eval.py --version v001`. The agent
does what progressive-training's SKILL.md tells it to, with Bash and file tools only: status,
check, analyze, write the two analysis documents, check, new-version, check. The client runs every
command (our hooks included); the test reads the tool results it sent back and the files.
"""

import pytest

from factory import ACTION_EXTRACT, RESULT_ANALYSIS
from model_server import text, tool_use

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow


def test_agent_replays_a_loop_step_through_the_cli(factory, mlloop_init, claude):
    mlloop_init(factory.root)
    factory.build_baseline_done()
    factory.version(1, "evaluated", accuracy=0.6)
    art = factory.root / "Models/Artifacts/v001"
    analysis, action = art / "result-analysis.md", art / "action-extract.md"

    def bash(command):
        return [tool_use("Bash", command=command, description=command)]

    script = [
        bash("mlloop status"),
        bash("mlloop check v001"),
        bash("mlloop analyze v001"),
        [tool_use("Read", file_path=str(analysis))],
        [tool_use("Write", file_path=str(analysis), content=RESULT_ANALYSIS.format(vid="v001", acc=0.6, delta=0.1))],
        [tool_use("Write", file_path=str(action), content=ACTION_EXTRACT.format(vid="v001"))],
        bash("mlloop check v001"),
        bash("mlloop new-version"),
        # The Selected Action applied (label smoothing): an authored version whose code is its
        # parent's is a problem for `mlloop check`, and the Stop hook would send the agent back.
        bash("printf '\\nLABEL_SMOOTHING = 0.1\\n' >> 02_train_v002.py"),
        bash("mlloop check"),
        [text("v001 is analysed and v002 is authored; next: `python 02_train_v002.py`.")],
    ]
    session = claude(factory.root, "/progressive-training", script)

    requests = session.scripted
    assert len(requests) == len(script), [r.last_user_text()[:300] for r in requests]
    results = [r.last_tool_result() for r in requests[1:]]
    status, check1, analyze, read, write1, write2, check2, new_version, applied, check_all = results
    assert not any(is_error for _, is_error in results), results
    assert "v001" in status[0]
    assert "check v001: ok" in check1[0]
    assert "result-analysis.md" in analyze[0]
    assert "check v001: ok" in check2[0]
    assert "02_train_v002.py" in new_version[0]
    assert "check all: ok" in check_all[0]
    assert analysis.read_text().startswith("# Result analysis — v001")
    assert "## Selected Action (only 1)" in action.read_text()
    v002 = (factory.root / "02_train_v002.py").read_text()
    assert v002.startswith("# === mlloop change summary ===") and v002.endswith("\nLABEL_SMOOTHING = 0.1\n")
    # The project was valid at the end of the turn, so the Stop hook did not send the agent back.
    assert not any("Stop hook feedback" in r.last_user_text() for r in requests)
    assert session.result["result"].startswith("v001 is analysed and v002 is authored")
