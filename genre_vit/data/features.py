"""Waveform -> log-spectrogram -> fixed-length segments -> images, as torchaudio-style modules."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from torch import nn

WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}


def window_fn(window: str):
    """The torch window function named `window` (a key of WINDOWS)."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: expected one of {sorted(WINDOWS)}")
    return WINDOWS[window]


def floor_setting(top_db: float | None) -> dict:
    """The cache-key entry of a `top_db` floor: none without one, so earlier caches stay valid."""
    return {} if top_db is None else {"top_db": float(top_db)}


class Segmenter(nn.Module):
    """(freq, frames) -> (segments, freq, segment_frames): windows every `step` frames.

    Frames past the last whole window are dropped; a spectrogram shorter than one window gives
    zero segments.
    """

    def __init__(self, segment_frames: int, segment_step: int):
        super().__init__()
        self.segment_frames, self.segment_step = segment_frames, segment_step

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if spec.shape[-1] < self.segment_frames:
            return spec.new_zeros(0, spec.shape[-2], self.segment_frames)
        return spec.unfold(-1, self.segment_frames, self.segment_step).permute(1, 0, 2).contiguous()


class Resize(nn.Module):
    """(n, freq, frames) -> (n, *size) by antialiased bilinear interpolation; None keeps the size."""

    def __init__(self, size: Sequence[int] | None):
        super().__init__()
        self.size = tuple(size) if size is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is None or tuple(x.shape[-2:]) == self.size:
            return x
        if x.shape[0] == 0:
            return x.new_zeros(0, *self.size)
        resized = F.interpolate(x.unsqueeze(1), size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return resized.squeeze(1)


class SegmentFeatures(nn.Module):
    """(samples,) waveform -> (segments, *image_shape) float32 log-spectrogram images.

    Two stages, so that the cache can keep whole-track spectrograms and training can crop them
    anywhere: `spectrogram` maps (samples,) -> (freq, frames) dB with `num_bins` rows (`frame_rate`
    frames per second); `cut` maps one spectrogram to its windows every `segment_step` frames,
    `resize` maps windows to images. Subclasses choose the spectrogram.

    dB are floored at -100 (power 1e-10), so digital silence stays finite; `top_db` also floors
    them at that many dB below the track's loudest bin (librosa's `power_to_db` uses 80), so
    zero padding lies just under the quietest sound kept instead of tens of dB below it.
    """

    def __init__(self, spectrogram: nn.Module, num_bins: int, frame_rate: float, segment_frames: int,
                 segment_step: int, image_size: Sequence[int] | None, top_db: float | None = None):
        super().__init__()
        if segment_frames < 1 or segment_step < 1:
            raise ValueError(f"segment_frames={segment_frames} and segment_step={segment_step} must both be >= 1")
        if top_db is not None and not top_db > 0:
            raise ValueError(f"top_db={top_db} must be > 0 (dB below the track's peak), or null")
        self.spectrogram = nn.Sequential(spectrogram, T.AmplitudeToDB(stype="power", top_db=top_db))
        self.segment = Segmenter(segment_frames, segment_step)
        self.resize = Resize(image_size)
        self.image_shape = tuple(image_size) if image_size is not None else (num_bins, segment_frames)
        self.segment_seconds = segment_frames / frame_rate
        self.num_bins, self.frame_rate, self.segment_frames = num_bins, frame_rate, segment_frames
        # Everything that changes the spectrogram: the feature cache is keyed by it (with the
        # segment length, which decides how short clips are padded); checkpoints carry the config.
        self.settings: dict = {}

    @torch.no_grad()
    def cut(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """(freq, frames) -> (segments, *image_shape): every window of one track's spectrogram."""
        return self.resize(self.segment(spectrogram))

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.cut(self.spectrogram(wave))


class StftFeatures(SegmentFeatures):
    """Linear-frequency STFT power in dB (the original report's features): n_fft // 2 + 1 rows."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, window: str, segment_frames: int,
                 segment_step: int, image_size: Sequence[int] | None, top_db: float | None = None):
        spec = T.Spectrogram(n_fft=n_fft, hop_length=hop_length, window_fn=window_fn(window), power=2.0)
        super().__init__(spec, n_fft // 2 + 1, sample_rate / hop_length, segment_frames, segment_step, image_size,
                         top_db)
        self.settings = {"kind": "stft", "sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop_length,
                         "window": window, **floor_setting(top_db)}


class MelFeatures(SegmentFeatures):
    """Mel-scaled power in dB: `n_mels` rows."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float,
                 f_max: float | None, window: str, segment_frames: int, segment_step: int,
                 image_size: Sequence[int] | None, top_db: float | None = None):
        spec = T.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                f_min=f_min, f_max=f_max, window_fn=window_fn(window), power=2.0)
        super().__init__(spec, n_mels, sample_rate / hop_length, segment_frames, segment_step, image_size, top_db)
        self.settings = {"kind": "mel", "sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop_length,
                         "n_mels": n_mels, "f_min": f_min, "f_max": f_max, "window": window, **floor_setting(top_db)}


MASK_FILLS = ("mean", "min")


class SpecAugment(nn.Module):
    """Training-time masking of (B, F, T) normalised segments (Park et al., 2019).

    `num_masks` frequency bands of up to `freq_mask` rows and time spans of up to `time_mask`
    columns, drawn independently for every segment, are set to `fill`: "mean", 0 (the normalised
    mean, as the paper), or "min", each row's minimum in the segment: the silence of a clip
    padded with silence, where a mean-level mask would add sound that the clip never has.
    """

    def __init__(self, freq_mask: int, time_mask: int, num_masks: int, fill: str = "mean"):
        super().__init__()
        if fill not in MASK_FILLS:
            raise ValueError(f"fill={fill!r}: one of {MASK_FILLS}")
        self.fill = fill
        self.masks = nn.Sequential(*(
            [T.FrequencyMasking(freq_mask, iid_masks=True)] * (num_masks if freq_mask else 0)
            + [T.TimeMasking(time_mask, iid_masks=True)] * (num_masks if time_mask else 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.masks):
            return x
        masked = self.masks(torch.ones_like(x).unsqueeze(1)).squeeze(1) == 0   # the drawn bands and spans
        fill = x.amin(dim=-1, keepdim=True) if self.fill == "min" else x.new_zeros(())
        return torch.where(masked, fill, x)
