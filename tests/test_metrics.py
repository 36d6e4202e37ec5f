"""Track metrics: a track is classified by the mean of its segments' logits, then scored."""
import pytest
import torch

from genre_vit.metrics import TrackVotes, track_scores


def votes(logits: list[list[float]], labels: list[int], tracks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) label of each track."""
    metric = TrackVotes()
    metric.update(torch.tensor(logits), torch.tensor(labels), torch.tensor(tracks))
    track_logits, true, statistics, _ = metric.compute()
    assert statistics is None  # collected only when asked for
    return track_logits.argmax(-1), true


def test_a_track_is_classified_by_the_mean_of_its_segments_logits():
    # track 5: one confident wrong segment is outvoted by the mean; track 9: a single segment
    predicted, true = votes([[0.0, 3.0], [2.0, 0.0], [2.0, 0.0], [1.0, 0.0]], [0, 1, 0, 0], [5, 9, 5, 5])
    assert predicted.tolist() == [0, 0] and true.tolist() == [0, 1]


def test_scores_count_tracks_and_average_f1_over_the_classes_present():
    scores = track_scores(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 0, 1, 1]), num_classes=3)
    assert scores["confusion"].tolist() == [[1, 0, 1], [0, 2, 0], [0, 0, 0]]
    assert scores["confusion"].device.type == "cpu"
    assert scores["acc"].item() == pytest.approx(3 / 4)
    # class 0: 2 * 1 / (2 + 1) = 2/3; class 1: 1; class 2 has no track, so no F1 (not a 0)
    assert scores["f1"].item() == pytest.approx((2 / 3 + 1) / 2)


def test_a_validation_set_of_one_track_is_scored():
    scores = track_scores(*votes([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]], [1, 1], [4, 4]), num_classes=3)
    assert scores["confusion"].tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert scores["acc"].item() == 1.0 and scores["f1"].item() == 1.0


def test_a_validation_set_of_one_segment_is_scored():
    scores = track_scores(*votes([[0.0, 1.0, 0.0]], [2], [0]), num_classes=3)
    assert scores["confusion"].tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert scores["acc"].item() == 0.0 and scores["f1"].item() == 0.0
