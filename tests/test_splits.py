"""Folds are made by track, stratified by genre, and fixed by the seed."""
import numpy as np
import pytest

from genre_vit.data.splits import stratified_folds

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


def test_fewer_than_two_folds_is_refused():
    with pytest.raises(ValueError, match="data.num_folds"):
        stratified_folds(LABELS, 1, 0)
