"""Files that are all or nothing, made with the user's umask; run folders that are never shared.

Every file this package writes whole (checkpoints, cache entries, run records) goes through
`atomic_write`: a temporary file in the same folder, renamed over the final name only once it is
complete, so a full disk or a kill never leaves a truncated file in place of a good one.
"""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
RUN_LOCK = ".run.lock"  # in a run folder: held by the live run that writes there


@contextmanager
def working_folder(path: str | Path) -> Iterator[None]:
    """Run the block in `path`, then return to the folder before (contextlib.chdir is Python 3.11+)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path) -> None:
    """Give a file made by `tempfile` (0600, folders 0700) the mode a plain `open` would: 0666
    (folders 0777) less the umask, so that a cache or run folder shared by a group stays usable."""
    full = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, full & ~umask())


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """`write(f)` into a temporary file beside `path`, then rename it over `path`. On any failure
    the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        apply_umask(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def is_disk_full(err: BaseException) -> bool:
    """An OSError (or one that caused `err`) saying that the disk or the quota is full."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return True
        err = err.__cause__ or err.__context__
    return False


def claim_folder(base: str) -> str:
    """A folder named `base`, or `base_2`, `base_3`, ... if that exists: created here, so that two
    runs started in the same second, in one process or in many, never get the same folder. Where
    the parent cannot be written, `base` is returned unmade (the output check reports it)."""
    name, n = base, 1
    while True:
        try:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(name)
            return name
        except FileExistsError:
            n += 1
            name = f"{base}_{n}"
        except OSError:
            return base


MAX_NAME = 160  # characters of a job folder's name; file systems refuse more than 255 bytes


def job_folder(num: int, overrides: str) -> str:
    """A multirun job's folder name, `<num>_<overrides>` (Hydra's override_dirname), shortened to
    MAX_NAME characters with a hash of the whole when the overrides are long: a sweep over many
    keys otherwise fails with "File name too long". The overrides stay in `.hydra/overrides.yaml`."""
    name = f"{num}_{overrides}" if overrides else str(num)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 10]}~{digest}"


class DiskFull(Exception):
    """The disk or quota filled up during a run; the message names the folder and what was kept."""


class FolderInUse(Exception):
    """Another live run writes in this folder."""


@contextmanager
def hold_run_folder(folder: str | Path, key: str = "hydra.run.dir") -> Iterator[None]:
    """Hold `<folder>/.run.lock` (a kernel flock: it dies with its process) while a run writes
    there; raise FolderInUse, naming the folder and the holder's pid, if a live run holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no run lock
        yield
        return
    path = Path(folder) / RUN_LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a folder that cannot be written: the output check reports it
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 100).decode(errors="replace").strip() or "pid unknown"
            raise FolderInUse(f"{key}={folder} is in use by another run that is still running ({holder}): "
                              "wait for it to end, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        yield
    finally:
        os.close(fd)  # releases the flock
