"""history.csv: one row per epoch, the curves the summary plots."""
from __future__ import annotations

import csv
from pathlib import Path

import lightning as L

from genre_vit.runs import EPOCH_METRICS, HISTORY_FILE


class EpochHistory(L.Callback):
    """Appends one row per epoch to `<dirpath>/history.csv` (a resumed run appends to it). An
    epoch without validation (`trainer.check_val_every_n_epoch`) leaves its `val/*` cells empty:
    Lightning keeps the last validation's values, which belong to an earlier epoch."""

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / HISTORY_FILE
        self.validated_epoch: int | None = None
        self.in_these_columns = False  # the file is known to hold this version's columns: append to it

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        metrics, validated = trainer.callback_metrics, self.validated_epoch == trainer.current_epoch
        row = {"epoch": trainer.current_epoch}
        row.update({key: float(metrics[key]) for key in EPOCH_METRICS
                    if key in metrics and (validated or not key.startswith("val/"))})
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        columns = ["epoch", *EPOCH_METRICS, "lr"]
        if self.in_these_columns and trainer.current_epoch > 0:
            rows = None
        else:
            rows = [] if not self.path.exists() or trainer.current_epoch == 0 else self.earlier_rows(columns)
            self.in_these_columns = True
        if rows is None:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writerow(row)
            return
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows([*rows, row])

    def earlier_rows(self, columns: list[str]) -> list[dict] | None:
        """None when the file's columns are `columns` (append to it); otherwise its rows, to write
        again in these columns (a run resumed by a version that logs other metrics)."""
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            return None if reader.fieldnames == columns else list(reader)
