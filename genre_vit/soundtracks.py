"""A set of real recordings to measure recipes on, fetched from Debian's package archive alone:
excerpts of the game soundtracks that Debian ships, one class per soundtrack, in the
class-per-folder layout that `data=folder` reads.

    python -m genre_vit.soundtracks outputs/soundtracks                  # 15 classes x 10 tracks of 30 s
    python -m genre_vit.train -m data=folder data.root=outputs/soundtracks/tracks fold=0,1,2,3,4

The packages come from Debian's archive (`apt-get download`, no root needed) and are unpacked
with `dpkg-deb -x` under `<out>/packages`; `.deb` files already in `<out>/debs` are not fetched
again. The label is the soundtrack a track belongs to, not a genre: each soundtrack has its own
composers, instruments and production, and a few mix styles, so the task is harder than GTZAN
for per-track statistics. The excerpts keep the source's channels and sample rate (the data
module mixes and resamples); each is cut from the middle of a track at least 10 s longer than it.

`--events 5` also writes `<out>/events/`: from the middle of each excerpt, a 5 s clip of which a
random span of 1 to 5 s keeps its sound and the rest is digital silence, like the short events
padded to a fixed length of environmental-sound sets (ESC-50); `--event-sound 2` keeps 1 to 2 s
of sound instead (more padding, as ESC-50's barks and knocks have).

`--voices 5` also writes `<out>/voices/`: a second task on real recordings, short and padded like
environmental sounds, where per-clip statistics are a stronger reference: the phrases of the
voice packs that Hedgewars ships (one class per speaker, 13 of them; `--per-class` phrases each,
drawn with `--seed`), each placed at a random point of a 5 s clip of digital silence.

`--effects 5` also writes `<out>/effects/`: the environmental-sound regime of ESC-50 subsets on
real recordings, many classes of a few short clips each: the sound effects that 0 A.D. ships
(footsteps on grass, sand and snow; arrows striking wood, metal, stone and dirt; saws,
hoes, felled trees, cattle, swords...), one class per family (the files of one folder that
differ only in a trailing number), each placed at a random point of a 5 s clip of digital
silence (a few are loops of 5 s or more, fire and ambiences, which fill their clips as ESC-50's
rain and crackling fire do). A class needs `--per-class` distinct recordings (a recording whose
samples appear twice is left out): 7 gives 36 classes, 5 gives 45, 10 gives 26. `--classes ""`
skips the soundtracks.

`--takes 3` also writes `<out>/takes/`, shaped as the ESC-50 release (`data=esc50
data.root=<out>/takes`): from each excerpt, one recording, 3 clips of 5 s spread over it, and the
excerpts of each class dealt to 5 folds, so the takes of one recording share a fold as ESC-50's
do. Over the same clips, `data.split=kfold` (a k-fold by clip) shows how much a split that puts
takes of one recording on both sides overrates a model.

`<out>/SHA256SUMS` lists the packages and every clip a build wrote. Compare two builds' lists
before their numbers: a package may have been replaced; if the lists match, a difference in
accuracy comes from the hosts' floating point (one host rebuilds the same bytes every time).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePath, PurePosixPath
from typing import BinaryIO, TypeVar

import numpy as np
import soundfile as sf

from genre_vit.data.audio import duration_seconds
from genre_vit.data.sources import files_under, why_not_audio

# class -> (Debian package, folder of its music inside the unpacked package). Debian 12 (bookworm).
SOUNDTRACKS: dict[str, tuple[str, str]] = {
    "drascula": ("drascula-music", "usr/share/scummvm/drascula/audio"),
    "hyperrogue": ("hyperrogue-music", "usr/share/hyperrogue/music"),
    "nexuiz": ("nexuiz-music", "usr/share/games/nexuiz/data"),
    "planetblupi": ("planetblupi-music-ogg", "usr/share/planetblupi/music"),
    "singularity": ("singularity-music", "usr/share/games/singularity/music"),
    "ufoai": ("ufoai-music", "usr/share/games/ufoai/base"),
    "warzone2100": ("warzone2100-music", "usr/share/games/warzone2100/music"),
    "wesnoth": ("wesnoth-1.16-music", "usr/share/games/wesnoth/1.16/data/core/music"),
    "supertux": ("supertux-data", "usr/share/games/supertux2/music"),
    "freedroid": ("freedroidrpg-data", "usr/share/freedroidrpg/data/sound/music"),
    "hedgewars": ("hedgewars-data", "usr/share/games/hedgewars/Data/Music"),
    "widelands": ("widelands-data", "usr/share/games/widelands/data/music"),
    "warmux": ("warmux-data", "usr/share/games/warmux/music/ingame"),
    "flare": ("flare-game", "usr/share/games/flare/mods/fantasycore/music"),
    "supertuxkart": ("supertuxkart-data", "usr/share/games/supertuxkart/data/music"),
}
VOICES = ("hedgewars-data", "usr/share/games/hedgewars/Data/Sounds/voices")   # one folder per voice pack
EFFECTS = ("0ad-data", "usr/share/games/0ad/mods/public/public.zip", "audio/")   # package, game data zip, sounds in it
NOT_EFFECTS = ("audio/music/",)  # the game's soundtrack, in the same folder
AnyPath = TypeVar("AnyPath", bound=PurePath)  # a file on disk, or a member of a zip archive
TRAILING_NUMBER = re.compile(r"[_-]?[0-9]+[a-z]?$")  # fs_grass_1, c12, swordhit_10a: the take within a family
SAME_SPEAKER = 5              # voice packs sharing this many recordings are one speaker's
ARCHIVE_SUFFIXES = (".pk3",)  # zip archives of game data (nexuiz, ufoai), unpacked beside themselves
MARGIN_SECONDS = 10.0         # a track must be this much longer than an excerpt
START_SECONDS = 30.0          # excerpts start here, or earlier on tracks too short to centre them after it
MIN_EVENT_SECONDS = 1.0       # the shortest sound an event clip keeps
TAKE_SECONDS = 5.0            # a take's length: ESC-50's clips
RELEASE_FOLDS = 5             # ESC-50's folds


class SoundtrackError(Exception):
    """A package cannot be fetched or unpacked, or a class has too few long tracks."""


def unpack(package: str, workdir: Path) -> Path:
    """The unpacked tree of a Debian package under `workdir/packages`, fetched into `workdir/debs`
    with `apt-get download` unless a `.deb` of it is there; zip archives inside are unpacked too."""
    workdir = workdir.resolve()
    root = workdir / "packages" / package
    if (root / ".unpacked").exists():
        return root
    debs = workdir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if downloaded(package, debs) is None:
        run(["apt-get", "download", package], cwd=debs, what=f"apt-get download {package}")
    deb = downloaded(package, debs)
    if deb is None:
        raise SoundtrackError(f"apt-get download {package} left no {package}_*.deb in {debs}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    run(["dpkg-deb", "-x", str(deb), str(root)], cwd=debs, what=f"dpkg-deb -x {deb}")
    for archive in sorted(p for p in root.rglob("*") if p.suffix.lower() in ARCHIVE_SUFFIXES and p.is_file()):
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(archive.with_name(archive.name + ".d"))
    (root / ".unpacked").touch()
    return root


def downloaded(package: str, debs: Path) -> Path | None:
    """The `.deb` of `package` in `debs`, if one is there."""
    return min(debs.glob(f"{package}_*.deb"), default=None)


def write_checksums(out: Path, files: list[Path]) -> Path:
    """`out/SHA256SUMS`: the SHA-256 of each file, by its path under `out`, in the format that
    `sha256sum -c` checks (so two builds can be compared: same packages, same clips)."""
    lines = []
    for file in files:
        digest = hashlib.sha256()
        with file.open("rb") as stream:   # in blocks: a package can be hundreds of MB
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        lines.append(f"{digest.hexdigest()}  {file.relative_to(out).as_posix()}\n")
    path = out / "SHA256SUMS"
    path.write_text("".join(lines))
    return path


def run(command: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise SoundtrackError(f"{what}: {command[0]} not found (this tool needs Debian's apt-get and dpkg-deb)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SoundtrackError(f"{what} failed (exit {done.returncode}): {last}")


def long_tracks(folder: Path, min_seconds: float) -> list[Path]:
    """The distinct audio files under `folder` of at least `min_seconds` (a file reached twice, through
    a symbolic link, counts once)."""
    if not folder.is_dir():
        raise SoundtrackError(f"{folder}: no such folder in the unpacked package")
    distinct = {p.resolve(): p for p in reversed(files_under(folder)[0])}
    return sorted(p for p in distinct.values() if (duration_seconds(p) or 0.0) >= min_seconds)


def drawn(files: Sequence[AnyPath], count: int, seed: int) -> list[AnyPath]:
    """`count` of `files` drawn with `seed` (the same draw whatever order they come in)."""
    chosen = sorted(files)
    random.Random(seed).shuffle(chosen)
    return chosen[:count]


def emptied(folder: Path, pattern: str) -> Path:
    """`folder`, created if need be, without the files matching `pattern` that an earlier build with
    other settings left."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(pattern):
        stale.unlink()
    return folder


def only_classes(folder: Path, classes: Iterable[str]) -> Path:
    """`folder`, created if need be, without the class folders an earlier build with other classes left."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in set(classes)):
        shutil.rmtree(stale)
    return folder


def write_excerpts(tracks: list[Path], out: Path, label: str, count: int, seconds: float, seed: int) -> list[Path]:
    """`count` excerpts of `seconds` from tracks drawn with `seed`, as `out/<label>/<label>.NNN.flac`."""
    if len(tracks) < count:
        raise SoundtrackError(f"{label}: {len(tracks)} tracks of at least {seconds + MARGIN_SECONDS:.0f} s, fewer than {count}")
    folder = emptied(out / label, f"{label}.*.flac")
    written = []
    for i, track in enumerate(drawn(tracks, count, seed)):
        info = sf.info(str(track))
        start = min(START_SECONDS, (info.duration - seconds) / 2)
        wave, rate = sf.read(str(track), start=int(start * info.samplerate), frames=int(seconds * info.samplerate), always_2d=True)
        path = folder / f"{label}.{i:03d}.flac"
        sf.write(str(path), wave, rate, subtype="PCM_16")
        written.append(path)
    return written


def write_events(excerpts: list[Path], out: Path, seconds: float, seed: int,
                 sound_seconds: float | None = None) -> list[Path]:
    """For each excerpt, `out/<class>/<name>`: its middle `seconds`, silent (zeros) outside a span
    of MIN_EVENT_SECONDS to `sound_seconds` (None: `seconds`) at a place drawn with `seed`, in
    the order given."""
    if not MIN_EVENT_SECONDS <= seconds:
        raise SoundtrackError(f"--events {seconds:g}: event clips are at least {MIN_EVENT_SECONDS:g} s long")
    longest = seconds if sound_seconds is None else sound_seconds
    if not MIN_EVENT_SECONDS <= longest <= seconds:
        raise SoundtrackError(f"--event-sound {longest:g}: allowed {MIN_EVENT_SECONDS:g} to the clip's {seconds:g} s")
    rng = np.random.default_rng(seed)
    classes = {excerpt.parent.name for excerpt in excerpts}
    only_classes(out, classes)
    for label in classes:
        emptied(out / label, "*.flac")  # an earlier build's clips beyond this one's
    written = []
    for excerpt in excerpts:
        wave, rate = sf.read(str(excerpt), dtype="float32", always_2d=True)
        half = int(seconds / 2 * rate)
        if 2 * half > len(wave):
            raise SoundtrackError(f"{excerpt}: shorter than an event clip of {seconds:g} s")
        clip = wave[len(wave) // 2 - half: len(wave) // 2 + half].copy()
        span = rng.uniform(MIN_EVENT_SECONDS, longest)
        start = rng.uniform(0.0, seconds - span)
        clip[: int(start * rate)] = 0
        clip[int((start + span) * rate):] = 0
        path = out / excerpt.parent.name / excerpt.name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), clip, rate, subtype="PCM_16")
        written.append(path)
    return written


def check_takes(takes: int, per_class: int, seconds: float) -> None:
    """Refuse, before any download, takes that cannot make a release: 1 to 26 takes (named A-Z) that
    fit an excerpt, and at least one excerpt per class for every fold."""
    if not 1 <= takes <= 26:
        raise SoundtrackError(f"--takes {takes}: allowed 1 to 26 (takes are named A to Z)")
    if seconds < takes * TAKE_SECONDS:
        raise SoundtrackError(f"--takes {takes}: {takes} takes of {TAKE_SECONDS:g} s need excerpts of at least "
                              f"{takes * TAKE_SECONDS:g} s (--seconds {seconds:g})")
    if per_class < RELEASE_FOLDS:
        raise SoundtrackError(f"--takes: --per-class {per_class} leaves folds without a recording of a class; "
                              f"at least {RELEASE_FOLDS} (one per fold)")


def write_takes(excerpts: list[Path], out: Path, takes: int, seed: int) -> list[Path]:
    """An ESC-50-shaped release under `out`: from each excerpt (`<tracks>/<class>/<name>`, one
    recording), `takes` clips of TAKE_SECONDS spread evenly over it, as
    `out/audio/<fold>-<recording>-<take>-<target>.wav`, listed in `out/meta/esc50.csv`. Each
    class's excerpts are dealt to RELEASE_FOLDS folds in an order drawn with `seed`: the takes of
    one recording share a fold."""
    classes = sorted({excerpt.parent.name for excerpt in excerpts})
    audio = emptied(out / "audio", "*.wav")
    rows, written = [], []
    for target, label in enumerate(classes):
        mine = sorted(e for e in excerpts if e.parent.name == label)
        dealt = drawn(mine, len(mine), seed)
        for number, excerpt in enumerate(mine):
            wave, rate = sf.read(str(excerpt), dtype="float32", always_2d=True)
            length, spacing = int(TAKE_SECONDS * rate), len(wave) / takes
            if spacing < length:
                raise SoundtrackError(f"{excerpt}: too short for {takes} takes of {TAKE_SECONDS:g} s")
            fold, recording = dealt.index(excerpt) % RELEASE_FOLDS + 1, f"{target:02d}{number:03d}"
            for k in range(takes):
                start, take = int((k + 0.5) * spacing) - length // 2, chr(ord("A") + k)
                name = f"{fold}-{recording}-{take}-{target}.wav"
                sf.write(str(audio / name), wave[start:start + length], rate, subtype="PCM_16")
                rows.append([name, fold, target, label, False, excerpt.name, take])
                written.append(audio / name)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    with (out / "meta" / "esc50.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"], *rows])
    return written


def speakers(folder: Path) -> dict[str, list[Path]]:
    """Voice pack -> its recordings that no other file repeats, one pack per speaker: of packs that
    share SAME_SPEAKER or more recordings, only the largest (the first by name among equals) is kept."""
    packs = {p.name: files_under(p)[0] for p in sorted(folder.iterdir()) if p.is_dir()}
    digest = {f: hashlib.sha256(f.read_bytes()).hexdigest() for files in packs.values() for f in files}
    copies = Counter(digest.values())
    held = {name: {digest[f] for f in files} for name, files in packs.items()}
    kept: list[str] = []
    for name in sorted(packs, key=lambda n: (-len(packs[n]), n)):
        if all(len(held[name] & held[other]) < SAME_SPEAKER for other in kept):
            kept.append(name)
    return {name: [f for f in packs[name] if copies[digest[f]] == 1] for name in sorted(kept)}


def write_voices(packs: dict[str, list[Path]], out: Path, count: int, seconds: float, seed: int) -> list[Path]:
    """`count` recordings of each pack drawn with `seed`, each as `out/<pack>/<name>.wav`: a clip of
    `seconds` of zeros holding the recording (its first `seconds`) at a place drawn with `seed`."""
    for name, files in packs.items():
        if len(files) < count:
            raise SoundtrackError(f"voice {name}: {len(files)} distinct recordings, fewer than {count}")
    return write_padded(packs, read_audio, out, count, seconds, seed)


def effect_families(archive: zipfile.ZipFile, count: int) -> dict[str, list[PurePosixPath]]:
    """Family -> its recordings in the sound folder of `archive` (EFFECTS), for the families of at
    least `count` distinct recordings. A family is the files of one folder whose names differ only
    in a trailing number (`fs_grass_1.ogg`, `fs_grass_2.ogg`), named by its path under the sound
    folder (`actor-singlesteps-fs_grass`). A recording whose samples appear twice, in any encoding,
    is left out (0 A.D.'s gravel and rock footsteps are one set of recordings, encoded twice)."""
    _, _, sounds = EFFECTS
    members = [m for m in map(PurePosixPath, archive.namelist())
               if str(m).startswith(sounds) and not str(m).startswith(NOT_EFFECTS) and why_not_audio(m) is None]
    digest = {m: samples_digest(read_audio(io.BytesIO(archive.read(str(m))))) for m in members}
    copies = Counter(digest.values())
    families: dict[str, list[PurePosixPath]] = {}
    for member in members:
        base = TRAILING_NUMBER.sub("", member.stem)
        if copies[digest[member]] == 1 and base:
            families.setdefault("-".join((*member.parent.relative_to(sounds).parts, base)), []).append(member)
    for name, files in families.items():
        if len({f.parent for f in files}) > 1 or len({f.stem for f in files}) < len(files):
            raise SoundtrackError(f"--effects: family {name} joins two folders or repeats a name: {', '.join(map(str, files))}")
    return {name: sorted(files) for name, files in sorted(families.items()) if len(files) >= count}


def samples_digest(decoded: tuple[np.ndarray, int]) -> str:
    """The SHA-256 of a recording's samples (as 16-bit integers) and rate, whatever its encoding."""
    wave, rate = decoded
    return hashlib.sha256(np.round(wave * 32767).astype(np.int16).tobytes() + str(rate).encode()).hexdigest()


def read_audio(source: PurePath | BinaryIO) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the rate of a file, or of an open file's bytes."""
    return sf.read(source if hasattr(source, "read") else str(source), dtype="float32", always_2d=True)


def write_padded(recordings: Mapping[str, Sequence[PurePath]], read: Callable[[PurePath], tuple[np.ndarray, int]],
                 out: Path, count: int, seconds: float, seed: int) -> list[Path]:
    """`count` recordings of each class drawn with `seed` (each as `read` decodes it), each as
    `out/<class>/<name>.wav`: a clip of `seconds` of zeros holding the recording (its first
    `seconds`) at a place drawn with `seed`. What an earlier build left in `out` is removed."""
    rng = np.random.default_rng(seed)
    written = []
    only_classes(out, recordings)
    for name, files in recordings.items():
        folder = emptied(out / name, "*.wav")
        for recording in drawn(files, count, seed):
            wave, rate = read(recording)
            length = int(seconds * rate)
            wave = wave[:length]
            clip = np.zeros((length, wave.shape[1]), dtype=np.float32)
            start = int(rng.uniform(0, length - len(wave)))
            clip[start:start + len(wave)] = wave
            path = folder / f"{recording.stem}.wav"
            sf.write(str(path), clip, rate, subtype="PCM_16")
            written.append(path)
    return written


def write_effects(package_root: Path, out: Path, count: int, seconds: float, seed: int) -> list[Path]:
    """The clips of `write_padded` for every family of `effect_families` in the unpacked EFFECTS
    package at `package_root`, read from its zip archive as they are needed."""
    package, archive_path, _ = EFFECTS
    with zipfile.ZipFile(package_root / archive_path) as archive:
        families = effect_families(archive, count)
        if len(families) < 2:
            raise SoundtrackError(f"--effects: {len(families)} families of at least {count} distinct recordings "
                                  f"in {package}; a task needs 2 (lower --per-class)")
        return write_padded(families, lambda member: read_audio(io.BytesIO(archive.read(str(member)))),
                            out, count, seconds, seed)


def build(out: Path, classes: list[str], per_class: int, seconds: float, seed: int,
          events: float | None = None, event_sound: float | None = None, voices: float | None = None,
          takes: int | None = None, effects: float | None = None) -> None:
    """Fetch, unpack and cut every class, one line per class; with `events`, the event clips too;
    with `voices`, the voice clips; with `takes`, the ESC-50-shaped release; with `effects`, the
    sound-effect clips."""
    unknown = sorted(set(classes) - set(SOUNDTRACKS))
    if unknown:
        raise SoundtrackError(f"unknown classes {unknown}; known: {' '.join(SOUNDTRACKS)}")
    if takes is not None:
        check_takes(takes, per_class, seconds)
    for option, clip_seconds in (("--voices", voices), ("--effects", effects)):
        if clip_seconds is not None and not clip_seconds > 0:
            raise SoundtrackError(f"{option} {clip_seconds:g}: the clips' length in seconds, above 0")
    packages, excerpts = [], []
    only_classes(out / "tracks", classes)
    for label in classes:
        package, music = SOUNDTRACKS[label]
        tracks = long_tracks(unpack(package, out) / music, seconds + MARGIN_SECONDS)
        written = write_excerpts(tracks, out / "tracks", label, per_class, seconds, seed)
        print(f"{label}: {len(written)} excerpts of {seconds:g} s from {len(tracks)} tracks of {package}", flush=True)
        packages.append(package)
        excerpts += written
    clips = []
    if events is not None:
        clips = write_events(sorted(excerpts), out / "events", events, seed, event_sound)
        print(f"event clips: {out / 'events'} (data=folder data.root={out / 'events'} data.clip_seconds={events:g})")
    if takes is not None:
        clips += write_takes(sorted(excerpts), out / "takes", takes, seed)
        print(f"takes: {out / 'takes'} (data=esc50 data.root={out / 'takes'}; {takes} per excerpt, folds by excerpt)")
    if voices is not None:
        package, folder = VOICES
        clips += write_voices(speakers(unpack(package, out) / folder), out / "voices", per_class, voices, seed)
        packages.append(package)
        print(f"voice clips: {out / 'voices'} (data=folder data.root={out / 'voices'} data.clip_seconds={voices:g})")
    if effects is not None:
        package, _, _ = EFFECTS
        written = write_effects(unpack(package, out), out / "effects", per_class, effects, seed)
        clips += written
        packages.append(package)
        print(f"effect clips: {out / 'effects'}, {len({p.parent for p in written})} classes "
              f"(data=folder data.root={out / 'effects'} data.clip_seconds={effects:g})")
    debs = [deb for deb in dict.fromkeys(downloaded(package, out / "debs") for package in packages)
            if deb is not None]   # None: removed after unpacking
    sums = write_checksums(out.resolve(), [p.resolve() for p in debs + excerpts + clips])
    print(f"checksums: {sums} (the packages and every clip; compare another build's with sha256sum -c)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genre_vit.soundtracks", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for debs/, packages/, tracks/ (the data set) and the other sets asked for")
    parser.add_argument("--classes", default=",".join(SOUNDTRACKS), help="comma-separated soundtracks (default: all 15)")
    parser.add_argument("--per-class", type=int, default=10, help="excerpts per soundtrack, phrases per speaker, clips per effect family "
                        "(families with fewer are left out: 10 gives 26) (default 10)")
    parser.add_argument("--seconds", type=float, default=30.0, help="excerpt length (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="which tracks, phrases and effects are drawn, and where clips are placed")
    parser.add_argument("--events", type=float, default=None, metavar="SECONDS",
                        help="also write <out>/events/: clips of SECONDS with a shorter sound padded with silence")
    parser.add_argument("--event-sound", type=float, default=None, metavar="SECONDS",
                        help="the longest sound an event clip keeps (default: the whole clip; the shortest is 1 s)")
    parser.add_argument("--voices", type=float, default=None, metavar="SECONDS",
                        help="also write <out>/voices/: Hedgewars' phrases, one class per speaker, padded to SECONDS")
    parser.add_argument("--effects", type=float, default=None, metavar="SECONDS",
                        help="also write <out>/effects/: 0 A.D.'s sound effects, one class per family, padded to SECONDS")
    parser.add_argument("--takes", type=int, default=None, metavar="N",
                        help=f"also write <out>/takes/: an ESC-50-shaped release of N clips of {TAKE_SECONDS:g} s per excerpt")
    args = parser.parse_args(argv)
    classes = [c for c in args.classes.split(",") if c]
    try:
        build(args.out, classes, args.per_class, args.seconds, args.seed, args.events,
              args.event_sound, args.voices, args.takes, args.effects)
    except SoundtrackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if classes:
        print(f"data set: {args.out / 'tracks'} (data=folder data.root={args.out / 'tracks'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
