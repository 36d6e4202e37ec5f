"""A small Vision Transformer over spectrogram segments.

Reading order: PatchEmbed -> Attention -> Mlp -> DropPath -> Block -> SpectrogramViT. Shapes use
B (batch), F (frequency rows), T (time columns), N (tokens), D (embedding dim), C (channels).

Besides the original design (one linear projection of non-overlapping patches), the tokenizer
takes two levers measured on small data sets: overlapping patches (`patch_stride` < patch, as
AST) and a convolutional stem before the projection (`stem_channels`, as Compact Convolutional
Transformers; with `stem_patch`, the stem can be exactly the CNN's feature extractor); blocks take
stochastic depth (`drop_path`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genre_vit.models.cnn import checked_stem_patch, conv_stack, downsampling

POOLS = ("mean", "cls")


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or two ints, got {list(value)}")
    return pair  # type: ignore[return-value]


def check_patch_grid(img_size: Sequence[int], patch_size: Sequence[int],
                     stride: Sequence[int] | None = None) -> tuple[int, int]:
    """Return the (rows, cols) patch grid, or raise if the patches do not tile the image.

    Patches `stride` apart (default: the patch size, no overlap) must start at 0 and end exactly
    at the image's edge. (A stride larger than the patch leaves the rows and columns between
    patches out: config.validate_image refuses it for new runs; checkpoints that have one still load.)"""
    (h, w), (ph, pw) = _pair(img_size, "img_size"), _pair(patch_size, "patch_size")
    sh, sw = _pair(stride, "patch_stride") if stride is not None else (ph, pw)
    if min(ph, pw, sh, sw) <= 0 or ph > h or pw > w or (h - ph) % sh or (w - pw) % sw:
        overlap = f" with stride {[sh, sw]}" if stride is not None else ""
        raise ValueError(f"patch_size {[ph, pw]}{overlap} does not tile img_size {[h, w]}")
    return (h - ph) // sh + 1, (w - pw) // sw + 1


class PatchEmbed(nn.Module):
    """Cut a (C-channel) image into patches `stride` apart and project each to a token.

    (B, F, T) or (B, C, F, T) -> (B, N, D), N the patch grid's size (check_patch_grid).
    """

    def __init__(self, img_size: Sequence[int], patch_size: Sequence[int], embed_dim: int,
                 stride: Sequence[int] | None = None, in_channels: int = 1):
        super().__init__()
        self.img_size = _pair(img_size, "img_size")
        self.patch_size = _pair(patch_size, "patch_size")
        self.stride = _pair(stride, "patch_stride") if stride is not None else self.patch_size
        self.grid = check_patch_grid(self.img_size, self.patch_size, stride)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=self.patch_size, stride=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"expected input of size {list(self.img_size)}, got {list(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)


class ConvTokenizer(nn.Module):
    """A convolutional stem, then patches: (B, F, T) -> (B, N, D).

    The stem is the CNN's feature extractor (`conv_stack`): one ConvBlock (conv3x3, maxpool 2x2,
    BatchNorm, ReLU) per entry of `channels`, the first replaced by a patch stem with
    `stem_patch`. Its (B, C, F', T') maps, (F, T) divided by `downsampling`, are cut by
    PatchEmbed into `patch_size` patches of that smaller grid (patch [1, 1]: one token per
    position).
    """

    def __init__(self, img_size: Sequence[int], patch_size: Sequence[int], embed_dim: int,
                 stride: Sequence[int] | None, channels: Sequence[int],
                 stem_patch: Sequence[int] | None = None):
        super().__init__()
        self.img_size = _pair(img_size, "img_size")
        patch = checked_stem_patch(stem_patch)
        scale = downsampling(channels, patch)
        if self.img_size[0] % scale[0] or self.img_size[1] % scale[1]:
            raise ValueError(f"img_size {list(self.img_size)} is not divisible by {list(scale)}, "
                             f"as these stem blocks need")
        self.stem = conv_stack(channels, patch)
        maps = [s // k for s, k in zip(self.img_size, scale)]
        self.patches = PatchEmbed(maps, patch_size, embed_dim, stride, channels[-1])
        self.num_patches = self.patches.num_patches
        self.to(memory_format=torch.channels_last)  # as the CNN: 1.3-1.6x the training speed on a CPU core

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"expected input of size {list(self.img_size)}, got {list(x.shape[-2:])}")
        x = x.unsqueeze(1) if x.dim() == 3 else x
        return self.patches(self.stem(x.contiguous(memory_format=torch.channels_last)))


class Attention(nn.Module):
    """Multi-head self-attention on (B, N, D) with fused scaled_dot_product_attention."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))


class Mlp(nn.Module):
    """Position-wise feed-forward: D -> hidden -> D with GELU."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): in training, zero a residual branch for a random
    `rate` of the samples and scale the others by 1 / (1 - rate); the identity in evaluation."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.rate)
        return x * keep / (1 - self.rate)


class Block(nn.Module):
    """Pre-norm transformer encoder block: x + attn(norm(x)), then x + mlp(norm(x)); each branch
    dropped for a `drop_path` share of the samples in training."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SpectrogramViT(nn.Module):
    """Patch-embedding ViT classifier for (B, F, T) spectrogram segments -> (B, num_classes) logits.

    `pool="mean"` averages the tokens (the original design, no class token); `pool="cls"` prepends
    a learned class token and reads it out. The position embedding is sized from the patch grid.
    Tokenizer: `patch_size` patches `patch_stride` apart (null: no overlap) of the image, or, with
    `stem_channels` (and `stem_patch`), of the maps of a convolutional stem (ConvTokenizer). `drop_path` is the
    stochastic depth of the last block, rising linearly from 0 at the first (as timm).
    """

    POOLS = POOLS

    def __init__(
        self,
        *,
        img_size: Sequence[int],
        patch_size: Sequence[int],
        num_classes: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
        head_hidden: int,
        pool: str,
        patch_stride: Sequence[int] | None = None,
        stem_channels: Sequence[int] = (),
        stem_patch: Sequence[int] | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool {pool!r} is not one of {list(POOLS)}")
        if not 0 <= drop_path < 1:
            raise ValueError(f"drop_path {drop_path} is not in [0, 1)")
        if stem_patch and not stem_channels:
            raise ValueError(f"stem_patch {list(stem_patch)} replaces the first stem block: it needs stem_channels")
        self.pool = pool
        self.patch_embed = (ConvTokenizer(img_size, patch_size, embed_dim, patch_stride, list(stem_channels), stem_patch)
                            if stem_channels else PatchEmbed(img_size, patch_size, embed_dim, patch_stride))
        num_tokens = self.patch_embed.num_patches + (pool == "cls")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, dropout, rate) for rate in rates)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Sequential(
            nn.Linear(embed_dim, head_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(head_hidden, num_classes)
        ) if head_hidden else nn.Linear(embed_dim, num_classes)
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) -> (B, N, D) normalised tokens."""
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, num_classes): pool the tokens, then classify."""
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
