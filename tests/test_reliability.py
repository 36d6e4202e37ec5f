"""Reliability through the real entry points: interruption and resume, checkpoints as data."""
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from genre_vit.data.locks import build_lock
from genre_vit.summarize import summarize
from tests.conftest import TINY, CodeRunningPayload, compose_config, run_module, write_tone

pytestmark = pytest.mark.slow  # real processes, signals and multiruns: tens of seconds each

# 200 small random-crop batches per epoch: a signal sent just after epoch 0 lands in the middle of epoch 1.
SLOW_EPOCHS = (*TINY, "trainer.max_epochs=3", "data.batch_size=4", "data.batches_per_epoch=200")
# 18 batches per epoch: enough for signals that the runs send themselves at a chosen batch.
SHORT_EPOCHS = (*TINY, "trainer.max_epochs=3", "data.batch_size=4", "data.batches_per_epoch=18")
REPOSITORY = Path(__file__).resolve().parents[1]  # so that a run can load tests.signal_at


def start_training(tmp_path, shared_cache, run_dir, *overrides, stdout=subprocess.PIPE,
                   epochs=SLOW_EPOCHS) -> subprocess.Popen:
    args = [sys.executable, "-m", "genre_vit.train", *epochs, f"paths.output_root={tmp_path}",
            f"paths.cache_dir={shared_cache}", f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPOSITORY)}
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=stdout, stderr=subprocess.STDOUT if stdout !=
                            subprocess.PIPE else subprocess.PIPE, text=True)


def assert_ends_like(run_dir, uninterrupted):
    final = metrics_of(run_dir)
    assert final["status"] == "completed" and final["epochs"] == uninterrupted["epochs"]
    assert final["best"] == uninterrupted["best"] and final["best_epoch"] == uninterrupted["best_epoch"]
    for key in ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/track_acc"):
        assert final["final"][key] == pytest.approx(uninterrupted["final"][key], abs=1e-6), key


def metrics_of(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


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


def test_resume_refuses_a_checkpoint_of_other_features_or_fold(tiny_run, tmp_path, shared_cache):
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    result = run_module("genre_vit.train", *TINY, "fold=2", "features.n_fft=512", f"ckpt_path={checkpoint}",
                        f"paths.output_root={tmp_path}", f"paths.cache_dir={shared_cache}",
                        f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(checkpoint) in error
    assert "features.n_fft: checkpoint 1024 != this run 512" in error and "split.fold: checkpoint 1 != this run 2" in error
    assert not (tmp_path / "run" / "tensorboard").exists(), "refused before the trainer was built"


def test_resume_refuses_a_checkpoint_that_would_run_code(tiny_run, tmp_path, shared_cache):
    marker = tmp_path / "payload_ran"
    checkpoint = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["callbacks"]["evil"] = CodeRunningPayload(marker)
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    result = run_module("genre_vit.train", *TINY, f"ckpt_path={tmp_path / 'evil.ckpt'}", f"paths.output_root={tmp_path}",
                        f"paths.cache_dir={shared_cache}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2 and not marker.exists()
    assert "refusing to load it" in result.stderr.strip().splitlines()[-1]


def test_runs_started_together_build_the_data_and_the_cache_entry_once(tmp_path):
    cache, settings = tmp_path / "cache", ("trainer.max_epochs=1", "data.batch_size=16", "data.batches_per_epoch=4")
    synthetic_set = instantiate(compose_config(*SLOW_EPOCHS, *settings, f"paths.cache_dir={cache}").data.source).folder()
    logs = [tmp_path / f"run{i}.log" for i in range(3)]
    # Hold the synthetic set's lock until all three runs wait for it: they then race for real.
    with build_lock(synthetic_set.with_suffix(".lock"), "the test's hold"):
        runs = [start_training(tmp_path, cache, tmp_path / f"run{i}", *settings, stdout=log.open("w"))
                for i, log in enumerate(logs)]
        deadline = time.time() + 300
        while sum("Waiting for another process" in log.read_text() for log in logs) < 3:
            assert time.time() < deadline and all(run.poll() is None for run in runs), [log.read_text()[-2000:] for log in logs]
            time.sleep(0.1)
    assert [run.wait(timeout=600) for run in runs] == [0, 0, 0], [log.read_text()[-2000:] for log in logs]
    outputs = [log.read_text() for log in logs]
    assert sum("Generating the synthetic genre set" in out for out in outputs) == 1
    assert sum("Extracted features of" in out for out in outputs) == 1
    assert len(list((cache / "features").glob("*.pt"))) == 1 and len(list(cache.glob("synthetic-*/"))) == 1
    assert not list(cache.rglob(".*tmp*"))
    assert len({metrics_of(tmp_path / f"run{i}")["final"]["train/loss_epoch"] for i in range(3)}) == 1


@pytest.mark.parametrize("key", ["paths.output_root", "hydra.run.dir", "paths.cache_dir"])
def test_a_folder_that_cannot_be_written_is_one_line_naming_it(tmp_path, key):
    (tmp_path / "a_file").write_text("not a folder")
    blocked = tmp_path / "a_file" / "below"
    result = run_module("genre_vit.train", *TINY, f"{key}={blocked}", *(() if key == "hydra.run.dir" else (
        f"hydra.run.dir={tmp_path / 'run'}",) if key == "paths.cache_dir" else ()), cwd=tmp_path)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(blocked) in error and "Traceback" not in result.stderr


def test_soak_a_twelve_job_multirun_with_bad_files_summarises_every_job_and_leaks_nothing(tmp_path):
    root = tmp_path / "music"
    for genre, base in (("drone", 110.0), ("chirp", 880.0)):
        for i in range(6):
            write_tone(root / genre / f"tone{i}.wav", 8.0, freq=base * (1 + i / 10))
    (root / "drone" / "truncated.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVEfmt ")
    (root / "chirp" / "silent.wav").write_bytes((root / "chirp" / "tone0.wav").read_bytes()[:44] + bytes(8 * 22050 * 2))
    (root / "chirp" / "notes.txt").write_text("not audio")
    process = subprocess.Popen(
        [sys.executable, "-m", "genre_vit.train", "-m", "debug=fast", "data=folder", f"data.root={root}",
         "data.num_folds=3", "trainer.max_epochs=1", "fold=0,1,2", "seed=1,2", "model=vit", "model.embed_dim=16,32",
         f"paths.output_root={tmp_path}", f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:]

    with open(tmp_path / "sweep" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {row["status"] for row in rows} == {"completed"}
    assert not (tmp_path / "runs").exists()  # a multirun claims no single-run folder
    jobs = sorted((tmp_path / "sweep").glob("*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[0]))
    metrics = [json.loads(path.read_text()) for path in jobs]
    assert all(m["skipped_files"] == 3 for m in metrics)
    rss = [m["process_rss_mb"] for m in metrics]
    assert rss[-1] - rss[len(rss) // 2] < 40, f"memory grows job after job: {rss}"  # measured: +12 MB over 6 jobs
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert not leftovers, "worker processes outlived the multirun"
