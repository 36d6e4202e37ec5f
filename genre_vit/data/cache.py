"""Whole-track spectrograms of a source, computed once and stored under a settings hash.

An entry holds every readable track's log-spectrogram (one tensor, tracks side by side), where
each track starts, the skip list, and each file's path, size and modification time. Segments are
cut from it in memory (`SpectrogramTable.cut`), so runs that differ only in segment step, image
size or training crops share one entry. It is keyed by exactly the settings that change it
(source, decoding, spectrogram settings, the segment length that short clips are padded to);
a file added, removed, replaced or edited in place (another size or modification time) is
noticed at the next run, and only the new or changed files are extracted again.
Entries are written to a temporary file and renamed into place, so readers see all or nothing.
One process builds an entry while the others wait for it (a lock file per entry); a write that
fails (a full or read-only disk) is reported with the path, and the run goes on in memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track as progress

from genre_vit.data.audio import AudioError, Decoding
from genre_vit.data.features import SegmentFeatures
from genre_vit.data.locks import build_lock
from genre_vit.data.sources import TrackList
from genre_vit.files import atomic_write

log = logging.getLogger(__name__)
CACHE_FORMAT = 5  # 2: short tracks not zero-padded; 3: short clips policy; 4: whole spectrograms; 5: file stamps


@dataclass
class SpectrogramTable:
    """Every readable track's (F, frames) log-spectrogram, side by side in `frames` (F, total).

    Track k of the table is track list entry `track_index[k]`, its frames are
    `frames[:, offsets[k]:offsets[k + 1]]`; skipped: (path, reason) for every track that has none.
    """

    frames: torch.Tensor
    offsets: torch.Tensor
    track_index: torch.Tensor
    skipped: list[tuple[str, str]]

    def spectrogram(self, k: int) -> torch.Tensor:
        return self.frames[:, self.offsets[k]:self.offsets[k + 1]]

    @classmethod
    def from_results(cls, paths: list[str], results: list[torch.Tensor | str], rows: int) -> SpectrogramTable:
        """Track i's result is its (F, frames) spectrogram, or the reason it is skipped."""
        chunks = [r for r in results if not isinstance(r, str)]
        owners = [i for i, r in enumerate(results) if not isinstance(r, str)]
        lengths = torch.tensor([0] + [c.shape[-1] for c in chunks], dtype=torch.int64)
        frames = torch.cat(chunks, dim=1) if chunks else torch.zeros(rows, 0)
        skipped = [(paths[i], r) for i, r in enumerate(results) if isinstance(r, str)]
        return cls(frames, lengths.cumsum(0), torch.tensor(owners, dtype=torch.int64), skipped)

    def cut(self, features: SegmentFeatures) -> SegmentTable:
        """Every track's windows (features.cut), as one table of segments."""
        chunks = [features.cut(self.spectrogram(k)) for k in range(len(self.track_index))]
        segments = torch.cat(chunks) if chunks else torch.zeros(0, *features.image_shape)
        owners = torch.repeat_interleave(self.track_index, torch.tensor([len(c) for c in chunks], dtype=torch.int64))
        return SegmentTable(segments, owners, self.skipped)


@dataclass
class SegmentTable:
    """All segments of a track list: `segments[i]` belongs to track `track_index[i]`.

    segments: (N, F, T) float32; track_index: (N,) int64 indexing the track list; skipped:
    (path, reason) for every track that yielded no segment.
    """

    segments: torch.Tensor
    track_index: torch.Tensor
    skipped: list[tuple[str, str]]


def cache_key(identity: dict, decoding: Decoding, features: SegmentFeatures) -> str:
    settings = {"format": CACHE_FORMAT, "source": identity, "decoding": dataclasses.asdict(decoding),
                "spectrogram": features.settings, "segment_frames": features.segment_frames}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _extract_one(args: tuple[str, SegmentFeatures, Decoding]) -> torch.Tensor | str:
    """One track -> its (F, frames) spectrogram, or the reason it is skipped."""
    path, features, decoding = args
    try:
        wave = decoding.load(path, features.segment_seconds)
    except AudioError as err:
        return str(err)
    with torch.no_grad():
        spectrogram = features.spectrogram(wave)
    if spectrogram.shape[-1] < features.segment_frames:  # other framing than `segment_seconds` assumes
        return f"shorter than one segment ({wave.numel() / decoding.sample_rate:.2f} s < {features.segment_seconds:.2f} s)"
    if not torch.isfinite(spectrogram).all():
        return "non-finite features"
    return spectrogram


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core: no oversubscription


def extract_spectrograms(paths: list[str], features: SegmentFeatures, decoding: Decoding,
                         workers: int) -> SpectrogramTable:
    """Decode and featurise every file (in `workers` processes), skipping unusable ones with a warning."""
    jobs = [(p, features, decoding) for p in paths]
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        results = map(_extract_one, jobs)
    else:
        pool = ProcessPoolExecutor(workers, initializer=_init_worker)
        results = pool.map(_extract_one, jobs, chunksize=4)
    done = []
    try:
        for i, result in enumerate(progress(results, total=len(jobs), description="Extracting features",
                                              transient=True, console=Console(stderr=True))):
            if isinstance(result, str):
                log.warning("Skipping %s: %s", paths[i], result)
            done.append(result)
    finally:
        if workers > 1:
            pool.shutdown()
    return SpectrogramTable.from_results(paths, done, features.image_shape[0])


Stamp = tuple[str, int, int]  # (absolute symlink-free path, size in bytes, modification time in ns)


def file_stamps(paths: list[str]) -> list[Stamp]:
    """What identifies each file's content for the cache: the same files named from another
    directory still match; a file replaced or edited in place does not."""
    stamps = []
    for path in paths:
        real = os.path.realpath(path)
        try:
            info = os.stat(real)
            stamps.append((real, info.st_size, info.st_mtime_ns))
        except OSError:
            stamps.append((real, -1, -1))
    return stamps


@dataclass
class CacheEntry:
    """A stored table and the stamps of the files it was built from, in track order."""

    table: SpectrogramTable
    stamps: list[Stamp]

    def results(self) -> dict[Stamp, torch.Tensor | str]:
        """Each stamped file's spectrogram, or the reason it was skipped."""
        found: dict[Stamp, torch.Tensor | str] = {}
        for k, index in enumerate(self.table.track_index.tolist()):
            found[self.stamps[index]] = self.table.spectrogram(k)
        stamp_of = {stamp[0]: stamp for stamp in self.stamps}
        for path, reason in self.table.skipped:
            stamp = stamp_of.get(os.path.realpath(path))
            if stamp is not None:
                found[stamp] = reason
        return found


class FeatureCache:
    """Store of SpectrogramTables under `root`, one entry per settings hash."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.extractions = 0  # how many times this object extracted features rather than loading them all

    def path(self, key: str) -> Path:
        return self.root / "features" / f"{key}.pt"

    def load(self, key: str) -> CacheEntry | None:
        """The stored entry for `key`, or None if absent or damaged (removed with a warning)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            table = SpectrogramTable(entry["frames"], entry["offsets"], entry["track_index"],
                                     [tuple(s) for s in entry["skipped"]])
            stamps = [tuple(s) for s in entry["stamps"]]
            if len(table.offsets) != len(table.track_index) + 1 or int(table.offsets[-1]) != table.frames.shape[1]:
                raise ValueError("frames, offsets and track index disagree")
        except Exception as err:  # noqa: BLE001 - any failure to read means: rebuild
            log.warning("Feature cache entry %s is damaged (%s); rebuilding it", path, str(err).splitlines()[0][:200])
            path.unlink(missing_ok=True)
            return None
        return CacheEntry(table, stamps)

    def store(self, key: str, stamps: list[Stamp], table: SpectrogramTable) -> Path | None:
        """Write atomically (a temporary file renamed over the final name), with the umask's mode.
        Returns None, with a warning naming the path, when the disk refuses the write."""
        path = self.path(key)
        try:
            return atomic_write(path, lambda f: torch.save({
                "frames": table.frames, "offsets": table.offsets, "track_index": table.track_index,
                "skipped": [list(s) for s in table.skipped], "stamps": [list(s) for s in stamps]}, f))
        except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
            log.warning("Could not write the feature cache entry %s (%s); this run goes on with its features "
                        "in memory", path, str(err).splitlines()[0][:200])
            return None

    def get_or_build(self, key: str, tracks: TrackList,
                     extract: Callable[[list[str]], SpectrogramTable]) -> SpectrogramTable:
        """The stored table if every file is as it was; else one where only the new or changed
        files are extracted by `extract(paths)`, stored. Concurrent callers build it once."""
        stamps = file_stamps(tracks.paths)
        entry = self.load(key)
        if entry is not None and entry.stamps == stamps:
            log.info("Feature cache hit: %s (%d tracks)", self.path(key), len(entry.table.track_index))
            return entry.table
        path = self.path(key)
        with build_lock(path.with_suffix(".lock"), f"the feature cache entry {path}", stale=f".{key}.*.tmp"):
            entry = self.load(key)  # a process we waited for may have built it
            if entry is not None and entry.stamps == stamps:
                return entry.table
            known = entry.results() if entry is not None else {}
            todo = [i for i, stamp in enumerate(stamps) if stamp not in known]
            if entry is not None:
                log.info("Feature cache entry %s: %d of %d files are new or changed (size or modification time), "
                         "%d are gone; extracting only the new or changed", path, len(todo), len(stamps),
                         len(set(known) - set(stamps)))
            started = time.perf_counter()
            fresh = extract([tracks.paths[i] for i in todo]) if todo else None
            if todo:
                log.info("Extracted features of %d tracks in %.1f s", len(todo), time.perf_counter() - started)
                self.extractions += 1
                known.update(CacheEntry(fresh, [stamps[i] for i in todo]).results())
            rows = fresh.frames.shape[0] if fresh is not None else entry.table.frames.shape[0]
            table = SpectrogramTable.from_results(tracks.paths, [known[stamp] for stamp in stamps], rows)
            if self.store(key, stamps, table):
                log.info("Feature cache stored: %s (%d tracks)", path, len(table.track_index))
        return table

