"""The writer lock: two mlloop writers (report, new-version) never interleave.

``fcntl.flock`` on ``Models/.mlloop.lock``. The kernel drops the lock when its holder exits,
so a crashed writer never leaves the project locked; the file itself only records who holds
it (pid and command), so a waiting writer can say whom it waited for.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from .errors import MlloopError
from .layout import Project

DEFAULT_TIMEOUT_S = 30.0
POLL_S = 0.05


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "an unknown process"


@contextmanager
def writer_lock(project: Project, purpose: str, timeout: float | None = None):
    """Hold the project's writer lock for the ``with`` block, waiting up to ``timeout`` seconds."""
    import fcntl  # POSIX only; imported here so that importing this module never fails

    timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
    path = project.lock_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise MlloopError(
                        f"{project.rel(path)}: another mlloop writer holds the lock ({_holder(fd)}); "
                        f"waited {timeout:g} s. Let it finish, then run `{purpose}` again.") from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()}, {purpose}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
