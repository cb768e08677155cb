"""CPU defaults that fit the machine and the data (issue 11): threads, workers, image size."""

import json
import os
from pathlib import Path

import pytest
import torch

from mlloop.errors import MlloopError
from mlloop.runtime import defaults
from train_fixture import image_prepdata, install_script, ocr_prepdata, load_script, one_thread, v001_header, write_rules  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_root(tmp_path: Path, cgroup: str, files: dict) -> Path:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    for rel, text in files.items():
        path = tmp_path / "sys/fs/cgroup" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_cgroup_v2_quota_is_the_tightest_along_the_path(tmp_path):
    root = fake_root(tmp_path, "0::/user.slice/job\n", {"user.slice/job/cpu.max": "300000 100000\n",
                                                       "user.slice/cpu.max": "150000 100000\n", "cpu.max": "max 100000"})
    assert defaults.cgroup_cpu_limit(root) == (1.5, "cgroup v2 sys/fs/cgroup/user.slice/cpu.max")
    cpus, why = defaults.usable_cpus(root)
    assert cpus == 1 and why.endswith("quota 1.5 CPUs (cgroup v2 sys/fs/cgroup/user.slice/cpu.max)")


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    v1 = fake_root(tmp_path / "a", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
                   {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"})
    assert defaults.cgroup_cpu_limit(v1) == (2.0, "cgroup v1 sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us")
    none = fake_root(tmp_path / "b", "1:cpu:/\n0::/\n", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000",
                                                         "cpu.max": "max 100000"})
    assert defaults.cgroup_cpu_limit(none) == (None, "no cgroup CPU quota")
    assert defaults.usable_cpus(none)[0] == len(os.sched_getaffinity(0))


def test_threads_follow_the_usable_cpus_unless_the_user_chose(monkeypatch):
    monkeypatch.setattr(defaults, "usable_cpus", lambda root=None: (3, "affinity 8, quota 3 CPUs (fake)"))
    monkeypatch.setattr(defaults, "load_per_cpu", lambda: 0.5)
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # restored (unset) after the test: the DDP case exports it
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(defaults, "_torch_default", torch.get_num_threads())  # as torch started
    monkeypatch.setattr(defaults, "_set_by_mlloop", None)
    assert defaults.set_threads(None)["value"] == 3 and torch.get_num_threads() == 3
    ddp = defaults.set_threads(None, processes=2)  # a second start: mlloop's own value is not the user's
    assert ddp["value"] == 1 and "exported as OMP_NUM_THREADS" in ddp["why"] and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert defaults.set_threads(4) == {"value": 4, "why": "the THREADS switch"} and torch.get_num_threads() == 4
    torch.set_num_threads(2)  # the script's own choice
    assert defaults.set_threads(None) == {"value": 2, "why": "set by the script (torch.set_num_threads before start); "
                                                             "left as set"}
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert defaults.set_threads(None)["why"] == "OMP_NUM_THREADS=5 (torch follows it; left as set)"
    assert torch.get_num_threads() == 2


def test_a_machine_already_busy_gets_fewer_threads(monkeypatch):
    monkeypatch.setattr(defaults, "usable_cpus", lambda root=None: (2, "affinity 2, no cgroup CPU quota"))
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(defaults, "_torch_default", torch.get_num_threads())
    monkeypatch.setattr(defaults, "_set_by_mlloop", None)
    monkeypatch.setattr(defaults, "load_per_cpu", lambda: 5.0)  # 10 runnable processes on 2 CPUs
    chosen = defaults.set_threads(None)
    assert chosen["value"] == 1 and torch.get_num_threads() == 1
    assert chosen["why"].startswith("2 usable CPUs (affinity 2, no cgroup CPU quota), 5.0 runnable processes per "
                                    "CPU already (load average): 1")
    monkeypatch.setattr(defaults, "load_per_cpu", lambda: 1.0)  # busy but not oversubscribed: all of them
    assert defaults.set_threads(None)["value"] == 2


@pytest.mark.parametrize("samples,cpus,accelerator,workers", [
    (100, 2, "cpu", 0), (5000, 1, "cpu", 0), (5000, 2, "cpu", 1), (2500, 16, "cpu", 3),
    (100000, 16, "cpu", 4), (100000, 16, "gpu", 8), (100000, 4, "gpu", 3)])
def test_workers_fit_the_cpus_and_the_dataset(samples, cpus, accelerator, workers):
    chosen = defaults.choose_workers(samples, cpus, accelerator)
    assert chosen["value"] == workers and chosen["value"] <= max(0, cpus - 1) and chosen["why"]


def write_meta(prepdata: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (prepdata / "common").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), prepdata / "common" / "df_meta.parquet")


def test_image_size_from_df_meta_is_the_median_train_side_rounded_and_capped(tmp_path):
    rows = [{"sample_id": str(i), "width": w, "height": h, "split": s}
            for i, (w, h, s) in enumerate([(60, 40, "train"), (61, 61, "train"), (50, 70, "train"), (300, 20, "train"),
                                           (1000, 1000, "valid"), (None, None, "train")])]
    write_meta(tmp_path, rows)
    chosen = defaults.choose_image_size(tmp_path, [])
    assert chosen["value"] == 64  # median of 60, 61, 70, 300 = 65.5 -> 64
    assert chosen["why"].startswith("median longer side 65.5 px over 4 images (common/df_meta.parquet)")
    write_meta(tmp_path, [{"width": 2000, "height": 1500, "split": "train"}])
    assert defaults.choose_image_size(tmp_path, [])["value"] == 224
    write_meta(tmp_path, [{"width": 8, "height": 8, "split": "train"}])
    assert defaults.choose_image_size(tmp_path, [])["value"] == 32


def test_line_height_and_width_buckets_from_df_meta(tmp_path):
    sizes = [(90, 30), (120, 30), (150, 40), (200, 30), (400, 30), (60, 20), (2000, 10)]  # (width, height)
    write_meta(tmp_path, [{"width": w, "height": h, "split": "train"} for w, h in sizes]
               + [{"width": 5000, "height": 500, "split": "valid"}])
    height = defaults.choose_line_height(tmp_path, [])
    assert height["value"] == 32  # median height 30 -> 32
    assert height["why"].startswith("median line height 30 px over 7 images (common/df_meta.parquet)")
    buckets = defaults.choose_width_buckets(tmp_path, [], 32)
    # widths at height 32, sorted: 96, 96, 120, 128, 213.3, 426.7, 6400 -> quartiles 96, 128, 426.7 -> 448,
    # and the maximum capped at 1024
    assert buckets["value"] == [96, 128, 448, 1024]
    write_meta(tmp_path, [{"width": 40, "height": 200, "split": "train"}])
    assert defaults.choose_line_height(tmp_path, [])["value"] == 64
    assert defaults.choose_width_buckets(tmp_path, [], 64)["value"] == [32]


@pytest.mark.slow
def test_image_size_from_the_images_when_df_meta_has_no_sizes_else_a_clear_error(tmp_path):
    prepdata = image_prepdata(tmp_path, n_train=6, n_valid=2, size=100)
    records = [json.loads(line) for line in (prepdata / "train/train.jsonl").read_text().splitlines()]
    chosen = defaults.choose_image_size(prepdata, records)
    assert chosen["value"] == 96 and "over 6 images (6 train images)" in chosen["why"]
    with pytest.raises(MlloopError, match=r"^IMAGE_SIZE is None \(from the data\), but no training image size"):
        defaults.choose_image_size(prepdata, [{"id": "a"}])


@pytest.mark.slow
def test_the_image_template_fills_its_none_settings_and_spec_says_why(tmp_path, capsys):
    write_rules(tmp_path, "image-classification", {"backbone": "test_resnet"}, training={"batch_size": 4})
    image_prepdata(tmp_path, n_train=8, n_valid=4, size=40)
    script = load_script(install_script(tmp_path, "image_classification", "02_train_v001.py", v001_header()), "t_dflt")
    script.main([])
    spec = json.loads((tmp_path / "Models/Artifacts/v001/spec.json").read_text())
    chosen = spec["runtime_defaults"]
    assert chosen["image_size"]["value"] == 32 and spec["model"]["image_size"] == 32  # median 40 -> 32
    assert chosen["num_workers"] == {"value": 0, "why": "8 training samples (< 512): starting workers costs more than "
                                                        "they save"}
    assert chosen["threads"]["value"] == 1 and "left as set" in chosen["threads"]["why"]  # the one_thread fixture
    assert spec["settings"]["IMAGE_SIZE"]["source"].startswith("runtime default: median longer side 40 px")
    out = capsys.readouterr().out
    assert "[mlloop] image_size: 32 (median longer side 40 px over 8 images" in out


@pytest.mark.slow
def test_the_ocr_template_fills_line_height_and_buckets_from_the_data(tmp_path):
    write_rules(tmp_path, "ocr-recognition",
                {"vision_backbone": "test_efficientnet", "vision_backbone_out_indices": [1], "MAX_TOKENS": 4,
                 "expected_stride": 4, "expected_channels": 24},
                training={"batch_size": 4}, metrics=["loss", "cer"], primary="cer")
    ocr_prepdata(tmp_path, n_train=8, n_valid=4, height=16)
    script = load_script(install_script(tmp_path, "ocr_recognition", "02_train_v001.py", v001_header()), "t_ocr_dflt")
    script.main([])
    spec = json.loads((tmp_path / "Models/Artifacts/v001/spec.json").read_text())
    chosen = spec["runtime_defaults"]
    assert chosen["h_target"]["value"] == 16 and spec["model"]["h_target"] == 16
    assert chosen["w_buckets"]["value"] == spec["model"]["w_buckets"]
    assert all(b % 32 == 0 for b in chosen["w_buckets"]["value"]) and chosen["w_buckets"]["value"] == sorted(
        set(chosen["w_buckets"]["value"]))
    assert spec["settings"]["W_BUCKETS"]["source"].startswith("runtime default: quartiles and maximum of 8 line widths")
