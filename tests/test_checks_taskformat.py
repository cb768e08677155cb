"""skills/build-baseline/task_format.yaml: one list of task types (the original 24 plus the
README's names, as entries or aliases), each entry complete, and every validation check is a
problem code `mlloop check prepdata` can report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory import BB_RULES
from mlloop.checks import run_check
from mlloop.checks.rulefiles import LAYOUT_MODES, task_format_problems
from mlloop.checks.prepdata import path_problem
from mlloop.rules import resolve
from mlloop.taskformat import known_task_types, load_task_format

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "skills/build-baseline/task_format.yaml"
ORIGINAL_24 = ("text-generation text-classification token-classification text-pair-ranking image-classification "
               "image-regression object-detection instance-segmentation image-to-text vqa asr tts audio-classification "
               "tabular-classification tabular-regression time-series-forecasting recommender-ranking recommender-sequence "
               "document-qa multimodal-chat ocr-recognition ocr-line-recognition ocr-detection ocr-kie").split()
README_NAMES = ("text-matching text-ranking image-segmentation image-generation image-captioning document-understanding "
                "speech-recognition dense-retrieval recommendation custom").split()


@pytest.fixture(scope="module")
def tf():
    return load_task_format(path=BUNDLED)


def test_bundled_file_is_well_formed(tf):
    assert task_format_problems(tf.data) == []
    assert tf.meta["base_dir_template"] == "dataset/prepdata/{dataset_id}"
    policy = tf.meta["index_policy"]
    assert policy["train_index_candidates"] == ["train/train.jsonl", "train/train.parquet"]
    assert policy["valid_index_candidates"] == ["valid/valid.jsonl", "valid/valid.parquet"]
    assert policy["paths_relative_to"] == "split_dir"


def test_one_list_covers_the_original_and_the_readme(tf):
    assert set(ORIGINAL_24) <= tf.task_types
    for name in README_NAMES:
        entry = tf.task(name)
        assert isinstance(entry, dict), name
        assert name in tf.task_types or tf.aliases[name] in tf.task_types
    assert set(tf.aliases) & tf.task_types == set()
    assert known_task_types(None) == tf.names  # what the rules accept


@pytest.mark.parametrize("name", sorted(load_task_format(path=BUNDLED).task_types))
def test_every_entry_is_complete(tf, name):
    task = tf.tasks[name]
    assert task["family"] and task["description"]
    assert task["split_layout"]["mode"] in LAYOUT_MODES
    schema = task["index_schema"]
    assert schema["required"][0] == "id"
    assert "target_field" in schema
    record = task["examples"]["record"]
    assert set(schema["required"]) <= set(record), "the example record has every required field"
    assert set(record) <= set(schema["required"]) | set(schema.get("optional", [])) | {
        k for k in record if k.endswith(tf.path_field_suffix)}
    for field in [f for f in tf.path_fields(name) if "[]." not in f and f in record]:
        assert path_problem(record[field]) is None, (field, record[field])
    if task["split_layout"]["mode"] == "assets_plus_index":
        for folder in task["split_layout"]["assets_required"]:
            assert folder.endswith("/")
            assert any(isinstance(v, str) and v.startswith(folder) for v in record.values()), folder


def test_validation_ids_are_codes_the_checker_reports(tf):
    # the check of stats.json's own fields lives with its format
    source = "".join((ROOT / f"helpers/mlloop/{name}").read_text()
                     for name in ("checks/prepdata.py", "formats/prepdata_stats.py"))
    ids = [c["id"] for c in tf.data["validation"]["checks"]]
    assert len(ids) == len(set(ids)) >= 15
    for code in ids:
        assert f'"{code}"' in source, code


@pytest.mark.parametrize("task_type, ok", [("speech-recognition", True), ("image-captioning", True), ("custom", True),
                                           ("text-matching", True), ("speach-recognition", False)])
def test_rules_accept_names_and_aliases(factory, task_type, ok):
    bb = json.loads(json.dumps(BB_RULES))
    bb["dataset_config"]["task_type"] = task_type
    factory.rules(bb=bb)
    problems = [p for p in resolve(factory.project).findings.problems if p.code == "rules.task_type"]
    assert (not problems) == ok
    if not ok:
        assert "did you mean 'speech-recognition'" in problems[0].message


def test_a_broken_project_copy_is_reported(factory):
    factory.rules()
    path = factory.root / ".claude/skills/build-baseline/task_format.yaml"
    factory.write(".claude/skills/build-baseline/task_format.yaml", "supported_tasks: [unclosed\n")
    result = run_check(factory.project, "rules")
    assert [(p.code, p.path) for p in result.problems] == [("taskformat.invalid", factory.project.rel(path))]
    assert "invalid YAML at line" in result.problems[0].message


def test_a_project_copy_with_a_bad_entry_is_reported(factory, tf):
    factory.rules()
    data = json.loads(json.dumps(tf.data))
    data["supported_tasks"]["image-classification"]["split_layout"]["mode"] = "folders"
    data["task_aliases"]["photo-tagging"] = "image-tagging"
    factory.write(".claude/skills/build-baseline/task_format.yaml", json.dumps(data))  # JSON is YAML
    result = run_check(factory.project, "rules")
    messages = [(p.code, p.message) for p in result.problems]
    assert ("taskformat.schema", "split_layout.mode must be one of index_only, index_only_or_files, "
            "assets_plus_index, found 'folders'") in messages
    assert ("taskformat.schema", "alias 'photo-tagging' points to 'image-tagging', which is not in supported_tasks") in messages


def test_installed_skill_without_task_format_is_a_problem(factory):
    factory.rules()
    assert run_check(factory.project, "rules").ok  # rules alone: the bundled copy is used
    factory.write(".claude/skills/build-baseline/SKILL.md", "---\nname: build-baseline\n---\n")
    result = run_check(factory.project, "rules")
    assert [(p.code, p.path) for p in result.problems] == [
        ("taskformat.missing", ".claude/skills/build-baseline/task_format.yaml")]
