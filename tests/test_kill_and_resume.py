"""A run killed from outside (SIGTERM) through the real entry point: it records where it stopped,
and the resume command it printed, pasted as it is, ends at the uninterrupted run's metrics."""
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from genre_vit.summarize import summarize
from tests.conftest import (
    SLOW_EPOCHS,
    assert_ends_like,
    assert_only_about_the_run,
    metrics_of,
    start_training,
    train_whole,
)

pytestmark = pytest.mark.slow  # real processes and signals: tens of seconds each


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, shared_cache):
    return train_whole(tmp_path_factory, shared_cache, SLOW_EPOCHS)


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
    assert_only_about_the_run(resumed.stderr)
    assert_ends_like(run_dir, uninterrupted)
