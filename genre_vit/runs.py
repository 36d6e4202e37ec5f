"""The run record, `metrics.json`: written here (completed, failed or interrupted) and read here
only; so is `track_scores.csv`, each validation track's scores; the names of the logged metrics;
the process memory each record notes; the exception that ends an interrupted run."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from genre_vit.files import atomic_write

if TYPE_CHECKING:
    import torch  # summarize reads track_scores.csv without importing torch

RECORD_FILE = "metrics.json"
TRACK_SCORES_FILE = "track_scores.csv"  # the last validation's scores of every validation track
CROSS_VALIDATION_FILE = "cross_validation.json"  # fold=all: mean and std over the folds' runs
HISTORY_FILE = "history.csv"  # one row per epoch (callbacks.history.EpochHistory)
EARLIER_RUNS = "earlier_runs"  # <run dir>/earlier_runs/<n>/: what an earlier run left where a fresh one started
STATUSES = ("completed", "failed", "interrupted")

# What a run logs (`optimized_metric` must be one of these). Lightning names a metric logged per
# step and per epoch `<name>_step` and `<name>_epoch`.
# With a reference (conf/reference), val/track_acc scores the fused track scores and
# val/track_acc_network and val/track_acc_reference each part alone.
REFERENCE_METRICS = ("val/track_acc_network", "val/track_acc_reference")
LOGGED_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "val/track_acc", "val/f1", "val/track_acc_best",
                  *REFERENCE_METRICS)
BASELINE_METRICS = ("val/track_acc", "val/acc", "val/f1", "val/track_acc_best")  # what experiment=baseline_logreg logs
EPOCH_METRICS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/track_acc", "val/f1",
                 *REFERENCE_METRICS)  # history.csv
SUMMARY_METRICS = ("val/track_acc", "val/acc", "val/f1", "val/loss")  # summary.csv, best checkpoint's


class TrackScores(NamedTuple):
    """The K validation tracks of one evaluation: (K,) track indices, (K,) true and (K,) predicted
    classes (the run's track score), (K, C) the network's log-probabilities and the reference's
    calibrated log-probabilities before its `strength` (None without a reference)."""

    tracks: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    network: torch.Tensor
    reference: torch.Tensor | None


def write_track_scores(run_dir: str | Path, scores: TrackScores, paths: Sequence[str], classes: Sequence[str]) -> Path:
    """Write `<run_dir>/track_scores.csv`: a row per track (`paths[track]`), its class, the
    predicted class, then `network/<class>` and (with a reference) `reference/<class>`
    log-probabilities, from which any fusion strength can be scored again (read_track_scores)."""
    parts = [("network", scores.network)] + ([("reference", scores.reference)] if scores.reference is not None else [])
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "class", "predicted"] + [f"{part}/{name}" for part, _ in parts for name in classes])
    for k, track in enumerate(scores.tracks.tolist()):
        writer.writerow([paths[track], classes[scores.labels[k]], classes[scores.predicted[k]]]
                        + [f"{v:.9g}" for _, values in parts for v in values[k].tolist()])
    return atomic_write(Path(run_dir) / TRACK_SCORES_FILE, lambda f: f.write(text.getvalue().encode()))


def read_track_scores(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(K,) true classes, (K, C) network and (K, C) reference log-probabilities (None without a
    reference) of a run's track_scores.csv; None if it wrote none."""
    path = Path(run_dir) / TRACK_SCORES_FILE
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    classes = [column.split("/", 1)[1] for column in header if column.startswith("network/")]
    values = np.array([[float(v) for v in row[3:]] for row in rows]).reshape(len(rows), -1)
    labels = np.array([classes.index(row[1]) for row in rows], dtype=np.int64)
    network, reference = values[:, :len(classes)], values[:, len(classes):]
    return labels, network, reference if reference.shape[1] else None


def hydra_record(run_dir: Path, name: str, root: Path | None = None) -> Path | None:
    """`.hydra/<name>` that Hydra wrote for a run, or for the job that holds it (a fold of
    `fold=all`), looking no higher than `root`; None if there is none."""
    for folder in (run_dir, *run_dir.parents):
        if (folder / ".hydra" / name).exists():
            return folder / ".hydra" / name
        if folder == root:
            break
    return None


# Config keys (matched by their last parts) that change where files are read or written, or how
# fast a run goes, not what it computes: the HPARAMS tab and summarize's settings leave them out.
NOT_RESULT_KEYS = ("cache_dir", "report_dir", "feature_workers", "eval_batch_size", "source.root", "source.workers",
                   "compile")


def key_ends_with(key: str, names: Sequence[str], separator: str = ".") -> bool:
    """Whether the config key `key` (its parts joined by `separator`) ends with one of `names`
    (dotted, whole parts: `data.feature_workers` ends with `feature_workers`, not `workers`)."""
    return any(f"{separator}{key}".endswith(f"{separator}{name.replace('.', separator)}") for name in names)


def flattened(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as `{"a.b.c": leaf}`."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flattened(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


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


def records_below(root: Path) -> list[Path]:
    """The run records (metrics.json) below `root`, sorted, without the earlier runs that fresh runs
    set aside (set_aside_earlier_run)."""
    return sorted(p for p in root.rglob(RECORD_FILE) if EARLIER_RUNS not in p.relative_to(root).parts)


def set_aside_earlier_run(run_dir: str | Path, outputs: Iterable[str | Path]) -> Path | None:
    """Move what an earlier run left in `run_dir` among `outputs` (names or paths in it: its record,
    curves, track scores, checkpoints, logger folders) to `run_dir/earlier_runs/<n>/`, n = 1, 2, ...,
    so that a run starting afresh there holds its own alone (summarize would read the earlier
    record and curves as this run's, TensorBoard would merge the two runs' curves) and no earlier
    result is lost. Returns that folder; None when nothing was left."""
    run_dir = Path(os.path.abspath(run_dir))  # not resolved: a linked checkpoints/ moves as the link
    found = []
    for output in outputs:
        path = Path(os.path.abspath(run_dir / output))
        if path != run_dir and path.is_relative_to(run_dir):
            top = run_dir / path.relative_to(run_dir).parts[0]  # the folder in run_dir that holds it
            if (top.exists() or top.is_symlink()) and top.name != EARLIER_RUNS and top not in found:
                found.append(top)
    if not found:
        return None
    earlier = run_dir / EARLIER_RUNS
    taken = [int(p.name) for p in earlier.iterdir() if p.name.isdigit()] if earlier.is_dir() else []
    target = earlier / str(max(taken, default=0) + 1)
    target.mkdir(parents=True)
    for path in found:
        path.rename(target / path.name)
    return target


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
