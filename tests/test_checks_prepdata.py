"""`mlloop check prepdata` against task_format.yaml: parquet indexes, aliases, nested path
fields, field types, group splits, the common/ parquet files (read without pyarrow)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory import BB_RULES, PT_RULES
from mlloop.checks import run_check
from mlloop.checks.parquet_footer import ParquetError, read_parquet_info

PREP = "dataset/prepdata/v1"


def found(factory, target="prepdata"):
    before = factory.snapshot()
    result = run_check(factory.project, target)
    assert factory.snapshot() == before
    return [(p.code, p.path, p.message) for p in result.problems]


def with_task(factory, task_type, records: dict[str, list[dict]], split_strategy="random"):
    """A project whose prepdata is ``records`` for ``task_type`` (index-only, jsonl)."""
    bb = json.loads(json.dumps(BB_RULES))
    bb["dataset_config"].update(task_type=task_type, split_strategy=split_strategy)
    factory.rules(bb=bb, pt=PT_RULES).rawdata().prepdata()
    for split in ("train", "valid"):
        factory.write(f"{PREP}/{split}/{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records[split]))
    stats = factory.read_json(f"{PREP}/stats.json")
    stats.update(task_type=task_type, split_strategy=split_strategy,
                 counts={s: len(records[s]) for s in ("train", "valid")})
    factory.write_json(f"{PREP}/stats.json", stats)
    return factory


def test_parquet_index_is_read(factory):
    factory.rules().rawdata().prepdata()
    records = [json.loads(line) for line in (factory.root / PREP / "train/train.jsonl").read_text().splitlines()]
    (factory.root / PREP / "train/train.jsonl").unlink()
    pq.write_table(pa.Table.from_pylist(records), factory.root / PREP / "train/train.parquet")
    assert found(factory) == []
    records[2]["image_path"] = "../../../escape.png"
    pq.write_table(pa.Table.from_pylist(records), factory.root / PREP / "train/train.parquet")
    assert found(factory) == [("prepdata.path_unsafe", f"{PREP}/train/train.parquet",
                               "line 3: image_path '../../../escape.png' leaves the split folder (..); paths stay inside it")]


def test_two_indexes_for_one_split_are_ambiguous(factory):
    factory.rules().rawdata().prepdata()
    pq.write_table(pa.table({"id": ["a"]}), factory.root / PREP / "valid/valid.parquet")
    assert found(factory) == [("prepdata.index_ambiguous", f"{PREP}/valid",
                               "both valid.jsonl and valid.parquet exist; keep exactly one valid index")]


def test_alias_task_type_uses_its_entry(factory):
    rec = lambda i: {"id": f"u{i}", "audio_path": f"audio/u{i}.wav", "target": "hello"}  # noqa: E731
    with_task(factory, "speech-recognition", {"train": [rec(1), rec(2)], "valid": [rec(3)]})
    for i in (1, 2):
        factory.write(f"{PREP}/train/audio/u{i}.wav", b"RIFF")
    factory.write(f"{PREP}/valid/audio/u3.wav", b"RIFF")
    assert run_check(factory.project, "rules").ok
    assert found(factory) == []
    factory.write(f"{PREP}/valid/valid.jsonl", json.dumps({"id": "u3", "target": "hello"}) + "\n")
    assert ("prepdata.field_missing", f"{PREP}/valid/valid.jsonl",
            "required field 'audio_path' is missing or null in 1 record(s) (lines 1)") in found(factory)


def test_nested_path_fields_are_checked(factory):
    good = {"id": "c1", "inputs": [{"type": "text", "text": "hi"}, {"type": "image", "path": "image/c1.png"}], "target": "x"}
    bad = {"id": "c2", "inputs": [{"type": "image", "path": "../c1.png"}], "target": "y"}
    with_task(factory, "multimodal-chat", {"train": [good], "valid": [bad]})
    factory.write(f"{PREP}/train/image/c1.png", b"png")
    assert found(factory) == [("prepdata.path_unsafe", f"{PREP}/valid/valid.jsonl",
                               "line 1: inputs[0].path '../c1.png' leaves the split folder (..); paths stay inside it")]


def test_field_types_and_ids(factory):
    rows = {"train": [{"id": 1, "features": {"a": 1}, "label": "x"}, {"id": 1, "features": [1, 2], "label": "y"}],
            "valid": [{"id": True, "features": {"a": 2}, "label": "x"}]}
    with_task(factory, "tabular-classification", rows)
    problems = found(factory)
    assert ("prepdata.field_type", f"{PREP}/train/train.jsonl",
            "field 'features' must be object in every record; 1 record(s) differ (lines 2)") in problems
    assert ("prepdata.id", f"{PREP}/train/train.jsonl",
            "1 duplicate id(s), e.g. 1 again on line 2; ids are unique") in problems
    assert ("prepdata.id", f"{PREP}/valid/valid.jsonl", "id must be a string or an integer (lines 1)") in problems


def test_group_split_needs_the_group_field(factory):
    rows = {"train": [{"id": "a", "features": {}, "label": "x", "group_id": "g1"}, {"id": "b", "features": {}, "label": "y"},
                      {"id": "d", "features": {}, "label": "y", "group_id": "g1"}],
            "valid": [{"id": "c", "features": {}, "label": "x", "group_id": "g2"},
                      {"id": "e", "features": {}, "label": "y", "group_id": "g2"}]}
    with_task(factory, "tabular-classification", rows, split_strategy="group")
    assert found(factory) == [("prepdata.group_missing", f"{PREP}/train/train.jsonl",
                               "split_strategy is group but 1 record(s) have no top-level 'group_id' (lines 2)")]


def test_asset_folder_and_files_must_exist(factory):
    factory.rules().rawdata().prepdata()
    (factory.root / PREP / "valid/image").rename(factory.root / PREP / "valid/images")
    problems = found(factory)
    assert ("prepdata.assets_dir", f"{PREP}/valid/image",
            "image-classification keeps its assets in valid/image/; the folder is missing") in problems
    assert ("prepdata.asset_missing", f"{PREP}/valid/valid.jsonl",
            "line 1: image_path 'image/s0000.png' does not exist in dataset/prepdata/v1/valid/") in problems


def test_df_meta_columns_are_read_from_the_footer(factory):
    factory.rules().rawdata().prepdata()
    pq.write_table(pa.table({"sample_id": ["a"], "source": ["s"], "asset_paths": [["p"]]}),
                   factory.root / PREP / "common/df_meta.parquet")
    assert found(factory) == [("prepdata.common", f"{PREP}/common/df_meta.parquet",
                               "df_meta.parquet lacks the column(s) category")]


def test_failed_pipeline_report_is_a_problem(factory):
    factory.rules().rawdata().prepdata()
    factory.write(f"{PREP}/_tests/pipeline_test_report.md", "# Pipeline test report\n- overall_result: FAIL\n")
    assert [p[0] for p in found(factory)] == ["prepdata.pipeline_failed"]


def test_stats_must_describe_the_folder(factory):
    factory.rules().rawdata().prepdata()
    stats = factory.read_json(f"{PREP}/stats.json")
    stats.update(dataset_id="v2", valid_ratio=1.5, split_strategy="uniform")
    del stats["created_at"]
    factory.write_json(f"{PREP}/stats.json", stats)
    messages = {p[2] for p in found(factory)}
    assert messages == {"required field 'created_at' is missing", "dataset_id is 'v2' but this folder is 'v1'",
                        "valid_ratio must be a number between 0 and 1, found 1.5",
                        "split_strategy 'uniform' is not one of random, stratified, group, time"}


@pytest.mark.parametrize("columns", [["sample_id"], ["sample_id", "source", "category", "asset_paths", "nested"]])
def test_parquet_footer_matches_pyarrow(tmp_path, columns):
    data = {c: [{"x": 1, "y": [1, 2]}] if c == "nested" else [["a"]] if c == "asset_paths" else ["v"] for c in columns}
    pq.write_table(pa.table(data), tmp_path / "t.parquet")
    info = read_parquet_info(tmp_path / "t.parquet")
    assert info.columns == pq.read_schema(tmp_path / "t.parquet").names and info.num_rows == 1


def test_parquet_footer_rejects_non_parquet(tmp_path):
    (tmp_path / "fake.parquet").write_bytes(b"PAR1\x00\x00\x00\x00PAR1")
    with pytest.raises(ParquetError, match="footer length is invalid"):
        read_parquet_info(tmp_path / "fake.parquet")


# ---- effects against the rules' intent (issue 15) ----------------------------------------------------

def tabular_rows(train_labels: str, valid_labels: str) -> dict[str, list[dict]]:
    return {s: [{"id": f"{s}{i}", "features": {"x": i}, "label": labels[i]} for i in range(len(labels))]
            for s, labels in (("train", train_labels), ("valid", valid_labels))}


def test_a_split_with_too_few_samples_of_a_class_is_a_problem(factory):
    with_task(factory, "tabular-classification", tabular_rows("aabbc", "ab"))
    assert found(factory) == [("prepdata.class_count", f"{PREP}/valid/valid.jsonl",
                               "1 class(es) have fewer than min_samples_per_class (1) records in valid: 'c' (0); "
                               "merge or drop rare classes, or lower min_samples_per_class in the rules")]
    bb = factory.read_json(".claude/skills/build-baseline/user_defined_rules.json")
    bb["dataset_config"]["min_samples_per_class"] = 2
    factory.write_json(".claude/skills/build-baseline/user_defined_rules.json", bb)
    assert [p[0] + " " + p[1] for p in found(factory)] == [f"prepdata.class_count {PREP}/train/train.jsonl",
                                                           f"prepdata.class_count {PREP}/valid/valid.jsonl"]
    bb["dataset_config"]["min_samples_per_class"] = 0  # off
    factory.write_json(".claude/skills/build-baseline/user_defined_rules.json", bb)
    assert found(factory) == []


def test_a_drop_reason_over_its_share_must_be_named_in_profiling(factory):
    with_task(factory, "tabular-classification", tabular_rows("aabb", "ab"))
    stats = factory.read_json(f"{PREP}/stats.json")
    stats.update(parsed=10, dropped={"duplicate": 2, "too_hot": 3, "missing_asset": 1})
    factory.write_json(f"{PREP}/stats.json", stats)
    factory.write("dataset/rawdata/profiling.md", "# Profiling\n## Source: src_a\n### Edge cases\nDuplicates happen.\n"
                                                  "### Sanity checks\ntoo_hot readings are sensor faults.\n")
    assert found(factory) == [("prepdata.drop_share", f"{PREP}/stats.json",
                               "'too_hot' dropped 3 of 10 parsed records (30%), more than max_drop_share (0.2), and "
                               "profiling.md's Edge cases do not name it; fix the rule if it drops too much, else name "
                               "'too_hot' and why under Edge cases")]
    factory.write("dataset/rawdata/profiling.md", "# Profiling\n## Source: src_a\n### Edge cases\n- Too hot: sensor "
                                                  "faults above 90 °C, about a third of the rows.\n")
    assert found(factory) == []  # "Too hot" names too_hot; 2 of 10 duplicates is within the share
    bb = factory.read_json(".claude/skills/build-baseline/user_defined_rules.json")
    bb["dataset_config"]["max_drop_share"] = 0.1
    factory.write_json(".claude/skills/build-baseline/user_defined_rules.json", bb)
    assert [p[2].split(" dropped")[0] for p in found(factory)] == ["'duplicate'"]  # "Duplicates happen" is gone now


def test_the_intent_settings_have_defaults_and_a_schema():
    from mlloop.rules import DEFAULTS

    assert DEFAULTS["dataset_config"]["max_drop_share"] == 0.2 and DEFAULTS["dataset_config"]["min_samples_per_class"] == 1


def test_the_intent_settings_are_validated(factory):
    bb = json.loads(json.dumps(BB_RULES))
    bb["dataset_config"].update(max_drop_share=1.5, min_samples_per_class=-1)
    factory.rules(bb=bb, pt=PT_RULES)
    result = run_check(factory.project, "rules")
    assert {p.json_path for p in result.problems} == {"$.dataset_config.max_drop_share",
                                                      "$.dataset_config.min_samples_per_class"}
