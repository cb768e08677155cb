# Parse region of 01_data_pipeline.py for examples/tabular (dataset/rawdata/profiling.md,
# "Extraction rules"; filters from user_instruction.md). registry.pipeline_source() pastes this
# file between the template's mlloop:parse-region markers.
import csv
import json
import math
from pathlib import Path

from mlloop.script import data

MISSING = {"", "na", "n/a", "?", "nan", "null", "none"}   # the tokens the exports use for "no value"
STATUS_CODES = {0: "ok", 1: "warn", 2: "fail"}             # sensors_json's status_code


def _number(value):
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None  # a NaN token means missing
    text = str(value).strip()
    if text.lower() in MISSING:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _word(value):
    text = "" if value is None else str(value).strip().lower()
    return None if text in MISSING else text


def parse_sources(rawdata: Path) -> list[dict]:
    """One record per reading: sensors_csv rows and sensors_json export records."""
    records = []
    with open(rawdata / "sensors_csv" / "readings.csv", encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):  # ids from the line: reading_id repeats
            label = _word(row["status"])
            records.append({
                "sample_id": data.make_id("sensors_csv", f"line{line:05d}"), "source": "sensors_csv",
                "category": label, "label": label,
                "features": {"temperature": _number(row["temperature"]), "humidity": _number(row["humidity"]),
                             "pressure": _number(row["pressure"]), "site": _word(row["site"])},
                "meta": {"reading_id": row["reading_id"]}})
    for path in sorted((rawdata / "sensors_json").glob("export_*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))  # Python's json accepts the NaN tokens
        for rec in doc["records"]:
            pressure = _number(rec.get("pressure_hpa"))
            if pressure is None and _number(rec.get("pressure_pa")) is not None:
                pressure = _number(rec["pressure_pa"]) / 100.0  # export_2 reports Pa
            label = STATUS_CODES.get(rec.get("status_code"))
            records.append({
                "sample_id": data.make_id("sensors_json", rec["id"]), "source": "sensors_json",
                "category": label, "label": label,
                "features": {"temperature": _number(rec.get("temperature_c")),
                             "humidity": _number(rec.get("humidity_pct")), "pressure": pressure,
                             "site": _word((rec.get("meta") or {}).get("site"))},
                "meta": {"reading_id": rec["id"], "file": path.name}})
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """user_instruction: a reading without a temperature cannot be judged; drop it."""
    if record["features"]["temperature"] is None:
        return "missing_temperature"
    return None
