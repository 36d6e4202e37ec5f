"""TensorBoard pictures of each validation epoch: the track confusion matrix and example segments."""
from __future__ import annotations

from typing import Any

import lightning as L
import matplotlib
import torch
from torchmetrics.utilities.plot import plot_confusion_matrix

matplotlib.use("Agg")  # no display: figures are rendered to images
import matplotlib.pyplot as plt  # noqa: E402


def confusion_figure(matrix: torch.Tensor, class_names: list[str], title: str) -> plt.Figure:
    """A (true x predicted) count matrix, labelled and annotated, sized for the number of classes."""
    fig, ax = plot_confusion_matrix(matrix, labels=list(class_names))
    size = max(4.0, 0.6 * len(class_names) + 2)
    fig.set_size_inches(size, size)
    ax.set_title(title)
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
