"""Prepdata size of shared-asset windows (issue 15) against the raw data, measured in one run.

    uv run python benchmarks/prepdata_size_bench.py [--stations 20] [--hours 8760] [--stride 24]

Generates hourly station CSVs, cuts forecast windows (48 h in, 12 h out) from each, runs the
pipeline's de-duplication and writer (``mlloop.runtime.data`` / ``.prepdata``, time split) and
prints, side by side:
  - raw bytes, prepdata asset bytes on disk (hard links counted once), index bytes;
  - the reference: the bytes one copy per window would take (the old writer);
  - records parsed / kept (de-duplication by content keeps every window; the time split drops the
    windows whose target straddles each series' cut).
Target: prepdata assets <= raw bytes (ratio <= 1.0); everything else is the index and common/.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from mlloop.runtime import data, prepdata
from mlloop.taskformat import load_task_format

WINDOW, HORIZON = 48, 12


def generate(raw: Path, stations: int, hours: int) -> None:
    (raw / "stations").mkdir(parents=True)
    for k in range(stations):
        rows = "".join(f"{h},{(h * (k + 3)) % 97 / 7:.4f}\n" for h in range(hours))
        (raw / "stations" / f"st{k:03d}.csv").write_text("hour,value\n" + rows, encoding="utf-8")


def parse(raw: Path, stride: int) -> list[dict]:
    records = []
    for path in sorted((raw / "stations").glob("*.csv")):
        values = [float(line.split(",")[1]) for line in path.read_text().splitlines()[1:]]
        for origin in range(WINDOW, len(values) - HORIZON + 1, stride):  # start: the first target row
            records.append({"sample_id": data.make_id(path.stem, origin), "source": "stations", "category": None,
                            "assets": {"series_path": f"stations/{path.name}"}, "series_id": path.stem,
                            "start": origin, "horizon": HORIZON, "target": values[origin:origin + HORIZON]})
    return records


def disk_bytes(folder: Path, part: str | None = None) -> int:
    seen, total = set(), 0
    for p in folder.rglob("*"):
        if p.is_file() and (part is None or part in p.relative_to(folder).parts):
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--hours", type=int, default=8760)
    ap.add_argument("--stride", type=int, default=24)
    args = ap.parse_args(argv)
    spec = data.task_spec(load_task_format(None), "time-series-forecasting")
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "rawdata", Path(tmp) / "prep"
        generate(raw, args.stations, args.hours)
        t0 = time.perf_counter()
        records = data.as_records(parse(raw, args.stride))
        with data.AssetReader(raw) as reader:
            data.enrich(records, spec, reader)
            data.deduplicate(records)
            train, valid = data.split_records(data.kept(records), "time", 0.2, 42)
            prepdata.write_prepdata(out, records=records, train=train, valid=valid, spec=spec, reader=reader,
                                    group_key=None, stats={"dataset_id": "bench", "task_type": spec.name, "seed": 42,
                                                           "split_strategy": "time", "valid_ratio": 0.2})
        seconds = time.perf_counter() - t0
        raw_bytes = disk_bytes(raw)
        assets = disk_bytes(out, "series")
        index = sum(os.path.getsize(out / s / f"{s}.jsonl") for s in ("train", "valid"))
        per_window = sum(os.path.getsize(raw / r["asset_paths"][0]) for r in data.kept(records))
        print(f"windows parsed {len(records)}, kept {len(data.kept(records))} (dropped {data.drop_counts(records)})")
        print(f"raw data                  {raw_bytes:>14,d} B")
        print(f"prepdata assets (on disk) {assets:>14,d} B   ratio to raw {assets / raw_bytes:.3f}  (target <= 1.0)")
        print(f"prepdata index            {index:>14,d} B")
        print(f"prepdata total            {disk_bytes(out):>14,d} B")
        print(f"reference: copy per window {per_window:>13,d} B   ratio to raw {per_window / raw_bytes:.1f}")
        print(f"pipeline (parse excluded)  {seconds:.2f} s")
    return 0 if assets <= raw_bytes else 1


if __name__ == "__main__":
    sys.exit(main())
