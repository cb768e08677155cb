"""Is this file a torch checkpoint, and would loading it run code? Answered without torch.

``torch.save`` writes a zip with one top folder holding ``data.pkl`` (the pickled object),
``version``, ``byteorder`` and the tensor bytes under ``data/``. A pickle is a program: its
``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable, which ``REDUCE`` then calls. So the
check walks ``data.pkl`` with ``pickletools`` (which decodes opcodes and never executes them)
and lists every global it would import; anything outside the small set that
``torch.load(weights_only=True)`` accepts for plain tensors and dicts is a problem.
"""

from __future__ import annotations

import pickletools
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAX_PICKLE_BYTES = 512 * 1024 * 1024  # data.pkl holds names and structure, not tensor bytes
# A Lightning checkpoint of a large model (1,000 tensors plus optimizer state: about 25 opcodes
# each) is well under 50,000 opcodes; a pickle of millions is built to make the scan itself the attack (minutes,
# gigabytes of emulated stack), so the scan stops at this many and refuses the file.
MAX_PICKLE_OPS = 500_000

# What weights_only=True loads by default and Lightning checkpoints actually contain
# (collections.OrderedDict, torch.FloatStorage…, torch._utils._rebuild_tensor_v2, seen by saving
# one; the rest mirrors torch._weights_only_unpickler's default allowlist).
SAFE_GLOBALS = frozenset({
    "collections.OrderedDict", "collections.Counter",
    "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.complex",
    "_codecs.encode",  # how protocol 2 pickles bytes
    "torch.Size", "torch.device", "torch.Tensor", "torch.nn.parameter.Parameter",
    "torch.storage.TypedStorage", "torch.storage.UntypedStorage",
    "torch._tensor._rebuild_from_type_v2", "torch.serialization._get_layout",
})
SAFE_GLOBAL_RE = re.compile(
    r"^torch\.(?:cuda\.|sparse\.|cuda\.sparse\.)?[A-Z][A-Za-z0-9]*(?:Storage|Tensor)$"   # torch.FloatStorage …
    r"|^torch\._utils\._rebuild_[a-z0-9_]+$"                                            # tensor rebuilders
    r"|^torch\.(?:u?int\d+|float\d+(?:_\w+)?|bfloat16|b?complex\d+|bool|bits\w+"        # dtypes
    r"|q(?:u)?int\w+|per_(?:tensor|channel)_\w+)$")

_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_MARK = object()


class PickleTooLong(ValueError):
    """The pickle has more opcodes than the scan's budget."""


@dataclass(frozen=True)
class CkptProblem:
    code: str      # ckpt.*
    message: str


def is_safe_global(name: str) -> bool:
    return name in SAFE_GLOBALS or bool(SAFE_GLOBAL_RE.match(name))


def pickle_globals(stream, max_ops: int = MAX_PICKLE_OPS) -> list[str]:
    """Every global a pickle would import, in order of first use, found without unpickling.

    A small stack emulation follows string values through the memo so that protocol-4
    ``STACK_GLOBAL`` (module and name pushed as strings) is resolved too; a global whose name
    cannot be worked out is reported as ``<unresolved>``. Raises ``ValueError`` for a
    malformed or truncated pickle, ``PickleTooLong`` past ``max_ops`` opcodes.
    """
    found: list[str] = []
    stack: list = []
    memo: dict = {}

    def note(name: str) -> None:
        if name not in found:
            found.append(name)

    def pop(n: int = 1) -> list:
        if n > len(stack):
            raise ValueError("stack underflow")
        taken = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return taken

    for count, (op, arg, _pos) in enumerate(pickletools.genops(stream), start=1):
        if count > max_ops:
            raise PickleTooLong(f"more than {max_ops:,} opcodes")
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            note(f"{module}.{attr}")
        elif name == "STACK_GLOBAL":
            module, attr = (stack[-2], stack[-1]) if len(stack) >= 2 else (None, None)
            note(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "<unresolved>")
        elif name in ("EXT1", "EXT2", "EXT4"):
            note(f"<copyreg extension {arg}>")
        # Keep the emulated stack in step with the real one.
        if name in _PUT_OPS:
            memo[arg] = stack[-1] if stack else None
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
            continue
        if name in _GET_OPS:
            stack.append(memo.get(arg))
            continue
        if name == "DUP":
            stack.append(stack[-1] if stack else None)
            continue
        if name == "MARK":
            stack.append(_MARK)
            continue
        if name in _STRING_OPS:
            stack.append(arg)
            continue
        before = op.stack_before
        if pickletools.markobject in before:
            while stack and stack[-1] is not _MARK:
                stack.pop()
            if not stack:
                raise ValueError(f"{name} without a MARK")
            stack.pop()
            pop(before.index(pickletools.markobject))
        elif name == "POP":
            pop(1)
        else:
            pop(len(before))
        stack.extend([None] * len(op.stack_after))
    return found


def inspect_checkpoint(path: Path) -> list[CkptProblem]:
    """Structural problems of a torch zip checkpoint at ``path`` (empty list: looks sound).

    Never imports torch and never unpickles: a malicious file is reported, not run.
    """
    try:
        info = path.stat()
    except OSError as exc:
        return [CkptProblem("ckpt.unreadable", f"cannot read the checkpoint: {exc.strerror}")]
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the zip reader for ever
        return [CkptProblem("ckpt.not_a_file", "not a regular file (a folder, pipe or device); refused unopened")]
    size = info.st_size
    if size == 0:
        return [CkptProblem("ckpt.empty", "the checkpoint is empty (0 bytes); re-run training")]
    try:
        with zipfile.ZipFile(path) as zf:
            return _inspect_zip(zf)
    except zipfile.BadZipFile:
        return [CkptProblem("ckpt.not_zip",
                            "not a torch zip checkpoint (truncated, or another format); re-run training to write it again")]
    except (OSError, EOFError, ValueError) as exc:
        return [CkptProblem("ckpt.corrupt", f"the checkpoint cannot be read as a zip archive ({exc})")]


def _inspect_zip(zf: zipfile.ZipFile) -> list[CkptProblem]:
    infos = zf.infolist()
    tops = {info.filename.split("/", 1)[0] for info in infos}
    if len(tops) != 1 or any("/" not in info.filename for info in infos):
        return [CkptProblem("ckpt.layout",
                            "a torch checkpoint is a zip with one top folder holding data.pkl; this zip is laid out differently")]
    top = tops.pop()
    names = {info.filename: info for info in infos}
    missing = [n for n in ("data.pkl", "version", "byteorder") if f"{top}/{n}" not in names]
    if missing:
        return [CkptProblem("ckpt.layout", f"the checkpoint has no {', '.join(missing)} in {top}/; it was not written by torch.save")]
    info = names[f"{top}/data.pkl"]
    if info.file_size > MAX_PICKLE_BYTES:
        return [CkptProblem("ckpt.layout", f"{top}/data.pkl is {info.file_size} bytes; more than {MAX_PICKLE_BYTES} is refused unread")]
    try:
        with zf.open(info) as stream:
            found = pickle_globals(stream)
    except PickleTooLong:
        return [CkptProblem("ckpt.too_complex",
                            f"{top}/data.pkl has more than {MAX_PICKLE_OPS:,} pickle opcodes; the scan stops there and "
                            "refuses it (a checkpoint's structure needs far fewer): re-save plain tensors and dicts")]
    except (ValueError, EOFError, zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        return [CkptProblem("ckpt.corrupt", f"{top}/data.pkl is not a complete pickle ({exc}); re-run training")]
    unsafe = [g for g in found if not is_safe_global(g)]
    if unsafe:
        return [CkptProblem("ckpt.unsafe",
                            f"would run code when loaded: data.pkl imports {', '.join(unsafe)}; save plain dicts, "
                            "lists, numbers, strings and tensors only (hyper-parameters as a dict)")]
    return []
