"""infer_samples/<NNNN>/meta.json (docs/contracts.md, "infer_samples"): which validation sample
a folder shows and what the model said about it, written by 03_eval.py beside input.*, output.*
and gt.*. Owns the field names, the one parser (``parse_sample_meta``: the object plus problems)
and the writer; the evaluation check, ``mlloop analyze`` and the report's gallery read it here.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import Findings
from ..jsonio import JsonProblems, read_json, to_jsonable, write_json_atomic
from ..layout import SAMPLE_META

FIELDS = ("sample_id", "index", "version_id", "dataset_id", "split", "seed", "prediction", "target", "scores")


def parse_sample_meta(doc, rel: str, findings: Findings, *, expected: dict | None = None) -> dict | None:
    """The meta as a dict (None when it is not an object); problems go to ``findings``.
    ``expected`` maps fields to the values they must have (a None value is not checked)."""
    if not isinstance(doc, dict):
        kind = "a list" if isinstance(doc, list) else type(doc).__name__
        findings.problem("infer.meta", rel, f"meta.json must be one JSON object, found {kind}", "$")
        return None
    if "sample_id" not in doc:
        findings.problem("infer.meta", rel, "sample_id is missing; it names the validation sample shown", "$")
    for key, want in (expected or {}).items():
        if key in doc and want is not None and doc[key] != want:
            findings.problem("infer.meta", rel, f"{key} is {json.dumps(doc[key])}, expected {json.dumps(want)}",
                             f"$.{key}")
    return doc


def read_sample_meta_quiet(folder: Path) -> dict:
    """A sample folder's meta.json, or ``{}`` when it is absent or broken (`mlloop check` says why)."""
    try:
        doc = read_json(Path(folder) / SAMPLE_META)
    except JsonProblems:
        return {}
    return doc if isinstance(doc, dict) else {}


def write_sample_meta(folder: Path, doc: dict) -> None:
    write_json_atomic(Path(folder) / SAMPLE_META, to_jsonable(doc))
