"""A network with no patches and no tokens, for proving the training module is network-agnostic."""
from collections.abc import Sequence

import torch
from torch import nn


class BandMeans(nn.Module):
    """(B, F, T) -> (B, num_classes): the mean of each frequency row over time, then a linear layer."""

    def __init__(self, img_size: Sequence[int], num_classes: int):
        super().__init__()
        self.linear = nn.Linear(img_size[0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=-1))
