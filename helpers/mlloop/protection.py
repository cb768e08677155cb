"""The files the agent may not write, defined once: what the PreToolUse hook refuses and the list
the skills (both languages) and docs/contracts.md show.

Each entry has the text of its list item (English and Korean: the same code spans), the file
names that point at it when written in inline code (`mlloop.guard`), a path it covers (the tests
write there and expect a denial) and, where a path alone decides, the hook's reason with the
proper way. mlloop's entries in ``.claude/settings.json`` are judged by `mlloop.guard`, which needs
the text an edit would leave.

The list is rendered between ``<!-- mlloop:protected-files -->`` and
``<!-- /mlloop:protected-files -->`` in every file of ``RENDERED``; ``python -m mlloop.protection``
rewrites those blocks from a checkout and tests/test_protection.py fails when one drifts.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .layout import (BASELINE_SCRIPT, EVAL_FILES, EVAL_SCORE, EVAL_SCRIPT, HOOK_STATE_FILE, INFER_SAMPLES,
                     SCRIPT_RE, SKILLS, Project)

SETTINGS_FILES = (".claude/settings.json", ".claude/settings.local.json")


# ---- what a path alone decides ----------------------------------------------------------------

def _rules(project: Project, rel: str, parts: list[str]) -> str | None:
    for skill in SKILLS:
        if rel in (project.rel(project.rules_path(skill)), project.rel(project.instruction_path(skill))):
            return (f"{rel} is the user's instruction for the {skill} skill; rules win over everything and only "
                    "the user changes them. If it stops you, say so and ask the user to edit it "
                    "(`mlloop rules` then validates it).")
    return None


def _task_format(project: Project, rel: str, parts: list[str]) -> str | None:
    if rel == project.rel(project.task_format_path):
        return (f"{rel} defines the prepdata layout of every task type, which `mlloop check prepdata` enforces; "
                "only the user changes it. Write the data pipeline to follow it, or ask the user.")
    return None


def _eval_outputs(project: Project, rel: str, parts: list[str]) -> str | None:
    if not (parts[-1] in EVAL_FILES or INFER_SAMPLES in parts[:-1]):
        return None
    if len(parts) >= 4 and parts[:2] == ["Models", "Artifacts"]:
        return (f"{rel} is an evaluation output; only the frozen evaluation writes it. Run "
                f"`python {EVAL_SCRIPT} --version {parts[2]}` (after training that version).")
    if len(parts) >= 4 and parts[:2] == ["Models", "external"]:
        return (f"{rel} is an external model's score; it comes from the user or from "
                f"`python Models/external/{parts[2]}/evaluation.py ...`, never from a hand edit.")
    return f"{rel} is an evaluation output; only `python {EVAL_SCRIPT} --version vNNN` writes such files."


def _rawdata(project: Project, rel: str, parts: list[str]) -> str | None:
    if parts[:2] == ["dataset", "rawdata"] and len(parts) > 2 and rel != project.rel(project.profiling_md):
        return (f"{rel} is raw input data, which is never modified. Read it; write derived data with "
                "01_data_pipeline.py into dataset/prepdata/<dataset_id>/ (only profiling.md is written here).")
    return None


def _version_script(project: Project, rel: str, parts: list[str]) -> str | None:
    """A version's script is frozen once it was evaluated (its score describes that code)."""
    m = SCRIPT_RE.match(rel)
    if m and (project.artifact_dir(f"v{m.group(1)}") / EVAL_SCORE).exists():
        return (f"{rel} was trained and evaluated; its eval_score.json describes exactly this code, so it is "
                "frozen. Make the change in the next version (`mlloop new-version`, then edit the new script).")
    return None


def _baseline_script(project: Project, rel: str, parts: list[str]) -> str | None:
    """The baseline is frozen once v001 was copied from it (Step 0's one-time patch comes before)."""
    if rel == BASELINE_SCRIPT and project.version_scripts():
        return (f"{rel} is the baseline that v001 was copied from; the loop has started, so it is frozen. "
                "Change the newest version's script instead (`mlloop status` names it).")
    return None


def _eval_script(project: Project, rel: str, parts: list[str]) -> str | None:
    if rel != EVAL_SCRIPT:
        return None
    evaluated = [p.name for _, p in project.version_dirs() if (p / EVAL_SCORE).exists()]
    if evaluated:
        return (f"{EVAL_SCRIPT} is the frozen evaluation protocol and {evaluated[0]} was already evaluated "
                "with it; changing it would make scores incomparable (`mlloop report` re-evaluates every "
                "version whose eval script changed). Put the change in the next version's training script "
                "(`mlloop new-version`), or ask the user.")
    return None


def _hook_state(project: Project, rel: str, parts: list[str]) -> str | None:
    if rel == f".claude/{HOOK_STATE_FILE}":
        return (f"{rel} is the Stop hook's own block counter; only `mlloop hook stop` writes it. If the Stop "
                "hook blocks you, fix what `mlloop check` reports, or tell the user why you cannot.")
    return None


# ---- the list ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protected:
    key: str
    en: str                     # the list item (markdown)
    ko: str                     # the same, in Korean, with the same code spans
    example: str                # a project path it covers (once v001 is evaluated)
    names: tuple[str, ...] = ()  # names that, in inline code that writes, point at it
    reason: Callable[[Project, str, list[str]], str | None] | None = None  # None: judged by mlloop.guard


PROTECTED: tuple[Protected, ...] = (
    Protected("rules", "the rules and instruction files of both skills (`user_defined_rules.json`, "
              "`user_instruction.md`)",
              "두 스킬의 규칙·지시사항(`user_defined_rules.json`, `user_instruction.md`)",
              ".claude/skills/progressive-training/user_defined_rules.json",
              ("user_defined_rules.json", "user_instruction.md"), _rules),
    Protected("task_format", "`task_format.yaml`", "`task_format.yaml`",
              ".claude/skills/build-baseline/task_format.yaml", ("task_format.yaml",), _task_format),
    Protected("eval_outputs", "evaluation outputs, wherever they are: `eval_score.json`, "
              "`trivial_baselines.json`, `eval_samples.jsonl`, `infer_samples/`",
              "평가 출력(위치 무관): `eval_score.json`, `trivial_baselines.json`, `eval_samples.jsonl`, "
              "`infer_samples/`",
              f"Models/Artifacts/v001/{EVAL_SCORE}", (*sorted(EVAL_FILES), INFER_SAMPLES), _eval_outputs),
    Protected("rawdata", "anything under `dataset/rawdata/` except `profiling.md`",
              "`dataset/rawdata/` 아래 전부(`profiling.md` 제외)",
              "dataset/rawdata/src_a/0.txt", ("rawdata",), _rawdata),
    Protected("version_script", "a `02_train_vNNN.py` once its version has an `eval_score.json`",
              "`eval_score.json` 이 있는 버전의 `02_train_vNNN.py`", "02_train_v001.py", (), _version_script),
    Protected("baseline_script", "`02_train_baseline.py` once `02_train_v001.py` exists",
              "`02_train_v001.py` 이후의 `02_train_baseline.py`", BASELINE_SCRIPT, (), _baseline_script),
    Protected("eval_script", "`03_eval.py` once any version has an `eval_score.json`",
              "`eval_score.json` 이 하나라도 생긴 뒤의 `03_eval.py`", EVAL_SCRIPT, (), _eval_script),
    Protected("hook_state", "`.claude/.mlloop-hook-state.json`", "`.claude/.mlloop-hook-state.json`", f".claude/{HOOK_STATE_FILE}", (HOOK_STATE_FILE,),
              _hook_state),
    Protected("hook_settings", "mlloop's hook entries in `.claude/settings.json`, `.claude/settings.local.json`",
              "`.claude/settings.json`, `.claude/settings.local.json` 의 mlloop 훅 항목",
              SETTINGS_FILES[0], tuple(Path(s).name for s in SETTINGS_FILES)),
)
PROTECTED_NAMES = frozenset(name for entry in PROTECTED for name in entry.names)


def protected_reason(project: Project, rel: str) -> str | None:
    """Why the agent may not write ``rel`` (project-relative), with the proper way; None if it may
    (mlloop's hook entries in the settings files are `mlloop.guard`'s to judge)."""
    parts = rel.split("/")
    for entry in PROTECTED:
        reason = entry.reason(project, rel, parts) if entry.reason else None
        if reason:
            return reason
    return None


# ---- the rendered copies ----------------------------------------------------------------------

START, END = "<!-- mlloop:protected-files -->", "<!-- /mlloop:protected-files -->"
BLOCK_RE = re.compile(rf"^([ \t]*){re.escape(START)}\n.*?^[ \t]*{re.escape(END)}$", re.S | re.M)
# Repository file -> the language its copy is in.
RENDERED = {"skills/build-baseline/SKILL.md": "en", "skills/progressive-training/SKILL.md": "en",
            "skills-ko/build-baseline/SKILL.md": "ko", "skills-ko/progressive-training/SKILL.md": "ko",
            "docs/contracts.md": "en"}


def render(lang: str, indent: str = "") -> str:
    """The block, markers included, every line at ``indent``."""
    items = [f"- {getattr(entry, lang)}" for entry in PROTECTED]
    return "\n".join(indent + line for line in (START, *items, END))


def rerendered(text: str, lang: str) -> str:
    """``text`` with its one block rendered afresh (keeping the opening marker's indent)."""
    blocks = list(BLOCK_RE.finditer(text))
    if len(blocks) != 1:
        raise ValueError(f"expected one {START} … {END} block, found {len(blocks)}")
    m = blocks[0]
    return text[:m.start()] + render(lang, m.group(1)) + text[m.end():]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the blocks in a checkout (``python -m mlloop.protection [ROOT]``); print what changed."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[2]
    for rel, lang in RENDERED.items():
        path = root / rel
        text = path.read_text(encoding="utf-8")
        try:
            new = rerendered(text, lang)
        except ValueError as exc:
            print(f"{rel}: {exc}; add the two marker lines where the list goes.", file=sys.stderr)
            return 1
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
