"""``mlloop profile``: inventory dataset/rawdata/ and write a profiling.md draft.

The draft holds what can be counted (files by extension, zip members, table headers, decoded
image sizes) and marks with ``<TODO: ...>`` what needs judgement (sample unit, label schema, edge
cases, extraction rules, the load test). ``mlloop check profiling`` treats those lines as empty,
so it fails until the agent has completed the draft. Cheap by design: it runs from the CLI, so
no pandas or torch; Pillow is imported only when there are images to decode. The images decoded
are a seeded draw of at most ``max_profile_samples`` over all sources together.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import shutil
import stat
import statistics
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import MlloopError, printable
from .formats import profiling
from .jsonio import write_text_atomic
from .layout import Project, free_backup_path, is_inside
from .profilehints import TABLE_EXTS, is_junk, join_hints, source_hints
from .rules import resolve

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_TABLE_SCAN = 64 * 1024 * 1024   # a bigger table is described from its head only
SAMPLE_NAMES = 5
MAX_VALUE_ROWS = 200_000   # rows of a table kept for the cross-checks (labels, missing files, joins)


@dataclass
class TableInfo:
    path: str
    kind: str
    rows: int | None = None
    columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict, repr=False)  # per column, for the cross-checks

    def line(self) -> str:
        what = "columns" if self.kind in (".csv", ".tsv") else "keys"
        rows = "" if self.rows is None else f"{self.rows} {'rows' if self.kind in ('.csv', '.tsv') else 'records'}, "
        cols = ", ".join(self.columns) if self.columns else "none found"
        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        return f"`{self.path}`: {rows}{what}: {cols}{notes}"


@dataclass
class ZipInfoSummary:
    path: str
    members: int = 0
    by_ext: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class SourceInventory:
    name: str
    files: int = 0
    bytes: int = 0
    by_ext: Counter = field(default_factory=Counter)
    folders: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    zips: list[ZipInfoSummary] = field(default_factory=list)
    tables: list[TableInfo] = field(default_factory=list)
    images: list[str] = field(default_factory=list)           # refs: relpath or zip::member
    decoded: list[tuple[str, int, int, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    names: set[str] = field(default_factory=set, repr=False)       # every file and zip member, source-relative
    dirs: set[str] = field(default_factory=set, repr=False)        # every folder name (folder labels)
    looks: list[str] = field(default_factory=list)                 # what the agent should look at

    def to_dict(self) -> dict:
        return {"name": self.name, "files": self.files, "bytes": self.bytes, "by_extension": dict(sorted(self.by_ext.items())),
                "folders": dict(sorted(self.folders.items())), "sample_files": self.samples, "junk_files": self.junk,
                "empty_files": self.empty, "images": len(self.images),
                "zips": [{"path": z.path, "members": z.members, "by_extension": dict(sorted(z.by_ext.items())),
                          "sample_members": z.samples, "notes": z.notes} for z in self.zips],
                "tables": [{"path": t.path, "rows": t.rows, "columns": t.columns, "notes": t.notes} for t in self.tables],
                "decoded": len(self.decoded), "decode_failures": [{"ref": r, "error": e} for r, e in self.failed],
                "look_at": self.looks}


@dataclass
class ProfileResult:
    path: str
    backup: str | None
    sources: list[SourceInventory]
    decoded: int
    max_profile_samples: int
    seed: int
    loose_files: list[str]
    warnings: list[str]

    def to_dict(self) -> dict:
        return {"ok": True, "path": self.path, "backup": self.backup, "seed": self.seed,
                "max_profile_samples": self.max_profile_samples, "decoded_images": self.decoded,
                "sources": [s.to_dict() for s in self.sources], "loose_files": self.loose_files,
                "warnings": self.warnings}

    def lines(self) -> list[str]:
        out = [f"{s.name}: {s.files} files ({_ext_summary(s.by_ext)})" for s in self.sources]
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"{s.name}: look at: {look}" for s in self.sources for look in s.looks]
        if self.backup:
            out.append(f"the previous profiling.md was kept as {self.backup}")
        out.append(f"wrote {self.path}: a draft with {self.decoded} decoded image(s) (seed {self.seed}); "
                   "replace every <TODO: ...> line, run the load test, then `mlloop check profiling`.")
        return out


def _ext_summary(counter: Counter, limit: int = 6) -> str:
    items = counter.most_common()
    text = ", ".join(f"{n} {ext or '(no extension)'}" for ext, n in items[:limit])
    return text + (f", {sum(n for _, n in items[limit:])} other" if len(items) > limit else "") if items else "empty"


# ---- inventory -----------------------------------------------------------------------------

def inventory_source(rawdata: Path, folder: Path) -> SourceInventory:
    inv = SourceInventory(folder.name)
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        inv.dirs.update(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            paths.append(Path(dirpath) / fn)
    for p in paths:
        rel_src = p.relative_to(folder).as_posix()
        rel = p.relative_to(rawdata).as_posix()
        if printable(rel_src) != rel_src:
            inv.junk.append(f"{printable(rel_src)} (the file name is not valid UTF-8, not read; rename it)")
            continue
        if not is_inside(rawdata, p):
            inv.junk.append(f"{rel_src} (a link leaving dataset/rawdata/, not read)")
            continue
        try:
            info = p.stat()
        except OSError as exc:
            inv.junk.append(f"{rel_src} (cannot be read: {exc.strerror})")
            continue
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the first read for ever
            inv.junk.append(f"{rel_src} (not a regular file: a pipe, device or socket; not read)")
            continue
        size = info.st_size
        inv.names.add(rel_src)
        inv.files += 1
        inv.bytes += size
        ext = p.suffix.lower()
        inv.by_ext[ext] += 1
        top = rel_src.split("/")[0] + "/" if "/" in rel_src else "."
        inv.folders[top] += 1
        if is_junk(p.name):
            inv.junk.append(rel_src)
            continue
        if size == 0:
            inv.empty.append(rel_src)
        if len(inv.samples) < SAMPLE_NAMES and ext not in (".zip",) and ext not in TABLE_EXTS:
            inv.samples.append(rel_src)
        if ext in IMAGE_EXTS:
            inv.images.append(rel)
        elif ext == ".zip":
            inv.zips.append(_inventory_zip(p, rel_src, rel, inv))
        elif ext in TABLE_EXTS:
            inv.tables.append(_inventory_table(p.read_bytes if size <= MAX_TABLE_SCAN else _head(p), rel_src, ext,
                                               complete=size <= MAX_TABLE_SCAN))
    inv.looks += source_hints(inv)
    return inv


def _head(path: Path, n: int = 1024 * 1024):
    def read() -> bytes:
        with open(path, "rb") as fh:
            return fh.read(n)
    return read


def _inventory_zip(path: Path, rel_src: str, rel: str, inv: SourceInventory) -> ZipInfoSummary:
    """Member names and counts from the central directory; nothing is extracted."""
    z = ZipInfoSummary(rel_src)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            dirs = sum(1 for i in infos if i.is_dir())
            junk = [i.filename for i in infos if not i.is_dir() and any(is_junk(part) for part in i.filename.split("/"))]
            for info in infos:
                if info.is_dir() or info.filename in junk:
                    continue
                z.members += 1
                inv.names.add(info.filename)
                ext = Path(info.filename).suffix.lower()
                z.by_ext[ext] += 1
                if len(z.samples) < SAMPLE_NAMES:
                    z.samples.append(info.filename)
                if ext in IMAGE_EXTS:
                    inv.images.append(f"{rel}::{info.filename}")
                elif ext in TABLE_EXTS and info.file_size <= MAX_TABLE_SCAN:
                    inv.tables.append(_inventory_table(lambda i=info: zf.read(i), f"{rel_src}::{info.filename}", ext, True))
            if dirs:
                z.notes.append(f"{dirs} folder entries")
            if junk:
                z.notes.append(f"{len(junk)} junk member(s) such as {junk[0]}")
    except (zipfile.BadZipFile, OSError) as exc:
        z.notes.append(f"cannot be opened as a zip ({exc})")
    return z


def _inventory_table(read, rel: str, ext: str, complete: bool) -> TableInfo:
    t = TableInfo(rel, ext)
    try:
        raw = read()
    except OSError as exc:
        t.notes.append(f"unreadable ({exc.strerror})")
        return t
    if raw.startswith(b"\xef\xbb\xbf"):
        t.notes.append("UTF-8 with a byte-order mark")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        t.notes.append("not UTF-8 (read as latin-1 here)")
    if not complete:
        text = text.rsplit("\n", 1)[0]
        t.notes.append("larger than 64 MB: counted from its first 1 MB only")
    if ext in (".csv", ".tsv"):
        bare_cr = len(re.findall(r"\r(?!\n)", text))
        if bare_cr:
            t.notes.append(f"{bare_cr} bare carriage return(s) (\\r without \\n): read as line ends here; "
                           "a loader must open it with newline=''")
        try:  # newline="": the csv module itself handles \r, \n and \r\n, quoted or not
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t" if ext == ".tsv" else _sniff(text)))
        except csv.Error as exc:
            t.notes.append(f"not readable as CSV ({exc})")
            return t
        if rows:
            t.columns = rows[0]
            t.rows = len(rows) - 1
            t.values = {c: [r[i] for r in rows[1:MAX_VALUE_ROWS + 1] if i < len(r)] for i, c in enumerate(rows[0])}
            widths = Counter(len(r) for r in rows[1:])
            if len(widths) > 1:
                t.notes.append("rows with differing field counts: " + ", ".join(f"{n}x{w}" for w, n in sorted(widths.items())))
    elif ext in (".jsonl", ".ndjson"):
        lines = text.splitlines()
        blank, bad, keys, count = 0, 0, [], 0
        for line in lines:
            if not line.strip():
                blank += 1
                continue
            count += 1
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):  # invalid JSON, a 5,000-digit integer, 10,000 nested lists
                bad += 1
                continue
            if isinstance(obj, dict):
                keys += [k for k in obj if k not in keys]
                if count <= MAX_VALUE_ROWS:
                    for k, v in obj.items():
                        if isinstance(v, (str, int)) and not isinstance(v, bool):
                            t.values.setdefault(k, []).append(str(v))
        t.rows, t.columns = count, keys
        if blank:
            t.notes.append(f"{blank} blank line(s)")
        if bad:
            t.notes.append(f"{bad} line(s) that are not JSON")
    else:
        nonfinite = []
        try:
            obj = json.loads(text, parse_constant=lambda tok: nonfinite.append(tok))
        except json.JSONDecodeError as exc:
            t.notes.append(f"not valid JSON (line {exc.lineno}: {exc.msg})")
            return t
        except (ValueError, RecursionError) as exc:  # huge integers, nesting past the recursion limit
            t.notes.append(f"not usable JSON ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            return t
        if nonfinite:
            t.notes.append(f"{len(nonfinite)} NaN/Infinity token(s): not strict JSON")
        if isinstance(obj, dict):
            t.columns = list(obj)
            lists = {k: v for k, v in obj.items() if isinstance(v, list)}
            for k, v in lists.items():
                first = next((x for x in v if isinstance(x, dict)), None)
                t.notes.append(f"`{k}`: list of {len(v)}" + (f", first keys: {', '.join(first)}" if first else ""))
        elif isinstance(obj, list):
            t.rows = len(obj)
            first = next((x for x in obj if isinstance(x, dict)), None)
            t.columns = list(first) if first else []
    return t


def _sniff(text: str) -> str:
    head = text[:4096].splitlines()[0] if text.strip() else ""
    return max((",", ";", "\t", "|"), key=head.count) if head else ","


def decode_images(rawdata: Path, sources: list[SourceInventory], limit: int, seed: int) -> int:
    """Decode a seeded draw of at most ``limit`` images over all sources; sizes per source."""
    pool = sorted((ref, s) for s in sources for ref in s.images)
    if not pool:
        return 0
    from PIL import Image  # lazy: only when there are images

    by_name = {s.name: s for s in sources}
    draw = random.Random(seed).sample([p[0] for p in pool], min(limit, len(pool)))
    owner = dict((ref, s.name) for ref, s in pool)
    zips: dict[str, zipfile.ZipFile] = {}
    try:
        for ref in sorted(draw):
            src = by_name[owner[ref]]
            try:
                path_part, _, member = ref.partition("::")
                if member:
                    zf = zips.get(path_part) or zips.setdefault(path_part, zipfile.ZipFile(rawdata / path_part))
                    payload = zf.read(member)
                else:
                    payload = (rawdata / path_part).read_bytes()
                with Image.open(io.BytesIO(payload)) as im:
                    im.load()
                    src.decoded.append((ref, im.size[0], im.size[1], im.mode))
            except Exception as exc:  # every broken image is a fact for the draft, not a crash
                src.failed.append((ref.split("/", 1)[1] if "/" in ref else ref, f"{type(exc).__name__}: {str(exc)[:80]}"))
    finally:
        for zf in zips.values():
            zf.close()
    return len(draw)


# ---- the draft --------------------------------------------------------------------------------

def _range(values: list[int]) -> str:
    return f"{min(values)}–{max(values)} px (median {statistics.median(values):g})"


def _source_section(s: SourceInventory) -> str:
    facts = [f"- files: {s.files} ({_ext_summary(s.by_ext)}), {s.bytes / 1e6:.1f} MB"]
    folders = [f"{k} ({v})" for k, v in sorted(s.folders.items()) if k != "."]
    if folders:
        facts.append(f"- folders: {', '.join(folders[:12])}" + (f", {len(folders) - 12} more" if len(folders) > 12 else ""))
    if s.samples:
        facts.append(f"- sample files: {', '.join(f'`{n}`' for n in s.samples)}")
    for z in s.zips:
        facts.append(f"- `{z.path}`: {z.members} members ({_ext_summary(z.by_ext)}), read without extracting"
                     + (f"; {'; '.join(z.notes)}" if z.notes else "")
                     + (f"; e.g. {', '.join(f'`{m}`' for m in z.samples[:3])}" if z.samples else ""))
    facts += [f"- {t.line()}" for t in s.tables]
    hints = []
    if s.junk:
        hints.append(f"junk files: {', '.join(s.junk[:5])}")
    if s.empty:
        hints.append(f"empty files: {', '.join(s.empty[:5])}")
    if s.failed:
        hints.append(f"images that failed to decode: {', '.join(f'{r} ({e})' for r, e in s.failed[:5])}")
    hint = ("<!-- observed by mlloop profile: " + "; ".join(hints) + " -->\n") if hints else ""
    # Comments, so that the sub-section stays a gap until the agent writes the schema.
    looks = [f"<!-- look at: {line} -->" for line in s.looks]
    sanity = []
    drawn = len(s.decoded) + len(s.failed)
    if drawn:
        line = f"- seeded draw: {drawn} of {len(s.images)} images, {len(s.decoded)} decoded"
        if s.decoded:
            ws, hs = [d[1] for d in s.decoded], [d[2] for d in s.decoded]
            modes = Counter(d[3] for d in s.decoded)
            line += (f": width {_range(ws)}, height {_range(hs)}, "
                     f"modes {', '.join(f'{m} ({n})' for m, n in modes.most_common())}")
        sanity.append(line)
    if s.failed:
        sanity.append(f"- {len(s.failed)} image(s) in the draw failed to decode")
    sanity.append(f"- {profiling.LOAD_TEST}: <TODO: PASS|FAIL (n/n samples, seed S) after loading 10 seeded samples with the extraction rules>")
    return profiling.render_source(s.name, {
        "Sample unit definition": ["<TODO: what one sample is (a file, a zip member, a table row) and how its label is found>"],
        "Paths & naming rules": [*facts, "<TODO: the naming rule that joins an asset to its label>"],
        "Label schema": [*looks, "<TODO: each label field: name, type, allowed values or length range>"],
        "Edge cases": [hint + "<TODO: what breaks the simple rule (missing, empty, duplicate, corrupt, oversized) and how often>"],
        "Extraction rules": ["<TODO: the exact steps 01_data_pipeline.py follows for this source, sample_id included>"],
        "Sanity checks": sanity})


def render_draft(sources: list[SourceInventory], loose: list[str], decoded: int, limit: int, seed: int,
                 task_type: str | None) -> str:
    total = sum(s.files for s in sources)
    size = sum(s.bytes for s in sources) / 1e6
    overview = [
        f"- sources: {len(sources)} ({', '.join(s.name for s in sources)})",
        f"- files: {total}, {size:.1f} MB; images: {sum(len(s.images) for s in sources)} (zip members included)",
        f"- task_type (rules): {task_type or 'not set'}",
        f"- decoded for this profile: {decoded} image(s), a seeded draw over all sources together "
        f"(seed {seed}, max_profile_samples {limit})",
    ]
    if loose:
        overview.append(f"- files outside any source folder (not profiled): {', '.join(loose)}")
    overview.append("<TODO: what one sample is across sources, how many usable samples to expect, the task type if the rules leave it open>")
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [
        "# Raw data profiling",
        "",
        f"<!-- Draft written by `mlloop profile` at {stamp}. The facts were counted; every "
        "<TODO: ...> line is yours to replace. `mlloop check profiling` fails until none is left "
        "and every source has a load_test PASS line. -->",
        "",
        "## Overview",
        *overview,
        "",
        "## Sources",
        *[f"- {s.name}: {s.files} files ({_ext_summary(s.by_ext, 4)})"
          + (f"; {', '.join(z.path for z in s.zips)}" if s.zips else "") for s in sources],
        "",
    ]
    return "\n".join(parts + [_source_section(s) for s in sources])


def draft_profiling(project: Project, force: bool = False) -> ProfileResult:
    """Inventory ``dataset/rawdata/`` and write the profiling.md draft (see the module doc)."""
    rawdata, target = project.rawdata, project.profiling_md
    rel = project.rel(target)
    if not rawdata.is_dir():
        raise MlloopError(f"{project.rel(rawdata)}/ does not exist; run `mlloop init` and put each data source in its own folder there.")
    if target.exists() and not force:
        raise MlloopError(f"{rel} already exists and is kept; pass --force to rewrite it (the old one is saved as {target.name}.bak).")
    # Every visible folder is a source (as `mlloop check profiling` counts them), junk included.
    folders = sorted(p for p in rawdata.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p.name for p in rawdata.iterdir() if p.is_file() and not p.name.startswith("profiling.md") and not is_junk(p.name))
    if not folders:
        raise MlloopError(f"{project.rel(rawdata)}/ has no source folders; put each data source in its own folder "
                          "(dataset/rawdata/<source>/...), then run `mlloop profile` again.")
    rules = resolve(project)
    warnings = [f"the rules have problems (`mlloop rules`); profiling used seed {rules.seed} and "
                f"max_profile_samples {rules.section('dataset_config')['max_profile_samples']}"] if not rules.findings.ok else []
    limit = rules.section("dataset_config")["max_profile_samples"]
    sources = [inventory_source(rawdata, f) for f in folders]
    for s in sources:
        if s.files == 0:
            warnings.append(f"source {s.name} is empty")
    join_hints(sources)
    decoded = decode_images(rawdata, sources, limit, rules.seed)
    # printable(): a non-UTF-8 file name is shown as \xff escapes rather than failing the write.
    text = printable(render_draft(sources, loose, decoded, limit, rules.seed, rules.task_type))
    # The old draft stays in place until the new one is written (write_text_atomic replaces it in
    # one step); its copy in .bak is what remains of it afterwards.
    backup = None
    if target.exists():
        bak = free_backup_path(target)
        shutil.copy2(target, bak)
        backup = project.rel(bak)
    try:
        write_text_atomic(target, text)
    except OSError as exc:
        if backup:
            bak.unlink(missing_ok=True)
        raise MlloopError(f"{rel}: cannot be written ({exc.strerror or exc}); the old one is kept as it was. "
                          "Free some space or fix the folder's permissions, then run `mlloop profile --force` again.") from None
    return ProfileResult(rel, backup, sources, decoded, limit, rules.seed, loose, warnings)
