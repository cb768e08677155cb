"""`mlloop init`: install the skills, templates and Claude Code hooks into a project.

What goes where (docs/contracts.md, "Layout"):

- ``skills/<name>/`` (or ``skills-ko/<name>/`` with ``--lang ko``) → ``.claude/skills/<name>/``,
  exactly as the folder is (``SKILL.md``, ``reference/``, ``templates/``, ``task_format.yaml`` and
  the example ``user_defined_rules.json`` / ``user_instruction.md``), so a path a skill names
  relative to its own folder is the same in the repository (the plugin) and in the project;
- ``dataset/rawdata/`` is created;
- mlloop's hooks are merged into ``.claude/settings.json``; everything else in it is kept.

Nothing a person wrote is lost. A file that differs from what mlloop installed last (recorded
in ``.claude/.mlloop-install.json``) and from every bundled version is the user's: it is kept,
unless ``--force``, and then the old one is first copied to ``<name>.bak``. A file still as
mlloop installed it is brought up to date silently. A file an earlier init installed that the
bundle no longer has (a template that moved) is removed if it is still as installed, else left to
the user. Running init twice changes no byte.

The hook command is the absolute path of the Python interpreter running ``mlloop init``,
``-m mlloop hook EVENT``. That interpreter has mlloop importable by construction, so the hooks
work whether or not a virtual environment is active or ``mlloop`` is on the PATH of the shell
that started Claude Code; the path is shell-quoted, so spaces are safe. The project is taken from
``$CLAUDE_PROJECT_DIR`` (or the hook input's ``cwd``) by ``mlloop hook`` itself. If the
environment moves, running ``mlloop init`` again rewrites mlloop's entries in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .bundle import SKILL_DIRS, TEMPLATES, bundle_root
from .errors import MlloopError
from .jsonio import JsonProblems, dumps, read_json
from .layout import SKILLS, Project, free_backup_path

# What the PreToolUse hook is registered for (a regex to the client, anchored: every tool that
# can write a file — the edit tools, Bash, and any MCP server's tools).
PRE_TOOL_USE_MATCHER = "^(Write|Edit|MultiEdit|NotebookEdit|Bash|mcp__.*)$"
MANIFEST = ".mlloop-install.json"          # in .claude/: what init installed, by sha256
USER_FILES = ("user_defined_rules.json", "user_instruction.md", "task_format.yaml")

# The hooks mlloop registers: event -> (matcher or None, `mlloop hook` argument, timeout in s).
HOOKS = {
    "SessionStart": ("startup|resume|clear|compact", "session-start", 30),
    "PreToolUse": (PRE_TOOL_USE_MATCHER, "pre-tool-use", 30),
    "Stop": (None, "stop", 120),
}


@dataclass
class FileAction:
    path: str                 # relative to the project
    action: str               # created | updated | unchanged | kept | replaced | removed
    backup: str | None = None

    def to_dict(self) -> dict:
        out = {"path": self.path, "action": self.action}
        if self.backup:
            out["backup"] = self.backup
        return out


@dataclass
class InitResult:
    project: Project
    lang: str
    files: list[FileAction] = field(default_factory=list)
    settings: str = "unchanged"      # created | updated | unchanged
    hook_command: str = ""
    rawdata_created: bool = False

    def count(self, action: str) -> int:
        return sum(1 for f in self.files if f.action == action)

    def to_dict(self) -> dict:
        return {"ok": True, "project": str(self.project.root), "lang": self.lang,
                "files": [f.to_dict() for f in self.files],
                "settings": {"path": self.project.rel(self.project.settings_path), "action": self.settings,
                             "hook_command": self.hook_command},
                "rawdata": {"path": self.project.rel(self.project.rawdata),
                            "action": "created" if self.rawdata_created else "unchanged"}}

    def lines(self) -> list[str]:
        out = []
        for f in self.files:
            if f.action == "kept":
                out.append(f"kept     {f.path} (your edits; `mlloop init --force` replaces it, keeping a .bak)")
            elif f.action == "replaced":
                out.append(f"replaced {f.path} (your version is kept as {f.backup})")
            elif f.action != "unchanged":
                out.append(f"{f.action:<8} {f.path}")
        if self.settings != "unchanged":
            out.append(f"{self.settings:<8} {self.project.rel(self.project.settings_path)} "
                       f"(mlloop hooks: {', '.join(HOOKS)})")
        if self.rawdata_created:
            out.append(f"created  {self.project.rel(self.project.rawdata)}/")
        changed = len(out)
        counts = ", ".join(f"{self.count(a)} {a}" for a in ("created", "updated", "replaced", "kept", "removed",
                                                              "unchanged")
                           if self.count(a))
        out.append(f"mlloop init ({self.lang}): {counts or 'no files'}"
                   + ("" if changed else "; nothing to change") + ".")
        out.append("Next: put your raw data under dataset/rawdata/<source>/, edit the two "
                   "user_defined_rules.json files, then type /build-baseline in Claude Code.")
        return out


# ---- the bundle ---------------------------------------------------------------------------

def bundle_files(lang: str, bundle: Path | None = None) -> dict[str, Path]:
    """Every file init installs: project-relative destination -> bundle source."""

    root = bundle or bundle_root()
    if lang not in SKILL_DIRS:
        raise MlloopError(f"--lang must be one of {', '.join(SKILL_DIRS)}, not {lang!r}.")
    files: dict[str, Path] = {}
    for skill in SKILLS:
        source = root / SKILL_DIRS[lang] / skill
        english = root / SKILL_DIRS["en"] / skill
        if not (source / "SKILL.md").is_file():
            raise MlloopError(f"the mlloop installation has no {SKILL_DIRS[lang]}/{skill}/SKILL.md; "
                              "reinstall mlloop (uv sync) or choose another --lang.")
        # templates/ is the English folder's in every language (skills-ko links to it); read from
        # there, it does not matter that wheels and sdists leave links out.
        for path in _walk(source):
            rel = path.relative_to(source).as_posix()
            if not rel.startswith(f"{TEMPLATES}/"):
                files[f".claude/skills/{skill}/{rel}"] = path
        templates = _walk(english / TEMPLATES)
        if not templates:
            raise MlloopError(f"the mlloop installation has no {SKILL_DIRS['en']}/{skill}/{TEMPLATES}/; "
                              "reinstall mlloop (uv sync).")
        for path in templates:
            files[f".claude/skills/{skill}/{path.relative_to(english).as_posix()}"] = path
        # Data files a translation may leave out (task_format.yaml, the example rules) come from en.
        for name in USER_FILES:
            dest = f".claude/skills/{skill}/{name}"
            if dest not in files and (english / name).is_file():
                files[dest] = english / name
    return dict(sorted(files.items()))


def _walk(folder: Path) -> list[Path]:
    """Every file in ``folder``, through links (skills-ko's ``templates`` links to the English one)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out += [Path(dirpath) / name for name in filenames if not name.endswith((".pyc", ".bak"))]
    return sorted(out)


def _pristine_versions(dest: str, root: Path) -> set[str]:
    """sha256 of every bundled version of ``dest`` (any language): replacing one loses nothing."""
    parts = dest.split("/")
    if len(parts) < 4 or parts[:2] != [".claude", "skills"]:
        return set()
    skill, rest = parts[2], "/".join(parts[3:])
    out = set()
    for sub in SKILL_DIRS.values():
        candidate = root / sub / skill / rest
        if candidate.is_file():
            out.add(_sha(candidate.read_bytes()))
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- init ---------------------------------------------------------------------------------

def init_project(project: Project, lang: str = "en", force: bool = False, bundle: Path | None = None) -> InitResult:
    root = bundle or bundle_root()
    files = bundle_files(lang, root)
    # Read everything that can fail before writing anything: a broken settings.json or manifest
    # stops init with the tree untouched.
    settings_before, settings_after = plan_settings(project)
    manifest_path = project.claude_dir / MANIFEST
    manifest = _read_manifest(project, manifest_path)
    installed: dict[str, str] = dict(manifest.get("files") or {})

    result = InitResult(project, lang)
    for dest, source in files.items():
        result.files.append(_install_file(project, dest, source.read_bytes(), installed, force, root))
    for dest in sorted(set(installed) - set(files)):
        action = _retire_file(project, dest, installed)
        if action:
            result.files.append(action)

    result.rawdata_created = not project.rawdata.is_dir()
    project.rawdata.mkdir(parents=True, exist_ok=True)

    result.hook_command = hook_command("<event>")
    if settings_after != settings_before:
        result.settings = "created" if settings_before is None else "updated"
        _write_bytes(project.settings_path, dumps(settings_after).encode("utf-8"))

    new_manifest = {"mlloop_version": __version__, "lang": lang, "files": dict(sorted(installed.items()))}
    if new_manifest != manifest:
        _write_bytes(manifest_path, dumps(new_manifest).encode("utf-8"))
    return result


def _install_file(project: Project, dest: str, data: bytes, installed: dict[str, str], force: bool,
                  root: Path) -> FileAction:
    target = project.root / dest
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise MlloopError(f"{dest}: expected a plain file, found a link or a folder; move it away and run "
                          "`mlloop init` again.")
    if not target.exists():
        _write_bytes(target, data)
        installed[dest] = _sha(data)
        return FileAction(dest, "created")
    current = target.read_bytes()
    if current == data:
        installed[dest] = _sha(data)
        return FileAction(dest, "unchanged")
    ours = {installed.get(dest)} | _pristine_versions(dest, root)
    if _sha(current) in ours:  # as mlloop left it: bring it up to date
        _write_bytes(target, data)
        installed[dest] = _sha(data)
        return FileAction(dest, "updated")
    if not force:
        return FileAction(dest, "kept")
    backup = free_backup_path(target)
    _write_bytes(backup, current)
    _write_bytes(target, data)
    installed[dest] = _sha(data)
    return FileAction(dest, "replaced", project.rel(backup))


def _retire_file(project: Project, dest: str, installed: dict[str, str]) -> FileAction | None:
    """A file an earlier init installed that the bundle no longer has (a template that moved):
    removed while still as installed; an edited one is the user's, kept and no longer tracked."""
    recorded = installed.pop(dest)
    target = project.root / dest
    if not dest.startswith(".claude/skills/") or target.is_symlink() or not target.is_file():
        return None
    if _sha(target.read_bytes()) != recorded:
        return None
    target.unlink()
    folder, top = target.parent, project.skills_dir.resolve()
    while folder.resolve() != top and top in folder.resolve().parents and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
    return FileAction(dest, "removed")


def _write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file and ``os.replace``, keeping an existing file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.mlloop-tmp")
    tmp.write_bytes(data)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


def _read_manifest(project: Project, path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = read_json(path, project.rel(path))
    except JsonProblems:
        return {}  # only a record of what init wrote; a broken one means "treat every file as edited"
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else {}


# ---- settings.json ------------------------------------------------------------------------

def hook_command(event: str) -> str:
    """The shell command Claude Code runs for ``event`` (see the module docstring)."""
    python = os.path.abspath(sys.executable)  # not resolved: a venv's python is a symlink on purpose
    return f"{shlex.quote(python)} -m mlloop hook {event}"


def is_mlloop_command(command: object) -> bool:
    """True for a hook command mlloop wrote (any interpreter path, or `mlloop hook` on PATH)."""
    if not isinstance(command, str):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    if len(words) >= 2 and os.path.basename(words[0]) == "mlloop" and words[1] == "hook":
        return True
    return any(words[i - 1:i + 2] == ["-m", "mlloop", "hook"] for i in range(1, len(words) - 1))


def plan_settings(project: Project) -> tuple[dict | None, dict]:
    """The settings before (None if absent) and after merging mlloop's hooks.

    Strict JSON; a broken file is a clean error naming it and is never overwritten.
    """
    path = project.settings_path
    rel = project.rel(path)
    before = None
    if path.exists() or path.is_symlink():
        try:
            before = read_json(path, rel)
        except JsonProblems as exc:
            raise MlloopError(f"{rel} is not valid JSON, so mlloop's hooks were not added and the file was "
                              "left as it is; fix it (or move it away) and run `mlloop init` again.",
                              exc.problems) from None
        if not isinstance(before, dict):
            raise MlloopError(f"{rel} must hold one JSON object, found {type(before).__name__}; fix it and run "
                              "`mlloop init` again.")
    after = json.loads(json.dumps(before)) if before is not None else {}
    hooks = after.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise MlloopError(f"{rel}::$.hooks must be an object (event name -> list of matcher groups); fix it "
                          "and run `mlloop init` again.")
    for event, (matcher, arg, timeout) in HOOKS.items():
        groups = hooks.get(event, [])
        if not isinstance(groups, list):
            raise MlloopError(f"{rel}::$.hooks.{event} must be a list of matcher groups; fix it and run "
                              "`mlloop init` again.")
        ours = {"type": "command", "command": hook_command(arg), "timeout": timeout}
        group = ({"matcher": matcher} if matcher else {}) | {"hooks": [ours]}
        hooks[event] = _merge_group(groups, group)
    return before, after


def _merge_group(groups: list, group: dict) -> list:
    """Replace mlloop's group in place (keeping the user's order), or append it."""
    out, placed = [], False
    for g in groups:
        handlers = g.get("hooks") if isinstance(g, dict) else None
        if not isinstance(handlers, list) or not any(isinstance(h, dict) and is_mlloop_command(h.get("command"))
                                                     for h in handlers):
            out.append(g)
            continue
        others = [h for h in handlers if not (isinstance(h, dict) and is_mlloop_command(h.get("command")))]
        if others:  # the user put their own handlers in our group: keep them in a group of their own
            out.append({**g, "hooks": others})
        if not placed:
            out.append(group)
            placed = True
    if not placed:
        out.append(group)
    return out
