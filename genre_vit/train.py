"""Train one fold: compose config -> validate -> instantiate -> fit -> evaluate best -> metrics.json.

    python -m genre_vit.train fold=0
    python -m genre_vit.train -m fold=0,1,2,3,4
"""
from __future__ import annotations

import json
import logging
import re
import shlex
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from genre_vit.callbacks import GracefulStop, StopRequested
from genre_vit.checkpoints import CheckpointError, check_resumable, load_checkpoint
from genre_vit.config import ConfigError, validate, validate_image
from genre_vit.data.sources import DataError
from genre_vit.models import build_network

log = logging.getLogger(__name__)

# conf/ sits beside the package in the repository; an editable install finds it from any directory.
from genre_vit import CONFIG_DIR


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, torch.Tensor)) and torch.as_tensor(v).numel() == 1}


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM; the message says how to resume."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def memory_mb(field: str) -> float:
    """This process's memory from /proc/self/status (Linux): "VmRSS" now, "VmHWM" its peak.
    Elsewhere the peak from getrusage (POSIX), else NaN. VmHWM is this process's own: unlike
    getrusage's ru_maxrss, it does not inherit the parent's peak across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # POSIX only
    except ImportError:
        return float("nan")
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024), 1)


def predict_recipe(cfg: DictConfig, image_shape, class_names: list[str]) -> dict:
    """What the weights mean: everything predict needs besides them, the split they were trained
    on and the batch order (a resumed run must match it all). Saved in every checkpoint."""
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "features": OmegaConf.to_container(cfg.features, resolve=True),
        "image_shape": list(image_shape), "class_names": list(class_names),
        "sample_rate": cfg.data.sample_rate, "clip_seconds": cfg.data.clip_seconds,
        "split": {key: cfg.data[key] for key in ("split", "num_folds", "fold", "split_seed", "test_fraction")},
        "batches": {"seed": cfg.seed, "batch_size": cfg.data.batch_size},  # the order a mid-epoch resume replays
    }


def resume_checkpoint(cfg: DictConfig, recipe: dict, stop: GracefulStop | None) -> str | None:
    """The checkpoint `ckpt_path` names, checked before any heavy work: loadable as data only,
    and trained with this run's classes, features, split and model. `last` is this run's last.ckpt."""
    wanted = cfg.get("ckpt_path")
    if not wanted or (wanted == "last" and stop is None):
        return wanted  # without GracefulStop's path Lightning looks `last` up itself
    path = stop.path if wanted == "last" else Path(wanted)
    if wanted == "last" and not path.exists():
        log.warning("ckpt_path=last: no %s yet, training from the start", path)
        return None
    check_resumable(load_checkpoint(path), recipe, path)
    return str(path)


def resume_command(output_dir: Path) -> str:
    """The POSIX shell command line that resumes this run in its own directory."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    # Hydra quotes, since a sweep job's folder name holds = and , (a ' inside them is escaped as \')
    hydra_quoted = "'" + str(output_dir).replace("'", "\\'") + "'"
    run_dir = f"hydra.run.dir={hydra_quoted}"
    readable = f'"{run_dir}"' if re.fullmatch(r"[\w./=,+:@% -]*", str(output_dir)) else shlex.quote(run_dir)
    return " ".join(["python -m genre_vit.train", *map(shlex.quote, overrides), readable, "ckpt_path=last"])


def interruption(cfg: DictConfig, trainer: L.Trainer, stop: GracefulStop | None, write: bool) -> Interrupted:
    """Write metrics.json with status "interrupted" (where it stopped, how to resume)."""
    output_dir = Path(cfg.paths.output_dir)
    checkpoint = stop.path if stop and stop.path.exists() else None
    signal_name = (stop.signal if stop else None) or ("SIGTERM" if trainer.received_sigterm else "SIGINT")
    mid_epoch = bool(stop and stop.saved_mid_epoch)
    metrics = {
        "status": "interrupted",
        "signal": signal_name,
        "fold": cfg.fold,
        "last_completed_epoch": trainer.current_epoch - 1 if trainer.current_epoch else None,
        # where training stood: batches done in the current epoch (0: stopped at an epoch's end)
        "stopped_at": {"epoch": trainer.current_epoch,
                       "batch": trainer.fit_loop.epoch_loop.batch_progress.current.processed if mid_epoch else 0},
        "checkpoint": str(checkpoint) if checkpoint else None,
        "resume": resume_command(output_dir) if checkpoint else None,
    }
    if write:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    how = f"resume with: {metrics['resume']}" if checkpoint else "no checkpoint yet: run it again to start over"
    return Interrupted(f"{signal_name} at epoch {trainer.current_epoch}, batch {metrics['stopped_at']['batch']}; "
                       f"{how}", 130 if signal_name == "SIGINT" else 143)


def score_best(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule,
               final: dict) -> tuple[str, dict, int, dict]:
    """(path, validation metrics, epoch) of the best checkpoint, and its test metrics if there is a test set.

    The same trainer (under DDP a second one would launch processes again) scores it, with its
    loggers detached so that these numbers do not join the epoch curves.
    """
    best_checkpoint = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
    best_path = best_checkpoint.best_model_path if best_checkpoint else ""
    best, best_epoch = final, trainer.current_epoch - 1
    loggers, trainer.loggers = trainer.loggers, []
    if best_path:
        best_epoch = load_checkpoint(best_path)["epoch"]
        best = _scalars(trainer.validate(model, datamodule=datamodule, ckpt_path=best_path, verbose=False)[0])
    test = {}
    if datamodule.test_set:
        test = _scalars(trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)[0])
    trainer.loggers = loggers
    return best_path, best, best_epoch, test


def train(cfg: DictConfig) -> dict:
    """Run the configured training; return the metrics written to `metrics.json`."""
    started = time.time()
    validate(cfg)
    features = instantiate(cfg.features)
    validate_image(cfg, features.image_shape)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    is_main_process = rank_zero_only.rank == 0  # under DDP every process runs this function
    if is_main_process:
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    datamodule = instantiate(cfg.data, features=features)
    net = build_network(cfg.model, features.image_shape, len(datamodule.classes))
    model = instantiate(cfg.module, net=net, class_names=datamodule.classes)
    model.recipe = predict_recipe(cfg, features.image_shape, datamodule.classes)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    stop = next((c for c in callbacks if isinstance(c, GracefulStop)), None)
    resume = resume_checkpoint(cfg, model.recipe, stop)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)

    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        if stop and stop.stopping:
            raise StopRequested("stopped at the end of an epoch")
        final = _scalars(trainer.callback_metrics)
        best_path, best, best_epoch, test = score_best(trainer, model, datamodule, final)
    # StopRequested: GracefulStop; SystemExit: Lightning after a second Ctrl-C, or SIGTERM in the final scoring
    except (StopRequested, SystemExit, KeyboardInterrupt):
        raise interruption(cfg, trainer, stop, write=is_main_process) from None

    metrics = {
        "status": "completed",
        "fold": cfg.fold,
        "num_folds": cfg.data.num_folds,
        "best": {k: v for k, v in best.items() if k.startswith("val/")},
        "final": final,
        "test": test,
        "best_epoch": best_epoch,
        "epochs": trainer.current_epoch,
        **datamodule.counts,
        # tracks in the last validation's confusion matrix: all of them, gathered across processes
        "val_tracks_scored": int(model.last_val_confusion.sum()) if model.last_val_confusion is not None else 0,
        "num_params": sum(p.numel() for p in net.parameters()),
        "best_checkpoint": best_path,
        "wall_time_s": round(time.time() - started, 1),
        # in a multirun: the sweep's one process, job after job
        "process_rss_mb": memory_mb("VmRSS"),
        "process_peak_rss_mb": memory_mb("VmHWM"),
    }
    if is_main_process:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log_hparams(trainer, cfg, metrics)
    log.info("Best val/track_acc %.4f at epoch %d; metrics in %s", metrics["best"].get("val/track_acc", float("nan")),
             best_epoch, output_dir / "metrics.json")
    return metrics


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict) -> None:
    """One HPARAMS record per run: every config value with the run's best and test metrics."""
    params = OmegaConf.to_container(cfg, resolve=True)
    scores = {f"hparams/{k.replace('/', '_')}": v for k, v in {**metrics["best"], **metrics["test"]}.items()}
    for logger in trainer.loggers:
        logger.log_hyperparams(params, metrics=scores)
        logger.finalize("success")


def optimized_value(metrics: dict, name: str | None) -> float | None:
    """The metric a sweeper maximises, looked up in the final metrics (e.g. `val/track_acc_best`)."""
    if not name:
        return None
    if name not in metrics["final"]:
        raise ConfigError(f"optimized_metric={name!r} is not a logged metric: allowed {sorted(metrics['final'])}")
    return metrics["final"][name]


def record_failure(cfg: DictConfig, err: BaseException) -> None:
    """metrics.json with status "failed" and the error, so that the multirun summary lists the job."""
    path = Path(cfg.paths.output_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    message = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    path.write_text(json.dumps({"status": "failed", "fold": cfg.get("fold"), "error": message}, indent=2))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """A single run stops on the first error (exit 2 for bad settings or data). In a multirun a
    failing job is recorded as failed and the sweep goes on with the others."""
    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    try:
        if cfg.get("print_config"):
            log.info("Composed config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
        return optimized_value(train(cfg), cfg.get("optimized_metric"))
    except Interrupted as err:  # a stopped sweep stops: the user or the scheduler asked for it
        log.error("Interrupted: %s", err)
        print(f"interrupted: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted before training started: nothing to resume, run it again", file=sys.stderr)
        sys.exit(130)
    except (ConfigError, DataError, CheckpointError) as err:
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
        record_failure(cfg, err)
    except Exception as err:
        if not multirun:
            raise
        log.exception("Job failed; the multirun goes on")
        record_failure(cfg, err)
    return float("nan") if cfg.get("optimized_metric") else None  # a sweeper reads NaN as a failed trial


if __name__ == "__main__":
    # Call `main` through its importable module, not as `__main__.main`: launchers that pickle the
    # task (submitit) then reference it by name instead of serialising this module's globals.
    from genre_vit.train import main as importable_main

    importable_main()
