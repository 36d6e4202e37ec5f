"""Where tracks come from: lists of (audio file, genre label) and the class names."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Protocol

# What the decoder (libsndfile, shipped in the soundfile wheel) reads, and common formats it does not.
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")
UNDECODABLE_EXTENSIONS = (".m4a", ".aac", ".mp4", ".alac", ".wma", ".ape", ".webm", ".mka", ".amr")


class DataError(Exception):
    """The data set as a whole cannot be used (missing root, no classes, an empty class)."""


@dataclass(frozen=True)
class TrackList:
    """Tracks in a fixed order: `paths[i]` has genre `classes[labels[i]]`.

    `ignored` lists (path, reason) for files in class folders that are not audio. A data set that
    ships `num_folds` folds of its own gives `folds[i]` (from 0) for every track, `groups[i]` names the recording
    a track was cut from (tracks of one group must never be split apart; None: every track is a
    recording of its own), and `missing` lists the tracks its index names that are not on disk.
    """

    paths: list[str]
    labels: list[int]
    classes: list[str]
    ignored: list[tuple[str, str]] = field(default_factory=list)
    num_folds: int | None = None
    folds: list[int] | None = None
    groups: list[str] | None = None
    missing: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


class Source(Protocol):
    """Anything that lists tracks; `identity()` names its content for the feature cache."""

    def tracks(self) -> TrackList: ...

    def identity(self) -> dict: ...


def why_not_audio(path: PurePath) -> str | None:
    """Why a file is not used as audio (by its extension), or None if it is."""
    suffix = path.suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        return None
    if suffix in UNDECODABLE_EXTENSIONS:
        return (f"{suffix} is not supported by the decoder (libsndfile reads {' '.join(AUDIO_EXTENSIONS)}): convert it, "
                f"e.g. ffmpeg -i {path.name} {path.stem}.flac")
    return f"not an audio file (extensions: {' '.join(AUDIO_EXTENSIONS)})"


def files_under(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Audio files at any depth under `folder`, sorted, and (path, reason) for the other files.
    Hidden files and folders (`.DS_Store`, `.git/`) are left out; linked folders are followed,
    each real folder once. Training and predict both use it."""
    audio, ignored, seen = [], [], set()
    for parent, folders, names in os.walk(folder, followlinks=True):
        if (real := os.path.realpath(parent)) in seen:  # a link back up the tree, or a second link to one folder
            folders.clear()
            continue
        seen.add(real)
        # sorted, real folders before links: a folder reached both ways is listed by its own path, in any copy of the tree
        folders[:] = sorted((name for name in folders if not name.startswith(".")),
                            key=lambda name: (os.path.islink(os.path.join(parent, name)), name))
        for path in (Path(parent) / name for name in names if not name.startswith(".")):
            if path.is_file():
                reason = why_not_audio(path)
                audio.append(path) if reason is None else ignored.append((str(path), reason))
    return sorted(audio), sorted(ignored, key=lambda item: Path(item[0]))


def list_class_folders(root: str | Path, classes: list[str] | None = None) -> TrackList:
    """Tracks of a `<root>/<class>/.../<file>` tree: the class is the top-level folder, files are
    found at any depth under it. Classes are the sorted folder names unless given."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={str(root)!r} is not a directory: expected a folder with one sub-folder per class")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"data.root={str(root)!r} holds no class folders: expected <root>/<class>/<audio files>")
    listed, ignored = [], []  # (path, label) of every audio file, in class then path order
    for label, name in enumerate(classes):
        files, others = files_under(root / name) if (root / name).is_dir() else ([], [])
        ignored += others
        if not files:
            raise DataError(f"class folder {str(root / name)!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}), "
                            "at any depth")
        listed += [(path, label) for path in files]
    file_of = {path: (path.stat().st_dev, path.stat().st_ino) for path, _ in listed}  # links share it
    kept = {}  # a file -> the (path, label) that lists it: a link to it is not a second track
    for path, label in listed:
        first = kept.setdefault(file_of[path], (path, label))
        if first[1] != label:
            raise DataError(f"{path} and {first[0]} are one file (a link) in two classes, {classes[label]!r} and "
                            f"{classes[first[1]]!r}: keep it in one class folder")
        if first[0].is_symlink() and not path.is_symlink():
            kept[file_of[path]] = (path, label)  # the file itself rather than a link to it
    chosen = set(kept.values())
    ignored += [(str(path), f"the same file as {kept[file_of[path]][0]}: one track, listed once")
                for path, label in listed if (path, label) not in chosen]
    paths = [str(path) for path, label in listed if (path, label) in chosen]
    labels = [label for path, label in listed if (path, label) in chosen]
    return TrackList(paths, labels, list(classes), ignored)


@dataclass
class FolderSource:
    """Any class-per-folder audio collection."""

    root: str

    def tracks(self) -> TrackList:
        return list_class_folders(self.root)

    def identity(self) -> dict:
        return {"kind": "folder", "root": str(Path(self.root).expanduser().resolve())}


@dataclass
class GtzanSource:
    """A GTZAN copy in any common layout, with GTZAN's genre list from torchaudio.

    `root` may hold `genres/` (the original `.au` release), `genres_original/` (the repackaged
    `.wav` release, also inside a `Data/` folder), or the ten genre folders directly.
    """

    root: str

    def folder(self) -> Path:
        from torchaudio.datasets.gtzan import gtzan_genres

        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise DataError(f"data.root={str(root)!r} is not a directory: expected a GTZAN copy "
                            f"(genres/<genre>/<genre>.000NN.au or genres_original/<genre>/<genre>.000NN.wav)")
        for candidate in (root, root / "genres", root / "genres_original", root / "Data" / "genres_original"):
            if any((candidate / genre).is_dir() for genre in gtzan_genres):
                return candidate
        raise DataError(f"data.root={str(root)!r} holds no GTZAN genre folders ({', '.join(gtzan_genres)}), "
                        f"directly or under genres/ or genres_original/")

    def tracks(self) -> TrackList:
        from torchaudio.datasets.gtzan import gtzan_genres

        return list_class_folders(self.folder(), classes=list(gtzan_genres))

    def identity(self) -> dict:
        return {"kind": "gtzan", "root": str(self.folder().resolve())}


ESC50_INDEX = "meta/esc50.csv"  # the release's index: filename, fold (1-5), target, category, esc10, src_file, take
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file")
ESC_SUBSETS = ("esc50", "esc10")


@dataclass
class Esc50Source:
    """ESC-50 as released (`subset="esc10"`: its ESC-10 subset): the clips under `<root>/audio/`,
    their classes and folds from `<root>/meta/esc50.csv` (`root` is the release's ESC-50-master
    folder). The release's five folds keep the clips cut from one recording together, so
    `data.split=official` scores a fold without training on its recordings. Clips the index lists
    that are not on disk are left out and reported: a subset of the files trains too."""

    root: str
    subset: str = "esc50"

    def index_rows(self) -> tuple[Path, list[dict]]:
        """The index's path and its rows of this subset, `fold` and `target` as integers."""
        root = Path(self.root).expanduser()
        index = root / ESC50_INDEX
        if not index.is_file():
            raise DataError(f"data.root={str(root)!r} holds no {ESC50_INDEX}: expected the ESC-50 release "
                            "(the ESC-50-master folder, with audio/ and meta/)")
        with index.open(newline="", encoding="utf-8-sig") as f:  # -sig: as a spreadsheet may save it, with a BOM
            reader = csv.DictReader(f)
            absent = [c for c in ESC50_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise DataError(f"{index} has no {', '.join(absent)} column: expected ESC-50's index "
                                f"({', '.join(ESC50_COLUMNS)}, ...)")
            rows = []
            for row in reader:
                try:
                    row["fold"], row["target"] = int(row["fold"]), int(row["target"])
                except (TypeError, ValueError):
                    raise DataError(f"{index}, line {reader.line_num}: fold {row['fold']!r} and target {row['target']!r} "
                                    "must be whole numbers") from None
                if row["fold"] < 1:
                    raise DataError(f"{index}, line {reader.line_num}: fold {row['fold']}: ESC-50 counts its folds from 1")
                if self.subset == "esc50" or str(row["esc10"]).strip().lower() == "true":
                    rows.append(row)
        if not rows:
            raise DataError(f"{index} lists no clip of data.source.subset={self.subset}")
        return index, rows

    def tracks(self) -> TrackList:
        index, rows = self.index_rows()
        names = {row["target"]: row["category"] for row in rows}
        classes = [names[target] for target in sorted(names)]  # the release's class order
        audio = index.parents[1] / "audio"
        paths, labels, folds, groups, missing = [], [], [], [], []
        for row in sorted(rows, key=lambda row: row["filename"]):
            path = audio / row["filename"]
            if not path.is_file():
                missing.append(row["filename"])
                continue
            paths.append(str(path))
            labels.append(classes.index(row["category"]))
            folds.append(row["fold"] - 1)
            groups.append(row["src_file"])  # the recording its takes were cut from
        empty = [name for label, name in enumerate(classes) if label not in labels]
        if empty:
            raise DataError(f"class {empty[0]!r} has none of its clips in {audio} ({len(missing)} of the {len(rows)} "
                            f"clips {ESC50_INDEX} lists are missing)")
        return TrackList(paths, labels, classes, num_folds=max(row["fold"] for row in rows), folds=folds, groups=groups,
                         missing=missing)

    def identity(self) -> dict:
        return {"kind": self.subset, "root": str(Path(self.root).expanduser().resolve())}


def track_id(path: str) -> str:
    """GTZAN's id of a track file: `.../blues/blues.00029.wav` -> `blues.00029`."""
    return Path(path).stem
