"""The feature cache: computed once per setting, shared, atomic, and self-repairing."""
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from genre_vit.data.locks import build_lock
from genre_vit.data.splits import VAL
from genre_vit.files import umask
from tests.conftest import SMALL_FEATURES, compose_config, gtzan_tree, make_datamodule, write_tone


@pytest.fixture
def gtzan(tmp_path):
    gtzan_tree(tmp_path / "gtzan", "genres", ".au", per_genre=2)
    return ["data=gtzan", f"data.root={tmp_path / 'gtzan'}"]


def test_second_run_and_other_folds_extract_nothing(tmp_path, gtzan):
    first = make_datamodule(tmp_path, *gtzan)
    first.setup("fit")
    assert first.cache.extractions == 1
    # The entry holds whole spectrograms: segment step, image size and crops are cut in memory.
    for overrides in ([], ["fold=3"], ["optim.lr=1e-2"], ["model=vit"], ["data.random_crops=false"],
                      ["features.segment_step=64", "features.image_size=[128,32]"]):
        again = make_datamodule(tmp_path, *gtzan, *overrides)
        again.setup("fit")
        assert again.cache.extractions == 0
        assert again.table.segments.shape == first.table.segments.shape or overrides[0].startswith("features.")


def test_changing_n_fft_makes_a_new_entry(tmp_path, gtzan):
    make_datamodule(tmp_path, *gtzan).setup("fit")
    other = make_datamodule(tmp_path, *gtzan, "features.n_fft=512")
    other.setup("fit")
    assert other.cache.extractions == 1
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 2
    assert other.table.segments.shape[1] == 257


def test_truncated_entry_is_detected_and_rebuilt(tmp_path, gtzan, caplog):
    dm = make_datamodule(tmp_path, *gtzan)
    dm.setup("fit")
    (entry,) = (tmp_path / "cache" / "features").glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:1000])
    rebuilt = make_datamodule(tmp_path, *gtzan)
    with caplog.at_level(logging.WARNING):
        rebuilt.setup("fit")
    assert rebuilt.cache.extractions == 1
    assert any("is damaged" in r.getMessage() and entry.name in r.getMessage() for r in caplog.records)
    assert (rebuilt.table.segments == dm.table.segments).all()


def test_no_temporary_files_are_left_behind(tmp_path, gtzan):
    make_datamodule(tmp_path, *gtzan).setup("fit")
    assert not [p for p in (tmp_path / "cache" / "features").iterdir() if p.suffix not in (".pt", ".lock")]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_build(tmp_path, gtzan):
    make_datamodule(tmp_path, *gtzan).setup("fit")
    (entry,) = (tmp_path / "cache" / "features").glob("*.pt")
    entry.unlink()
    stale = entry.parent / f".{entry.stem}.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    make_datamodule(tmp_path, *gtzan).setup("fit")
    assert entry.exists() and not stale.exists()


def test_a_failed_cache_write_is_reported_and_the_run_goes_on(tmp_path, gtzan, monkeypatch, caplog):
    def disk_full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1024 vs 0")

    monkeypatch.setattr("genre_vit.data.cache.torch.save", disk_full)
    dm = make_datamodule(tmp_path, *gtzan)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert len(dm.train_set) > 0
    features = tmp_path / "cache" / "features"
    assert not list(features.glob("*.pt")) and not list(features.glob(".*.tmp"))
    (warning,) = [r.getMessage() for r in caplog.records if "Could not write the feature cache" in r.getMessage()]
    assert str(features) in warning and "in memory" in warning


def test_extraction_in_worker_processes_matches_one_process(tmp_path, gtzan):
    one = make_datamodule(tmp_path / "a", *gtzan)
    two = make_datamodule(tmp_path / "b", *gtzan, "data.feature_workers=2")
    one.setup("fit"), two.setup("fit")
    assert (one.table.segments == two.table.segments).all()


@pytest.mark.parametrize("mode", ["per_bin", "global"])
def test_normalization_uses_training_tracks_only(tmp_path, gtzan, mode):
    dm = make_datamodule(tmp_path, *gtzan, f"data.normalization={mode}")
    dm.setup("fit")
    train = dm.train_set.segments
    assert dm.norm_mean.shape == (train.shape[1],)
    expected = train.mean(dim=(0, 2)) if mode == "per_bin" else train.mean().expand(train.shape[1])
    assert torch.allclose(dm.norm_mean, expected, atol=1e-4)
    everything = dm.table.segments.mean(dim=(0, 2)) if mode == "per_bin" else dm.table.segments.mean()
    assert not torch.allclose(dm.norm_mean, everything.expand(train.shape[1]), atol=1e-4)


def test_normalization_travels_in_the_checkpoint_buffers(tmp_path, gtzan):
    from hydra.utils import instantiate

    from genre_vit.inference import Predictor
    from genre_vit.recipe import Recipe
    dm = make_datamodule(tmp_path, *gtzan)
    dm.setup("fit")
    cfg = compose_config(*SMALL_FEATURES, "model=vit", "model.depth=1", "model.embed_dim=16", "model.num_heads=2",
                         "model.stem_channels=[]", "model.patch_size=[43,16]", "reference=none")
    recipe = Recipe.from_config(cfg, dm.classes)
    module = instantiate(cfg.module, net=recipe.build_network(), input_rows=recipe.image_shape[0], class_names=dm.classes)
    module.model.normalize.set(dm.norm_mean, dm.norm_std)
    state = module.state_dict()
    assert torch.equal(state["model.normalize.mean"].flatten(), dm.norm_mean)
    assert torch.equal(state["model.normalize.std"].flatten(), dm.norm_std)
    x = dm.val_set.segments[:4].float()  # predict applies it by running the saved model
    assert torch.equal(Predictor(recipe, state).model(x), module.eval()(x))


def test_the_same_files_named_by_another_path_reuse_the_entry(tmp_path, gtzan, monkeypatch):
    make_datamodule(tmp_path, *gtzan).setup("fit")
    monkeypatch.chdir(tmp_path)
    relative = make_datamodule(tmp_path, "data=gtzan", "data.root=gtzan")  # same tree, relative spelling
    relative.setup("fit")
    assert relative.cache.extractions == 0


def extracted_paths(monkeypatch) -> list[str]:
    """The files each later extraction decodes (appended to the returned list)."""
    from genre_vit.data import datamodule

    seen, real = [], datamodule.extract_spectrograms
    monkeypatch.setattr(datamodule, "extract_spectrograms", lambda paths, *a: seen.extend(paths) or real(paths, *a))
    return seen


def bump_mtime(path, seconds=5):
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 10**9))


def test_a_file_replaced_in_place_is_extracted_again_and_only_it(tmp_path, gtzan, monkeypatch):
    first = make_datamodule(tmp_path, *gtzan)
    first.setup("fit")
    replaced = tmp_path / "gtzan" / "genres" / "rock" / "rock.00001.au"
    write_tone(replaced, 4.0, freq=1234.0)  # same length, so the same size: only the modification time tells
    bump_mtime(replaced)
    seen = extracted_paths(monkeypatch)
    again = make_datamodule(tmp_path, *gtzan)
    again.setup("fit")
    assert seen == [str(replaced)] and again.cache.extractions == 1
    k = again.track_list.paths.index(str(replaced))
    assert not torch.equal(again.table.segments[again.table.track_index == k], first.table.segments[first.table.track_index == k])
    others = again.table.track_index != k
    assert torch.equal(again.table.segments[others], first.table.segments[first.table.track_index != k])
    third = make_datamodule(tmp_path, *gtzan)
    third.setup("fit")
    assert third.cache.extractions == 0 and seen == [str(replaced)]


def test_a_once_corrupt_file_is_used_once_fixed(tmp_path, gtzan, monkeypatch):
    listed = make_datamodule(tmp_path, *gtzan)
    roles = dict(zip(listed.track_list.paths, listed.track_roles()))
    # a jazz track that validates, if one does: the other then trains (a class needs a readable training track)
    broken = Path(min((p for p in roles if "/jazz/" in p), key=lambda p: roles[p] != VAL))
    broken.write_bytes(b"not audio at all" * 50)
    before = make_datamodule(tmp_path, *gtzan)
    before.setup("fit")
    assert before.counts["skipped_files"] == 1
    write_tone(broken, 4.0)
    seen = extracted_paths(monkeypatch)
    fixed = make_datamodule(tmp_path, *gtzan)
    fixed.setup("fit")
    assert seen == [str(broken)] and fixed.counts["skipped_files"] == 0
    assert fixed.counts["train_tracks"] + fixed.counts["val_tracks"] == 20


def test_added_and_removed_files_update_the_entry_without_extracting_the_rest(tmp_path, gtzan, monkeypatch, caplog):
    make_datamodule(tmp_path, *gtzan).setup("fit")
    (tmp_path / "gtzan" / "genres" / "rock" / "rock.00001.au").unlink()
    added = tmp_path / "gtzan" / "genres" / "pop" / "live" / "pop.00077.au"  # a file in a sub-folder counts too
    write_tone(added, 4.0, freq=777.0)
    seen = extracted_paths(monkeypatch)
    changed = make_datamodule(tmp_path, *gtzan)
    with caplog.at_level(logging.INFO):
        changed.setup("fit")
    assert seen == [str(added)] and changed.counts["train_tracks"] + changed.counts["val_tracks"] == 20
    assert any("1 of 20 files are new or changed" in r.getMessage() and "1 are gone" in r.getMessage() for r in caplog.records)
    (entry,) = (tmp_path / "cache" / "features").glob("*.pt")
    assert entry.stat().st_mode & 0o777 == 0o666 & ~umask()  # group-shared caches stay usable


def test_a_second_builder_waits_for_the_lock_holder_and_says_so(tmp_path, caplog):
    lock, order = tmp_path / "entry.lock", []

    def second_builder():
        with build_lock(lock, "the entry"):
            order.append("second")

    with caplog.at_level(logging.INFO, logger="genre_vit.data.locks"):
        with build_lock(lock, "the entry"):
            waiter = threading.Thread(target=second_builder)
            waiter.start()
            deadline = time.time() + 30
            while not any("Waiting for another process that is building the entry" in r.getMessage()
                          for r in caplog.records):
                assert time.time() < deadline
                time.sleep(0.05)
            order.append("first")
        waiter.join(timeout=30)
    assert order == ["first", "second"]


def test_a_killed_lock_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / "entry.lock"
    script = (f"import filelock, time; filelock.FileLock({str(lock)!r}).acquire(); "
              "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    started = time.perf_counter()
    with build_lock(lock, "the entry"):
        assert time.perf_counter() - started < 1


def test_a_lock_that_cannot_be_created_builds_without_it_and_warns(tmp_path, caplog):
    (tmp_path / "a_file").write_text("not a folder")  # unwritable even for root, unlike a chmod-ed folder
    built = False
    with caplog.at_level(logging.WARNING), build_lock(tmp_path / "a_file" / "entry.lock", "the entry"):
        built = True
    assert built and any("building the entry without it" in r.getMessage() for r in caplog.records)
