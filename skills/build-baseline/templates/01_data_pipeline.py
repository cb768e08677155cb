"""01_data_pipeline.py: dataset/rawdata/ -> dataset/prepdata/<dataset_id>/ (build-baseline Step 1).

Usage, from the project root:
    python 01_data_pipeline.py                      # parse, filter, split, write, test
    python 01_data_pipeline.py --LOAD_TEST_SAMPLES=20   # any UPPER_CASE setting as --KEY=VALUE

Two parts:
  1. The PARSE REGION (between the mlloop:parse-region markers) is the only part written per
     project, strictly from dataset/rawdata/profiling.md ("Extraction rules" of each source) and
     user_instruction.md (filters). If the data disagrees with profiling.md, fix profiling.md
     first; never guess.
  2. The fixed tail below it (mlloop.runtime.data and .prepdata): df_meta facts (hash, image size, label
     length), filters, the seeded split, max_train_samples, leakage checks, the prepdata layout of
     task_format.yaml, stats.json and _tests/pipeline_test_report.md.

The rules win: seed, dataset_id, task_type, valid_ratio, split_strategy, stratify_key, group_key
and max_train_samples come from user_defined_rules.json (`mlloop rules` shows them), never from
constants here. The prepdata is built in a hidden folder beside its target and moved into place
at the end; an existing dataset/prepdata/<dataset_id>/ is moved to dataset/prepdata/.trash/,
never deleted. Exit code 0 when every pipeline test passes, 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime
from pathlib import Path

from mlloop.script import MlloopError, Project, data, load_task_format, prepdata, resolve_rules

PROJECT_DIR = "."          # the project root (scripts run from there)
DEDUPLICATE = True         # identical content is kept once: a copy in both splits would leak
LOAD_TEST_SAMPLES = 10     # seeded records re-opened from the written prepdata (the seed's N)
INDEX_FORMAT = None        # None = task_format.yaml's preferred index (jsonl); or "parquet"
REQUIRE_PROFILING = True   # Step 1 parses by profiling.md: no profiling.md, no pipeline
SPLIT_KEYS = ("split_strategy", "valid_ratio", "test_ratio", "stratify_key", "group_key", "max_train_samples")  # from the rules

# ==== mlloop:parse-region:start ================================================================
# Written by the agent from dataset/rawdata/profiling.md. Keep the two signatures.
#   parse_sources(rawdata) -> a list of dicts (or a DataFrame), one per sample over every source:
#     sample_id  unique; ids differing only by case are refused. data.make_id("src", "img 01.png")
#                gives "src-img_01.png" (parts joined by "-", unsafe characters -> "_").
#     source     the source folder name.
#     category   optional label-like value for stratified splits (None if not used).
#     assets     {"image_path": ref, ...}: one ref per path field of the task (task_format.yaml),
#                a path relative to dataset/rawdata, or data.zip_ref("src/crops.zip", "a/b.png")
#                for a zip member (read later without extracting).
#     <group_key> the field the rules' dataset_config.group_key names (`mlloop rules` shows it;
#                group_id by default): with split_strategy group EVERY record needs it (samples
#                that must stay in one split share its value), else the pipeline stops. The same
#                for <stratify_key> with split_strategy stratified.
#     plus the task's other index fields (label / target / features / line_id ...), and
#     optionally meta (a dict kept in the index). Any other field is moved into meta, with a
#     warning: return only what the index needs.
#   drop_reason(record, rules) -> why the record is left out (user_instruction's filters), or
#     None to keep it. The record already has width/height (images), length (text target), hash.
#   Optional, for tasks that need them (segmentation masks):
#     LABEL_MAP = {"background": 0, ...}  class name -> id, written as common/label_map.json.
#     convert_asset(field, data, record) -> bytes  rewrites an asset on its way into prepdata
#                (e.g. a colour-coded mask into class ids); the raw file is never changed.
#   After parsing, identical content (the same asset bytes AND the same inputs and targets) is
#   kept once: the record whose sample_id sorts first stays. Records cut from one asset (windows
#   of a series, crops of an image) are not duplicates; the asset is stored once per split.


def parse_sources(rawdata: Path) -> list[dict]:
    """One record per sample, over every source folder under ``rawdata``."""
    raise NotImplementedError(
        "the parse region of 01_data_pipeline.py is not written yet: write parse_sources() from "
        "dataset/rawdata/profiling.md")


def drop_reason(record: dict, rules: dict) -> str | None:
    """Why ``record`` is left out (a short reason, counted in stats.json), or None to keep it."""
    return None


# ==== mlloop:parse-region:end ==================================================================


def main(argv: list[str] | None = None) -> dict:
    cfg = data.parse_settings(globals(), argv)
    project = Project.at(cfg["PROJECT_DIR"])
    rules = resolve_rules(project)
    if not rules.findings.ok:
        raise data.PipelineError("the rules have problems (run `mlloop rules`):\n"
                                 + "\n".join(p.line() for p in rules.findings.problems))
    dc, seed, dataset_id, task_type = rules.section("dataset_config"), rules.seed, rules.dataset_id, rules.task_type
    if not dataset_id or not task_type:
        raise data.PipelineError("dataset_config.dataset_id and dataset_config.task_type must be set in "
                                 ".claude/skills/build-baseline/user_defined_rules.json.")
    if cfg["REQUIRE_PROFILING"] and not project.profiling_md.is_file():
        raise data.PipelineError("dataset/rawdata/profiling.md does not exist; profile the raw data first "
                                 "(`mlloop profile`, then complete it).")
    spec = data.task_spec(load_task_format(project), task_type)
    if cfg["INDEX_FORMAT"]:
        spec = dataclasses.replace(spec, index_format=cfg["INDEX_FORMAT"])
    strategy, group_key = dc["split_strategy"], dc["group_key"]

    # 1. Parse: the region above, then a structural check (ids unique and safe, assets named).
    try:
        records = data.as_records(parse_sources(project.rawdata))
    except NotImplementedError as exc:
        raise data.PipelineError(str(exc)) from None
    data.validate_records(records, spec)
    moved = data.move_unknown_fields(records, spec, keep=(group_key, dc["stratify_key"]))
    for line in data.unknown_field_warnings(moved, spec.name):
        print(f"warning: {line}", file=sys.stderr)
    print(f"parsed {len(records)} records from {len({r['source'] for r in records})} source(s)", file=sys.stderr)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    staging = project.prepdata_root / f".{dataset_id}.staging-{stamp}"
    trash = project.prepdata_root / ".trash"
    try:
        with data.AssetReader(project.rawdata) as reader:
            # 2. df_meta facts and filters: missing/unreadable assets, the region's rules, duplicates.
            data.enrich(records, spec, reader)
            data.apply_filter(records, lambda r: drop_reason(r, rules.to_dict()))
            if cfg["DEDUPLICATE"]:
                data.deduplicate(records)

            # 3. Split (seeded), then max_train_samples on train only: the valid pool is fixed first.
            #    With test_ratio a held-out test pool is drawn before valid; only `mlloop report` reads it.
            train, valid, test = data.split_with_test(data.kept(records), strategy, dc["valid_ratio"],
                                                      dc.get("test_ratio"), seed, dc["stratify_key"], group_key)
            train, unused = data.cap_train(train, dc["max_train_samples"], seed)
            leaks = data.leakage_findings(train, valid, group_key, groups_must_separate=strategy == "group")
            if leaks.problems:
                raise data.PipelineError("leakage between train and valid: " + "; ".join(p.message for p in leaks.problems))
            test_leaks = data.test_leakage_findings(train + unused, valid, test, group_key, strategy == "group")
            if test_leaks.problems:
                raise data.PipelineError("leakage into the test split: " + "; ".join(p.message for p in test_leaks.problems))

            # 4. Write the layout aside: split folders (assets + index), common/, stats.json.
            stats = prepdata.write_prepdata(staging, records=records, train=train, valid=valid, spec=spec,
                                            reader=reader, group_key=group_key, test=test,
                                            convert=globals().get("convert_asset"), class_ids=globals().get("LABEL_MAP"),
                                            stats={
                                                "dataset_id": dataset_id, "task_type": task_type, "seed": seed,
                                                **{k: dc[k] for k in SPLIT_KEYS}, "index_format": spec.index_format, "moved_to_meta": moved,
                                                "pipeline": Path(__file__).name})

        # 5. Test what was written (read back from disk), write the report, move it into place.
        report = prepdata.verify_prepdata(staging, spec, split_strategy=strategy, group_key=group_key,
                                          stratify_key=dc["stratify_key"], seed=seed,
                                          load_samples=cfg["LOAD_TEST_SAMPLES"],
                                          max_drop_share=dc["max_drop_share"],
                                          min_samples_per_class=dc["min_samples_per_class"],
                                          profiling_text=project.profiling_md.read_text(encoding="utf-8")
                                          if project.profiling_md.is_file() else None)
        prepdata.verify_test_split(staging, report, spec, test_ratio=dc.get("test_ratio"),
                                   split_strategy=strategy, group_key=group_key)
        prepdata.write_report(staging, report, stats, leaks)
    except BaseException:
        prepdata.move_aside(staging, trash)  # a half-written folder is kept for inspection, out of the way
        raise
    final = project.prepdata(dataset_id)
    aside = prepdata.install(staging, final, trash)

    summary = {"dataset_id": dataset_id, "task_type": task_type, "prepdata": project.rel(final),
               "counts": stats["counts"], "dropped": stats["dropped"], "unused": stats["unused_by_max_train_samples"],
               "overall_result": "PASS" if report.passed else "FAIL",
               "failed_checks": [name for name, status, _ in report.lines if status == "FAIL"],
               "previous_moved_to": project.rel(aside) if aside else None}
    print(f"{summary['prepdata']}: train {stats['counts']['train']}, valid {stats['counts']['valid']}, "
          + (f"test {stats['counts']['test']} (held out), " if "test" in stats["counts"] else "") +
          f"dropped {sum(stats['dropped'].values())}; pipeline tests {summary['overall_result']}"
          + (f" (failed: {', '.join(summary['failed_checks'])})" if summary["failed_checks"] else ""))
    if aside:
        print(f"the previous prepdata was moved to {summary['previous_moved_to']}")
    return summary


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except MlloopError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0 if result["overall_result"] == "PASS" else 1)
