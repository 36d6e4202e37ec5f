"""Per-track spectrogram statistics: the features of the classical classifiers (genre_vit.baseline,
genre_vit.reference). A track is summarised by the mean and std of each frequency row and of its
time-difference (delta) over all frames of its segments; sums per segment add up, so the
statistics of tracks whose segments arrive batch by batch (validation) are exact too.
"""
from __future__ import annotations

import torch

CHUNK = 512  # segments converted to float64 at a time: bounds memory on full-resolution sets


def segment_sums(segments: torch.Tensor) -> torch.Tensor:
    """(N, F, T >= 2) dB segments -> (N, 4, F) float64 sums over each segment's frames: of x,
    x^2, the time-difference dx (x[..., t + 1] - x[..., t], within the segment) and dx^2. Sums
    of any split of a track's segments add up, so they can be collected batch by batch."""
    if segments.dim() != 3 or segments.shape[-1] < 2:
        raise ValueError(f"expected (N, F, T >= 2) segments, got {list(segments.shape)}")
    sums = []
    for start in range(0, len(segments), CHUNK):
        x = segments[start:start + CHUNK].double()
        dx = x.diff(dim=-1)
        sums.append(torch.stack([x.sum(-1), x.square().sum(-1), dx.sum(-1), dx.square().sum(-1)], dim=1))
    return torch.cat(sums) if sums else segments.new_zeros(0, 4, segments.shape[1], dtype=torch.float64)


def pooled_statistics(sums: torch.Tensor, tracks: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4, F) segment_sums of segments of `frames` frames and (N,) track indices ->
    ((K,) sorted track ids, (K, 4F) features): [row means, row stds, delta means, delta stds],
    each (F,), over all frames of the track's segments (population std)."""
    if len(tracks) != len(sums):
        raise ValueError(f"expected one track index per segment, got {len(tracks)} for {len(sums)} segments")
    track_ids, inverse = torch.unique(tracks, return_inverse=True)
    totals = sums.new_zeros(len(track_ids), *sums.shape[1:]).index_add_(0, inverse.to(sums.device), sums)
    counts = torch.bincount(inverse, minlength=len(track_ids)).to(totals).view(-1, 1)
    mean, delta_mean = totals[:, 0] / (counts * frames), totals[:, 2] / (counts * (frames - 1))
    std = (totals[:, 1] / (counts * frames) - mean.square()).clamp_min(0).sqrt()
    delta_std = (totals[:, 3] / (counts * (frames - 1)) - delta_mean.square()).clamp_min(0).sqrt()
    return track_ids, torch.cat([mean, std, delta_mean, delta_std], dim=1).float()


def track_statistics(segments: torch.Tensor, tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F, T) dB segments and (N,) track indices -> ((K,) sorted track ids, (K, 4F) features),
    see pooled_statistics. Deltas never cross two segments' boundary. Overlapping segments count
    their shared frames more than once; for a stationary summary like mean and std this barely matters.
    """
    if len(tracks) != len(segments):
        raise ValueError(f"expected (N, F, T >= 2) segments and (N,) tracks, got {list(segments.shape)} "
                         f"and {list(tracks.shape)}")
    return pooled_statistics(segment_sums(segments), tracks, segments.shape[-1])
