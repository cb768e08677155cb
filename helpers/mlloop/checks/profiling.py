"""``dataset/rawdata/profiling.md`` (build-baseline Step 0): one section per source folder."""

from __future__ import annotations

from ..formats import profiling
from .context import Context
from .documents import report_gaps


def source_folders(ctx: Context) -> list[str]:
    """The source folders of dataset/rawdata/ (hidden entries skipped), by name."""
    try:
        entries = list(ctx.project.rawdata.iterdir())
    except OSError:
        return []
    return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def check_profiling(ctx: Context, required: bool) -> None:
    path = ctx.project.profiling_md
    missing = "profiling.md is missing; build-baseline Step 0 writes it (`mlloop profile` drafts it)"
    text = ctx.document(path, "profiling", missing if required else None)
    if text is None:
        return
    report_gaps(ctx, path, profiling.gaps(text, source_folders(ctx)))
