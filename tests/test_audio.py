"""Decoding: any soundfile format -> mono float32 at the configured rate and length."""
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from genre_vit.data.audio import AudioError, Decoding, load_audio, resample
from tests.conftest import write_tone

resampled = AF.resample  # torchaudio's own, whatever a test patches


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".au", "PCM_16"), (".flac", "PCM_24"), (".ogg", "VORBIS")])
def test_formats_decode_to_the_same_tone(tmp_path, suffix, subtype):
    written = write_tone(tmp_path / f"tone{suffix}", 1.0, subtype=subtype)
    wave = load_audio(tmp_path / f"tone{suffix}", 22050, None)
    assert wave.dtype == torch.float32 and wave.shape == (22050,)
    tolerance = 0.05 if subtype == "VORBIS" else 1e-3
    assert np.abs(wave.numpy()[1000:-1000] - written[1000:-1000]).max() < tolerance


def test_an_odd_sample_rate_is_resampled_without_a_filter_bank_of_gigabytes(tmp_path, monkeypatch):
    write_tone(tmp_path / "odd.wav", 2.0, rate=44101, freq=1000.0, subtype="FLOAT")
    rates = []
    monkeypatch.setattr(AF, "resample", lambda wave, orig, new, **kw: rates.append((orig, new)) or resampled(wave, orig, new, **kw))
    wave = load_audio(tmp_path / "odd.wav", 22050, None)  # exact: a 22050 x 44101 filter bank, 3.9 GB
    assert rates == [(2, 1)]  # 22050/44101 is 2e-5 from 1/2
    assert abs(wave.numel() - 2 * 22050) <= 2
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert np.argmax(spectrum) * 22050 / wave.numel() == pytest.approx(1000.0, abs=1.0)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22254, 32000, 44100, 48000, 96000])
def test_usual_sample_rates_are_resampled_exactly(rate):
    wave = torch.randn(rate // 10)
    assert torch.equal(resample(wave, rate, 22050), AF.resample(wave, rate, 22050))


def test_stereo_is_averaged_to_mono(tmp_path):
    data = write_tone(tmp_path / "stereo.wav", 0.5, channels=2, subtype="FLOAT")  # channels a/2 and a
    wave = load_audio(tmp_path / "stereo.wav", 22050, None)
    assert np.allclose(wave.numpy(), data.mean(axis=1), atol=1e-6)


def test_44k_is_resampled_keeping_pitch_and_duration(tmp_path):
    write_tone(tmp_path / "hi.wav", 2.0, rate=44100, freq=1000.0, subtype="FLOAT")
    wave = load_audio(tmp_path / "hi.wav", 22050, None)
    assert wave.shape == (44100,)
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert np.argmax(spectrum) * 22050 / len(wave) == pytest.approx(1000.0, abs=1.0)
    assert wave.abs().max() == pytest.approx(0.5, abs=0.01)


def test_clip_seconds_cuts_long_and_never_pads_short(tmp_path):
    write_tone(tmp_path / "two.wav", 2.0)
    assert load_audio(tmp_path / "two.wav", 22050, 1.0).shape == (22050,)
    assert load_audio(tmp_path / "two.wav", 22050, 3.0).shape == (44100,)


def test_audio_shorter_than_min_seconds_is_refused_with_its_length(tmp_path):
    write_tone(tmp_path / "two.wav", 2.0)
    with pytest.raises(AudioError, match=r"shorter than one segment \(2.00 s < 2.97 s\)"):
        Decoding(22050, 30.0, short_clips="skip", min_seconds=0.5).load(tmp_path / "two.wav", segment_seconds=2.97)


def test_a_clip_shorter_than_a_segment_is_repeated_to_fill_one(tmp_path):
    written = write_tone(tmp_path / "short.wav", 1.5)
    wave = Decoding(22050, 30.0, short_clips="repeat", min_seconds=0.5).load(tmp_path / "short.wav", segment_seconds=5.0)
    assert wave.shape == (5 * 22050,)
    assert np.allclose(wave.numpy()[len(written):2 * len(written)], written, atol=1e-4)  # the second repetition


def test_a_clip_too_short_to_repeat_is_refused(tmp_path):
    write_tone(tmp_path / "blip.wav", 0.2)
    with pytest.raises(AudioError, match=r"shorter than one segment \(0.20 s < 5.00 s\) and than 0.50 s, too short to repeat"):
        Decoding(22050, 30.0, short_clips="repeat", min_seconds=0.5).load(tmp_path / "blip.wav", segment_seconds=5.0)


@pytest.mark.parametrize("content,reason", [
    (b"", "unreadable audio"),
    (b"this is not audio at all" * 40, "unreadable audio"),
])
def test_unreadable_files_raise_with_a_reason(tmp_path, content, reason):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(AudioError, match=reason):
        load_audio(tmp_path / "bad.wav", 22050, 30)


def test_truncated_file_is_unreadable_or_short(tmp_path):
    write_tone(tmp_path / "full.wav", 1.0)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "full.wav").read_bytes()[:30])
    with pytest.raises(AudioError):
        load_audio(tmp_path / "cut.wav", 22050, 30)


def test_silent_and_nan_audio_are_refused(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(22050), 22050)
    sf.write(tmp_path / "nan.wav", np.full(22050, np.nan), 22050, subtype="FLOAT")
    with pytest.raises(AudioError, match="silent"):
        load_audio(tmp_path / "zero.wav", 22050, None)
    with pytest.raises(AudioError, match="non-finite"):
        load_audio(tmp_path / "nan.wav", 22050, None)
