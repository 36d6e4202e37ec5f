"""TensorBoard pictures of each validation epoch: the track confusion matrix and example segments.

Drawn with matplotlib's object API (no pyplot figure registry) and one layout pass each: a
validation's two figures cost about half a second on a 2-core host, where torchmetrics' plot
(constrained layout, laid out at every draw) and six subplot axes cost about a second."""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from matplotlib.figure import Figure


def confusion_figure(matrix: torch.Tensor, class_names: list[str], title: str) -> Figure:
    """A (true x predicted) count matrix, labelled and annotated, sized for the number of classes."""
    counts, n = matrix.cpu().numpy(), len(class_names)
    size = max(4.0, 0.6 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(counts, cmap="viridis")
    dark = counts.min() + (counts.max() - counts.min()) / 2
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count < dark else "black")
    ax.set_xticks(range(n), class_names, rotation=45)
    ax.set_yticks(range(n), class_names, rotation=25)
    ax.set(xlabel="Predicted class", ylabel="True class", title=title)
    fig.tight_layout()
    return fig


def examples_figure(images: torch.Tensor, titles: list[str], correct: list[bool]) -> Figure:
    """Segments side by side in one axes (a gap between them), each titled; wrong guesses in red."""
    count, (rows, cols) = len(images), images.shape[1:]
    gap = max(1, cols // 8)
    strip = torch.full((rows, count * (cols + gap) - gap), float("nan"))
    for i, image in enumerate(images):
        strip[:, i * (cols + gap): i * (cols + gap) + cols] = image
    fig = Figure(figsize=(2.2 * count, 3))
    ax = fig.add_axes((0.005, 0.01, 0.99, 0.82))
    ax.imshow(strip.numpy(), origin="lower", aspect="auto", cmap="magma")
    ax.set_xticks([i * (cols + gap) + (cols - 1) / 2 for i in range(count)], titles, fontsize=8)
    ax.tick_params(top=False, bottom=False, labeltop=True, labelbottom=False, left=False, labelleft=False)
    for tick, right in zip(ax.xaxis.get_major_ticks(), correct):
        tick.label2.set_color("black" if right else "red")
    ax.set_frame_on(False)
    return fig


class ValidationImages(L.Callback):
    """Each validation epoch: the track-level confusion matrix and `num_examples` validation
    segments titled with their true and predicted genres, as TensorBoard images."""

    def __init__(self, num_examples: int):
        self.num_examples = num_examples
        self.examples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (x, true, predicted)

    # The examples are predicted during validation, with the weights it scores (an average's, under
    # averaging=ema/swa, which is swapped out again at the epoch's end).
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx or dataloader_idx or trainer.sanity_checking or not self.num_examples:
            return
        dataset = trainer.datamodule.val_set
        x, y, _ = dataset[torch.linspace(0, len(dataset) - 1, self.num_examples).long().tolist()]
        with torch.no_grad():
            self.examples = x, y, pl_module(x.to(pl_module.device)).argmax(dim=1).cpu()

    # on_validation_end: Lightning runs callbacks' on_validation_epoch_end before the module's,
    # which is where this epoch's confusion matrix is computed.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = _tensorboard(trainer)
        if writer is None or trainer.sanity_checking or pl_module.last_val_confusion is None:
            return
        names, step = pl_module.hparams.class_names, trainer.global_step
        figure = confusion_figure(pl_module.last_val_confusion, names, f"validation tracks, epoch {trainer.current_epoch}")
        writer.add_figure("val/confusion_matrix", figure, global_step=step)
        if self.examples is not None:
            x, true, predicted = self.examples
            pairs = list(zip(true.tolist(), predicted.tolist()))
            writer.add_figure("val/examples", examples_figure(x, [f"true {names[t]}\npred {names[p]}" for t, p in pairs],
                                                              [t == p for t, p in pairs]), global_step=step)
            self.examples = None


def _tensorboard(trainer: L.Trainer) -> Any:
    for logger in trainer.loggers:
        if isinstance(logger, L.pytorch.loggers.TensorBoardLogger):
            return logger.experiment
    return None
