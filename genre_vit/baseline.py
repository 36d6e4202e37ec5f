"""The classical reference: per-track spectrogram statistics -> any scikit-learn classifier.

A track becomes one vector of 4F numbers, the mean and std of each frequency row and of its first
time-difference (delta), pooled over all the track's segments; the estimator (from the
`baseline` config, e.g. standardisation then logistic regression) classifies tracks directly.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

import torch

from genre_vit.metrics import track_labels, track_scores

CHUNK = 512  # segments converted to float64 at a time: bounds memory on full-resolution sets


class Segments(Protocol):
    """What the baseline reads from a split (a SegmentBatchDataset): (N, F, T) dB segments,
    (N,) labels and (N,) track indices."""

    segments: torch.Tensor
    labels: torch.Tensor
    tracks: torch.Tensor


def track_statistics(segments: torch.Tensor, tracks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F, T) dB segments and (N,) track indices -> ((K,) sorted track ids, (K, 4F) features).

    Features per track: [row means, row stds, delta means, delta stds], each (F,), over all frames
    of the track's segments (population std). Deltas are x[..., t + 1] - x[..., t] within each
    segment, never across two segments' boundary. Overlapping segments count their shared frames
    more than once; for a stationary summary like mean and std this barely matters.
    """
    if segments.dim() != 3 or segments.shape[-1] < 2 or len(tracks) != len(segments):
        raise ValueError(f"expected (N, F, T >= 2) segments and (N,) tracks, got {list(segments.shape)} "
                         f"and {list(tracks.shape)}")
    track_ids, inverse = torch.unique(tracks, return_inverse=True)
    rows = segments.shape[1]
    sums = torch.zeros(len(track_ids), 4, rows, dtype=torch.float64)  # sum x, sum x^2, sum dx, sum dx^2
    for start in range(0, len(segments), CHUNK):
        x = segments[start:start + CHUNK].double()
        dx = x.diff(dim=-1)
        per_segment = torch.stack([x.sum(-1), x.square().sum(-1), dx.sum(-1), dx.square().sum(-1)], dim=1)
        sums.index_add_(0, inverse[start:start + CHUNK], per_segment)
    counts = torch.bincount(inverse, minlength=len(track_ids)).double().view(-1, 1)
    frames, deltas = counts * segments.shape[-1], counts * (segments.shape[-1] - 1)
    mean, delta_mean = sums[:, 0] / frames, sums[:, 2] / deltas
    std = (sums[:, 1] / frames - mean.square()).clamp_min(0).sqrt()
    delta_std = (sums[:, 3] / deltas - delta_mean.square()).clamp_min(0).sqrt()
    return track_ids, torch.cat([mean, std, delta_mean, delta_std], dim=1).float()


def _tracks_of(split: Segments) -> tuple[torch.Tensor, torch.Tensor]:
    """A split -> ((K, 4F) features, (K,) labels) of its tracks."""
    _, features = track_statistics(split.segments, split.tracks)
    return features, track_labels(split.labels, split.tracks)


def count_parameters(estimator: Any) -> int:
    """Coefficients + intercepts of a fitted linear estimator (a Pipeline's last step); 0 if it has none."""
    final = getattr(estimator, "_final_estimator", estimator)
    return sum(int(getattr(final, name).size) for name in ("coef_", "intercept_") if hasattr(final, name))


def fit_track_classifier(estimator: Any, train: Segments, val: Segments, test: Segments | None = None,
                         num_classes: int | None = None) -> dict[str, float]:
    """Fit `estimator` (any scikit-learn classifier) on the training tracks' statistics; score it.

    Returns, for val (and test when given and not empty), `{stage}/track_acc`, `{stage}/f1`
    (macro-F1 over the classes present, as genre_vit.metrics.track_scores computes it for the
    networks) and `{stage}/acc`, which equals the track accuracy: a per-track classifier makes no
    per-segment prediction, so there is no segment score. `val/track_acc_best` repeats
    val/track_acc (one fit is its own best), so sweeps optimise the same key as for networks.
    Also `train/track_acc` (accuracy on the tracks it was fitted to), `num_params` (see
    count_parameters) and `fit_seconds` (wall time of the training statistics and the fit).
    `num_classes` defaults to one more than the largest label seen.
    """
    start = time.perf_counter()
    x_train, y_train = _tracks_of(train)
    estimator.fit(x_train.numpy(), y_train.numpy())
    scores = {"fit_seconds": time.perf_counter() - start, "num_params": count_parameters(estimator)}
    stages = {"train": (x_train, y_train), "val": _tracks_of(val)}
    if test is not None and len(test.labels):
        stages["test"] = _tracks_of(test)
    if num_classes is None:
        num_classes = int(max(y.max() for _, y in stages.values())) + 1
    for stage, (x, y) in stages.items():
        predicted = torch.as_tensor(estimator.predict(x.numpy()), dtype=torch.long)
        result = track_scores(predicted, y.long(), num_classes)
        scores[f"{stage}/track_acc"] = float(result["acc"])
        if stage != "train":
            scores[f"{stage}/acc"] = float(result["acc"])
            scores[f"{stage}/f1"] = float(result["f1"])
    scores["val/track_acc_best"] = scores["val/track_acc"]
    return scores
