"""Networks that map (B, F, T) spectrogram segments to (B, classes) logits, and the input
normalisation that is saved with them."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Normalization(nn.Module):
    """(B, F, T) -> (B, F, T): `(x - mean) / std` per frequency row.

    The statistics are buffers, so they travel in the checkpoint with the weights and predict
    applies them by running the model. They start as the identity (mean 0, std 1).
    """

    def __init__(self, rows: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(rows, 1))
        self.register_buffer("std", torch.ones(rows, 1))

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-row statistics, (F,) each, of the training segments."""
        self.mean.copy_(mean.reshape(-1, 1))
        self.std.copy_(std.reshape(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def normalized(net: nn.Module, rows: int) -> nn.Sequential:
    """The saved model: `normalize` (a Normalization of `rows` rows), then `net`."""
    return nn.Sequential(OrderedDict(normalize=Normalization(rows), net=net))
