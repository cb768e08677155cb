"""One module per file the loop reads and writes: each owns that file's names, its parser (values
plus gaps) and its renderer. Checks, status, analysis, authoring, report and the runtime use only
these, so two readers of one file can never disagree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gap:
    """What a document lacks or gets wrong, as data: the check turns it into a problem (or a
    warning) naming the file; ``code`` is the problem code ``mlloop check`` prints."""

    code: str
    message: str
    warning: bool = False
