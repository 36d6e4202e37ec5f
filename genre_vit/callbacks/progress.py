"""The progress bar: Lightning's rich bar, with the optimizer step against the step budget."""
from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """RichProgressBar that also shows `step`: optimizer steps taken, of all the run will take
    (the epoch count alone says little when an epoch is a few batches)."""

    total_steps: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        total = trainer.estimated_stepping_batches  # the budget, rounded up to whole epochs (see training.py)
        self.total_steps = int(total) if math.isfinite(total) else None

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float | dict[str, float]]:
        metrics = super().get_metrics(trainer, pl_module)
        budget = f"/{self.total_steps}" if self.total_steps else ""
        return {"step": f"{trainer.global_step}{budget}", **metrics}
