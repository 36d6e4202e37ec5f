"""Whatever audio users have: every file is used correctly or skipped with a reason, never a crash or a NaN."""
import csv
import json
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genre_vit.data.cache import _extract_one
from genre_vit.recipe import Recipe
from tests.conftest import compose_config, run_entry_point, write_tone

RATE, CLIP = 22050, 30.0
DEFAULT = Recipe.from_config(compose_config(), class_names=[])  # the default recipe
FEATURES, DECODING = DEFAULT.build_features(), DEFAULT.build_decoding()
SEGMENT_SECONDS = FEATURES.segment_seconds


def used_or_skipped(path) -> torch.Tensor | str:
    """The real per-file path of feature extraction; checks the contract on its result."""
    result = _extract_one((str(path), FEATURES, DECODING))
    if isinstance(result, str):
        assert result and "\n" not in result  # a one-line reason
    else:
        assert result.ndim == 2 and result.shape[0] == FEATURES.num_bins and result.shape[1] >= FEATURES.segment_frames
        assert torch.isfinite(result).all()
    return result


def wav_bytes(format_code: int, channels: int, rate: int, bits: int, payload: bytes) -> bytes:
    """A well-formed RIFF/WAVE header (any format fields) around arbitrary sample bytes."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_code, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(payload)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(content=st.binary(max_size=4096), extension=st.sampled_from([".wav", ".au", ".flac", ".ogg", ".mp3"]))
def test_arbitrary_bytes_under_an_audio_extension_are_skipped_or_used(tmp_path, content, extension):
    path = tmp_path / f"fuzz{extension}"
    path.write_bytes(content)
    used_or_skipped(path)


@FUZZ
@given(format_code=st.sampled_from([1, 3, 0xFFFE, 2, 0]), channels=st.integers(1, 8),
       rate=st.sampled_from([1, 8000, 22050, 96000, 2**31 - 1]), bits=st.sampled_from([8, 16, 24, 32, 64]),
       payload=st.binary(min_size=0, max_size=200_000))
def test_valid_wav_headers_around_random_samples_are_skipped_or_used(tmp_path, format_code, channels, rate, bits, payload):
    path = tmp_path / "fuzz.wav"
    path.write_bytes(wav_bytes(format_code, channels, rate, bits, payload))
    used_or_skipped(path)


def noise(seconds: float, rate: int, channels: int = 1, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(0).uniform(-scale, scale, (int(seconds * rate), channels))


ODD_FILES = {  # name: (samples, rate, subtype, expected reason or None when it must be used)
    "one_sample.wav": (np.full((1, 1), 0.5), RATE, "PCM_16", "shorter than one segment"),
    "ten_minutes.wav": (noise(600, 8000, scale=0.3), 8000, "PCM_16", None),
    "eight_channels.wav": (noise(8, RATE, channels=8, scale=0.3), RATE, "PCM_16", None),
    "8khz.wav": (noise(8, 8000, scale=0.3), 8000, "PCM_16", None),
    "96khz.flac": (noise(8, 96000, scale=0.3), 96000, "PCM_24", None),
    "uint8.wav": (noise(8, RATE, scale=0.3), RATE, "PCM_U8", None),
    "int32.wav": (noise(8, RATE, scale=0.3), RATE, "PCM_32", None),
    "float64.wav": (noise(8, RATE, scale=0.3), RATE, "DOUBLE", None),
    "all_zeros.wav": (np.zeros((8 * RATE, 1)), RATE, "PCM_16", "silent"),
    "full_scale_noise.wav": (noise(8, RATE), RATE, "FLOAT", None),
    "float_peaks_at_four.wav": (noise(8, RATE, scale=4.0), RATE, "FLOAT", None),
    "float_far_beyond_full_scale.wav": (noise(8, RATE, scale=1e30), RATE, "FLOAT", "samples far beyond full scale"),
    "float_with_nan.wav": (np.where(np.arange(8 * RATE)[:, None] == 7, np.nan, noise(8, RATE, scale=0.3)), RATE, "FLOAT",
                           "non-finite samples"),
}


@pytest.mark.parametrize("name", ODD_FILES)
def test_valid_audio_of_odd_shapes_is_used_or_skipped_with_a_reason(tmp_path, name):
    data, rate, subtype, reason = ODD_FILES[name]
    sf.write(tmp_path / name, data, rate, subtype=subtype)
    result = used_or_skipped(tmp_path / name)
    if reason is None:
        assert isinstance(result, torch.Tensor), result
    else:
        assert isinstance(result, str) and result.startswith(reason)


def test_of_a_ten_minute_track_only_the_clip_is_decoded(tmp_path, monkeypatch):
    sf.write(tmp_path / "long.wav", noise(600, 8000, scale=0.3), 8000, subtype="PCM_16")
    sf.write(tmp_path / "clip.wav", noise(30, 8000, scale=0.3), 8000, subtype="PCM_16")
    frames_read = []
    read = sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, frames=-1, **kw: frames_read.append(frames) or read(self, frames, **kw))
    assert used_or_skipped(tmp_path / "long.wav").shape == used_or_skipped(tmp_path / "clip.wav").shape
    assert frames_read == [30 * 8000, 30 * 8000]


def test_a_run_on_a_folder_of_hostile_files_trains_on_the_good_ones_only(tmp_path):
    root = tmp_path / "music"
    for genre, base in (("drone", 110.0), ("chirp", 880.0)):
        for i in range(6):
            write_tone(root / genre / f"tone{i}.wav", 8.0, freq=base * (1 + i / 10))
    for name, (data, rate, subtype, _) in ODD_FILES.items():
        sf.write(root / "drone" / name, data, rate, subtype=subtype)
    (root / "chirp" / "random.mp3").write_bytes(np.random.default_rng(1).bytes(3000))
    (root / "chirp" / "empty.flac").write_bytes(b"")
    result = run_entry_point("genre_vit.train", "debug=fast", "data=folder", f"data.root={root}", "data.num_folds=3",
                             f"paths.output_root={tmp_path}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run" / "skipped.csv") as f:
        skipped = {row["path"].rsplit("/", 1)[1]: row["reason"] for row in csv.DictReader(f)}
    expected = {name for name, (*_, reason) in ODD_FILES.items() if reason} | {"random.mp3", "empty.flac"}
    assert set(skipped) == expected
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    used = 12 + sum(reason is None for *_, reason in ODD_FILES.values())
    assert metrics["train_tracks"] + metrics["val_tracks"] == used
    assert all(np.isfinite(v) for v in metrics["final"].values())
