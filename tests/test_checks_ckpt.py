"""The checkpoint scanner (mlloop.checkpoint_scan): real Lightning checkpoints pass; anything that would
run code when loaded is reported, without torch and without executing it."""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import shutil
import zipfile

import pytest
from click.testing import CliRunner

from mlloop.checks import run_check
from mlloop.checkpoint_scan import inspect_checkpoint, pickle_globals
from mlloop.cli import cli


class RunsCode:
    """Unpickling this calls os.system: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def lightning_ckpts(tmp_path_factory):
    """best.ckpt / last.ckpt written by a real (tiny) Lightning run on CPU, plus a weights-only one."""
    import torch
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(L.LightningModule):
        def __init__(self, num_classes: int = 3, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, num_classes))

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}

    out = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,)))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out,
                        callbacks=[ModelCheckpoint(dirpath=out, filename="best", monitor="val_loss", save_last=True)])
    trainer.fit(Tiny(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    trainer.save_checkpoint(out / "weights.ckpt", weights_only=True)
    return out


@pytest.mark.slow  # trains
def test_real_lightning_checkpoints_are_sound(lightning_ckpts):
    for name in ("best.ckpt", "last.ckpt", "weights.ckpt"):
        assert inspect_checkpoint(lightning_ckpts / name) == [], name
    with zipfile.ZipFile(lightning_ckpts / "last.ckpt") as zf:
        top = zf.namelist()[0].split("/")[0]
        found = pickle_globals(zf.open(f"{top}/data.pkl"))
    # What a Lightning checkpoint really imports (the allowlist is built from this).
    assert "torch._utils._rebuild_tensor_v2" in found and "collections.OrderedDict" in found


@pytest.mark.slow  # trains
def test_project_with_real_checkpoints_passes(factory, lightning_ckpts):
    factory.complete(versions=1)
    for name in ("best.ckpt", "last.ckpt"):
        shutil.copyfile(lightning_ckpts / name, factory.root / "Models/Artifacts/v001" / name)
    factory.evaluation("v001", 0.6)  # re-record the checkpoint's sha256
    result = CliRunner().invoke(cli, ["check", "--project", str(factory.root)])
    assert result.exit_code == 0, result.output


def test_malicious_checkpoint_is_reported_and_never_run(factory, tmp_path, monkeypatch):
    import torch
    marker = tmp_path / "PWNED"
    factory.complete(versions=1)
    bad = factory.root / "Models/Artifacts/v001/best.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": RunsCode(marker)}, bad)
    factory.evaluation("v001", 0.6)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # would make a careless torch.load run it
    before = factory.snapshot()

    result = CliRunner().invoke(cli, ["check", "v001", "--project", str(factory.root), "--json"])

    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    unsafe = [p for p in problems if p["code"] == "ckpt.unsafe"]
    assert unsafe and unsafe[0]["path"] == "Models/Artifacts/v001/best.ckpt"
    assert "would run code when loaded" in unsafe[0]["message"] and "posix.system" in unsafe[0]["message"]
    assert "weights_only=False" not in result.output
    assert not marker.exists()
    assert factory.snapshot() == before


def _zip_ckpt(path, pkl: bytes, top="archive", names=("data.pkl", "version", "byteorder")):
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            z.writestr(f"{top}/{name}", pkl if name == "data.pkl" else b"3\n" if name == "version" else b"little")
    return path


def test_protocol_4_stack_global_is_resolved(tmp_path):
    marker = tmp_path / "PWNED"
    path = _zip_ckpt(tmp_path / "p4.ckpt", pickle.dumps({"x": RunsCode(marker)}, protocol=4))
    found = inspect_checkpoint(path)
    assert [p.code for p in found] == ["ckpt.unsafe"] and "posix.system" in found[0].message
    assert not marker.exists()


def test_stack_global_through_the_memo_is_resolved():
    # 'os' and 'system' are memoised, popped, then fetched back for STACK_GLOBAL.
    ops = (b"\x80\x04" + b"\x8c\x02os\x94" + b"\x8c\x06system\x94" + b"00"
           + b"h\x00h\x01\x93" + b"\x8c\x04true\x85R." )
    pickletools.dis(ops, out=io.StringIO())  # a well-formed pickle
    assert pickle_globals(io.BytesIO(ops)) == ["os.system"]


def test_hyper_parameters_as_objects_are_reported(tmp_path):
    import argparse

    path = _zip_ckpt(tmp_path / "ns.ckpt", pickle.dumps({"hyper_parameters": argparse.Namespace(lr=0.1)}, protocol=2))
    found = inspect_checkpoint(path)
    assert [p.code for p in found] == ["ckpt.unsafe"] and "argparse.Namespace" in found[0].message


@pytest.mark.parametrize("make, code", [
    (lambda p, good: p.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2]), "ckpt.not_zip"),
    (lambda p, good: p.write_bytes(b""), "ckpt.empty"),
    (lambda p, good: p.write_bytes(os.urandom(256)), "ckpt.not_zip"),
    (lambda p, good: _zip_ckpt(p, pickle.dumps({}), names=("data.pkl", "version")), "ckpt.layout"),
    (lambda p, good: zipfile.ZipFile(p, "w").writestr("loose.pkl", b"x"), "ckpt.layout"),
    (lambda p, good: _zip_ckpt(p, pickle.dumps({"a": list(range(50))}, protocol=2)[:-9]), "ckpt.corrupt"),
], ids=["truncated", "empty", "random-bytes", "no-byteorder", "no-top-folder", "pickle-cut"])
@pytest.mark.slow  # trains
def test_broken_checkpoints(tmp_path, lightning_ckpts, make, code):
    path = tmp_path / "bad.ckpt"
    make(path, lightning_ckpts / "best.ckpt")
    assert [p.code for p in inspect_checkpoint(path)] == [code]


def test_check_reports_a_broken_checkpoint_once_with_its_file(factory):
    factory.complete(versions=1)
    (factory.root / "Models/Artifacts/v001/last.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    found = run_check(factory.project, "v001")
    assert [(p.code, p.path) for p in found.problems] == [("ckpt.not_zip", "Models/Artifacts/v001/last.ckpt")]


# ---- issue 13: a fixed budget for the scan, and the report refuses what is not weights-only ------

def _opcode_bomb(n: int) -> bytes:
    """data.pkl of n NONE/POP pairs: a few KB compressed, 2n opcodes to walk."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb/data.pkl", b"\x80\x02" + b"N0" * n + b"N.")
        z.writestr("bomb/version", "3\n")
        z.writestr("bomb/byteorder", "little")
    return buf.getvalue()


@pytest.mark.slow
def test_a_pickle_of_millions_of_opcodes_is_refused_within_the_budget(tmp_path):
    from mlloop.checkpoint_scan import MAX_PICKLE_OPS, PickleTooLong

    path = tmp_path / "bomb.ckpt"
    path.write_bytes(_opcode_bomb(3_000_000))  # 6 million opcodes
    assert path.stat().st_size < 100_000
    [problem] = inspect_checkpoint(path)
    assert problem.code == "ckpt.too_complex"
    assert problem.message.startswith(f"bomb/data.pkl has more than {MAX_PICKLE_OPS:,} pickle opcodes")
    with pytest.raises(PickleTooLong):
        pickle_globals(io.BytesIO(b"\x80\x02" + b"N0" * 50 + b"N."), max_ops=100)
    assert pickle_globals(io.BytesIO(b"\x80\x02" + b"N0" * 48 + b"N."), max_ops=100) == []  # 99 opcodes


@pytest.mark.slow  # trains
def test_real_checkpoints_are_far_inside_the_opcode_budget(lightning_ckpts):
    from mlloop.checkpoint_scan import MAX_PICKLE_OPS

    with zipfile.ZipFile(lightning_ckpts / "last.ckpt") as zf:
        top = zf.namelist()[0].split("/")[0]
        ops = sum(1 for _ in pickletools.genops(zf.open(f"{top}/data.pkl")))
    assert ops * 100 < MAX_PICKLE_OPS


def test_report_refuses_to_copy_a_checkpoint_that_is_not_weights_only(factory, tmp_path):
    from types import SimpleNamespace

    from mlloop.errors import MlloopError
    from mlloop.final_report import copy_best

    factory.complete(versions=1)
    folder = factory.root / "Models/Artifacts/v001"
    (folder / "best.ckpt").write_bytes(_unsafe_ckpt_bytes(tmp_path))
    dest = factory.root / "Models/Report/x/Artifacts/v001"
    with pytest.raises(MlloopError) as err:
        copy_best(factory.project, SimpleNamespace(folder=folder), dest)
    assert str(err.value).startswith("Models/Artifacts/v001/best.ckpt: would run code when loaded: data.pkl imports posix.system")
    assert "was not built" in str(err.value)
    assert not (dest / "best.ckpt").exists()


def test_report_copies_a_weights_only_checkpoint(factory):
    from types import SimpleNamespace

    from mlloop.final_report import copy_best

    factory.complete(versions=1)
    folder = factory.root / "Models/Artifacts/v001"
    dest = factory.root / "Models/Report/x/Artifacts/v001"
    copy_best(factory.project, SimpleNamespace(folder=folder), dest)
    assert (dest / "best.ckpt").read_bytes() == (folder / "best.ckpt").read_bytes()


def _unsafe_ckpt_bytes(tmp_path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("best/data.pkl", pickle.dumps({"state_dict": {}, "x": RunsCode(tmp_path / "RAN")}, protocol=2))
        z.writestr("best/version", "3\n")
        z.writestr("best/byteorder", "little")
    return buf.getvalue()


def test_a_fifo_checkpoint_is_refused_unopened(tmp_path):
    path = tmp_path / "best.ckpt"
    os.mkfifo(path)
    assert [p.code for p in inspect_checkpoint(path)] == ["ckpt.not_a_file"]
