"""Predict genres of audio files with a trained checkpoint: a table and predictions.csv.

    python -m genre_vit.predict ckpt=outputs/runs/.../checkpoints/last.ckpt input=song.wav

The checkpoint carries its feature settings, normalisation and class names; nothing else is
needed. Files that cannot be decoded get a row with the error; the others are still predicted.
"""
from __future__ import annotations

import csv
import logging
import math
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from genre_vit import CONFIG_DIR
from genre_vit.cli import run_with_pasted_paths
from genre_vit.config import check_required
from genre_vit.data.audio import AudioError
from genre_vit.data.sources import AUDIO_EXTENSIONS, UNDECODABLE_EXTENSIONS, files_under, why_not_audio
from genre_vit.inference import Predictor

log = logging.getLogger(__name__)


TRAINING_CLIP = "training"  # clip_seconds: the checkpoint's data.clip_seconds, as validation scored tracks


class OutputError(ValueError):
    """predictions.csv cannot be written where `output` says."""


def audio_files(path: Path) -> list[tuple[Path, str]]:
    """(file, "") for the file, or for the audio files at any depth under the folder (the rule
    training uses), and (file, why) for the folder's files in formats the decoder cannot read
    (an .m4a: how to convert it), in path order."""
    if path.is_file():
        return [(path, "")]
    if not path.is_dir():
        raise FileNotFoundError(f"input={str(path)!r} is neither a file nor a folder")
    files, ignored = files_under(path)
    if not files:
        raise FileNotFoundError(f"input={str(path)!r} holds no audio files ({' '.join(AUDIO_EXTENSIONS)}) at any depth"
                                + (f"; {ignored[0][0]}: {ignored[0][1]}" if ignored else ""))
    undecodable = [(Path(name), reason) for name, reason in ignored if Path(name).suffix.lower() in UNDECODABLE_EXTENSIONS]
    for name, reason in ignored:
        log.warning("Skipping %s: %s", name, reason)
    return sorted([(f, "") for f in files] + undecodable)


def check_settings(cfg: DictConfig) -> float | None:
    """The seconds of each file to score; ValueError naming the key of a setting that cannot work."""
    check_required(cfg)
    for key in ("ckpt", "input", "output"):
        if not str(cfg[key]).strip():  # e.g. input=$SONG with SONG unset: the current folder, searched through
            raise ValueError(f"{key} is empty: set it to a path")
    for key in ("top_k", "batch_size"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"{key}={cfg[key]!r} is invalid: allowed integers >= 1")
    seconds = cfg.clip_seconds
    if seconds != TRAINING_CLIP and seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(
            seconds, bool) or not 0 < seconds < math.inf):
        raise ValueError(f"clip_seconds={seconds!r} is invalid: allowed {TRAINING_CLIP} (the checkpoint's), null (all) "
                         "or seconds > 0")
    return seconds


def check_clip(seconds: float | None, predictor: Predictor) -> None:
    """A `clip_seconds` too short for the checkpoint's features and short-clip policy would blame every file."""
    shortest = predictor.decoding.usable_seconds(predictor.features.segment_seconds)
    if seconds is not None and seconds < shortest:
        raise ValueError(f"clip_seconds={seconds} is shorter than this checkpoint can score ({shortest:.2f} s at least, "
                         f"by its data.short_clips={predictor.decoding.short_clips}): allowed {TRAINING_CLIP}, null "
                         f"or seconds >= {shortest:.2f}")


def predict(cfg: DictConfig) -> list[dict]:
    """Write predictions.csv row by row (a stopped run keeps the rows written) and show the table."""
    seconds = check_settings(cfg)
    predictor = Predictor.from_checkpoint(cfg.ckpt)
    clip_seconds = predictor.decoding.clip_seconds if seconds == TRAINING_CLIP else seconds
    check_clip(clip_seconds, predictor)
    k = min(cfg.top_k, len(predictor.class_names))
    files = audio_files(Path(cfg.input))
    output = Path(cfg.output)
    columns = ["path", "genre", *[f"top{r}{s}" for r in range(1, k + 1) for s in ("", "_prob")], "error"]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        out = output.open("w", newline="")
    except OSError as err:
        raise OutputError(f"output={str(output)!r} cannot be written: {err.strerror or err}") from None
    rows = []
    with out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for path, why_not in files:
            rows.append(predicted_row(predictor, path, why_not, clip_seconds, cfg.batch_size, k))
            writer.writerow(rows[-1])
            out.flush()
    show(rows, k, output)
    return rows


def predicted_row(predictor: Predictor, path: Path, why_not: str, clip_seconds: float | None, batch_size: int,
                  k: int) -> dict:
    """The file's row: its genre and top-k classes with their probabilities, or the error."""
    row = {"path": str(path), "genre": "", "error": why_not}
    if why_not:
        return row
    try:
        probs = predictor.probabilities(path, clip_seconds, batch_size)
    except AudioError as err:
        row["error"] = why_not_audio(path) or str(err)
        log.warning("Cannot predict %s: %s", path, err)
        return row
    top = probs.topk(k)
    row["genre"] = predictor.class_names[top.indices[0]]
    for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        row[f"top{rank}"], row[f"top{rank}_prob"] = predictor.class_names[i], round(p, 4)
    return row


def show(rows: list[dict], k: int, output: Path) -> None:
    table = Table(title=f"genre predictions ({output})")
    table.add_column("track")
    table.add_column("genre", style="bold")
    for rank in range(1, k + 1):
        table.add_column(f"top {rank}")
    for row in rows:
        cells = [f"{row[f'top{r}']} {row[f'top{r}_prob']:.2f}" if f"top{r}" in row else "" for r in range(1, k + 1)]
        table.add_row(Path(row["path"]).name, row["genre"] or f"[red]error: {row['error']}[/red]", *cells)
    Console(width=160).print(table)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        predict(cfg)
    except (ValueError, FileNotFoundError) as err:  # a CheckpointError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def cli() -> None:
    """The `genre-vit-predict` command: `main` with pasted paths quoted for Hydra."""
    run_with_pasted_paths(main)


if __name__ == "__main__":
    cli()
