"""The `python -m genre_vit.train` command: compose the config, validate it, then train
(genre_vit/training.py) and turn what went wrong into one line and an exit code.

    python -m genre_vit.train fold=0
    python -m genre_vit.train -m fold=0,1,2,3,4
    python -m genre_vit.train fold=all              # every fold in one job; returns the mean

A bad setting is refused before the training code is imported (Lightning's import alone takes
seconds).
"""
from __future__ import annotations

import logging
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from genre_vit import CONFIG_DIR
from genre_vit.checkpoints import CheckpointError
from genre_vit.cli import run_with_pasted_paths
from genre_vit.config import ConfigError, validate, validate_shapes
from genre_vit.data.sources import DataError
from genre_vit.files import DiskFull, FolderInUse
from genre_vit.runs import Interrupted, failure_fields, write_record

log = logging.getLogger(__name__)


def optimized_value(metrics: dict, name: str | None) -> float | None:
    """The metric a sweeper maximises, looked up in the final metrics (e.g. `val/track_acc_best`)."""
    if not name:
        return None
    if name not in metrics["final"]:
        raise ConfigError(f"optimized_metric={name!r} is not a logged metric: allowed {sorted(metrics['final'])}")
    return metrics["final"][name]


def record_failure(cfg: DictConfig, err: BaseException) -> None:
    """metrics.json with status "failed" and the error, so that the multirun summary lists the job."""
    write_record(cfg.paths.output_dir, "failed", fold=cfg.get("fold"), **failure_fields(err))


def quiet_third_party() -> None:
    """Drop what every run printed that is not about the run: Lightning's cloud-logging tip and a
    deprecation of torch's pytree API that Lightning still uses (printed twice)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "Tip:" not in r.getMessage())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)


def print_lightnings_messages_once() -> None:
    """Lightning prints its messages (bare, on stderr) only when it is imported before logging is
    set up; imported after Hydra's set-up, as here, it also passes them to Hydra's handlers and to
    a console of its own. Give its loggers the handler they get when imported first."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if logger.propagate:
            logger.addHandler(logging.StreamHandler())
            logger.propagate = False


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """A single run stops on the first error (exit 2 for bad settings or data, a full disk or a run
    folder in use). In a multirun a failing job is recorded as failed and the sweep goes on."""
    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    quiet_third_party()
    try:
        validate(cfg)
        validate_shapes(cfg)
        from genre_vit.training import run  # only now: its imports (Lightning's) take seconds

        print_lightnings_messages_once()
        return optimized_value(run(cfg, multirun), cfg.get("optimized_metric"))
    except Interrupted as err:  # a stopped sweep stops: the user or the scheduler asked for it
        log.error("Interrupted: %s", err)
        print(f"interrupted: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted before training started: nothing to resume, run it again", file=sys.stderr)
        sys.exit(130)
    except (FolderInUse, DiskFull) as err:  # another run's folder; metrics.json was written where possible
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
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
    return None  # a failed trial to a sweeper (Optuna's records it as failed and goes on; a NaN crashed its search)


def cli() -> None:
    """The `genre-vit-train` command: `main` with pasted paths quoted for Hydra."""
    run_with_pasted_paths(main)


if __name__ == "__main__":
    # Call through the importable module, not as `__main__.main`: launchers that pickle the task
    # (submitit) then reference it by name instead of serialising this module's globals.
    from genre_vit.train import cli as importable_cli

    importable_cli()
