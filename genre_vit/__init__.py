"""Music genre classification with Vision Transformers over spectrograms.

Only the config folder's location lives here, so that importing the package stays cheap (no torch).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_DIR"]


def _config_dir() -> Path:
    """The Hydra config folder: shipped inside the package by a wheel, beside it in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"  # pyproject maps the repository's conf/ to genre_vit.conf
    return installed if installed.is_dir() else package.parent / "conf"


# Absolute, because Hydra resolves a relative config_path against the calling module.
CONFIG_DIR: str = str(_config_dir())
