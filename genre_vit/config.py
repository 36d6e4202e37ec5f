"""Checks on the composed config that must pass before any data or model work starts."""
from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from genre_vit.data.datamodule import NORMALIZATIONS
from genre_vit.data.splits import SPLITS
from genre_vit.models.vit import check_patch_grid
from genre_vit.module import LOGGED_METRICS


class ConfigError(ValueError):
    """A setting that cannot work; the message names the key, its value and what is allowed."""


def validate(cfg: DictConfig, image_shape: Sequence[int]) -> None:
    """Raise ConfigError for the first invalid setting. `image_shape` is the features' (F, T)."""
    metric = cfg.get("optimized_metric")
    if metric and metric not in LOGGED_METRICS:
        raise ConfigError(f"optimized_metric={metric!r} is not a logged metric: allowed {list(LOGGED_METRICS)}")
    if cfg.data.split not in SPLITS:
        raise ConfigError(f"data.split={cfg.data.split!r} is invalid: allowed {list(SPLITS)}")
    if cfg.data.normalization not in NORMALIZATIONS:
        raise ConfigError(f"data.normalization={cfg.data.normalization!r} is invalid: allowed {list(NORMALIZATIONS)}")
    test_fraction = cfg.data.test_fraction
    if not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise ConfigError(f"data.test_fraction={test_fraction} is invalid: allowed numbers in [0, 1)")
    num_folds, fold = cfg.data.num_folds, cfg.fold
    if not isinstance(num_folds, int) or num_folds < 2:
        raise ConfigError(f"data.num_folds={num_folds} is invalid: allowed integers >= 2")
    if not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise ConfigError(f"fold={fold} is invalid: allowed 0..{num_folds - 1} (data.num_folds={num_folds})")
    model = cfg.model
    if model.embed_dim % model.num_heads:
        divisors = [h for h in range(1, model.embed_dim + 1) if model.embed_dim % h == 0]
        raise ConfigError(f"model.embed_dim={model.embed_dim} is not divisible by model.num_heads={model.num_heads}: "
                          f"allowed num_heads for this embed_dim: {divisors}")
    try:
        check_patch_grid(image_shape, model.patch_size)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for key in ("data.batch_size", "model.depth", "model.embed_dim", "trainer.max_epochs"):
        value = cfg
        for part in key.split("."):
            value = value[part]
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value} is invalid: allowed integers >= 1")
