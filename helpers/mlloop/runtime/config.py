"""A training script's settings: its UPPER_CASE constants, then the rules, then ``--KEY=VALUE``.

Precedence, lowest first:
1. the constants at the top of the script (what a version edits),
2. the rules (``user_defined_rules.json``, merged by ``mlloop.rules.resolve``) for the settings
   the script maps in its ``FROM_RULES`` (rules win over the script, as the seed says),
3. ``--KEY=VALUE`` on the command line (one run, e.g. a test or a retry).

Besides the script's own settings the runtime reads a few run switches, also as ``--KEY=VALUE``
(``RUN_KEYS``). Values go through ``ast.literal_eval``; a bare word is kept as a string where
the setting is a string. Unknown keys and wrong types are errors that list what is known.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ..errors import MlloopError

# Run switches every training script understands (they are not the script's settings).
RUN_KEYS: dict[str, Any] = {
    "SMOKE": None,          # True: run the smoke test whatever the file name; None: follow the file name
    "DETERMINISTIC": False,  # True: deterministic kernels (slower); seeds are always set
    "PRECISION": None,      # None: bf16-mixed on GPUs that support it, 16-mixed on other GPUs, 32-true on CPU
    "CPU_DEVICES": None,    # N > 1: N CPU processes under DDP (gloo) — a way to test multi-device runs
    "THREADS": None,        # torch intra-op threads; None: from the CPUs this process may use (runtime.defaults)
    "RETRY_CAUSE": None,    # retry report: why the previous attempt failed (root_cause_hypothesis)
    "RETRY_CHANGE": None,   # retry report: what was changed for this attempt (code_change_summary)
}
PLAIN = (bool, int, float, str, list, tuple, dict, type(None))
HARNESS = ("FROM_RULES", "TASK_TYPES")  # upper-case names in a script that are wiring, not settings
_ARG_RE = re.compile(r"--([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


def script_settings(namespace: dict) -> dict:
    """The UPPER_CASE plain-valued constants of a script's module namespace (``globals()``)."""
    return {k: v for k, v in namespace.items()
            if k.isupper() and not k.startswith("_") and k not in HARNESS and isinstance(v, PLAIN)}


def _convert(key: str, raw: str, default: Any) -> Any:
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word: --BACKBONE=resnet18
    if isinstance(default, str) and not isinstance(value, str):
        value = raw  # --NAME=123 where NAME is a string setting stays "123"
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise MlloopError(f"--{key}: expected True or False, got {raw!r}.")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if type(value) is not type(default):
        raise MlloopError(f"--{key}: expected {type(default).__name__} like the default {default!r}, got {raw!r}.")
    return value


def parse_overrides(argv: list[str] | None, defaults: dict) -> dict:
    """``{KEY: value}`` from ``--KEY=VALUE`` arguments, checked against ``defaults``' keys and types."""
    out: dict[str, Any] = {}
    for arg in argv or []:
        m = _ARG_RE.fullmatch(arg)
        if not m:
            raise MlloopError(f"{arg!r}: settings are given as --KEY=VALUE (e.g. --LR=3e-4).")
        key = m.group(1).upper()
        if key not in defaults:
            raise MlloopError(f"--{m.group(1)}: unknown setting; known: {', '.join(sorted(defaults))}.")
        out[key] = _convert(key, m.group(2), defaults[key])
    return out


def lookup(values: dict, dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` for ``"model_config.backbone"`` in the resolved rules."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def resolve_settings(namespace: dict, argv: list[str] | None, rules_values: dict,
                     from_rules: dict[str, str] | None = None) -> tuple[dict, dict, dict]:
    """``(settings, run_switches, sources)`` for one run.

    ``sources[KEY]`` says where each setting's value came from: ``script``, ``rules:<path>`` or
    ``command line``, so spec.json shows why a value is what it is.
    """
    defaults = script_settings(namespace)
    clash = sorted(set(defaults) & set(RUN_KEYS))
    if clash:
        raise MlloopError(f"{', '.join(clash)}: these names are run switches of mlloop.runtime; rename the setting.")
    settings = dict(defaults)
    sources = {k: "script" for k in defaults}
    for key, path in (from_rules or {}).items():
        if key not in defaults:
            raise MlloopError(f"FROM_RULES maps {key}, which is not a setting of this script; add {key} = ... at the top.")
        found, value = lookup(rules_values, path)
        if found and value is not None:
            settings[key] = value
            sources[key] = f"rules:{path}"
    overrides = parse_overrides(argv, {**defaults, **RUN_KEYS})
    switches = dict(RUN_KEYS)
    for key, value in overrides.items():
        if key in RUN_KEYS:
            switches[key] = value
        else:
            settings[key] = value
            sources[key] = "command line"
    return settings, switches, sources
