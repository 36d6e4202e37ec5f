"""The real entry point, end to end on a tiny synthetic set, and its refusals of bad settings."""
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genre_vit.config import ConfigError
from genre_vit.train import train
from tests.conftest import compose_config, run_module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shared_cache) -> Path:
    """One `python -m genre_vit.train debug=fast` run from an unrelated working directory."""
    out = tmp_path_factory.mktemp("run")
    result = run_module("genre_vit.train", "debug=fast", "fold=1", f"paths.output_root={out}",
                        f"paths.cache_dir={shared_cache}", f"hydra.run.dir={out}/run", cwd=out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "run"


def test_run_writes_metrics_json(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["fold"] == 1 and metrics["epochs"] == 2
    assert metrics["train_tracks"] == 24 and metrics["val_tracks"] == 6  # 30 tracks, 5 folds
    assert metrics["train_segments"] == 24 * 3 and metrics["val_segments"] == 6 * 3
    assert 0.0 <= metrics["best"]["val/track_acc"] <= 1.0 and metrics["best_epoch"] in (0, 1)
    assert metrics["final"]["val/track_acc_best"] >= metrics["final"]["val/track_acc"]
    assert metrics["num_params"] > 0 and metrics["wall_time_s"] > 0


def test_run_saves_best_and_last_checkpoints_and_config(tiny_run):
    names = {p.name for p in (tiny_run / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in names and any(n.startswith("epoch_") for n in names)
    assert (tiny_run / "config.yaml").read_text().count("patch_size") == 1
    assert (tiny_run / "skipped.csv").read_text().splitlines() == ["path,reason"]


def test_tensorboard_events_hold_track_accuracy_per_epoch(tiny_run):
    acc = EventAccumulator(str(tiny_run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"val/track_acc", "val/acc", "val/loss", "train/loss_epoch", "train/acc", "val/track_acc_best"} <= set(tags)
    assert len(acc.Scalars("val/track_acc")) == 2


@pytest.mark.parametrize("override,message", [
    ("model.patch_size=[16,5]", r"model.patch_size=\[16, 5\] does not tile the input image \[128, 32\]"),
    ("model.num_heads=3", r"model.embed_dim=128 is not divisible by model.num_heads=3: allowed num_heads .*\[1, 2, 4, 8, 16, 32, 64, 128\]"),
    ("fold=5", r"fold=5 is invalid: allowed 0..4"),
    ("fold=-1", r"fold=-1 is invalid: allowed 0..4"),
    ("data.num_folds=1", r"data.num_folds=1 is invalid: allowed integers >= 2"),
])
def test_invalid_setting_stops_before_any_data_work(tmp_path, override, message):
    cfg = compose_config(override, f"paths.output_root={tmp_path}")
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "cache").exists()


def test_invalid_setting_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    result = run_module("genre_vit.train", "model.patch_size=[16,5]", f"paths.output_root={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "model.patch_size=[16, 5]" in errors[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "cache").exists()
