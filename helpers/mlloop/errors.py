"""Errors and problems: the two ways mlloop says something is wrong.

A ``Problem`` is one broken contract found in the user's files (a check result). A
``MlloopError`` is a clean failure of a command. Both print as one plain line; neither is
ever shown as a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a non-UTF-8 file name (``os.fsdecode``'s lone
    surrogates) shown as ``\\xff``, so that the line can always be printed and JSON-encoded."""
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Problem:
    """One broken contract: which file (relative to the project), where in it, and what to do."""

    code: str
    path: str
    message: str
    json_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("path", "message", "json_path"):
            object.__setattr__(self, name, printable(getattr(self, name)))

    def line(self) -> str:
        where = f"{self.path}::{self.json_path}" if self.json_path else self.path
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict:
        out = {"code": self.code, "path": self.path, "message": self.message}
        if self.json_path:
            out["json_path"] = self.json_path
        return out

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.line()


class MlloopError(Exception):
    """A command failed cleanly. The message is one sentence: what, where, what to do."""

    exit_code = 1

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


@dataclass
class Findings:
    """Problems and warnings gathered by a check; ``ok`` when there are no problems."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, code: str, path: str, message: str, json_path: str | None = None) -> None:
        self.problems.append(Problem(code, path, message, json_path))

    def warn(self, code: str, path: str, message: str, json_path: str | None = None) -> None:
        self.warnings.append(Problem(code, path, message, json_path))

    def extend(self, other: "Findings") -> None:
        self.problems.extend(other.problems)
        self.warnings.extend(other.warnings)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [w.to_dict() for w in self.warnings],
        }
