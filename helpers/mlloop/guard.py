"""Which writes the PreToolUse hook refuses, for every tool that can write a file.

The protected files and the proper way to change each are `mlloop.protection`; this module
finds the files a tool call would write: the edit tools' ``file_path``, a Bash command's write
targets (`shellwrites`), an MCP tool's path arguments. It also guards the guard: an edit of
``.claude/settings.json`` (or ``settings.local.json``) may not change mlloop's hook entries or
turn hooks off (the Stop hook's state file is in `mlloop.protection`'s list).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import posixpath
import re
from pathlib import Path

from .install import is_mlloop_command
from .layout import SKILLS, Project
from .protection import PROTECTED_NAMES, SETTINGS_FILES, protected_reason
from .shellwrites import write_targets

# Inline code that does any of this may write what it names (reading stays allowed).
WRITE_MARKERS = re.compile(
    r"open\([^)]*,\s*(mode\s*=\s*)?['\"][^'\"]*[wax+]|\bwrite|\bdump\(|\bunlink|\bremove|\brmtree|\brename|"
    r"\breplace\(|\bmove\(|\bcopy|\btruncate|\btouch\(|\bsymlink|\bchmod|\bsystem\(|subprocess|\bPopen|"
    r"\bexec[lv]|\bsave|\bto_(csv|json|parquet)|\bmkdir|\bspawn|\bfs\.|>>?\s*['\"]|\bprint\s*\{|\bsed\b")
MAX_TREE_ENTRIES = 100_000   # a folder a command removes or overwrites is searched this far
READ_ONLY_MCP = re.compile(r"^(read|get|list|search|find|view|show|stat|describe|query|fetch|grep|glob|head|tail|"
                           r"count|info|tree|directory_tree|inspect|diff|lookup|explain)", re.IGNORECASE)


# ---- where a path is, and whose -----------------------------------------------------------

def project_relative(project: Project, path: Path) -> list[str]:
    """The path relative to the project, as written and with links resolved (both are checked,
    so a link to a protected file is protected too); nothing for a path outside the project."""
    out = []
    root = str(project.root)
    for candidate in (posixpath.normpath(path.as_posix()), os.path.realpath(path)):
        rel = os.path.relpath(candidate, root)
        if rel != "." and not rel.startswith(".."):
            out.append(Path(rel).as_posix())
    return out


def user_only(project: Project, rel: str) -> bool:
    """Files only the user may change: a problem in one is not the agent's to fix."""
    parts = rel.split("/")
    return (rel in {project.rel(project.rules_path(s)) for s in SKILLS}
            or rel in {project.rel(project.instruction_path(s)) for s in SKILLS}
            or rel == project.rel(project.task_format_path)
            or (parts[:2] == ["dataset", "rawdata"] and rel != project.rel(project.profiling_md)))


# ---- what a tool call would write --------------------------------------------------------

def edit_denial(project: Project, base: str, tool: str, tool_input: dict) -> str | None:
    target = tool_input.get("file_path") or tool_input.get("notebook_path")
    if not isinstance(target, str) or not target:
        return None
    for rel in project_relative(project, Path(base) / target):
        reason = protected_reason(project, rel) or _guard_reason(project, rel, tool, tool_input)
        if reason:
            return reason
    return None


def bash_denial(project: Project, base: str, tool_input: dict) -> str | None:
    command = tool_input.get("command")
    if not isinstance(command, str) or not command.strip():
        return None
    env = {"HOME": os.path.expanduser("~"), "PWD": base, "CLAUDE_PROJECT_DIR": str(project.root)}
    writes = write_targets(command, env)
    for target in writes.targets:
        reason = _target_reason(project, base, target.word, target.tree, target.names)
        if reason:
            return f"{reason} (This Bash command writes it with {target.how}; reading it is fine.)"
    for how, code in writes.code:
        named = _code_reason(project, base, code)
        if named:
            return f"{named} (This Bash command's {how} writes it; reading it is fine.)"
    for how, text in writes.opaque:
        named = _named_in(project, base, text)
        if named:
            return f"{named} (This Bash command runs {how}, whose writes cannot be told apart; reading it is fine.)"
    return None


def mcp_denial(project: Project, base: str, tool: str, tool_input: dict) -> str | None:
    action = tool.split("__")[-1]
    if READ_ONLY_MCP.match(action):
        return None
    tree = bool(re.search(r"delete|remove|move|rename", action, re.IGNORECASE))
    for value in _strings(tool_input):
        word = value[len("file://"):] if value.startswith("file://") else value
        if "\n" in word or not word or len(word) > 1024:
            continue
        reason = _target_reason(project, base, word, tree, ())
        if reason:
            return f"{reason} (The MCP tool {tool} would write it; reading it is fine.)"
    return None


# ---- one target -----------------------------------------------------------------------------

def _target_reason(project: Project, base: str, word: str, tree: bool, names: tuple[str, ...]) -> str | None:
    for path in _paths(base, word):
        for rel in project_relative(project, Path(path)):
            reason = protected_reason(project, rel) or _guard_reason(project, rel, "Bash", {})
            if reason:
                return reason
        if tree and os.path.isdir(path):
            reason = _tree_reason(project, path, names)
            if reason:
                return reason
    return None


def _paths(base: str, word: str) -> list[str]:
    """The files a word names: globs and ``{a,b}`` expanded (what the shell would do)."""
    out = []
    for expanded in _braces(word):
        path = os.path.join(base, expanded)
        if glob.has_magic(path):
            out += glob.glob(path, include_hidden=True)[:MAX_TREE_ENTRIES] or [path]
        else:
            out.append(path)
    return out


def _braces(word: str, limit: int = 64) -> list[str]:
    m = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not m or limit <= 0:
        return [word]
    out = []
    for option in m.group(1).split(","):
        out += _braces(word[:m.start()] + option + word[m.end():], limit - 1)
    return out[:limit]


def _tree_reason(project: Project, folder: str, names: tuple[str, ...]) -> str | None:
    """Why removing or overwriting ``folder`` (and what is in it) is refused: the first protected
    file in it; a tree too large to search is refused too (never allowed unchecked)."""
    rels = project_relative(project, Path(folder))
    root = str(project.root)
    real = os.path.realpath(folder)
    holds_project = os.path.commonpath([real, root]) == real
    if not rels and not holds_project:
        return None  # outside the project, and not holding it
    seen = walked = 0
    # A folder above the project (`rm -rf ..`) is judged by the project it holds.
    for dirpath, dirnames, filenames in os.walk(root if holds_project else real):
        dirnames.sort()
        walked += len(filenames) + len(dirnames)
        for name in sorted(filenames):
            if names and not any(fnmatch.fnmatch(name, n) for n in names):
                continue
            seen += 1
            if seen > MAX_TREE_ENTRIES or walked > 10 * MAX_TREE_ENTRIES:
                return (f"{project.rel(folder) or '.'} holds more than {MAX_TREE_ENTRIES} files, too many to "
                        "check for protected ones; name the files to change instead.")
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel.startswith(".."):
                continue
            reason = protected_reason(project, Path(rel).as_posix()) or _guard_reason(project, Path(rel).as_posix(),
                                                                                      "Bash", {})
            if reason:
                shown = project.rel(Path(os.path.abspath(folder))) if os.path.isabs(folder) else folder
                return f"{shown or '.'}/ holds a protected file: {reason}"
    holds_rawdata = holds_project or any("dataset/rawdata" == r or "dataset/rawdata".startswith(r + "/") for r in rels)
    if not names and holds_rawdata and project.rawdata.is_dir():
        return ("dataset/rawdata/ is raw input data, which is never modified or removed. Write derived data with "
                "01_data_pipeline.py into dataset/prepdata/<dataset_id>/.")
    return None


# ---- the guard's own files --------------------------------------------------------------------

def _guard_reason(project: Project, rel: str, tool: str, tool_input: dict) -> str | None:
    """mlloop's hook entries in the settings files (`mlloop.protection`'s "hook_settings")."""
    if rel not in SETTINGS_FILES:
        return None
    path = project.root / rel
    new_text = _new_text(path, tool, tool_input)
    if new_text is None:
        return (f"{rel} holds mlloop's hooks, which only `mlloop init` writes; change the rest of it with the Edit "
                "tool (which shows what changes), or ask the user.")
    try:
        old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        old = None
    try:
        new = json.loads(new_text)
    except ValueError:
        return (f"{rel} would no longer be valid JSON, which turns off mlloop's hooks; keep it valid JSON, or ask "
                "the user.")
    if _hook_entries(old) != _hook_entries(new):
        return (f"{rel} holds mlloop's hooks, which only the user (or `mlloop init`) changes; this edit would "
                "change, remove or turn them off. Leave those entries as they are, or ask the user.")
    return None


def _new_text(path: Path, tool: str, tool_input: dict) -> str | None:
    """The file's text after an edit tool runs; None when it cannot be known (Bash, MCP…)."""
    if tool == "Write":
        return tool_input.get("content") if isinstance(tool_input.get("content"), str) else None
    if tool not in ("Edit", "MultiEdit"):
        return None
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, ValueError):
        return None
    edits = tool_input.get("edits") if tool == "MultiEdit" else [tool_input]
    if not isinstance(edits, list):
        return None
    for edit in edits:
        old, new = (edit.get("old_string"), edit.get("new_string")) if isinstance(edit, dict) else (None, None)
        if not isinstance(old, str) or not isinstance(new, str):
            return None
        text = text.replace(old, new) if edit.get("replace_all") else text.replace(old, new, 1)
    return text


def _hook_entries(settings: object) -> object:
    """What of a settings document decides whether mlloop's hooks run."""
    if not isinstance(settings, dict):
        return None
    hooks = settings.get("hooks") if isinstance(settings.get("hooks"), dict) else {}
    ours = []
    for event, groups in sorted(hooks.items()):
        for group in groups if isinstance(groups, list) else []:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            for handler in handlers if isinstance(handlers, list) else []:
                if isinstance(handler, dict) and is_mlloop_command(handler.get("command")):
                    ours.append((event, group.get("matcher"), json.dumps(handler, sort_keys=True)))
    return sorted(ours), bool(settings.get("disableAllHooks"))


# ---- inline code ------------------------------------------------------------------------------

def _code_reason(project: Project, base: str, code: str) -> str | None:
    """A statement of inline code that writes (WRITE_MARKERS) and names a protected file, directly
    or through a variable the code set to one: reading one, and writing elsewhere, stay allowed."""
    named_vars: dict[str, str] = {}
    for statement in re.split(r"[;\n]", code)[:5000]:
        reason = _named_in(project, base, statement)
        assigned = re.match(r"\s*([A-Za-z_]\w*)\s*=[^=]", statement)
        if reason and assigned and not re.search(r"load|read|open\(", statement.split("=", 1)[1]):
            named_vars[assigned.group(1)] = reason  # a path held in a variable (not what was read from it)
        if not WRITE_MARKERS.search(statement):
            continue
        if reason and not (assigned and not WRITE_MARKERS.search(statement.split("=", 1)[1])):
            return reason
        for var, var_reason in named_vars.items():
            if re.search(rf"\b{re.escape(var)}\b", statement):
                return var_reason
    return None


def _named_in(project: Project, base: str, code: str) -> str | None:
    """The reason for the first protected file that ``code`` names (by path, or by a protected
    file's name anywhere in it)."""
    for token in re.findall(r"[\w.~/${}*-]+", code)[:5000]:
        if "/" in token or "." in token:
            reason = _target_reason(project, base, token, False, ())
            if reason:
                return reason
        name = token.rstrip("/").rsplit("/", 1)[-1]
        if name in PROTECTED_NAMES:
            return (f"{name} names a protected file (evaluation outputs, the rules, raw data, or the hooks' own "
                    "settings and state); only mlloop's own steps or the user write those.")
    return None


CONTENT_KEYS = re.compile(r"(content|text|string|body|data|message|description|comment|query|pattern)$", re.IGNORECASE)


def _strings(value: object, depth: int = 0) -> list[str]:
    """Every string argument that may be a path (not what is written: content, text, old/new strings)."""
    if depth > 20:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if not (isinstance(k, str) and CONTENT_KEYS.search(k))
                for s in _strings(v, depth + 1)]
    if isinstance(value, list):
        return [s for v in value[:1000] for s in _strings(v, depth + 1)]
    return []
