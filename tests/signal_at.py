"""A test-only Lightning callback that sends its own process a signal at a chosen batch."""
import os
import signal

import lightning as L


class SignalAt(L.Callback):
    """After training (or validation) batch `batch` of epoch `epoch` (negative: from the end), send `signum`."""

    def __init__(self, stage: str, epoch: int, batch: int, signum: str):
        self.stage, self.epoch, self.batch, self.signum = stage, epoch, batch, signal.Signals[signum]

    def _maybe_signal(self, trainer: L.Trainer, batch_idx: int, batches: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == (self.batch if self.batch >= 0 else batches + self.batch):
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.stage == "train":
            self._maybe_signal(trainer, batch_idx, trainer.num_training_batches)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.stage == "validate" and not trainer.sanity_checking:
            self._maybe_signal(trainer, batch_idx, trainer.num_val_batches[dataloader_idx])
