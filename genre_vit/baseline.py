"""The classical baseline: per-track spectrogram statistics -> any scikit-learn classifier.

A track becomes one vector of 4F numbers (genre_vit.statistics), the mean and std of each
frequency row and of its first time-difference (delta), pooled over all the track's segments; the estimator (from the
`baseline` config, e.g. standardisation then logistic regression) classifies tracks directly.
"""
from __future__ import annotations

import time
from typing import Any, Protocol

import torch

from genre_vit.metrics import track_labels, track_scores
from genre_vit.statistics import track_statistics


class Segments(Protocol):
    """What the baseline reads from a split (a SegmentBatchDataset): (N, F, T) dB segments,
    (N,) labels and (N,) track indices."""

    segments: torch.Tensor
    labels: torch.Tensor
    tracks: torch.Tensor


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
