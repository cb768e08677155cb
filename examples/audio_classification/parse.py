# Parse region of 01_data_pipeline.py for examples/audio_classification (dataset/rawdata/
# profiling.md, "Extraction rules"; filters from user_instruction.md). registry.pipeline_source()
# pastes this file between the template's mlloop:parse-region markers.
import csv
import re
from pathlib import Path

import soundfile

from mlloop.script import data

AUDIO_SUFFIXES = {".wav"}                                  # .DS_Store and notes.txt are not samples
CLASSES = ("tone", "chirp", "noise_burst", "click_train")  # user_instruction: these four classes only


def label_of(text: str) -> str | None:
    """" Tone" -> tone, "Click Train" / "click-train" / "Noise_Burst" -> click_train / noise_burst."""
    label = re.sub(r"[\s\-]+", "_", text.strip().lower())
    return label or None


def peak(path: Path) -> float | None:
    """The clip's largest absolute sample (0.0: digital silence); None when it does not decode
    (the pipeline then drops it as unreadable_asset with libsndfile's reason)."""
    try:
        samples, _ = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError):
        return None
    return float(abs(samples).max()) if len(samples) else None


def parse_sources(rawdata: Path) -> list[dict]:
    """field_recorder: the folder is the label; studio_export: metadata.csv rows."""
    records, taken = [], set()
    src = rawdata / "field_recorder"
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        label = label_of(path.parent.name)  # "Noise_Burst" and "noise burst" are one class
        sid, n = data.make_id("field_recorder", label, path.stem.lower()), 1
        while sid in taken:  # Noise_Burst/clip_001.wav and noise burst/clip_001.wav: both kept
            n += 1
            sid = data.make_id("field_recorder", label, path.stem.lower(), n)
        taken.add(sid)
        records.append({"sample_id": sid, "source": "field_recorder", "category": label, "label": label,
                        "assets": {"audio_path": path.relative_to(rawdata).as_posix()},
                        "meta": {"peak": peak(path)}})

    src = rawdata / "studio_export"
    with open(src / "metadata.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            label = label_of(row["label"])  # "" -> None: dropped as missing_field
            sid, n = data.make_id("studio_export", Path(row["file"]).stem), 1
            while sid in taken:  # a row exported twice: kept here, dropped as a duplicate later
                n += 1
                sid = data.make_id("studio_export", Path(row["file"]).stem, n)
            taken.add(sid)
            path = src / "clips" / row["file"]
            records.append({"sample_id": sid, "source": "studio_export", "category": label, "label": label,
                            "assets": {"audio_path": f"studio_export/clips/{row['file']}"},
                            "meta": {"session": row["session"], "peak": peak(path) if path.is_file() else None}})
    return records


def drop_reason(record: dict, rules: dict) -> str | None:
    """user_instruction: only the four classes; a digitally silent clip holds no event to learn."""
    if record["label"] not in CLASSES:
        return "unknown_label"
    if record["meta"]["peak"] == 0.0:
        return "silent_clip"
    return None
