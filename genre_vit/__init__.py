"""Music genre classification with Vision Transformers over spectrograms.

Only the config folder's location and the config's own resolver live here, so that importing
the package stays cheap (no torch).
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from genre_vit.files import claim_folder, job_folder

__all__ = ["CONFIG_DIR"]


def _config_dir() -> Path:
    """The Hydra config folder: shipped inside the package by a wheel, beside it in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"  # pyproject maps the repository's conf/ to genre_vit.conf
    return installed if installed.is_dir() else package.parent / "conf"


# Absolute, because Hydra resolves a relative config_path against the calling module.
CONFIG_DIR: str = str(_config_dir())

# `${unique_dir:BASE}` in conf/hydra and conf/predict.yaml: a run folder created for this run alone
# (BASE, else BASE_2, ...). Cached per config, as Hydra's `now`, and copied with it into every job.
OmegaConf.register_new_resolver("unique_dir", claim_folder, use_cache=True, replace=True)
# `${job_folder:${hydra.job.num},${hydra.job.override_dirname}}`: a multirun job's folder, short enough to create.
OmegaConf.register_new_resolver("job_folder", job_folder, replace=True)
