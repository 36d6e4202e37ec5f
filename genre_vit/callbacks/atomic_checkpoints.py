"""Checkpoints written whole or not at all (a Lightning CheckpointIO plugin)."""
from __future__ import annotations

import io
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from genre_vit.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint (best, last, a stop's) is serialised in memory, written to a temporary file
    beside its final name and renamed into place: a full disk or a kill during the write leaves the
    previous checkpoint of that name intact, never a truncated one. Remote paths (`s3://...`) are
    written by Lightning as before."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda f: f.write(buffer.getbuffer()))
