"""Time-series-forecasting example: hourly weather-station temperatures and electricity meters.

    mod = <load examples/time_series/generate.py by path>   # or examples/registry.py
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

Writes into ``dest_dir`` one CSV per series, one row per hour, the value in the last column:
  stations/<station>.csv   timestamp,temp_c      ISO 8601 local time (2026-01-05T13:00:00), °C
  meters/<meter>.csv       unix_time,load_kw     epoch seconds (UTC), kW; -999 means "no reading"
Each series has a daily season (24 h), a slow trend and noise, so a model that averages past
days beats the seasonal naive forecast. Mess: a station whose export repeats a timestamp (the
hour is written twice), a station with a 7-hour gap (rows missing), an empty cell and ``NaN`` in
one station, the ``-999`` sentinel in one meter, and a stuck station that reports one
constant value. Same seed and size -> the same bytes.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

SIZES = {"tiny": (3, 3, 21), "small": (4, 4, 42), "medium": (8, 8, 90)}  # (stations, meters, days)
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
SENTINEL = "-999"


def series(rng: random.Random, hours: int, level: float, amplitude: float, trend: float, noise: float) -> list[float]:
    """Daily season (peak mid-afternoon, a per-series phase), a linear trend and Gaussian noise."""
    phase = rng.uniform(-2, 2)
    shape = [math.sin(2 * math.pi * (h - 9 + phase) / 24) + 0.3 * math.sin(4 * math.pi * (h + phase) / 24)
             for h in range(24)]
    return [level + amplitude * shape[t % 24] + trend * t / 24 + rng.gauss(0, noise) for t in range(hours)]


def _stations(root: Path, n: int, hours: int, rng: random.Random) -> dict:
    src = root / "stations"
    src.mkdir(parents=True, exist_ok=True)
    names = [f"st{k + 1:02d}" for k in range(n)]
    for k, name in enumerate(names):
        values = series(rng, hours, level=rng.uniform(2, 12), amplitude=rng.uniform(3, 6),
                        trend=rng.uniform(-0.15, 0.15), noise=0.8)
        cells = [f"{v:.2f}" for v in values]
        if k == n - 1:  # a stuck sensor: the same reading every hour
            cells = ["21.50"] * hours
        if k == 1:  # the logger missed two readings, written as an empty cell and as NaN
            t = rng.randrange(hours // 2, hours - 30)
            cells[t], cells[t + 5] = "", "NaN"
        rows = [[(START + timedelta(hours=t)).strftime("%Y-%m-%dT%H:%M:%S"), c] for t, c in enumerate(cells)]
        if k == 0:  # the export writes one hour twice
            t = hours // 2
            rows.insert(t + 1, list(rows[t]))
        if k == 1:  # the station was offline for 7 hours: the rows are missing
            t = hours // 3
            del rows[t:t + 7]
        text = "timestamp,temp_c\n" + "".join(f"{a},{b}\n" for a, b in rows)
        (src / f"{name}.csv").write_text(text, encoding="utf-8")
    return {"stations": {"files": n, "rows": hours}}


def _meters(root: Path, n: int, hours: int, rng: random.Random) -> dict:
    src = root / "meters"
    src.mkdir(parents=True, exist_ok=True)
    epoch = int(START.timestamp())
    for k in range(n):
        values = series(rng, hours, level=rng.uniform(40, 120), amplitude=rng.uniform(10, 30),
                        trend=rng.uniform(-0.5, 0.5), noise=3.0)
        cells = [f"{v:.1f}" for v in values]
        if k == 0:  # two hours without a reading, written as the -999 sentinel
            t = rng.randrange(hours // 3, hours - 30)
            cells[t] = cells[t + 3] = SENTINEL
        text = "unix_time,load_kw\n" + "".join(f"{epoch + 3600 * t},{c}\n" for t, c in enumerate(cells))
        (src / f"m{k + 1:03d}.csv").write_text(text, encoding="utf-8")
    return {"meters": {"files": n, "rows": hours}}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    stations, meters, days = SIZES[size]
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    return {**_stations(root, stations, 24 * days, rng), **_meters(root, meters, 24 * days, rng)}
