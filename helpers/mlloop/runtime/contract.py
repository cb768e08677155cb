"""The ``expected_*`` model contract (build-baseline Step 2; docs/contracts.md, "Model contract").

Every ``model_config.expected_<name>`` key is a claim about the model, checked against what one
dummy forward pass (batch 1, the smallest valid input) shows: ``observed[<name>]``. Two keys
start with ``expected_`` but are settings, not claims: ``expected_tolerance`` (absolute tolerance
for floats) and ``expected_allow_missing_keys`` (an unobservable key is SKIP instead of FAIL).

Comparison: scalars ``==`` (a bool only equals a bool); numbers where either side is a float
within the tolerance; lists and tuples by length, then item by item in order; dicts by key set,
then key by key. Any FAIL stops the smoke test before the batch search. An empty expected map is
SKIP (nothing was claimed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import MlloopError

SETTINGS = ("expected_tolerance", "expected_allow_missing_keys")
PREFIX = "expected_"


class ContractError(MlloopError):
    """The contract failed: the smoke test stops before the batch search."""

    def __init__(self, message: str, result: "ContractResult"):
        super().__init__(message)
        self.result = result


@dataclass
class ContractResult:
    expected_map: dict
    observed_map: dict
    validation_table: list[dict] = field(default_factory=list)  # key, expected, observed, status, reason
    overall_result: str = "SKIP"  # PASS | FAIL | SKIP
    tolerance: float = 0.0
    allow_missing: bool = False

    @property
    def failed(self) -> list[dict]:
        return [row for row in self.validation_table if row["status"] == "FAIL"]

    def to_dict(self) -> dict:
        return {"expected_map": self.expected_map, "observed_map": self.observed_map,
                "validation_table": self.validation_table, "overall_result": self.overall_result,
                "expected_tolerance": self.tolerance, "expected_allow_missing_keys": self.allow_missing}

    def summary(self) -> str:
        if self.overall_result != "FAIL":
            return f"model contract {self.overall_result}"
        parts = [f"{r['key']}: {r['reason']}" for r in self.failed]
        return "model contract FAIL: " + "; ".join(parts)


def expected_map(model_config: dict) -> dict:
    """``{name: value}`` for every ``expected_<name>`` claim (the two settings excluded)."""
    return {k[len(PREFIX):]: v for k, v in (model_config or {}).items()
            if k.startswith(PREFIX) and k not in SETTINGS}


def _show(value: Any) -> str:
    import json

    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(expected: Any, observed: Any, tolerance: float = 0.0, where: str = "") -> str | None:
    """None when ``observed`` satisfies ``expected``; else the reason, naming the place inside."""
    at = f" at {where}" if where else ""
    if isinstance(expected, bool) or isinstance(observed, bool):
        if type(expected) is not type(observed) or expected != observed:
            return f"observed {_show(observed)}, expected {_show(expected)}{at}"
        return None
    if _is_number(expected) and _is_number(observed):
        if isinstance(expected, float) or isinstance(observed, float):
            if not (math.isfinite(float(observed)) and abs(float(expected) - float(observed)) <= tolerance):
                return f"observed {observed}, expected {expected} ± {tolerance:g}{at}"
            return None
        return None if expected == observed else f"observed {observed}, expected {expected}{at}"
    if isinstance(expected, (list, tuple)):
        if not isinstance(observed, (list, tuple)):
            return f"expected a list, observed {type(observed).__name__}{at}"
        if len(expected) != len(observed):
            return f"observed length {len(observed)}, expected {len(expected)}{at}"
        for i, (e, o) in enumerate(zip(expected, observed)):
            reason = compare(e, o, tolerance, f"{where}[{i}]")
            if reason:
                return reason
        return None
    if isinstance(expected, dict):
        if not isinstance(observed, dict):
            return f"expected an object, observed {type(observed).__name__}{at}"
        missing = sorted(set(expected) - set(observed))
        extra = sorted(set(observed) - set(expected))
        if missing or extra:
            bits = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {extra}"] if extra else [])
            return ", ".join(bits) + at
        for k in expected:
            reason = compare(expected[k], observed[k], tolerance, f"{where}.{k}" if where else str(k))
            if reason:
                return reason
        return None
    if expected == observed and type(expected) is type(observed):
        return None
    return f"observed {_show(observed)}, expected {_show(expected)}{at}"


def _plain(value: Any) -> Any:
    """Observed values as plain JSON-able Python (tensors, torch.Size, tuples → numbers, lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "numel", lambda: 1)() == 1 and not isinstance(value, (int, float, bool, str)):
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (int, float, bool, str)):
        return tolist()
    return value


def check(model_config: dict, observed: dict) -> ContractResult:
    """Compare the claims in ``model_config`` with ``observed`` (from one dummy forward pass)."""
    model_config = model_config or {}
    tolerance = model_config.get("expected_tolerance", 0.0) or 0.0
    allow_missing = bool(model_config.get("expected_allow_missing_keys", False))
    if not _is_number(tolerance) or tolerance < 0:
        raise MlloopError(f"model_config.expected_tolerance must be a number ≥ 0, got {tolerance!r}.")
    expected = expected_map(model_config)
    observed_map = {str(k): _plain(v) for k, v in (observed or {}).items()}
    result = ContractResult(expected, observed_map, tolerance=float(tolerance), allow_missing=allow_missing)
    for key, want in expected.items():
        row = {"key": key, "expected": want, "observed": None, "status": "PASS", "reason": ""}
        if key not in observed_map:
            if allow_missing:
                row.update(status="SKIP(allow_missing)", reason="not observable from the dummy forward pass")
            else:
                row.update(status="FAIL", reason="not observable from the dummy forward pass "
                                                 "(set expected_allow_missing_keys to skip it)")
        else:
            row["observed"] = observed_map[key]
            reason = compare(want, observed_map[key], float(tolerance))
            if reason:
                row.update(status="FAIL", reason=reason)
        result.validation_table.append(row)
    if not expected:
        result.overall_result = "SKIP"
    elif any(r["status"] == "FAIL" for r in result.validation_table):
        result.overall_result = "FAIL"
    else:
        result.overall_result = "PASS"
    return result


def enforce(result: ContractResult) -> ContractResult:
    """Raise ``ContractError`` on FAIL (the smoke test stops here), else return the result."""
    if result.overall_result == "FAIL":
        raise ContractError(result.summary() + "; fix the model or the expected_* claims in model_config.", result)
    return result


def feature_observations(features, input_shape) -> dict:
    """``stride``/``channels``/``feature_shape`` from a backbone's output for a dummy input of
    ``input_shape`` (N, C, H, W): what timm's ``feature_info`` promises, measured."""
    shape = list(features.shape)
    height, width = input_shape[-2], input_shape[-1]
    out = {"channels": shape[1], "feature_shape": shape[1:]}
    if len(shape) == 4 and shape[2] and shape[3]:
        sh, sw = height // shape[2], width // shape[3]
        out["stride"] = sh if sh == sw else [sh, sw]
    return out
