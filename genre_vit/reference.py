"""The classical reference fused into a network's track scores.

The reference is the `experiment=baseline_logreg` classifier: per-track log-mel statistics
(genre_vit.statistics), standardised, into a logistic regression fitted on the training tracks. Its
logits are multiplied by a `sharpness` (an inverse temperature). The sharpness is chosen to
minimise the log-loss of out-of-fold predictions on the training tracks alone (temperature
scaling, Guo et al. 2017, with cross-validation in place of a held-out set). The network's track
log-probabilities and the reference's are added (a product of experts). A reference that
cross-validates badly gets a sharpness near 0: it then scores every class about the same and
leaves the network's choice alone. The fitted numbers are buffers, so checkpoints carry them.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from genre_vit.runs import TrackScores
from genre_vit.statistics import track_statistics

if TYPE_CHECKING:
    from genre_vit.metrics import Votes  # torchmetrics: not for predict, which imports this module

log = logging.getLogger(__name__)

MAX_SHARPNESS = 10.0  # the search's upper bound: a reference at most 10x sharper than its fit


class StatisticsReference(nn.Module):
    """(K, 4F) track statistics -> (K, classes) the reference's vote: `strength` times its
    calibrated log-probabilities (1: the product of two experts; less: the network counts more).

    `inverse_l2` is LogisticRegression's C; `inner_folds` is the number of folds (at most) of the
    cross-validation on the training tracks that chooses the sharpness; `seed` fixes its split.
    Before `fit` every class scores the same, so adding the reference changes no prediction.
    """

    def __init__(self, rows: int, num_classes: int, inverse_l2: float = 1.0, inner_folds: int = 5, seed: int = 0,
                 strength: float = 1.0):
        super().__init__()
        self.inverse_l2, self.inner_folds, self.seed, self.strength = inverse_l2, inner_folds, seed, strength
        features = 4 * rows
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("weight", torch.zeros(num_classes, features))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.register_buffer("sharpness", torch.zeros(()))

    def logits(self, statistics: torch.Tensor) -> torch.Tensor:
        """(K, 4F) -> (K, classes) logistic-regression logits, before the sharpness."""
        return ((statistics.to(self.weight) - self.mean) / self.scale) @ self.weight.T + self.bias

    def log_probabilities(self, statistics: torch.Tensor) -> torch.Tensor:
        """(K, 4F) -> (K, classes) the calibrated log-probabilities: the vote before `strength`."""
        return (self.sharpness * self.logits(statistics)).log_softmax(dim=-1)

    def forward(self, statistics: torch.Tensor) -> torch.Tensor:
        return self.strength * self.log_probabilities(statistics)

    def _regression(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.inverse_l2, max_iter=2000))

    def _linear(self, fitted) -> tuple[np.ndarray, ...]:
        """A fitted pipeline as (mean, scale, weight (classes, 4F), bias (classes,)). With two
        classes the regression has one logit, the second class's; the first's is 0. A class it
        never saw gets zero weights and the lowest intercept."""
        scaler, regression = fitted[0], fitted[-1]
        classes, coef, intercept = regression.classes_, regression.coef_, regression.intercept_
        if len(classes) == 2:
            coef, intercept = np.concatenate([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        weight = np.zeros((len(self.bias), coef.shape[1]))
        bias = np.full(len(self.bias), intercept.min())
        weight[classes], bias[classes] = coef, intercept
        return scaler.mean_, scaler.scale_, weight, bias

    def _out_of_fold_logits(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None) -> np.ndarray | None:
        """Each training track's logits from a regression fitted without it, nor (with `groups`)
        without any track of its recording; None with too few tracks or recordings."""
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

        folds = min(self.inner_folds, int(np.bincount(y).max()))
        if groups is not None:
            folds = min(folds, len(np.unique(groups)))  # a group is never split, so at most one fold each
        if folds < 2:
            return None
        out = np.zeros((len(y), len(self.bias)))
        split = (StratifiedKFold if groups is None else StratifiedGroupKFold)(folds, shuffle=True, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            for train, held_out in split.split(x, y, groups):
                mean, scale, weight, bias = self._linear(self._regression().fit(x[train], y[train]))
                out[held_out] = ((x[held_out] - mean) / scale) @ weight.T + bias
        return out

    @staticmethod
    def _best_sharpness(logits: np.ndarray, y: np.ndarray) -> float:
        """The s in [0, MAX_SHARPNESS] that minimises the mean log-loss of softmax(s * logits)
        (convex in s, so the bounded search finds the minimum)."""
        from scipy.optimize import minimize_scalar
        from scipy.special import log_softmax

        def log_loss(s: float) -> float:
            return -float(log_softmax(s * logits, axis=1)[np.arange(len(y)), y].mean())

        return float(minimize_scalar(log_loss, bounds=(0.0, MAX_SHARPNESS), method="bounded",
                                     options={"xatol": 1e-4}).x)

    @torch.no_grad()
    def fit(self, segments: torch.Tensor, labels: torch.Tensor, tracks: torch.Tensor,
            recordings: torch.Tensor | None = None) -> float:
        """Fit to the training split's (N, F, T) dB segments, (N,) labels and (N,) track indices;
        return the sharpness (0 when the tracks are too few to cross-validate: no opinion).
        `recordings[t]` is the recording track t was cut from (ESC-50's takes): the cross-validation
        then never scores a track with a regression fitted on another take of its recording."""
        from genre_vit.metrics import track_labels  # torchmetrics: not for predict, which never fits

        started = time.perf_counter()
        ids, statistics = track_statistics(segments, tracks)
        x, y = statistics.double().numpy(), track_labels(labels, tracks).numpy()
        for buffer, value in zip((self.mean, self.scale, self.weight, self.bias),
                                 self._linear(self._regression().fit(x, y))):
            buffer.copy_(torch.as_tensor(value))
        groups = None if recordings is None else recordings[ids].numpy()
        out_of_fold = self._out_of_fold_logits(x, y, groups)
        self.sharpness.fill_(0.0 if out_of_fold is None else self._best_sharpness(out_of_fold, y))
        log.info("Reference fitted on %d training tracks in %.1f s: sharpness %.3f", len(y),
                 time.perf_counter() - started, float(self.sharpness))
        return float(self.sharpness)


def fused_scores(network_logits: torch.Tensor, reference: StatisticsReference | None,
                 statistics: torch.Tensor | None) -> torch.Tensor:
    """(K, classes) track scores: the network's log-probabilities (from its mean logits), plus the
    reference's vote when there is one."""
    scores = network_logits.float().log_softmax(dim=-1)
    return scores if reference is None else scores + reference(statistics).to(scores)


def scored_tracks(votes: Votes, reference: StatisticsReference | None) -> TrackScores:
    """An evaluation's tracks (genre_vit.metrics.Votes) as TrackScores: the prediction of
    `fused_scores`, the network's log-probabilities and the reference's before its strength."""
    fused = fused_scores(votes.logits, reference, votes.statistics)
    parts = None if reference is None else reference.log_probabilities(votes.statistics).cpu()
    return TrackScores(votes.tracks.reshape(-1).cpu(), votes.labels.reshape(-1).cpu(), fused.argmax(-1).cpu(),
                       votes.logits.float().log_softmax(-1).cpu(), parts)
