"""The run record, `metrics.json`: written here (completed, failed or interrupted) and read here
only; the names of the logged metrics; the process memory each record notes; the exception that
ends an interrupted run."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from genre_vit.files import atomic_write

RECORD_FILE = "metrics.json"
CROSS_VALIDATION_FILE = "cross_validation.json"  # fold=all: mean and std over the folds' runs
STATUSES = ("completed", "failed", "interrupted")

# What a run logs (`optimized_metric` must be one of these). Lightning names a metric logged per
# step and per epoch `<name>_step` and `<name>_epoch`.
# With a reference (conf/reference), val/track_acc scores the fused track scores and
# val/track_acc_network and val/track_acc_reference each part alone.
REFERENCE_METRICS = ("val/track_acc_network", "val/track_acc_reference")
LOGGED_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "val/track_acc", "val/f1", "val/track_acc_best",
                  *REFERENCE_METRICS)
EPOCH_METRICS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/track_acc", "val/f1",
                 *REFERENCE_METRICS)  # history.csv
SUMMARY_METRICS = ("val/track_acc", "val/acc", "val/f1", "val/loss")  # summary.csv, best checkpoint's


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM; the message says how to resume."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def write_record(run_dir: str | Path, status: str, **fields: Any) -> Path:
    """Write `<run_dir>/metrics.json` with `status` first, then `fields` (whole or not at all)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {list(STATUSES)}")
    text = json.dumps({"status": status, **fields}, indent=2)
    return atomic_write(Path(run_dir) / RECORD_FILE, lambda f: f.write(text.encode()))


def read_record(run_dir: str | Path) -> dict | None:
    """The run's record, or None if it wrote none (it stopped before it finished)."""
    path = Path(run_dir) / RECORD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def failure_fields(err: BaseException) -> dict[str, str]:
    """`error`: the exception's type and the first line of its message."""
    text = str(err).strip()
    return {"error": f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"}


def memory_mb(field: str) -> float:
    """This process's memory from /proc/self/status (Linux): "VmRSS" now, "VmHWM" its peak.
    Elsewhere the peak from getrusage (POSIX), else NaN. VmHWM is this process's own: unlike
    getrusage's ru_maxrss, it does not inherit the parent's peak across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # POSIX only
    except ImportError:
        return float("nan")
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024), 1)
