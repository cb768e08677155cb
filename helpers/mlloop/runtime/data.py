"""Data helpers for ``01_data_pipeline.py``: records, df_meta facts, filters, the Step 0 load
test, seeded splits, ``max_train_samples`` and leakage checks. ``mlloop.runtime.prepdata``
writes and verifies the folder (docs/contracts.md, "prepdata").

The pipeline's own code (the parse region of the template) returns one *record* per sample, a
plain dict (a pandas DataFrame's rows are accepted too; NaN becomes None):

    sample_id   str, unique over all sources, file-name safe (``make_id`` builds one)
    source      the folder under dataset/rawdata/
    category    the stratification value (the label, for classification), or None
    assets      {"image_path": "<ref>", ...}: index path field -> raw asset reference, where a
                reference is a path relative to dataset/rawdata/, or "<zip path>::<member>" for a
                zip member read without extracting, or ``json_asset(obj)`` for a JSON file the
                parse region builds (one image's boxes converted from a COCO export). ``asset_paths`` (a list) is accepted instead
                when the task has one path field.
    <group_key> the field the rules' ``group_key`` names (``group_id`` by default); every record
                needs it when ``split_strategy`` is group, as it needs ``<stratify_key>`` when
                stratified (``require_split_key``: no record silently becomes its own group)
    ...         the task's other index fields (target, label, features, line_id, ...)
    meta        optional dict copied into the index record; any other field is moved there
                with a warning (``move_unknown_fields``), never dropped silently

A duplicate is a record whose input *and* target are those of another (asset bytes plus the
task's content fields, ``TaskSpec.content_fields``): windows of one series or crops of one image
share an asset file without being duplicates, and such a shared asset is stored once per split.

Everything random takes the rules' seed. Nothing here is imported by the CLI; it may use
pyarrow (parquet) and Pillow (image sizes), each imported where needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import Findings, MlloopError
from ..formats import profiling
from ..jsonio import to_jsonable
from ..layout import resolve_inside
from ..taskformat import TYPE_CHECKS
from .config import parse_overrides, script_settings

ZIP_SEP = "::"
GENERATED_PREFIX = "generated:"  # json_asset(): built by the parse region, held in memory until written
_GENERATED: dict[str, bytes] = {}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,159}$")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
AUDIO_EXTS = {".wav", ".flac", ".ogg"}  # what libsndfile (soundfile) decodes on every platform
TARGET_FIELDS = {"label", "target", "tags", "answer", "positive", "negative", "target_item", "horizon"}
# Index fields that name a sample rather than describe it: left out of the content hash, so
# one image under two file names (or two line ids) is still one sample.
IDENTITY_FIELDS = frozenset({"id", "source", "meta", "group_id", "line_id", "parent_id", "series_id", "speaker_id"})
DERIVED_FIELDS = frozenset({"width", "height", "duration_sec"})  # facts of the asset, already hashed with it
META_COLUMNS = ("sample_id", "source", "category", "asset_paths", "group_id", "length", "width", "height",
                "hash", "label_summary", "split", "drop_reason")


class PipelineError(MlloopError):
    """The pipeline cannot go on; the message says what, where and what to do."""


# ---- settings -------------------------------------------------------------------------------

def parse_settings(namespace: dict, argv: list[str] | None) -> dict:
    """The script's UPPER_CASE settings with ``--KEY=VALUE`` overrides (the same parser as the
    training scripts: ``mlloop.runtime.config``). Unknown keys and wrong types are errors."""
    settings = script_settings(namespace)
    settings.update(parse_overrides(argv, settings))
    return settings


# ---- task format ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """What task_format.yaml says one task's prepdata looks like."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    mode: str = "index_only"
    index_format: str = "jsonl"
    declared_paths: tuple[str, ...] | None = None   # index_schema.path_fields, when given
    target: str | None = None                       # index_schema.target_field, when given
    types: tuple[tuple[str, str], ...] = ()          # index_schema.types as pairs

    @property
    def path_fields(self) -> tuple[str, ...]:
        if self.declared_paths is not None:
            return tuple(f for f in self.declared_paths if "[]." not in f)
        return tuple(f for f in self.required + self.optional if f.endswith("_path"))

    @property
    def required_path_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.path_fields if f in self.required)

    @property
    def label_field(self) -> str | None:
        if self.target:
            return self.target
        return next((f for f in ("label", "target") if f in self.required), None)

    @property
    def input_fields(self) -> tuple[str, ...]:
        """Fields that make up a sample's input (content hash of index-only tasks)."""
        skip = {"id", self.label_field} | TARGET_FIELDS | set(self.path_fields)
        return tuple(f for f in self.required if f not in skip)

    @property
    def content_fields(self) -> tuple[str, ...]:
        """Index fields that make a sample what it is (inputs and targets; no ids, no paths):
        with the asset bytes they are the content hash that de-duplication compares."""
        return tuple(f for f in self.required + self.optional
                     if f not in IDENTITY_FIELDS | DERIVED_FIELDS and f not in set(self.path_fields))

    @property
    def is_classification(self) -> bool:
        return self.name.endswith("classification") and self.label_field == "label"


def task_spec(task_format, task_type: str) -> TaskSpec:
    """The TaskSpec of ``task_type`` (an alias resolved) from a loaded task_format
    (``mlloop.taskformat.load_task_format``)."""
    entry = task_format.task(task_type)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(task_format.task_types))
        raise PipelineError(f"task_type {task_type!r} is not in task_format.yaml ({known}); fix dataset_config.task_type.")
    name = task_format.canonical(task_type) if hasattr(task_format, "canonical") else task_type
    schema = entry.get("index_schema") or {}
    required = tuple(str(f) for f in schema.get("required") or ["id"])
    if "id" not in required:
        required = ("id",) + required
    optional = tuple(str(f) for f in schema.get("optional") or [] if f not in required)
    declared = schema.get("path_fields")
    types = schema.get("types") if isinstance(schema.get("types"), dict) else {}
    policy = (task_format.meta.get("index_policy") or {}) if isinstance(task_format.meta, dict) else {}
    preferred = policy.get("preferred", "jsonl")
    return TaskSpec(name, required, optional, str((entry.get("split_layout") or {}).get("mode", "index_only")),
                    preferred if preferred in ("jsonl", "parquet") else "jsonl",
                    tuple(str(f) for f in declared) if isinstance(declared, list) else None,
                    str(schema["target_field"]) if isinstance(schema.get("target_field"), str) else None,
                    tuple((str(k), str(v)) for k, v in types.items()))


# ---- records ---------------------------------------------------------------------------------

def make_id(*parts: Any) -> str:
    """A file-name-safe sample id from parts (``make_id("scans", "img 01.png")`` -> ``scans-img_01.png``)."""
    text = "-".join(str(p) for p in parts if p is not None and str(p) != "")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "sample"
    if len(text) > 160:
        text = text[:143] + "-" + hashlib.sha1(text.encode()).hexdigest()[:16]
    return text


def zip_ref(zip_relpath: str, member: str) -> str:
    """The asset reference of a zip member (read later without extracting the archive)."""
    return f"{zip_relpath}{ZIP_SEP}{member}"


def json_asset(obj: Any) -> str:
    """The asset reference of a JSON file the parse region builds (e.g. ``label/<id>.json`` from a
    COCO export, rendered by ``mlloop.formats.boxes.render``): written into the split folder like
    a raw file, hashed with the sample; ``asset_paths`` in df_meta shows ``generated:NNNNNNN.json``."""
    payload = (json.dumps(to_jsonable(obj), sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()
    ref = f"{GENERATED_PREFIX}{len(_GENERATED) + 1:07d}.json"  # one per call: equal labels are not one shared file
    _GENERATED[ref] = payload
    return ref


def as_records(rows: Any) -> list[dict]:
    """Plain dicts from what a parse function returns (a list of dicts or a DataFrame); NaN,
    pandas NA and numpy scalars become JSON values (None for missing)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        rows = rows.to_dict("records")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PipelineError(f"record {i}: the parse function must return dicts, got {type(row).__name__}.")
        out.append({str(k): _clean(v) for k, v in row.items()})
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple, dict)) or hasattr(value, "item") or hasattr(value, "tolist"):
        return to_jsonable(value)
    if type(value).__name__ in {"NAType", "NaTType"}:
        return None
    return value


def validate_records(records: list[dict], spec: TaskSpec) -> None:
    """Structural problems in the parsed records (one line each) raise a PipelineError."""
    problems, seen, folded = [], {}, {}
    for i, r in enumerate(records):
        sid, where = r.get("sample_id"), f"record {i} (source {r.get('source')!r})"
        if not isinstance(sid, str) or not ID_RE.match(sid):
            problems.append(f"{where}: sample_id {sid!r} must be a file-name-safe string (letters, digits, . _ -); build it with make_id().")
        elif sid in seen:
            problems.append(f"{where}: sample_id {sid!r} repeats record {seen[sid]}; ids must be unique over all sources.")
        elif sid.lower() in folded:
            # asset files are named after ids: on macOS and Windows these two would be one file
            problems.append(f"{where}: sample_id {sid!r} differs from record {folded[sid.lower()]} only by case; make it unique.")
        else:
            seen[sid], folded[sid.lower()] = i, i
        if not isinstance(r.get("source"), str) or not r["source"]:
            problems.append(f"{where}: source must be the folder name under dataset/rawdata/.")
        need = [f for f in spec.required_path_fields if f not in asset_map(r, spec)]
        if need:
            problems.append(f"{where}: no asset for {', '.join(need)}; set record['assets'] = {{'{need[0]}': '<raw ref>'}}.")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise PipelineError(f"{len(problems)} problem(s) in the parsed records:\n" + "\n".join(shown))


RECORD_FIELDS = frozenset(META_COLUMNS) | {"assets", "meta", "index_paths"}  # the pipeline's own


def move_unknown_fields(records: list[dict], spec: TaskSpec, keep: Iterable[str | None] = ()) -> dict[str, int]:
    """Copy every top-level field that is neither the pipeline's own, nor in the task's index
    schema, nor one of ``keep`` (the rules' group_key and stratify_key) into the record's
    ``meta``: the index keeps it instead of losing it. Returns {field: records}, for the warning
    the pipeline prints. A field that ``meta`` already holds with another value is an error."""
    known = set(RECORD_FIELDS) | set(spec.required + spec.optional) | {k for k in keep if k}
    known.discard("id")  # the index's id is sample_id; an "id" of the parse region is kept in meta
    moved: Counter = Counter()
    for r in records:
        extra = {k: v for k, v in r.items() if k not in known}
        if not extra:
            continue
        meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
        clash = next((k for k in sorted(extra) if k in meta and meta[k] != extra[k]), None)
        if clash:
            raise PipelineError(f"record {r.get('sample_id')!r}: field {clash!r} is not in {spec.name}'s index "
                                f"schema and meta.{clash} already holds another value; rename one of them.")
        r["meta"] = {**meta, **extra}
        moved.update(extra.keys())
    return dict(sorted(moved.items()))


def unknown_field_warnings(moved: dict[str, int], task: str) -> list[str]:
    """One line per field ``move_unknown_fields`` moved (printed, and in the pipeline report)."""
    return [f"field {k!r} is not in {task}'s index schema; kept as meta.{k} in {n} record(s)" for k, n in moved.items()]


def asset_map(record: dict, spec: TaskSpec) -> dict[str, str]:
    """The record's {index path field: raw reference}."""
    assets = record.get("assets")
    if isinstance(assets, dict) and assets:
        return {str(k): str(v) for k, v in assets.items() if v is not None}
    paths = record.get("asset_paths")
    if isinstance(paths, str):
        paths = [paths]
    if isinstance(paths, list) and paths:
        return {f: str(p) for f, p in zip(spec.path_fields, paths)}
    return {}


class AssetReader:
    """Reads raw assets by reference: plain files, or zip members without extracting."""

    def __init__(self, rawdata: Path):
        self.rawdata = Path(rawdata)
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._digests: dict[str, str] = {}

    def __enter__(self) -> "AssetReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for z in self._zips.values():
            z.close()
        self._zips.clear()

    def _locate(self, ref: str) -> tuple[Path, zipfile.ZipFile | None, str]:
        path_part, _, member = ref.partition(ZIP_SEP)
        path = resolve_inside(self.rawdata, path_part)
        if path is None or not path.is_file():
            raise FileNotFoundError(ref)
        if not member:
            return path, None, ""
        z = self._zips.get(path_part)
        if z is None:
            try:
                z = self._zips[path_part] = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                raise FileNotFoundError(ref) from None
        return path, z, member

    def read(self, ref: str) -> bytes:
        """The asset's bytes; FileNotFoundError when it does not exist or escapes rawdata."""
        if ref.startswith(GENERATED_PREFIX):
            return self._generated(ref)
        path, z, member = self._locate(ref)
        if z is None:
            return path.read_bytes()
        try:
            return z.read(member)
        except KeyError:
            raise FileNotFoundError(ref) from None

    @staticmethod
    def _generated(ref: str) -> bytes:
        if ref not in _GENERATED:
            raise FileNotFoundError(f"{ref} (json_asset() was not called in this process)")
        return _GENERATED[ref]

    def digest(self, ref: str) -> str:
        """sha256 of the asset's bytes, read once per reference (many windows share one file)."""
        if ref not in self._digests:
            self._digests[ref] = hashlib.sha256(self.read(ref)).hexdigest()
        return self._digests[ref]

    def check(self, ref: str) -> None:
        """FileNotFoundError unless the asset exists (no bytes read)."""
        if ref.startswith(GENERATED_PREFIX):
            self._generated(ref)
            return
        _, z, member = self._locate(ref)
        if z is not None:
            try:
                z.getinfo(member)
            except KeyError:
                raise FileNotFoundError(ref) from None


def suffix_of(ref: str) -> str:
    name = ref.rpartition(ZIP_SEP)[2] if ZIP_SEP in ref else ref
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".bin"


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image, fully decoded (a truncated file raises)."""
    from PIL import Image  # lazy: only pipelines with images pay for it

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


def audio_duration(data: bytes, suffix: str = ".wav") -> float:
    """Seconds of audio, fully decoded with soundfile (libsndfile); a truncated or corrupt file
    raises. libsndfile reads a WAV whose data was cut short as a shorter clip without a word, so
    a WAV is first held to the size its RIFF header declares."""
    import soundfile  # lazy: only pipelines with audio pay for it

    if suffix == ".wav" and data[:4] == b"RIFF" and len(data) >= 8:
        declared = int.from_bytes(data[4:8], "little") + 8
        # 0 and 0xFFFFFFFF mark a streamed WAV of unknown length; one byte of slack for the pad byte
        if data[4:8] not in (b"\0\0\0\0", b"\xff\xff\xff\xff") and declared > len(data) + 1:
            raise ValueError(f"truncated WAV: the header declares {declared} bytes, the file has {len(data)}")
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    if len(samples) == 0:
        raise ValueError("no audio frames")
    return len(samples) / rate


def content_hash(record: dict, spec: TaskSpec, reader: AssetReader | None = None) -> str:
    """sha256 of the sample's content: its asset bytes (by path field) and its content fields
    (inputs and targets) as canonical JSON. Records sharing an asset differ in the fields that
    cut them from it (start, bbox, page, target), so they are not duplicates."""
    h = hashlib.sha256()
    assets = asset_map(record, spec)
    if assets and reader is not None:
        for name in sorted(assets):
            h.update(name.encode() + b"\0" + reader.digest(assets[name]).encode() + b"\0")
    payload = {f: record.get(f) for f in spec.content_fields}
    h.update(json.dumps(to_jsonable(payload), sort_keys=True, ensure_ascii=False, allow_nan=False).encode())
    return h.hexdigest()


def enrich(records: list[dict], spec: TaskSpec, reader: AssetReader) -> list[dict]:
    """Fill asset_paths, hash, width/height (first image), duration_sec (first audio clip), length
    and label_summary; a record whose asset is missing or does not decode gets ``drop_reason``
    instead."""
    for r in records:
        assets = asset_map(r, spec)
        r["asset_paths"] = list(assets.values())
        try:
            for ref in assets.values():
                reader.check(ref)
            if r.get("hash") is None:
                r["hash"] = content_hash(r, spec, reader)
            image_refs = [ref for ref in assets.values() if suffix_of(ref) in IMAGE_EXTS]
            if image_refs and (r.get("width") is None or r.get("height") is None):
                r["width"], r["height"] = image_size(reader.read(image_refs[0]))
            audio_refs = [ref for ref in assets.values() if suffix_of(ref) in AUDIO_EXTS]
            if audio_refs and r.get("duration_sec") is None:
                r["duration_sec"] = round(audio_duration(reader.read(audio_refs[0]), suffix_of(audio_refs[0])), 4)
        except FileNotFoundError as exc:
            r["drop_reason"] = f"missing_asset: {exc.args[0]}"
            continue
        except Exception as exc:  # Pillow and libsndfile raise many types for a broken file
            why = " ".join(str(exc).split())[:160]  # e.g. the truncated WAV's declared and actual size
            r["drop_reason"] = f"unreadable_asset: {type(exc).__name__}" + (f": {why}" if why else "")
            continue
        label = r.get(spec.label_field) if spec.label_field else r.get("category")
        if spec.label_field == "target" and isinstance(label, str) and r.get("length") is None:
            r["length"] = len(label)
        if r.get("label_summary") is None and label is not None:
            r["label_summary"] = str(label)[:80]
        missing = [f for f in spec.required if f not in ("id",) and f not in spec.path_fields and r.get(f) is None]
        wrong = [f"{f} (expected {t})" for f, t in spec.types
                 if r.get(f) is not None and t in TYPE_CHECKS and not TYPE_CHECKS[t](r[f])]
        if missing:
            r["drop_reason"] = f"missing_field: {', '.join(missing)}"
        elif wrong:
            r["drop_reason"] = f"wrong_type: {', '.join(wrong)}"
    return records


def apply_filter(records: list[dict], drop_reason: Callable[[dict], str | None] | None) -> None:
    """Run the pipeline's own filter on records not yet dropped; its reason is recorded."""
    for r in records:
        if r.get("drop_reason") or drop_reason is None:
            continue
        reason = drop_reason(r)
        if reason:
            r["drop_reason"] = str(reason)


def deduplicate(records: list[dict]) -> None:
    """Keep one record per content hash (the smallest sample_id): a duplicate in both splits
    would leak; a duplicate in one split would count twice."""
    first: dict[str, str] = {}
    for r in sorted(kept(records), key=lambda r: r["sample_id"]):
        h = r.get("hash")
        if h in first:
            r["drop_reason"] = f"duplicate: same content as {first[h]}"
        elif h is not None:
            first[h] = r["sample_id"]


def kept(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if not r.get("drop_reason")]


def drop_counts(records: Iterable[dict]) -> dict[str, int]:
    """Dropped records per reason (the part before ':')."""
    return dict(sorted(Counter(r["drop_reason"].split(":")[0] for r in records if r.get("drop_reason")).items()))


def load_test(records: list[dict], spec: TaskSpec, rawdata: Path, seed: int, n: int = 10,
              allowed_defects: Iterable[str] = ()) -> dict[str, dict]:
    """Build-baseline Step 0's load test, per source: a seeded draw of ``n`` parsed records whose
    assets must open and decode and whose required fields must be set. A defect whose kind is in
    ``allowed_defects`` (e.g. ``missing_asset``, documented under Edge cases and dropped by the
    pipeline) does not fail the test; it is named in the line."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_source[str(r.get("source"))].append(r)
    allowed, out = set(allowed_defects), {}
    with AssetReader(rawdata) as reader:
        for source in sorted(by_source):
            pool = sorted(by_source[source], key=lambda r: str(r.get("sample_id")))
            draw = [dict(r) for r in random.Random(seed).sample(pool, min(n, len(pool)))]
            for r in draw:
                r.pop("drop_reason", None)
            enrich(draw, spec, reader)
            defects = Counter(r["drop_reason"].split(":")[0] for r in draw if r.get("drop_reason"))
            loaded = len(draw) - sum(defects.values())
            passed = bool(draw) and all(kind in allowed for kind in defects)
            detail = f"{loaded}/{len(draw)} samples, seed {seed}"
            if defects:
                detail += "; " + ", ".join(f"{k} x{v}" + (" (documented edge case)" if k in allowed else "")
                                           for k, v in sorted(defects.items()))
            out[source] = {"passed": passed, "drawn": len(draw), "loaded": loaded, "defects": dict(defects),
                           "line": profiling.load_test_line(passed, detail)}
    return out


def distribution(records: Iterable[dict], key: str) -> dict[str, int]:
    return dict(sorted(Counter("null" if r.get(key) is None else str(r.get(key)) for r in records).items()))


# ---- splits ------------------------------------------------------------------------------------

def _n_valid(n: int, valid_ratio: float) -> int:
    if n < 2:
        raise PipelineError(f"{n} sample(s) left after filtering; a split needs at least 2.")
    return min(n - 1, max(1, round(n * valid_ratio)))


def random_split(ids: list[str], valid_ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, valid), both sorted: a seeded shuffle of the sorted ids, the first part valid."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    k = _n_valid(len(order), valid_ratio)
    return sorted(order[k:]), sorted(order[:k])


def stratified_split(ids: list[str], strata: list[Any], valid_ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """Each stratum contributes its share of the valid pool (largest remainder), keeping at least
    one sample of every stratum in train; a missing value is its own stratum."""
    groups: dict[str, list[str]] = defaultdict(list)
    for sid, s in zip(ids, strata):
        groups["\0missing" if s is None else str(s)].append(sid)
    target = _n_valid(len(ids), valid_ratio)
    quota = {k: len(v) * target / len(ids) for k, v in groups.items()}
    take = {k: min(int(q), max(len(groups[k]) - 1, 0)) for k, q in quota.items()}
    for k in sorted(groups, key=lambda k: (-(quota[k] - int(quota[k])), k)):
        if sum(take.values()) >= target:
            break
        if take[k] < len(groups[k]) - 1:
            take[k] += 1
    rng = random.Random(seed)
    train, valid = [], []
    for k in sorted(groups):
        members = sorted(groups[k])
        rng.shuffle(members)
        valid += members[:take[k]]
        train += members[take[k]:]
    if not valid:
        raise PipelineError("stratified split: every stratum has a single sample, so none can go to valid; use split_strategy random.")
    return sorted(train), sorted(valid)


def group_split(ids: list[str], groups: list[Any], valid_ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """Whole groups go to valid (seeded order) until it holds its share; a sample without a
    group is a group of its own. No group is ever in both splits."""
    members: dict[str, list[str]] = defaultdict(list)
    for sid, g in zip(ids, groups):
        members[f"\0{sid}" if g is None else str(g)].append(sid)
    if len(members) < 2:
        raise PipelineError("group split: all samples share one group, so train and valid cannot be separated; check group_key.")
    target = _n_valid(len(ids), valid_ratio)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    valid_groups, n = [], 0
    for g in order:
        if n >= target:
            break
        if n + len(members[g]) > max(target * 1.5, 1):
            continue  # a big group would overshoot; try smaller ones
        valid_groups.append(g)
        n += len(members[g])
    if not valid_groups:  # every group is bigger than the valid share: take the smallest
        valid_groups = [min(order, key=lambda g: len(members[g]))]
    if len(valid_groups) == len(members):
        valid_groups.pop()
    chosen = set(valid_groups)
    valid = [s for g in chosen for s in members[g]]
    train = [s for g in members if g not in chosen for s in members[g]]
    return sorted(train), sorted(valid)


TIME_KEYS = ("series_id", "start")  # what a time split orders by: the series, and the row where its target begins
STRADDLES_CUT = "straddles_time_cut"


def time_split(records: list[dict], valid_ratio: float) -> tuple[list[str], list[str], dict[str, int]]:
    """(train ids, valid ids, cut per series). Per ``series_id``, windows ordered by ``start``
    (the row offset of the first target value): the last ``valid_ratio`` share goes to valid, and
    the cut is the start of the earliest of them. A train window's target ends at or before the
    cut (``start + horizon``; a record without ``horizon`` spans one row). A window whose target
    straddles the cut is in neither split: it gets the drop reason ``straddles_time_cut``."""
    by_series: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_series[str(r["series_id"])].append(r)
    train, valid, cuts = [], [], {}
    for series in sorted(by_series):
        rows = sorted(by_series[series], key=lambda r: (r["start"], r["sample_id"]))
        if len(rows) < 2:
            raise PipelineError(f"time split: series {series!r} has {len(rows)} window after filtering; each series "
                                "needs at least 2 (one for train, one for valid).")
        cut = rows[len(rows) - _n_valid(len(rows), valid_ratio)]["start"]
        cuts[series] = cut
        for r in rows:
            if r["start"] >= cut:
                valid.append(r["sample_id"])
            elif r["start"] + int(r.get("horizon") or 1) <= cut:
                train.append(r["sample_id"])
            else:
                r["drop_reason"] = f"{STRADDLES_CUT}: series {series} cut at row {cut}"
    if not train:
        raise PipelineError("time split: every window before the cut straddles it, so train is empty; lower "
                            "valid_ratio or cut windows further apart.")
    return sorted(train), sorted(valid), cuts


def split_records(records: list[dict], strategy: str, valid_ratio: float, seed: int,
                  stratify_key: str = "category", group_key: str = "group_id") -> tuple[list[dict], list[dict]]:
    """(train, valid) records by the rules' split_strategy; each record's ``split`` is set. A time
    split leaves the windows that straddle its cut out of both (their ``drop_reason`` says why)."""
    require_split_key(records, strategy, stratify_key, group_key)
    ids = [r["sample_id"] for r in records]
    if strategy == "time":
        train_ids, valid_ids, _ = time_split(records, valid_ratio)
    elif strategy == "random":
        train_ids, valid_ids = random_split(ids, valid_ratio, seed)
    elif strategy == "stratified":
        train_ids, valid_ids = stratified_split(ids, [r.get(stratify_key) for r in records], valid_ratio, seed)
    elif strategy == "group":
        train_ids, valid_ids = group_split(ids, [r[group_key] for r in records], valid_ratio, seed)
    else:
        raise PipelineError(f"split_strategy {strategy!r} is not one of random, stratified, group, time.")
    by_id = {r["sample_id"]: r for r in records}
    for sid in train_ids:
        by_id[sid]["split"] = "train"
    for sid in valid_ids:
        by_id[sid]["split"] = "valid"
    return [by_id[s] for s in train_ids], [by_id[s] for s in valid_ids]


def require_split_key(records: list[dict], strategy: str, stratify_key: str | None, group_key: str | None) -> None:
    """A group or stratified split needs its rules key on every record; a record without it is
    never made a group (or stratum) of its own, which would quietly turn the split random."""
    if strategy == "time":
        lacking = [r for r in records if r.get("series_id") is None
                   or not isinstance(r.get("start"), (int, float)) or isinstance(r.get("start"), bool)]
        if lacking:
            first = lacking[0]
            raise PipelineError(
                f"split_strategy is time but {len(lacking)} of {len(records)} records lack 'series_id' or a numeric "
                f"'start' (the row of the first target value), e.g. sample_id {first.get('sample_id')!r} (source "
                f"{first.get('source')!r}); set both on every record in parse_sources().")
        return
    setting, key = {"group": ("group_key", group_key), "stratified": ("stratify_key", stratify_key)}.get(strategy, (None, None))
    if setting is None:
        return
    lacking = [r for r in records if r.get(key) is None] if key else list(records)
    if lacking:
        first = lacking[0]
        raise PipelineError(
            f"split_strategy is {strategy} but {len(lacking)} of {len(records)} records have no {key!r} field "
            f"(the rules' {setting}), e.g. sample_id {first.get('sample_id')!r} (source {first.get('source')!r}); "
            f"set {key!r} on every record in parse_sources(), or change {setting} or split_strategy in the rules.")


def split_composition(train: list[dict], valid: list[dict], strategy: str | None, stratify_key: str | None,
                      group_key: str | None) -> dict:
    """What the split holds, for stats.json: groups per split (group split) or records per
    stratum per split (stratified split); empty for a random split."""
    splits = {"train": train, "valid": valid}
    if strategy == "group" and group_key:
        out = {"key": group_key, "records": len(train) + len(valid)}
        out.update({s: len({json.dumps(to_jsonable(r.get(group_key)), sort_keys=True) for r in rows})
                    for s, rows in splits.items()})
        return {"groups": out}
    if strategy == "stratified" and stratify_key:
        return {"strata": {"key": stratify_key, **{s: distribution(rows, stratify_key) for s, rows in splits.items()}}}
    if strategy == "time":  # where each series was cut: its first valid window's start row
        cuts: dict[str, Any] = {}
        for r in valid:
            key = str(r.get("series_id"))
            cuts[key] = min(cuts.get(key, r["start"]), r["start"])
        return {"time_cut": {"key": "start", "series": len({str(r.get("series_id")) for r in train + valid}),
                             "cuts": dict(sorted(cuts.items()))}}
    return {}


def cap_train(train: list[dict], max_train_samples: int | None, seed: int, source_key: str = "source") -> tuple[list[dict], list[dict]]:
    """(kept, unused): at most ``max_train_samples`` train records, drawn after the valid pool is
    fixed, seeded, with an equal share per source (a small source gives its spare share to the
    others). Unused records get split ``unused``."""
    if not max_train_samples or len(train) <= max_train_samples:
        return list(train), []
    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(train, key=lambda r: r["sample_id"]):
        by_source[str(r.get(source_key))].append(r)
    quota, left = {}, max_train_samples
    pending = sorted(by_source, key=lambda s: (len(by_source[s]), s))
    while pending:  # water-filling: a source smaller than its share gives the rest to the others
        share = left // len(pending)
        if len(by_source[pending[0]]) <= share:
            s = pending.pop(0)
            quota[s] = len(by_source[s])
            left -= quota[s]
            continue
        extra = left - share * len(pending)
        for i, s in enumerate(sorted(pending)):
            quota[s] = share + (1 if i < extra else 0)
        break
    keep = []
    for s in sorted(by_source):
        keep += random.Random(f"{seed}:{s}").sample(by_source[s], quota[s])
    chosen = {r["sample_id"] for r in keep}
    unused = [r for r in train if r["sample_id"] not in chosen]
    for r in unused:
        r["split"] = "unused"
    return sorted(keep, key=lambda r: r["sample_id"]), unused


def leakage_findings(train: list[dict], valid: list[dict], group_key: str | None = "group_id",
                     groups_must_separate: bool = False, where: str = "") -> Findings:
    """Samples shared by both splits: same id or same content hash (problems), same group
    (a problem when the split is by group, else a warning)."""
    f = Findings()
    _shared_samples(f, ("train", train), ("valid", valid), "prepdata.leak", group_key, groups_must_separate, where)
    return f


def _shared_samples(f: Findings, first: tuple[str, list[dict]], second: tuple[str, list[dict]], code: str,
                    group_key: str | None, groups_must_separate: bool, where: str) -> None:
    """What two splits share (id, content hash, group), as ``<code>_id`` / ``_hash`` / ``_group``."""
    (name_a, a), (name_b, b) = first, second
    for key, suffix, label in (("sample_id", "_id", "id"), ("hash", "_hash", "content hash")):
        both = {r.get(key) for r in a} & {r.get(key) for r in b} - {None}
        if both:
            f.problem(code + suffix, where, f"{len(both)} {label}(s) in both {name_a} and {name_b} (e.g. {sorted(both)[0]!r})")
    if group_key:
        both = {r.get(group_key) for r in a} & {r.get(group_key) for r in b} - {None}
        if both:
            message = (f"{len(both)} {group_key} value(s) in both {name_a} and {name_b} "
                       f"(e.g. {sorted(map(str, both))[0]!r})")
            (f.problem if groups_must_separate else f.warn)(code + "_group", where, message)


# ---- the held-out test split -----------------------------------------------------------------------

TEST = "test"


def split_with_test(records: list[dict], strategy: str, valid_ratio: float, test_ratio: float | None, seed: int,
                    stratify_key: str = "category", group_key: str = "group_id") -> tuple[list[dict], list[dict], list[dict]]:
    """(train, valid, test). With ``test_ratio`` the test pool is drawn first, by the same strategy
    as valid (so a group never straddles test and the rest), then valid from what is left, at
    ``valid_ratio`` of ALL records. Without it, test is empty and the split is ``split_records``'."""
    if not test_ratio:
        train, valid = split_records(records, strategy, valid_ratio, seed, stratify_key, group_key)
        return train, valid, []
    if valid_ratio + test_ratio >= 1:
        raise PipelineError(f"valid_ratio {valid_ratio} + test_ratio {test_ratio} leave no training data; "
                            "their sum must be below 1 (dataset_config in the rules).")
    # A seed of its own: the test draw must not mirror the valid draw's shuffle order.
    rest, test = split_records(records, strategy, test_ratio, seed + 7919, stratify_key, group_key)
    for r in test:
        r["split"] = TEST
    train, valid = split_records(rest, strategy, min(valid_ratio / (1 - test_ratio), 0.999), seed,
                                 stratify_key, group_key)
    return train, valid, test


def test_leakage_findings(train: list[dict], valid: list[dict], test: list[dict], group_key: str | None = "group_id",
                          groups_must_separate: bool = False, where: str = "") -> Findings:
    """Samples the test split shares with train or valid: same id or content hash (problems), same
    group (a problem when the split is by group, else a warning)."""
    f = Findings()
    for name, other in (("train", train), ("valid", valid)):
        _shared_samples(f, (name, other), ("test", test), "prepdata.test_leak", group_key, groups_must_separate, where)
    return f
