"""A small Vision Transformer over spectrogram segments.

Reading order: PatchEmbed -> Attention -> Mlp -> Block -> SpectrogramViT. Shapes use B (batch),
F (frequency rows), T (time columns), N (tokens), D (embedding dim).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

POOLS = ("mean", "cls")


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or two ints, got {list(value)}")
    return pair  # type: ignore[return-value]


def check_patch_grid(img_size: Sequence[int], patch_size: Sequence[int]) -> tuple[int, int]:
    """Return the (rows, cols) patch grid, or raise if the patch shape does not tile the image."""
    (h, w), (ph, pw) = _pair(img_size, "img_size"), _pair(patch_size, "patch_size")
    if ph <= 0 or pw <= 0 or h % ph or w % pw:
        raise ValueError(f"patch_size {[ph, pw]} does not tile img_size {[h, w]}")
    return h // ph, w // pw


class PatchEmbed(nn.Module):
    """Cut an image into non-overlapping patches and project each to a token.

    (B, F, T) or (B, 1, F, T) -> (B, N, D) with N = (F / patch_f) * (T / patch_t).
    """

    def __init__(self, img_size: Sequence[int], patch_size: Sequence[int], embed_dim: int):
        super().__init__()
        self.img_size = _pair(img_size, "img_size")
        self.patch_size = _pair(patch_size, "patch_size")
        self.grid = check_patch_grid(self.img_size, self.patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f"expected input of size {list(self.img_size)}, got {list(x.shape[-2:])}")
        return self.proj(x).flatten(2).transpose(1, 2)


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


class Block(nn.Module):
    """Pre-norm transformer encoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SpectrogramViT(nn.Module):
    """Patch-embedding ViT classifier for (B, F, T) spectrogram segments -> (B, num_classes) logits.

    `pool="mean"` averages the tokens (the original design, no class token); `pool="cls"` prepends
    a learned class token and reads it out. The position embedding is sized from the patch grid.
    """

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
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool {pool!r} is not one of {list(POOLS)}")
        self.pool = pool
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        num_tokens = self.patch_embed.num_patches + (pool == "cls")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
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
