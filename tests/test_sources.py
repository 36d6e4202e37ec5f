"""Real audio trees: GTZAN layouts, class folders, the skip list and the filtered split."""
import csv
import logging

import pytest
from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid, gtzan_genres

from genre_vit.data.sources import DataError, FolderSource, GtzanSource
from genre_vit.data.splits import TEST, TRAIN, UNUSED, VAL
from tests.conftest import gtzan_tree, make_datamodule, write_tone


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
