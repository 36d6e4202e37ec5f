"""Interruption and resume through the real entry point: a run stopped by a signal anywhere in an
epoch (from outside, or sent by the run itself at a chosen batch) resumes with the printed command
to the uninterrupted run's metrics."""
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from genre_vit.summarize import summarize
from tests.conftest import SHORT_EPOCHS, SLOW_EPOCHS, metrics_of, start_training

pytestmark = pytest.mark.slow  # real processes and signals: tens of seconds each


def assert_ends_like(run_dir, uninterrupted):
    final = metrics_of(run_dir)
    assert final["status"] == "completed" and final["epochs"] == uninterrupted["epochs"]
    assert final["best"] == uninterrupted["best"] and final["best_epoch"] == uninterrupted["best_epoch"]
    for key in ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/track_acc"):
        assert final["final"][key] == pytest.approx(uninterrupted["final"][key], abs=1e-6), key


def train_whole(tmp_path_factory, shared_cache, epochs) -> dict:
    out = tmp_path_factory.mktemp("whole")
    process = start_training(out, shared_cache, out / "run", epochs=epochs)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    # Nothing printed that is not about the run (a logging service's tip, a third-party deprecation).
    assert "Tip:" not in stderr and "deprecated" not in stderr, stderr[-3000:]
    return metrics_of(out / "run")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, shared_cache):
    return train_whole(tmp_path_factory, shared_cache, SLOW_EPOCHS)


@pytest.fixture(scope="module")
def uninterrupted_short(tmp_path_factory, shared_cache):
    return train_whole(tmp_path_factory, shared_cache, SHORT_EPOCHS)


def test_a_run_killed_from_outside_resumes_with_the_printed_command_to_the_uninterrupted_metrics(
        uninterrupted, tmp_path, shared_cache):
    run_dir = tmp_path / "run"
    process = start_training(tmp_path, shared_cache, run_dir)
    history = run_dir / "history.csv"
    deadline = time.time() + 300
    while not (history.exists() and len(history.read_text().splitlines()) >= 2):  # epoch 0 finished
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)

    assert process.returncode == 143, stderr[-3000:]
    stopped = metrics_of(run_dir)
    assert stopped["status"] == "interrupted" and stopped["signal"] == "SIGTERM"
    assert stopped["last_completed_epoch"] == stopped["stopped_at"]["epoch"] - 1 >= 0
    assert stopped["resume"] in stderr.splitlines()[-1]
    summarize(tmp_path)
    assert "(interrupted): SIGTERM in epoch " in (tmp_path / "summary.md").read_text()

    # The printed command, pasted as it is: it names the interpreter that ran, not a bare `python`.
    command = stopped["resume"]
    assert command.startswith(f"{shlex.quote(sys.executable)} -m genre_vit.train ")
    resumed = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "PATH": "/nonexistent"})  # no `python` on the PATH
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_ends_like(run_dir, uninterrupted)


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
    assert_ends_like(run_dir, uninterrupted_short)
