"""Reliability through the real entry points: checkpoints as data, folders that cannot be written.
(Runs started together and a soak multirun: test_many_runs.py; signals and exact resume:
test_signals.py and test_kill_and_resume.py.)"""

import json
import shutil

import pytest
import torch

from genre_vit.checkpoints import CheckpointError
from genre_vit.training import averaged_with
from tests.conftest import (
    TINY,
    CodeRunningPayload,
    metrics_of,
    run_entry_point,
    train_in_process,
    write_tone,
)


def test_resume_refuses_a_checkpoint_of_other_features_or_fold(tiny_run, tmp_path, shared_cache):
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    result = run_entry_point("genre_vit.train", *TINY, "fold=2", "features.n_fft=512", f"ckpt_path={checkpoint}",
                             f"paths.output_root={tmp_path}", f"paths.cache_dir={shared_cache}",
                             f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(checkpoint) in error
    assert "features.n_fft: checkpoint 1024 != this run 512" in error and "split.fold: checkpoint 1 != this run 2" in error
    assert error.endswith("; the checkpoint's settings, as overrides: features.n_fft=1024 fold=1")
    assert not (tmp_path / "run" / "tensorboard").exists(), "refused before the trainer was built"


def test_resuming_a_finished_run_again_keeps_its_record(tiny_run, tmp_path, shared_cache):
    shutil.copytree(tiny_run, tmp_path / "run")
    record = (tmp_path / "run" / "metrics.json").read_text()
    train_in_process(tmp_path / "run", *TINY, "ckpt_path=last", f"paths.cache_dir={shared_cache}")
    assert (tmp_path / "run" / "metrics.json").read_text() == record


def test_a_run_stopped_in_its_final_scoring_resumes_to_its_final_weights_numbers(tiny_run, tmp_path, shared_cache):
    """Nothing is left to train: the resume scores the final weights and the best checkpoint again."""
    shutil.copytree(tiny_run, tmp_path / "run")
    finished = metrics_of(tiny_run)
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({**finished, "status": "interrupted"}))
    resumed = train_in_process(tmp_path / "run", *TINY, "ckpt_path=last", f"paths.cache_dir={shared_cache}")
    assert resumed["status"] == "completed" and resumed["best"] == pytest.approx(finished["best"], abs=1e-6)
    scored = ("val/", "train/loss_epoch", "train/acc")  # the last epoch's training numbers from history.csv
    assert {k: v for k, v in resumed["final"].items() if k.startswith(scored)} == pytest.approx(
        {k: v for k, v in finished["final"].items() if k.startswith(scored)}, abs=1e-6)


def test_resume_refuses_a_checkpoint_whose_held_out_tracks_moved_since_files_were_added(tmp_path, shared_cache):
    """One more file reshuffles the folds: the resumed run would validate on tracks it trained on."""
    for c, name in enumerate(["birds", "rain"]):
        for i in range(5):
            write_tone(tmp_path / "sounds" / name / f"{i}.wav", 8.0, freq=300.0 + 200 * c + 10 * i)
    run = (*TINY, "data=folder", f"data.root={tmp_path / 'sounds'}", f"paths.cache_dir={shared_cache}")
    train_in_process(tmp_path / "run", *run)
    write_tone(tmp_path / "sounds" / "birds" / "5.wav", 8.0, freq=350.0)
    with pytest.raises(CheckpointError, match=r"held out other tracks than this run's split, since files were added to "
                                              r"or removed from the data set \(val: .*\); resumed, it would validate"):
        train_in_process(tmp_path / "run", *run, "ckpt_path=last")


def test_resume_refuses_another_weight_averaging_than_the_checkpoint_trained_with(tiny_run, tmp_path, shared_cache):
    """An averaged checkpoint's state_dict is the average: without the callback, training would go on from it."""
    checkpoint = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)

    def averaged(callback: str, steps: int) -> dict:  # as Lightning's averaging callbacks save it
        return {**checkpoint, "callbacks": {**checkpoint["callbacks"], callback: {"latest_update_step": 8}},
                "current_model_state": checkpoint["state_dict"], "averaging_state": {"n_averaged": torch.tensor(steps)}}

    torch.save(averaged("EMAAveraging", 8), tmp_path / "ema.ckpt")
    run = (*TINY, f"paths.cache_dir={shared_cache}")
    with pytest.raises(CheckpointError, match=r"ema.ckpt holds the average of averaging=ema, and this run has averaging=none: "
                                              r"resumed, it would train on from the averaged weights; set averaging=ema$"):
        train_in_process(tmp_path / "run", *run, f"ckpt_path={tmp_path / 'ema.ckpt'}")
    torch.save(averaged("EMAWeightAveraging", 8), tmp_path / "old.ckpt")  # Lightning's class, before 993a7fc
    with pytest.raises(CheckpointError, match=r"holds the average of averaging=ema, and this run has averaging=swa"):
        train_in_process(tmp_path / "run", *run, "averaging=swa", f"ckpt_path={tmp_path / 'old.ckpt'}")
    # an SWA checkpoint saved before its average started holds raw weights, as one without averaging
    assert averaged_with(averaged("SWAAveraging", 0)) is None and averaged_with(checkpoint) is None


def test_resume_refuses_a_checkpoint_that_would_run_code(tiny_run, tmp_path, shared_cache):
    marker = tmp_path / "payload_ran"
    checkpoint = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["callbacks"]["evil"] = CodeRunningPayload(marker)
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    result = run_entry_point("genre_vit.train", *TINY, f"ckpt_path={tmp_path / 'evil.ckpt'}", f"paths.output_root={tmp_path}",
                             f"paths.cache_dir={shared_cache}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2 and not marker.exists()
    assert "refusing to load it" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("key", ["paths.output_root", "hydra.run.dir", "paths.cache_dir"])
def test_a_folder_that_cannot_be_written_is_one_line_naming_it(tmp_path, key):
    (tmp_path / "a_file").write_text("not a folder")
    blocked = tmp_path / "a_file" / "below"
    result = run_entry_point("genre_vit.train", *TINY, f"{key}={blocked}", *(() if key == "hydra.run.dir" else (
        f"hydra.run.dir={tmp_path / 'run'}",) if key == "paths.cache_dir" else ()), cwd=tmp_path)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(blocked) in error and "Traceback" not in result.stderr
