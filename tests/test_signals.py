"""Interruption and resume through the real entry point: a run that sends itself a signal at a
chosen batch (mid-epoch, after the last batch, during validation) stops where its resume,
with `ckpt_path=last` (in this process: no signal comes), ends at the uninterrupted run's
metrics. (A run killed from outside, resumed by its printed command: test_kill_and_resume.py.)"""
import logging
import shlex

import pytest
import torch

from tests.conftest import (
    SHORT_EPOCHS,
    assert_ends_like,
    assert_only_about_the_run,
    metrics_of,
    start_training,
    train_in_process,
    train_whole,
)

pytestmark = pytest.mark.slow  # real processes and signals: tens of seconds each


@pytest.fixture(scope="module")
def uninterrupted_short(tmp_path_factory, shared_cache):
    return train_whole(tmp_path_factory, shared_cache, SHORT_EPOCHS)


# The interrupted epoch is never the last (of 3): only its own epoch means cover fewer batches.
@pytest.mark.parametrize("stage, epoch, batch, signum, stopped_at", [
    # mid-epoch: the signal comes after batch 10, which GracefulStop (the last callback) then checks
    ("train", 1, 10, "SIGINT", {"epoch": 1, "batch": 11}),
    # after the last batch: training stops when the epoch ends
    ("train", 1, -1, "SIGTERM", {"epoch": 2, "batch": 0}),
    ("validate", 0, 0, "SIGTERM", {"epoch": 1, "batch": 1}),    # during validation: after the next epoch's first batch
], ids=["mid-epoch", "last-batch", "validation"])
def test_a_signal_anywhere_in_an_epoch_stops_where_the_resume_is_exact(
        uninterrupted_short, tmp_path, shared_cache, stage, epoch, batch, signum, stopped_at):
    run_dir = tmp_path / "run"
    process = start_training(tmp_path, shared_cache, run_dir, "+callbacks.signal_at._target_=tests.signal_at.SignalAt",
                             f"+callbacks.signal_at.stage={stage}", f"+callbacks.signal_at.epoch={epoch}",
                             f"+callbacks.signal_at.batch={batch}", f"+callbacks.signal_at.signum={signum}",
                             epochs=SHORT_EPOCHS)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == (130 if signum == "SIGINT" else 143), stderr[-3000:]
    assert_only_about_the_run(stderr)
    stopped = metrics_of(run_dir)
    assert stopped["signal"] == signum and stopped["stopped_at"] == stopped_at
    assert stopped["last_completed_epoch"] == stopped_at["epoch"] - 1
    saved = torch.load(stopped["checkpoint"], weights_only=True)
    if stopped_at["batch"]:  # saved at the stop, in the middle of the epoch
        assert saved["GenreDataModule"] == {"epoch": stopped_at["epoch"], "batches_done": stopped_at["batch"]}
    else:  # the every-epoch checkpoint, written at the end of the epoch before
        assert saved["epoch"] == stopped_at["epoch"] - 1

    train_in_process(run_dir, *SHORT_EPOCHS, f"paths.cache_dir={shared_cache}", "ckpt_path=last")  # no signal: in here
    assert_ends_like(run_dir, uninterrupted_short)


def test_a_mid_epoch_stop_keeps_the_weight_average_exact(tmp_path_factory, tmp_path, shared_cache):
    """The stop's checkpoint holds the average updated with the batch it stopped after."""
    epochs = (*SHORT_EPOCHS, "averaging=ema")
    uninterrupted = train_whole(tmp_path_factory, shared_cache, epochs)
    run_dir = tmp_path / "run"
    process = start_training(tmp_path, shared_cache, run_dir, "+callbacks.signal_at._target_=tests.signal_at.SignalAt",
                             "+callbacks.signal_at.stage=train", "+callbacks.signal_at.epoch=1",
                             "+callbacks.signal_at.batch=10", "+callbacks.signal_at.signum=SIGINT", epochs=epochs)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr[-3000:]
    saved = torch.load(metrics_of(run_dir)["checkpoint"], weights_only=True)
    averaging = next(v for k, v in saved["callbacks"].items() if "Averaging" in k)
    assert averaging["latest_update_step"] == saved["global_step"]
    train_in_process(run_dir, *epochs, f"paths.cache_dir={shared_cache}", "ckpt_path=last")
    assert_ends_like(run_dir, uninterrupted)


def test_an_interrupted_fold_all_run_resumes_in_its_job_folder_and_keeps_the_folds_it_finished(tmp_path, shared_cache,
                                                                                               caplog):
    run_dir, folds = tmp_path / "run", (*SHORT_EPOCHS, "fold=all", "data.num_folds=2")
    process = start_training(tmp_path, shared_cache, run_dir, "+callbacks.signal_at._target_=tests.signal_at.SignalAt",
                             "+callbacks.signal_at.stage=train", "+callbacks.signal_at.epoch=1",
                             "+callbacks.signal_at.batch=10", "+callbacks.signal_at.signum=SIGINT", epochs=folds)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr[-3000:]
    words = shlex.split(metrics_of(run_dir / "fold_0")["resume"])
    assert f"hydra.run.dir='{run_dir}'" in words  # the job's folder, not the fold's
    overrides = [w for w in words[3:] if not w.startswith(("+callbacks.signal_at", "paths.", "hydra.run.dir="))]

    with caplog.at_level(logging.INFO):
        train_in_process(run_dir, *overrides, f"paths.cache_dir={shared_cache}")  # the resume: no signal, in here
    restored = f"Restored all states from the checkpoint at {run_dir / 'fold_0' / 'checkpoints' / 'last.ckpt'}"
    assert any(restored in record.getMessage() for record in caplog.records)
    summary = (run_dir / "cross_validation.json").read_text()
    records = [(run_dir / f"fold_{k}" / "metrics.json").read_text() for k in range(2)]
    assert not (run_dir / "fold_0" / "fold_0").exists()

    train_in_process(run_dir, *overrides, f"paths.cache_dir={shared_cache}")  # every fold had finished
    assert (run_dir / "cross_validation.json").read_text() == summary
    assert [(run_dir / f"fold_{k}" / "metrics.json").read_text() for k in range(2)] == records
