"""Folds are made by track, stratified by genre, and fixed by the seed."""
import numpy as np
import pytest

from genre_vit.data.splits import TEST, VAL, kfold_roles, stratified_folds

LABELS = np.repeat(np.arange(10), 23)  # 10 genres, 23 tracks each (not a multiple of 5)


def test_every_track_is_validated_exactly_once_across_folds():
    folds = stratified_folds(LABELS, 5, seed=0)
    assert folds.shape == LABELS.shape and set(folds) == set(range(5))
    validated = np.concatenate([np.flatnonzero(folds == k) for k in range(5)])
    assert sorted(validated) == list(range(len(LABELS)))


def test_folds_are_stratified_and_balanced():
    folds = stratified_folds(LABELS, 5, seed=3)
    per_class = np.array([[np.sum((folds == k) & (LABELS == c)) for k in range(5)] for c in range(10)])
    assert per_class.max(axis=1).tolist() == [5] * 10 and per_class.min(axis=1).tolist() == [4] * 10
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1


def test_same_seed_same_split_other_seed_other_split():
    assert (stratified_folds(LABELS, 5, 7) == stratified_folds(LABELS, 5, 7)).all()
    assert (stratified_folds(LABELS, 5, 7) != stratified_folds(LABELS, 5, 8)).any()


def test_the_takes_of_one_recording_always_share_a_fold_and_a_role():
    groups = [f"recording{i // 3}" for i in range(240)]  # 3 takes each, of one class
    labels = np.repeat(np.arange(10), 24)
    recording = np.array([int(g.removeprefix("recording")) for g in groups])
    folds = stratified_folds(labels, 5, seed=0, groups=groups)
    assert all(len(set(folds[recording == r])) == 1 for r in range(80))
    assert np.bincount(folds).min() >= 45  # still dealt evenly: 8 recordings of each class
    for fold in range(5):
        roles = kfold_roles(labels, 5, fold, seed=0, test_fraction=0.25, groups=groups)
        assert all(len(set(roles[recording == r])) == 1 for r in range(80))
        assert [np.sum((roles == TEST) & (labels == c)) for c in range(10)] == [6] * 10  # 2 of 8 recordings, whole
        assert (roles == VAL).any()


def test_fewer_than_two_folds_is_refused():
    with pytest.raises(ValueError, match="num_folds=1: need at least 2 folds"):
        stratified_folds(LABELS, 1, 0)


def test_batches_cover_every_segment_once_per_epoch_and_change_between_epochs():
    from genre_vit.data.datamodule import EpochBatchSampler

    batches = EpochBatchSampler(100, 16, shuffle=True, seed=1)
    epoch0 = list(batches)
    assert len(epoch0) == len(batches) == 7 and sorted(i for b in epoch0 for i in b) == list(range(100))
    batches.set_epoch(1)
    assert list(batches) != epoch0
    batches.set_epoch(0)
    assert list(batches) == epoch0  # an epoch's order depends on (seed, epoch) only


def test_batches_are_sharded_across_processes():
    from genre_vit.data.datamodule import EpochBatchSampler

    train = [list(EpochBatchSampler(101, 16, shuffle=True, seed=1, rank=r, world=2)) for r in range(2)]
    assert [sum(map(len, shard)) for shard in train] == [51, 51]  # padded by one segment
    assert {i for shard in train for b in shard for i in b} == set(range(101))
    val = [list(EpochBatchSampler(100, 16, shuffle=False, seed=1, rank=r, world=2)) for r in range(2)]
    assert sorted(i for shard in val for b in shard for i in b) == list(range(100))  # no duplicates
