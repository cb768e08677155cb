"""Audio-classification example: short clips of four synthetic sound events in background noise.

    mod = <load examples/audio_classification/generate.py by path>   # or examples/registry.py
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

Writes into ``dest_dir``:
  field_recorder/  <class folder>/clip_NNN.wav: 16 kHz mono 16-bit PCM, 0.8-1.2 s; the folder
                   name is the label
  studio_export/   clips/<hex>.wav + metadata.csv (file,label,session): 44.1 kHz stereo, a few
                   22.05 kHz stereo, 1.5 s each
Classes: tone (a steady sine), chirp (a sweep up or down), noise_burst (a short burst of noise)
and click_train (regular clicks), each at a random pitch, rate and level, in background noise
10-30 dB below the event; the class is the kind of sound, never its pitch or loudness.
Mess: the class folders ``Noise_Burst`` and ``noise burst`` for one class, csv labels
``Click Train``, ``click-train`` and `` Tone``, an empty label, a truncated WAV, an HTML error
page saved as .wav, a digitally silent clip, a csv row whose file is missing, a csv row listed
twice, a field_recorder clip copied into studio_export, ``.DS_Store`` and ``notes.txt``.
WAVs are written with the standard ``wave`` module: same seed and size -> the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import wave
from pathlib import Path

import numpy as np

CLASSES = ("tone", "chirp", "noise_burst", "click_train")
FIELD_FOLDERS = {"tone": "tone", "chirp": "chirp", "noise_burst": "Noise_Burst", "click_train": "click_train"}
CSV_SPELLINGS = {"click_train": ("click_train", "Click Train", "click-train"), "tone": ("tone", " Tone")}
SIZES = {"tiny": (6, 14), "small": (30, 60), "medium": (150, 300)}  # (per class in field_recorder, csv rows)


def event(kind: str, rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One mono clip in [-1, 1]: the event at a random level in background noise."""
    n = int(round(rate * seconds))
    t = np.arange(n) / rate
    if kind == "tone":
        x = np.sin(2 * math.pi * rng.uniform(300, 3000) * t + rng.uniform(0, 2 * math.pi))
    elif kind == "chirp":
        f0, f1 = rng.uniform(200, 1200), rng.uniform(2500, 4500)
        if rng.random() < 0.5:
            f0, f1 = f1, f0
        x = np.sin(2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
    elif kind == "noise_burst":
        x = np.zeros(n)
        length = int(rate * rng.uniform(0.1, 0.35))
        start = int(rng.integers(0, n - length))
        x[start:start + length] = rng.standard_normal(length) * np.hanning(length)
    else:  # click_train: 2 ms decaying clicks every 20-80 ms
        x = np.zeros(n)
        period, click = int(rate * rng.uniform(0.02, 0.08)), np.exp(-np.arange(int(rate * 0.002)) / (rate * 0.0004))
        for start in range(int(rng.integers(0, period)), n - len(click), period):
            x[start:start + len(click)] += click
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # 10 ms fades: no click at the edges
    x = x * fade / (np.abs(x).max() + 1e-9)
    noise = rng.standard_normal(n) * 10 ** (-rng.uniform(10, 30) / 20) / 3  # 10-30 dB below the event
    x = (x + noise) * rng.uniform(0.05, 0.8)
    return np.clip(x, -1.0, 1.0)


def wav_bytes(x: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """16-bit PCM WAV; stereo gets the same signal in both channels, the right one 2 dB quieter."""
    frames = np.stack([x, x * 10 ** (-2 / 20)], axis=1) if channels == 2 else x[:, None]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((frames * 32767).round().astype("<i2").tobytes())
    return buf.getvalue()


def _field_recorder(root: Path, per_class: int, rng: np.random.Generator) -> tuple[dict, bytes]:
    src = root / "field_recorder"
    counts, first = {}, None
    for kind in CLASSES:
        folder = src / FIELD_FOLDERS[kind]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, per_class + 1):
            payload = wav_bytes(event(kind, 16000, round(rng.uniform(0.8, 1.2), 2), rng), 16000)
            first = first or payload
            (folder / f"clip_{i:03d}.wav").write_bytes(payload)
        counts[kind] = per_class
    # Mess a recorder's folder tree collects over time.
    (src / "noise burst").mkdir(exist_ok=True)                  # same class, other spelling
    for i in range(1, 3):
        (src / "noise burst" / f"clip_{i:03d}.wav").write_bytes(wav_bytes(event("noise_burst", 16000, 1.0, rng), 16000))
    broken = wav_bytes(event("tone", 16000, 1.0, rng), 16000)
    (src / "tone" / "clip_broken.wav").write_bytes(broken[: len(broken) // 2])  # the transfer stopped half-way
    (src / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(24))
    (src / "notes.txt").write_text("mic B from clip 4 on\n", encoding="utf-8")
    return {"field_recorder": counts}, first


def _studio_export(root: Path, n: int, rng: np.random.Generator, seed_rng: random.Random, dup: bytes) -> dict:
    src = root / "studio_export"
    (src / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        kind = CLASSES[i % len(CLASSES)]
        rate = 22050 if i % 5 == 2 else 44100
        name = hashlib.sha1(f"studio-{i}".encode()).hexdigest()[:10] + ".wav"
        (src / "clips" / name).write_bytes(wav_bytes(event(kind, rate, 1.5, rng), rate, channels=2))
        spellings = CSV_SPELLINGS.get(kind, (kind,))
        rows.append([name, spellings[i // len(CLASSES) % len(spellings)], f"S{i // 8 + 1:02d}"])
    rows.append(rows[1])                                          # the same row exported twice
    session = f"S{n // 8 + 2:02d}"
    (src / "clips" / "dup_of_field.wav").write_bytes(dup)         # a field_recorder clip copied over
    rows.append(["dup_of_field.wav", "tone", session])
    (src / "clips" / "silent.wav").write_bytes(wav_bytes(np.zeros(int(44100 * 1.5)), 44100, channels=2))
    rows.append(["silent.wav", "chirp", session])                 # the mic was muted: digital silence
    (src / "clips" / "error_page.wav").write_bytes(b"<html><body>502 Bad Gateway</body></html>\n")
    rows.append(["error_page.wav", "noise_burst", session])       # a failed download saved as .wav
    (src / "clips" / "unlabelled.wav").write_bytes(wav_bytes(event("chirp", 44100, 1.5, rng), 44100, 2))
    rows.append(["unlabelled.wav", "", session])                  # empty label
    rows.append(["missing_take.wav", "click_train", session])     # no such file
    seed_rng.shuffle(rows)
    with open(src / "metadata.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "session"])
        writer.writerows(rows)
    return {"studio_export": {"rows": len(rows), "sessions": len({r[2] for r in rows})}}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the raw sources into ``dest_dir``; returns counts per source."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    per_class, n_csv = SIZES[size]
    seed_rng = random.Random(f"audio_classification:{seed}")
    rng = np.random.default_rng(seed_rng.getrandbits(64))
    field, dup = _field_recorder(root, per_class, rng)
    return {**field, **_studio_export(root, n_csv, rng, seed_rng, dup)}
