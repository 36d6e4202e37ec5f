"""Real audio trees: GTZAN layouts, class folders, ESC-50 and its folds, the skip list and the filtered split."""
import csv
import logging

import pytest
from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid, gtzan_genres

from genre_vit.config import ConfigError, validate
from genre_vit.data.sources import DataError, Esc50Source, FolderSource, GtzanSource
from genre_vit.data.splits import TEST, TRAIN, UNUSED, VAL
from tests.conftest import (
    ESC50_CLASSES,
    TINY,
    compose_config,
    esc50_tree,
    gtzan_tree,
    make_datamodule,
    train_in_process,
    write_tone,
)


@pytest.mark.parametrize("layout,ext", [("genres", ".au"), ("genres_original", ".wav"), ("", ".flac")])
def test_gtzan_layouts_list_every_genre_in_gtzan_order(tmp_path, layout, ext):
    gtzan_tree(tmp_path, layout, ext, per_genre=2)
    tracks = GtzanSource(str(tmp_path)).tracks()
    assert tracks.classes == list(gtzan_genres) and len(tracks) == 20
    assert tracks.labels == [g for g in range(10) for _ in range(2)]
    assert tracks.paths[2].endswith(f"classical/classical.00000{ext}")


def test_folder_source_takes_sorted_folder_names_as_classes(tmp_path):
    for name in ("zouk", "ambient", "kpop"):
        write_tone(tmp_path / name / "a.wav", 1.0)
    tracks = FolderSource(str(tmp_path)).tracks()
    assert tracks.classes == ["ambient", "kpop", "zouk"] and tracks.labels == [0, 1, 2]


def test_a_link_to_a_file_is_the_same_track_listed_once(tmp_path):
    """Else a copy could train while the file itself validates."""
    write_tone(tmp_path / "jazz" / "jazz0.wav", 1.0)
    write_tone(tmp_path / "jazz" / "jazz1.wav", 1.0, freq=500.0)
    (tmp_path / "jazz" / "favourites").mkdir()
    (tmp_path / "jazz" / "favourites" / "jazz0.wav").symlink_to(tmp_path / "jazz" / "jazz0.wav")
    (tmp_path / "jazz" / "again.wav").hardlink_to(tmp_path / "jazz" / "jazz1.wav")
    tracks = FolderSource(str(tmp_path)).tracks()
    assert tracks.paths == [str(tmp_path / "jazz" / "again.wav"), str(tmp_path / "jazz" / "jazz0.wav")]
    assert sorted(path for path, _ in tracks.ignored) == [str(tmp_path / "jazz" / "favourites" / "jazz0.wav"),
                                                          str(tmp_path / "jazz" / "jazz1.wav")]


def test_a_linked_folder_in_a_class_is_followed_once_and_a_link_up_the_tree_ends(tmp_path):
    write_tone(tmp_path / "elsewhere" / "live.wav", 1.0)
    write_tone(tmp_path / "music" / "jazz" / "jazz0.wav", 1.0, freq=500.0)
    (tmp_path / "music" / "jazz" / "concerts").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "loop").symlink_to(tmp_path / "elsewhere")  # a cycle
    write_tone(tmp_path / "music" / "jazz" / "zz_real" / "take.wav", 1.0, freq=700.0)
    for name in ("a", "b", "alias"):  # links to a folder of the class: its files are listed by their own path
        (tmp_path / "music" / "jazz" / name).symlink_to(tmp_path / "music" / "jazz" / "zz_real")
    tracks = FolderSource(str(tmp_path / "music")).tracks()
    assert tracks.paths == [str(tmp_path / "music" / "jazz" / "concerts" / "live.wav"),
                            str(tmp_path / "music" / "jazz" / "jazz0.wav"),
                            str(tmp_path / "music" / "jazz" / "zz_real" / "take.wav")]


def test_a_link_that_puts_one_file_in_two_classes_is_refused_naming_both(tmp_path):
    write_tone(tmp_path / "jazz" / "take.wav", 1.0)
    (tmp_path / "blues").mkdir()
    (tmp_path / "blues" / "take.wav").symlink_to(tmp_path / "jazz" / "take.wav")
    with pytest.raises(DataError, match=r"blues/take.wav are one file \(a link\) in two classes, 'jazz' and 'blues'"):
        FolderSource(str(tmp_path)).tracks()


@pytest.mark.parametrize("make,message", [
    (lambda root: root / "absent", "is not a directory"),
    (lambda root: root, "holds no class folders"),
])
def test_unusable_roots_fail_with_the_path(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        FolderSource(str(make(tmp_path))).tracks()


def test_gtzan_root_without_genres_names_what_was_expected(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match=r"holds no GTZAN genre folders \(blues, classical"):
        GtzanSource(str(tmp_path)).tracks()


def test_a_class_without_audio_fails_before_feature_work(tmp_path):
    write_tone(tmp_path / "rock" / "a.wav", 1.0)
    (tmp_path / "jazz").mkdir()
    (tmp_path / "jazz" / "notes.txt").write_text("no audio here")
    with pytest.raises(DataError, match=r"class folder '.*jazz' holds no audio files"):
        FolderSource(str(tmp_path)).tracks()


def test_bad_files_are_skipped_listed_and_counted(tmp_path, caplog):
    root = gtzan_tree(tmp_path / "gtzan", "genres_original", ".wav", per_genre=3)
    (root / "jazz" / "jazz.00054.wav").write_bytes(b"")                             # zero bytes
    (root / "rock" / "rock.00099.wav").write_bytes(b"RIFF garbage" * 100)           # garbage
    (root / "pop" / "README.txt").write_text("not audio")                            # not audio
    write_tone(root / "metal" / "metal.00050.wav", 2.0)                              # shorter than a segment
    write_tone(root / "disco" / "disco.00051.flac", 4.0, rate=44100, channels=2)     # fine: stereo 44.1 kHz FLAC
    dm = make_datamodule(tmp_path, "data=gtzan", f"data.root={tmp_path / 'gtzan'}", "data.num_folds=3",
                         "data.short_clips=skip")
    dm.setup("fit")
    with open(tmp_path / "run" / "skipped.csv") as f:
        rows = {r["path"].rsplit("/", 1)[1]: r["reason"] for r in csv.DictReader(f)}
    assert set(rows) == {"jazz.00054.wav", "rock.00099.wav", "README.txt", "metal.00050.wav"}
    assert rows["jazz.00054.wav"].startswith("unreadable audio") and rows["rock.00099.wav"].startswith("unreadable audio")
    assert rows["README.txt"].startswith("not an audio file") and rows["metal.00050.wav"].startswith("shorter than one segment")
    assert dm.counts["skipped_files"] == 4
    assert dm.counts["train_tracks"] + dm.counts["val_tracks"] == 31  # 30 tones + the FLAC
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("jazz.00054.wav" in w and "unreadable" in w for w in warnings)
    assert any(w.startswith("Skipped 4 files of 35") for w in warnings)


def test_filtered_split_follows_the_published_lists(tmp_path, caplog):
    ids = filtered_train[:4] + filtered_valid[:3] + filtered_test[:2]
    for genre in gtzan_genres:  # every genre needs a folder with audio
        ids.append(next(t for t in filtered_train if t.startswith(genre + ".")))
    listed = set(filtered_train) | set(filtered_valid) | set(filtered_test)
    faulty = next(f"{g}.{i:05d}" for g in gtzan_genres for i in range(100) if f"{g}.{i:05d}" not in listed)
    ids.append(faulty)  # a known-faulty track that no list names
    root = tmp_path / "gtzan" / "genres"
    for tid in dict.fromkeys(ids):
        write_tone(root / tid.split(".")[0] / f"{tid}.au", 4.0)
    dm = make_datamodule(tmp_path, "data=gtzan", f"data.root={tmp_path / 'gtzan'}", "data.split=filtered")
    roles = dict(zip([p.rsplit("/", 1)[1][:-3] for p in dm.track_list.paths], dm.track_roles()))
    assert all(roles[t] == TRAIN for t in filtered_train[:4]) and all(roles[t] == VAL for t in filtered_valid[:3])
    assert all(roles[t] == TEST for t in filtered_test[:2]) and roles[faulty] == UNUSED
    assert len(dm.missing) == 443 + 197 + 290 - (len(dict.fromkeys(ids)) - 1)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert dm.counts["test_tracks"] == 2 and dm.counts["val_tracks"] == 3
    # Listed but absent tracks are missing, not skipped files; the filtered split has no fold.
    assert dm.counts["missing_tracks"] == len(dm.missing) and dm.counts["skipped_files"] == 0
    with open(tmp_path / "run" / "missing.csv") as f:
        assert [row["track"] for row in csv.DictReader(f)] == dm.missing
    with open(tmp_path / "run" / "skipped.csv") as f:
        assert list(csv.DictReader(f)) == []
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("Skipped") for m in messages) and not any("fold" in m for m in messages)
    assert any(f"{len(dm.missing)} tracks listed by the filtered split are missing on disk" in m for m in messages)


def test_test_fraction_holds_out_tracks_of_every_class_before_the_folds(tmp_path):
    gtzan_tree(tmp_path / "gtzan", "genres", ".au", per_genre=5)
    dm = make_datamodule(tmp_path, "data=gtzan", f"data.root={tmp_path / 'gtzan'}", "data.test_fraction=0.2")
    roles = dm.track_roles()
    labels = dm.track_list.labels
    assert [sum(1 for role, label in zip(roles, labels) if role == TEST and label == c) for c in range(10)] == [1] * 10
    for fold in range(5):  # the same tracks are held out whatever the fold
        other = make_datamodule(tmp_path, "data=gtzan", f"data.root={tmp_path / 'gtzan'}", "data.test_fraction=0.2", f"fold={fold}")
        assert ((other.track_roles() == TEST) == (roles == TEST)).all()


def test_a_class_whose_training_tracks_are_all_unreadable_is_one_line_naming_them(tmp_path):
    for i in range(4):
        write_tone(tmp_path / "songs" / "a" / f"a{i}.wav", 4.0)
    write_tone(tmp_path / "songs" / "b" / "b_good.wav", 4.0, freq=880.0)
    (tmp_path / "songs" / "b" / "b_bad.wav").write_bytes(b"RIFF garbage" * 100)
    folds = [make_datamodule(tmp_path, "data=folder", f"data.root={tmp_path / 'songs'}", "data.num_folds=2", f"fold={k}")
             for k in range(2)]
    dm = next(d for d in folds if d.track_roles()[4] == TRAIN)  # b_bad.wav trains, b_good.wav validates
    dm.check_classes()  # before decoding, the split trains on one track of b
    with pytest.raises(DataError, match=r"class 'b' has no readable track to train on in fold \d of 2: its training "
                                        r"tracks' files were skipped \(b_bad.wav; reasons in skipped.csv\)"):
        dm.setup("fit")


def test_a_test_fraction_that_holds_out_no_track_of_a_class_names_it(tmp_path, caplog):
    gtzan_tree(tmp_path / "gtzan", "genres", ".au", per_genre=5)
    make_datamodule(tmp_path, "data=gtzan", f"data.root={tmp_path / 'gtzan'}", "data.test_fraction=0.05").check_classes()
    assert any("class 'blues' has 5 track(s) for data.num_folds=5: data.test_fraction=0.05 holds out none of them"
               in r.getMessage() for r in caplog.records)


# ESC-50: classes and folds from the release's index; a fold validates only its own recordings.

def recording(path: str) -> str:
    """ESC-50's recording of a clip: `.../3-3010-B-10.wav` -> `3-3010` (its takes share it)."""
    return "-".join(path.rsplit("/", 1)[1].split("-")[:2])


def test_esc50_classes_labels_and_folds_come_from_its_index(tmp_path):
    index = esc50_tree(tmp_path) / "meta" / "esc50.csv"
    index.write_text("\ufeff" + index.read_text())  # saved by a spreadsheet: a byte-order mark first
    tracks = Esc50Source(str(tmp_path)).tracks()
    assert tracks.classes == ["dog", "rain", "clock_tick"]  # the release's order (targets 0, 10, 38)
    assert len(tracks) == 30 and tracks.missing == []
    for path, label, fold in zip(tracks.paths, tracks.labels, tracks.folds):
        name = path.rsplit("/", 1)[1]
        assert fold == int(name.split("-")[0]) - 1 and label == list(ESC50_CLASSES).index(int(name[:-4].split("-")[-1]))
    ten = Esc50Source(str(tmp_path), subset="esc10").tracks()
    assert ten.classes == ["dog", "rain"] and len(ten) == 20


def test_an_official_fold_validates_its_recordings_whole_and_trains_on_every_other(tmp_path):
    esc50_tree(tmp_path / "ESC-50-master")
    dm = make_datamodule(tmp_path, "data=esc50", f"data.root={tmp_path / 'ESC-50-master'}", "fold=2")
    dm.check_classes()
    roles = dm.track_roles()
    validated = {recording(p) for p, role in zip(dm.track_list.paths, roles) if role == VAL}
    trained = {recording(p) for p, role in zip(dm.track_list.paths, roles) if role == TRAIN}
    assert validated == {"3-3000", "3-3010", "3-3038"} and not validated & trained and len(trained) == 12
    assert set(roles) == {TRAIN, VAL}
    assert dm.recordings.unique().numel() == 15  # the takes of a recording share one id (the reference's groups)


def test_a_kfold_over_esc50_keeps_the_takes_of_a_recording_in_one_role(tmp_path):
    esc50_tree(tmp_path / "ESC-50-master", takes="ABC")
    for fold in range(5):
        dm = make_datamodule(tmp_path, "data=esc50", f"data.root={tmp_path / 'ESC-50-master'}", "data.split=kfold",
                             "data.test_fraction=0.2", f"fold={fold}")
        roles = {}
        for path, role in zip(dm.track_list.paths, dm.track_roles()):
            roles.setdefault(recording(path), set()).add(int(role))
        assert len(roles) == 15 and all(len(taken) == 1 for taken in roles.values())
        assert {TRAIN, VAL, TEST} == set().union(*roles.values())


def test_esc50_clips_missing_on_disk_are_reported_and_the_rest_trains(tmp_path, shared_cache, caplog):
    esc50_tree(tmp_path / "esc")
    (tmp_path / "esc" / "audio" / "1-1000-A-0.wav").unlink()
    with caplog.at_level(logging.WARNING):
        record = train_in_process(tmp_path / "run", *TINY, "data=esc50", f"data.root={tmp_path / 'esc'}",
                                  f"paths.cache_dir={shared_cache}")
    assert record["status"] == "completed" and record["missing_tracks"] == 1
    assert record["train_tracks"] == 23 and record["val_tracks"] == 6  # fold 1 validates the release's fold 2
    assert any("1 tracks listed by the data set's index are missing on disk" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "run" / "missing.csv").read_text().splitlines() == ["track", "1-1000-A-0.wav"]


@pytest.mark.parametrize("overrides,message", [
    (("data=esc50", "data.test_fraction=0.1"), r"data.test_fraction=0.1 with data.split=official: .* set data.test_fraction=0"),
    (("data=esc50", "data.source.subset=esc20"), r"data.source.subset='esc20' is invalid: allowed \['esc50', 'esc10'\]"),
    (("data=folder", "data.split=official"), r"data.split=official needs a data set that ships its folds \(data=esc50\)"),
    (("data=esc50", "data.split=filtered"), r"data.split=filtered needs GTZAN \(data=gtzan\); .* use data.split=official"),
])
def test_esc50_settings_that_cannot_work_are_refused_by_the_config_check(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides, f"data.root={tmp_path}"), overrides=[])


@pytest.mark.parametrize("make,overrides,message", [
    (lambda root: (root / "audio").mkdir(parents=True), ("data=esc50",), r"holds no meta/esc50.csv: expected the ESC-50 release"),
    (lambda root: esc50_tree(root), ("data=esc50", "data.num_folds=10"), r"data.num_folds=10, but the data set ships 5 folds"),
    (lambda root: [p.unlink() for p in esc50_tree(root).glob("audio/5-*")], ("data=esc50",),
     r"the data set's fold 5 has none of its clips on disk \(6 listed clips are missing\)"),
    (lambda root: esc50_tree(root).joinpath("meta", "esc50.csv").open("a").write("6-1-A-0.wav,six,0,dog,True,1.ogg,A\n"),
     ("data=esc50",), r"esc50.csv, line 32: fold 'six' and target '0' must be whole numbers"),
    (lambda root: [write_tone(root / name / "a.wav", 1.0) for name in ("cat", "dog")], ("data=folder", "data.split=official"),
     r"data.split=official needs a data set that ships its folds \(data=esc50\)"),
])
def test_esc50_data_that_cannot_work_is_one_error_before_any_feature_work(tmp_path, make, overrides, message):
    make(tmp_path / "data")
    dm = make_datamodule(tmp_path, *overrides, f"data.root={tmp_path / 'data'}")
    with pytest.raises(DataError, match=message):
        dm.check_classes()
    assert not (tmp_path / "cache").exists()

