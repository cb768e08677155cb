"""Writing and verifying ``dataset/prepdata/<dataset_id>/`` (docs/contracts.md, "prepdata").

Used by ``01_data_pipeline.py`` after ``mlloop.runtime.data`` has parsed, filtered and split the
records: split folders with assets and indexes, ``common/`` (df_meta, manifests, label_map or
feature_stats), ``stats.json``, then the pipeline's own tests, read back from disk, for
``_tests/pipeline_test_report.md``. JSON is strict (NaN becomes null); parquet via pyarrow.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from ..checks import data_intent
from ..errors import Findings
from ..formats import pipeline_report
from ..formats.prepdata_stats import counts_of, parse_stats, write_stats
from ..jsonio import JsonProblems, read_json, to_jsonable, write_json_atomic, write_text_atomic
from ..layout import PREPDATA_STATS, TESTS, is_inside, resolve_inside
from .artifacts import held_out_access, read_index as read_split_index
from .data import (AUDIO_EXTS, IMAGE_EXTS, META_COLUMNS, TYPE_CHECKS, AssetReader, PipelineError, TaskSpec, asset_map,
                   audio_duration, distribution, drop_counts, image_size, leakage_findings, make_id, split_composition,
                   suffix_of, test_leakage_findings, unknown_field_warnings)


# ---- writers ---------------------------------------------------------------------------------

def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """One strict JSON object per line (NaN -> null, allow_nan=False), written atomically."""
    lines = [json.dumps(to_jsonable(r), ensure_ascii=False, allow_nan=False) for r in records]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)


def write_parquet(path: Path, rows: list[dict], columns: Iterable[str]) -> None:
    """A parquet table with typed columns (lists stay lists, missing values are null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [], []
    for col in columns:
        values = [to_jsonable(r.get(col)) for r in rows]
        present = [v for v in values if v is not None]
        if col == "asset_paths" or (present and all(isinstance(v, list) for v in present)):
            typ = pa.list_(pa.string())
            values = [None if v is None else [str(x) for x in v] for v in values]
        elif present and all(isinstance(v, bool) for v in present):
            typ = pa.bool_()
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            typ = pa.int64()
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            typ = pa.float64()
        else:
            typ = pa.string()
            values = [None if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
        arrays.append(pa.array(values, type=typ))
        names.append(col)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_arrays(arrays, names=names), tmp)
    os.replace(tmp, path)


def index_record(r: dict, spec: TaskSpec, paths: dict[str, str], group_key: str | None) -> dict:
    """The split index line of one record: id, the task's fields, source, group, meta."""
    out: dict = {"id": r["sample_id"]}
    for f in spec.required + spec.optional:
        if f == "id":
            continue
        if f in paths:
            out[f] = paths[f]
        elif f in r and (f in spec.required or r[f] is not None):
            out[f] = r[f]
    out["source"] = r.get("source")
    if group_key and r.get(group_key) is not None:
        out[group_key] = r[group_key]
    if isinstance(r.get("meta"), dict):
        out["meta"] = r["meta"]
    return out


def write_split(split_dir: Path, split: str, records: list[dict], spec: TaskSpec, reader: AssetReader,
                group_key: str | None, shared: Iterable[str] = (), stored: dict[str, Path] | None = None,
                convert: Callable[[str, bytes, dict], bytes] | None = None) -> list[dict]:
    """Copy each record's assets to ``<split>/<field folder>/<id><ext>`` and write the index;
    returns the index records (paths relative to the split folder). An asset in ``shared`` (a
    raw reference several records point at: windows of one series, crops of one image) is
    written once per split as ``<field folder>/shared/<name>``, and hard-linked to the copy in
    ``stored`` (reference -> file already written by another split) where the file system allows.
    ``convert(field, data, record) -> bytes`` (the parse region's ``convert_asset``) rewrites an
    asset on its way into prepdata, e.g. a colour-coded mask into class ids; the raw file is untouched."""
    shared = set(shared)
    stored = {} if stored is None else stored
    index, used = [], set()
    for r in records:
        paths = {}
        for name, ref in asset_map(r, spec).items():
            folder, sid, ext = name[:-5] if name.endswith('_path') else name, r["sample_id"], suffix_of(ref)
            if ref in shared:
                rel = f"{folder}/shared/{shared_name(ref)}"
            else:
                # An id that already ends with the extension (``x.jpg``) keeps it once, not
                # ``x.jpg.jpg``, unless another id (``x``) takes that name.
                rel = f"{folder}/{sid}" if sid.lower().endswith(ext) else f"{folder}/{sid}{ext}"
                if rel.lower() in used:
                    rel = f"{folder}/{sid}{ext}"
                used.add(rel.lower())
            target = split_dir / rel
            if ref not in shared:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_converted(convert, name, reader.read(ref), r))
            elif not target.is_file():  # the first record of this split that points at it
                target.parent.mkdir(parents=True, exist_ok=True)
                _store(reader, ref, target, stored.get(ref), lambda data: _converted(convert, name, data, r))
                stored.setdefault(ref, target)
            paths[name] = rel
        r["index_paths"] = paths
        index.append(index_record(r, spec, paths, group_key))
    if spec.index_format == "parquet":
        write_parquet(split_dir / f"{split}.parquet", index, sorted({k for rec in index for k in rec}))
    else:
        write_jsonl(split_dir / f"{split}.jsonl", index)
    return index


def shared_name(ref: str) -> str:
    """The file name of a shared asset: readable, from its raw reference, and unique per reference."""
    import hashlib


    stem = ref[: -len(suffix_of(ref))] if ref.lower().endswith(suffix_of(ref)) else ref
    return f"{make_id(stem)[:80]}-{hashlib.sha1(ref.encode()).hexdigest()[:8]}{suffix_of(ref)}"


def _converted(convert, name: str, data: bytes, record: dict) -> bytes:
    if convert is None:
        return data
    try:
        out = convert(name, data, record)
    except PipelineError:
        raise
    except Exception as exc:  # the parse region's code: one line naming the record and the asset
        raise PipelineError(f"convert_asset({name!r}) failed for sample_id {record.get('sample_id')!r} "
                            f"({record.get('assets', {}).get(name)}): {type(exc).__name__}: {exc}") from None
    if not isinstance(out, bytes):
        raise PipelineError(f"convert_asset({name!r}) returned {type(out).__name__} for sample_id "
                            f"{record.get('sample_id')!r}; it must return the file's bytes.")
    return out


def _store(reader: AssetReader, ref: str, target: Path, twin: Path | None, convert=lambda data: data) -> None:
    if twin is not None:
        try:
            os.link(twin, target)  # the other split's copy: one file on disk, a regular file in each split
            return
        except OSError:
            pass  # no hard links here (some network or FAT file systems): a copy per split
    target.write_bytes(convert(reader.read(ref)))


def shared_refs(records: Iterable[dict], spec: TaskSpec) -> set[str]:
    """Raw references that more than one record points at."""
    uses = Counter(ref for r in records for ref in set(asset_map(r, spec).values()))
    return {ref for ref, n in uses.items() if n > 1}


def manifest_rows(records: list[dict], group_key: str | None) -> list[dict]:
    rows = []
    for r in records:
        row = {"sample_id": r["sample_id"], "source": r.get("source"), "category": r.get("category"),
               "group_id": r.get(group_key or "group_id"), "hash": r.get("hash"), "label_summary": r.get("label_summary")}
        row.update(r.get("index_paths") or {})
        rows.append(row)
    return rows


def label_map(records: Iterable[dict], field_name: str = "label") -> dict[str, int]:
    """{label: index}, labels sorted by their string form (stable across runs)."""
    labels = sorted({str(r[field_name]) for r in records if r.get(field_name) is not None})
    return {label: i for i, label in enumerate(labels)}


def checked_label_map(class_ids) -> dict[str, int]:
    """The parse region's LABEL_MAP as written: {non-empty name: id}, ids exactly 0..C-1 (mask values)."""
    if not isinstance(class_ids, dict) or not class_ids:
        raise PipelineError("LABEL_MAP must be a non-empty dict {class name: id} (the parse region of 01_data_pipeline.py).")
    bad = [k for k, v in class_ids.items() if not (isinstance(k, str) and k.strip()) or type(v) is not int]
    if bad:
        raise PipelineError(f"LABEL_MAP: entry {bad[0]!r} must map a non-empty class name to an int id.")
    if sorted(class_ids.values()) != list(range(len(class_ids))):
        raise PipelineError(f"LABEL_MAP: the ids must be 0..{len(class_ids) - 1}, each once; got {sorted(class_ids.values())}.")
    return dict(sorted(class_ids.items(), key=lambda kv: kv[1]))


def feature_stats(records: list[dict], field_name: str = "features") -> dict:
    """Per feature of the train split: numeric (mean, std, missing) or categorical (values)."""
    columns: dict[str, list] = defaultdict(list)
    for r in records:
        for k, v in (r.get(field_name) or {}).items():
            columns[k].append(v)
    out = {}
    for k in sorted(columns):
        vals = columns[k] + [None] * (len(records) - len(columns[k]))
        present = [v for v in vals if v is not None]
        if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            mean = sum(present) / len(present)
            std = math.sqrt(sum((v - mean) ** 2 for v in present) / len(present))
            out[k] = {"type": "numeric", "mean": mean, "std": std, "min": min(present), "max": max(present),
                      "missing": len(vals) - len(present)}
        else:
            out[k] = {"type": "categorical", "values": sorted({str(v) for v in present}),
                      "missing": len(vals) - len(present)}
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def move_aside(path: Path, trash_root: Path) -> Path | None:
    """Move an existing folder to ``trash_root/<name>-<stamp>`` (never deleted); None if absent."""
    if not path.exists():
        return None
    aside = trash_root / f"{path.name}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, aside)
    return aside


def write_prepdata(out_dir: Path, *, records: list[dict], train: list[dict], valid: list[dict], spec: TaskSpec,
                   reader: AssetReader, stats: dict, group_key: str | None, test: list[dict] | None = None,
                   convert: Callable[[str, bytes, dict], bytes] | None = None,
                   class_ids: dict | None = None) -> dict:
    """Write the whole prepdata layout into ``out_dir`` (a fresh folder): split folders with
    assets and indexes, common/ (df_meta, manifests, label_map or feature_stats), stats.json.
    ``test`` (dataset_config.test_ratio) adds a held-out ``test/`` beside them. ``convert``: see
    ``write_split``. ``class_ids`` (the parse region's ``LABEL_MAP``, {class name: id}) is written as
    common/label_map.json for tasks whose classes the index does not list (segmentation masks).
    Returns the stats written."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PipelineError(f"{out_dir}: the staging folder is not empty.")
    counts, shared, stored = {}, shared_refs(train + valid + (test or []), spec), {}
    splits = (("train", train), ("valid", valid)) + ((("test", test),) if test else ())
    for split, rows in splits:
        counts[split] = len(write_split(out_dir / split, split, rows, spec, reader, group_key, shared, stored, convert))
    common = out_dir / "common"
    meta_cols = list(META_COLUMNS) + ([group_key] if group_key and group_key not in META_COLUMNS else [])
    write_parquet(common / "df_meta.parquet", sorted(records, key=lambda r: r["sample_id"]), meta_cols)
    for split, rows in splits:
        m = manifest_rows(rows, group_key)
        write_parquet(common / f"{split}_manifest.parquet", m, list(dict.fromkeys(k for row in m for k in row)) or ["sample_id"])
    if class_ids is not None:
        if spec.is_classification:
            raise PipelineError("LABEL_MAP is for tasks whose classes the index does not list; a classification "
                                "task's label_map.json is built from the labels: remove LABEL_MAP.")
        write_json_atomic(common / "label_map.json", checked_label_map(class_ids))
    elif spec.is_classification:
        write_json_atomic(common / "label_map.json", label_map(train + valid + (test or []), "label"))
    if "features" in spec.required:
        write_json_atomic(common / "feature_stats.json", feature_stats(train))
    sources = defaultdict(lambda: {"parsed": 0, "dropped": 0, "unused": 0, "train": 0, "valid": 0,
                                   **({"test": 0} if test else {})})
    for r in records:
        s = sources[str(r.get("source"))]
        s["parsed"] += 1
        s["dropped" if r.get("drop_reason") else r.get("split") or "dropped"] += 1
    full = {**stats, "parsed": len(records), "dropped": drop_counts(records),
            "unused_by_max_train_samples": sum(1 for r in records if r.get("split") == "unused"),
            "counts": counts, "sources": dict(sorted(sources.items())), "shared_assets": len(shared),
            **split_composition(train, valid, stats.get("split_strategy"), stats.get("stratify_key"), group_key),
            "created_at": now_iso()}
    write_stats(out_dir, full)
    return full


def install(staging: Path, final: Path, trash_root: Path) -> Path | None:
    """Put ``staging`` in place of ``final``; an existing ``final`` is moved aside first."""
    aside = move_aside(final, trash_root)
    os.replace(staging, final)
    return aside


# ---- the pipeline's tests (read back from disk) -------------------------------------------------

@dataclass
class PipelineReport:
    lines: list[tuple[str, str, str]] = field(default_factory=list)   # (name, PASS|FAIL|INFO, detail)
    sections: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.lines.append((name, "INFO" if ok is None else "PASS" if ok else "FAIL", detail))

    @property
    def passed(self) -> bool:
        return all(status != "FAIL" for _, status, _ in self.lines)

    def markdown(self, title: str = pipeline_report.TITLE) -> str:
        out = pipeline_report.render_head(self.passed, title)
        out += [f"- {name}: {status}" + (f" ({detail})" if detail else "") for name, status, detail in self.lines]
        for heading, body in self.sections.items():
            out += ["", f"## {heading}", body.rstrip()]
        return "\n".join(out) + "\n"


def write_report(out_dir: Path, report: PipelineReport, stats: dict, leaks=None) -> Path:
    """``_tests/pipeline_test_report.md``: the checks, then filtering and per-source counts."""
    report.sections["Filtering"] = "\n".join(
        [f"- parsed: {stats['parsed']}"] + [f"- dropped {k}: {v}" for k, v in stats["dropped"].items()]
        + [f"- unused_by_max_train_samples: {stats['unused_by_max_train_samples']}",
           f"- train: {stats['counts']['train']}", f"- valid: {stats['counts']['valid']}"]
        + ([f"- test (held out): {stats['counts']['test']}"] if "test" in stats["counts"] else []))
    report.sections["Sources"] = "| source | parsed | dropped | unused | train | valid |\n|---|---|---|---|---|---|\n" + "\n".join(
        f"| {s} | {c['parsed']} | {c['dropped']} | {c['unused']} | {c['train']} | {c['valid']} |"
        for s, c in stats["sources"].items())
    warnings = [w.message for w in leaks.warnings] if leaks is not None else []
    warnings += unknown_field_warnings(stats.get("moved_to_meta") or {}, str(stats.get("task_type")))
    if warnings:
        report.sections["Warnings"] = "\n".join(f"- {w}" for w in warnings)
    path = out_dir / TESTS / "pipeline_test_report.md"
    write_text_atomic(path, report.markdown())
    return path


def read_index(split_dir: Path, split: str) -> list[dict] | None:
    """The split's index records, or None when it has no index (the test reports that)."""
    if not any((split_dir / f"{split}.{ext}").is_file() for ext in ("jsonl", "parquet")):
        return None
    return read_split_index(split_dir.parent, split)


def verify_prepdata(out_dir: Path, spec: TaskSpec, *, split_strategy: str, group_key: str | None,
                  stratify_key: str | None, seed: int, load_samples: int = 10, max_drop_share: float | None = None,
                  min_samples_per_class: int | None = None, profiling_text: str | None = None) -> PipelineReport:
    """The checks of task_format.yaml and the seed, run on the written folder, and the effects
    against the rules' intent (``mlloop.checks.data_intent``: groups, drop shares, classes)."""
    rep = PipelineReport()
    try:
        found = Findings()
        stats = parse_stats(read_json(out_dir / PREPDATA_STATS, PREPDATA_STATS), PREPDATA_STATS, found) or {}
        rep.add("stats_json_valid", found.ok, found.problems[0].line() if found.problems
                else "stats.json is one strict JSON object with every required field")
    except JsonProblems as exc:
        stats = {}
        rep.add("stats_json_valid", False, exc.problems[0].message)
    for d in ("train", "valid", "common"):
        rep.add(f"{d}_dir_exists", (out_dir / d).is_dir())
    indexes = {}
    for split in ("train", "valid"):
        try:
            indexes[split] = read_index(out_dir / split, split)
        except Exception as exc:  # a broken index is a FAIL line, not a crash
            indexes[split] = None
            rep.add(f"{split}_index_readable", False, f"{type(exc).__name__}: {exc}")
        rep.add(f"{split}_index_exists", indexes[split] is not None, f"{split}.jsonl or {split}.parquet")
    idx = {s: v or [] for s, v in indexes.items()}
    missing = [(s, rec.get("id"), f) for s in idx for rec in idx[s] for f in spec.required if rec.get(f) is None]
    rep.add("required_index_fields", not missing,
            f"{', '.join(spec.required)}" + (f"; {len(missing)} missing, e.g. {missing[0]}" if missing else ""))
    wrong = [(s, rec.get("id"), f) for s in idx for rec in idx[s] for f, t in spec.types
             if rec.get(f) is not None and t in TYPE_CHECKS and not TYPE_CHECKS[t](rec[f])]
    if spec.types:
        rep.add("index_field_types", not wrong, ", ".join(f"{f}: {t}" for f, t in spec.types)
                + (f"; {len(wrong)} differ, e.g. {wrong[0]}" if wrong else ""))
    ids = [rec.get("id") for s in idx for rec in idx[s]]
    rep.add("ids_unique", len(ids) == len(set(ids)), f"{len(ids)} ids")
    bad_paths = []
    for s in idx:
        for rec in idx[s]:
            for f in spec.path_fields:
                rel = rec.get(f)
                if rel is None and f not in spec.required:
                    continue
                p = resolve_inside(out_dir / s, rel) if isinstance(rel, str) else None
                if p is None or not p.is_file() or not is_inside(out_dir / s, p):
                    bad_paths.append(f"{s}/{rel}")
    if spec.path_fields:
        rep.add("asset_paths_exist_inside_split", not bad_paths,
                f"{len(bad_paths)} bad, e.g. {bad_paths[0]}" if bad_paths else "relative to the split folder")
    counts = stats.get("counts") if isinstance(stats, dict) else None
    if isinstance(counts, dict):  # the held-out test split is verified by verify_test_split
        counts = {k: v for k, v in counts.items() if k != "test"}
    want = {s: len(idx[s]) for s in idx}
    rep.add("stats_counts_match_indexes", counts == want, f"stats {counts}, indexes {want}")
    rep.add("splits_not_empty", all(want.values()), f"train {want['train']}, valid {want['valid']}")
    meta_rows = _read_parquet_rows(out_dir / "common" / "df_meta.parquet")
    need = {"sample_id", "source", "category", "asset_paths"}
    rep.add("df_meta_columns", meta_rows is not None and need <= set(meta_rows[1]),
            "sample_id, source, category, asset_paths")
    for split in ("train", "valid"):
        rep.add(f"{split}_manifest_exists", (out_dir / "common" / f"{split}_manifest.parquet").is_file())
    hashes = {}
    if meta_rows is not None and "hash" in meta_rows[1]:
        hashes = {row["sample_id"]: row.get("hash") for row in meta_rows[0]}
    rows = {s: [{"sample_id": rec.get("id"), "hash": hashes.get(rec.get("id")),
                 **({group_key: rec.get(group_key)} if group_key else {})} for rec in idx[s]] for s in idx}
    leaks = leakage_findings(rows["train"], rows["valid"], group_key, split_strategy == "group")
    by_code = {p.code: p.message for p in leaks.problems + leaks.warnings}
    rep.add("no_id_in_both_splits", "prepdata.leak_id" not in by_code, by_code.get("prepdata.leak_id", ""))
    rep.add("no_content_hash_in_both_splits", "prepdata.leak_hash" not in by_code, by_code.get("prepdata.leak_hash", ""))
    if split_strategy == "group" and group_key:
        line = data_intent.singleton_groups(idx, group_key)
        rep.add("groups_hold_several_records", line is None, line or f"{len(idx['train']) + len(idx['valid'])} records")
    if split_strategy == "time":
        late = data_intent.time_order(idx["train"], idx["valid"])
        rep.add("valid_after_train_in_time", not late, "; ".join(late) or "per series_id, every train target ends "
                "before the first valid window starts")
    if max_drop_share is not None and isinstance(stats, dict):
        lines = data_intent.drop_shares(stats, max_drop_share, profiling_text)
        rep.add("drop_shares_within_max", not lines, "; ".join(lines) or f"each reason ≤ {max_drop_share:g} of the parsed records")
    if spec.label_field == "label" and min_samples_per_class:
        short = data_intent.class_counts(idx, "label", min_samples_per_class)
        rep.add("samples_per_class", not short, "; ".join(short.values()) or f"≥ {min_samples_per_class} per class in each split")
    if split_strategy == "group":
        rep.add("no_group_in_both_splits", "prepdata.leak_group" not in by_code, by_code.get("prepdata.leak_group", group_key or ""))
    elif "prepdata.leak_group" in by_code:
        rep.add("groups_shared_by_splits", None, by_code["prepdata.leak_group"] + f"; expected with split_strategy {split_strategy}")
    if spec.is_classification:
        lm_path = out_dir / "common" / "label_map.json"
        try:
            lm = read_json(lm_path, "common/label_map.json")
            unknown = {str(rec.get("label")) for s in idx for rec in idx[s]} - set(lm)
            rep.add("label_map_covers_labels", not unknown, f"{len(lm)} labels" + (f"; missing {sorted(unknown)[:3]}" if unknown else ""))
        except JsonProblems as exc:
            rep.add("label_map_covers_labels", False, exc.problems[0].message)
        unseen = {str(r.get("label")) for r in idx["valid"]} - {str(r.get("label")) for r in idx["train"]}
        if unseen:
            rep.add("valid_labels_seen_in_train", None, f"valid has labels train never shows: {sorted(unseen)[:5]}")
    if split_strategy == "stratified" and stratify_key:
        meta_by_id = {row["sample_id"]: row for row in (meta_rows[0] if meta_rows else [])}
        dist = {s: distribution([meta_by_id.get(rec.get("id"), {}) for rec in idx[s]], stratify_key) for s in idx}
        rep.add("stratified_distribution", None, "recorded below")
        rep.sections["Stratified distribution"] = "```json\n" + json.dumps(dist, indent=2, ensure_ascii=False) + "\n```"
    if spec.label_field == "mask_path":
        _mask_checks(rep, out_dir, idx)
    rep.add("load_test", *_load_test(out_dir, idx, spec, seed, load_samples))
    return rep


def _mask_checks(rep: PipelineReport, out_dir: Path, idx: dict) -> None:
    """Segmentation: common/label_map.json names the classes, and every written mask is a
    single-channel image of those ids, the size of its image (all masks are read)."""
    import numpy as np
    from PIL import Image

    try:
        ids = set(checked_label_map(read_json(out_dir / "common" / "label_map.json", "common/label_map.json")).values())
        rep.add("label_map_names_mask_ids", True, f"{len(ids)} classes")
    except (JsonProblems, PipelineError) as exc:
        rep.add("label_map_names_mask_ids", False, exc.problems[0].message if isinstance(exc, JsonProblems) else str(exc))
        return
    bad_values, bad_sizes = [], []
    for split in idx:
        for rec in idx[split]:
            try:
                with Image.open(out_dir / split / rec["mask_path"]) as mask:
                    values, size = np.asarray(mask), mask.size
                with Image.open(out_dir / split / rec["image_path"]) as image:
                    image_size_ = image.size
            except Exception as exc:  # a FAIL line naming the sample, not a crash
                bad_values.append(f"{split}/{rec.get('mask_path')}: {type(exc).__name__}")
                continue
            extra = set(np.unique(values).tolist()) - ids if values.ndim == 2 else {f"{values.ndim}-D"}
            if extra:
                bad_values.append(f"{split}/{rec['mask_path']}: {sorted(map(str, extra))[:3]}")
            if size != image_size_:
                bad_sizes.append(f"{split}/{rec['mask_path']} {size[0]}x{size[1]}, image {image_size_[0]}x{image_size_[1]}")
    rep.add("masks_hold_label_map_ids", not bad_values,
            f"{len(bad_values)} masks hold values outside the label map or are not single-channel, e.g. {bad_values[0]}"
            if bad_values else "single-channel, values within the label map's ids")
    rep.add("mask_sizes_match_images", not bad_sizes,
            f"{len(bad_sizes)} differ, e.g. {bad_sizes[0]}" if bad_sizes else "every mask is its image's size")


def _read_parquet_rows(path: Path):
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.to_pylist(), table.column_names
    except Exception:
        return None


def _load_test(out_dir: Path, idx: dict, spec: TaskSpec, seed: int, n: int) -> tuple[bool, str]:
    """Open a seeded draw of records from the written splits: assets decode, targets are set."""
    pool = sorted(((s, rec) for s in idx for rec in idx[s]), key=lambda x: (x[0], str(x[1].get("id"))))
    draw = random.Random(seed).sample(pool, min(n, len(pool)))
    ok = 0
    for split, rec in draw:
        try:
            for f in spec.path_fields:
                if rec.get(f) is None:
                    continue
                data = (out_dir / split / rec[f]).read_bytes()
                if suffix_of(rec[f]) in IMAGE_EXTS:
                    image_size(data)
                elif suffix_of(rec[f]) in AUDIO_EXTS:
                    audio_duration(data, suffix_of(rec[f]))
            if all(rec.get(f) is not None for f in spec.required):
                ok += 1
        except Exception:
            pass
    return ok == len(draw) and len(draw) > 0, f"{ok}/{len(draw)} samples, seed {seed}"


def verify_test_split(out_dir: Path, report: PipelineReport, spec: TaskSpec, *, test_ratio: float | None,
                      split_strategy: str, group_key: str | None) -> None:
    """The held-out test split's lines in the pipeline report: present exactly when the rules ask
    for it, counted in stats.json, and sharing no id, content or (group split) group with train
    or valid."""
    has_dir = (out_dir / "test").exists()
    if not test_ratio:
        rep_ok = not has_dir
        report.add("no_test_split_without_test_ratio", rep_ok,
                   "" if rep_ok else "test/ exists but dataset_config.test_ratio is not set")
        return
    report.add("test_dir_exists", has_dir, f"test_ratio {test_ratio}")

    try:
        with held_out_access():  # the pipeline wrote it and may read it back; versions may not
            index = read_index(out_dir / "test", "test")
    except Exception as exc:
        index = None
        report.add("test_index_readable", False, f"{type(exc).__name__}: {exc}")
    report.add("test_index_exists", bool(index), "test.jsonl or test.parquet, not empty")
    try:
        counts = counts_of(read_json(out_dir / PREPDATA_STATS, PREPDATA_STATS))
    except JsonProblems:
        counts = {}
    n = len(index or [])
    report.add("stats_counts_match_test_index", counts.get("test") == n, f"stats {counts.get('test')}, index {n}")
    meta = _read_parquet_rows(out_dir / "common" / "df_meta.parquet")
    hashes = {row["sample_id"]: row.get("hash") for row in meta[0]} if meta and "hash" in meta[1] else {}

    def rows(split: str, records) -> list[dict]:
        return [{"sample_id": rec.get("id"), "hash": hashes.get(rec.get("id")),
                 **({group_key: rec.get(group_key)} if group_key else {})} for rec in records or []]

    others = {}
    for split in ("train", "valid"):
        try:
            others[split] = read_index(out_dir / split, split)
        except Exception:
            others[split] = None  # verify_prepdata already has its FAIL line
    leaks = test_leakage_findings(rows("train", others["train"]), rows("valid", others["valid"]), rows("test", index),
                                  group_key, split_strategy == "group")
    report.add("test_shares_nothing_with_train_or_valid", not leaks.problems,
               "; ".join(p.message for p in leaks.problems) or "ids, content hashes"
               + (f", {group_key}" if split_strategy == "group" and group_key else ""))
