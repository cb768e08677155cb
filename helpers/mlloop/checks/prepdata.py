"""``dataset/prepdata/<dataset_id>/`` (build-baseline Step 1) against task_format.yaml."""

from __future__ import annotations

import json
import os
import random
import re
import stat
from pathlib import Path

from ..formats import pipeline_report
from ..formats.prepdata_stats import SPLIT_STRATEGIES, parse_stats
from ..jsonio import JsonProblems, parse_json_text
from ..layout import PREPDATA_STATS, TESTS
from ..taskformat import TYPE_CHECKS
from . import data_intent
from .context import UNSET, Context
from .parquet_footer import ParquetError, read_parquet_info

SPLITS = ("train", "valid")
DEFAULT_CANDIDATES = {s: [f"{s}/{s}.jsonl", f"{s}/{s}.parquet"] for s in SPLITS}
MAX_LISTED = 10  # per kind of problem and file; the rest are counted


def base_dir(ctx: Context) -> Path | None:
    return ctx.project.prepdata(ctx.dataset_id) if ctx.dataset_id else None


def _meta(ctx: Context) -> dict:
    return ctx.task_format.meta if ctx.task_format else {}


def index_candidates(ctx: Context, split: str) -> list[str]:
    policy = _meta(ctx).get("index_policy") or {}
    found = policy.get(f"{split}_index_candidates")
    return [str(c) for c in found] if isinstance(found, list) and found else \
        DEFAULT_CANDIDATES.get(split, [f"{split}/{split}.jsonl", f"{split}/{split}.parquet"])


# ---- reading the indexes (cached on the context: evaluation needs the valid ids too) ----------

def read_index(ctx: Context, split: str) -> tuple[Path | None, list | None, list[tuple[str, str, str | None]]]:
    """``(index path, records, problems)``; records is None when there is no usable index."""
    cache = ctx._prep_index
    if split in cache:
        return cache[split]
    base = base_dir(ctx)
    problems: list[tuple[str, str, str | None]] = []
    result = (None, None, problems)
    if base is None or not ctx.dir_ok(base) or not ctx.dir_ok(base / split):
        cache[split] = result
        return result
    present = [base / c for c in index_candidates(ctx, split) if (base / c).exists() or (base / c).is_symlink()]
    if not present:
        problems.append(("prepdata.index_missing", ctx.rel(base / split),
                         f"no {split} index: expected one of {', '.join(index_candidates(ctx, split))}"))
    elif len(present) > 1:
        problems.append(("prepdata.index_ambiguous", ctx.rel(base / split),
                         f"both {' and '.join(p.name for p in present)} exist; keep exactly one {split} index"))
    else:
        path = present[0]
        if ctx.safe(path):
            records = _read_parquet(ctx, path, problems) if path.suffix == ".parquet" else _read_jsonl(ctx, path, problems)
            result = (path, records, problems)
    cache[split] = result
    return result


def read_index_quiet(ctx: Context, split: str) -> list | None:
    return read_index(ctx, split)[1]


# ---- the validation split (evaluation checks its ids and infer_samples draw against it) ------

def valid_ids(ctx: Context) -> list | None:
    """The ids of the prepdata valid index (None when it cannot be read; prepdata reports why)."""
    if ctx._valid_ids is UNSET:
        records = read_index_quiet(ctx, "valid")
        ctx._valid_ids = None
        if records is not None:
            ids = [r.get("id") for r in records if isinstance(r, dict)]
            if all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
                try:
                    ctx._valid_ids = sorted(ids)
                except TypeError:  # a mix of str and int ids: compare as text
                    ctx._valid_ids = sorted(ids, key=str)
    return ctx._valid_ids


def seeded_draw(ctx: Context, seed: int, k: int) -> list | None:
    """``random.Random(seed).sample(sorted(valid_ids), k)``: the infer_samples ids, in order."""
    ids = valid_ids(ctx)
    if ids is None:
        return None
    k = min(k, len(ids))
    key = (seed, k)
    if key not in ctx._draw:
        ctx._draw[key] = random.Random(seed).sample(ids, k)
    return ctx._draw[key]


def _read_jsonl(ctx: Context, path: Path, problems: list) -> list | None:
    rel = ctx.rel(path)
    text = ctx.read_text(path, "prepdata")
    if text is None:
        return None
    records, bad = [], 0
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = parse_json_text(line, rel)
        except JsonProblems as exc:
            bad += 1
            if bad <= MAX_LISTED:
                for p in exc.problems:
                    problems.append(("prepdata.index_record", rel, f"line {n}: {p.message}"))
            records.append(None)
            continue
        if not isinstance(value, dict):
            bad += 1
            if bad <= MAX_LISTED:
                kind = "a list" if isinstance(value, list) else type(value).__name__
                problems.append(("prepdata.index_record", rel, f"line {n}: expected one JSON object per line, found {kind}"))
            records.append(None)
            continue
        value["__line__"] = n
        records.append(value)
    if bad > MAX_LISTED:
        problems.append(("prepdata.index_record", rel, f"{bad - MAX_LISTED} more lines are not valid JSON objects"))
    return records


def _read_parquet(ctx: Context, path: Path, problems: list) -> list | None:
    try:  # pyarrow (and numpy with it) only when a parquet index exists
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises many types for a broken file
        problems.append(("prepdata.index_record", ctx.rel(path), f"cannot read the parquet index ({type(exc).__name__}: {exc})"))
        return None
    for n, row in enumerate(rows, start=1):
        row["__line__"] = n
    return rows


# ---- the check ---------------------------------------------------------------------------------

def check_prepdata(ctx: Context, required: bool) -> None:
    base = base_dir(ctx)
    if base is None:
        if required:
            ctx.problem("prepdata.dataset_id", ctx.rel(ctx.project.prepdata_root),
                        "no dataset_id is set; put dataset_config.dataset_id in the rules")
        return
    if not ctx.dir_ok(base):
        return
    if not base.is_dir():
        if required:
            ctx.problem("prepdata.missing", base,
                        f"dataset/prepdata/{ctx.dataset_id}/ does not exist; run 01_data_pipeline.py (build-baseline Step 1)")
        return
    meta = _meta(ctx)
    for d in meta.get("required_dirs") or ["train", "valid", "common"]:
        d = str(d).rstrip("/")
        if not (base / d).is_dir():
            ctx.problem("prepdata.missing", base / d, f"the required folder {d}/ is missing")
    for f in meta.get("required_files") or [PREPDATA_STATS]:
        if not ctx.exists(base / f):
            ctx.problem("prepdata.missing", base / f, f"the required file {f} is missing")

    task_name = ctx.rules.task_type
    stats = _check_stats(ctx, base)
    if not task_name and isinstance(stats, dict) and isinstance(stats.get("task_type"), str):
        task_name = stats["task_type"]
    tf = ctx.task_format
    task = tf.task(task_name) if tf and task_name else None
    if task_name and tf and task is None:
        ctx.warn("prepdata.task_unknown", base, f"task_type {task_name!r} is not in task_format.yaml; index fields were not checked")

    split_strategy = stats.get("split_strategy") if isinstance(stats, dict) else None
    if split_strategy not in SPLIT_STRATEGIES:
        split_strategy = ctx.rules.values["dataset_config"].get("split_strategy")
    group_key = ctx.rules.values["dataset_config"].get("group_key") or "group_id"

    counts, ids_by_split, groups_by_split = {}, {}, {}
    valid_index = base / "valid"
    for split in SPLITS:
        path, records, problems = read_index(ctx, split)
        for code, rel, message in problems:
            ctx.problem(code, rel, message)
        if records is None:
            continue
        counts[split] = len(records)
        if split == "valid":
            valid_index = path
        if not records:
            ctx.problem("prepdata.empty_split", path, f"the {split} index has no records")
        good = [r for r in records if isinstance(r, dict)]
        ids_by_split[split] = _check_records(ctx, base / split, path, good, task, tf)
        if split_strategy == "group":
            groups_by_split[split] = _groups(ctx, path, good, group_key)
        if task and (task.get("split_layout") or {}).get("mode") == "assets_plus_index":
            for folder in (task["split_layout"].get("assets_required") or []):
                if not (base / split / str(folder).rstrip("/")).is_dir():
                    ctx.problem("prepdata.assets_dir", base / split / str(folder).rstrip("/"),
                                f"{task_name} keeps its assets in {split}/{folder}; the folder is missing")

    if len(ids_by_split) == 2:
        both = set(ids_by_split["train"]) & set(ids_by_split["valid"])
        if both:
            ctx.problem("prepdata.leak_id", valid_index,
                        f"{len(both)} id(s) are in both train and valid (e.g. {sorted(map(str, both))[0]!r}); a sample belongs to one split")
    if len(groups_by_split) == 2:
        both = set(groups_by_split["train"]) & set(groups_by_split["valid"])
        if both:
            ctx.problem("prepdata.leak_group", valid_index,
                        f"split_strategy is group but {len(both)} {group_key} value(s) are in both train and valid "
                        f"(e.g. {sorted(map(str, both))[0]!r})")
    if isinstance(stats, dict) and isinstance(stats.get("counts"), dict):
        for split in SPLITS:
            want = stats["counts"].get(split)
            if split in counts and isinstance(want, int) and want != counts[split]:
                ctx.problem("prepdata.counts", base / PREPDATA_STATS,
                            f"counts.{split} is {want} but the {split} index has {counts[split]} records", f"$.counts.{split}")
    _check_intent(ctx, base, stats, task, split_strategy, group_key, counts)
    _check_common(ctx, base)
    _check_pipeline_report(ctx, base)


def _check_intent(ctx: Context, base: Path, stats, task: dict | None, split_strategy, group_key: str, counts: dict) -> None:
    """The split, the de-duplication and the filters did what the rules asked (checks.data_intent)."""
    dc = ctx.rules.values["dataset_config"]
    rows = {s: [r for r in (read_index_quiet(ctx, s) or []) if isinstance(r, dict)] for s in SPLITS if s in counts}
    if split_strategy == "group" and len(rows) == 2:
        line = data_intent.singleton_groups(rows, group_key)
        if line:
            ctx.problem("prepdata.group_singletons", base, line)
    if split_strategy == "time" and len(rows) == 2:
        for line in data_intent.time_order(rows["train"], rows["valid"]):
            ctx.problem("prepdata.leak_time", read_index(ctx, "valid")[0] or base / "valid", line)
    if isinstance(stats, dict) and data_intent.drop_shares(stats, dc.get("max_drop_share"), None):
        text = ctx.document(ctx.project.profiling_md, "profiling")
        for line in data_intent.drop_shares(stats, dc.get("max_drop_share"), text):
            ctx.problem("prepdata.drop_share", base / PREPDATA_STATS, line, "$.dropped")
    required = ((task or {}).get("index_schema") or {}).get("required") or []
    if "label" in required and len(rows) == 2 and all(rows.values()):
        for split, line in data_intent.class_counts(rows, "label", dc.get("min_samples_per_class")).items():
            ctx.problem("prepdata.class_count", read_index(ctx, split)[0] or base / split, line)


def _check_stats(ctx: Context, base: Path):
    path = base / PREPDATA_STATS
    if not ctx.exists(path):
        return None
    ok, doc = ctx.read_json(path)
    if not ok:
        return None
    canonical = ctx.task_format.canonical if ctx.task_format else (lambda n: n)
    return parse_stats(doc, ctx.rel(path), ctx.out, dataset_id=ctx.dataset_id, task_type=ctx.rules.task_type,
                       canonical=canonical)


def _path_fields(tf, task_name: str | None, record: dict) -> tuple[list[str], list[str]]:
    """``(top-level path fields present in the record, nested specs like inputs[].path)``."""
    declared = tf.path_fields(task_name) if tf and task_name else []
    suffix = tf.path_field_suffix if tf else "_path"
    top = [f for f in declared if "[]." not in f]
    top += [k for k in record if suffix and k.endswith(suffix) and k not in top]
    return top, [f for f in declared if "[]." in f]


def path_problem(value) -> str | None:
    """Why a path from an index cannot be used (None: a plain relative POSIX path)."""
    if not isinstance(value, str) or not value:
        return f"{json.dumps(value)} is not a path"
    if any(ord(c) < 32 for c in value):
        return f"{value!r} contains control characters"
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        return f"{value!r} is absolute; paths are relative to the split folder"
    if "://" in value or value.startswith("file:"):
        return f"{value!r} is a URL; paths are files inside the split folder"
    if "\\" in value:
        return f"{value!r} uses backslashes; write forward slashes"
    if ".." in value.split("/"):
        return f"{value!r} leaves the split folder (..); paths stay inside it"
    return None


def _check_records(ctx: Context, split_dir: Path, index: Path, records: list[dict], task: dict | None, tf) -> list:
    rel = ctx.rel(index)
    schema = (task or {}).get("index_schema") or {}
    required = [str(f) for f in schema.get("required") or ["id"]]
    if "id" not in required:
        required.insert(0, "id")
    types = schema.get("types") or {}
    task_name = next((n for n, t in (tf.tasks.items() if tf else []) if t is task), None)
    missing: dict[str, list[int]] = {}
    wrong_type: dict[str, list[int]] = {}
    ids, seen, dup, bad_id = [], set(), [], []
    listed = {"path": 0, "asset": 0}
    extra = {"path": 0, "asset": 0}
    dir_cache: dict[str, bool] = {}
    for r in records:
        line = r.get("__line__")
        for f in required:
            if r.get(f) is None:
                missing.setdefault(f, []).append(line)
        for f, t in types.items():
            if r.get(f) is not None and t in TYPE_CHECKS and not TYPE_CHECKS[t](r[f]):
                wrong_type.setdefault(f, []).append(line)
        rid = r.get("id")
        if rid is not None:
            if isinstance(rid, bool) or not isinstance(rid, (str, int)):
                bad_id.append(line)
            else:
                key = (type(rid).__name__, rid)
                if key in seen:
                    dup.append((line, rid))
                seen.add(key)
                ids.append(rid)
        top, nested = _path_fields(tf, task_name, r)
        values = [(f, r.get(f)) for f in top if r.get(f) is not None]
        for spec in nested:
            outer, inner = spec.split("[].", 1)
            items = r.get(outer)
            if isinstance(items, list):
                values += [(f"{outer}[{i}].{inner}", it.get(inner)) for i, it in enumerate(items)
                           if isinstance(it, dict) and it.get(inner) is not None]
        for field, value in values:
            kind, message = _check_asset(ctx, split_dir, value, dir_cache)
            if kind is None:
                continue
            if listed[kind] < MAX_LISTED:
                listed[kind] += 1
                code = "prepdata.path_unsafe" if kind == "path" else "prepdata.asset_missing"
                ctx.problem(code, rel, f"line {line}: {field} {message}")
            else:
                extra[kind] += 1
    for f, lines in missing.items():
        ctx.problem("prepdata.field_missing", rel,
                    f"required field {f!r} is missing or null in {len(lines)} record(s) (lines {_lines(lines)})")
    for f, lines in wrong_type.items():
        ctx.problem("prepdata.field_type", rel, f"field {f!r} must be {types[f]} in every record; "
                    f"{len(lines)} record(s) differ (lines {_lines(lines)})")
    if bad_id:
        ctx.problem("prepdata.id", rel, f"id must be a string or an integer (lines {_lines(bad_id)})")
    if dup:
        ctx.problem("prepdata.id", rel, f"{len(dup)} duplicate id(s), e.g. {dup[0][1]!r} again on line {dup[0][0]}; ids are unique")
    for kind, n in extra.items():
        if n:
            code = "prepdata.path_unsafe" if kind == "path" else "prepdata.asset_missing"
            ctx.problem(code, rel, f"{n} more record(s) with the same kind of path problem")
    return ids


def _check_asset(ctx: Context, split_dir: Path, value, dir_cache: dict) -> tuple[str | None, str]:
    reason = path_problem(value)
    if reason:
        return "path", reason
    target = split_dir / value
    parent = str(target.parent)
    inside = dir_cache.get(parent)
    if inside is None:
        real = os.path.realpath(parent)
        base = os.path.realpath(split_dir)
        inside = dir_cache[parent] = real == base or real.startswith(base + os.sep)
    if not inside:
        return "path", f"{value!r} resolves outside the split folder (through a symbolic link)"
    try:
        st = os.lstat(target)
    except OSError:
        return "asset", f"{value!r} does not exist in {ctx.rel(split_dir)}/"
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(target)
        base = os.path.realpath(split_dir)
        if not (real == base or real.startswith(base + os.sep)):
            return "path", f"{value!r} is a symbolic link that leaves the split folder"
        if not os.path.isfile(real):
            return "asset", f"{value!r} is a broken link"
    elif not stat.S_ISREG(st.st_mode):
        return "asset", f"{value!r} is not a file"
    return None, ""


def _groups(ctx: Context, index: Path, records: list[dict], key: str) -> set:
    lines = [r.get("__line__") for r in records if r.get(key) is None]
    if lines:
        ctx.problem("prepdata.group_missing", index,
                    f"split_strategy is group but {len(lines)} record(s) have no top-level {key!r} (lines {_lines(lines)})")
    out = set()
    for r in records:
        v = r.get(key)
        if v is not None:
            out.add(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
    return out


def _check_common(ctx: Context, base: Path) -> None:
    common = base / "common"
    if not common.is_dir() or not ctx.dir_ok(common):
        return
    meta = _meta(ctx)
    files = meta.get("common_required_files") or ["df_meta.parquet", "train_manifest.parquet", "valid_manifest.parquet"]
    want_cols = meta.get("df_meta_required_columns") or ["sample_id", "source", "category", "asset_paths"]
    for name in files:
        path = common / str(name)
        if not ctx.exists(path):
            ctx.problem("prepdata.common", path, f"common/{name} is missing; 01_data_pipeline.py writes it")
            continue
        if not str(name).endswith(".parquet") or not ctx.safe(path):
            continue
        try:
            info = read_parquet_info(path)
        except (ParquetError, OSError) as exc:
            ctx.problem("prepdata.common", path, f"common/{name} is not a readable parquet file: {exc}")
            continue
        if name == "df_meta.parquet":
            absent = [c for c in want_cols if c not in info.columns]
            if absent:
                ctx.problem("prepdata.common", path, f"df_meta.parquet lacks the column(s) {', '.join(absent)}")


def _check_pipeline_report(ctx: Context, base: Path) -> None:
    path = base / TESTS / "pipeline_test_report.md"
    text = ctx.document(path, "prepdata")
    if text is not None:
        for gap in pipeline_report.gaps(text):
            ctx.problem(gap.code, path, gap.message)


def _lines(lines: list) -> str:
    shown = ", ".join(str(n) for n in lines[:5])
    return shown + (f", … {len(lines) - 5} more" if len(lines) > 5 else "")
