"""Many runs through the real entry point: three started together build the data and the cache
entry once; a twelve-job multirun over a folder with bad files summarises every job and leaks
neither memory nor processes."""
import csv
import json
import subprocess
import sys
import time

import pytest
from hydra.utils import instantiate

from genre_vit.data.locks import build_lock
from tests.conftest import SLOW_EPOCHS, compose_config, metrics_of, start_training, write_tone

pytestmark = pytest.mark.slow  # real processes and multiruns: tens of seconds each


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
    synthetic_sets = [p for p in cache.glob("synthetic-*") if p.is_dir()]  # a glob ending in / picks folders on 3.11+ only
    assert len(list((cache / "features").glob("*.pt"))) == 1 and len(synthetic_sets) == 1
    assert not list(cache.rglob(".*tmp*"))
    assert len({metrics_of(tmp_path / f"run{i}")["final"]["train/loss_epoch"] for i in range(3)}) == 1


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
    assert rss[-1] - rss[len(rss) // 2] < 20, f"memory grows job after job: {rss}"  # measured: -3 to +6 MB over 6 jobs
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert not leftovers, "worker processes outlived the multirun"
