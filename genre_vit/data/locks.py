"""One builder at a time: an exclusive lock file per cache entry, released even if the holder is killed."""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

try:  # POSIX: flock locks die with their process, so a killed run never leaves a stale lock
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextmanager
def exclusive(lock_path: Path, what: str, stale: str | None = None) -> Iterator[None]:
    """Hold `lock_path` exclusively while building `what`; build unlocked when the lock file
    cannot be created (a read-only folder), where no other writer can exist either. Once held,
    leftovers matching `stale` in the lock's folder (a killed writer's) are removed."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        log.warning("Cannot create the lock %s (%s); building %s without it", lock_path, err.strerror, what)
        yield
        return
    try:
        if not _try_lock(fd):
            log.info("Waiting for another process that is building %s (lock %s)", what, lock_path)
            while not _try_lock(fd):
                time.sleep(0.2)
        try:
            if stale:
                remove_stale(lock_path.parent, stale)
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


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
