"""The classical baseline: per-track row and delta statistics -> a scikit-learn classifier."""

import pytest
import torch
from hydra.utils import instantiate
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from genre_vit.baseline import count_parameters, fit_track_classifier
from genre_vit.data.datamodule import SegmentBatchDataset
from genre_vit.metrics import track_labels
from genre_vit.statistics import track_statistics
from tests.conftest import compose_config


def test_statistics_pool_rows_and_deltas_over_all_segments_of_a_track():
    # Track 7: two segments of two rows; row 0 is a ramp, row 1 a constant per segment.
    segments = torch.tensor([[[0.0, 1.0, 2.0], [4.0, 4.0, 4.0]],
                             [[3.0, 4.0, 5.0], [6.0, 6.0, 6.0]],
                             [[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]]])  # track 3: one segment
    ids, features = track_statistics(segments, torch.tensor([7, 7, 3]))
    assert ids.tolist() == [3, 7] and features.shape == (2, 4 * 2)
    ramp, flat = torch.arange(6.0), torch.tensor([4.0] * 3 + [6.0] * 3)
    expected_7 = [ramp.mean(), flat.mean(), ramp.std(correction=0), flat.std(correction=0),
                  1.0, 0.0, 0.0, 0.0]  # deltas within each segment: the jump 2 -> 3 between them is not one
    assert torch.allclose(features[1], torch.tensor(expected_7))
    expected_3 = [1.0, 2 / 3, 0.0, (8 / 9) ** 0.5, 0.0, 0.0, 0.0, 2.0]  # row 1's deltas are +2, -2
    assert torch.allclose(features[0], torch.tensor(expected_3))


def test_statistics_match_a_direct_computation_in_float16():
    segments = (torch.randn(6, 5, 16) * 10 - 40).half()
    tracks = torch.tensor([0, 0, 1, 1, 1, 2])
    _, features = track_statistics(segments, tracks)
    frames = segments[2:5].float().permute(1, 0, 2).reshape(5, -1)  # track 1's segments along time
    deltas = segments[2:5].float().diff(dim=-1).permute(1, 0, 2).reshape(5, -1)
    direct = torch.cat([frames.mean(1), frames.std(1, correction=0), deltas.mean(1), deltas.std(1, correction=0)])
    assert torch.allclose(features[1], direct, atol=1e-4)


def test_segments_of_one_track_must_share_a_label():
    assert track_labels(torch.tensor([2, 2, 0]), torch.tensor([5, 5, 1])).tolist() == [0, 2]
    with pytest.raises(ValueError, match="different labels"):
        track_labels(torch.tensor([2, 1]), torch.tensor([5, 5]))


def band_energy_split(tracks: int, seed: int, first_track: int = 0) -> SegmentBatchDataset:
    """3 classes x `tracks` tracks of 4 segments (16 bands x 32 frames, dB); class c is loud in band group c."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(tracks)
    segments = torch.randn(len(labels), 4, 16, 32, generator=generator) * 3 - 60
    for track, label in enumerate(labels):
        segments[track, :, 5 * label:5 * label + 5] += 20
    track_ids = (first_track + torch.arange(len(labels))).repeat_interleave(4)
    return SegmentBatchDataset(segments.flatten(0, 1).half(), labels.repeat_interleave(4), track_ids)


def test_logistic_regression_separates_classes_by_band_energy():
    train, val, test = band_energy_split(8, 0), band_energy_split(4, 1, 100), band_energy_split(4, 2, 200)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = fit_track_classifier(estimator, train, val, test)
    assert scores["val/track_acc"] == scores["val/acc"] == scores["val/track_acc_best"] == 1.0
    assert scores["val/f1"] == scores["test/track_acc"] == scores["test/f1"] == scores["train/track_acc"] == 1.0
    assert scores["num_params"] == 3 * 4 * 16 + 3 and scores["fit_seconds"] > 0


def test_an_empty_test_split_is_not_scored():
    empty = SegmentBatchDataset(torch.zeros(0, 16, 32), torch.zeros(0, dtype=torch.long),
                                torch.zeros(0, dtype=torch.long))
    scores = fit_track_classifier(LogisticRegression(), band_energy_split(4, 0), band_energy_split(2, 1, 100), empty)
    assert not any(key.startswith("test/") for key in scores)


def test_estimators_without_coefficients_count_no_parameters():
    from sklearn.neighbors import KNeighborsClassifier
    assert count_parameters(KNeighborsClassifier()) == 0


def test_experiment_config_builds_a_scaled_logistic_regression_on_full_resolution_mel():
    cfg = compose_config("experiment=baseline_logreg")
    assert cfg.features._target_.endswith("MelFeatures") and cfg.features.image_size is None
    estimator = instantiate(cfg.baseline)
    assert isinstance(estimator, Pipeline)
    assert isinstance(estimator.steps[0][1], StandardScaler)
    final = estimator.steps[-1][1]
    assert isinstance(final, LogisticRegression) and final.max_iter == 2000 and final.C == 1.0
