"""The shared Trainer set-up, settings, folders, steps and reports of mlloop.runtime (CPU, tiny)."""

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlloop.errors import MlloopError
from mlloop.layout import Project
from mlloop.runtime import artifacts, callbacks, config, smoke_retry_reports, training
from mlloop.runtime.training import Devices, count_steps, derive_train_batch_size
from train_fixture import one_thread  # noqa: F401  (a fixture: one torch thread)

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = Devices("cpu", 1, 1, "auto")


class Tiny(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)
        self.net = nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class TinyData(L.LightningDataModule):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.ds = TensorDataset(torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g))
        self.batch_size = 8

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size)


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.slow  # trains
def test_trainer_writes_exactly_best_last_and_csv_logs_that_load_weights_only(tmp_path):
    hparams = {"lr": 0.05, "layers": [4, 3], "name": "tiny", "extra": {"a": 1, "b": None}}
    outcome = training.fit(tmp_path, Tiny(hparams), TinyData(), epochs=3, devices=CPU, precision="32-true",
                           steps_per_epoch=3)
    assert tree(tmp_path) == ["best.ckpt", "last.ckpt", "logs/version_0/hparams.yaml", "logs/version_0/metrics.csv"]
    assert not (tmp_path / "last.ckpt").is_symlink() and not (tmp_path / "best.ckpt").is_symlink()
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert type(best["hyper_parameters"]) is dict and best["hyper_parameters"] == hparams
    assert "optimizer_states" not in best and "callbacks" not in best          # weights only: small
    assert last["optimizer_states"] and last["epoch"] == 2                       # full state: resumable
    assert (tmp_path / "best.ckpt").stat().st_size < (tmp_path / "last.ckpt").stat().st_size
    restored = Tiny(best["hyper_parameters"])
    restored.load_state_dict(best["state_dict"])
    assert outcome.best["monitor"] == "val_loss" and outcome.best["mode"] == "min"
    assert outcome.best["epoch"] == best["epoch"] and outcome.best["step"] == best["global_step"]
    assert outcome.best["score"] is not None
    header = (tmp_path / "logs/version_0/metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "step", "val_loss", "train_loss_step", "train_loss_epoch"} <= set(header)
    assert "lr: 0.05" in (tmp_path / "logs/version_0/hparams.yaml").read_text()


@pytest.mark.slow  # trains
def test_an_object_in_the_hyperparameters_makes_checkpoints_unloadable_weights_only(tmp_path):
    # Why the templates keep hparams a plain dict: a Path (any object) needs unsafe unpickling.
    # The runtime refuses it right after training, in its own words (no advice to load unsafely).
    with pytest.raises(MlloopError, match=r"best.ckpt does not load with weights_only=True \(.*unpickling it would "
                                          r"import pathlib.PosixPath.*\); pass save_hyperparameters a plain dict"):
        training.fit(tmp_path, Tiny({"lr": 0.05, "where": Path("/tmp")}), TinyData(), epochs=1, devices=CPU,
                     precision="32-true")
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(tmp_path / "best.ckpt", weights_only=True)


@pytest.mark.slow  # trains
def test_missing_monitor_is_a_clear_error(tmp_path):
    class NoVal(Tiny):
        def validation_step(self, batch, batch_idx):
            return None

    with pytest.raises(Exception, match="val_loss"):
        training.fit(tmp_path, NoVal({"lr": 0.1}), TinyData(), epochs=1, devices=CPU, precision="32-true")


class Quiet(Tiny):
    """Returns its loss without logging it, as the templates do; remembers each step's loss."""

    def __init__(self, hparams: dict):
        super().__init__(hparams)
        self.losses: list[list[float]] = []

    def on_train_epoch_start(self):
        self.losses.append([])

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.losses[-1].append(float(loss.detach()))
        return loss


def metric_rows(folder: Path, column: str) -> list[tuple[int, int, float]]:
    """(epoch, step, value) of each metrics.csv row that has ``column``."""
    import csv

    with open(folder / "logs/version_0/metrics.csv", newline="") as fh:
        return [(int(r["epoch"]), int(r["step"]), float(r[column])) for r in csv.DictReader(fh) if r.get(column)]


@pytest.mark.slow  # trains
def test_the_harness_logs_the_returned_loss_per_logged_step_and_as_the_epoch_mean(tmp_path):
    module = Quiet({"lr": 0.05})
    training.fit(tmp_path, module, TinyData(), epochs=2, devices=CPU, precision="32-true", steps_per_epoch=3,
                 log_every_n_steps=2)
    losses = [x for epoch in module.losses for x in epoch]
    assert len(losses) == 6
    # Lightning writes every second step (global steps 2, 4, 6; its step column counts from 0)
    assert metric_rows(tmp_path, "train_loss_step") == [
        (0, 1, pytest.approx(losses[1])), (1, 3, pytest.approx(losses[3])), (1, 5, pytest.approx(losses[5]))]
    assert [(e, v) for e, _, v in metric_rows(tmp_path, "train_loss_epoch")] == [
        (e, pytest.approx(sum(xs) / len(xs))) for e, xs in enumerate(module.losses)]


@pytest.mark.slow  # trains
def test_the_logged_loss_is_not_divided_by_gradient_accumulation(tmp_path):
    module = Quiet({"lr": 0.05})
    training.fit(tmp_path, module, TinyData(), epochs=1, devices=CPU, precision="32-true", steps_per_epoch=3,
                 log_every_n_steps=1, accumulate_grad_batches=3)
    assert [v for _, _, v in metric_rows(tmp_path, "train_loss_epoch")] == [
        pytest.approx(sum(module.losses[0]) / 3)]


@pytest.mark.slow  # trains
def test_a_script_that_logs_train_loss_itself_keeps_its_own_values(tmp_path):
    class Own(Quiet):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", 2 * loss, on_step=True, on_epoch=True)  # not what it returns
            return loss

    module = Own({"lr": 0.05})
    training.fit(tmp_path, module, TinyData(), epochs=2, devices=CPU, precision="32-true", steps_per_epoch=3,
                 log_every_n_steps=1)
    losses = [x for epoch in module.losses for x in epoch]
    assert [(s, v) for _, s, v in metric_rows(tmp_path, "train_loss_step")] == [
        (i, pytest.approx(2 * x)) for i, x in enumerate(losses)]
    assert [v for _, _, v in metric_rows(tmp_path, "train_loss_epoch")] == [
        pytest.approx(2 * sum(xs) / len(xs)) for xs in module.losses]


def test_checkpoint_callbacks_keep_lightnings_state_key_and_compute_it_once():
    from lightning.pytorch.callbacks import ModelCheckpoint

    args = dict(dirpath="/nowhere", filename="best", monitor="val_loss", mode="min")
    once, plain = callbacks.keyed_once(ModelCheckpoint)(**args), ModelCheckpoint(**args)
    assert once.state_key == plain.state_key and once.state_key.startswith("ModelCheckpoint{")
    once.mode = "max"  # not a change Lightning makes after __init__: shows the key is not formatted again
    assert once.state_key == plain.state_key


def test_devices_and_precision():
    assert training.resolve_devices(0) == Devices("cpu", 1, 1, "auto")
    assert training.resolve_devices(None).accelerator == ("gpu" if torch.cuda.is_available() else "cpu")
    assert training.resolve_devices(0, cpu_devices=2) == Devices("cpu", 2, 1, "ddp")
    assert training.resolve_precision(CPU) == "32-true"
    assert training.resolve_precision(CPU, "bf16-mixed") == "bf16-mixed"
    if not torch.cuda.is_available():
        with pytest.raises(MlloopError, match=r"training_config.num_gpus is 2 but 0 GPU\(s\) are visible"):
            training.resolve_devices(2)


def test_steps_and_the_too_few_warning_carry_the_numbers():
    # issue 7's case: 670 training lines, batch 64 (drop_last), 3 epochs -> 10 steps/epoch, 30 in total
    steps = count_steps(670, 64, 3, min_steps_per_epoch=10, min_total_steps=200)
    assert (steps.per_epoch, steps.total, steps.too_few) == (10, 30, True)
    assert steps.warning == ("30 optimizer steps in total is below min_total_steps=200 (batch 64, 670 training "
                             "samples, 3 epoch(s)): the model may not learn; to fix it, raise training_config.epochs "
                             "to ≥ 20 (the user's rules) or use a batch size ≤ 10 (training_config.batch_size in the "
                             "rules, or BATCH_SIZE in the next version's script when the rules leave it open).")
    few = count_steps(40, 32, 1, min_steps_per_epoch=10, min_total_steps=5)
    assert few.warning.startswith("1 optimizer steps per epoch is below min_steps_per_epoch=10 and 1 optimizer "
                                  "steps in total is below min_total_steps=5 (batch 32, 40 training samples")
    # never advise a batch too small for BatchNorm (the agent trial followed "batch ≤ 2" into a crash)
    tiny = count_steps(147, 4, 3, min_steps_per_epoch=10, min_total_steps=200)
    assert (tiny.per_epoch, tiny.total) == (36, 108)
    assert tiny.warning.endswith("to fix it, raise training_config.epochs to ≥ 6 (the user's rules) or (a batch small "
                                 "enough would be ≤ 2: too small for BatchNorm statistics, so more epochs or more data "
                                 "is the way).")
    ddp = count_steps(100, 8, 2, 1, 1, world_size=2)
    assert (ddp.per_epoch, ddp.total) == (6, 12)
    assert count_steps(100, 8, 3, 10, 30).warning is None
    assert count_steps(100, 8, 3, 10, 30).to_dict()["too_few"] is False


def test_training_batch_size_is_derived_so_that_enough_steps_remain():
    assert derive_train_batch_size(64, 670, 3, 10, 200, floor=4) == 8    # 84 steps/epoch, 252 in total
    assert derive_train_batch_size(64, 100000, 3, 10, 200, floor=4) == 64  # plenty of data: the memory fit
    assert derive_train_batch_size(32, 20, 1, 10, 200, floor=4) == 4      # never below min_batch_size
    assert derive_train_batch_size(48, 100000, 1, 1, 1) == 32             # a power of two <= the fit


# ---- settings ---------------------------------------------------------------------------------

NAMESPACE = {"LR": 1e-3, "EPOCHS_HINT": 3, "BACKBONE": "resnet18", "SIZES": [1, 2], "FLAG": True, "OPT": None,
             "FROM_RULES": {"BACKBONE": "model_config.backbone"}, "TASK_TYPES": ("x",), "lower": 1, "_HIDDEN": 2}


def test_overrides_are_typed_and_unknown_keys_are_refused():
    got = config.parse_overrides(["--LR=3e-4", "--EPOCHS_HINT=5", "--BACKBONE=test_resnet", "--SIZES=[3]",
                                  "--FLAG=False", "--OPT=7", "--lr=1"], config.script_settings(NAMESPACE))
    # --lr=1: keys are upper-cased, and an int is accepted where the default is a float
    assert got == {"LR": 1.0, "EPOCHS_HINT": 5, "BACKBONE": "test_resnet", "SIZES": [3], "FLAG": False, "OPT": 7}
    assert type(got["LR"]) is float
    with pytest.raises(MlloopError, match=r"--NOPE: unknown setting; known: BACKBONE, EPOCHS_HINT"):
        config.parse_overrides(["--NOPE=1"], config.script_settings(NAMESPACE))
    with pytest.raises(MlloopError, match="--EPOCHS_HINT: expected int"):
        config.parse_overrides(["--EPOCHS_HINT=abc"], config.script_settings(NAMESPACE))
    with pytest.raises(MlloopError, match="--FLAG: expected True or False"):
        config.parse_overrides(["--FLAG=1"], config.script_settings(NAMESPACE))
    with pytest.raises(MlloopError, match="given as --KEY=VALUE"):
        config.parse_overrides(["LR=1"], config.script_settings(NAMESPACE))
    assert set(config.script_settings(NAMESPACE)) == {"LR", "EPOCHS_HINT", "BACKBONE", "SIZES", "FLAG", "OPT"}


def test_rules_win_over_the_script_and_the_command_line_over_both():
    rules = {"model_config": {"backbone": "test_resnet"}}
    settings, switches, sources = config.resolve_settings(NAMESPACE, ["--SMOKE=True"], rules, NAMESPACE["FROM_RULES"])
    assert settings["BACKBONE"] == "test_resnet" and sources["BACKBONE"] == "rules:model_config.backbone"
    assert switches["SMOKE"] is True and "SMOKE" not in settings
    settings, _, sources = config.resolve_settings(NAMESPACE, ["--BACKBONE=vit"], rules, NAMESPACE["FROM_RULES"])
    assert settings["BACKBONE"] == "vit" and sources["BACKBONE"] == "command line"
    settings, _, _ = config.resolve_settings(NAMESPACE, [], {"model_config": {"backbone": None}}, NAMESPACE["FROM_RULES"])
    assert settings["BACKBONE"] == "resnet18"  # a null in the rules leaves the script's value
    with pytest.raises(MlloopError, match="FROM_RULES maps NOPE"):
        config.resolve_settings(NAMESPACE, [], rules, {"NOPE": "x"})


# ---- the version folder -----------------------------------------------------------------------

def test_the_version_comes_from_the_file_name(tmp_path):
    for name, vid in (("02_train_baseline.py", "baseline"), ("02_train_v001.py", "v001"), ("02_train_v1000.py", "v1000")):
        paths = artifacts.paths_for_script(tmp_path / name)
        assert paths.vid == vid and paths.dir == tmp_path / "Models" / "Artifacts" / vid
    with pytest.raises(MlloopError, match="must be named 02_train_baseline.py or 02_train_vNNN.py"):
        artifacts.paths_for_script(tmp_path / "train.py")


def test_a_failed_run_is_moved_aside_keeping_tests_and_an_evaluated_one_is_refused(tmp_path):
    paths = artifacts.VersionPaths(Project(tmp_path), "v002", tmp_path / "02_train_v002.py")
    assert artifacts.prepare_version_dir(paths) is None and paths.dir.is_dir()
    (paths.dir / "_tests").mkdir()
    (paths.dir / "_tests" / "train_retry_report.md").write_text("# history\n")
    assert artifacts.prepare_version_dir(paths) is None  # only _tests/: nothing to move
    (paths.dir / "last.ckpt").write_bytes(b"partial")
    aside = artifacts.prepare_version_dir(paths)
    assert aside.parent == tmp_path / "Models/Artifacts/.trash" and (aside / "last.ckpt").read_bytes() == b"partial"
    assert sorted(p.name for p in paths.dir.iterdir()) == ["_tests"]
    assert (paths.dir / "_tests" / "train_retry_report.md").read_text() == "# history\n"
    (paths.dir / "eval_score.json").write_text("{}")
    with pytest.raises(MlloopError, match="already evaluated and is never retrained in place"):
        artifacts.prepare_version_dir(paths)


def test_rank_is_read_from_the_launchers_environment(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert artifacts.global_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert artifacts.global_rank() == 1 and not artifacts.is_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")
    assert not artifacts.is_rank_zero()
    monkeypatch.setenv("RANK", "0")
    assert artifacts.is_rank_zero()


def test_assets_are_listed_or_not_required(tmp_path):
    paths = artifacts.VersionPaths(Project(tmp_path), "v001", tmp_path / "02_train_v001.py")
    assert artifacts.assets_listing(paths) == "not_required"
    artifacts.save_asset(paths, "charset.json", {"charset": ["a", "b"]})
    artifacts.save_asset(paths, "notes.txt", "x")
    assert artifacts.assets_listing(paths) == ["charset.json", "notes.txt"]
    with pytest.raises(MlloopError, match="plain file name"):
        artifacts.save_asset(paths, "../escape.json", {})


# ---- reports ----------------------------------------------------------------------------------

def test_retry_attempts_round_trip_and_number_themselves(tmp_path):
    path = tmp_path / "_tests" / "train_retry_report.md"
    first = smoke_retry_reports.next_attempt([], status="FAIL", error=ValueError("Invalid learning rate: -1.0"), cause=None,
                                 change=None)
    smoke_retry_reports.append_retry_report(path, first, "v003")
    second = smoke_retry_reports.next_attempt(smoke_retry_reports.read_attempts(path.read_text()), status="PASS", error=None,
                                  cause="LR was negative", change="LR -1.0 -> 1e-3")
    smoke_retry_reports.append_retry_report(path, second, "v003")
    text = path.read_text()
    assert text.startswith("# Training retry report — v003\n")
    attempts = smoke_retry_reports.read_attempts(text)
    assert [(a.attempt, a.status) for a in attempts] == [(1, "FAIL"), (2, "PASS")]
    assert attempts[0].error_summary == "ValueError: Invalid learning rate: -1.0"
    assert attempts[0].root_cause_hypothesis == "none (first attempt)"
    assert (attempts[1].root_cause_hypothesis, attempts[1].code_change_summary) == ("LR was negative", "LR -1.0 -> 1e-3")
    assert "## Attempt 2\n- attempt: 2\n- error_summary: none\n" in text
