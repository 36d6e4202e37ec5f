"""One builder at a time: a `filelock.FileLock` per cache entry or data set, with the waiting logged.

On POSIX FileLock holds a kernel flock, which dies with its process: a killed builder never
leaves a stale lock behind.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


@contextmanager
def build_lock(lock_path: Path, what: str, stale: str | None = None) -> Iterator[None]:
    """Hold the file lock `lock_path` while building `what`, waiting (logged) for another holder.

    Where the lock file cannot be created (a read-only folder) no other writer can exist either,
    so `what` is built without it, with a warning. Once held, leftovers matching `stale` in the
    lock's folder (a killed writer's temporary files) are removed.
    """
    lock = FileLock(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(blocking=False)
    except Timeout:  # before OSError: Timeout is a TimeoutError
        log.info("Waiting for another process that is building %s (lock %s)", what, lock_path)
        lock.acquire()
    except OSError as err:
        log.warning("Cannot create the lock %s (%s); building %s without it", lock_path, err.strerror or err, what)
        yield
        return
    try:
        if stale:
            remove_stale(lock_path.parent, stale)
        yield
    finally:
        lock.release()


def remove_stale(folder: Path, pattern: str) -> int:
    """Delete leftovers matching `pattern` in `folder`: temporary files or folders of a killed run
    (called while holding the lock of whatever writes them)."""
    removed = 0
    for path in folder.glob(pattern):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info("Removed %d stale temporary file(s) %s of an interrupted run", removed, folder / pattern)
    return removed
