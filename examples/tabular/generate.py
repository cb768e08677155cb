"""Tabular-classification example: sensor readings labelled ok / warn / fail.

    mod = <load examples/tabular/generate.py by path>   # or examples/registry.py
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

Writes into ``dest_dir``:
  sensors_csv/readings.csv      reading_id,temperature,humidity,pressure,site,status
  sensors_json/export_1.json    {"exported_at", "records": [{"id", "temperature_c", "humidity_pct",
  sensors_json/export_2.json      "pressure_hpa" | "pressure_pa", "meta": {"site"}, "status_code"}]}
The status follows from temperature and humidity (plus a little noise), so it is learnable.
Mess: empty cells and the tokens NA, n/a, "?" for missing values; an exact duplicate row; a
label with stray case and spaces; a NaN token and nulls in the JSON (a pandas export);
pressure in Pa in the second export but hPa in the first; a record without a status.
Same seed and size -> the same bytes.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

SIZES = {"tiny": (40, 20), "small": (200, 100), "medium": (2000, 1000)}  # (csv rows, json records)
STATUS = ("ok", "warn", "fail")
SITES = ("north", "south", "east")


def reading(rng: random.Random) -> dict:
    temperature = round(rng.gauss(24, 6), 1)
    humidity = round(min(max(rng.gauss(50, 15), 5), 99), 1)
    pressure = round(rng.gauss(1013, 8), 1)
    site = rng.choice(SITES)
    score = 0.25 * (temperature - 24) + 0.08 * (humidity - 50) + (0.8 if site == "east" else 0) + rng.gauss(0, 0.4)
    status = "ok" if score < 0.5 else "warn" if score < 2.5 else "fail"
    return {"temperature": temperature, "humidity": humidity, "pressure": pressure, "site": site, "status": status}


def _csv_source(root: Path, n: int, rng: random.Random) -> dict:
    src = root / "sensors_csv"
    src.mkdir(parents=True, exist_ok=True)
    missing_tokens = ["", "NA", "n/a", "?"]
    rows = []
    for i in range(1, n + 1):
        r = reading(rng)
        row = [f"R{i:05d}", r["temperature"], r["humidity"], r["pressure"], r["site"], r["status"]]
        if rng.random() < 0.06:  # a sensor dropped a value
            row[rng.choice([1, 2, 3, 4])] = rng.choice(missing_tokens)
        if rng.random() < 0.03:
            row[5] = f" {r['status'].upper()} "
        rows.append(row)
    rows.insert(n // 2, list(rows[n // 3]))  # the export repeats one row verbatim
    with open(src / "readings.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["reading_id", "temperature", "humidity", "pressure", "site", "status"])
        writer.writerows(rows)
    return {"sensors_csv": {"rows": len(rows)}}


def _json_source(root: Path, n: int, rng: random.Random) -> dict:
    src = root / "sensors_json"
    src.mkdir(parents=True, exist_ok=True)
    half = n // 2
    counts = {}
    for part, (start, stop) in enumerate(((0, half), (half, n)), start=1):
        records = []
        for i in range(start, stop):
            r = reading(rng)
            rec = {"id": f"J-{i + 1:05d}", "temperature_c": r["temperature"], "humidity_pct": r["humidity"],
                   "meta": {"site": r["site"]}, "status_code": STATUS.index(r["status"])}
            if part == 1:
                rec["pressure_hpa"] = r["pressure"]
            else:
                rec["pressure_pa"] = round(r["pressure"] * 100)  # the second export changed units
            if rng.random() < 0.05:
                rec["humidity_pct"] = math.nan  # written as the bare token NaN
            if rng.random() < 0.04:
                rec["meta"]["site"] = None
            records.append(rec)
        records[len(records) // 2].pop("status_code")  # unlabelled record
        doc = {"exported_at": f"2024-05-0{part}T12:00:00Z", "records": records}
        # allow_nan=True on purpose: this is the broken export the pipeline has to survive.
        (src / f"export_{part}.json").write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n", encoding="utf-8")
        counts[f"export_{part}.json"] = len(records)
    return {"sensors_json": counts}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the raw sources into ``dest_dir``; returns counts per source."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    n_csv, n_json = SIZES[size]
    rng = random.Random(f"tabular:{seed}")
    return {**_csv_source(root, n_csv, rng), **_json_source(root, n_json, rng)}
