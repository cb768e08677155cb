"""Checkpoints load through one door: weights only, no fallback, and mlloop's own wording.

A malicious checkpoint (a pickle whose payload touches a marker file) must be refused without
the payload running, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 exported, and no message may
suggest the unsafe setting. Broken files (garbage, truncated, empty, legacy pickle, bit flip)
give one clean line each.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import eval_fixture as fx
from mlloop.errors import MlloopError
from mlloop.runtime.checkpoint import CheckpointError, check_checkpoint, import_script, load_checkpoint

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
UNSAFE_ADVICE = re.compile(r"weights_only\s*=\s*False", re.IGNORECASE)


class Payload:
    """Unpickling this runs ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"weight": torch.zeros(1)}, "hyper_parameters": Payload(marker)}, path)
    return path


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    (root / "Models/Artifacts/v001").mkdir(parents=True)
    return root


def ckpt(root: Path) -> Path:
    return root / "Models/Artifacts/v001/best.ckpt"


def assert_clean(message: str, name: str = "best.ckpt") -> None:
    assert "\n" not in message and name in message
    assert not UNSAFE_ADVICE.search(message) and "weights_only" not in message


def test_a_good_checkpoint_loads(proj):
    fx.save_checkpoint(ckpt(proj))
    data = load_checkpoint(ckpt(proj))
    assert data["hyper_parameters"] == {"in_features": 4, "num_classes": 3}
    assert torch.equal(data["state_dict"]["weight"].diagonal(), torch.ones(3))


@pytest.mark.parametrize("force_unsafe", [False, True])
def test_malicious_checkpoint_is_refused_and_never_runs(proj, tmp_path, monkeypatch, force_unsafe):
    if force_unsafe:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "PAYLOAD_RAN"
    malicious(ckpt(proj), marker)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt(proj))
    assert str(err.value).startswith("Models/Artifacts/v001/best.ckpt: refused: unpickling it would import posix.system")
    assert_clean(str(err.value))
    assert not marker.exists()


def test_no_fallback_when_the_precheck_is_bypassed(proj, tmp_path, monkeypatch):
    """Even if the globals scan missed something, torch.load runs with weights_only=True only."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(torch.serialization, "get_unsafe_globals_in_checkpoint", lambda f: [])
    marker = tmp_path / "PAYLOAD_RAN"
    malicious(ckpt(proj), marker)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt(proj))
    assert "refused: the checkpoint holds something other than tensors and plain containers (UnpicklingError)" in str(err.value)
    assert_clean(str(err.value))
    assert not marker.exists()


def test_globals_registered_in_process_do_not_widen_the_allowlist(proj, tmp_path):
    """A training script could call add_safe_globals at import; the check ignores that."""
    marker = tmp_path / "PAYLOAD_RAN"
    malicious(ckpt(proj), marker)
    torch.serialization.add_safe_globals([os.system])
    try:
        with pytest.raises(CheckpointError, match="would import posix.system"):
            load_checkpoint(ckpt(proj))
        assert os.system in torch.serialization.get_safe_globals()  # restored afterwards
    finally:
        torch.serialization.clear_safe_globals()
    assert not marker.exists()


def _good_bytes(tmp_path: Path) -> bytes:
    fx.save_checkpoint(tmp_path / "good.ckpt")
    return (tmp_path / "good.ckpt").read_bytes()


def _flip_tensor_byte(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and not i.filename.endswith("serialization_id"))
    # the data starts after the local header, whose extra field (torch pads for alignment) may
    # differ from the central directory's copy
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    offset = info.header_offset + 30 + name_len + extra_len
    out = bytearray(data)
    out[offset] ^= 0xFF
    return bytes(out)


def _zip_without_pickle() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "not a checkpoint")
    return buf.getvalue()


BROKEN = {
    "garbage": (lambda good: b"this is not a checkpoint at all\n" * 8,
                "not a torch zip checkpoint (truncated, corrupted, or saved in another format)"),
    "truncated": (lambda good: good[: len(good) // 2], "not a torch zip checkpoint"),
    "empty": (lambda good: b"", "the checkpoint is empty (0 bytes)"),
    "legacy_pickle": (lambda good: pickle.dumps({"state_dict": {}}), "not a torch zip checkpoint"),
    "bit_flip": (_flip_tensor_byte, "the checkpoint is corrupted (CRC mismatch in"),
    "zip_not_torch": (lambda good: _zip_without_pickle(), "the zip file is not a torch checkpoint (no data.pkl inside)"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_checkpoints_give_one_clean_line(proj, tmp_path, kind):
    make, expected = BROKEN[kind]
    ckpt(proj).write_bytes(make(_good_bytes(tmp_path)))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ckpt(proj))
    message = str(err.value)
    assert message.startswith("Models/Artifacts/v001/best.ckpt: ") and expected in message
    assert message.endswith("retrain the version so that a fresh best.ckpt is written.")
    assert_clean(message)


def test_path_gates(proj, tmp_path):
    with pytest.raises(CheckpointError, match=r"best\.ckpt: the checkpoint does not exist; train the version first"):
        check_checkpoint(ckpt(proj))
    ckpt(proj).mkdir()
    with pytest.raises(CheckpointError, match=r"best\.ckpt: the checkpoint is not a regular file"):
        check_checkpoint(ckpt(proj))
    ckpt(proj).rmdir()
    outside = tmp_path / "elsewhere.ckpt"
    fx.save_checkpoint(outside)
    ckpt(proj).symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"best\.ckpt: the checkpoint resolves outside the project"):
        check_checkpoint(ckpt(proj))
    # a link that stays inside the project (Lightning's save_last="link") is fine
    ckpt(proj).unlink()
    fx.save_checkpoint(proj / "Models/Artifacts/v001/real.ckpt")
    ckpt(proj).symlink_to("real.ckpt")
    assert check_checkpoint(ckpt(proj)) == (proj / "Models/Artifacts/v001/real.ckpt").resolve()


def _loads_checkpoints(source: str) -> bool:
    """A call of torch.load(...) or *.load_from_checkpoint(...) (docstrings and comments do not count)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr == "load_from_checkpoint":
                return True
            if func.attr == "load" and isinstance(func.value, ast.Name) and func.value.id == "torch":
                return True
    return False


def test_only_checkpoint_py_calls_torch_load():
    """The one door: no other module, template or skill file calls torch.load."""
    offenders = []
    for folder in ("helpers", "skills", "examples"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "checkpoint.py" and path.parent.name == "runtime":
                continue
            try:
                if _loads_checkpoints(path.read_text(encoding="utf-8")):
                    offenders.append(path.relative_to(REPO).as_posix())
            except (SyntaxError, UnicodeDecodeError):
                continue  # not Python we can read; other tests own its syntax
    assert offenders == [], f"load checkpoints through mlloop.runtime.checkpoint.load_checkpoint: {offenders}"


def test_import_script_does_not_run_main(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "02_train_v001.py"
    script.write_text(fx.TRAIN_SCRIPT)
    module = import_script(script)
    assert callable(module.predict) and module.CLASSES == ["cat", "dog", "fox"]
    assert not (tmp_path / "MAIN_RAN").exists()
    bad = tmp_path / "02_train_v002.py"
    bad.write_text("X = 1\nraise RuntimeError('work at import')\n")
    with pytest.raises(MlloopError, match=r"^02_train_v002\.py: importing it failed at line 2: RuntimeError: work at import;"):
        import_script(bad)
    bad.write_text("def broken(:\n")
    with pytest.raises(MlloopError, match=r"^02_train_v002\.py: syntax error at line 1"):
        import_script(bad)


def test_import_script_leaves_no_bytecode_in_the_project(tmp_path, monkeypatch):
    """Users' Pythons write bytecode; importing a version script must not leave __pycache__/."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    (tmp_path / "project_helpers_i13.py").write_text("VALUE = 3\n")
    script = tmp_path / "02_train_v001.py"
    script.write_text("import project_helpers_i13\nX = project_helpers_i13.VALUE\n")
    module = import_script(script)
    assert module.X == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["02_train_v001.py", "project_helpers_i13.py"]
    assert sys.dont_write_bytecode is False  # restored
    sys.modules.pop("project_helpers_i13", None)


# ---- through 03_eval.py, as `mlloop report` runs it -----------------------------------------

def _run_eval(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    env.pop("MLLOOP_DEBUG", None)
    return subprocess.run([sys.executable, "03_eval.py", "--version", "v001"], cwd=root, capture_output=True,
                          text=True, timeout=300, env=env)


def test_03_eval_refuses_a_malicious_checkpoint(tmp_path):
    root = fx.build_project(tmp_path / "proj")
    marker = tmp_path / "PAYLOAD_RAN"
    malicious(ckpt(root), marker)
    result = _run_eval(root)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "Error: Models/Artifacts/v001/best.ckpt: refused: unpickling it would import posix.system")
    assert "Traceback" not in result.stdout + result.stderr
    assert not UNSAFE_ADVICE.search(result.stdout + result.stderr) and "weights_only" not in result.stderr
    assert not marker.exists()
    assert not (root / "Models/Artifacts/v001/eval_score.json").exists()


def test_03_eval_garbage_checkpoint_is_one_line(tmp_path):
    root = fx.build_project(tmp_path / "proj")
    ckpt(root).write_bytes(b"\x00garbage" * 64)
    result = _run_eval(root)
    assert result.returncode == 1
    assert result.stderr == ("Error: Models/Artifacts/v001/best.ckpt: not a torch zip checkpoint (truncated, corrupted, "
                             "or saved in another format); retrain the version so that a fresh best.ckpt is written.\n")
