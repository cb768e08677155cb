"""The one place mlloop loads a checkpoint, and the one way it imports a training script.

A checkpoint is a pickle, and a pickle is a program (PyTorch SECURITY.md). So every load goes
through ``load_checkpoint``: a regular file inside the project, not empty, a torch zip archive
whose CRCs match, whose pickle imports nothing beyond torch's own allowlist
(``torch.serialization.get_unsafe_globals_in_checkpoint``), then
``torch.load(..., weights_only=True)`` with the argument written out, so that
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` cannot turn it off. There is no fallback. Errors are
mlloop's own sentences: torch's text for a refused file advises re-running with the unsafe
setting, which is exactly the advice an agent must not follow, so it is never passed on.

Training scripts call ``load_checkpoint`` from their ``load_for_eval``; ``03_eval.py`` checks
``best.ckpt`` with ``check_checkpoint`` before it imports the script at all.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from ..errors import MlloopError
from ..layout import is_inside

MIN_TORCH = (2, 6)  # CVE-2025-32434: weights_only=True is a boundary only from torch 2.6 on
# Globals a checkpoint may import beyond torch's own allowlist. Empty on purpose: mlloop's
# checkpoints hold tensors and plain-dict hyper-parameters only. Never filled from the file.
EXTRA_SAFE_GLOBALS: frozenset[str] = frozenset()
RETRAIN = "retrain the version so that a fresh best.ckpt is written"


class CheckpointError(MlloopError):
    """A checkpoint was refused or could not be read; the message is safe to show an agent."""


def _shown(path: Path, project_root: Path | None) -> str:
    if project_root is not None:
        try:
            return path.resolve().relative_to(Path(project_root).resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return str(path)


def project_root_of(path: str | os.PathLike) -> Path:
    """The project a checkpoint belongs to: the folder holding ``Models/``, else the cwd."""
    absolute = Path(os.path.abspath(path))
    parts = absolute.parts
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] == "Models":
            return Path(*parts[:i])
    return Path.cwd()


def _torch_version_ok(version: str) -> bool:
    nums = [int(x) for x in re.findall(r"\d+", version.split("+")[0])[:2]]
    return tuple(nums) >= MIN_TORCH


def check_checkpoint(path: str | os.PathLike, project_root: str | os.PathLike | None = None) -> Path:
    """Every check that runs before a byte is unpickled; returns the resolved path.

    Raises ``CheckpointError`` with one plain sentence for: missing, outside the project (a
    symlink that escapes included), not a regular file, empty, not a zip (garbage, truncated,
    legacy pickle), a CRC mismatch, not a torch checkpoint, or globals beyond torch's allowlist.
    """
    import torch

    path = Path(path)
    root = Path(project_root) if project_root is not None else project_root_of(path)
    shown = _shown(path, root)
    if not _torch_version_ok(torch.__version__):
        raise CheckpointError(
            f"{shown}: torch {torch.__version__} is older than 2.6, where loading a checkpoint is not safe "
            "(CVE-2025-32434); upgrade torch before evaluating.")
    if not (path.exists() or path.is_symlink()):
        raise CheckpointError(f"{shown}: the checkpoint does not exist; train the version first (its training script writes it).")
    if not is_inside(root, path):
        raise CheckpointError(
            f"{shown}: the checkpoint resolves outside the project ({os.path.realpath(path)}); "
            "mlloop loads checkpoints from inside the project only — replace the link with the file itself.")
    real = Path(os.path.realpath(path))
    if not real.is_file():
        raise CheckpointError(f"{shown}: the checkpoint is not a regular file; {RETRAIN}.")
    if real.stat().st_size == 0:
        raise CheckpointError(f"{shown}: the checkpoint is empty (0 bytes): training did not finish writing it; {RETRAIN}.")
    if not zipfile.is_zipfile(real):
        raise CheckpointError(
            f"{shown}: not a torch zip checkpoint (truncated, corrupted, or saved in another format); {RETRAIN}.")
    try:
        with zipfile.ZipFile(real) as archive:
            bad = archive.testzip()  # CRC of every member: a flipped byte still "loads" otherwise
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{shown}: the checkpoint archive is damaged ({type(exc).__name__}); {RETRAIN}.") from None
    if bad is not None:
        raise CheckpointError(f"{shown}: the checkpoint is corrupted (CRC mismatch in {bad}); {RETRAIN}.")
    if not any(name.endswith("data.pkl") for name in names):
        raise CheckpointError(f"{shown}: the zip file is not a torch checkpoint (no data.pkl inside); {RETRAIN}.")
    with _default_allowlist_only():
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(real))
        except Exception as exc:  # torch's wording is not shown: it may advise unsafe loading
            raise CheckpointError(
                f"{shown}: the file is not a checkpoint written by torch.save ({type(exc).__name__}); {RETRAIN}.") from None
    unexpected = sorted(set(unsafe) - EXTRA_SAFE_GLOBALS)
    if unexpected:
        raise CheckpointError(
            f"{shown}: refused: unpickling it would import {', '.join(unexpected)}, and mlloop loads only tensors "
            "and plain containers (a checkpoint that imports code can run code); save the hyper-parameters "
            f"as a plain dict with no objects and {RETRAIN}.")
    return real


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    project_root: str | os.PathLike | None = None, *, mmap: bool = False) -> Any:
    """Check, then ``torch.load(path, map_location=..., weights_only=True)``. No fallback.

    ``mmap=True`` maps tensor storages instead of reading them (cheap when only the metadata,
    e.g. epoch and step, is wanted)."""
    import torch

    real = check_checkpoint(path, project_root)
    shown = _shown(Path(path), Path(project_root) if project_root is not None else project_root_of(path))
    with _default_allowlist_only():
        try:
            return torch.load(real, map_location=map_location, weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:  # the weights-only unpickler said no
            raise CheckpointError(
                f"{shown}: refused: the checkpoint holds something other than tensors and plain containers "
                f"({type(exc).__name__}); save a state_dict and plain-dict hyper-parameters and {RETRAIN}.") from None
        except Exception as exc:  # e.g. map_location names a device this machine lacks
            first = (str(exc).strip().splitlines() or [""])[0]
            raise CheckpointError(
                f"{shown}: torch could not load the checkpoint ({type(exc).__name__}: {safe_message(first)}).") from None


@contextlib.contextmanager
def _default_allowlist_only() -> Iterator[None]:
    """Check and load against torch's built-in allowlist only: globals that code in this process
    registered (``add_safe_globals``, e.g. at a training script's import) are set aside meanwhile."""
    import torch.serialization as ts

    registered = list(ts.get_safe_globals())
    if registered:
        ts.clear_safe_globals()
    try:
        yield
    finally:
        if registered:
            ts.add_safe_globals(registered)


@contextlib.contextmanager
def forced_weights_only() -> Iterator[None]:
    """While a training script's own code runs (``load_for_eval``), any ``torch.load`` it makes
    is forced to ``weights_only=True`` even if it asks otherwise (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``
    wins over an explicit argument), and the opposite switch is unset."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def safe_message(text: str) -> str:
    """Text from a failed load with torch's advice to load unsafely taken out (never passed on)."""
    if re.search(r"weights_only", text, re.IGNORECASE):
        return ("the checkpoint was refused because it holds something other than tensors and plain "
                f"containers; save plain-dict hyper-parameters and {RETRAIN}")
    return text


# ---- training scripts -----------------------------------------------------------------------

def import_script(path: str | os.PathLike, module_name: str | None = None) -> ModuleType:
    """Import a training script by path without running its ``main`` (``__name__`` is not
    ``"__main__"``). File names start with digits, so this goes through
    ``importlib.util.spec_from_file_location``. The script's folder is on ``sys.path`` while it
    imports, as it would be when run directly."""
    path = Path(path).resolve()
    if not path.is_file():
        raise MlloopError(f"{path.name}: the script does not exist; author it first (mlloop new-version).")
    name = module_name or "mlloop_script_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MlloopError(f"{path.name}: cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    # No __pycache__/ in the user's project: the script (and what it imports from its folder) is
    # compiled in memory only. A module imported here for the first time stays cached in memory.
    wrote_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise MlloopError(f"{path.name}: syntax error at line {exc.lineno}: {exc.msg}; fix the script.") from None
    except Exception as exc:
        sys.modules.pop(name, None)
        line = _line_in(exc, path)
        where = f" at line {line}" if line else ""
        raise MlloopError(
            f"{path.name}: importing it failed{where}: {type(exc).__name__}: {safe_message(str(exc))}; "
            "a script must do no work at import.") from None
    finally:
        sys.dont_write_bytecode = wrote_bytecode
        if added:
            try:
                sys.path.remove(folder)
            except ValueError:
                pass
    return module


def _line_in(exc: BaseException, path: Path) -> int | None:
    """The last line of ``path`` in the exception's traceback (where the script went wrong)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
