"""Checkpoints are data: safe loading, and the checks before one is resumed."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

# Recipe keys that may change between a run and its resumption (they do not change the weights' meaning).
RESUMABLE_CHANGES = ("model.compile",)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message names the file and the reason."""


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """`torch.load(weights_only=True)`: tensors and plain data only, so unpickling never runs code."""
    if not Path(path).is_file():
        raise CheckpointError(f"{key}={path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise CheckpointError(f"{key}={path} is not a checkpoint ({str(err).splitlines()[0][:200]})") from None
        raise CheckpointError(f"{key}={path} holds more than tensors and plain data; refusing to load it "
                              f"({str(err).splitlines()[-1].strip()[:200]})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{key}={path} is not a readable checkpoint ({str(err).splitlines()[0][:200]})") from None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def recipe_differences(saved: dict, current: dict) -> list[str]:
    """`key: checkpoint value != this run's value` for every setting that differs."""
    old, new = _flatten(saved), _flatten(current)
    return [f"{key}: checkpoint {old.get(key, '(unset)')!r} != this run {new.get(key, '(unset)')!r}"
            for key in sorted(old.keys() | new.keys())
            if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key)]


def recipe_of(checkpoint: dict, path: str | Path, key: str = "ckpt_path") -> dict:
    """The checkpoint's genre_vit recipe (what its weights mean)."""
    recipe = checkpoint.get("genre_vit_recipe")
    if not recipe:
        raise CheckpointError(f"{key}={path} is not a genre_vit checkpoint (it has no recipe)")
    return recipe


def check_resumable(checkpoint: dict, recipe: dict, path: str | Path) -> None:
    """Refuse a checkpoint trained on other classes, features, split, batch order or model than this run's."""
    differences = recipe_differences(recipe_of(checkpoint, path), recipe)
    if differences:
        raise CheckpointError(f"ckpt_path={path} was trained with other settings than this run; "
                              f"{len(differences)} differ: " + "; ".join(differences[:6])
                              + (" ..." if len(differences) > 6 else ""))
