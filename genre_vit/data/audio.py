"""Decode one audio file to a mono waveform at a fixed rate and length (soundfile + torchaudio)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


class AudioError(Exception):
    """A file that cannot be used as a track; the message is the reason, for the skip list."""


def load_audio(path: str | Path, sample_rate: int, clip_seconds: float | None) -> torch.Tensor:
    """Decode `path` -> (samples,) float32 mono at `sample_rate` Hz.

    Channels are averaged; the signal is resampled if needed, then cut or zero-padded to
    `clip_seconds` (None keeps its full length). Raises AudioError for unreadable, empty,
    silent or non-finite audio.
    """
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as err:
        raise AudioError(f"unreadable audio ({str(err).strip() or type(err).__name__})") from None
    if data.size == 0:
        raise AudioError("no samples")
    if not np.isfinite(data).all():
        raise AudioError("non-finite samples (NaN or inf)")
    wave = torch.from_numpy(data.mean(axis=1))
    if not wave.abs().max() > 0:
        raise AudioError("silent (all samples are zero)")
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    if clip_seconds is not None:
        length = int(round(clip_seconds * sample_rate))
        wave = wave[:length] if wave.numel() >= length else torch.nn.functional.pad(wave, (0, length - wave.numel()))
    return wave.contiguous()
