"""Checkpoints are data: loading one never runs code."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message names the file and the reason."""


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """`torch.load(weights_only=True)`: tensors and plain data only, so unpickling never runs code.
    A checkpoint is a zip archive (as torch and Lightning save them) holding a dict with a `state_dict`."""
    if not Path(path).is_file():
        raise CheckpointError(f"{key}={path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{key}={path} is not a readable checkpoint (training writes zip archives, and this "
                              "file is none: cut short, or another kind of file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise CheckpointError(f"{key}={path} is not a checkpoint ({str(err).splitlines()[0][:200]})") from None
        raise CheckpointError(f"{key}={path} holds more than tensors and plain data; refusing to load it "
                              f"({str(err).splitlines()[-1].strip()[:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        raise CheckpointError(f"{key}={path} is not a readable checkpoint ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{key}={path} is not a checkpoint that training wrote (it holds no state_dict)")
    return checkpoint


def another_layout(key: str, path: str | Path, err: BaseException, fix: str = "") -> CheckpointError:
    """The error for a checkpoint whose network this version builds otherwise (another version's
    settings or layout): `err` is what building or loading it raised (Hydra's wrapper: its cause)."""
    cause = err.__cause__ or err  # Hydra's exception names the target; what it raised says why
    return CheckpointError(f"{key}={path} does not load in this version of genre_vit, which builds its network "
                           f"otherwise ({type(cause).__name__}: {str(cause).strip().splitlines()[0][:200]}){fix}")
