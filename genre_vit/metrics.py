"""Track-level metrics: a track's prediction is the mean of its segments' logits."""
from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def vote_by_track(logits: torch.Tensor, labels: torch.Tensor, tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) segment logits -> ((K, C) mean logits, (K,) labels) for the K distinct tracks."""
    unique, inverse = torch.unique(tracks, return_inverse=True)
    sums = logits.new_zeros(len(unique), logits.shape[1]).index_add_(0, inverse, logits)
    counts = torch.bincount(inverse, minlength=len(unique)).clamp_min(1).unsqueeze(1)
    track_labels = labels.new_zeros(len(unique)).scatter_(0, inverse, labels)
    return sums / counts, track_labels


class TrackVotes(Metric):
    """Collects segment logits; `compute` returns ((K,) predicted, (K,) true) labels of the K
    tracks, each classified by the mean of its segments' logits.

    Keeps every segment's logits until `compute`, so segments of one track may arrive in any
    batch and (under DDP) on any process.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("tracks", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, tracks: torch.Tensor) -> None:
        self.logits.append(logits.detach().float())
        self.labels.append(labels)
        self.tracks.append(tracks)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        track_logits, track_labels = vote_by_track(dim_zero_cat(self.logits), dim_zero_cat(self.labels), dim_zero_cat(self.tracks))
        return track_logits.argmax(dim=1), track_labels


def track_scores(predicted: torch.Tensor, true: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Accuracy, macro-F1 and the (true x predicted) confusion matrix of track predictions."""
    confusion = torch.bincount(true * num_classes + predicted, minlength=num_classes**2).view(num_classes, num_classes)
    hits = confusion.diag().float()
    f1 = 2 * hits / (confusion.sum(0) + confusion.sum(1)).clamp_min(1)
    present = confusion.sum(1) > 0
    return {"acc": hits.sum() / confusion.sum().clamp_min(1), "f1": f1[present].mean(), "confusion": confusion.cpu()}
