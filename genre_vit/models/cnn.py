"""A small from-scratch CNN over spectrogram segments: the convolutional reference for the ViT.

The standard recipe of the environmental-sound literature (on ESC-50 a 2-layer CNN reaches
64.5%, 72.4% with batch norm): blocks of conv3x3 -> maxpool 2x2 -> BatchNorm -> ReLU, then
global average pooling (or per-row statistics over time: POOLS), dropout and a linear head. An
optional patch stem (a conv whose kernel and stride are the patch, as ConvNeXt's and AST's
non-overlapping patches) replaces the first block: the full-resolution layers of narrow
channels are memory-bound on CPUs, and the stem moves the work into wide convolutions (the
default: a 2x2 stem, then 64-128-256 channels).
Shapes use B (batch), F (frequency rows), T (time columns), C (channels). The network runs
channels-last (NHWC), the layout oneDNN and cuDNN convolve fastest.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# How the last feature maps (B, C, F', T') become the head's input:
#   mean: the mean over frequency and time, (B, C): which patterns occur, wherever they are;
#   time: the mean over time of every row, (B, C * F'): which patterns occur in which band;
#   time_stats: the mean and std over time of every row, (B, 2 * C * F'): and how they vary
#   (the statistics pooling of x-vectors, over a frequency-aware map, like the classical
#   baseline's per-band means and stds of learned features instead of dB values).
POOLS = ("mean", "time", "time_stats")


class ConvBlock(nn.Sequential):
    """(B, C_in, F, T) -> (B, C_out, F // 2, T // 2): conv3x3 (same padding), maxpool 2x2, BatchNorm, ReLU.

    The pool comes straight after the convolution, so BatchNorm and ReLU (forward and backward)
    run on a quarter of the values: on CPUs that element-wise work, not the convolution, bounds
    the full-resolution blocks (1.25-1.7x the training speed of conv-BN-ReLU-pool here). BatchNorm
    then normalises what the next layer sees.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),  # BatchNorm has the bias
            nn.MaxPool2d(2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class PatchStem(nn.Sequential):
    """(B, C_in, F, T) -> (B, C_out, F // p_F, T // p_T): non-overlapping (p_F, p_T) patches, each
    projected by a conv (kernel = stride = patch), then BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, patch: tuple[int, int]):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=patch, stride=patch, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def downsampling(channels: Sequence[int], stem_patch: Sequence[int] | None) -> tuple[int, int]:
    """How many rows and columns of the input make one position of the last feature maps: each
    ConvBlock halves both sides, a patch stem divides them by its patch."""
    pools = 2 ** (len(channels) - (1 if stem_patch else 0))
    rows, cols = stem_patch or (1, 1)
    return rows * pools, cols * pools


def checked_stem_patch(stem_patch: Sequence[int] | None) -> tuple[int, int] | None:
    """`stem_patch` as two positive ints, or None (no patch stem)."""
    if not stem_patch:
        return None
    patch = tuple(int(p) for p in stem_patch)
    if len(patch) != 2 or min(patch) <= 0:
        raise ValueError(f"stem_patch must be two positive ints, got {list(stem_patch)}")
    return patch  # type: ignore[return-value]


def conv_stack(channels: Sequence[int], stem_patch: tuple[int, int] | None) -> nn.Sequential:
    """The convolutional feature extractor: (B, 1, F, T) -> (B, channels[-1], F', T'), (F, T) divided
    by `downsampling`. A PatchStem (with `stem_patch`) or a ConvBlock makes `channels[0]`, then one
    ConvBlock per further entry."""
    first = PatchStem(1, channels[0], stem_patch) if stem_patch else ConvBlock(1, channels[0])
    return nn.Sequential(first, *(ConvBlock(c_in, c_out) for c_in, c_out in zip(channels, channels[1:])))


class SpectrogramCNN(nn.Module):
    """(B, F, T) or (B, 1, F, T) segments -> (B, num_classes) logits.

    One block per entry of `channels` (its output channels): a ConvBlock, which halves F and T,
    or, with `stem_patch`, a PatchStem with the first entry's channels. The input needs at least
    `downsampling(channels, stem_patch)` rows and columns; global average pooling makes the
    network accept any such size (`img_size` is only checked against that minimum). `pool` (one of
    POOLS) turns the last maps into the head's features; `time` and `time_stats` keep the rows,
    so they need inputs of exactly `img_size[0]` rows.
    """

    POOLS = POOLS

    def __init__(self, *, img_size: Sequence[int], num_classes: int, channels: Sequence[int], dropout: float,
                 stem_patch: Sequence[int] | None = None, pool: str = "mean"):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) <= 0:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        patch = checked_stem_patch(stem_patch)
        if pool not in POOLS:
            raise ValueError(f"pool {pool!r} is not one of {list(POOLS)}")
        self.min_size = downsampling(channels, patch)
        self._check_size(img_size)
        self.pool, self.img_rows = pool, int(img_size[0])
        self.map_rows = self.img_rows // self.min_size[0]  # F' of the last maps
        self.features = conv_stack(channels, patch)
        width = channels[-1] * {"mean": 1, "time": self.map_rows, "time_stats": 2 * self.map_rows}[pool]
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes))
        self.apply(self._init_weights)
        self.to(memory_format=torch.channels_last)

    def _check_size(self, size: Sequence[int]) -> None:
        if len(size) != 2 or size[0] < self.min_size[0] or size[1] < self.min_size[1]:
            raise ValueError(f"input size {list(size)} is too small for these blocks: it must be at least "
                             f"{list(self.min_size)}")

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
        """(B, F, T) -> (B, C, F', T') feature maps, (F, T) divided by `downsampling`."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        self._check_size(x.shape[-2:])
        return self.features(x.contiguous(memory_format=torch.channels_last))

    def pooled(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, F', T') -> (B, width) features for the head, as `pool` says."""
        if self.pool == "mean":
            return maps.mean(dim=(-2, -1))
        if maps.shape[-2] != self.map_rows:
            raise ValueError(f"pool={self.pool!r} keeps the frequency rows: the head expects {self.map_rows} rows of "
                             f"maps (inputs of {self.img_rows} rows), got {maps.shape[-2]}")
        mean = maps.mean(dim=-1)
        if self.pool == "time":
            return mean.flatten(1)
        return torch.cat([mean, maps.std(dim=-1, correction=0)], dim=1).flatten(1)

    def forward_head(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, F', T') -> (B, num_classes): pool, dropout, linear."""
        return self.head(self.pooled(maps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
