"""Callbacks: graceful stop on a signal, per-epoch history, TensorBoard pictures, multirun summary."""
from __future__ import annotations

import csv
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
import matplotlib
import torch
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

matplotlib.use("Agg")  # no display: figures are rendered to images
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

class StopRequested(Exception):
    """Raised by GracefulStop to leave `trainer.fit` between two training batches."""


class GracefulStop(L.Callback):
    """Ctrl-C (SIGINT) or SIGTERM stops training where it can resume exactly.

    The request is read after each training batch (shared across DDP processes there, so all
    stop at the same batch). In the middle of an epoch, training stops after that batch and
    `<dirpath>/<filename>.ckpt` is saved there; after an epoch's last batch, it stops when the
    epoch (and its validation) ends, whose checkpoint the every-epoch checkpoint callback writes.
    A signal during validation is read after the next epoch's first batch. A second Ctrl-C
    aborts at once.
    """

    def __init__(self, dirpath: str, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.signal: str | None = None  # the signal that arrived in this process
        self.stopping = False  # a stop was decided (in any process)
        self.saved_mid_epoch = False  # the stop saved `path` in the middle of an epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("Not in the main thread: Ctrl-C and SIGTERM will not stop training gracefully")
            return

        def request_stop(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts
            self.signal = self.signal or signal.Signals(signum).name
            log.warning("%s: stopping at the next batch boundary and saving a checkpoint%s", self.signal,
                        " (Ctrl-C again aborts now)" if signum == signal.SIGINT else "")

        # Lightning's own SIGTERM handler stops mid-validation too; its teardown restores the originals.
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # One collective per batch, at the same point in every process (none at epoch end, where
        # rank-0-only callbacks may run collectives of their own).
        self.stopping = self.stopping or trainer.strategy.reduce_boolean_decision(self.signal is not None, all=False)
        if self.stopping and batch_idx + 1 < trainer.num_training_batches:
            trainer.save_checkpoint(self.path)  # the datamodule's state records the batches done
            self.saved_mid_epoch = True
            raise StopRequested(f"stopped after batch {batch_idx + 1} of epoch {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopping:  # decided after the epoch's last batch
            trainer.should_stop = True


HISTORY_KEYS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/track_acc", "val/f1", "lr")


class EpochHistory(L.Callback):
    """Appends one row per epoch to `<dirpath>/history.csv`: the curves the summary plots."""

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / "history.csv"

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        row.update({key: float(metrics[key]) for key in HISTORY_KEYS if key in metrics})
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        new = not self.path.exists() or trainer.current_epoch == 0
        with self.path.open("w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", *HISTORY_KEYS])
            if new:
                writer.writeheader()
            writer.writerow(row)


def confusion_figure(matrix: torch.Tensor, class_names: list[str], title: str) -> plt.Figure:
    """A labelled confusion matrix (rows: true genre, columns: predicted) with counts in cells."""
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = matrix.max().item() or 1
    for (i, j), count in zip(torch.cartesian_prod(*[torch.arange(len(class_names))] * 2).tolist(), matrix.flatten().tolist()):
        if count:
            ax.text(j, i, count, ha="center", va="center", color="white" if count > peak / 2 else "black", fontsize=8)
    fig.tight_layout()
    return fig


class ValidationImages(L.Callback):
    """Each validation epoch: the track-level confusion matrix and `num_examples` validation
    segments titled with their true and predicted genres, as TensorBoard images."""

    def __init__(self, num_examples: int):
        self.num_examples = num_examples

    # on_validation_end: Lightning runs callbacks' on_validation_epoch_end before the module's,
    # which is where this epoch's confusion matrix is computed.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = _tensorboard(trainer)
        if writer is None or trainer.sanity_checking or pl_module.last_val_confusion is None:
            return
        names, step = pl_module.hparams.class_names, trainer.global_step
        figure = confusion_figure(pl_module.last_val_confusion, names, f"validation tracks, epoch {trainer.current_epoch}")
        writer.add_figure("val/confusion_matrix", figure, global_step=step)
        if self.num_examples:
            writer.add_figure("val/examples", self._examples(trainer, pl_module, names), global_step=step)

    def _examples(self, trainer: L.Trainer, pl_module: L.LightningModule, names: list[str]) -> plt.Figure:
        dataset = trainer.datamodule.val_set
        index = torch.linspace(0, len(dataset) - 1, self.num_examples).long().tolist()
        x, y, _ = dataset[index]
        with torch.no_grad():
            predicted = pl_module(x.to(pl_module.device)).argmax(dim=1).cpu()
        fig, axes = plt.subplots(1, len(index), figsize=(2.2 * len(index), 3), squeeze=False)
        for ax, image, true, guess in zip(axes[0], x, y.tolist(), predicted.tolist()):
            ax.imshow(image.numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"true {names[true]}\npred {names[guess]}", fontsize=8, color="black" if true == guess else "red")
            ax.axis("off")
        fig.tight_layout()
        return fig


def _tensorboard(trainer: L.Trainer) -> Any:
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            return logger.experiment
    return None


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` could not be created and written to, or None if it can (nothing is created)."""
    ancestor = folder.absolute()
    try:
        while not ancestor.exists():
            ancestor = ancestor.parent
    except OSError as err:  # e.g. a parent folder this user may not enter
        return f"{ancestor} cannot be checked ({err.strerror})"
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return None


class WritableOutput(HydraCallback):
    """Hydra callback: before a run or a multirun, check that its output folder can be written,
    so that a bad `hydra.run.dir` / `paths.output_root` is one line (exit 2), not a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(folder: str, key: str) -> None:
        reason = unwritable_reason(Path(folder))
        if reason:
            print(f"error: {key}={folder} cannot be written: {reason} (set paths.output_root or {key})", file=sys.stderr)
            sys.exit(2)


class MultirunSummary(HydraCallback):
    """Hydra callback: when a multirun ends, summarise its jobs into its sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from genre_vit.summarize import summarize

        sweep_dir = Path(config.hydra.sweep.dir)
        written = summarize(sweep_dir)
        log.info("Multirun summary: %s", ", ".join(str(p) for p in written))
