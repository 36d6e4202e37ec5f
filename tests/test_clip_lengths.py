"""Any clip length works under the default recipe: short clips are repeated to one segment, and data
that still cannot be used is refused before feature work with the fix."""
import pytest

from genre_vit.data.sources import DataError
from tests.conftest import make_datamodule, train_in_process, write_tone


def clips(root, seconds: float, per_class: int = 5, rate: int = 44100):
    """Two classes of tones (low and high), `per_class` clips of `seconds` each."""
    for name, base in (("low", 150.0), ("high", 1500.0)):
        for i in range(per_class):
            write_tone(root / name / f"{name}{i}.wav", seconds, rate=rate, freq=base * (1 + i / 20))
    return root


@pytest.mark.parametrize("seconds", [2.5, 1.5])  # one default segment: 128 frames of 512 samples = 2.97 s
def test_the_default_recipe_trains_on_clips_shorter_than_a_segment(tmp_path, seconds):
    root = clips(tmp_path / "music", seconds)
    metrics = train_in_process(tmp_path / "run", "debug=fast", "data=folder", f"data.root={root}")
    assert metrics["status"] == "completed" and metrics["skipped_files"] == 0
    assert metrics["train_tracks"] + metrics["val_tracks"] == 10
    assert metrics["train_segments"] == metrics["train_tracks"]  # one (repeated) segment per clip


def test_clips_too_short_for_the_policy_are_refused_before_feature_work(tmp_path):
    root = clips(tmp_path / "music", 5.0)
    dm = make_datamodule(tmp_path, "data=folder", f"data.root={root}", "data.short_clips=skip",
                         "features.segment_frames=512", "features.image_size=[128,32]")
    with pytest.raises(DataError) as refused:
        dm.prepare_data()
    message = str(refused.value)
    assert message.startswith("10 of 10 files are too short to use (5.00-5.00 s; one segment is 5.94 s)")
    assert "data.short_clips=repeat" in message and "\n" not in message
    assert not (tmp_path / "cache" / "features").exists() or not list((tmp_path / "cache" / "features").glob("*.pt"))
