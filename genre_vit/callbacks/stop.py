"""Ctrl-C and SIGTERM: stop training where it can resume exactly, and record where it stopped."""
from __future__ import annotations

import logging
import re
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig

from genre_vit.cli import hydra_quote, python_command
from genre_vit.runs import Interrupted, write_record

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised by GracefulStop to leave `trainer.fit` between two training batches."""


class GracefulStop(L.Callback):
    """Ctrl-C (SIGINT) or SIGTERM stops training where it can resume exactly.

    The request is read after each training batch (shared across DDP processes there, so all
    stop at the same batch). In the middle of an epoch, training stops after that batch and
    `<dirpath>/<filename>.ckpt` is saved there; after an epoch's last batch, it stops when the
    epoch (and its validation) ends, whose checkpoint the every-epoch checkpoint callback writes.
    A signal during validation is read after the next epoch's first batch. A second Ctrl-C
    aborts at once.
    """

    def __init__(self, dirpath: str, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.signal: str | None = None  # the signal that arrived in this process
        self.stopping = False  # a stop was decided (in any process)
        self.saved_mid_epoch = False  # the stop saved `path` in the middle of an epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("Not in the main thread: Ctrl-C and SIGTERM will not stop training gracefully")
            return

        def request_stop(signum: int, frame: Any) -> None:
            if signum == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts
            self.signal = self.signal or signal.Signals(signum).name
            log.warning("%s: stopping at the next batch boundary and saving a checkpoint%s", self.signal,
                        " (Ctrl-C again aborts now)" if signum == signal.SIGINT else "")

        # Lightning's own SIGTERM handler stops mid-validation too; its teardown restores the originals.
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # One collective per batch, at the same point in every process (none at epoch end, where
        # rank-0-only callbacks may run collectives of their own).
        self.stopping = self.stopping or trainer.strategy.reduce_boolean_decision(self.signal is not None, all=False)
        if self.stopping and batch_idx + 1 < trainer.num_training_batches:
            trainer.save_checkpoint(self.path)  # the datamodule's state records the batches done
            self.saved_mid_epoch = True
            raise StopRequested(f"stopped after batch {batch_idx + 1} of epoch {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopping:  # decided after the epoch's last batch
            trainer.should_stop = True


def resume_command(run_dir: Path) -> str:
    """The POSIX shell command line that resumes this run in its own directory (Hydra's job
    folder, where a `fold=all` fold's `run_dir` is a sub-folder of it), with the interpreter that runs it now."""
    if HydraConfig.initialized():
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    overrides = [o for o in overrides if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    # Hydra quotes, since a sweep job's folder name holds = and ,
    run_dir_override = f"hydra.run.dir={hydra_quote(str(run_dir))}"
    readable = f'"{run_dir_override}"' if re.fullmatch(r"[\w./=,+:@% -]*", str(run_dir)) else shlex.quote(run_dir_override)
    return " ".join([python_command("genre_vit.train"), *map(shlex.quote, overrides), readable, "ckpt_path=last"])


def interruption(trainer: L.Trainer, stop: GracefulStop | None, run_dir: Path, fold: int, write: bool) -> Interrupted:
    """Record the stop in metrics.json (status "interrupted": where it stopped, how to resume) if
    `write`, and return the exception that ends the run with the signal's exit code."""
    checkpoint = stop.path if stop and stop.path.exists() else None
    signal_name = (stop.signal if stop else None) or ("SIGTERM" if trainer.received_sigterm else "SIGINT")
    mid_epoch = bool(stop and stop.saved_mid_epoch)
    record = {
        "signal": signal_name,
        "fold": fold,
        "last_completed_epoch": trainer.current_epoch - 1 if trainer.current_epoch else None,
        # where training stood: batches done in the current epoch (0: stopped at an epoch's end)
        "stopped_at": {"epoch": trainer.current_epoch,
                       "batch": trainer.fit_loop.epoch_loop.batch_progress.current.processed if mid_epoch else 0},
        "checkpoint": str(checkpoint) if checkpoint else None,
        "resume": resume_command(run_dir) if checkpoint else None,
    }
    if write:
        write_record(run_dir, "interrupted", **record)
    how = f"resume with: {record['resume']}" if checkpoint else "no checkpoint yet: run it again to start over"
    return Interrupted(f"{signal_name} at epoch {trainer.current_epoch}, batch {record['stopped_at']['batch']}; "
                       f"{how}", 130 if signal_name == "SIGINT" else 143)
