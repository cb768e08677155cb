"""Text-classification example: short product reviews labelled positive / negative / neutral.

    mod = <load examples/text_classification/generate.py by path>   # or examples/registry.py
    mod.generate("my_project/dataset/rawdata", seed=42, size="small")

Writes into ``dest_dir``:
  reviews_csv/reviews.csv            review_id,product,review_text,sentiment   (the web shop's export)
  reviews_jsonl/app_reviews.jsonl    {"uid", "body", "sentiment", "lang", "channel"}   (the app's export)
A review is built from word templates: an opener naming the product, one or two phrases of its
class, sometimes a phrase of another class ("but shipping was slow"), and a closer; about 4 % of
the labels are flipped, so the task is learnable but not trivially perfect.
Mess: labels spelled ``Positive``, ``pos ``, ``NEGATIVE``, ``neg``, ``Neutral``, ``neu`` (csv) and
``POS``/``NEG``/``NEU`` or full words (jsonl); one csv label nobody can map (``???``); HTML entities
(``&amp;``, ``&#39;``, ``&quot;``) and ``<br>`` in the texts; empty texts (``""``, spaces, a null
body); one csv row repeated verbatim; one app review that is also in the web shop export; one
jsonl line cut off mid-object (a broken export). Same seed and size -> the same bytes.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

SIZES = {"tiny": (100, 60), "small": (600, 400), "medium": (4000, 2000)}  # (csv rows, jsonl lines)
CLASSES = ("positive", "negative", "neutral")
PRODUCTS = ("headphones", "kettle", "phone case", "desk lamp", "backpack", "blender", "keyboard", "water bottle")
OPENERS = ("I bought the {p} last week.", "Got this {p} for my son.", "Ordered the {p} on sale.",
           "My second {p} from this shop.", "The {p} arrived on Tuesday.", "Used the {p} for a month.")
PHRASES = {
    "positive": ("Works great.", "I love it.", "Excellent quality for the price.", "Highly recommend it.",
                 "Five stars from me.", "Exactly as described and sturdy.", "Battery lasts for days.",
                 "Really happy with it."),
    "negative": ("It stopped working after two days.", "Broke the first time I used it.", "Total waste of money.",
                 "Arrived damaged and scratched.", "I asked for a refund.", "Support never answered.",
                 "Would not buy again.", "Cheap plastic, very disappointed."),
    "neutral": ("It is okay.", "Does the job, nothing special.", "Average quality.", "About what I expected.",
                "Not sure yet, it is fine so far.", "The colour is a bit different from the photo.",
                "Neither good nor bad.", "It is a normal {p}."),
}
CLOSERS = ("", "", "Thanks.", "Shipping took a week.", "Packaging was plain.", "Price was fair.")
CSV_SPELLINGS = {"positive": ("positive", "Positive", "pos ", "POSITIVE"),
                 "negative": ("negative", "NEGATIVE", "neg", "Negative "),
                 "neutral": ("neutral", "Neutral", "neu", " NEUTRAL")}
JSONL_SPELLINGS = {"positive": ("POS", "positive"), "negative": ("NEG", "negative"), "neutral": ("NEU", "neutral")}
ENTITIES = (("&", "&amp;"), ("'", "&#39;"), ('"', "&quot;"))


def review(rng: random.Random) -> tuple[str, str]:
    """(text, label): the label is what the text says, flipped for about 4 % of reviews."""
    label = rng.choices(CLASSES, weights=(5, 3, 2))[0]  # neutral is the rare class
    product = rng.choice(PRODUCTS)
    parts = [rng.choice(OPENERS)] + rng.sample(PHRASES[label], rng.choice((1, 1, 2)))
    if rng.random() < 0.2:  # a mixed review: its class still wins, by count of phrases or by the opener
        other = rng.choice([c for c in CLASSES if c != label])
        parts.append("But " + rng.choice(PHRASES[other]).lower())
    parts.append(rng.choice(CLOSERS))
    text = " ".join(p for p in parts if p).replace("{p}", product)
    if rng.random() < 0.04:
        label = rng.choice([c for c in CLASSES if c != label])
    return text, label


def html_escaped(text: str, rng: random.Random) -> str:
    """What a web form stores: some characters as entities, some sentence breaks as <br>."""
    if rng.random() < 0.3:
        text = text.replace(". ", ".<br>", 1)
    if rng.random() < 0.3:
        text = text.replace(" and ", " &amp; ").replace(" for ", " for &quot;", 1) + ("&quot;" if " for " in text else "")
    if rng.random() < 0.3:
        text = "I&#39;d say: " + text
    return text


def _csv_source(root: Path, n: int, rng: random.Random) -> tuple[dict, list]:
    src = root / "reviews_csv"
    src.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(1, n + 1):
        text, label = review(rng)
        product = next(p for p in PRODUCTS if p in text)
        row = [f"W{i:05d}", product, html_escaped(text, rng), rng.choice(CSV_SPELLINGS[label])]
        if rng.random() < 0.03:
            row[2] = rng.choice(("", "   "))  # the customer left only a rating
        rows.append(row)
    rows[n // 4][3] = "???"  # a label nobody can map: dropped by the rules
    rows.insert(n // 2, list(rows[n // 3]))  # the export repeats one row verbatim
    with open(src / "reviews.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review_id", "product", "review_text", "sentiment"])
        writer.writerows(rows)
    return {"reviews_csv": {"rows": len(rows)}}, rows


def _jsonl_source(root: Path, n: int, rng: random.Random, csv_rows: list) -> dict:
    src = root / "reviews_jsonl"
    src.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(1, n + 1):
        text, label = review(rng)
        rec = {"uid": f"app-{i:05d}", "body": text, "sentiment": rng.choice(JSONL_SPELLINGS[label]),
               "lang": "en", "channel": rng.choice(("ios", "android"))}
        if rng.random() < 0.04:
            rec["body"] = None  # a rating without text
        lines.append(json.dumps(rec, ensure_ascii=False))
    # the same review reached both exports: the web shop's text and label, the app's id
    shared = next(r for r in csv_rows[5:] if r[2].strip() and r[3].strip().lower() in ("positive", "pos"))
    lines.insert(n // 3, json.dumps({"uid": f"app-{n + 1:05d}", "body": shared[2], "sentiment": "positive",
                                     "lang": "en", "channel": "web-import"}))
    lines.insert(2 * n // 3, lines[2 * n // 3][: len(lines[2 * n // 3]) // 2])  # cut off mid-object
    (src / "app_reviews.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"reviews_jsonl": {"lines": len(lines)}}


def generate(dest_dir, seed: int = 42, size: str = "small") -> dict:
    """Write the raw sources into ``dest_dir``; returns counts per source."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(dest_dir)
    root.mkdir(parents=True, exist_ok=True)
    n_csv, n_jsonl = SIZES[size]
    rng = random.Random(f"text_classification:{seed}")
    counts, rows = _csv_source(root, n_csv, rng)
    return {**counts, **_jsonl_source(root, n_jsonl, rng, rows)}
