"""GenreDataModule: tracks -> folds (by track) -> cached spectrograms -> in-memory batches of
fixed windows or of random crops."""
from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from genre_vit.data.audio import Decoding, duration_seconds
from genre_vit.data.cache import FeatureCache, SegmentTable, SpectrogramTable, cache_key, extract_spectrograms
from genre_vit.data.features import PitchTimeWarp, Resize, SegmentFeatures, normalization_stats, sounding_starts
from genre_vit.data.sources import DataError, Source, TrackList, track_id
from genre_vit.data.splits import TEST, TRAIN, VAL, filtered_roles, kfold_roles, official_roles, recording_ids

log = logging.getLogger(__name__)
# Epoch e of a run seeded s shuffles with generator seed s * EPOCH_SEED_STRIDE + e, distinct for every
# (s, e) while e < EPOCH_SEED_STRIDE. Changing it changes every order, so old checkpoints resume inexactly.
EPOCH_SEED_STRIDE = 100_003


class SegmentBatchDataset(Dataset):
    """In-memory segments indexed by a list of positions (one EpochBatchSampler batch) -> one whole
    batch, by tensor indexing.

    Yields (segments (B, F, T), labels (B,), track ids (B,)); no per-item Python work.
    """

    def __init__(self, segments: torch.Tensor, labels: torch.Tensor, tracks: torch.Tensor):
        self.segments, self.labels, self.tracks = segments, labels, tracks

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index)
        return self.segments[index].float(), self.labels[index], self.tracks[index]


class EpochBatchSampler(Sampler[list[int]]):
    """Batch sampler: yields one list of segment positions per batch, for this process's share of the data.

    With `shuffle`, each epoch is a permutation drawn from (seed, epoch) alone, so a resumed
    run sees the same batches as an uninterrupted one (Lightning calls `set_epoch`); `resume_at`
    (epoch, n) makes the first pass over that epoch skip its first n batches. Under DDP
    process `rank` of `world` takes every world-th segment, as DistributedSampler does; for
    training the order is padded by wrapping around so that every process gets as many
    batches as the others (DDP's collectives need it).
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world, self.epoch = rank, world, 0
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches already trained on)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _positions(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.size, self.world)
        generator = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        order = torch.cat([order, order[: (-self.size) % self.world]])
        return order[self.rank :: self.world]

    def __len__(self) -> int:
        return -(-len(self._positions()) // self.batch_size)

    def __iter__(self):
        chunks = self._positions().split(self.batch_size)
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            chunks = chunks[self.resume_at[1]:]
        self.resume_at = None
        yield from (chunk.tolist() for chunk in chunks)


class CropBatchDataset(Dataset):
    """Random windows of whole-track spectrograms: a batch of (track, start) draws -> one batch.

    Track k (of the K given) has frames `frames[:, begin[k]:begin[k] + length[k]]`; a draw (k, s)
    is its `window` frames from s, resized as the fixed windows are. With `warp`, a draw
    (k, s, width, cents) is `width` frames from s, resampled to `window` and pitch-shifted by
    `cents` (PitchTimeWarp). Yields (segments (B, F, T), labels (B,), track ids (B,)) like
    SegmentBatchDataset, by tensor indexing.
    """

    def __init__(self, frames: torch.Tensor, begin: torch.Tensor, length: torch.Tensor, labels: torch.Tensor,
                 tracks: torch.Tensor, window: int, resize: Resize, warp: PitchTimeWarp | None = None,
                 starts: list[torch.Tensor] | None = None):
        self.frames, self.begin, self.length = frames, begin, length
        self.labels, self.tracks, self.window, self.resize, self.warp = labels, tracks, window, resize, warp
        self.starts = starts  # per track, the starts its crops may take (None: any)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, draws: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, start, *deformation = torch.as_tensor(draws).unbind(1)
        start = self.begin[k] + start
        if self.warp is not None:
            crops = self.warp(self.frames, start, *deformation)
        else:
            crops = self.frames[:, start.unsqueeze(1) + torch.arange(self.window)].permute(1, 0, 2).float()
        return self.resize(crops), self.labels[k], self.tracks[k]


def deforms(time_stretch: float, pitch_shift: float) -> bool:
    """Whether crops are stretched (factor > 1) or pitch-shifted (semitones > 0)."""
    return time_stretch > 1 or pitch_shift > 0


class CropBatchSampler(EpochBatchSampler):
    """Batch sampler of random crops: `batches` batches per epoch of (track, start) draws, the
    track uniform over the K tracks of `length` frames, the start uniform over its windows of
    `window` frames. With `time_stretch` > 1 or `pitch_shift` > 0 a draw is (track, start,
    width, cents): the crop spans `width` frames, `window` times a factor log-uniform in
    [1 / time_stretch, time_stretch] (at most the track), and is shifted by cents uniform in
    +-100 * pitch_shift. With `starts` (per track, the starts allowed: `sounding_starts`) the
    start is uniform over those instead. Draws depend on (seed, epoch) only, so a resumed run
    sees the same batches; under DDP process `rank` takes every world-th draw."""

    def __init__(self, length: torch.Tensor, window: int, batch_size: int, batches: int, seed: int, rank: int = 0,
                 world: int = 1, time_stretch: float = 1.0, pitch_shift: float = 0.0,
                 starts: Sequence[torch.Tensor] | None = None):
        super().__init__(batches * batch_size * world, batch_size, True, seed, rank, world)
        self.length, self.window = length, window
        self.time_stretch, self.pitch_shift = time_stretch, pitch_shift
        if starts is not None and self.deforms:
            raise ValueError("starts chosen among a track's windows need undeformed crops (a deformed crop's width varies)")
        self.starts = None if starts is None else (torch.cat(list(starts)), _offsets(starts))

    @property
    def deforms(self) -> bool:
        return deforms(self.time_stretch, self.pitch_shift)

    def _positions(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + self.epoch)
        k = torch.randint(len(self.length), (self.size,), generator=generator)
        width = torch.full_like(k, self.window)
        if self.deforms:
            log_stretch = (torch.rand(self.size, generator=generator) * 2 - 1) * math.log(self.time_stretch)
            width = torch.minimum((self.window * log_stretch.exp()).round().long(), self.length[k])
            cents = ((torch.rand(self.size, generator=generator) * 2 - 1) * 100 * self.pitch_shift).round().long()
        if self.starts is None:
            start = (torch.rand(self.size, generator=generator) * (self.length[k] - width + 1)).long()
        else:  # uniform over the track's allowed starts
            allowed, offsets = self.starts
            count = offsets[k + 1] - offsets[k]
            start = allowed[offsets[k] + (torch.rand(self.size, generator=generator) * count).long()]
        draws = [k, start, width, cents] if self.deforms else [k, start]
        return torch.stack(draws, dim=1)[self.rank :: self.world]


def _offsets(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """(K + 1,) where each of K concatenated parts begins, and the total."""
    return torch.cumsum(torch.as_tensor([0] + [len(p) for p in parts]), dim=0)


class GenreDataModule(L.LightningDataModule):
    """Segments of one split of the tracks into train / validation (/ test).

    `split="kfold"`: validation tracks are fold `fold` of `num_folds` stratified folds, after an
    optional stratified test hold-out of `test_fraction`. `split="filtered"`: GTZAN's
    fault-filtered lists (`fold` is ignored). `split="official"`: the folds the data set ships
    (ESC-50's: fold 0 validates its fold 1). Splits are decided per track before segmenting,
    so no validation or test track contributes a training segment. Features come from (and go
    to) the shared feature cache as whole-track spectrograms. `root` is where the source's audio
    lives (recorded in the hyper-parameters; the source reads it).

    Validation and test segments are every window of a track (`features.segment_step` apart, and
    with `features.end_window` one ending at its last frame), and a track's score is the mean
    over them. Training batches are the same fixed windows, shuffled
    each epoch, or with `random_crops` windows cut at random places of the training tracks at
    every step (`batches_per_epoch` batches between validations): many more distinct examples
    from the same tracks; `time_stretch` (> 1) and `pitch_shift` (semitones, > 0) also stretch
    and shift each crop at random (CropBatchSampler, PitchTimeWarp). With the features'
    `sound_within_db`, windows and crops alike are those that hold sound (`sounding_starts`).
    """

    def __init__(
        self,
        *,
        source: Source,
        root: str,
        features: SegmentFeatures,
        sample_rate: int,
        clip_seconds: float | None,
        short_clips: str,
        min_seconds: float,
        split: str,
        num_folds: int,
        fold: int,
        split_seed: int,
        test_fraction: float,
        normalization: str,
        random_crops: bool,
        time_stretch: float,
        pitch_shift: float,
        batches_per_epoch: int,
        batch_size: int,
        eval_batch_size: int,
        feature_workers: int,
        cache_dir: str,
        report_dir: str | None,
        seed: int,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["source", "features"], logger=False)
        self.source, self.features = source, features
        self.decoding = Decoding(sample_rate, clip_seconds, short_clips, min_seconds)
        self.cache = FeatureCache(cache_dir)
        self.spectrograms: SpectrogramTable | None = None
        self.table: SegmentTable | None = None  # the fixed windows of every track (features.cut)
        self.missing: list[str] = []  # tracks the data set's index or a split lists that are not on disk
        self.test_set: SegmentBatchDataset | None = None
        self.train_crops: CropBatchDataset | None = None  # with random_crops
        self.norm_mean: torch.Tensor | None = None
        self.norm_std: torch.Tensor | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches trained) from a checkpoint

    def state_dict(self) -> dict[str, int]:
        """Saved in every checkpoint: where training is, so a mid-epoch resume skips the batches
        already trained on. (Read from the trainer: the loader itself runs a batch ahead.)"""
        if not self.trainer:
            return {}
        return {"epoch": self.trainer.current_epoch,  # processed: a save in on_train_batch_end counts its batch
                "batches_done": self.trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self.resume_at = (state["epoch"], state["batches_done"])

    @cached_property
    def track_list(self) -> TrackList:
        return self.source.tracks()

    @property
    def classes(self) -> list[str]:
        return self.track_list.classes

    @property
    def recordings(self) -> torch.Tensor | None:
        """(tracks,) the id of the recording each track was cut from, for splits inside the
        training tracks that must keep a recording's takes together; None: every track is its own."""
        groups = self.track_list.groups
        return None if groups is None else torch.as_tensor(recording_ids(groups))

    def prepare_data(self) -> None:
        self._load_table()

    def _load_table(self) -> SegmentTable:
        if self.table is None:
            hp = self.hparams
            key = cache_key(self.source.identity(), self.decoding, self.features)
            workers = hp.feature_workers or os.cpu_count() or 1
            self.spectrograms = self.cache.get_or_build(key, self.track_list, lambda paths: self._extract(paths, workers))
            self.table = self.spectrograms.cut(self.features)
        return self.table

    def _extract(self, paths: list[str], workers: int) -> SpectrogramTable:
        self.check_lengths()
        return extract_spectrograms(paths, self.features, self.decoding, workers)

    def check_lengths(self) -> None:
        """Before any feature work: refuse a data set whose clips are too short for the segment
        length and the short-clip policy to leave every class a track, naming the fix."""
        tracks, segment = self.track_list, self.features.segment_seconds
        floor = self.decoding.usable_seconds(segment)
        lengths = [duration_seconds(p) for p in tracks.paths]
        short = [i for i, length in enumerate(lengths) if length is not None and length < floor]
        usable = set(range(len(tracks))) - set(short)
        empty = [name for label, name in enumerate(tracks.classes) if not any(tracks.labels[i] == label for i in usable)]
        if not empty:
            return
        seconds = [lengths[i] for i in short]
        fix = ("data.short_clips=repeat (repeat a short clip to one segment) or a shorter features.segment_frames"
               if self.decoding.short_clips == "skip" else
               f"a smaller data.min_seconds (now {self.decoding.min_seconds}) or a shorter features.segment_frames")
        raise DataError(f"{len(short)} of {len(tracks)} files are too short to use ({min(seconds):.2f}-{max(seconds):.2f} s; "
                        f"one segment is {segment:.2f} s), leaving class {empty[0]!r} with no track: set {fix}")

    def check_classes(self) -> None:
        """Before any feature work: refuse fewer than two classes, and a fold that would train on no
        track of a class; warn, naming class and folds, where other folds would, or where folds
        validate no track of a class (it has fewer tracks than folds)."""
        hp, tracks = self.hparams, self.track_list
        if len(tracks.classes) < 2:
            raise DataError(f"data.root={hp.root} holds {len(tracks.classes)} class ({', '.join(map(repr, tracks.classes))}): "
                            "a classifier needs at least 2 classes, one sub-folder each")
        if hp.split == "filtered":
            return
        if hp.split == "official":
            if tracks.folds is None:
                raise DataError(f"data.split=official needs a data set that ships its folds (data=esc50); {hp.root} "
                                "does not: use data.split=kfold")
            if tracks.num_folds != hp.num_folds:
                raise DataError(f"data.num_folds={hp.num_folds}, but the data set ships {tracks.num_folds} folds: set "
                                f"data.num_folds={tracks.num_folds}")
            empty = sorted(set(range(tracks.num_folds)) - set(tracks.folds))
            if empty:
                raise DataError(f"the data set's fold {empty[0] + 1} has none of its clips on disk ({len(tracks.missing)} "
                                "listed clips are missing): restore them, or use data.split=kfold")
        labels = np.asarray(tracks.labels)
        roles = np.stack([self.fold_roles(f) for f in range(hp.num_folds)])  # (folds, tracks)
        for label, name in enumerate(tracks.classes):
            mine = roles[:, labels == label]
            untrained = [f for f in range(hp.num_folds) if not (mine[f] == TRAIN).any()]
            unvalidated = [f for f in range(hp.num_folds) if not (mine[f] == VAL).any()]
            where = f"class {name!r} has {mine.shape[1]} track(s) for data.num_folds={hp.num_folds}"
            fix = ("restore its clips that the data set's index lists" if tracks.folds is not None
                   else "add tracks to it or remove its folder")
            if hp.fold in untrained:
                raise DataError(f"{where}: fold {hp.fold} (this run) would train on none of them (so would folds "
                                f"{untrained}); {fix}")
            if untrained:
                log.warning("%s: folds %s train on none of them; %s", where, untrained, fix)
            if unvalidated:
                log.warning("%s: folds %s validate none of them", where, unvalidated)
            if hp.split == "kfold" and hp.test_fraction > 0 and not (mine[0] == TEST).any():
                log.warning("%s: data.test_fraction=%s holds out none of them (its share rounds to none)", where,
                            hp.test_fraction)

    def fold_roles(self, fold: int) -> np.ndarray:
        """(tracks,) TRAIN / VAL / TEST for fold `fold` of a k-fold or an official split."""
        hp, tracks = self.hparams, self.track_list
        if hp.split == "official":
            return official_roles(tracks.folds, fold)
        return kfold_roles(tracks.labels, hp.num_folds, fold, hp.split_seed, hp.test_fraction, tracks.groups)

    def _roles_and_missing(self) -> tuple[np.ndarray, list[str]]:
        hp, tracks = self.hparams, self.track_list
        if hp.split == "filtered":
            roles, absent = filtered_roles([track_id(p) for p in tracks.paths])
            return roles, list(tracks.missing) + absent
        return self.fold_roles(hp.fold), list(tracks.missing)

    def held_out_tracks(self) -> dict[str, list[str]]:
        """The split's validation and test tracks, as sorted `<class>/<file name>`: a checkpoint
        records them, since a file added to or removed from the data set moves tracks between folds."""
        roles, tracks = self._roles_and_missing()[0], self.track_list
        return {stage: sorted(f"{tracks.classes[tracks.labels[i]]}/{Path(tracks.paths[i]).name}"
                              for i in np.flatnonzero(roles == role)) for stage, role in (("val", VAL), ("test", TEST))}

    def track_roles(self) -> np.ndarray:
        """(tracks,) TRAIN / VAL / TEST / UNUSED for every listed track; tracks that the data set's
        index or the filtered split lists and that are not on disk are reported (missing.csv)."""
        hp = self.hparams
        roles, self.missing = self._roles_and_missing()
        if self.missing:
            lister = "the filtered split" if hp.split == "filtered" else "the data set's index"
            log.warning("%d tracks listed by %s are missing on disk (listed in missing.csv): %s%s", len(self.missing),
                        lister, ", ".join(self.missing[:10]), " ..." if len(self.missing) > 10 else "")
        return roles

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        tracks = self.track_list
        table = self._load_table()
        roles = torch.from_numpy(self.track_roles())
        skipped = self._report_skipped(table)
        readable = np.zeros(len(tracks), dtype=bool)
        readable[torch.unique(table.track_index).numpy()] = True
        training, track_labels = roles.numpy() == TRAIN, np.asarray(tracks.labels)
        for label, name in enumerate(tracks.classes):
            mine = track_labels == label
            if not (mine & readable).any():
                raise DataError(f"class {name!r} has no readable track (all its files were skipped)")
            if not (mine & readable & training).any():  # check_classes saw tracks to train on, before decoding
                unread = [Path(tracks.paths[i]).name for i in np.flatnonzero(mine & training)]
                raise DataError(f"class {name!r} has no readable track to train on in {self.split_name()}: "
                                f"its training tracks' files were skipped ({', '.join(unread[:5])}"
                                f"{' ...' if len(unread) > 5 else ''}; reasons in skipped.csv): replace them, "
                                "or add tracks to the class")
        labels = torch.as_tensor(tracks.labels)[table.track_index]
        segment_role = roles[table.track_index]
        self.train_set, self.val_set, self.test_set = (
            self._subset(table, labels, segment_role == role) for role in (TRAIN, VAL, TEST))
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise DataError(f"data.split={self.hparams.split!r} leaves no training or no validation segment")
        self.norm_mean, self.norm_std = normalization_stats(table.segments[segment_role == TRAIN],
                                                            self.hparams.normalization)
        if self.hparams.random_crops:
            self.train_crops = self._crops(self.spectrograms, roles)
        self.counts = {
            f"{name}_{unit}": int(n)
            for name, subset in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set))
            for unit, n in (("tracks", torch.unique(subset.tracks).numel()), ("segments", len(subset)))
        }
        self.counts["skipped_files"] = skipped
        if self.missing:
            self.counts["missing_tracks"] = len(self.missing)
        log.info("Split %s (%s): %s", self.hparams.split, self.split_name(), self.counts)

    def split_name(self) -> str:
        """This run's split in words: `fold 2 of 5`, `the data set's fold 3 of 5`, `GTZAN's fault-filtered lists`."""
        hp = self.hparams
        return {"kfold": f"fold {hp.fold} of {hp.num_folds}", "official": f"the data set's fold {hp.fold + 1} of {hp.num_folds}",
                "filtered": "GTZAN's fault-filtered lists"}[hp.split]

    @staticmethod
    def _subset(table: SegmentTable, labels: torch.Tensor, mask: torch.Tensor) -> SegmentBatchDataset:
        return SegmentBatchDataset(table.segments[mask], labels[mask], table.track_index[mask])

    def _crops(self, spectrograms: SpectrogramTable, roles: torch.Tensor) -> CropBatchDataset:
        """Random-crop training data over the whole spectrograms of the training tracks."""
        chosen = roles[spectrograms.track_index] == TRAIN
        begin, end = spectrograms.offsets[:-1][chosen], spectrograms.offsets[1:][chosen]
        tracks = spectrograms.track_index[chosen]
        labels = torch.as_tensor(self.track_list.labels)[tracks]
        window, hp = self.features.segment_frames, self.hparams
        warp = PitchTimeWarp(self.features.row_hz, window) if deforms(hp.time_stretch, hp.pitch_shift) else None
        within_db = self.features.sound_within_db
        starts = None if within_db is None else [
            sounding_starts(spectrograms.frames[:, b:e], window, within_db) for b, e in zip(begin.tolist(), end.tolist())]
        return CropBatchDataset(spectrograms.frames, begin, end - begin, labels, tracks, window, self.features.resize,
                                warp, starts)

    def _report_skipped(self, table: SegmentTable) -> int:
        """Print the counts and write `skipped.csv` (files that cannot be used) and `missing.csv`
        (tracks the data set's index or the filtered split lists that are not on disk) in the run directory."""
        for path, reason in self.track_list.ignored:
            log.warning("Skipping %s: %s", path, reason)
        rows = self.track_list.ignored + table.skipped
        if rows:
            log.warning("Skipped %d files of %d (listed in skipped.csv in the run directory)", len(rows),
                        len(self.track_list) + len(self.track_list.ignored))
        if self.hparams.report_dir:
            self._write_csv("skipped.csv", ["path", "reason"], rows)
            if self.missing:
                self._write_csv("missing.csv", ["track"], [[t] for t in self.missing])
        return len(rows)

    def _write_csv(self, name: str, header: list[str], rows: list) -> None:
        path = Path(self.hparams.report_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def _loader(self, dataset: SegmentBatchDataset, batch_size: int, shuffle: bool) -> DataLoader:
        """Whole batches from the in-memory tensors; this process's share under DDP (the trainer
        configs set use_distributed_sampler=false: the batches are sharded here)."""
        batches = EpochBatchSampler(len(dataset), batch_size, shuffle, self.hparams.seed, *self._rank_world())
        if shuffle:
            batches.resume_at = self.resume_at
        return DataLoader(dataset, sampler=batches, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        if self.train_crops is None:
            return self._loader(self.train_set, self.hparams.batch_size, shuffle=True)
        hp = self.hparams
        batches = CropBatchSampler(self.train_crops.length, self.train_crops.window, hp.batch_size,
                                   hp.batches_per_epoch, hp.seed, *self._rank_world(), hp.time_stretch, hp.pitch_shift,
                                   self.train_crops.starts)
        batches.resume_at = self.resume_at
        return DataLoader(self.train_crops, sampler=batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.hparams.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if not self.test_set:
            raise DataError("no test tracks: set data.test_fraction > 0 or use data.split=filtered")
        return self._loader(self.test_set, self.hparams.eval_batch_size, shuffle=False)
