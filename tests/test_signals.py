"""Interruption and resume through the real entry point: a run that sends itself a signal at a
chosen batch (mid-epoch, after the next-to-last batch, during validation) stops where its resume,
with `ckpt_path=last`, ends at the uninterrupted run's metrics. (A run killed from outside:
test_kill_and_resume.py.)"""
import pytest
import torch

from tests.conftest import (
    SHORT_EPOCHS,
    assert_ends_like,
    assert_only_about_the_run,
    metrics_of,
    start_training,
    train_whole,
)

pytestmark = pytest.mark.slow  # real processes and signals: tens of seconds each


@pytest.fixture(scope="module")
def uninterrupted_short(tmp_path_factory, shared_cache):
    return train_whole(tmp_path_factory, shared_cache, SHORT_EPOCHS)


# The interrupted epoch is never the last (of 3): only its own epoch means cover fewer batches.
@pytest.mark.parametrize("stage, epoch, batch, signum, stopped_at", [
    # mid-epoch: the signal comes after batch 10 was checked, so training stops after batch 11
    ("train", 1, 10, "SIGINT", {"epoch": 1, "batch": 12}),
    # after the next-to-last batch: read after the last one, so training stops when the epoch ends
    ("train", 1, -2, "SIGTERM", {"epoch": 2, "batch": 0}),
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
    stopped = metrics_of(run_dir)
    assert stopped["signal"] == signum and stopped["stopped_at"] == stopped_at
    assert stopped["last_completed_epoch"] == stopped_at["epoch"] - 1
    saved = torch.load(stopped["checkpoint"], weights_only=True)
    if stopped_at["batch"]:  # saved at the stop, in the middle of the epoch
        assert saved["GenreDataModule"] == {"epoch": stopped_at["epoch"], "batches_done": stopped_at["batch"]}
    else:  # the every-epoch checkpoint, written at the end of the epoch before
        assert saved["epoch"] == stopped_at["epoch"] - 1

    resumed = start_training(tmp_path, shared_cache, run_dir, "ckpt_path=last", epochs=SHORT_EPOCHS)
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert_only_about_the_run(stderr)
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
    resumed = start_training(tmp_path, shared_cache, run_dir, "ckpt_path=last", epochs=epochs)
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert_ends_like(run_dir, uninterrupted)
