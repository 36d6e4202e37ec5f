"""Validation cadence: the last epoch is always validated."""
from __future__ import annotations

import lightning as L


class ValidateLastEpoch(L.Callback):
    """Validates the run's last epoch whatever `trainer.check_val_every_n_epoch` says. Lightning
    validates only epochs on that cadence, so with `check_val_every_n_epoch=2` and an odd number
    of epochs the last weights would never be scored: the run's final numbers (`metrics.json`'s
    `final`, the summary's `last/*`) would belong to an earlier epoch. A cadence in batches
    (`check_val_every_n_epoch=null`) is left alone."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = trainer.check_val_every_n_epoch
        last = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
        if last and every is not None and every > 1:
            trainer.check_val_every_n_epoch = 1  # this trainer ends with this epoch
