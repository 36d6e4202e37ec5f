"""A small from-scratch CNN over spectrogram segments: the convolutional reference for the ViT.

The standard recipe of the environmental-sound literature (on ESC-50 a 2-layer CNN reaches
64.5%, 72.4% with batch norm): blocks of conv3x3 -> BatchNorm -> ReLU -> maxpool 2x2, then global
average pooling, dropout and a linear head. Shapes use B (batch), F (frequency rows), T (time
columns), C (channels).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """(B, C_in, F, T) -> (B, C_out, F // 2, T // 2): conv3x3 (same padding), BatchNorm, ReLU, maxpool 2x2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),  # BatchNorm has the bias
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )


class SpectrogramCNN(nn.Module):
    """(B, F, T) or (B, 1, F, T) segments -> (B, num_classes) logits.

    One ConvBlock per entry of `channels` (its output channels); each halves F and T, so the
    input needs F, T >= 2 ** len(channels). Global average pooling makes the network accept
    any such size; `img_size` is only checked against that minimum.
    """

    def __init__(self, *, img_size: Sequence[int], num_classes: int, channels: Sequence[int], dropout: float):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) <= 0:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        self.min_size = 2 ** len(channels)
        self._check_size(img_size)
        self.features = nn.Sequential(*(ConvBlock(c_in, c_out) for c_in, c_out in zip([1, *channels], channels)))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels[-1], num_classes))
        self.apply(self._init_weights)

    def _check_size(self, size: Sequence[int]) -> None:
        if len(size) != 2 or min(size) < self.min_size:
            raise ValueError(f"input size {list(size)} is too small for {self.min_size.bit_length() - 1} "
                             f"pooling blocks: both sides must be at least {self.min_size}")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) -> (B, C, F / 2**L, T / 2**L) feature maps, L = len(channels)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        self._check_size(x.shape[-2:])
        return self.features(x)

    def forward_head(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, F', T') -> (B, num_classes): global average pool, dropout, linear."""
        return self.head(maps.mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
