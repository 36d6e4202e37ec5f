"""Training: one fold (instantiate -> fit a network or the baseline -> evaluate the best checkpoint
-> metrics.json) or every fold in turn (`fold=all`). `python -m genre_vit.train` (train.py) imports
this module only once the config is valid: Lightning's import alone takes seconds.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import gc
import json
import logging
import math
import os
import shlex
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from genre_vit.baseline import fit_track_classifier
from genre_vit.callbacks.atomic_checkpoints import AtomicCheckpointIO
from genre_vit.callbacks.cadence import ValidateLastEpoch
from genre_vit.callbacks.stop import GracefulStop, StopRequested, interruption
from genre_vit.checkpoints import CheckpointError, another_layout, load_checkpoint
from genre_vit.config import validate, validate_shapes
from genre_vit.files import DiskFull, hold_run_folder, is_disk_full
from genre_vit.recipe import HELD_OUT_KEY, Recipe, every_key
from genre_vit.runs import (
    CROSS_VALIDATION_FILE,
    EARLIER_RUNS,
    HISTORY_FILE,
    NOT_RESULT_KEYS,
    RECORD_FILE,
    TRACK_SCORES_FILE,
    failure_fields,
    key_ends_with,
    memory_mb,
    read_record,
    set_aside_earlier_run,
    write_record,
    write_track_scores,
)

log = logging.getLogger(__name__)


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, torch.Tensor)) and torch.as_tensor(v).numel() == 1}


def listed(differences: list[str], shown: int = 6) -> str:
    """`N differ: a; b; ...`: a checkpoint's settings that differ from this run's, the first `shown` of them."""
    return f"{len(differences)} differ: " + "; ".join(differences[:shown]) + (" ..." if len(differences) > shown else "")


def resume_checkpoint(cfg: DictConfig, recipe: Recipe, held_out: dict[str, list[str]],
                      stop: GracefulStop | None) -> tuple[str | None, int | None]:
    """The checkpoint `ckpt_path` names, checked before any heavy work: loadable as data only,
    trained with this run's recipe (classes, features, split, batch order, model) and holding out
    the same tracks (`held_out`, where it records them). `last` is this run's last.ckpt. Returns
    the path for Lightning and the optimizer steps the checkpoint had trained (None if unread)."""
    wanted = cfg.get("ckpt_path")
    if not wanted or (wanted == "last" and stop is None):
        return wanted, None  # without GracefulStop's path Lightning looks `last` up itself
    path = stop.path if wanted == "last" else Path(wanted)
    if Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(cfg.paths.output_dir)) / EARLIER_RUNS):
        raise CheckpointError(f"ckpt_path={path} belongs to a run that a fresh run set aside in {cfg.paths.output_dir}: "
                              "resumed there, it would take that run's checkpoints and curves for its own; resume it in "
                              "a folder of its own (hydra.run.dir=NEW_FOLDER)")
    if wanted == "last" and not path.exists():
        log.warning("ckpt_path=last: no %s yet, training from the start", path)
        return None, None
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as err:
        others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path) if path.parent.is_dir() else []
        raise CheckpointError(f"{err}; other checkpoints in {path.parent}: {', '.join(others) or 'none'} "
                              "(ckpt_path=PATH resumes from one)") from None
    saved = Recipe.from_checkpoint(checkpoint, path)
    if differences := saved.differences(recipe):
        raise CheckpointError(f"ckpt_path={path} was trained with other settings than this run; "
                              f"{listed(differences)}{resume_fix(saved, recipe, differences)}")
    # (one holding raw weights may start or change an averaging: the average starts from its weights)
    if (trained := averaged_with(checkpoint)) and trained != (this_run := averaging_choice(cfg)):
        raise CheckpointError(f"ckpt_path={path} holds the average of averaging={trained}, and this run has "
                              f"averaging={this_run}: resumed, it would train on from the averaged weights; "
                              f"set averaging={trained}")
    if HELD_OUT_KEY not in checkpoint:
        log.warning("ckpt_path=%s records no held-out tracks (written before checkpoints did): if files were added to "
                    "or removed from the data set since, its folds moved", path)
    if (saved_held_out := checkpoint.get(HELD_OUT_KEY, held_out)) != held_out:
        raise CheckpointError(f"ckpt_path={path} held out other tracks than this run's split, since files were added "
                              f"to or removed from the data set ({held_out_changes(saved_held_out, held_out)}); "
                              "resumed, it would validate on tracks it trained on: restore the files, or train anew")
    return str(path), checkpoint["global_step"]


AVERAGING_KEY = "callbacks.weight_averaging"  # where conf/averaging/ puts its callback
# callback class -> conf/averaging/ choice (Lightning's own classes: checkpoints before 993a7fc)
AVERAGING_CHOICES = {"EMAAveraging": "ema", "SWAAveraging": "swa", "EMAWeightAveraging": "ema", "WeightAveraging": "swa"}


def averaged_with(checkpoint: dict) -> str | None:
    """The `averaging` choice whose average a checkpoint's state_dict holds (Lightning's averaging
    callbacks keep the raw weights beside it); None when it holds raw weights."""
    if "current_model_state" not in checkpoint or int((checkpoint.get("averaging_state") or {}).get("n_averaged", 0)) == 0:
        return None
    return next((AVERAGING_CHOICES[k] for k in checkpoint.get("callbacks", {}) if k in AVERAGING_CHOICES), "unknown")


def averaging_choice(cfg: DictConfig) -> str:
    """This run's `averaging` choice (none, ema or swa)."""
    target = OmegaConf.select(cfg, f"{AVERAGING_KEY}._target_")
    return AVERAGING_CHOICES.get(str(target).rsplit(".", 1)[-1], str(target)) if target else "none"


def held_out_changes(saved: dict[str, list[str]], now: dict[str, list[str]]) -> str:
    """`val: 2 new (jazz/b.wav, ...), 1 gone (...)`: how a split's held-out tracks changed."""
    changes = []
    for stage in sorted(saved.keys() | now.keys()):
        before, after = set(saved.get(stage, [])), set(now.get(stage, []))
        parts = [f"{len(names)} {what} ({', '.join(sorted(names)[:3])}{', ...' if len(names) > 3 else ''})"
                 for what, names in (("new", after - before), ("gone", before - after)) if names]
        changes += [f"{stage}: {', '.join(parts)}"] if parts else []
    return "; ".join(changes)


def resume_fix(saved: Recipe, recipe: Recipe, differences: list[str]) -> str:
    """The end of a refused resume's message: the overrides that give this run the checkpoint's
    settings (e.g. an older default's features), where each difference has one."""
    if overrides := settings_fix(saved, recipe):
        return overrides
    if any(d.startswith("reference") for d in differences):
        return "; set this run's reference to the checkpoint's (reference=none for one written without a reference)"
    return ""


def settings_fix(saved: Recipe, recipe: Recipe, counts: Callable[[str], bool] = every_key) -> str:
    """`; the checkpoint's settings, as overrides: k=v ...` (shell-quoted), which give this run
    the checkpoint's settings among the keys `counts` picks; empty where a difference has no one-key fix."""
    overrides = saved.restoring_overrides(recipe, counts)
    return "; the checkpoint's settings, as overrides: " + " ".join(map(shlex.quote, overrides)) if overrides else ""


INPUT_KEYS = ("decoding.sample_rate", "features", "model")  # what must match for weights to mean the same
WINDOW_CHOICE_KEYS = ("features.segment_step", "features.sound_within_db", "features.end_window")  # which windows are scored: free


def fixes_the_weights_meaning(key: str) -> bool:
    """Whether a recipe key must match for a checkpoint's weights to start this run's network."""
    return key.startswith(INPUT_KEYS) and not key.startswith(WINDOW_CHOICE_KEYS)


def initialize_from(cfg: DictConfig, recipe: Recipe, net: torch.nn.Module) -> None:
    """Start `net` from the network weights of the checkpoint `init_from` names (fine-tuning a
    network trained on another data set), checked before any heavy work: its sample rate,
    features and network must be this run's. Its classes may differ: then its `head` (the
    networks' classifier) is left out and starts from scratch. The input normalisation is this
    run's own (the training fold's statistics)."""
    path = cfg.get("init_from")
    if not path:
        return
    checkpoint = load_checkpoint(path, key="init_from")
    source = Recipe.from_checkpoint(checkpoint, path, key="init_from")
    if differences := source.differences(recipe, fixes_the_weights_meaning):
        raise CheckpointError(f"init_from={path} has another input or network than this run; {listed(differences)}"
                              f"{settings_fix(source, recipe, fixes_the_weights_meaning)}")
    same_classes = source.class_names == recipe.class_names
    state = {key.removeprefix("model.net."): value for key, value in checkpoint["state_dict"].items()
             if key.startswith("model.net.") and (same_classes or not key.startswith("model.net.head."))}
    try:
        net.load_state_dict(state, strict=same_classes)
    except RuntimeError as err:  # the same settings, another version's layout
        raise another_layout("init_from", path, err) from None
    log.info("init_from=%s: network weights loaded%s", path,
             "" if same_classes else f" except the head ({len(source.class_names)} other classes)")


def score_best(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule,
               final: dict) -> tuple[str, dict, int, dict]:
    """(path, validation metrics, epoch) of the best checkpoint, and its test metrics if there is a test set.

    The same trainer (under DDP a second one would launch processes again) scores it, with its
    loggers detached so that these numbers do not join the epoch curves.
    """
    best_checkpoint = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
    best_path = best_checkpoint.best_model_path if best_checkpoint else ""
    best, best_epoch, test = final, trainer.current_epoch - 1, {}
    with loggers_detached(trainer):
        if best_path:
            best_epoch = load_checkpoint(best_path)["epoch"]
            best = _scalars(trainer.validate(model, datamodule=datamodule, ckpt_path=best_path, verbose=False)[0])
        if datamodule.test_set:
            test = _scalars(trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, verbose=False)[0])
    return best_path, best, best_epoch, test


@contextlib.contextmanager
def loggers_detached(trainer: L.Trainer):
    """Scores computed in the block stay out of the epoch curves."""
    loggers, trainer.loggers = trainer.loggers, []
    try:
        yield
    finally:
        trainer.loggers = loggers


def budget_steps(max_steps: int, train_tracks: int, steps_per_track: float = 0, cap: int | None = None) -> int:
    """The training budget in optimizer steps: `max_steps` at least, raised to `steps_per_track`
    per training track for larger training sets, but not above `cap` (when set)."""
    grown = math.ceil(steps_per_track * train_tracks)
    if cap is not None:
        grown = min(grown, cap)
    return max(max_steps, grown)


def budget_in_epochs(trainer: L.Trainer, datamodule: L.LightningDataModule, max_steps: int,
                     max_epochs: int | None, steps_per_track: float = 0, cap: int | None = None) -> int:
    """The epochs that train the budget's optimizer steps (`budget_steps` of this training set;
    whole epochs, so at least that many steps), capped at `max_epochs` when that is set.

    The budget reaches Lightning as epochs because Lightning resumes an iteration-based run
    (`max_steps` set) wrongly from a checkpoint written at the end of an epoch: it trains no
    further (Lightning-AI/pytorch-lightning#19617)."""
    datamodule.trainer = trainer  # this process's share of the batches under DDP
    datamodule.prepare_data()
    datamodule.setup("fit")
    train_tracks = datamodule.counts["train_tracks"]
    steps = budget_steps(max_steps, train_tracks, steps_per_track, cap)
    if steps != max_steps:
        log.info("Training budget: %d optimizer steps (budget.steps_per_track=%s x %d training tracks, "
                 "from trainer.max_steps=%d up to budget.max_steps=%s)", steps, steps_per_track, train_tracks,
                 max_steps, cap)
    batches, limit = len(datamodule.train_dataloader()), trainer.limit_train_batches  # as Lightning limits an epoch
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    steps_per_epoch = math.ceil(max(batches, 1) / trainer.accumulate_grad_batches)
    epochs = math.ceil(steps / steps_per_epoch)
    return min(epochs, max_epochs) if max_epochs not in (None, -1) else epochs


def set_aside_earlier_run_of(cfg: DictConfig, loggers: list) -> None:
    """A run that starts afresh in a folder another run used: that run's record, curves, track
    scores, checkpoints (the callbacks' folders) and logger folders move to `earlier_runs/<n>/`."""
    folders = [c.get("dirpath") for c in (cfg.get("callbacks") or {}).values() if c and c.get("dirpath")]
    folders += [logger.log_dir for logger in loggers if getattr(logger, "log_dir", None)]  # a local one's
    if moved := set_aside_earlier_run(cfg.paths.output_dir, [RECORD_FILE, HISTORY_FILE, TRACK_SCORES_FILE, *folders]):
        last = next(moved.rglob("last.ckpt"), None)
        log.warning("%s held an earlier run's outputs: moved to %s, so that this fresh run's are its own%s",
                    cfg.paths.output_dir, moved, f" (to go on with that run: hydra.run.dir=NEW_FOLDER ckpt_path={last})"
                    if last else "")


def fit_network(cfg: DictConfig, datamodule: L.LightningDataModule, recipe: Recipe, loggers: list) -> dict | None:
    """Train the recipe's network with Lightning and score its best checkpoint: the record's
    fields; None when `ckpt_path` had already trained the whole budget."""
    is_main_process = rank_zero_only.rank == 0
    net = recipe.build_network(compile=cfg.model.get("compile", False))
    model = recipe.build_classifier(cfg.module, net)
    model.recipe, model.held_out = recipe.to_dict(), datamodule.held_out_tracks()
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    stop = next((c for c in callbacks if isinstance(c, GracefulStop)), None)
    callbacks.append(ValidateLastEpoch())  # the record's final numbers are the final weights'
    if stop:  # last: its mid-epoch checkpoint comes after every other callback saw the batch (an EMA's update)
        callbacks.remove(stop)
        callbacks.append(stop)
    resume, resumed_at = resume_checkpoint(cfg, recipe, model.held_out, stop)
    initialize_from(cfg, recipe, net)  # first: it may name a checkpoint of the earlier run set aside here
    if resume is None and is_main_process:
        set_aside_earlier_run_of(cfg, loggers)
    max_steps = cfg.trainer.get("max_steps", -1)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, max_steps=-1,
                                     plugins=[AtomicCheckpointIO()])
    if max_steps != -1:
        budget = cfg.get("budget") or {}
        trainer.fit_loop.max_epochs = budget_in_epochs(trainer, datamodule, max_steps, cfg.trainer.get("max_epochs"),
                                                       budget.get("steps_per_track", 0), budget.get("max_steps"))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        if stop and stop.stopping:
            raise StopRequested("stopped at the end of an epoch")
        final = _scalars(trainer.callback_metrics)
        if resumed_at == trainer.global_step:  # the checkpoint had trained the whole budget: nothing was trained
            if (read_record(cfg.paths.output_dir) or {}).get("status") == "completed":
                return None
            with loggers_detached(trainer):  # e.g. stopped in the final scoring: score the final weights
                final = {**last_epoch_training(cfg.paths.output_dir),
                         **_scalars(trainer.validate(model, datamodule=datamodule, ckpt_path=resume, verbose=False)[0])}
        if is_main_process and model.last_val_scores is not None:  # the final weights', as `final`
            write_track_scores(cfg.paths.output_dir, model.last_val_scores, datamodule.track_list.paths, datamodule.classes)
        best_path, best, best_epoch, test = score_best(trainer, model, datamodule, final)
    # StopRequested: GracefulStop; SystemExit: Lightning after a second Ctrl-C, or SIGTERM in the final scoring
    except (StopRequested, SystemExit, KeyboardInterrupt):
        raise interruption(trainer, stop, Path(cfg.paths.output_dir), cfg.fold, write=is_main_process) from None
    return {
        "best": {k: v for k, v in best.items() if k.startswith("val/")},
        "final": final,
        "test": test,
        "best_epoch": best_epoch,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,  # optimizer steps: the training budget (trainer.max_steps)
        **datamodule.counts,
        # tracks in the last validation's confusion matrix: all of them, gathered across processes
        "val_tracks_scored": int(model.last_val_confusion.sum()) if model.last_val_confusion is not None else 0,
        "num_params": sum(p.numel() for p in net.parameters()),
        "best_checkpoint": best_path,
    }


def fit_baseline(cfg: DictConfig, datamodule: L.LightningDataModule) -> dict:
    """Fit the `baseline` estimator (e.g. experiment=baseline_logreg) on per-track statistics of
    the same folds and cached features: the record's fields, as a network's."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    scores = fit_track_classifier(instantiate(cfg.baseline), datamodule.train_set, datamodule.val_set,
                                  datamodule.test_set, num_classes=len(datamodule.classes))
    val = {k: v for k, v in scores.items() if k.startswith("val/")}
    return {"best": val, "final": {**val, "train/track_acc": scores["train/track_acc"]},
            "test": {k: v for k, v in scores.items() if k.startswith("test/")}, "best_epoch": None, "epochs": 0, "steps": 0,
            **datamodule.counts, "val_tracks_scored": datamodule.counts["val_tracks"],
            "num_params": scores["num_params"], "best_checkpoint": ""}


def train(cfg: DictConfig) -> dict:
    """Run the configured training (a network, or the `baseline` estimator); return the record
    written to `metrics.json`."""
    started = time.time()
    # A multirun's or fold=all's earlier trainers, modules and data are reference cycles: free them
    # now, not whenever the collector next runs (measured: +10 MB of resident memory a job without).
    gc.collect()
    validate(cfg)
    features = validate_shapes(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    is_main_process = rank_zero_only.rank == 0  # under DDP every process runs this function
    if is_main_process:
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    datamodule = instantiate(cfg.data, features=features)
    datamodule.check_classes()
    recipe = Recipe.from_config(cfg, datamodule.classes)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    try:
        if cfg.get("baseline") is not None:
            if is_main_process:
                set_aside_earlier_run_of(cfg, loggers)
            fields = fit_baseline(cfg, datamodule)
        else:
            fields = fit_network(cfg, datamodule, recipe, loggers)
            if fields is None:
                return finished_record(cfg)
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise disk_full(output_dir, err, write=is_main_process, fold=cfg.fold) from None
    record = {"fold": cfg.fold, "num_folds": cfg.data.num_folds, **fields,
              "wall_time_s": round(time.time() - started, 1),
              # in a multirun: the sweep's one process, job after job
              "process_rss_mb": memory_mb("VmRSS"), "process_peak_rss_mb": memory_mb("VmHWM")}
    if is_main_process:
        write_record(output_dir, "completed", **record)
        log_hparams(loggers, cfg, record)
    log.info("Best val/track_acc %.4f; metrics in %s", record["best"].get("val/track_acc", float("nan")),
             output_dir / "metrics.json")
    return {"status": "completed", **record}


def last_epoch_training(run_dir: str | Path) -> dict[str, float]:
    """The last epoch's training loss and accuracy from the run's history.csv (which a re-scoring
    of the final weights cannot compute); empty without one."""
    path = Path(run_dir) / HISTORY_FILE
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    return {key: float(rows[-1][key]) for key in ("train/loss_epoch", "train/acc") if rows and rows[-1].get(key)}


def finished_record(cfg: DictConfig) -> dict:
    """The record of a finished run resumed again (e.g. a `fold=all` run's completed folds): the
    one it wrote, unchanged, since its checkpoint has nothing left to train."""
    record = read_record(cfg.paths.output_dir)
    log.info("ckpt_path=%s had trained the whole budget: nothing to train, the run's record kept (%s)",
             cfg.ckpt_path, Path(cfg.paths.output_dir) / "metrics.json")
    return record


def cross_validate(cfg: DictConfig) -> dict:
    """`fold=all`: train every fold in turn, each in `<run dir>/fold_<k>/`, and write the mean,
    sample std and per-fold value of every final metric (the last epoch's; `val/track_acc_best`
    is the best epoch's) to `<run dir>/cross_validation.json`."""
    run_dir = Path(cfg.paths.output_dir)
    records = []
    for fold in range(cfg.data.num_folds):
        fold_cfg = copy.deepcopy(cfg)
        with open_dict(fold_cfg):
            fold_cfg.fold, fold_cfg.paths.output_dir = fold, str(run_dir / f"fold_{fold}")
        Path(fold_cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
        records.append(train(fold_cfg))
    names = sorted(set.intersection(*(set(r["final"]) for r in records)))
    summary = {"folds": cfg.data.num_folds, "runs": [str(run_dir / f"fold_{k}") for k in range(len(records))],
               **{name: {"mean": statistics.fmean(r["final"][name] for r in records),
                         "std": statistics.stdev(r["final"][name] for r in records),
                         "per_fold": [r["final"][name] for r in records]} for name in names}}
    (run_dir / CROSS_VALIDATION_FILE).write_text(json.dumps(summary, indent=2))
    (run_dir / RECORD_FILE).unlink(missing_ok=True)  # an earlier try's failure: the folds' records now tell
    log.info("Cross-validation over %d folds: val/track_acc %.4f ± %.4f (%s)", len(records),
             summary["val/track_acc"]["mean"], summary["val/track_acc"]["std"], run_dir / CROSS_VALIDATION_FILE)
    return {"status": "completed", "final": {name: summary[name]["mean"] for name in names}}


# What the HPARAMS tab shows, with seed, fold, the training budget and the weight averaging
EXPERIMENT_GROUPS = ("data", "features", "model", "optim", "augment", "budget", "reference")
SHOWN_IN_AUGMENT = ("data.time_stretch", "data.pitch_shift")  # augment's settings, which its group shows


def experiment_settings(cfg: DictConfig) -> dict:
    """The settings that describe an experiment, flat and named as TensorBoard shows them
    (`optim/lr`): the groups above, the averaging's, the budget's trainer keys, seed, fold and
    (when set) init_from, without `_target_`s, paths and the knobs that change speed only; which
    optional parts ran as `averaging/kind` (none, ema, swa), `reference/kind` and `baseline/kind`
    (their class, the baseline's pipeline: make_pipeline; none when off)."""
    def flat(node: dict, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            name = f"{prefix}/{key}" if prefix else key
            if str(key).startswith("_") or key_ends_with(name, (*NOT_RESULT_KEYS, *SHOWN_IN_AUGMENT), "/"):
                continue
            out.update(flat(value, name) if isinstance(value, dict) else {name: value})
        return out
    groups = {g: OmegaConf.to_container(cfg[g], resolve=True) for g in EXPERIMENT_GROUPS if cfg.get(g) is not None}
    if (averaging := OmegaConf.select(cfg, AVERAGING_KEY)) is not None:
        groups["averaging"] = OmegaConf.to_container(averaging, resolve=True)
    kinds = {"averaging/kind": averaging_choice(cfg),
             **{f"{name}/kind": str(OmegaConf.select(cfg, f"{name}._target_") or "none").rsplit(".", 1)[-1]
                for name in ("reference", "baseline")}}
    budget = {f"trainer/{key}": cfg.trainer.get(key) for key in ("max_steps", "max_epochs")}
    started_from = {"init_from": str(cfg.init_from)} if cfg.get("init_from") else {}  # fine-tuned runs only
    return {**flat(groups, ""), **kinds, **budget, "seed": cfg.seed, "fold": cfg.fold, **started_from}


def log_hparams(loggers: list, cfg: DictConfig, record: dict) -> None:
    """One HPARAMS record per run: the experiment's settings with the run's best and test metrics."""
    scores = {f"hparams/{k.replace('/', '_')}": v for k, v in {**record["best"], **record["test"]}.items()}
    for logger in loggers:
        logger.log_hyperparams(experiment_settings(cfg), metrics=scores)
        if getattr(logger, "NAME_HPARAMS_FILE", None):  # TensorBoard's: written (empty) when fit ended, and never again
            Path(logger.log_dir, logger.NAME_HPARAMS_FILE).unlink(missing_ok=True)
        logger.finalize("success")


def disk_full(output_dir: Path, err: OSError, write: bool, fold: int | str) -> DiskFull:
    """The one-line report of a full disk: which folder, what was kept; `metrics.json` records the
    failure where it can still be written."""
    checkpoints = sorted(p.name for p in (output_dir / "checkpoints").glob("*.ckpt"))
    kept = f"kept {', '.join(checkpoints)} in {output_dir / 'checkpoints'}" if checkpoints else "no checkpoint was kept"
    failed = DiskFull(f"the disk is full: {getattr(err, 'filename', None) or output_dir} could not be written "
                      f"({err.strerror or err}); {kept}; free space in {output_dir.parent} and resume with ckpt_path=last")
    if write:
        try:
            write_record(output_dir, "failed", fold=fold, **failure_fields(failed))
        except OSError:
            pass  # not even metrics.json fits
    return failed


def run(cfg: DictConfig, multirun: bool) -> dict:
    """Hold the run folder (`hydra.run.dir`, or `hydra.sweep.dir` in a multirun), then train
    `fold`, or every fold with `fold=all`: the record."""
    # One holder: DDP's other processes (launched with this command line) write in the same folder.
    holding = hold_run_folder(cfg.paths.output_dir, "hydra.sweep.dir" if multirun else "hydra.run.dir")
    with holding if rank_zero_only.rank == 0 else contextlib.nullcontext():
        if cfg.get("print_config"):
            log.info("Composed config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
        return cross_validate(cfg) if cfg.fold == "all" else train(cfg)
