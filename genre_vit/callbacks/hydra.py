"""Hydra callbacks: check the output folder before a run starts, summarise a multirun when it ends."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` could not be created and written to, or None if it can (nothing is created)."""
    ancestor = folder.absolute()
    try:
        while not ancestor.exists():
            ancestor = ancestor.parent
    except OSError as err:  # e.g. a parent folder this user may not enter
        return f"{ancestor} cannot be checked ({err.strerror})"
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return None


class WritableOutput(HydraCallback):
    """Hydra callback: before a run or a multirun, check that its output folder can be written,
    so that a bad `hydra.run.dir` / `paths.output_root` is one line (exit 2), not a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(folder: str, key: str) -> None:
        reason = unwritable_reason(Path(folder))
        if reason:
            print(f"error: {key}={folder} cannot be written: {reason} (set paths.output_root or {key})", file=sys.stderr)
            sys.exit(2)


class MultirunSummary(HydraCallback):
    """Hydra callback: when a multirun ends, summarise its jobs into its sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from genre_vit.summarize import summarize

        sweep_dir = Path(config.hydra.sweep.dir)
        written = summarize(sweep_dir)
        log.info("Multirun summary: %s", ", ".join(str(p) for p in written))
