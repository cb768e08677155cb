"""Strict JSON in, atomic JSON out.

Reading: NaN/Infinity, numbers that overflow to infinity (``1e400``), duplicate keys, invalid
UTF-8, empty and truncated files are each reported as a ``Problem`` with the file and the JSON
path, never a traceback. Writing: ``allow_nan=False`` always, temp file in the same folder,
then ``os.replace`` so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import Problem

MAX_JSON_BYTES = 64 * 1024 * 1024  # an eval_score.json padded to this size is an attack, not data
MAX_DEPTH = 100          # mlloop's documents nest a few levels; 600 levels is an attack on the recursion limit
MAX_INT_DIGITS = 4300    # Python's own int-string limit (sys.get_int_max_str_digits), the same for everyone


class JsonProblems(Exception):
    """Raised by ``read_json`` with every problem found in one file."""

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.line() for p in problems))
        self.problems = problems


class _NonFinite:
    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token


class _Pairs(list):
    """An object as parsed: its key/value pairs in order, duplicates kept for reporting."""


def json_path(parts: tuple | list) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += "[" + json.dumps(part, ensure_ascii=False) + "]"
    return out


class _HugeInt:
    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(text: str):
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else _HugeInt(digits)


def _strict_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NotStrict
    return int(text)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects, walked without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict):
            node = node.values()
        elif isinstance(node, _Pairs):  # an object as the strict re-parse holds it
            node = [value for _key, value in node]
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        todo.extend((child, level + 1) for child in node if isinstance(child, (dict, list)))
    return deepest


def _too_deep(rel: str) -> JsonProblems:
    return JsonProblems([Problem("json.too_deep", rel,
                                 f"the document nests lists/objects more than {MAX_DEPTH} levels deep; refused")])


def _parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _finish(node: Any, parts: tuple, rel: str, problems: list[Problem]) -> Any:
    """Turn the raw parse into plain Python values, recording what strict JSON forbids."""
    if isinstance(node, _HugeInt):
        problems.append(Problem(
            "json.huge_integer", rel,
            f"an integer with {node.digits} digits; more than {MAX_INT_DIGITS} digits is refused (not a usable number)",
            json_path(parts)))
        return None
    if isinstance(node, _NonFinite):
        problems.append(Problem(
            "json.non_finite", rel,
            f"{node.token} is not a finite number; JSON allows only finite numbers (write null for a missing value)",
            json_path(parts)))
        return None
    if isinstance(node, _Pairs):
        out: dict = {}
        for key, value in node:
            if key in out:
                problems.append(Problem(
                    "json.duplicate_key", rel,
                    f"duplicate key {key!r}; each key may appear once (the later value would silently win)",
                    json_path(parts + (key,))))
            out[key] = _finish(value, parts + (key,), rel, problems)
        return out
    if isinstance(node, list):
        return [_finish(v, parts + (i,), rel, problems) for i, v in enumerate(node)]
    return node


class _NotStrict(Exception):
    """The fast path met something strict JSON forbids; the full parse says what and where."""


def _unique_keys(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _NotStrict
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrict
    return value


def _reject_constant(token: str):
    raise _NotStrict


def parse_json_text(text: str, rel: str) -> Any:
    """Parse ``text`` strictly; raise ``JsonProblems`` naming ``rel`` on any violation."""
    if not text.strip():
        raise JsonProblems([Problem("json.empty", rel, "the file is empty; it must hold one JSON document")])
    try:
        # Fast path for the common, valid document (the leaderboard reads 1,000 of them): the same
        # strictness, checked by light hooks; anything it rejects is re-parsed below for the report.
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant,
                           parse_float=_finite_float, parse_int=_strict_int)
    except (_NotStrict, json.JSONDecodeError, RecursionError, ValueError):
        pass
    else:
        if _depth(value) > MAX_DEPTH:
            raise _too_deep(rel)
        return value
    try:
        raw = json.loads(
            text,
            object_pairs_hook=_Pairs,
            parse_constant=_NonFinite,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        hint = " (the file looks truncated)" if cut else ""
        raise JsonProblems([Problem(
            "json.invalid", rel,
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}{hint}")]) from None
    except RecursionError:
        raise _too_deep(rel) from None
    if _depth(raw) > MAX_DEPTH:
        raise _too_deep(rel)
    problems: list[Problem] = []
    value = _finish(raw, (), rel, problems)
    if problems:
        raise JsonProblems(problems)
    return value


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _leaves(root: Path, path: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return not (real == base or real.startswith(base.rstrip(os.sep) + os.sep))


def read_file_bytes(path: Path, rel: str | None = None, *, root: Path | None = None,
                    max_bytes: int | None = None, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, never opening anything else.

    A FIFO, device or socket is refused from its ``stat`` (opening a FIFO would block for
    ever); with ``root``, so is a symlink that resolves outside it. Problems are raised as
    ``JsonProblems`` naming ``rel``: one line each, never a traceback.
    """
    path = Path(path)
    rel = rel or str(path)
    try:
        if root is not None and _leaves(root, path):  # the file, or a folder above it, links out
            target = os.readlink(path) if os.path.islink(path) else os.path.realpath(path)
            raise JsonProblems([Problem("path.symlink_escape", rel, f"is a symbolic link that leaves the project "
                                        f"(-> {target}); mlloop never follows it: put the real file inside the project")])
        info = os.stat(path)
    except FileNotFoundError:
        raise JsonProblems([Problem("file.missing", rel, "the file does not exist")]) from None
    except OSError as exc:
        raise JsonProblems([Problem("file.unreadable", rel, f"cannot read the file: {exc.strerror}")]) from None
    if stat.S_ISDIR(info.st_mode):
        raise JsonProblems([Problem("file.not_a_file", rel, f"expected a {what}, found a folder")])
    if not stat.S_ISREG(info.st_mode):
        raise JsonProblems([Problem("file.not_regular", rel, f"is {_kind_of(info.st_mode)}, not a regular file; "
                                    "mlloop refuses it unopened: replace it with the real file")])
    if max_bytes is not None and info.st_size > max_bytes:
        raise JsonProblems([Problem(
            "json.too_large", rel, f"the file is {info.st_size} bytes; more than {max_bytes} is refused unread")])
    try:
        # O_NONBLOCK: should a FIFO be swapped in after the stat, the open returns instead of waiting.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise JsonProblems([Problem("file.not_regular", rel, "is not a regular file; mlloop refuses it unread")])
            return fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError as exc:
        raise JsonProblems([Problem("file.unreadable", rel, f"cannot read the file: {exc.strerror}")]) from None


def read_text_file(path: Path, rel: str | None = None, *, root: Path | None = None) -> str:
    """A regular UTF-8 text file's content (``read_file_bytes``' refusals, plus ``file.encoding``)."""
    rel = rel or str(path)
    data = read_file_bytes(Path(path), rel, root=root)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonProblems([Problem(
            "file.encoding", rel, f"the file is not valid UTF-8 (byte {exc.start}); save it as UTF-8")]) from None


def read_json(path: Path, rel: str | None = None, max_bytes: int = MAX_JSON_BYTES, *,
              root: Path | None = None) -> Any:
    """Read one strict JSON document from ``path``; ``rel`` is how problems name the file."""
    rel = rel or str(path)
    data = read_file_bytes(Path(path), rel, root=root, max_bytes=max_bytes, what="JSON file")
    if len(data) > max_bytes:
        raise JsonProblems([Problem(
            "json.too_large", rel, f"the file is over {max_bytes} bytes; more than {max_bytes} is refused unread")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonProblems([Problem(
            "json.encoding", rel, f"the file is not valid UTF-8 (byte {exc.start}); save it as UTF-8")]) from None
    return parse_json_text(text, rel)


def dumps(obj: Any) -> str:
    """The one JSON serialisation mlloop writes: indented, UTF-8, never NaN."""
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes 0600 files; keep the mode a plain write would have given.
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, dumps(obj))


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from what writers tend to hold: NaN/inf become null (missing), numpy
    and torch scalars become Python numbers, paths and tuples become strings and lists."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)  # numpy / torch scalars, without importing either
    if callable(item):
        try:
            return to_jsonable(item())
        except (TypeError, ValueError, RuntimeError):  # an array of several values (torch raises RuntimeError)
            pass
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return to_jsonable(tolist())
    if getattr(obj, "__class__", None) and obj.__class__.__name__ in {"NAType", "NaTType"}:
        return None
    return str(obj)


# ---- digests (provenance records these; docs/contracts.md, "Provenance") -----------------

def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
