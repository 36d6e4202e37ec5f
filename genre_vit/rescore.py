"""track_scores.csv for finished runs that lack one (runs made before runs wrote it), from each
run's config.yaml and last checkpoint: the validation fold scored as its last validation scored
it. `python -m genre_vit.summarize DIR --rescore` calls it before summarizing."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genre_vit.config import validate_shapes
from genre_vit.inference import Predictor
from genre_vit.metrics import TrackVotes
from genre_vit.reference import scored_tracks
from genre_vit.runs import RECORD_FILE, TRACK_SCORES_FILE, failure_fields, read_record, write_track_scores

log = logging.getLogger(__name__)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def missing_track_scores(root: Path) -> list[Path]:
    """The completed network runs below `root` (a last checkpoint and a config) without a track_scores.csv."""
    runs = sorted(p.parent for p in root.rglob(RECORD_FILE))
    return [run for run in runs if (read_record(run) or {}).get("status") == "completed"
            and (run / LAST_CHECKPOINT).exists() and (run / "config.yaml").exists() and not (run / TRACK_SCORES_FILE).exists()]


@torch.no_grad()
def rescore_run(run_dir: Path) -> Path:
    """Write `run_dir`'s track_scores.csv: its last checkpoint on the validation fold of its
    config.yaml (the same data, cache and split), each track scored as validation scores it."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.data.report_dir = None  # the run's skipped.csv stays as the run wrote it
    datamodule = instantiate(cfg.data, features=validate_shapes(cfg))
    datamodule.prepare_data()
    datamodule.setup("validate")
    predictor = Predictor.from_checkpoint(run_dir / LAST_CHECKPOINT)
    votes = TrackVotes(statistics=predictor.reference is not None)
    for segments, labels, tracks in datamodule.val_dataloader():
        votes.update(predictor.model(segments), labels, tracks, segments)
    scores = scored_tracks(votes.compute(), predictor.reference)
    return write_track_scores(run_dir, scores, datamodule.track_list.paths, datamodule.classes)


def rescore(root: Path) -> list[Path]:
    """track_scores.csv for every run below `root` that lacks one (missing_track_scores). A run
    that cannot be scored (its data moved, say) gets a one-line warning; the others still are."""
    written = []
    for run in missing_track_scores(root):
        try:
            written.append(rescore_run(run))
        except Exception as err:  # noqa: BLE001 - one run's failure must not stop the others or the summary
            log.warning("Cannot score %s again: %s", run, failure_fields(err)["error"])
    return written
