# Parse region of 01_data_pipeline.py for examples/time_series (dataset/rawdata/profiling.md,
# "Extraction rules"; filters from user_instruction.md). registry.pipeline_source() pastes this
# file between the template's mlloop:parse-region markers.
import math
from datetime import datetime, timezone
from pathlib import Path

from mlloop.script import data

CONTEXT_ROWS = 96        # clean rows guaranteed before each forecast origin (the longest context a model may read)
HORIZON = 24             # hours forecast per window (user_instruction: the next day)
STRIDE = 6               # hours between two forecast origins of one series
STEP_SECONDS = 3600      # one row per hour; any other step between rows is a gap or a repeated hour
MISSING = {"", "nan", "na", "-999"}   # empty cells and NaN (stations), the -999 sentinel (meters)
SOURCES = {  # source folder -> how its first column encodes the time
    "stations": lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp(),
    "meters": lambda s: float(int(s)),
}


def _value(text):
    text = text.strip()
    if text.lower() in MISSING:
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _read(path, to_seconds):
    times, values = [], []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            stamp, _, cell = line.rpartition(",")
            times.append(to_seconds(stamp.strip()))
            values.append(_value(cell))
    return times, values


def _defect(lo, hi, times, values, constant):
    """Why rows lo..hi-1 (context and target) cannot be one clean window, or None."""
    if constant:
        return "constant_sensor: the series reports one value"
    for i in range(lo + 1, hi):
        step = times[i] - times[i - 1]
        if step == 0:
            return f"duplicate_timestamp: row {i} repeats the hour of row {i - 1}"
        if step != STEP_SECONDS:
            return f"gap: {int(step // STEP_SECONDS) - 1} hour(s) missing before row {i}"
    missing = next((i for i in range(lo, hi) if values[i] is None), None)
    return None if missing is None else f"missing_value: row {missing}"


def parse_sources(rawdata: Path) -> list[dict]:
    """One record per forecast window: the series file, the origin row, the next HORIZON values."""
    records = []
    for source, to_seconds in SOURCES.items():
        for path in sorted((rawdata / source).glob("*.csv")):
            times, values = _read(path, to_seconds)
            constant = len({v for v in values if v is not None}) <= 1
            for origin in range(CONTEXT_ROWS, len(values) - HORIZON + 1, STRIDE):
                record = {
                    "sample_id": data.make_id(source, path.stem, f"t{origin:05d}"), "source": source,
                    "category": None, "assets": {"series_path": f"{source}/{path.name}"},
                    "series_id": f"{source}-{path.stem}", "start": origin, "horizon": HORIZON, "freq": "1h",
                    "target": values[origin:origin + HORIZON],
                    "meta": {"origin": datetime.fromtimestamp(times[origin], timezone.utc).isoformat(),
                             "context_rows": CONTEXT_ROWS}}
                reason = _defect(origin - CONTEXT_ROWS, origin + HORIZON, times, values, constant)
                if reason:
                    record["drop_reason"] = reason  # counted per reason in stats.json
                records.append(record)
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """user_instruction asks for no filter beyond the defects parse_sources() found."""
    return None
