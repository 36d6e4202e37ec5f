"""Decode one audio file to a mono waveform at a fixed rate and length (soundfile + torchaudio)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

MAX_PEAK = 1e4  # 80 dB above full scale: float audio this loud is broken, and its power overflows


class AudioError(Exception):
    """A file that cannot be used as a track; the message is the reason, for the skip list."""


def load_audio(path: str | Path, sample_rate: int, clip_seconds: float | None, min_seconds: float = 0.0) -> torch.Tensor:
    """Decode `path` -> (samples,) float32 mono at `sample_rate` Hz.

    Only the first `clip_seconds` are decoded (None: all of it); channels are averaged and the
    signal is resampled if needed. Shorter audio is not padded. Raises AudioError for
    unreadable, empty, silent or non-finite audio, and for less than `min_seconds` of it.
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
        raise AudioError(f"shorter than one segment ({data.shape[0] / rate:.2f} s < {min_seconds:.2f} s)")
    if not np.isfinite(data).all():
        raise AudioError("non-finite samples (NaN or inf)")
    wave = torch.from_numpy(data.mean(axis=1))
    peak = wave.abs().max().item()
    if not peak > 0:
        raise AudioError("silent (all samples are zero)")
    if peak > MAX_PEAK:
        raise AudioError(f"samples far beyond full scale (peak {peak:.1e}; float audio lies in [-1, 1])")
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    if clip_seconds is not None:
        wave = wave[: int(round(clip_seconds * sample_rate))]
    return wave.contiguous()
