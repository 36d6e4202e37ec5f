"""Per-track spectrogram statistics: the features of the classical classifiers (genre_vit.baseline,
genre_vit.reference). A track is summarised by the mean and std of each frequency row and of its
time-difference (delta) over all frames of its segments; they pool per-segment moments, so the
statistics of tracks whose segments arrive batch by batch (validation) are exact too.
"""
from __future__ import annotations

import torch

CHUNK = 512  # segments converted to float64 at a time: bounds memory on full-resolution sets


def segment_moments(segments: torch.Tensor) -> torch.Tensor:
    """(N, F, T >= 2) dB segments -> (N, 4, F) float64 means over each segment's frames: of x,
    x^2, the time-difference dx (x[..., t + 1] - x[..., t], within the segment) and dx^2. Segments
    are all T frames long, so a track's moments are the mean of its segments': they can be
    collected batch by batch."""
    if segments.dim() != 3 or segments.shape[-1] < 2:
        raise ValueError(f"expected (N, F, T >= 2) segments, got {list(segments.shape)}")
    moments = []
    for start in range(0, len(segments), CHUNK):
        x = segments[start:start + CHUNK].double()
        dx = x.diff(dim=-1)
        moments.append(torch.stack([x.mean(-1), x.square().mean(-1), dx.mean(-1), dx.square().mean(-1)], dim=1))
    return torch.cat(moments) if moments else segments.new_zeros(0, 4, segments.shape[1], dtype=torch.float64)


def pooled_statistics(moments: torch.Tensor, tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4, F) segment_moments and (N,) track indices -> ((K,) sorted track ids, (K, 4F)
    features): [row means, row stds, delta means, delta stds], each (F,), over all frames of the
    track's segments (population std)."""
    if len(tracks) != len(moments):
        raise ValueError(f"expected one track index per segment, got {len(tracks)} for {len(moments)} segments")
    track_ids, inverse = torch.unique(tracks, return_inverse=True)
    totals = moments.new_zeros(len(track_ids), *moments.shape[1:]).index_add_(0, inverse.to(moments.device), moments)
    mean_x, mean_x2, mean_dx, mean_dx2 = (totals / torch.bincount(inverse).to(totals).view(-1, 1, 1)).unbind(1)
    std = (mean_x2 - mean_x.square()).clamp_min(0).sqrt()
    delta_std = (mean_dx2 - mean_dx.square()).clamp_min(0).sqrt()
    return track_ids, torch.cat([mean_x, std, mean_dx, delta_std], dim=1).float()


def track_statistics(segments: torch.Tensor, tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F, T) dB segments and (N,) track indices -> ((K,) sorted track ids, (K, 4F) features),
    see pooled_statistics. Deltas never cross two segments' boundary. Overlapping segments count
    their shared frames more than once; for a stationary summary like mean and std this barely matters.
    """
    if len(tracks) != len(segments):
        raise ValueError(f"expected (N, F, T >= 2) segments and (N,) tracks, got {list(segments.shape)} "
                         f"and {list(tracks.shape)}")
    return pooled_statistics(segment_moments(segments), tracks)
