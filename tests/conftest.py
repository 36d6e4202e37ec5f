"""Shared helpers: compose the real config, train in-process, run the real entry points in this
process or in a process of their own."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torchaudio.datasets.gtzan import gtzan_genres

from genre_vit import CONFIG_DIR
from genre_vit.files import working_folder

# Under pytest-xdist (make test runs one worker per core), each worker and the runs it starts
# use their share of the cores, not all of them.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)


def compose_config(*overrides: str) -> DictConfig:
    """The config `python -m genre_vit.train OVERRIDES` would run with (hydra keys included)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def run_if(cuda: bool = False):
    """Skip a test unless this machine has what it needs (Lightning's RunIf, in one line)."""
    import torch

    return pytest.mark.skipif(cuda and not torch.cuda.is_available(), reason="needs a CUDA GPU")


def train_in_process(run_dir: Path, *overrides: str, edit=None) -> dict:
    """`python -m genre_vit.train OVERRIDES` with its output in `run_dir`, in this process (no
    interpreter start-up); `edit(cfg)` may change the composed config first. Returns the record
    (with `fold=all`, the cross-validation's)."""
    from genre_vit.training import cross_validate, train

    cfg = compose_config(*overrides, f"paths.output_root={run_dir.parent}")
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.name = "train"
    if edit is not None:
        edit(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a real run: the task function sees no hydra node
    return cross_validate(cfg) if cfg.fold == "all" else train(cfg)


def run_module(module: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` as a user would, returning its exit code and output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_entry_point(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` in this process: the function its console script calls, with the
    arguments, working folder and environment a shell gives it. Returns the exit code and what it
    printed, as `run_module` does, without an interpreter start-up (seconds of imports per call).
    `run_module` stays for what only a process of its own shows: signals, memory, imports, a crash."""
    script = next(ep for ep in entry_points(group="console_scripts") if ep.value.startswith(f"{module}:"))
    out, err, root = io.StringIO(), io.StringIO(), logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in ("", *logging.root.manager.loggerDict)}  # "": the root
    with (working_folder(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err),
          mock.patch.object(sys, "argv", [module, *args]), mock.patch.dict(os.environ, HYDRA_FULL_ERROR="0")):
        try:
            script.load()()
            code = 0
        except SystemExit as stop:  # as the interpreter reads it: None is 0, a message is printed and 1
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
        finally:  # the run's logging set-up (its log file, a console on these buffers, levels) ends with it
            for handler in set(root.handlers) - set(handlers):
                handler.close()
            root.handlers[:] = handlers
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def write_tone(path: Path, seconds: float, rate: int = 22050, channels: int = 1, freq: float = 440.0,
               subtype: str | None = None) -> np.ndarray:
    """Write a sine tone (optionally multi-channel) and return the samples written."""
    t = np.arange(int(seconds * rate)) / rate
    data = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.stack([data * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return data


SMALL_FEATURES = ["features=stft", "features.segment_frames=256", "features.segment_step=128", "features.image_size=null",
                  "data.clip_seconds=null", "data.feature_workers=1"]


def gtzan_tree(root, layout="genres", ext=".au", per_genre=3, seconds=4.0):
    """A GTZAN-shaped tree of distinct tones: `<root>/<layout>/<genre>/<genre>.000NN<ext>`."""
    folder = root / layout if layout else root
    for g, genre in enumerate(gtzan_genres):
        for i in range(per_genre):
            write_tone(folder / genre / f"{genre}.{i:05d}{ext}", seconds, freq=200.0 + 40 * g + 5 * i)
    return folder


ESC50_CLASSES = {0: ("dog", True), 10: ("rain", True), 38: ("clock_tick", False)}  # target: (category, in ESC-10)


def esc50_tree(root: Path, takes: str = "AB", seconds: float = 5.0) -> Path:
    """An ESC-50-shaped release: `<root>/audio/<fold>-<recording>-<take>-<target>.wav` for one
    recording per class and fold (1-5), cut into `takes`, listed in `<root>/meta/esc50.csv`."""
    rows = []
    for fold in range(1, 6):
        for target, (category, esc10) in ESC50_CLASSES.items():
            for take in takes:
                name = f"{fold}-{1000 * fold + target}-{take}-{target}.wav"
                write_tone(root / "audio" / name, seconds, freq=200.0 + 10 * target + 3 * fold + (take == "B"))
                rows.append([name, fold, target, category, esc10, f"{1000 * fold + target}.ogg", take])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"], *rows])
    return root


def make_datamodule(tmp_path, *overrides):
    cfg = compose_config(*SMALL_FEATURES, f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
                         *overrides)
    return instantiate(cfg.data, features=instantiate(cfg.features))


class CodeRunningPayload:
    """Unpickling this runs code: it creates a marker file. A safe loader must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache folder for the whole session, so the tiny synthetic set is generated once."""
    return tmp_path_factory.mktemp("cache")


TINY = ("debug=fast", "fold=1")  # the tiny run every end-to-end test compares against


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shared_cache) -> Path:
    """One `python -m genre_vit.train debug=fast fold=1` run (in this process)."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    train_in_process(run_dir, *TINY, f"paths.cache_dir={shared_cache}")
    return run_dir


# 100 small random-crop batches per epoch (a few seconds): a signal sent just after epoch 0 lands in the middle of epoch 1.
SLOW_EPOCHS = (*TINY, "trainer.max_epochs=3", "data.batch_size=4", "data.batches_per_epoch=100")
# 18 batches per epoch: enough for signals that the runs send themselves at a chosen batch.
SHORT_EPOCHS = (*TINY, "trainer.max_epochs=3", "data.batch_size=4", "data.batches_per_epoch=18")
REPOSITORY = Path(__file__).resolve().parents[1]  # so that a run can load tests.signal_at


def start_training(tmp_path, shared_cache, run_dir, *overrides, stdout=subprocess.PIPE,
                   epochs=SLOW_EPOCHS) -> subprocess.Popen:
    """Start `python -m genre_vit.train EPOCHS OVERRIDES` in its own process, writing to `run_dir`."""
    args = [sys.executable, "-m", "genre_vit.train", *epochs, f"paths.output_root={tmp_path}",
            f"paths.cache_dir={shared_cache}", f"hydra.run.dir={run_dir}", *overrides]
    # The repository first, then whatever the caller's PYTHONPATH provides (packages installed there).
    pythonpath = os.pathsep.join(filter(None, (str(REPOSITORY), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdout=stdout, stderr=subprocess.STDOUT if stdout !=
                            subprocess.PIPE else subprocess.PIPE, text=True)


def metrics_of(run_dir: Path) -> dict:
    """A run's metrics.json."""
    return json.loads((run_dir / "metrics.json").read_text())


def assert_ends_like(run_dir: Path, uninterrupted: dict) -> None:
    """The resumed run in `run_dir` ended exactly as the `uninterrupted` run's record says."""
    final = metrics_of(run_dir)
    assert final["status"] == "completed" and final["epochs"] == uninterrupted["epochs"]
    assert final["best"] == uninterrupted["best"] and final["best_epoch"] == uninterrupted["best_epoch"]
    for key in ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/track_acc"):
        assert final["final"][key] == pytest.approx(uninterrupted["final"][key], abs=1e-6), key


def train_whole(tmp_path_factory, shared_cache: Path, epochs: tuple[str, ...]) -> dict:
    """One uninterrupted `python -m genre_vit.train EPOCHS` run (in this process): its record."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    train_in_process(run_dir, *epochs, f"paths.cache_dir={shared_cache}")
    return metrics_of(run_dir)


def assert_only_about_the_run(stderr: str) -> None:
    """Nothing printed that is not about the run (a logging service's tip, a third-party deprecation),
    and Lightning's messages once, bare (its own console, imported late, would add `INFO: ` copies)."""
    assert "Tip:" not in stderr and "deprecated" not in stderr, stderr[-3000:]
    assert not any(line.startswith("INFO: ") for line in stderr.splitlines()), stderr[-3000:]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with slow tests first: pytest-xdist (`make test`) deals the tests out in this
    order, so the long ones start early and the short ones fill the workers' ends."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: each file keeps its own order
