"""Track-level splits: every decision is made per track, before any segment exists.

A split gives each track a role: TRAIN, VAL, TEST or UNUSED.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRAIN, VAL, TEST, UNUSED = 0, 1, 2, -1
SPLITS = ("kfold", "filtered", "official")


def stratified_folds(labels: Sequence[int], num_folds: int, seed: int, groups: Sequence[str] | None = None) -> np.ndarray:
    """Assign each track a fold in [0, num_folds): (tracks,) int array.

    Each class is shuffled with `seed` and dealt round-robin, starting where the previous class
    stopped, so every fold gets each class's tracks in near-equal numbers and fold sizes differ
    by at most one. With `groups` (the recording each track was cut from), a class's recordings
    are dealt instead, so the tracks of one recording always share a fold.
    """
    labels = np.asarray(labels)
    if num_folds < 2:
        raise ValueError(f"num_folds={num_folds}: need at least 2 folds")
    rng = np.random.default_rng(seed)
    units = _units(labels, groups)
    unit_folds = np.empty(units.max(initial=-1) + 1, dtype=np.int64)
    start = 0
    for label in np.unique(labels):
        members = rng.permutation(np.unique(units[labels == label]))
        unit_folds[members] = (start + np.arange(len(members))) % num_folds
        start = (start + len(members)) % num_folds
    return unit_folds[units]


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int, groups: Sequence[str] | None = None) -> np.ndarray:
    """(tracks,) bool mask of a held-out set: `fraction` of each class's tracks (with `groups`, of
    its recordings, whole), rounded, chosen by `seed`."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 1])  # independent of the fold shuffle with the same seed
    units = _units(labels, groups)
    held = np.zeros(units.max(initial=-1) + 1, dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.unique(units[labels == label]))
        held[members[: int(round(fraction * len(members)))]] = True
    return held[units]


def recording_ids(groups: Sequence[str]) -> np.ndarray:
    """(tracks,) an integer id per distinct group: the recording each track was cut from."""
    return np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1].reshape(-1)


def _units(labels: np.ndarray, groups: Sequence[str] | None) -> np.ndarray:
    """What a split deals: each track's index, or its recording's id (the same for its every take)."""
    return np.arange(len(labels)) if groups is None else recording_ids(groups)


def kfold_roles(labels: Sequence[int], num_folds: int, fold: int, seed: int, test_fraction: float,
                groups: Sequence[str] | None = None) -> np.ndarray:
    """Roles for fold `fold`: an optional stratified test hold-out first, then k folds of the rest;
    with `groups`, the tracks of one recording always share a role."""
    labels = np.asarray(labels)
    roles = np.full(len(labels), TRAIN, dtype=np.int64)
    test = (stratified_holdout(labels, test_fraction, seed, groups) if test_fraction > 0
            else np.zeros(len(labels), bool))
    roles[test] = TEST
    rest = np.flatnonzero(~test)
    folds = stratified_folds(labels[rest], num_folds, seed, None if groups is None else [groups[i] for i in rest])
    roles[rest[folds == fold]] = VAL
    return roles


def filtered_roles(track_ids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """GTZAN's fault-filtered split (Kereliuk & Sturm, as shipped by torchaudio).

    Returns the roles of `track_ids` (tracks in no list are UNUSED) and the listed ids that are
    missing from `track_ids`.
    """
    from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

    listed = {t: role for role, ids in ((TRAIN, filtered_train), (VAL, filtered_valid), (TEST, filtered_test))
              for t in ids}
    roles = np.array([listed.get(t, UNUSED) for t in track_ids], dtype=np.int64)
    present = set(track_ids)
    return roles, sorted(t for t in listed if t not in present)


def official_roles(folds: Sequence[int], fold: int) -> np.ndarray:
    """Roles for fold `fold` of the folds a data set ships (ESC-50's five, from 0): that fold's
    tracks validate, every other track trains."""
    return np.where(np.asarray(folds) == fold, VAL, TRAIN).astype(np.int64)
