"""`mlloop new-version`: Step 0 (baseline → v001) and Step 6 (parent → next), and every refusal."""

import copy

import pytest
from click.testing import CliRunner

from factory import ACTION_EXTRACT, PT_RULES, TRAIN_SCRIPT
from mlloop.authoring import new_version
from mlloop.formats.change_summary import START as HEADER_START
from mlloop.formats.change_summary import read_fields as read_header
from mlloop.formats.change_summary import replace as replace_header
from mlloop.checks import run_check
from mlloop.cli import cli
from mlloop.errors import MlloopError

def invoke(factory, *args):
    return CliRunner().invoke(cli, ["new-version", "--project", str(factory.root), *args])


def refuse(factory, message, *args, code=1):
    before = factory.snapshot()
    result = invoke(factory, *args)
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines()[-1] == f"Error: {message}"
    assert "Traceback" not in result.output
    assert factory.snapshot() == before  # refused before even the lock file


# ---- happy paths --------------------------------------------------------------------------

def test_step_0_copies_the_baseline_to_v001(factory):
    factory.build_baseline_done()
    result = invoke(factory)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "created 02_train_v001.py from 02_train_baseline.py (parent baseline: Step 0: v001 starts from the baseline)",
        "created Models/Artifacts/v001/",
        "next: `python 02_train_v001.py` (Step 1: train v001)",
    ]
    assert (factory.root / "02_train_v001.py").read_text() == (
        "# === mlloop change summary ===\n# version: v001\n# parent: baseline\n# action_source: none\n"
        "# goal: start the loop from the baseline\n# change: none (copy of the baseline, Step 0)\n# where: -\n"
        "# === end change summary ===\n" + TRAIN_SCRIPT)
    assert (factory.root / "Models/Artifacts/v001").is_dir()
    assert list((factory.root / "Models/Artifacts/v001").iterdir()) == []


def test_step_6_takes_the_action_of_the_latest_version_and_replaces_the_header(factory):
    factory.build_baseline_done().version(1, "action")
    result = invoke(factory)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "created 02_train_v002.py from 02_train_v001.py (parent v001: branch_from: best, accuracy 0.6)",
        "created Models/Artifacts/v002/",
        "selected action (Models/Artifacts/v001/action-extract.md):",
        "  goal: raise accuracy by training longer",
        "  change: EPOCHS 1 -> 2",
        "  where: EPOCHS constant at the top of the script",
        "next: apply exactly the selected change to 02_train_v002.py, then `python 02_train_v002.py` (Step 1)",
    ]
    text = (factory.root / "02_train_v002.py").read_text()
    assert text.count(HEADER_START) == 1
    assert text == (
        "# === mlloop change summary ===\n# version: v002\n# parent: v001\n"
        "# action_source: Models/Artifacts/v001/action-extract.md\n# goal: raise accuracy by training longer\n"
        "# change: EPOCHS 1 -> 2\n# where: EPOCHS constant at the top of the script\n"
        "# parent_choice: branch_from: best, accuracy 0.6\n"
        "# === end change summary ===\n" + TRAIN_SCRIPT)


def test_best_parent_differs_from_the_action_source(factory):
    factory.build_baseline_done().version(1, "action", accuracy=0.8).version(2, "action", accuracy=0.6)
    factory.write("02_train_v001.py", factory.header("v001", "baseline") + "LR = 0.1  # v001's code\n")
    result = new_version(factory.project)
    assert (result.version, result.parent, result.action_source) == (
        "v003", "v001", "Models/Artifacts/v002/action-extract.md")
    text = (factory.root / "02_train_v003.py").read_text()
    assert text.endswith("# === end change summary ===\nLR = 0.1  # v001's code\n")
    assert read_header(factory.root / "02_train_v003.py") == {
        "version": "v003", "parent": "v001", "action_source": "Models/Artifacts/v002/action-extract.md",
        "goal": "raise accuracy by training longer", "change": "EPOCHS 1 -> 2",
        "where": "EPOCHS constant at the top of the script", "parent_choice": "branch_from: best, accuracy 0.8"}


@pytest.mark.parametrize("choice, parent", [("previous", "v002"), ("v001", "v001"), ("best", "v001"),
                                            ("baseline", "baseline")])
def test_from_overrides_branch_from(factory, choice, parent):
    factory.build_baseline_done().version(1, "action", accuracy=0.8).version(2, "action", accuracy=0.6)
    result = invoke(factory, "--from", choice, "--json")
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert (doc["version"], doc["parent"], doc["action_source"]) == ("v003", parent, "Models/Artifacts/v002/action-extract.md")
    assert read_header(factory.root / "02_train_v003.py")["parent"] == parent


def test_branch_from_previous_in_the_rules(factory):
    pt = copy.deepcopy(PT_RULES)
    pt["loop_config"]["branch_from"] = "previous"
    factory.build_baseline_done().rules(pt=pt).version(1, "action", accuracy=0.8).version(2, "action", accuracy=0.6)
    result = new_version(factory.project)
    assert (result.parent, result.why) == ("v002", "branch_from: previous")


def test_shebang_and_coding_lines_stay_first_and_fields_become_one_line(factory):
    factory.build_baseline_done().version(1, "action")
    factory.write("02_train_v001.py", "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n"
                  + factory.header("v001", "baseline") + "X = 1\n")
    factory.write("Models/Artifacts/v001/action-extract.md", ACTION_EXTRACT.format(vid="v001").replace(
        "- Change: EPOCHS 1 -> 2", "- Change: EPOCHS 1 -> 2\n  and nothing else"))
    new_version(factory.project)
    lines = (factory.root / "02_train_v002.py").read_text().splitlines()
    assert lines[:3] == ["#!/usr/bin/env python", "# -*- coding: utf-8 -*-", HEADER_START]
    assert "# change: EPOCHS 1 -> 2 and nothing else" in lines
    assert lines[-1] == "X = 1"


def test_replace_header_without_an_existing_header():
    assert replace_header("import os\n", "# H\n") == "# H\nimport os\n"


# ---- refusals -----------------------------------------------------------------------------

def test_refuses_without_an_action_extract(factory):
    factory.build_baseline_done().version(1, "analysed")
    refuse(factory, "Models/Artifacts/v001/action-extract.md does not exist; Step 4 of v001 "
                    "(one Selected Action) comes before authoring v002.")


def test_refuses_an_invalid_action_extract(factory):
    factory.build_baseline_done().version(1, "action")
    factory.write("Models/Artifacts/v001/action-extract.md", ACTION_EXTRACT.format(vid="v001").replace(
        "- Goal: raise accuracy by training longer", "- Goal: TODO").replace("- Risk: low; doubles training time\n", ""))
    # The reasons are `mlloop check v001`'s, word for word (one parser of action-extract.md).
    refuse(factory, "Models/Artifacts/v001/action-extract.md is not a valid action extract: the Selected Action's "
                    "'Goal' is empty or placeholder text; the Selected Action has no 'Risk' field. Fix it, then run "
                    "`mlloop new-version` again.")


def test_refuses_two_selected_actions(factory):
    factory.build_baseline_done().version(1, "action")
    text = ACTION_EXTRACT.format(vid="v001")
    factory.write("Models/Artifacts/v001/action-extract.md", text + "\n## Selected Action 2\n- Goal: more\n")
    refuse(factory, "Models/Artifacts/v001/action-extract.md is not a valid action extract: 2 'Selected Action' "
                    "headings (lines 2, 12); exactly one action is chosen per version; move the others under "
                    "'Deferred Candidates'. Fix it, then run `mlloop new-version` again.")


def test_refuses_when_max_versions_is_reached(factory):
    factory.complete(versions=3)
    refuse(factory, "max_versions=3 is reached (v003 is the last version); run `mlloop report` (Step 7), or raise "
                    "loop_config.max_versions in .claude/skills/progressive-training/user_defined_rules.json.")


def test_refuses_when_the_target_folder_exists(factory):
    factory.build_baseline_done().version(1, "action")
    factory.write("Models/Artifacts/v002/notes.txt", "mine")
    refuse(factory, "Models/Artifacts/v002 already exists; move it aside before authoring v002 (nothing was changed).")


def test_refuses_a_parent_without_a_script(factory):
    factory.build_baseline_done().version(1, "action")
    refuse(factory, "02_train_v007.py does not exist, so v007 cannot be the parent; pick an existing version "
                    "(vNNN, best, previous or baseline).", "--from", "v007")


def test_refuses_step_0_without_a_baseline_script(factory):
    factory.rules().rawdata().prepdata()
    refuse(factory, "02_train_baseline.py does not exist; finish build-baseline first "
                    "(`mlloop status` shows where it stands).")


def test_refuses_best_when_nothing_is_evaluated(factory):
    factory.build_baseline_done().version(1, "trained")
    factory.write("Models/Artifacts/v001/action-extract.md", ACTION_EXTRACT.format(vid="v001"))
    refuse(factory, "the parent would be the best evaluated version, but no version has an evaluated accuracy yet; "
                    "evaluate one (`python 03_eval.py --version v001`) or pass --from previous.")


def test_a_bad_from_is_a_usage_error(factory):
    factory.build_baseline_done().version(1, "action")
    refuse(factory, "--from must be vNNN, best, previous or baseline; got 'v1'.", "--from", "v1", code=2)


def test_refuses_while_the_rules_are_broken(factory):
    factory.build_baseline_done()
    pt = copy.deepcopy(PT_RULES)
    pt["loop_config"]["max_versions"] = 0
    factory.rules(pt=pt)
    before = factory.snapshot()
    result = invoke(factory)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: the rules have 1 problem(s); fix them first (`mlloop rules` lists them)."
    assert result.stderr.splitlines()[0].startswith(
        ".claude/skills/progressive-training/user_defined_rules.json::$.loop_config.max_versions:")
    assert factory.snapshot() == before  # refused before even the lock file


def test_library_refusal_is_a_clean_error(factory):
    factory.build_baseline_done().version(1, "action")
    factory.write("02_train_v002.py", "x\n")  # becomes cur; it has no action-extract
    with pytest.raises(MlloopError, match=r"^Models/Artifacts/v002/action-extract.md does not exist"):
        new_version(factory.project)


# ---- branch_from: best, noise-aware --------------------------------------------------------------

def two_scored_versions(tmp_path, right_v001: int, right_v002: int):
    """v001 and v002 on the same 100 validation records, v002 also right on the first extra ones."""
    from factory import ProjectFactory
    from test_compare import records

    f = ProjectFactory(tmp_path / "proj", n_samples=500)
    f.build_baseline_done().version(1, "action").version(2, "action")
    ids = f.sample_ids("valid")
    f.scored("v001", records(ids, [i < right_v001 for i in range(100)]))
    f.scored("v002", records(ids, [i < right_v002 for i in range(100)]))
    return f


def test_best_within_noise_of_an_earlier_version_branches_from_the_earlier_one(tmp_path):
    f = two_scored_versions(tmp_path, 50, 53)  # v002 is #1 by 0.03, three records
    result = new_version(f.project)
    assert result.parent == "v001"
    assert result.why == (
        "branch_from: best: v002 (accuracy 0.53) is #1 but not better than the earlier v001 beyond noise "
        "(v002 − v001 = +0.03, 95% interval [+0, +0.07]); the earlier, simpler v001")
    assert read_header(f.root / "02_train_v003.py")["parent_choice"] == result.why
    script = f.root / "02_train_v003.py"
    script.write_text(script.read_text() + "\nLABEL_SMOOTHING = 0.1  # the selected action, applied\n")
    assert run_check(f.project, "v003").ok


def test_best_beyond_noise_is_the_parent_and_the_interval_is_recorded(tmp_path):
    f = two_scored_versions(tmp_path, 50, 80)
    result = new_version(f.project)
    assert result.parent == "v002"
    assert result.why == ("branch_from: best, accuracy 0.8; better beyond noise than every earlier version "
                          "(closest: v002 − v001 = +0.3, 95% interval [+0.22, +0.39])")
    assert read_header(f.root / "02_train_v003.py")["parent_choice"] == result.why
