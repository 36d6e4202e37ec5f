"""Whole-track spectrograms of a source, computed once and stored under a content hash.

An entry holds every readable track's log-spectrogram (one tensor, tracks side by side), where
each track starts, and the skip list. Segments are cut from it in memory (`SpectrogramTable.cut`),
so runs that differ only in segment step, image size or training crops share one entry. It is
keyed by exactly what changes it (source, decoding, spectrogram settings, the segment length
that short clips are padded to), written to a temporary file and renamed into place, so readers
see all or nothing.
One process builds an entry while the others wait for it (a lock file per entry); a write that
fails (a full or read-only disk) is reported with the path, and the run goes on in memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
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

log = logging.getLogger(__name__)
CACHE_FORMAT = 4  # 2: short tracks are no longer zero-padded; 3: short clips policy; 4: whole spectrograms


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


def extract_spectrograms(tracks: TrackList, features: SegmentFeatures, decoding: Decoding,
                         workers: int) -> SpectrogramTable:
    """Decode and featurise every track (in `workers` processes), skipping unusable ones with a warning."""
    jobs = [(p, features, decoding) for p in tracks.paths]
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        results = map(_extract_one, jobs)
    else:
        pool = ProcessPoolExecutor(workers, initializer=_init_worker)
        results = pool.map(_extract_one, jobs, chunksize=4)
    chunks, owners, skipped = [], [], []
    try:
        for i, result in enumerate(progress(results, total=len(jobs), description="Extracting features",
                                              transient=True, console=Console(stderr=True))):
            if isinstance(result, str):
                log.warning("Skipping %s: %s", tracks.paths[i], result)
                skipped.append((tracks.paths[i], result))
            else:
                chunks.append(result)
                owners.append(i)
    finally:
        if workers > 1:
            pool.shutdown()
    lengths = torch.tensor([0] + [c.shape[-1] for c in chunks], dtype=torch.int64)
    frames = torch.cat(chunks, dim=1) if chunks else torch.zeros(features.image_shape[0], 0)
    return SpectrogramTable(frames, lengths.cumsum(0), torch.tensor(owners, dtype=torch.int64), skipped)


def _canonical(paths: list[str]) -> list[str]:
    """Absolute, symlink-free spellings: the same files named from another directory still match."""
    return [os.path.realpath(p) for p in paths]


class FeatureCache:
    """Content-addressed store of SpectrogramTables under `root`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.extractions = 0  # how many tables this object computed rather than loaded

    def path(self, key: str) -> Path:
        return self.root / "features" / f"{key}.pt"

    def load(self, key: str, paths: list[str]) -> SpectrogramTable | None:
        """The stored table for `key`, or None if absent, damaged (removed with a warning) or
        built from another track list (the files changed)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            table = SpectrogramTable(entry["frames"], entry["offsets"], entry["track_index"],
                                     [tuple(s) for s in entry["skipped"]])
            if len(table.offsets) != len(table.track_index) + 1 or int(table.offsets[-1]) != table.frames.shape[1]:
                raise ValueError("frames, offsets and track index disagree")
        except Exception as err:  # noqa: BLE001 - any failure to read means: rebuild
            log.warning("Feature cache entry %s is damaged (%s); rebuilding it", path, str(err).splitlines()[0][:200])
            path.unlink(missing_ok=True)
            return None
        if entry["paths"] != _canonical(paths):
            log.info("Feature cache entry %s was built from another track list; rebuilding it", path)
            return None
        log.info("Feature cache hit: %s (%d tracks)", path, len(table.track_index))
        return table

    def store(self, key: str, paths: list[str], table: SpectrogramTable) -> Path | None:
        """Write atomically: a temporary file in the same folder, then rename over the final name.
        Returns None, with a warning naming the path, when the disk refuses the write."""
        path, tmp = self.path(key), None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                torch.save({"frames": table.frames, "offsets": table.offsets, "track_index": table.track_index,
                            "skipped": [list(s) for s in table.skipped], "paths": _canonical(paths)}, f)
            os.replace(tmp, path)
            return path
        except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
            log.warning("Could not write the feature cache entry %s (%s); this run goes on with its features "
                        "in memory", path, str(err).splitlines()[0][:200])
            return None
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)

    def get_or_build(self, key: str, tracks: TrackList, build) -> SpectrogramTable:
        """The stored table, or one built by `build()` and stored; concurrent callers build it once."""
        table = self.load(key, tracks.paths)
        if table is not None:
            return table
        path = self.path(key)
        with build_lock(path.with_suffix(".lock"), f"the feature cache entry {path}", stale=f".{key}.*.tmp"):
            table = self.load(key, tracks.paths)  # a process we waited for may have built it
            if table is None:
                started = time.perf_counter()
                table = build()
                seconds = time.perf_counter() - started
                log.info("Extracted features of %d tracks in %.1f s", len(tracks), seconds)
                self.extractions += 1
                if self.store(key, tracks.paths, table):
                    log.info("Feature cache stored: %s (%d tracks)", path, len(table.track_index))
        return table
