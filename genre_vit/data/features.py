"""Waveform -> log-spectrogram -> fixed-length segments -> images, as torchaudio-style modules; the
input normalisation's statistics."""
from __future__ import annotations

import math
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


NORMALIZATIONS = ("per_bin", "global")


def normalization_stats(segments: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F, T) training segments -> (F,) mean and std, per frequency row or one global value."""
    dims = (0, 2) if mode == "per_bin" else (0, 1, 2)
    mean, std = segments.mean(dim=dims), segments.std(dim=dims).clamp_min(1e-3)
    rows = segments.shape[1]
    return mean.expand(rows).clone(), std.expand(rows).clone()


def sounding_frames(frames: torch.Tensor, within_db: float) -> torch.Tensor:
    """(T,) which frames of one track's (F, T) dB spectrogram hold sound: their loudest bin is
    within `within_db` of the track's loudest (so at least the loudest frame does)."""
    loudest = frames.amax(dim=0)
    return loudest >= loudest.max() - within_db


def sounding_starts(frames: torch.Tensor, window: int, within_db: float) -> torch.Tensor:
    """The starts of the windows of `window` frames that hold a sounding frame (`sounding_frames`)."""
    sounding = sounding_frames(frames, within_db).float().cumsum(0)
    sounding = torch.cat([sounding.new_zeros(1), sounding])
    return torch.nonzero(sounding[window:] - sounding[:-window] > 0).squeeze(1)


def floor_setting(top_db: float | None) -> dict:
    """The cache-key entry of a `top_db` floor: none without one, so earlier caches stay valid."""
    return {} if top_db is None else {"top_db": float(top_db)}


def windows_of(x: torch.Tensor, size: int, step: int, end_window: bool) -> torch.Tensor:
    """(..., frames) -> (windows, ..., size): windows every `step` frames; with `end_window`, one
    more ending at the last frame where the step leaves two or more frames past the last of them,
    so that a sound past the last whole window (up to step - 1 frames: the last 0.56 s of a 5 s
    clip with the default windows) is scored too. (One frame left over is the end a
    centred STFT adds to a clip of whole windows, such as a short clip repeated to fill one: half
    of it is padding, and its window would repeat the last one.) Needs frames >= size."""
    windows = x.unfold(-1, size, step).movedim(-2, 0)
    if end_window and (x.shape[-1] - size) % step > 1:
        windows = torch.cat([windows, x[..., -size:].unsqueeze(0)])
    return windows


class Segmenter(nn.Module):
    """(freq, frames) -> (segments, freq, segment_frames): windows every `step` frames, and with
    `end_window` one ending at the last frame (`windows_of`); a spectrogram shorter than one
    window gives zero segments."""

    def __init__(self, segment_frames: int, segment_step: int, end_window: bool = False):
        super().__init__()
        self.segment_frames, self.segment_step, self.end_window = segment_frames, segment_step, end_window

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if spec.shape[-1] < self.segment_frames:
            return spec.new_zeros(0, spec.shape[-2], self.segment_frames)
        return windows_of(spec, self.segment_frames, self.segment_step, self.end_window).contiguous()


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

    `end_window` adds a window ending at the last frame (`windows_of`); False (as checkpoints
    written before it existed) leaves the frames past the last whole window out of every window.

    `sound_within_db` keeps only the windows that hold sound (`sounding_starts`: a frame whose
    loudest bin is within that many dB of the track's loudest), every window if none does (the
    sound lies past the last window: only without `end_window`): the silence of a padded clip is
    neither scored nor trained on, and random crops follow the same rule. None keeps every window.
    """

    def __init__(self, spectrogram: nn.Module, row_hz: torch.Tensor, frame_rate: float, segment_frames: int,
                 segment_step: int, image_size: Sequence[int] | None, top_db: float | None = None,
                 sound_within_db: float | None = None, end_window: bool = False):
        super().__init__()
        num_bins = len(row_hz)
        if segment_frames < 1 or segment_step < 1:
            raise ValueError(f"segment_frames={segment_frames} and segment_step={segment_step} must both be >= 1")
        if top_db is not None and not top_db > 0:
            raise ValueError(f"top_db={top_db} must be > 0 (dB below the track's peak), or null")
        self.spectrogram = nn.Sequential(spectrogram, T.AmplitudeToDB(stype="power", top_db=top_db))
        self.segment = Segmenter(segment_frames, segment_step, end_window)
        self.resize = Resize(image_size)
        self.image_shape = tuple(image_size) if image_size is not None else (num_bins, segment_frames)
        self.segment_seconds = segment_frames / frame_rate
        self.sound_within_db = sound_within_db
        self.num_bins, self.frame_rate, self.segment_frames = num_bins, frame_rate, segment_frames
        self.row_hz = row_hz  # (num_bins,) centre frequency of each row, Hz, increasing: for pitch shifts
        # Everything that changes the spectrogram: the feature cache is keyed by it (with the
        # segment length, which decides how short clips are padded); checkpoints carry the config.
        self.settings: dict = {}

    @torch.no_grad()
    def cut(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """(freq, frames) -> (segments, *image_shape): the windows of one track's spectrogram,
        every one, or with `sound_within_db` those that hold sound (every one if none does)."""
        windows = self.segment(spectrogram)
        if self.sound_within_db is not None and len(windows):
            frames = sounding_frames(spectrogram, self.sound_within_db)
            segment = self.segment  # the sounding frames cut as the spectrogram is
            sounding = windows_of(frames, segment.segment_frames, segment.segment_step, segment.end_window).any(dim=1)
            windows = windows[sounding] if sounding.any() else windows
        return self.resize(windows)

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.cut(self.spectrogram(wave))


class StftFeatures(SegmentFeatures):
    """Linear-frequency STFT power in dB (the original report's features): n_fft // 2 + 1 rows."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, window: str, segment_frames: int,
                 segment_step: int, image_size: Sequence[int] | None, top_db: float | None = None,
                 sound_within_db: float | None = None, end_window: bool = False):
        spec = T.Spectrogram(n_fft=n_fft, hop_length=hop_length, window_fn=window_fn(window), power=2.0)
        super().__init__(spec, torch.linspace(0, sample_rate / 2, n_fft // 2 + 1), sample_rate / hop_length,
                         segment_frames, segment_step, image_size, top_db, sound_within_db, end_window)
        self.settings = {"kind": "stft", "sample_rate": sample_rate, "n_fft": n_fft, "hop_length": hop_length,
                         "window": window, **floor_setting(top_db)}


def mel_centres(n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_mels,) centre frequencies in Hz of torchaudio's mel filterbank (HTK scale, as MelSpectrogram's
    default): n_mels + 2 points evenly spaced in mel from f_min to f_max, less the two ends."""
    to_mel = lambda hz: 2595.0 * math.log10(1.0 + hz / 700.0)
    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2, dtype=torch.float64)[1:-1]
    return (700.0 * (10.0 ** (mels / 2595.0) - 1.0)).float()


class MelFeatures(SegmentFeatures):
    """Mel-scaled power in dB: `n_mels` rows."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float,
                 f_max: float | None, window: str, segment_frames: int, segment_step: int,
                 image_size: Sequence[int] | None, top_db: float | None = None,
                 sound_within_db: float | None = None, end_window: bool = False):
        spec = T.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                f_min=f_min, f_max=f_max, window_fn=window_fn(window), power=2.0)
        super().__init__(spec, mel_centres(n_mels, f_min, f_max or sample_rate / 2), sample_rate / hop_length,
                         segment_frames, segment_step, image_size, top_db, sound_within_db, end_window)
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


class PitchTimeWarp(nn.Module):
    """Crops of whole-track spectrograms, each pitch-shifted and time-stretched on its own: the
    label-preserving deformations that helped most in the published augmentation studies of
    singing-voice detection (Schlüter & Grill, ISMIR 2015) and urban sound classification
    (Salamon & Bello, IEEE SPL 2017), done on the spectrogram by bilinear resampling.

    `frames` (F, N) holds the tracks side by side; crop b reads `width[b]` frames from column
    `start[b]` and resamples them to `window` columns (width > window: faster, width < window:
    slower), with row f reading the frequency `row_hz[f] / 2 ** (cents[b] / 1200)` (cents > 0: higher).
    Rows and columns outside the read range repeat its edge. -> (B, F, window) float32.
    With width == window and cents == 0 a crop is exactly `frames[:, start:start + window]`.
    """

    def __init__(self, row_hz: torch.Tensor, window: int):
        super().__init__()
        self.row_hz, self.window = row_hz.double(), window

    def source_rows(self, cents: torch.Tensor) -> torch.Tensor:
        """(B,) cents -> (B, F) fractional rows to read: where row_hz / ratio lies between the row centres."""
        hz = self.row_hz / torch.pow(2.0, cents.double() / 1200).unsqueeze(1)
        upper = torch.searchsorted(self.row_hz, hz).clamp(1, len(self.row_hz) - 1)
        low_hz, high_hz = self.row_hz[upper - 1], self.row_hz[upper]
        return (upper - 1 + ((hz - low_hz) / (high_hz - low_hz)).clamp(0, 1)).float()

    def source_columns(self, start: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """(B,) starts and widths -> (B, window) fractional columns: `window` evenly spaced points over each span."""
        step = width.double().unsqueeze(1) / self.window
        offset = ((torch.arange(self.window, dtype=torch.float64) + 0.5) * step - 0.5).clamp_min(0)
        return (start.unsqueeze(1) + torch.minimum(offset, width.unsqueeze(1) - 1.0)).float()

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, start: torch.Tensor, width: torch.Tensor, cents: torch.Tensor) -> torch.Tensor:
        # Separable: columns first (two reads of the big table), then rows of the small result.
        columns = self.source_columns(start, width)
        c0 = columns.floor().long()
        c1 = torch.minimum(c0 + 1, columns.ceil().long())
        crops = torch.lerp(frames[:, c0].float(), frames[:, c1].float(), columns - c0).permute(1, 0, 2)  # (B, F, window)
        rows = self.source_rows(cents)
        r0 = rows.floor().long()
        r1 = (r0 + 1).clamp_max(frames.shape[0] - 1)
        read = lambda r: crops.gather(1, r.unsqueeze(2).expand(-1, -1, self.window))
        return torch.lerp(read(r0), read(r1), (rows - r0).unsqueeze(2))
