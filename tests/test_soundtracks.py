"""The real-recordings set built from Debian's soundtrack packages (genre_vit.soundtracks), on
package trees and .deb files the tests write."""
from __future__ import annotations

import csv
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_vit import soundtracks
from genre_vit.data.sources import Esc50Source
from genre_vit.soundtracks import (
    SoundtrackError,
    effect_families,
    long_tracks,
    speakers,
    unpack,
    write_events,
    write_excerpts,
    write_takes,
    write_voices,
)

RATE = 8000


def tone(path, seconds: float, level: float = 0.0) -> np.ndarray:
    """A stereo file at `level` plus a ramp, so an excerpt's source and position can be read off it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = level + (np.arange(int(seconds * RATE)) % 8000) / 80000.0
    wave = np.stack([ramp, -ramp], axis=1)
    sf.write(str(path), wave, RATE, subtype=None if path.suffix == ".ogg" else "PCM_16")
    return sf.read(str(path), always_2d=True)[0]


def fake_package(tree, out):
    """`tree` built into `out/debs/fake-music_1.0_all.deb`, as `apt-get download` leaves it; returns `out`."""
    (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: fake-music\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n")
    (out / "debs").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(out / "debs" / "fake-music_1.0_all.deb")],
                   check=True, capture_output=True)
    return out


def test_only_distinct_tracks_long_enough_for_an_excerpt_and_its_margin_count(tmp_path):
    music = tmp_path / "music"
    tone(music / "a.ogg", 13)
    tone(music / "sub" / "b.wav", 20)
    tone(music / "short.wav", 11)                      # under 2 s + the 10 s margin
    (music / "notes.txt").write_text("not audio")
    (music / "again.wav").symlink_to(music / "a.ogg")  # the same track reached twice
    assert [p.name for p in long_tracks(music, 12)] == ["a.ogg", "b.wav"]
    with pytest.raises(SoundtrackError, match="no such folder"):
        long_tracks(tmp_path / "missing", 12)


def test_excerpts_are_cut_from_the_middle_keep_the_source_format_and_follow_the_seed(tmp_path):
    paths = [tmp_path / "src" / f"t{i}.wav" for i in range(4)]
    waves = [tone(path, seconds=14 + 20 * i, level=0.2 * i) for i, path in enumerate(paths)]   # 14, 34, 54, 74 s
    written = write_excerpts(paths, tmp_path / "out", "ost", count=3, seconds=2, seed=0)
    assert [p.name for p in written] == ["ost.000.flac", "ost.001.flac", "ost.002.flac"]
    sources = []
    for path in written:
        excerpt, rate = sf.read(str(path), always_2d=True)
        assert rate == RATE and excerpt.shape == (2 * RATE, 2)
        i = round(excerpt[0, 0] / 0.2 - 0.25)    # the source's level
        start = int(min(soundtracks.START_SECONDS, (len(waves[i]) / RATE - 2) / 2) * RATE)   # 6 s into the 14 s track, else 30 s
        assert np.array_equal(excerpt, waves[i][start:start + 2 * RATE])
        sources.append(i)
    assert len(set(sources)) == 3
    again = write_excerpts(list(reversed(paths)), tmp_path / "again", "ost", count=3, seconds=2, seed=0)
    assert [sf.read(str(p))[0].tolist() for p in again] == [sf.read(str(p))[0].tolist() for p in written]
    fewer = write_excerpts(paths, tmp_path / "out", "ost", count=2, seconds=2, seed=0)   # a rebuild leaves no stale excerpt
    assert sorted((tmp_path / "out" / "ost").iterdir()) == fewer
    with pytest.raises(SoundtrackError, match="ost: 4 tracks of at least 12 s, fewer than 5"):
        write_excerpts(paths, tmp_path / "out", "ost", count=5, seconds=2, seed=0)


def test_event_clips_keep_one_span_of_the_excerpts_middle_and_silence_elsewhere(tmp_path):
    excerpts = [tmp_path / "tracks" / "ost" / f"ost.{i:03d}.flac" for i in range(6)]
    waves = [tone(path, seconds=10, level=0.5) for path in excerpts]
    write_events(excerpts, tmp_path / "events", seconds=5, seed=0)
    spans = []
    for path, wave in zip(excerpts, waves):
        clip, rate = sf.read(str(tmp_path / "events" / "ost" / path.name), always_2d=True)
        assert rate == RATE and clip.shape == (5 * RATE, 2)
        sounding = np.flatnonzero(clip[:, 0])
        first, last = sounding[0], sounding[-1] + 1
        assert len(sounding) == last - first  # one span, zeros around it
        assert np.array_equal(clip[first:last], wave[int(2.5 * RATE) + first:int(2.5 * RATE) + last])  # from the middle
        spans.append((last - first) / RATE)
    assert all(soundtracks.MIN_EVENT_SECONDS <= s <= 5 for s in spans) and len(set(spans)) == 6
    write_events(excerpts, tmp_path / "again", seconds=5, seed=0)
    assert all(np.array_equal(sf.read(str(tmp_path / "again" / "ost" / p.name))[0],
                              sf.read(str(tmp_path / "events" / "ost" / p.name))[0]) for p in excerpts)
    with pytest.raises(SoundtrackError, match="shorter than an event clip of 12 s"):
        write_events(excerpts, tmp_path / "long", seconds=12, seed=0)


def test_event_clips_can_keep_shorter_sounds(tmp_path):
    excerpts = [tmp_path / "tracks" / "ost" / f"ost.{i:03d}.flac" for i in range(6)]
    for path in excerpts:
        tone(path, seconds=10, level=0.5)
    for path in write_events(excerpts, tmp_path / "events", seconds=5, seed=0, sound_seconds=2):
        sounding = np.flatnonzero(sf.read(str(path), always_2d=True)[0][:, 0])
        assert soundtracks.MIN_EVENT_SECONDS <= (sounding[-1] + 1 - sounding[0]) / RATE <= 2
    with pytest.raises(SoundtrackError, match=r"^--event-sound 6: allowed 1 to the clip's 5 s$"):
        write_events(excerpts, tmp_path / "long", seconds=5, seed=0, sound_seconds=6)


def voice_packs(root, sizes: dict[str, int], shared: dict[tuple[str, str], int]) -> None:
    """Packs of `sizes[pack]` distinct phrases, the first `shared[(a, b)]` of b copies of a's."""
    for i, (pack, size) in enumerate(sizes.items()):
        for k in range(size):
            tone(root / pack / f"phrase{k:02d}.wav", 0.5, level=0.01 * (20 * i + k + 1))
    for (a, b), count in shared.items():
        for k in range(count):
            shutil.copy(root / a / f"phrase{k:02d}.wav", root / b / f"phrase{k:02d}.wav")


def test_voice_packs_of_one_speaker_count_once_and_no_recording_appears_twice(tmp_path):
    voice_packs(tmp_path, {"alto": 8, "alto_remix": 9, "bass": 7, "tenor": 6}, {("alto", "alto_remix"): 5, ("bass", "tenor"): 2})
    packs = speakers(tmp_path)
    assert sorted(packs) == ["alto_remix", "bass", "tenor"]   # 5 shared: one speaker, the larger pack kept
    assert [p.name for p in packs["alto_remix"]] == [f"phrase{k:02d}.wav" for k in range(5, 9)]   # its copies left out
    assert [p.name for p in packs["bass"]] == [f"phrase{k:02d}.wav" for k in range(2, 7)]
    assert [p.name for p in packs["tenor"]] == [f"phrase{k:02d}.wav" for k in range(2, 6)]


def test_voice_clips_hold_each_recording_whole_in_silence_as_the_seed_draws(tmp_path):
    voice_packs(tmp_path / "packs", {"alto": 4, "bass": 4}, {})
    packs = speakers(tmp_path / "packs")
    clips = write_voices(packs, tmp_path / "voices", count=3, seconds=2, seed=0)
    assert [(p.parent.name, len(sf.read(str(p))[0]) / RATE) for p in clips] == [("alto", 2.0)] * 3 + [("bass", 2.0)] * 3
    for clip in clips:
        wave = sf.read(str(clip), always_2d=True)[0]
        sounding = np.flatnonzero(wave[:, 0])
        recording = sf.read(str(tmp_path / "packs" / clip.parent.name / clip.name), always_2d=True)[0]
        np.testing.assert_array_equal(wave[sounding[0]:sounding[0] + len(recording)], recording)
        assert len(sounding) == len(recording)
    again = write_voices(packs, tmp_path / "again", count=3, seconds=2, seed=0)
    assert [sf.read(str(p))[0].tolist() for p in again] == [sf.read(str(p))[0].tolist() for p in clips]
    fewer = write_voices(packs, tmp_path / "voices", count=2, seconds=2, seed=0)   # a later build, other settings
    assert sorted((tmp_path / "voices").rglob("*.wav")) == sorted(fewer)
    with pytest.raises(SoundtrackError, match=r"^voice alto: 4 distinct recordings, fewer than 5$"):
        write_voices(packs, tmp_path / "more", count=5, seconds=2, seed=0)


def effects_archive(path: Path, members: dict[str, float]) -> None:
    """A zip of game data at `path`: each member a mono tone of 0.5 s at its level, in the format its
    name says (equal levels, equal samples)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, level in members.items():
            wave = np.round((level + np.arange(RATE // 2) / 80000.0) * 32767).astype(np.int16)
            data = io.BytesIO()
            if name.endswith((".wav", ".flac")):
                sf.write(data, wave, RATE, format=name.rsplit(".", 1)[1].upper(), subtype="PCM_16")
            archive.writestr(name, data.getvalue() or b"text")


def test_an_effect_family_is_one_folders_numbered_recordings_and_needs_enough_distinct_ones(tmp_path):
    effects_archive(tmp_path / "public.zip", {
        **{f"audio/actor/singlesteps/fs_grass_{k}.wav": 0.1 * k for k in range(1, 5)},
        **{f"audio/actor/singlesteps/fs_snow{k}.wav": 0.01 * k for k in range(1, 4)},
        "audio/actor/singlesteps/fs_snow4.wav": 0.01,  # a copy of fs_snow1: both left out
        **{f"audio/actor/singlesteps/fs_rock{k}.wav": 0.5 + 0.01 * k for k in range(1, 4)},
        **{f"audio/actor/singlesteps/fs_gravel{k}.flac": 0.5 + 0.01 * k for k in range(1, 4)},  # fs_rock's samples again
        **{f"audio/attack/impact/arrow_wood_0{k}.wav": 0.2 + 0.01 * k for k in range(1, 4)},
        "audio/attack/impact/notes.txt": 0.0,
        **{f"audio/music/theme_{k}.wav": 0.3 + 0.01 * k for k in range(1, 5)},  # the soundtrack, not effects
        **{f"art/sounds/gong_{k}.wav": 0.4 + 0.01 * k for k in range(1, 5)},  # outside the sound folder
    })
    with zipfile.ZipFile(tmp_path / "public.zip") as archive:
        families = effect_families(archive, count=3)
    assert {name: [m.name for m in members] for name, members in families.items()} == {
        "actor-singlesteps-fs_grass": [f"fs_grass_{k}.wav" for k in range(1, 5)],
        "attack-impact-arrow_wood": [f"arrow_wood_0{k}.wav" for k in range(1, 4)],
    }


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")
def test_effect_clips_hold_each_recording_whole_in_silence_one_class_per_family(tmp_path, monkeypatch, capsys):
    tree = tmp_path / "tree"
    (tree / "game").mkdir(parents=True)
    effects_archive(tree / "game" / "public.zip", {f"audio/resource/{family}_{k}.wav": level + 0.01 * k
                                                    for family, level in (("saw", 0.1), ("hoe", 0.2)) for k in range(3)})
    out = fake_package(tree, tmp_path / "set")
    monkeypatch.setattr(soundtracks, "EFFECTS", ("fake-music", "game/public.zip", "audio/"))

    assert soundtracks.main([str(out), "--classes", "", "--effects", "2", "--per-class", "2"]) == 0
    clips = sorted((out / "effects").rglob("*.wav"))
    assert [(p.parent.name, len(sf.read(str(p))[0]) / RATE) for p in clips] == [("resource-hoe", 2.0)] * 2 + [("resource-saw", 2.0)] * 2
    with zipfile.ZipFile(tree / "game" / "public.zip") as archive:
        for clip in clips:
            wave = sf.read(str(clip))[0]
            recording = sf.read(io.BytesIO(archive.read(f"audio/resource/{clip.stem}.wav")))[0]
            sounding = np.flatnonzero(wave)
            np.testing.assert_array_equal(wave[sounding[0]:sounding[0] + len(recording)], recording)
            assert len(sounding) == len(recording)   # silence around it
    printed = capsys.readouterr().out
    assert f"effect clips: {out / 'effects'}, 2 classes" in printed and "data set:" not in printed   # no soundtracks asked
    listed = (out / "SHA256SUMS").read_text()
    assert "debs/fake-music_1.0_all.deb" in listed and all(f"effects/{p.parent.name}/{p.name}" in listed for p in clips)

    (out / "effects" / "resource-gong").mkdir()   # a family an earlier build with other settings admitted
    sf.write(str(out / "effects" / "resource-gong" / "gong_1.wav"), np.zeros(RATE), RATE)
    (out / "effects" / "resource-gong" / ".DS_Store").write_text("")
    assert soundtracks.main([str(out), "--classes", "", "--effects", "2", "--per-class", "3"]) == 0
    assert sorted(p.name for p in (out / "effects").iterdir()) == ["resource-hoe", "resource-saw"]
    assert len(list((out / "effects").rglob("*.wav"))) == 6
    assert soundtracks.main([str(out), "--classes", "", "--effects", "2", "--per-class", "4"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --effects: 0 families of at least 4 distinct recordings in fake-music; a task needs 2 (lower --per-class)")


def test_takes_make_an_esc50_release_whose_folds_keep_each_recordings_takes_together(tmp_path):
    excerpts = [tmp_path / "tracks" / label / f"{label}.{i:03d}.flac" for label in ("ost", "jingle") for i in range(5)]
    waves = {path: tone(path, seconds=16, level=0.1 * i) for i, path in enumerate(excerpts)}
    written = write_takes(excerpts, tmp_path / "takes", takes=3, seed=0)
    tracks = Esc50Source(str(tmp_path / "takes")).tracks()
    assert len(written) == len(tracks) == 30 and tracks.classes == ["jingle", "ost"]
    recordings: dict[str, set[int]] = {}
    for path, fold in zip(tracks.paths, tracks.folds):
        recordings.setdefault(path.rsplit("/", 1)[1].split("-")[1], set()).add(fold)
    assert len(recordings) == 10 and all(len(folds) == 1 for folds in recordings.values())  # a recording, one fold
    per_fold = sorted(fold for folds in recordings.values() for fold in folds)
    assert per_fold == [f for f in range(5) for _ in range(2)]  # one recording of each class per fold
    with open(tmp_path / "takes" / "meta" / "esc50.csv") as f:
        rows = list(csv.DictReader(f))
    spacing = 16 * RATE / 3
    for row in rows:  # take k of an excerpt: 5 s centred on the middle of its third k
        clip = sf.read(str(tmp_path / "takes" / "audio" / row["filename"]), always_2d=True)[0]
        start = int((ord(row["take"]) - ord("A") + 0.5) * spacing) - 5 * RATE // 2
        assert np.array_equal(clip, waves[tmp_path / "tracks" / row["category"] / row["src_file"]][start:start + 5 * RATE])
    with pytest.raises(SoundtrackError, match="too short for 4 takes of 5 s"):
        write_takes(excerpts, tmp_path / "more", takes=4, seed=0)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")
def test_a_package_with_zipped_music_becomes_a_class_folder(tmp_path, monkeypatch, capsys):
    tree = tmp_path / "tree"
    data = tree / "usr" / "share" / "fake"
    tone(tmp_path / "zipped.ogg", 13)
    data.mkdir(parents=True)
    with zipfile.ZipFile(data / "music.pk3", "w") as archive:
        archive.write(tmp_path / "zipped.ogg", "music/zipped.ogg")
    tone(data / "plain.wav", 15)
    out = fake_package(tree, tmp_path / "set")
    monkeypatch.setattr(soundtracks, "SOUNDTRACKS", {"fake": ("fake-music", "usr/share/fake")})

    assert soundtracks.main([str(out), "--seconds", "2", "--per-class", "2"]) == 0
    assert sorted(p.name for p in (out / "tracks" / "fake").iterdir()) == ["fake.000.flac", "fake.001.flac"]
    assert "fake: 2 excerpts of 2 s from 2 tracks of fake-music" in capsys.readouterr().out
    assert unpack("fake-music", out) == (out / "packages" / "fake-music").resolve()   # unpacked once, then kept


def test_a_build_lists_its_packages_and_every_clip_in_checksums_that_sha256sum_checks(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    for i in range(5):
        tone(tree / "music" / f"track{i}.wav", 15, level=0.1 * i)
    voice_packs(tree / "voices", {"alto": 5}, {})
    out = fake_package(tree, tmp_path / "set")
    monkeypatch.setattr(soundtracks, "SOUNDTRACKS", {"fake": ("fake-music", "music")})
    monkeypatch.setattr(soundtracks, "VOICES", ("fake-music", "voices"))

    assert soundtracks.main([str(out), "--seconds", "5", "--per-class", "5", "--events", "2", "--voices", "1",
                             "--takes", "1"]) == 0
    listed = [line.split("  ")[1] for line in (out / "SHA256SUMS").read_text().splitlines()]
    excerpts = [f"fake/fake.{i:03d}.flac" for i in range(5)]
    assert listed[:11] == ["debs/fake-music_1.0_all.deb", *(f"tracks/{e}" for e in excerpts), *(f"events/{e}" for e in excerpts)]
    takes = listed[11:16]  # takes/audio/<fold>-<recording>-<take>-<target>.wav, one take of each excerpt
    assert sorted(name.removeprefix("takes/audio/").split("-", 1)[1] for name in takes) == [
        f"0000{i}-A-0.wav" for i in range(5)]
    assert sorted(listed[16:]) == [f"voices/alto/phrase{i:02d}.wav" for i in range(5)]
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=out).returncode == 0
    sf.write(str(out / "tracks" / "fake" / "fake.001.flac"), np.zeros(100), 8000)   # another build's clip
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 1

    for folder in ("tracks", "events"):  # a class an earlier build with other --classes wrote
        tone(out / folder / "gone" / "gone.000.flac", 2)
    tone(out / "voices" / "gone" / "phrase00.wav", 1)
    assert soundtracks.main([str(out), "--seconds", "5", "--per-class", "3", "--events", "2", "--voices", "1"]) == 0
    for folder in ("tracks", "events"):  # what the set holds is this build's, as SHA256SUMS lists it
        assert sorted(p.relative_to(out / folder).as_posix() for p in (out / folder).rglob("*.flac")) == excerpts[:3]
    assert [p.parent.name for p in (out / "voices").rglob("*.wav")] == ["alto"] * 3


@pytest.mark.parametrize("args,message", [
    (["--takes", "0"], "--takes 0: allowed 1 to 26"),
    (["--takes", "7"], "7 takes of 5 s need excerpts of at least 35 s (--seconds 30)"),
    (["--takes", "3", "--per-class", "4"], "--per-class 4 leaves folds without a recording of a class; at least 5"),
    (["--effects", "0"], "--effects 0: the clips' length in seconds, above 0"),
    (["--voices", "-1"], "--voices -1: the clips' length in seconds, above 0"),
])
def test_settings_that_cannot_make_a_set_are_one_line_before_any_download(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get: a download would fail with another message
    assert soundtracks.main([str(tmp_path / "set"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_package_that_cannot_be_fetched_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(soundtracks, "SOUNDTRACKS", {"none": ("no-such-package-genre-vit", "usr")})
    monkeypatch.setenv("PATH", str(tmp_path))   # no apt-get: the same one line as a failed download
    assert soundtracks.main([str(tmp_path / "set")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apt-get download no-such-package-genre-vit" in err
    assert soundtracks.main([str(tmp_path / "set"), "--classes", "jazz"]) == 2
    assert "unknown classes ['jazz']" in capsys.readouterr().err
