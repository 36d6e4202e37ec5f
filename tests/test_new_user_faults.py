"""What a new user hit with real folders, small data and full disks: nothing mixed, nothing stale,
nothing silently dropped. (Stale cache entries: test_cache.py; a one-track validation set:
test_metrics.py; missing tracks of the filtered split: test_sources.py; the resume command and
third-party noise: test_kill_and_resume.py.)"""
import csv
import errno
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from omegaconf import open_dict

from genre_vit.callbacks.atomic_checkpoints import AtomicCheckpointIO
from genre_vit.callbacks.stop import resume_command
from genre_vit.checkpoints import CheckpointError, load_checkpoint
from genre_vit.cli import PATH_KEYS, override_value, quote_paths
from genre_vit.config import ConfigError, validate
from genre_vit.data.cache import FeatureCache, SpectrogramTable
from genre_vit.data.sources import DataError, FolderSource
from genre_vit.data.synthetic import SyntheticGenres
from genre_vit.files import MAX_NAME, DiskFull, hold_run_folder, job_folder
from genre_vit.predict import audio_files
from genre_vit.training import experiment_settings
from tests.conftest import TINY, compose_config, make_datamodule, run_entry_point, train_in_process, write_tone


def tone_folder(root: Path, layout: dict[str, int], seconds: float = 4.0) -> Path:
    """`root/<class>/tone<i>.wav`, `layout[class]` tones each."""
    for c, (name, count) in enumerate(layout.items()):
        for i in range(count):
            write_tone(root / name / f"tone{i}.wav", seconds, freq=200.0 + 100 * c + 7 * i)
    return root


def last_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr.strip().splitlines()[-1]


# 1. Every run gets its own folder; a folder a live run holds is refused.

def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = compose_config("optim.lr=1e-3"), compose_config("optim.lr=1e-5")
    assert first.hydra.run.dir != second.hydra.run.dir and first.hydra.sweep.dir != second.hydra.sweep.dir
    assert Path(first.hydra.run.dir).is_dir() and Path(second.hydra.run.dir).is_dir()
    assert first.hydra.run.dir == first.hydra.run.dir  # one folder per run, however often it is read


def test_concurrent_processes_never_share_a_run_folder(tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    runs = [subprocess.Popen([sys.executable, "-m", "genre_vit.train", f"optim.lr={lr}", "trainer.max_steps=0"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for lr in ("1e-3", "1e-5")]
    assert [run.wait(timeout=120) for run in runs] == [2, 2]  # max_steps=0 is refused once the folder is made
    folders = sorted((tmp_path / "outputs" / "runs").iterdir())
    overrides = [(folder / ".hydra" / "overrides.yaml").read_text() for folder in folders]
    assert len(folders) == 2 and sorted("1e-3" in o for o in overrides) == [False, True]


def test_a_run_refuses_a_folder_that_a_live_run_holds(tmp_path):
    with hold_run_folder(tmp_path / "busy"):
        result = run_entry_point("genre_vit.train", *TINY, f"hydra.run.dir={tmp_path / 'busy'}", cwd=tmp_path)
    assert result.returncode == 2
    line = last_line(result)
    assert str(tmp_path / "busy") in line and f"pid {os.getpid()}" in line and "still running" in line


# 2. A data.root that the chosen data set does not read.

def test_a_data_root_with_the_synthetic_set_is_refused_and_nothing_is_written_there(tmp_path):
    music = tone_folder(tmp_path / "music", {"rock": 2, "jazz": 2})
    with pytest.raises(ConfigError, match=r"data.root=.*music is not read by data=synthetic.*data=folder"):
        train_in_process(tmp_path / "run", *TINY, f"data.root={music}")
    assert sorted(p.name for p in music.iterdir()) == ["jazz", "rock"]


# 4. Class = top-level folder, files at any depth, in training and predict alike.

def test_audio_in_subfolders_is_used_in_training_and_found_by_predict(tmp_path):
    root = tmp_path / "music"
    write_tone(root / "rock" / "live" / "2019" / "x.wav", 4.0)
    write_tone(root / "rock" / "y.wav", 4.0)
    write_tone(root / "jazz" / "only" / "in" / "subfolders.flac", 4.0)  # a class with audio only below
    (root / "jazz" / ".hidden").mkdir()
    (root / "jazz" / ".hidden" / "z.wav").write_bytes(b"editor backup")
    tracks = FolderSource(str(root)).tracks()
    assert [Path(p).relative_to(root).as_posix() for p in tracks.paths] == [
        "jazz/only/in/subfolders.flac", "rock/live/2019/x.wav", "rock/y.wav"]
    assert tracks.labels == [0, 1, 1] and tracks.classes == ["jazz", "rock"]
    assert sorted(str(path) for path, _ in audio_files(root)) == sorted(tracks.paths)


# 6. Class checks before any feature work.

def test_a_single_class_is_one_line_before_any_feature_work(tmp_path):
    root = tone_folder(tmp_path / "music", {"rock": 6})
    result = run_entry_point("genre_vit.train", *TINY, "data=folder", f"data.root={root}", f"paths.output_root={tmp_path}",
                             cwd=tmp_path)
    assert result.returncode == 2
    assert "holds 1 class ('rock'): a classifier needs at least 2 classes" in last_line(result)
    assert not (tmp_path / "cache" / "features").exists()


def test_a_class_with_fewer_tracks_than_folds_is_named_with_its_folds(tmp_path, caplog):
    root = tone_folder(tmp_path / "music", {"rock": 10, "solo": 1})
    folds = {}
    for fold in range(5):
        dm = make_datamodule(tmp_path, "data=folder", f"data.root={root}", f"fold={fold}")
        try:
            with caplog.at_level(logging.WARNING):
                dm.check_classes()
            folds[fold] = "ok"
        except DataError as err:
            folds[fold] = str(err)
    (refused,) = [f for f, outcome in folds.items() if outcome != "ok"]
    assert f"class 'solo' has 1 track(s) for data.num_folds=5: fold {refused} (this run) would train on none" in folds[refused]
    assert "add tracks to it or remove its folder" in folds[refused]
    assert any(f"folds [{refused}] train on none of them" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "cache" / "features").exists()


# 7. Full disks: atomic checkpoints, one line naming what was kept, failed in metrics.json.

def no_space(path):
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_a_checkpoint_write_that_fails_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "state_dict": {"weights": torch.ones(1000)}}, path)
    good = path.read_bytes()

    class HalfWritten:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(data)[: len(data) // 2])
            raise no_space(path)

    real_fdopen = os.fdopen
    monkeypatch.setattr("genre_vit.files.os.fdopen", lambda fd, mode: HalfWritten(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 2, "state_dict": {"weights": torch.zeros(1000)}}, path)
    assert path.read_bytes() == good and load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_full_disk_during_training_names_the_folder_and_what_was_kept(tmp_path, monkeypatch, shared_cache):
    real_save, saves = AtomicCheckpointIO.save_checkpoint, []

    def fill_up_after_epoch_0(self, checkpoint, path, storage_options=None):
        saves.append(checkpoint["epoch"])
        if checkpoint["epoch"] > 0:
            raise no_space(path)
        real_save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", fill_up_after_epoch_0)
    run = tmp_path / "run"
    with pytest.raises(DiskFull) as failed:
        train_in_process(run, *TINY, f"paths.cache_dir={shared_cache}")
    message = str(failed.value)
    assert "\n" not in message and message.startswith("the disk is full: ") and str(run / "checkpoints") in message
    kept = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert kept and all(name in message for name in kept)
    assert all(load_checkpoint(run / "checkpoints" / name)["epoch"] == 0 for name in kept)
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and "the disk is full" in record["error"] and record["fold"] == 1  # for the summary


def test_a_synthetic_set_that_cannot_be_written_is_one_line_naming_its_folder(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise sf.LibsndfileError(2, "Error writing: ")  # what libsndfile says on a full disk: "System error."

    monkeypatch.setattr("genre_vit.data.synthetic.sf.write", disk_full)
    source = SyntheticGenres(str(tmp_path), tracks_per_genre=1, seed=0, sample_rate=8000, clip_seconds=1, workers=1)
    with pytest.raises(DataError, match=r"cannot write the synthetic data set to .*synthetic-.*System error.*disk full"):
        source.ensure()
    assert [p.name for p in tmp_path.iterdir()] == [source.folder().name + ".lock"]


def test_an_unreadable_last_checkpoint_names_the_other_checkpoints(tiny_run, tmp_path, shared_cache):
    shutil.copytree(tiny_run / "checkpoints", tmp_path / "checkpoints")
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    (best,) = [p.name for p in (tmp_path / "checkpoints").glob("epoch_*.ckpt")]
    with pytest.raises(CheckpointError, match=rf"not a readable checkpoint.*other checkpoints in .*: {best}"):
        train_in_process(tmp_path / "run", *TINY, f"paths.cache_dir={shared_cache}", f"ckpt_path={last}")


# 8. A segment longer than the decoded clip is a config error.

def test_a_segment_longer_than_the_clip_is_refused_by_the_config_check(tmp_path):
    root = tone_folder(tmp_path / "music", {"rock": 2, "jazz": 2})
    with pytest.raises(ConfigError, match=r"features.segment_frames=512 \(5.94 s\) is longer than data.clip_seconds=5"):
        train_in_process(tmp_path / "run", "data=folder", f"data.root={root}", "features=stft", "data.clip_seconds=5",
                         f"paths.cache_dir={tmp_path / 'cache'}")
    assert not (tmp_path / "cache").exists()


# 9-10. Paths work as pasted; predict on a folder without audio is an error.

@pytest.mark.parametrize("value", [None, True, 3, -1e-05, "hann", "in=put, folder/it's", "C:\\dir\\", "null", "1",
                                   "café", [16, 4], ["a,b", None], [], [{"a": 1, "b": [2.5]}]])
def test_a_printed_override_value_reads_back_as_the_same_value(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override(f"key={override_value(value)}").value() == value


def test_a_sweep_jobs_checkpoint_path_works_as_pasted(tiny_run, tmp_path):
    job = tmp_path / "multiruns" / "0_data=synthetic,fold=1" / "checkpoints"
    job.mkdir(parents=True)
    shutil.copy(tiny_run / "checkpoints" / "last.ckpt", job / "last.ckpt")
    song = tmp_path / "in=put, folder" / "song.wav"
    write_tone(song, 10.0)
    assert quote_paths([f"ckpt_path={job}/last.ckpt", "ckpt_path=a.ckpt,b.ckpt", "optim.lr=1e-3"]) == [
        f"ckpt_path='{job}/last.ckpt'", "ckpt_path=a.ckpt,b.ckpt", "optim.lr=1e-3"]  # a sweep stays one
    write_tone(tmp_path / "Crosby, Stills.wav", 1.0)
    assert quote_paths([f"input={tmp_path}/Crosby, Stills.wav"]) == [f"input='{tmp_path}/Crosby, Stills.wav'"]  # a file
    assert quote_paths(["data.root=2024", "ckpt_path=null", "init_from=null"]) == [  # a folder named by digits
        "data.root='2024'", "ckpt_path=null", "init_from=null"]
    result = run_entry_point("genre_vit.predict", f"ckpt={job}/last.ckpt", f"input={song.parent}",
                             f"output={tmp_path / 'p.csv'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "p.csv") as f:
        (row,) = csv.DictReader(f)
    assert row["path"] == str(song) and row["genre"]


def test_a_sweep_over_many_keys_gets_job_folders_that_can_be_created(tmp_path):
    overrides = ",".join(f"features.key_{i}=[{i},{i}]" for i in range(30))  # Hydra's override_dirname
    cfg = compose_config()
    with open_dict(cfg):
        cfg.hydra.job.num, cfg.hydra.job.override_dirname = 3, overrides
    name = cfg.hydra.sweep.subdir
    assert len(name) <= MAX_NAME and name.startswith("3_features.key_0=[0,0],") and name != job_folder(3, overrides + "x")
    (tmp_path / name).mkdir()  # was: OSError File name too long, and the sweep stopped
    assert job_folder(0, "fold=1,optim.lr=1e-3") == "0_fold=1,optim.lr=1e-3" and job_folder(2, "") == "2"


def test_a_sweep_names_no_job_folder_after_a_path():
    """A path in a folder name would nest folders (`init_from=/runs/x/last.ckpt`): every training
    key whose value is a path is left out of the job folders' names."""
    excluded = set(compose_config().hydra.job.config.override_dirname.exclude_keys)
    training_path_keys = {key for key in PATH_KEYS if key not in ("ckpt", "input", "output")}  # those three: predict's
    assert training_path_keys <= excluded and {"paths.output_root", "paths.cache_dir"} <= excluded


def test_predict_on_a_folder_without_audio_is_an_error(tiny_run, tmp_path):
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "lyrics.txt").write_text("la la")
    result = run_entry_point("genre_vit.predict", f"ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}",
                             f"input={tmp_path / 'empty'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "holds no audio files" in last_line(result) and "lyrics.txt: not an audio file" in last_line(result)


# 11. The printed resume command runs with this interpreter.

def test_the_resume_command_names_the_interpreter_that_ran(tmp_path):
    assert resume_command(tmp_path / "run").startswith(f"{shlex.quote(sys.executable)} -m genre_vit.train ")


# 12. Formats the decoder reads, and those it cannot.

def test_opus_is_decoded_and_m4a_is_named_as_unsupported_with_the_fix(tmp_path):
    t = np.arange(48000 * 4) / 48000
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "voice.opus", 0.3 * np.sin(2 * np.pi * 300 * t), 48000, format="OGG", subtype="OPUS")
    write_tone(tmp_path / "b" / "x.wav", 4.0)
    (tmp_path / "b" / "phone.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    tracks = FolderSource(str(tmp_path)).tracks()
    assert [Path(p).name for p in tracks.paths] == ["voice.opus", "x.wav"]
    ((path, reason),) = tracks.ignored
    assert path.endswith("phone.m4a") and "not supported by the decoder" in reason and "ffmpeg -i phone.m4a" in reason
    dm = make_datamodule(tmp_path, "data=folder", f"data.root={tmp_path}", "data.num_folds=2")
    dm.prepare_data()
    assert dm.spectrograms.skipped == []  # the Opus file decodes


# 13-14. Settings nothing reads, and settings left unset.

def test_an_added_key_that_nothing_reads_is_refused_with_the_closest_key():
    cfg = compose_config("+optim.lrr=1e-3", "+trainer.limit_train_batches=0.5")
    with pytest.raises(ConfigError, match=r"\+optim.lrr=1e-3 adds a key that nothing reads: did you mean optim.lr\?"):
        validate(cfg, overrides=["+optim.lrr=1e-3"])
    validate(cfg, overrides=["+trainer.limit_train_batches=0.5", "++optim.lrr=1e-3"])  # Trainer takes it; ++ forces


def test_a_folder_data_set_without_a_root_is_one_line_naming_data_root(tmp_path):
    result = run_entry_point("genre_vit.train", "data=folder", f"paths.output_root={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert last_line(result).startswith("error: data.root is not set: data=folder, data=gtzan and data=esc50 read the audio")



def test_a_bad_setting_is_refused_before_lightning_is_imported(tmp_path):
    """Lightning's import alone takes seconds: a typo is answered without it."""
    child = f"""
import sys
sys.argv = ["train", "optim.lr=-1", "paths.output_root={tmp_path}"]
from genre_vit.train import cli
try:
    cli()
except SystemExit as stop:
    print("EXIT", stop.code, "LIGHTNING", "lightning" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=tmp_path)
    assert "EXIT 2 LIGHTNING False" in result.stdout, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "error: optim.lr=-1 is invalid: allowed numbers in [1e-12, inf)"

# 15. Files follow the umask, so a cache shared by a group is usable.

def test_cache_entries_and_the_synthetic_set_respect_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        table = SpectrogramTable(torch.zeros(4, 10), torch.tensor([0, 10]), torch.tensor([0]), [])
        entry = FeatureCache(tmp_path / "cache").store("key", [("a.wav", 1, 1)], table)
        folder = SyntheticGenres(str(tmp_path), tracks_per_genre=1, seed=0, sample_rate=8000, clip_seconds=1,
                                 workers=1).ensure()
    finally:
        os.umask(old)
    assert entry.stat().st_mode & 0o777 == 0o664
    assert folder.stat().st_mode & 0o777 == 0o775 and (folder / "rock").stat().st_mode & 0o777 == 0o775


# 17. TensorBoard's HPARAMS tab: the experiment's settings, not the plumbing.

def test_the_hparams_tab_lists_the_experiments_settings(tiny_run):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    sessions = []
    for events in (tiny_run / "tensorboard").rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    sessions.append(set(data.session_start_info.hparams))
    (names,) = sessions
    assert {"optim/lr", "optim/weight_decay", "model/channels", "features/n_mels", "data/batch_size", "augment/mixup_alpha",
            "seed", "fold"} <= names
    # what a sweep of the budget, the reference, the averaging or a baseline varies
    assert {"trainer/max_steps", "budget/steps_per_track", "reference/strength", "reference/kind", "averaging/kind",
            "baseline/kind"} <= names
    assert not [n for n in names if "_target_" in n or n.startswith(("callbacks", "paths", "logger"))]
    assert sorted(n for n in names if n.startswith("trainer")) == ["trainer/max_epochs", "trainer/max_steps"]  # the budget only
    # 53 with features.end_window; 64 with the budget, the reference's settings and the optional groups' kinds
    assert len(names) <= 64 and names == set(experiment_settings(compose_config(*TINY)))
    assert set(yaml.safe_load((tiny_run / "tensorboard" / "hparams.yaml").read_text())) == names  # the tab's, in a file


def test_the_readme_names_the_scalar_tags_that_tensorboard_shows(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tiny_run / "tensorboard"))
    acc.Reload()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    outputs = readme[readme.index("## Outputs"):readme.index("- `history.csv`")]
    named = set(re.findall(r"`((?:train|val)/[a-z_]+)`", outputs))
    assert "train/loss_step" in named and named <= set(acc.Tags()["scalars"])
