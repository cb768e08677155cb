"""The data traps of issue 15, each on a generated dataset run through the real 01_data_pipeline.py
template and `mlloop check prepdata`: a group split whose key the records lack, windows cut from
one series file, a de-duplication that removes more than its share, fields outside the task's
index schema. Each is caught with one exact line (or handled as the rules ask), and nothing under
dataset/rawdata/ changes. (The fourth trap, variable-length text with a padding collate_fn, is in
test_runtime_probe.py: the probe and the batch search use the script's own DataLoader.)"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from mlloop.bundle import template
from mlloop.cli import cli
import pytest

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

PREP = "dataset/prepdata/v1"
REGION_START, REGION_END = "# ==== mlloop:parse-region:start", "# ==== mlloop:parse-region:end"


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_project(root: Path, dataset_config: dict, region: str, edge_cases: str = "None found.") -> Path:
    rules = {"seed": 42, "dataset_config": {"dataset_id": "v1", "valid_ratio": 0.25, **dataset_config}}
    path = root / ".claude/skills/build-baseline/user_defined_rules.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rules), encoding="utf-8")
    (root / "dataset/rawdata").mkdir(parents=True, exist_ok=True)
    (root / "dataset/rawdata/profiling.md").write_text(
        f"# Profiling\n## Overview\nGenerated.\n## Source: data\n### Edge cases\n{edge_cases}\n", encoding="utf-8")
    lines = template("01_data_pipeline.py").read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith(REGION_START))
    end = next(i for i, ln in enumerate(lines) if ln.startswith(REGION_END))
    body = textwrap.dedent(region).strip() + "\n\n\n"
    (root / "01_data_pipeline.py").write_text("".join(lines[:start + 1]) + body + "".join(lines[end:]), encoding="utf-8")
    return root


def run_pipeline(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "01_data_pipeline.py"], cwd=root, capture_output=True, text=True, timeout=300)


def check_prepdata(root: Path) -> list[str]:
    out = CliRunner().invoke(cli, ["check", "prepdata", "--project", str(root), "--json"])
    return [f"{p['code']}: {p['message']}" for p in json.loads(out.output)["problems"]]


def index(root: Path, split: str) -> list[dict]:
    return [json.loads(x) for x in (root / PREP / split / f"{split}.jsonl").read_text().splitlines()]


# ---- trap 1: a group split whose group_key the records do not carry --------------------------------

TICKETS_REGION = """
    import csv
    from pathlib import Path

    from mlloop.runtime import data


    def parse_sources(rawdata: Path) -> list[dict]:
        with open(rawdata / "data" / "tickets.csv", encoding="utf-8", newline="") as fh:
            return [{"sample_id": data.make_id("data", row["ticket_id"]), "source": "data", "category": row["label"],
                     "input": row["text"], "label": row["label"], GROUP_FIELD: row[GROUP_COLUMN]}
                    for row in csv.DictReader(fh)]


    def drop_reason(record: dict, rules: dict) -> str | None:
        return None
"""


def tickets(root: Path, n: int = 40) -> None:
    folder = root / "dataset/rawdata/data"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "tickets.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ticket_id", "customer_id", "text", "label"])
        for i in range(n):
            w.writerow([f"t{i:03d}", f"c{i // 5}", f"ticket {i} about {'billing login crash refund'.split()[i % 4]}",
                        ("billing", "login", "crash", "refund")[i % 4]])


def tickets_project(root: Path, group_field: str, group_column: str, group_key: str = "customer_id") -> Path:
    region = TICKETS_REGION.replace("GROUP_FIELD", repr(group_field)).replace("GROUP_COLUMN", repr(group_column))
    make_project(root, {"task_type": "text-classification", "split_strategy": "group", "group_key": group_key}, region)
    tickets(root)
    return root


def test_a_group_split_stops_when_the_records_lack_the_group_key(tmp_path):
    # The trap: the template used to say "emit group_id"; the rules' group_key is customer_id.
    root = tickets_project(tmp_path / "proj", group_field="group_id", group_column="customer_id")
    raw = snapshot(root / "dataset/rawdata")
    out = run_pipeline(root)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "Error: split_strategy is group but 40 of 40 records have no 'customer_id' field (the rules' group_key), "
        "e.g. sample_id 'data-t000' (source 'data'); set 'customer_id' on every record in parse_sources(), or change "
        "group_key or split_strategy in the rules.")
    assert "Traceback" not in out.stderr
    assert not (root / PREP).exists() and snapshot(root / "dataset/rawdata") == raw

    fixed = tickets_project(tmp_path / "fixed", group_field="customer_id", group_column="customer_id")
    out = run_pipeline(fixed)
    assert out.returncode == 0, out.stdout + out.stderr
    train, valid = index(fixed, "train"), index(fixed, "valid")
    assert {r["customer_id"] for r in train}.isdisjoint({r["customer_id"] for r in valid})
    stats = json.loads((fixed / PREP / "stats.json").read_text())
    assert stats["groups"] == {"key": "customer_id", "records": 40, "train": 6, "valid": 2}
    assert check_prepdata(fixed) == []


def test_a_group_key_that_is_unique_per_record_is_not_a_group_split(tmp_path):
    root = tickets_project(tmp_path / "proj", group_field="ticket_id", group_column="ticket_id", group_key="ticket_id")
    raw = snapshot(root / "dataset/rawdata")
    out = run_pipeline(root)
    line = ("split_strategy is group but each of the 40 records has its own 'ticket_id' value, so the split is a "
            "random one; group_key must name a field that samples of one group share")
    assert out.returncode == 1 and "pipeline tests FAIL (failed: groups_hold_several_records)" in out.stdout
    report = (root / PREP / "_tests/pipeline_test_report.md").read_text()
    assert f"- groups_hold_several_records: FAIL ({line})" in report
    assert check_prepdata(root) == [
        f"prepdata.group_singletons: {line}",
        "prepdata.pipeline_failed: the pipeline test report says FAIL; fix 01_data_pipeline.py and re-run it"]
    assert snapshot(root / "dataset/rawdata") == raw


# ---- trap 2: windows cut from one series file ----------------------------------------------------------

WINDOWS_REGION = """
    import csv
    from pathlib import Path

    from mlloop.runtime import data

    WINDOW, HORIZON, STRIDE = 48, 12, 4   # profiling.md: hourly series, 48 h in, 12 h out


    def parse_sources(rawdata: Path) -> list[dict]:
        records = []
        for source in sorted(p.name for p in rawdata.iterdir() if p.is_dir()):
            for path in sorted((rawdata / source).glob("*.csv")):
                with open(path, encoding="utf-8", newline="") as fh:
                    values = [float(row["value"]) for row in csv.DictReader(fh)]
                for start in range(0, len(values) - WINDOW - HORIZON + 1, STRIDE):
                    records.append({"sample_id": data.make_id(source, path.stem, start), "source": source,
                                    "category": None, "assets": {"series_path": f"{source}/{path.name}"},
                                    "series_id": path.stem, "start": start, "horizon": HORIZON,
                                    "target": values[start + WINDOW:start + WINDOW + HORIZON]})
        return records


    def drop_reason(record: dict, rules: dict) -> str | None:
        return None
"""


def series(folder: Path, stations=("st_a", "st_b", "st_c"), hours: int = 400) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(stations):
        rows = "".join(f"2026-01-{1 + h // 24:02d}T{h % 24:02d}:00,{(h * (k + 3)) % 97 / 7:.4f}\n" for h in range(hours))
        (folder / f"{name}.csv").write_text("time,value\n" + rows, encoding="utf-8")


def windows_project(root: Path, edge_cases: str = "None found.") -> Path:
    make_project(root, {"task_type": "time-series-forecasting", "split_strategy": "random"}, WINDOWS_REGION, edge_cases)
    series(root / "dataset/rawdata/data")
    return root


def disk_bytes(folder: Path, below: str = "") -> int:
    """Bytes on disk under ``folder`` (a hard-linked file counts once)."""
    seen, total = set(), 0
    for p in folder.rglob("*"):
        if p.is_file() and (not below or below in p.relative_to(folder).parts):
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def test_windows_of_one_series_are_kept_and_the_series_is_stored_once(tmp_path):
    root = windows_project(tmp_path / "proj")
    raw = snapshot(root / "dataset/rawdata")
    out = run_pipeline(root)
    assert out.returncode == 0, out.stdout + out.stderr
    stats = json.loads((root / PREP / "stats.json").read_text())
    assert stats["parsed"] == 3 * 86 and stats["dropped"] == {}  # no window is a "duplicate" of its series
    assert stats["counts"]["train"] + stats["counts"]["valid"] == 258 and stats["shared_assets"] == 3
    files = {split: sorted(p.name for p in (root / PREP / split / "series").rglob("*") if p.is_file())
             for split in ("train", "valid")}
    assert len(files["train"]) == len(files["valid"]) == 3  # one file per station and split, not one per window
    assert all(name.startswith("data_st_") and name.endswith(".csv") for name in files["train"])
    for r in index(root, "valid"):
        assert r["series_path"].startswith("series/shared/data_" + r["series_id"] + "-")
        assert (root / PREP / "valid" / r["series_path"]).read_bytes() == (root / "dataset/rawdata/data" / f"{r['series_id']}.csv").read_bytes()
    raw_bytes = disk_bytes(root / "dataset/rawdata") - (root / "dataset/rawdata/profiling.md").stat().st_size
    assert disk_bytes(root / PREP, below="series") <= raw_bytes  # the splits hard-link one copy
    index_bytes = sum((root / PREP / s / f"{s}.jsonl").stat().st_size for s in ("train", "valid"))
    metadata = disk_bytes(root / PREP / "common") + disk_bytes(root / PREP / "_tests") + (root / PREP / "stats.json").stat().st_size
    assert disk_bytes(root / PREP) <= raw_bytes + index_bytes + metadata
    assert check_prepdata(root) == [] and snapshot(root / "dataset/rawdata") == raw


def test_a_deduplication_that_removes_more_than_its_share_must_be_named(tmp_path):
    root = windows_project(tmp_path / "proj")
    series(root / "dataset/rawdata/mirror", stations=("st_a",))  # an export of st_a again: its windows are duplicates
    raw = snapshot(root / "dataset/rawdata")
    out = run_pipeline(root)
    line = ("'duplicate' dropped 86 of 344 parsed records (25%), more than max_drop_share (0.2), and profiling.md's "
            "Edge cases do not name it; fix the rule if it drops too much, else name 'duplicate' and why under Edge cases")
    assert out.returncode == 1 and "(failed: drop_shares_within_max)" in out.stdout
    assert f"- drop_shares_within_max: FAIL ({line})" in (root / PREP / "_tests/pipeline_test_report.md").read_text()
    assert check_prepdata(root) == [
        f"prepdata.drop_share: {line}",
        "prepdata.pipeline_failed: the pipeline test report says FAIL; fix 01_data_pipeline.py and re-run it"]
    assert snapshot(root / "dataset/rawdata") == raw

    profiling = root / "dataset/rawdata/profiling.md"
    profiling.write_text(profiling.read_text().replace(
        "None found.", "- mirror/ repeats st_a: its 86 windows are duplicates (kept once)."), encoding="utf-8")
    out = run_pipeline(root)
    assert out.returncode == 0, out.stdout
    assert json.loads((root / PREP / "stats.json").read_text())["dropped"] == {"duplicate": 86}
    assert check_prepdata(root) == []


# ---- trap 3: fields outside the task's index schema -------------------------------------------------

def test_fields_outside_the_index_schema_are_kept_in_meta_with_a_warning(tmp_path):
    region = TICKETS_REGION.replace('GROUP_FIELD: row[GROUP_COLUMN]',
                                    '"customer_id": row["customer_id"], "priority": len(row["text"]) % 3, '
                                    '"meta": {"ticket": row["ticket_id"]}')
    root = make_project(tmp_path / "proj", {"task_type": "text-classification", "split_strategy": "stratified",
                                            "stratify_key": "category"}, region)
    tickets(root)
    raw = snapshot(root / "dataset/rawdata")
    out = run_pipeline(root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("warning:")] == [
        "warning: field 'customer_id' is not in text-classification's index schema; kept as meta.customer_id in 40 record(s)",
        "warning: field 'priority' is not in text-classification's index schema; kept as meta.priority in 40 record(s)"]
    first = index(root, "train")[0]
    assert set(first) == {"id", "input", "label", "source", "meta"}
    assert set(first["meta"]) == {"ticket", "customer_id", "priority"} and first["meta"]["customer_id"].startswith("c")
    stats = json.loads((root / PREP / "stats.json").read_text())
    assert stats["moved_to_meta"] == {"customer_id": 40, "priority": 40}
    strata = stats["strata"]
    assert strata["key"] == "category" and sum(strata["valid"].values()) == 10
    assert {k: strata["train"][k] + strata["valid"].get(k, 0) for k in strata["train"]} == {
        "billing": 10, "crash": 10, "login": 10, "refund": 10}
    report = (root / PREP / "_tests/pipeline_test_report.md").read_text()
    assert "- field 'priority' is not in text-classification's index schema; kept as meta.priority in 40 record(s)" in report
    assert snapshot(root / "dataset/rawdata") == raw

    clash = make_project(tmp_path / "clash", {"task_type": "text-classification"},
                         region.replace('"meta": {"ticket": row["ticket_id"]}', '"meta": {"priority": "high"}'))
    tickets(clash)
    out = run_pipeline(clash)
    assert out.returncode == 1 and out.stderr.strip().splitlines()[-1] == (
        "Error: record 'data-t000': field 'priority' is not in text-classification's index schema and meta.priority "
        "already holds another value; rename one of them.")
    assert not os.path.exists(clash / PREP)
