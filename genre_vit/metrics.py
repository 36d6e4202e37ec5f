"""Track-level metrics: a track's prediction is the mean of its segments' logits."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_f1_score
from torchmetrics.utilities import dim_zero_cat

from genre_vit.statistics import pooled_statistics, segment_moments


def track_labels(labels: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
    """(N,) segment labels and track indices -> (K,) label of each track, in sorted track order.

    Raises if a track's segments disagree (every segment carries its track's label)."""
    _, inverse = torch.unique(tracks, return_inverse=True)
    k = int(inverse.max()) + 1 if len(inverse) else 0
    low = labels.new_full((k,), torch.iinfo(labels.dtype).max).scatter_reduce(0, inverse, labels, "amin")
    high = labels.new_full((k,), torch.iinfo(labels.dtype).min).scatter_reduce(0, inverse, labels, "amax")
    if not torch.equal(low, high):
        raise ValueError("segments of one track carry different labels")
    return low


def vote_by_track(logits: torch.Tensor, labels: torch.Tensor,
                  tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) segment logits -> ((K, C) mean logits, (K,) labels) for the K distinct tracks."""
    unique, inverse = torch.unique(tracks, return_inverse=True)
    sums = logits.new_zeros(len(unique), logits.shape[1]).index_add_(0, inverse, logits)
    counts = torch.bincount(inverse, minlength=len(unique)).clamp_min(1).unsqueeze(1)
    return sums / counts, track_labels(labels, tracks)


class Votes(NamedTuple):
    """The K tracks of an evaluation, in sorted track order: (K, C) mean logits, (K,) labels,
    (K, 4F) statistics (None when not collected) and (K,) track indices."""

    logits: torch.Tensor
    labels: torch.Tensor
    statistics: torch.Tensor | None
    tracks: torch.Tensor


class TrackVotes(Metric):
    """Collects segment logits (and, with `statistics`, each segment's moments, see
    genre_vit.statistics); `compute` returns the tracks' Votes (labels and track indices 0-d
    when K = 1: torchmetrics squeezes one-element results of `compute`).

    Keeps every segment's logits until `compute`, so segments of one track may arrive in any
    batch and (under DDP) on any process.
    """

    full_state_update = False

    def __init__(self, statistics: bool = False) -> None:
        super().__init__()
        self.statistics = statistics
        for name in ("logits", "labels", "tracks") + (("moments",) if statistics else ()):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, tracks: torch.Tensor,
               segments: torch.Tensor | None = None) -> None:
        """Segment logits, labels and track indices; with `statistics`, the (B, F, T) segments too."""
        self.logits.append(logits.detach().float())
        self.labels.append(labels)
        self.tracks.append(tracks)
        if self.statistics:
            self.moments.append(segment_moments(segments))

    def compute(self) -> Votes:
        tracks = dim_zero_cat(self.tracks)
        track_logits, labels = vote_by_track(dim_zero_cat(self.logits), dim_zero_cat(self.labels), tracks)
        statistics = pooled_statistics(dim_zero_cat(self.moments), tracks)[1] if self.statistics else None
        return Votes(track_logits, labels, statistics, torch.unique(tracks))


def track_scores(predicted: torch.Tensor, true: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """(K,) predicted and true track labels -> accuracy, macro-F1 and the (C, C) confusion counts.

    `confusion[t, p]` counts tracks of class t predicted as p (int64, on CPU). The F1 average
    runs over the classes present in `true` only: a class with no track here has no F1. 0-d
    inputs (one track, see TrackVotes) count as one track.
    """
    predicted, true = predicted.reshape(-1), true.reshape(-1)
    confusion = multiclass_confusion_matrix(predicted, true, num_classes)
    f1 = multiclass_f1_score(predicted, true, num_classes, average=None)
    present = confusion.sum(1) > 0
    return {"acc": confusion.diag().sum() / confusion.sum().clamp_min(1), "f1": f1[present].mean(),
            "confusion": confusion.cpu()}
