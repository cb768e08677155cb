"""What every check shares: the project, the resolved rules, the findings, and safe file access.

A check reads each file at most once (JSON documents, hashes and the validation ids are
cached here) and never opens a path that resolves outside the project: a symlink that
leaves it is reported once, as ``path.symlink_escape``, and then treated as absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import Findings, MlloopError
from ..formats.eval_score import EvalScore, read_eval_score
from ..jsonio import JsonProblems, read_file_bytes, read_json, sha256_file
from ..layout import EVAL_SCORE, Project
from ..rules import Rules, resolve
from ..stages import locked_dataset_id
from ..taskformat import TaskFormat, load_task_format

UNSET = object()   # a cache slot not filled yet (None is a valid answer)


class Context:
    def __init__(self, project: Project):
        self.project = project
        self.root = str(project.root)
        self.out = Findings()
        self.task_format: TaskFormat | None = None
        self.task_format_error: str | None = None
        try:
            self.task_format = load_task_format(project)
        except MlloopError as exc:
            self.task_format_error = str(exc)
        self.rules: Rules = resolve(project, task_types=self.task_format.names if self.task_format else None)
        self.dataset_id, self.dataset_id_source = locked_dataset_id(project, self.rules.dataset_id)
        self._hashes: dict[str, str] = {}
        self._dir_ok: dict[str, bool] = {self.root: True}
        self._escapes: set[str] = set()
        self._scores: dict[str, tuple[EvalScore | None, Findings]] = {}
        self._valid_ids: Any = UNSET
        self._draw: dict[tuple[int, int], list] = {}
        self._prep_index: dict[str, tuple] = {}   # split -> (index path, records, problems)

    # ---- reporting -------------------------------------------------------------------------
    def rel(self, path) -> str:
        return self.project.rel(path)

    def problem(self, code: str, path, message: str, json_path: str | None = None) -> None:
        self.out.problem(code, path if isinstance(path, str) else self.rel(path), message, json_path)

    def warn(self, code: str, path, message: str, json_path: str | None = None) -> None:
        self.out.warn(code, path if isinstance(path, str) else self.rel(path), message, json_path)

    # ---- containment -----------------------------------------------------------------------
    def _inside(self, path: Path) -> bool:
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            return False
        return real == self.root or real.startswith(self.root + os.sep)

    def _report_escape(self, path: Path) -> None:
        # Name the link itself (the first component that is a symlink leaving the project).
        link = path
        p = Path(self.root)
        for part in path.relative_to(self.root).parts if str(path).startswith(self.root) else ():
            p = p / part
            if p.is_symlink() and not self._inside(p):
                link = p
                break
        rel = self.rel(link)
        if rel in self._escapes:
            return
        self._escapes.add(rel)
        try:
            target = os.readlink(link)
        except OSError:
            target = "?"
        self.problem("path.symlink_escape", rel,
                     f"is a symbolic link that leaves the project (-> {target}); mlloop never follows it: "
                     "put the real files inside the project")

    def dir_ok(self, folder: Path) -> bool:
        """True when ``folder`` resolves inside the project (reported once when it does not)."""
        key = str(folder)
        ok = self._dir_ok.get(key)
        if ok is None:
            # A real (non-link) folder inside a folder known to be inside is inside: one lstat
            # instead of resolving the whole path again.
            parent_ok = self._dir_ok.get(os.path.dirname(key))
            ok = True if parent_ok and not os.path.islink(key) else self._inside(folder)
            self._dir_ok[key] = ok
            if not ok:
                self._report_escape(folder)
        return ok

    def safe(self, path: Path) -> bool:
        """May ``path`` be opened? Its folder must be inside and it must not be a link out."""
        if not self.dir_ok(path.parent):
            return False
        if not os.path.islink(path):
            return True
        if self._inside(path):
            return True
        self._report_escape(path)
        return False

    def exists(self, path: Path) -> bool:
        """Whether ``path`` is there (as anything, links not followed). A link out of the project
        (or inside a folder that is one) counts as there: it is reported once, and every reader
        here refuses to open it, so no "missing" problem is added on top."""
        if not self.dir_ok(path.parent):
            return True
        if not os.path.lexists(path):
            return False
        self.safe(path)
        return True

    @property
    def rules_unreadable(self) -> bool:
        """A rules file could not be parsed: its values are defaults, so do not compare with them."""
        return any(p.code.startswith("json.") or p.code == "rules.not_object" for p in self.rules.findings.problems)

    # ---- reading ---------------------------------------------------------------------------
    def read_json(self, path: Path) -> tuple[bool, Any]:
        """``(True, value)`` for a strict JSON document; ``(False, None)`` with problems added."""
        if not self.safe(path):
            return False, None
        try:
            return True, read_json(path, self.rel(path))
        except JsonProblems as exc:
            self.out.problems.extend(exc.problems)
            return False, None

    def document(self, path: Path, code_prefix: str, missing: str | None = None) -> str | None:
        """A text file's content, or None. Absent: ``{code_prefix}.missing`` with the ``missing``
        message when the file is required (``missing`` given), silence when it is optional."""
        if not self.exists(path):
            if missing is not None:
                self.problem(f"{code_prefix}.missing", path, missing)
            return None
        return self.read_text(path, code_prefix)

    def read_text(self, path: Path, code_prefix: str) -> str | None:
        if not self.safe(path):
            return None
        try:
            data = read_file_bytes(path, self.rel(path))
        except JsonProblems as exc:
            for p in exc.problems:  # file.not_a_file -> {prefix}.not_a_file, as the readers of each step name them
                code = p.code.replace("file.", f"{code_prefix}.", 1) if p.code.startswith("file.") else p.code
                self.problem(code, p.path, p.message)
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.problem(f"{code_prefix}.encoding", path, f"the file is not valid UTF-8 (byte {exc.start}); save it as UTF-8")
            return None

    def sha256(self, path: Path) -> str:
        key = str(path)
        if key not in self._hashes:
            self._hashes[key] = sha256_file(path)
        return self._hashes[key]

    def eval_score(self, vid: str) -> tuple[EvalScore | None, Findings]:
        """A version's eval_score.json, parsed and validated once (problems in the Findings)."""
        if vid not in self._scores:
            f = Findings()
            path = self.project.artifact_dir(vid) / EVAL_SCORE
            score = None
            # Anything at the path is read through the one reader, so a folder or a FIFO named
            # eval_score.json is a problem rather than a version silently without a score.
            if self.safe(path) and os.path.lexists(path):
                score = read_eval_score(self.project, path, vid, primary_metric=self.rules.primary_metric,
                                        dataset_id=self.dataset_id, findings=f)
            self._scores[vid] = (score, f)
        return self._scores[vid]
