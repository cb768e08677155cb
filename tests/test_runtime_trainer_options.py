"""A version's TRAINER = {...} and callbacks() reach lightning's Trainer; the harness's keys are refused."""

import json

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlloop.errors import MlloopError
from mlloop.runtime import training
from mlloop.runtime.run import entry
from mlloop.runtime.trainer_options import check_callbacks, check_options
from mlloop.runtime.training import Devices, count_steps
from train_fixture import install_script, load_script, one_thread, tabular_prepdata, v001_header, write_rules  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = Devices("cpu", 1, 1, "auto")


class Tiny(L.LightningModule):
    def __init__(self, lr=0.05, optimizer="adam"):
        super().__init__()
        self.save_hyperparameters({"lr": lr, "optimizer": optimizer})
        torch.manual_seed(0)
        self.net = nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]), on_epoch=True)

    def configure_optimizers(self):
        opt = torch.optim.SGD if self.hparams.optimizer == "sgd" else torch.optim.Adam
        return opt(self.parameters(), lr=self.hparams.lr)


class TinyData(L.LightningDataModule):
    def __init__(self, n=24, batch_size=4, scale=1.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.ds = TensorDataset(scale * torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g))
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size, shuffle=False, drop_last=True)

    def val_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size)


def fit(tmp_path, module, data, epochs=1, options=None, callbacks=()):
    return training.fit(tmp_path, module, data, epochs=epochs, devices=CPU, precision="32-true",
                        callbacks=check_callbacks(list(callbacks)), **check_options(options or {}))


@pytest.mark.parametrize("clip", [None, 1e-3])
@pytest.mark.slow  # trains
def test_gradient_clip_val_bounds_the_update(tmp_path, clip):
    module = Tiny(lr=1.0, optimizer="sgd")
    before = module.net.weight.detach().clone()
    # one batch of large inputs: SGD with lr 1 moves the weights by the (clipped) gradient
    fit(tmp_path, module, TinyData(n=8, batch_size=8, scale=100.0), options={"gradient_clip_val": clip} if clip else {})
    moved = float(torch.linalg.vector_norm(module.net.weight.detach() - before))
    if clip:
        assert moved <= clip * 1.01
    else:
        assert moved > 0.1


@pytest.mark.parametrize("accumulate,steps", [(1, 6), (2, 3), (4, 2)])
@pytest.mark.slow  # trains
def test_accumulate_grad_batches_changes_the_optimizer_steps_and_count_steps_agrees(tmp_path, accumulate, steps):
    outcome = fit(tmp_path, Tiny(), TinyData(n=24, batch_size=4), options={"accumulate_grad_batches": accumulate})
    assert outcome.global_step == steps
    assert count_steps(24, 4, 1, 1, 1, accumulate=accumulate).per_epoch == steps


@pytest.mark.slow  # trains
def test_an_early_stopping_callback_stops_early(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping

    stop = EarlyStopping(monitor="val_loss", patience=0, min_delta=100.0, mode="min")  # nothing improves by 100
    outcome = fit(tmp_path, Tiny(), TinyData(), epochs=8, callbacks=[stop])
    assert outcome.epochs_run == 2 and stop.stopped_epoch == 1
    assert (tmp_path / "best.ckpt").is_file() and (tmp_path / "last.ckpt").is_file()


def test_harness_keys_unknown_keys_and_checkpoint_callbacks_are_refused_one_line_each():
    with pytest.raises(MlloopError) as err:
        check_options({"precision": "16-mixed", "gradient_clip_value": 1.0, "max_epochs": 9, "gradient_clip_val": 1.0})
    assert str(err.value).splitlines() == [
        "TRAINER['precision']: the harness owns precision (set it with the --PRECISION switch (bf16-mixed on GPUs "
        "that support it, 32-true on CPU)); remove it from TRAINER.",
        "TRAINER['gradient_clip_value']: not an argument of lightning.Trainer; did you mean 'gradient_clip_val'?",
        "TRAINER['max_epochs']: the harness owns max_epochs (epochs come from the rules (training_config.epochs; "
        "baseline_smoke_test.epoch in the smoke test)); remove it from TRAINER."]
    for key in ("devices", "accelerator", "strategy", "num_nodes", "logger", "enable_checkpointing", "callbacks",
                "default_root_dir"):
        with pytest.raises(MlloopError, match=rf"^TRAINER\['{key}'\]: the harness owns {key} "):
            check_options({key: None})
    with pytest.raises(MlloopError, match=r"accumulate_grad_batches'\]: expected a positive integer, got 0"):
        check_options({"accumulate_grad_batches": 0})
    from lightning.pytorch.callbacks import ModelCheckpoint

    with pytest.raises(MlloopError, match=r"^callbacks\(\) item 1 is a ModelCheckpoint: best.ckpt and last.ckpt"):
        check_callbacks([L.Callback(), ModelCheckpoint()])
    with pytest.raises(MlloopError, match=r"^callbacks\(\) item 0 is a str, not a lightning callback"):
        check_callbacks(["EarlyStopping"])


# ---- through a template: TRAINER as a setting, callbacks() in the script, spec.json -----------------

@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    write_rules(root, "tabular-classification", {"hidden": 32}, training={"batch_size": 8, "epochs": 2})
    tabular_prepdata(root)
    return root


def spec_of(root, vid="v001"):
    return json.loads((root / f"Models/Artifacts/{vid}/spec.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_a_template_forwards_trainer_and_records_it_with_the_rules_overrides(project, capsys):
    script = load_script(install_script(project, "tabular", "02_train_v001.py", v001_header()), "t_opts_v001")
    script.main(["--TRAINER={'accumulate_grad_batches': 2, 'gradient_clip_val': 0.5}"])
    spec = spec_of(project)
    # 40 samples, batch 8: 5 batches per epoch, one optimizer step per 2 of them (and one for the last) -> 3
    assert (spec["steps"]["per_epoch"], spec["steps"]["total"], spec["steps"]["accumulate_grad_batches"]) == (3, 6, 2)
    assert spec["training"]["global_step"] == 6
    assert spec["trainer"] == {"options": {"accumulate_grad_batches": 2, "gradient_clip_val": 0.5}, "callbacks": []}
    assert spec["rules_overrides"] == [{"setting": "HIDDEN", "script": 128, "rules": 32, "path": "model_config.hidden"}]
    out = capsys.readouterr().out
    assert "[mlloop] HIDDEN = 32 from the rules (model_config.hidden), not the script's 128" in out
    assert "[mlloop] Trainer options from the script: accumulate_grad_batches=2, gradient_clip_val=0.5" in out


@pytest.mark.slow  # trains
def test_a_versions_callbacks_function_reaches_the_trainer(project):
    path = install_script(project, "tabular", "02_train_v001.py", v001_header())
    text = path.read_text(encoding="utf-8")
    early = ('    from lightning.pytorch.callbacks import EarlyStopping\n\n'
             '    return [EarlyStopping("val_loss", patience=0, min_delta=100.0)]\n')
    path.write_text(text.replace('    return []\n', early, 1), encoding="utf-8")
    write_rules(project, "tabular-classification", {"hidden": 32}, training={"batch_size": 8, "epochs": 6})
    load_script(path, "t_cb_v001").main([])
    spec = spec_of(project)
    assert spec["trainer"]["callbacks"] == ["EarlyStopping"]
    assert spec["training"]["global_step"] == 2 * 5 < spec["steps"]["total"] == 6 * 5  # stopped after 2 of 6 epochs


@pytest.mark.slow  # trains
def test_a_harness_key_in_trainer_stops_the_run_before_anything_is_written(project, capsys):
    script = load_script(install_script(project, "tabular", "02_train_v001.py", v001_header()), "t_bad_opts")
    assert entry(script.main, ["--TRAINER={'devices': 4}"]) == 1
    err = capsys.readouterr().err
    assert err == ("Error: TRAINER['devices']: the harness owns devices (devices come from the rules (num_gpus, "
                   "num_nodes) or the --CPU_DEVICES switch); remove it from TRAINER.\n")
    assert not (project / "Models/Artifacts/v001").exists()
