"""track_scores.csv for finished runs that lack one (runs made before runs wrote it), from each
run's config.yaml and last checkpoint: the validation fold scored as its last validation scored
it, and written only if it reproduces the accuracies and the loss the run logged. `python -m
genre_vit.summarize DIR --rescore` calls it before summarizing."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genre_vit.config import validate_shapes
from genre_vit.files import working_folder
from genre_vit.inference import Predictor
from genre_vit.metrics import TrackVotes
from genre_vit.reference import scored_tracks
from genre_vit.runs import (
    TRACK_SCORES_FILE,
    TrackScores,
    failure_fields,
    hydra_record,
    read_record,
    records_below,
    write_track_scores,
)

log = logging.getLogger(__name__)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class RescoreError(Exception):
    """A run whose validation fold cannot be scored again as it was (its data or code changed)."""


def missing_track_scores(root: Path) -> list[Path]:
    """The completed network runs below `root` (a last checkpoint and a config) without a track_scores.csv."""
    runs = []
    for record in records_below(root):
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


LOSS_TOLERANCE = 1e-4  # relative: summation order moves the mean loss by ~1e-7, a changed track by far more


def scored_as_here(trainer: dict) -> bool:
    """Whether a run's validation ran as rescoring runs: in float32 on one CPU process. (bf16 on a
    GPU moves the loss by ~1e-3 and turns near-tie segments; under DDP each process logged its own
    share's loss.)"""
    return (trainer.get("accelerator") == "cpu" and "ddp" not in str(trainer.get("strategy", ""))
            and str(trainer.get("precision", "32")) in ("32", "32-true", "None"))


def check_against_record(run_dir: Path, scores: TrackScores, segments_right: int, segments: int, loss: float,
                         exact: bool) -> None:
    """Raise RescoreError unless `scores` hold as many tracks as the run validated and reproduce
    its final fused, network and reference track accuracies, each to the track; if `exact` (see
    scored_as_here), also its segment accuracy (`segments_right` of `segments`), to the segment,
    and its mean segment `loss`: a file replaced in place can leave every accuracy as it was."""
    record = read_record(run_dir) or {}
    final, count = record.get("final", {}), len(scores.labels)
    if count != record.get("val_tracks", count):
        raise RescoreError(f"{count} validation tracks where the run validated {record['val_tracks']}: its data changed")
    def tracks_right(predicted: torch.Tensor) -> tuple[int, int, str]:
        return int((predicted == scores.labels).sum()), count, "tracks"

    right = {"val/track_acc": tracks_right(scores.predicted), "val/track_acc_network": tracks_right(scores.network.argmax(-1))}
    if scores.reference is not None:
        right["val/track_acc_reference"] = tracks_right(scores.reference.argmax(-1))
    if exact:
        right["val/acc"] = (segments_right, segments, "segments")
    for metric, (correct, total, unit) in right.items():
        if metric in final and correct != round(final[metric] * total):
            raise RescoreError(f"{metric}: {correct} of {total} {unit} right where the run logged "
                               f"{round(final[metric] * total)}: its data, settings or numerics (bf16 on a GPU?) differ")
    logged_loss = final.get("val/loss", loss)
    if exact and abs(loss - logged_loss) > LOSS_TOLERANCE * max(1.0, abs(logged_loss)):
        raise RescoreError(f"val/loss: {loss:.6f} where the run logged {logged_loss:.6f}: its data changed "
                           "(a file replaced in place?), or its settings differ")


@torch.no_grad()
def rescore_run(run_dir: Path) -> Path:
    """Write `run_dir`'s track_scores.csv: its last checkpoint on the validation fold of its
    config.yaml (the same data, cache and split, paths resolved where it trained), each track
    scored as validation scores it, checked against the run's record first."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.data.report_dir = None  # the run's skipped.csv stays as the run wrote it
    predictor = Predictor.from_checkpoint(run_dir / LAST_CHECKPOINT)
    with working_folder(training_directory(run_dir)):
        datamodule = instantiate(cfg.data, features=validate_shapes(cfg))
        datamodule.prepare_data()
        datamodule.setup("validate")
    if datamodule.classes != predictor.class_names:
        raise RescoreError(f"the data's classes are no longer the checkpoint's ({len(datamodule.classes)} against "
                           f"{len(predictor.class_names)}): its data changed")
    votes = TrackVotes(statistics=predictor.reference is not None)
    segments_right, loss_sum = 0, 0.0
    for segments, labels, tracks in datamodule.val_dataloader():
        logits = predictor.model(segments)
        votes.update(logits, labels, tracks, segments)
        segments_right += int((logits.argmax(-1) == labels).sum())
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
    scores = scored_tracks(votes.compute(), predictor.reference)
    count = len(datamodule.val_set)
    check_against_record(run_dir, scores, segments_right, count, loss_sum / count,
                         exact=scored_as_here(OmegaConf.to_container(cfg.trainer)))
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
