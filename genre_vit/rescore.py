"""track_scores.csv for finished runs that lack one (runs made before runs wrote it), from each
run's config.yaml and last checkpoint: the validation fold scored as its last validation scored
it, and written only if it reproduces the accuracies the run logged. `python -m
genre_vit.summarize DIR --rescore` calls it before summarizing."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genre_vit.config import validate_shapes
from genre_vit.inference import Predictor
from genre_vit.metrics import TrackVotes
from genre_vit.reference import scored_tracks
from genre_vit.runs import (
    RECORD_FILE,
    TRACK_SCORES_FILE,
    TrackScores,
    failure_fields,
    hydra_record,
    read_record,
    write_track_scores,
)

log = logging.getLogger(__name__)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class RescoreError(Exception):
    """A run whose validation fold cannot be scored again as it was (its data or code changed)."""


def missing_track_scores(root: Path) -> list[Path]:
    """The completed network runs below `root` (a last checkpoint and a config) without a track_scores.csv."""
    runs = []
    for record in sorted(root.rglob(RECORD_FILE)):
        run = record.parent
        try:
            completed = (read_record(run) or {}).get("status") == "completed"
        except (OSError, ValueError) as err:
            log.warning("Cannot read %s: %s", record, err)
            continue
        if completed and (run / LAST_CHECKPOINT).exists() and (run / "config.yaml").exists() \
                and not (run / TRACK_SCORES_FILE).exists():
            runs.append(run)
    return runs


def training_directory(run_dir: Path) -> Path:
    """The working directory the run trained in (Hydra's `hydra.runtime.cwd`, in the run's
    `.hydra` or its job's, for `fold=all`), where its relative paths (the cache, the synthetic
    set) resolve; the current one when Hydra recorded none."""
    path = hydra_record(run_dir, "hydra.yaml")
    cwd = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("runtime", {}).get("cwd") if path else None
    return Path(cwd) if cwd and Path(cwd).is_dir() else Path.cwd()


def check_against_record(run_dir: Path, scores: TrackScores) -> None:
    """Raise RescoreError unless `scores` hold as many tracks as the run validated and reproduce
    its final fused, network and reference track accuracies, each to the track."""
    record = read_record(run_dir) or {}
    final, count = record.get("final", {}), len(scores.labels)
    if count != record.get("val_tracks", count):
        raise RescoreError(f"{count} validation tracks where the run validated {record['val_tracks']}: its data changed")
    parts = {"val/track_acc": scores.predicted, "val/track_acc_network": scores.network.argmax(-1)}
    if scores.reference is not None:
        parts["val/track_acc_reference"] = scores.reference.argmax(-1)
    for metric, predicted in parts.items():
        right = int((predicted == scores.labels).sum())
        if metric in final and right != round(final[metric] * count):
            raise RescoreError(f"{metric}: {right} of {count} tracks right where the run logged "
                               f"{round(final[metric] * count)}: its data, settings or numerics (bf16 on a GPU?) differ")


@torch.no_grad()
def rescore_run(run_dir: Path) -> Path:
    """Write `run_dir`'s track_scores.csv: its last checkpoint on the validation fold of its
    config.yaml (the same data, cache and split, paths resolved where it trained), each track
    scored as validation scores it, checked against the run's record first."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.data.report_dir = None  # the run's skipped.csv stays as the run wrote it
    predictor = Predictor.from_checkpoint(run_dir / LAST_CHECKPOINT)
    with contextlib.chdir(training_directory(run_dir)):
        datamodule = instantiate(cfg.data, features=validate_shapes(cfg))
        datamodule.prepare_data()
        datamodule.setup("validate")
    if datamodule.classes != predictor.class_names:
        raise RescoreError(f"the data's classes are no longer the checkpoint's ({len(datamodule.classes)} against "
                           f"{len(predictor.class_names)}): its data changed")
    votes = TrackVotes(statistics=predictor.reference is not None)
    for segments, labels, tracks in datamodule.val_dataloader():
        votes.update(predictor.model(segments), labels, tracks, segments)
    scores = scored_tracks(votes.compute(), predictor.reference)
    check_against_record(run_dir, scores)
    return write_track_scores(run_dir, scores, datamodule.track_list.paths, datamodule.classes)


def reason(err: BaseException) -> str:
    """The error's type and first line, and its cause's (Hydra wraps a constructor's error)."""
    return "; ".join(failure_fields(e)["error"] for e in (err, err.__cause__) if e)


def rescore(root: Path) -> list[Path]:
    """track_scores.csv for every run below `root` that lacks one (missing_track_scores). A run
    that cannot be scored again gets a one-line warning and no file; the others still are."""
    written = []
    for run in missing_track_scores(root):
        try:
            written.append(rescore_run(run))
        except Exception as err:  # noqa: BLE001 - one run's failure must not stop the others or the summary
            log.warning("Cannot score %s again: %s", run, reason(err))
    return written
