"""`mlloop hook EVENT`: what Claude Code runs at session start, before a tool that can write a
file (the edit tools, Bash, MCP tools: `mlloop.guard` reads what each would write) and at stop.

Output formats, as the real client (Claude Code 2.1.x) honours them (tests/e2e check this):

- SessionStart: ``{"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": ...}}``
  on stdout, exit 0 — the client adds "SessionStart hook additional context: ..." to the model's
  context (also after /clear and compaction: sources startup|resume|clear|compact).
- PreToolUse: ``{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
  "permissionDecisionReason": ...}}``, exit 0 — the tool does not run and the reason is the tool
  result the model reads next.
- Stop: ``{"decision": "block", "reason": ...}``, exit 0 — the turn goes on with "Stop hook
  feedback: <reason>". (Exit 2 with the reason on stderr works too, but the client then prefixes
  the whole hook command line to the feedback.)

A hook must never lock a session: outside an mlloop project every event is a silent no-op; bad
input or an internal error is reported (a ``systemMessage`` for the user, a line on stderr) and the
action is allowed; the Stop hook blocks at most ``MAX_STOP_BLOCKS`` times in a row. Exit code is
always 0.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import MlloopError
from .guard import bash_denial, edit_denial, mcp_denial, user_only
from .install import PRE_TOOL_USE_MATCHER, is_mlloop_command
from .jsonio import JsonProblems, dumps, read_json, write_text_atomic
from .layout import HOOK_STATE_FILE, SKILLS, Project

MAX_STOP_BLOCKS = 3
MAX_SESSIONS_KEPT = 20
EDIT_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}
EVENTS = {"session-start": "SessionStart", "pre-tool-use": "PreToolUse", "stop": "Stop"}
MAX_CONTEXT_CHARS = 8000
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class HookOutcome:
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""


def _json_out(doc: dict, stderr: str = "") -> HookOutcome:
    return HookOutcome(0, json.dumps(doc, ensure_ascii=False), stderr)


def _notice(message: str) -> HookOutcome:
    """Tell the user something went wrong, and let the action go ahead."""
    return _json_out({"systemMessage": message}, message)


def run_hook(event: str | None, stdin_text: str, project_dir: str | os.PathLike | None = ".") -> HookOutcome:
    payload, bad_input = _parse(stdin_text)
    name = EVENTS.get((event or "").strip().lower()) or (event if event in EVENTS.values() else None)
    if name is None and not event:
        name = payload.get("hook_event_name")
    try:
        project = _find_project(project_dir, payload)
        if project is None:
            return HookOutcome()  # not an mlloop project: hooks stay out of the way
        if name not in EVENTS.values():
            return _notice(f"mlloop hook: unknown event {event or name!r}; expected one of "
                           f"{', '.join(EVENTS)}. Nothing was checked.")
        if bad_input and name != "SessionStart":
            return _notice(f"mlloop hook ({name}): {bad_input}; nothing was checked this time.")
        if name == "SessionStart":
            return session_start(project, payload)
        if name == "PreToolUse":
            return pre_tool_use(project, payload)
        return stop(project, payload)
    except Exception as exc:  # never lock a session on our own bug
        if os.environ.get("MLLOOP_DEBUG"):
            raise
        detail = str(exc) if isinstance(exc, MlloopError) else f"internal error: {type(exc).__name__}: {exc}"
        detail = detail.rstrip(". ")
        return _notice(f"mlloop hook ({name or event or 'unknown event'}): {detail}. The session goes on "
                       "unchecked; run `mlloop check` by hand (MLLOOP_DEBUG=1 shows where it failed).")


def _parse(stdin_text: str) -> tuple[dict, str | None]:
    if not stdin_text or not stdin_text.strip():
        return {}, "the hook input on stdin was empty"
    try:
        payload = json.loads(stdin_text)
    except ValueError as exc:
        return {}, f"the hook input on stdin is not valid JSON ({exc})"
    if not isinstance(payload, dict):
        return {}, "the hook input on stdin is not a JSON object"
    return payload, None


def _find_project(project_dir, payload: dict) -> Project | None:
    """The project: --project if given, else $CLAUDE_PROJECT_DIR, else the input's cwd; None when
    that folder is not an mlloop project."""
    candidates = []
    if project_dir not in (None, "", "."):
        candidates.append(project_dir)
    candidates += [os.environ.get("CLAUDE_PROJECT_DIR"), payload.get("cwd"), "."]
    for candidate in candidates:
        if isinstance(candidate, (str, os.PathLike)) and candidate and Path(candidate).is_dir():
            project = Project(Path(candidate).resolve())
            return project if is_mlloop_project(project) else None
    return None


def is_mlloop_project(project: Project) -> bool:
    return (any(project.skill_dir(s).is_dir() for s in SKILLS)
            or (project.claude_dir / ".mlloop-install.json").is_file()
            or project.rawdata.is_dir() or project.artifacts_root.is_dir())


# ---- SessionStart -------------------------------------------------------------------------

def session_start(project: Project, payload: dict) -> HookOutcome:
    # Lazy: PreToolUse runs before every tool call and must not pay for loading the checks.
    from .state import loop_status

    head = "mlloop status (the loop's state, read from the files by `mlloop status`):"
    try:
        body = "\n".join(loop_status(project).lines())
    except MlloopError as exc:
        body = f"`mlloop status` failed: {exc}"
    tail = ("Follow the step it names in the skill's SKILL.md; a step is done only when `mlloop check` "
            "says so.")
    if payload.get("source") == "compact":
        tail = ("The conversation was compacted: re-read the SKILL.md of the skill in use before going on. "
                + tail)
    outdated = _outdated_matcher(project)
    if outdated:
        tail += "\n" + outdated
    context = f"{head}\n{body}\n{tail}"
    if len(context) > MAX_CONTEXT_CHARS:
        context = context[:MAX_CONTEXT_CHARS - 40] + "\n… (run `mlloop status` for the rest)"
    return _json_out({"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": context}})


def _outdated_matcher(project: Project) -> str | None:
    """A settings.json written by an older `mlloop init` guards fewer tools: say how to update it."""
    try:
        settings = read_json(project.settings_path) if project.settings_path.is_file() else None
    except JsonProblems:
        return None
    groups = ((settings or {}).get("hooks") or {}).get("PreToolUse") if isinstance(settings, dict) else None
    for group in groups if isinstance(groups, list) else []:
        handlers = group.get("hooks") if isinstance(group, dict) else None
        if isinstance(handlers, list) and any(isinstance(h, dict) and is_mlloop_command(h.get("command"))
                                              for h in handlers) and group.get("matcher") != PRE_TOOL_USE_MATCHER:
            return (f"mlloop's PreToolUse hook in {project.rel(project.settings_path)} is from an older mlloop and "
                    f"does not guard every tool (matcher {group.get('matcher')!r}); ask the user to run `mlloop init` "
                    "to update it.")
    return None


# ---- PreToolUse ---------------------------------------------------------------------------

def pre_tool_use(project: Project, payload: dict) -> HookOutcome:
    tool = payload.get("tool_name")
    tool_input = payload.get("tool_input") if isinstance(payload.get("tool_input"), dict) else {}
    base = payload.get("cwd") if isinstance(payload.get("cwd"), str) else str(project.root)
    if tool in EDIT_TOOLS:
        reason = edit_denial(project, base, tool, tool_input)
    elif tool == "Bash":
        reason = bash_denial(project, base, tool_input)
    elif isinstance(tool, str) and tool.startswith("mcp__"):
        reason = mcp_denial(project, base, tool, tool_input)
    else:
        return HookOutcome()
    if not reason:
        return HookOutcome()
    return _json_out({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                             "permissionDecisionReason": f"mlloop: {reason}"}})


# ---- Stop ---------------------------------------------------------------------------------

def stop(project: Project, payload: dict) -> HookOutcome:
    from .checks import run_check  # lazy, as in session_start

    findings = run_check(project, "all")
    # A broken rules file (or other user-only input) is for the user to fix, and what follows from
    # it (defaults standing in for the rules) is no reason to send the agent back either.
    if any(user_only(project, p.path) for p in findings.problems):
        problems = []
    else:
        problems = findings.problems
    session = str(payload.get("session_id") or "unknown")
    state_path = project.claude_dir / HOOK_STATE_FILE
    state = _read_state(state_path)
    blocks = dict(state.get("stop_blocks") or {})
    count = blocks.pop(session, 0)
    # A fresh stop (not one the client makes after our block) starts a new run of blocks. Within a
    # run, a count that is not a whole number 0..MAX (a hand edit, a broken file) counts as used
    # up: an edited state can end the run early, never make it longer than MAX_STOP_BLOCKS.
    continuing = payload.get("stop_hook_active") is True
    valid = state.get("_valid", True) and type(count) is int and 0 <= count <= MAX_STOP_BLOCKS
    previous = (count if valid else MAX_STOP_BLOCKS) if continuing else 0
    blocks = {k: v for k, v in blocks.items() if type(v) is int and 0 <= v <= MAX_STOP_BLOCKS}
    state.pop("_valid", None)
    if problems:  # a run that was let go stays at MAX until a fresh stop starts a new one
        blocks[session] = min(previous + 1, MAX_STOP_BLOCKS)
        blocks = dict(list(blocks.items())[-MAX_SESSIONS_KEPT:])
    saved = _write_state(state_path, state, {**state, "stop_blocks": blocks})
    if not problems:
        return HookOutcome()
    if previous >= MAX_STOP_BLOCKS:
        return _notice(f"mlloop: `mlloop check` still finds {len(problems)} problem(s), but the turn was already "
                       f"blocked {MAX_STOP_BLOCKS} times in a row, so it ends anyway (a session is never locked). "
                       "Run `mlloop check` to see them.")
    if not saved:
        return _notice(f"mlloop: `mlloop check` finds {len(problems)} problem(s), but {project.rel(state_path)} "
                       "cannot be written, so the Stop hook does not block (it could not count its blocks). "
                       "Run `mlloop check`.")
    listed = [f"- {p.line()}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed.append(f"- … and {len(problems) - MAX_LISTED_PROBLEMS} more (`mlloop check`)")
    reason = "\n".join([
        f"mlloop: the open loop step breaks the contract; `mlloop check` finds {len(problems)} problem(s):",
        *listed,
        "Fix them (and run `mlloop check` until it says ok) before ending the turn, or tell the user why you "
        f"cannot. This is block {previous + 1} of at most {MAX_STOP_BLOCKS} in a row.",
    ])
    return _json_out({"decision": "block", "reason": reason})


def _read_state(path: Path) -> dict:
    """The saved counts; ``_valid`` is False when the file exists but is not ours to trust."""
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        data = read_json(path)
    except JsonProblems:
        return {"_valid": False}
    if path.is_symlink() or not isinstance(data, dict) or not isinstance(data.get("stop_blocks", {}), dict):
        return {"_valid": False}
    return data


def _write_state(path: Path, old: dict, new: dict) -> bool:
    """Save the counter when it changed; False when it cannot be saved."""
    if new == old or (not old and not new.get("stop_blocks")):
        return True
    if path.is_symlink():  # never write through a link the agent may have planted
        path.unlink()
    try:
        write_text_atomic(path, dumps(new))
        return True
    except OSError:
        return False
