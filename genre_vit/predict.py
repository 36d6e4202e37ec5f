"""Predict genres of audio files with a trained checkpoint: a table and predictions.csv.

    python -m genre_vit.predict ckpt=outputs/runs/.../checkpoints/last.ckpt input=song.wav

The checkpoint carries its feature settings, normalisation and class names; nothing else is
needed. Files that cannot be decoded get a row with the error; the others are still predicted.
"""
from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from genre_vit import CONFIG_DIR
from genre_vit.cli import run_with_pasted_paths
from genre_vit.data.audio import AudioError
from genre_vit.data.sources import AUDIO_EXTENSIONS, files_under, why_not_audio
from genre_vit.inference import Predictor

log = logging.getLogger(__name__)


def audio_files(path: Path) -> list[Path]:
    """The file, or the audio files at any depth under the folder (the rule training uses)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input={str(path)!r} is neither a file nor a folder")
    files, ignored = files_under(path)
    if not files:
        raise FileNotFoundError(f"input={str(path)!r} holds no audio files ({' '.join(AUDIO_EXTENSIONS)}) at any depth"
                                + (f"; {ignored[0][0]}: {ignored[0][1]}" if ignored else ""))
    for name, reason in ignored:
        log.warning("Skipping %s: %s", name, reason)
    return files


def predict(cfg: DictConfig) -> list[dict]:
    predictor = Predictor.from_checkpoint(cfg.ckpt)
    k = min(cfg.top_k, len(predictor.class_names))
    rows = []
    for path in audio_files(Path(cfg.input)):
        row = {"path": str(path), "genre": "", "error": ""}
        try:
            probs = predictor.probabilities(path, cfg.clip_seconds, cfg.batch_size)
        except AudioError as err:
            row["error"] = why_not_audio(path) or str(err)  # an .m4a: say how to convert it
            log.warning("Cannot predict %s: %s", path, err)
        else:
            top = probs.topk(k)
            row["genre"] = predictor.class_names[top.indices[0]]
            for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
                row[f"top{rank}"], row[f"top{rank}_prob"] = predictor.class_names[i], round(p, 4)
        rows.append(row)
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = ["path", "genre", *[f"top{r}{s}" for r in range(1, k + 1) for s in ("", "_prob")], "error"]
    with output.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    show(rows, k, output)
    return rows


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
