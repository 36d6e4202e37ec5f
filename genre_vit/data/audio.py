"""Decode one audio file to a mono waveform at a fixed rate and length (soundfile + torchaudio)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

MAX_PEAK = 1e4  # 80 dB above full scale: float audio this loud is broken, and its power overflows
MAX_RESAMPLE_KERNEL = 20_000_000  # values in torchaudio's resampling filter bank (80 MB in float32)


class AudioError(Exception):
    """A file that cannot be used as a track; the message is the reason, for the skip list."""


class ClipTooShort(AudioError):
    """Less audio than asked for; `seconds` is how much there is."""

    def __init__(self, seconds: float):
        super().__init__(f"too short ({seconds:.2f} s)")
        self.seconds = seconds


def load_audio(path: str | Path, sample_rate: int, clip_seconds: float | None, min_seconds: float = 0.0) -> torch.Tensor:
    """Decode `path` -> (samples,) float32 mono at `sample_rate` Hz.

    Only the first `clip_seconds` are decoded (None: all of it); channels are averaged and the
    signal is resampled if needed. Shorter audio is not padded. Raises AudioError for
    unreadable, empty, silent or non-finite audio, and ClipTooShort for less than `min_seconds`
    of it (checked before resampling, whose cost grows with the file's rate: a 1 ms file that
    claims 2 GHz must not be resampled).
    """
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            frames = -1 if clip_seconds is None else int(np.ceil(clip_seconds * rate))
            data = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError, EOFError) as err:
        raise AudioError(f"unreadable audio ({str(err).strip() or type(err).__name__})") from None
    if data.size == 0:
        raise AudioError("no samples")
    if data.shape[0] < min_seconds * rate:
        raise ClipTooShort(data.shape[0] / rate)
    if not np.isfinite(data).all():
        raise AudioError("non-finite samples (NaN or inf)")
    wave = torch.from_numpy(data.mean(axis=1))
    peak = wave.abs().max().item()
    if not peak > 0:
        raise AudioError("silent (all samples are zero)")
    if peak > MAX_PEAK:
        raise AudioError(f"samples far beyond full scale (peak {peak:.1e}; float audio lies in [-1, 1])")
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    if clip_seconds is not None:
        wave = wave[: int(round(clip_seconds * sample_rate))]
    return wave.contiguous()


def resample(wave: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    """(samples,) at `rate` Hz -> (samples',) at `sample_rate` Hz, with torchaudio's windowed sinc.

    Its filter bank holds about (sample_rate / g) x (rate / g) values for g = gcd of the rates: at
    most 14 million for the usual rates (22254 -> 22050), but a billion for an odd one (44101 -> 22050). Such a ratio is
    replaced by the nearest one whose denominator is at most 1000 (22050/44101 -> 1/2: 2e-5 off, a pitch
    change of 0.04 cents and a length change of as much)."""
    ratio = Fraction(sample_rate, rate)
    if ratio.numerator * ratio.denominator > MAX_RESAMPLE_KERNEL:
        ratio = ratio.limit_denominator(1000)
    return AF.resample(wave, ratio.denominator, ratio.numerator)


SHORT_CLIP_POLICIES = ("repeat", "skip")


@dataclass(frozen=True)
class Decoding:
    """How every file becomes a waveform, in training and in predict alike.

    sample_rate (Hz) and clip_seconds (the first seconds decoded; None: all) as in `load_audio`.
    A clip shorter than one segment is, by `short_clips`: "repeat": repeated end to end until it
    fills one segment (a 1.5 s sound event becomes one 5.9 s segment of four repetitions), if it
    is at least `min_seconds` long; "skip": skipped. Skipped files are listed with the reason.
    """

    sample_rate: int
    clip_seconds: float | None
    short_clips: str
    min_seconds: float

    def __post_init__(self) -> None:
        if self.short_clips not in SHORT_CLIP_POLICIES:
            raise ValueError(f"short_clips {self.short_clips!r} is not one of {list(SHORT_CLIP_POLICIES)}")

    def usable_seconds(self, segment_seconds: float) -> float:
        """The shortest clip this policy uses."""
        return min(self.min_seconds, segment_seconds) if self.short_clips == "repeat" else segment_seconds

    def load(self, path: str | Path, segment_seconds: float) -> torch.Tensor:
        """(samples,) float32 waveform, at least one segment long. Raises AudioError for a file
        that cannot be used, with the reason."""
        try:
            wave = load_audio(path, self.sample_rate, self.clip_seconds, min_seconds=self.usable_seconds(segment_seconds))
        except ClipTooShort as err:
            why = "" if self.short_clips == "skip" else f" and than {self.min_seconds:.2f} s, too short to repeat"
            raise AudioError(f"shorter than one segment ({err.seconds:.2f} s < {segment_seconds:.2f} s){why}") from None
        segment_samples = math.ceil(segment_seconds * self.sample_rate)
        if wave.numel() >= segment_samples:
            return wave
        return wave.repeat(-(-segment_samples // wave.numel()))[:segment_samples]


def duration_seconds(path: str | Path) -> float | None:
    """The file's length from its header (no decoding), or None if the header is unreadable."""
    try:
        return sf.info(str(path)).duration
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError, EOFError):
        return None
