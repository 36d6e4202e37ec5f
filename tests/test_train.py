"""The real entry point, end to end on a tiny synthetic set, and its refusals of bad settings."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genre_vit.callbacks.figures import confusion_figure, examples_figure
from genre_vit.checkpoints import CheckpointError, load_checkpoint
from genre_vit.config import ConfigError
from genre_vit.recipe import Recipe
from genre_vit.runs import EPOCH_METRICS, read_record, read_track_scores, write_record
from genre_vit.summarize import epoch_curve, read_history, summarize
from genre_vit.training import experiment_settings, initialize_from, train
from tests.conftest import TINY, compose_config, run_entry_point, train_in_process, write_tone


def test_run_writes_metrics_json(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["fold"] == 1 and metrics["epochs"] == 2
    assert metrics["steps"] == 2 * 4  # debug=fast: 2 epochs of data.batches_per_epoch=4 random-crop batches
    assert metrics["train_tracks"] == 24 and metrics["val_tracks"] == 6  # 30 tracks, 5 folds
    # 8 s = 344 frames: windows of 128 frames every 64 start at 0, 64, 128 and 192, and one ends at the last frame
    assert metrics["train_segments"] == 24 * 5 and metrics["val_segments"] == 6 * 5
    assert 0.0 <= metrics["best"]["val/track_acc"] <= 1.0 and metrics["best_epoch"] in (0, 1)
    assert metrics["final"]["val/track_acc_best"] >= metrics["final"]["val/track_acc"]
    assert metrics["num_params"] > 0 and metrics["wall_time_s"] > 0
    assert 0 < metrics["process_rss_mb"] <= metrics["process_peak_rss_mb"]


def test_peak_memory_is_the_process_own_not_its_parents(tmp_path):
    """getrusage's ru_maxrss inherits the parent's peak across exec; the recorded peak must not."""
    held = bytearray(1536 * 2**20)  # touched pages: this process's peak is at least 1.5 GiB
    child = subprocess.run([sys.executable, "-c", "from genre_vit.runs import memory_mb; print(memory_mb('VmHWM'))"],
                           capture_output=True, text=True, check=True)
    assert len(held) and float(child.stdout) < 1536  # the child holds far less


def test_the_module_trains_a_network_without_patches(tmp_path, shared_cache):
    def band_means(cfg):
        cfg.model = OmegaConf.create({"_target_": "tests.tiny_net.BandMeans"})

    metrics = train_in_process(tmp_path / "run", *TINY, f"paths.cache_dir={shared_cache}", edit=band_means)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["num_params"] == 128 * 10 + 10  # one linear layer over the 128 rows of a segment
    assert metrics["final"]["train/loss_epoch"] > 0


def test_run_saves_best_and_last_checkpoints_and_config(tiny_run):
    names = {p.name for p in (tiny_run / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in names and any(n.startswith("epoch_") for n in names)
    assert (tiny_run / "config.yaml").read_text().count("channels") == 1
    assert (tiny_run / "skipped.csv").read_text().splitlines() == ["path,reason"]


def test_tensorboard_events_hold_track_accuracy_per_epoch(tiny_run):
    acc = EventAccumulator(str(tiny_run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"val/track_acc", "val/acc", "val/loss", "train/loss_epoch", "train/acc", "val/track_acc_best"} <= set(tags)
    assert len(acc.Scalars("val/track_acc")) == 2


@pytest.mark.parametrize("override,message", [
    ("experiment=v1_defaults model.patch_size=[16,5]",
     r"model.patch_size=\[16, 5\] does not tile the input image \[128, 32\]"),
    ("model=vit model.patch_size=[3,3]",
     r"model.patch_size=\[3, 3\] does not tile the stem's \[8, 8\] maps \(of the input image \[128, 128\]\)"),
    ("model=vit model.patch_size=[4,4] model.patch_stride=[3,3]",
     r"model.patch_size=\[4, 4\] with model.patch_stride=\[3, 3\] does not tile the stem's \[8, 8\] maps"),
    ("model=vit model.num_heads=3",
     r"model.embed_dim=128 is not divisible by model.num_heads=3: allowed num_heads .*\[1, 2, 4, 8, 16, 32, 64, 128\]"),
    ("model.stem_patch=[16,16] features.segment_frames=64",
     r"model.channels=\[.*\] after model.stem_patch=\[16, 16\] needs at least \[128, 128\] rows and columns; the "
     r"features give \[128, 64\]"),
    ("model.stem_patch=[4,0]", r"model.stem_patch=\[4, 0\] is invalid: allowed null \(no patch stem\) or two integers"),
    ("fold=5", r"fold=5 is invalid: allowed 0..4"),
    ("fold=-1", r"fold=-1 is invalid: allowed 0..4"),
    ("data.num_folds=1", r"data.num_folds=1 is invalid: allowed integers >= 2"),
    ("optimized_metric=val/accuracy", r"optimized_metric='val/accuracy' is invalid: allowed null or \['train/loss'"),
    ("features.window=kaiser", r"features.window='kaiser' is invalid: allowed \['hann', 'hamming', 'blackman'\]"),
    ("features.n_fft=0", r"features.n_fft=0 is invalid: allowed integers >= 2"),
    ("features.image_size=[128]", r"features.image_size=\[128\] is invalid: allowed null or two integers >= 1"),
    ("data.clip_seconds=-1", r"data.clip_seconds=-1 is invalid: allowed null or numbers in \[0.001, inf\)"),
    ("data.batch_size=0", r"data.batch_size=0 is invalid: allowed integers >= 1"),
    ("model=vit model.dropout=1.5", r"model.dropout=1.5 is invalid: allowed numbers in \[0, 1\)"),
    ("model=vit model.drop_path=1", r"model.drop_path=1 is invalid: allowed numbers in \[0, 1\)"),
    ("model=vit model.stem_channels=[16,0]", r"model.stem_channels=\[16, 0\] is invalid: allowed a list of integers"),
    ("model=vit model.stem_channels=[32,64,128,256] model.stem_patch=[2,2] features.segment_frames=120",
     r"model.stem_channels=\[32, 64, 128, 256\] after model.stem_patch=\[2, 2\] divides the input image \[128, 120\] "
     r"by \[16, 16\], so its sides must be multiples of 16 and 16"),
    ("model=vit model.stem_channels=[] model.stem_patch=[2,2]",
     r"model.stem_patch=\[2, 2\] replaces the first block of model.stem_channels, which is empty"),
    ("model=vit model.pool=max", r"model.pool='max' is invalid: allowed \['mean', 'cls'\]"),
    ("model.pool=cls", r"model.pool='cls' is invalid: allowed \['mean', 'time', 'time_stats'\]"),  # each network its own
    ("optim.lr=0", r"optim.lr=0 is invalid: allowed numbers in \[1e-12, inf\)"),
    ("augment.num_masks=0", r"augment.num_masks=0 is invalid: allowed integers >= 1"),
    ("augment=specaugment augment.mask_fill=max", r"augment.mask_fill='max' is invalid: allowed \['mean', 'min'\]"),
    ("augment.time_stretch=0.8", r"augment.time_stretch=0.8 is invalid: allowed numbers in \[1, inf\)"),
    ("augment.pitch_shift=24", r"augment.pitch_shift=24 is invalid: allowed numbers in \[0, 12\]"),
    ("augment=pitch_tempo data.random_crops=false",
     r"augment.time_stretch=1.25 deforms random crops, but data.random_crops=false: set data.random_crops=true"),
    ("trainer.max_epochs=0", r"trainer.max_epochs=0 is invalid: allowed null, -1 \(no limit\) or integers >= 1"),
    ("trainer.max_steps=0", r"trainer.max_steps=0 is invalid: allowed -1 \(no limit\) or integers >= 1"),
    ("trainer.max_steps=-1", r"trainer.max_steps=-1 and trainer.max_epochs=null set no training budget"),
    ("budget.steps_per_track=-1", r"budget.steps_per_track=-1 is invalid: allowed numbers in \[0, inf\)"),
    ("budget.max_steps=0", r"budget.max_steps=0 is invalid: allowed null or integers >= 1"),
    ("data.batches_per_epoch=0", r"data.batches_per_epoch=0 is invalid: allowed integers >= 1"),
    ("features.sound_within_db=0", r"features.sound_within_db=0 is invalid: allowed null or numbers in \[1e-06, inf\)"),
    ("data.time_stretch=1.25", r"data.time_stretch=1.25 is set by the augment group \(augment.time_stretch=1.0\), whose "
                               r"checks it skips: set augment.time_stretch=1.25 instead"),
    ("experiment=paper model=cnn", r"model.stem_channels is not a setting of SpectrogramCNN, the network this run builds: "
                                   r"an experiment preset's settings for another network\?"),
    ("data.clip_seconds=inf", r"data.clip_seconds=inf is invalid: allowed null or numbers in \[0.001, inf\)"),
    ("optim.lr=nan", r"optim.lr=nan is invalid: allowed numbers in \[1e-12, inf\)"),
    ("data.source.tracks_per_genre=0", r"data.source.tracks_per_genre=0 is invalid: allowed integers >= 1"),
    ("features.sound_within_db=20 augment=pitch_tempo",
     r"features.sound_within_db=20 needs undeformed crops, but augment.time_stretch=1.25: set features.sound_within_db=null"),
    ("features=mel features.n_mels=0", r"features.n_mels=0 is invalid: allowed integers >= 1"),
    ("features.top_db=0", r"features.top_db=0 is invalid: allowed null or numbers in \[1e-06, inf\)"),
    ("data.split=random", r"data.split='random' is invalid: allowed \['kfold', 'filtered', 'official'\]"),
    ("data.test_fraction=1.5", r"data.test_fraction=1.5 is invalid: allowed numbers in \[0, 1\)"),
    ("data.normalization=minmax", r"data.normalization='minmax' is invalid: allowed \['per_bin', 'global'\]"),
    ("averaging=swa callbacks.weight_averaging.start_fraction=1",
     r"callbacks.weight_averaging.start_fraction=1 is invalid: allowed numbers in \[0, 1\)"),
    ("averaging=ema callbacks.weight_averaging.bn_batches=0",  # would reset BatchNorm and recompute nothing
     r"callbacks.weight_averaging.bn_batches=0 is invalid: allowed integers >= 1"),
    ("optim.scheduler.warmup_fraction=abc", r"optim.scheduler.warmup_fraction='abc' is invalid: allowed numbers in \[0, 1\)"),
    ("optim.scheduler.min_lr_ratio=-2", r"optim.scheduler.min_lr_ratio=-2 is invalid: allowed numbers in \[0, 1\]"),
    ("reference=none optimized_metric=val/track_acc_network",
     r"optimized_metric=val/track_acc_network is logged only with a reference, and reference=none"),
    ("experiment=baseline_logreg optimized_metric=val/loss",
     r"optimized_metric=val/loss is not logged by the classical baseline: allowed \['val/track_acc'"),
    ("data=gtzan data.root=/music data.split=filtered fold=all", r"fold=all with data.split=filtered: GTZAN's filtered split is one"),
    ("data.clip_seconds=null", r"data.clip_seconds=null: the synthetic set is generated with tracks of data.clip_seconds"),
    ("model=vit model.patch_size=[2,2] model.patch_stride=[3,3]",
     r"model.patch_stride=\[3, 3\] is larger than model.patch_size=\[2, 2\]: the rows or columns between patches"),
    ("augment=specaugment augment.freq_mask=200", r"augment.freq_mask=200 is wider than the input image's 128 rows"),
    ("model=vit model.mlp_ratio=0.005", r"model.mlp_ratio=0.005 gives the blocks' MLPs no hidden unit at model.embed_dim=128"),
    ("features.sample_rate=16000", r"features.sample_rate=16000 differs from data.sample_rate=22050, the rate the audio "
                                   r"is decoded at: set data.sample_rate=16000 instead"),
])
def test_invalid_setting_stops_before_any_data_work(tmp_path, override, message):
    cfg = compose_config(*override.split(), f"paths.output_root={tmp_path}")
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "cache").exists()


def test_invalid_setting_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    result = run_entry_point("genre_vit.train", "model=vit", "model.patch_size=[16,5]", f"paths.output_root={tmp_path}",
                             cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "model.patch_size=[16, 5]" in errors[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "cache").exists()


def test_hparams_tab_lists_the_config_with_final_metrics(tiny_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(tiny_run / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    hparams = start.session_start_info.hparams
    assert hparams["model/dropout"].number_value == pytest.approx(0.3) and hparams["fold"].number_value == 1
    assert hparams["model/channels"].string_value == "[8, 16, 16, 16]"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    logged = acc.Scalars("hparams/val_track_acc")
    assert logged[-1].value == pytest.approx(metrics["best"]["val/track_acc"])


def test_confusion_matrix_and_examples_are_images_per_epoch(tiny_run):
    acc = EventAccumulator(str(tiny_run / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert len(acc.Images("val/confusion_matrix")) == 2
    assert acc.Images("val/examples")[0].width > 200
    assert acc.Images("val/confusion_matrix")[0].encoded_image_string.startswith(b"\x89PNG")


def test_the_confusion_figure_counts_every_cell_and_examples_show_wrong_guesses_in_red():
    matrix = torch.tensor([[3, 1], [0, 4]])
    (confusion,) = confusion_figure(matrix, ["crackling_fire", "rain"], "epoch 0").axes
    assert [text.get_text() for text in confusion.texts] == ["3", "1", "0", "4"]  # row by row: true x predicted
    assert [label.get_text() for label in confusion.get_yticklabels()] == ["crackling_fire", "rain"]
    (strip,) = examples_figure(torch.zeros(3, 8, 4), ["true a\npred a", "true b\npred a", "true c\npred c"],
                               [True, False, True]).axes
    titles = [tick.label2 for tick in strip.xaxis.get_major_ticks()]
    assert [t.get_text() for t in titles] == ["true a\npred a", "true b\npred a", "true c\npred c"]
    assert [t.get_color() for t in titles] == ["black", "red", "black"]


def test_history_csv_has_a_row_per_epoch(tiny_run):
    lines = (tiny_run / "history.csv").read_text().splitlines()
    assert lines[0] == ("epoch,train/loss_epoch,train/acc,val/loss,val/acc,val/track_acc,val/f1,"
                        "val/track_acc_network,val/track_acc_reference,lr")
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1"]


def test_a_run_resumed_by_a_version_that_logs_other_metrics_rewrites_its_history_in_the_new_columns(tmp_path):
    from types import SimpleNamespace

    from genre_vit.callbacks.history import EpochHistory

    (tmp_path / "history.csv").write_text("epoch,train/loss_epoch,val/track_acc,val/old_metric,lr\n0,2.0,0.5,7,0.001\n")
    metrics = {"train/loss_epoch": torch.tensor(1.5), "val/track_acc": torch.tensor(0.75),
               "val/track_acc_network": torch.tensor(0.625)}
    history = EpochHistory(str(tmp_path))
    trainer = SimpleNamespace(sanity_checking=False, global_rank=0, current_epoch=1, callback_metrics=metrics,
                              optimizers=[SimpleNamespace(param_groups=[{"lr": 0.0005}])])
    history.on_validation_epoch_end(trainer, None)
    history.on_train_epoch_end(trainer, None)
    history.on_train_epoch_end(SimpleNamespace(**{**vars(trainer), "current_epoch": 2}), None)  # appended
    rows = read_history(tmp_path)
    assert [(r["epoch"], r["train/loss_epoch"], r.get("val/track_acc_network"), r["lr"]) for r in rows] == [
        (0, 2.0, None, 0.001), (1, 1.5, 0.625, 0.0005), (2, 1.5, None, 0.0005)]  # epoch 2 was not validated
    assert (tmp_path / "history.csv").read_text().splitlines()[0] == ",".join(["epoch", *EPOCH_METRICS, "lr"])


def test_track_scores_csv_holds_every_validation_track_as_the_final_metrics_scored_it(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    config = OmegaConf.load(tiny_run / "config.yaml")
    with open(tiny_run / "track_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = [name.split("/", 1)[1] for name in rows[0] if name.startswith("network/")]
    assert len(rows) == metrics["val_tracks"] and len(classes) == 10 and len({r["path"] for r in rows}) == len(rows)
    assert [name for name in rows[0] if name.startswith("reference/")] == [f"reference/{c}" for c in classes]
    labels, network, reference = read_track_scores(tiny_run)
    fused = network + config.reference.strength * reference
    for scores, metric in ((fused, "val/track_acc"), (network, "val/track_acc_network"),
                           (reference, "val/track_acc_reference")):
        assert (scores.argmax(1) == labels).mean() == pytest.approx(metrics["final"][metric])
    assert [r["predicted"] for r in rows] == [classes[k] for k in fused.argmax(1)]
    assert np.allclose(np.exp(network).sum(1), 1, atol=1e-4)  # log-probabilities


def test_validation_every_few_epochs_still_scores_the_last_epoch_and_leaves_the_others_empty(tmp_path, shared_cache):
    record = train_in_process(tmp_path / "run", *TINY, "trainer.max_epochs=3", "+trainer.check_val_every_n_epoch=2",
                              "~callbacks.validation_images", f"paths.cache_dir={shared_cache}")
    history = read_history(tmp_path / "run")
    # epoch 1 is on the cadence; epoch 2 is off it, but it is the last: the final weights are scored
    assert [any(key.startswith("val/") for key in row) for row in history] == [False, True, True]
    assert epoch_curve(history, "val/track_acc")[0] == [1, 2] and epoch_curve(history, "train/acc")[0] == [0, 1, 2]
    assert record["final"]["val/track_acc"] == pytest.approx(history[-1]["val/track_acc"])


# Fine-tuning: init_from starts the network from another run's weights.

def network_weights(checkpoint) -> dict:
    """The network's weights saved in a checkpoint (the module's `model.net.` entries)."""
    saved = load_checkpoint(checkpoint)["state_dict"]
    return {k.removeprefix("model.net."): v for k, v in saved.items() if k.startswith("model.net.")}


def saved_classes(checkpoint) -> list[str]:
    """The class names a checkpoint's recipe carries."""
    return Recipe.from_checkpoint(load_checkpoint(checkpoint), checkpoint).class_names


def started_network(checkpoint, class_names: list[str], *overrides: str) -> dict:
    """The weights a run with `init_from=checkpoint` and these classes starts from."""
    cfg = compose_config(*TINY, f"init_from={checkpoint}", *overrides)
    recipe = Recipe.from_config(cfg, class_names)
    net = recipe.build_network()
    initialize_from(cfg, recipe, net)
    return net.state_dict()


def test_init_from_starts_every_weight_from_the_checkpoint_when_the_classes_match(tiny_run):
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    trained = network_weights(checkpoint)
    started = started_network(checkpoint, saved_classes(checkpoint))
    assert started.keys() == trained.keys() and all(torch.equal(started[k], trained[k]) for k in trained)


def test_init_from_lets_a_run_choose_other_windows_of_the_same_input(tiny_run):
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    trained = network_weights(checkpoint)
    started = started_network(checkpoint, saved_classes(checkpoint),
                              "features.segment_step=16", "features.sound_within_db=20")
    assert all(torch.equal(started[k], trained[k]) for k in trained)


def test_init_from_gives_other_classes_a_new_head_and_keeps_the_rest(tiny_run):
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    trained = network_weights(checkpoint)
    started = started_network(checkpoint, ["birds", "rain"])
    body = [k for k in trained if not k.startswith("head.")]
    assert body and all(torch.equal(started[k], trained[k]) for k in body)
    assert started["head.2.weight"].shape[0] == 2  # the linear classifier, fresh for two classes


def test_init_from_refuses_a_checkpoint_of_other_features_before_training(tiny_run, tmp_path, shared_cache):
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match=rf"^init_from={checkpoint} has another input or network than this run; "
                                              r"1 differ: features.n_fft: checkpoint 1024 != this run 512; "
                                              r"the checkpoint's settings, as overrides: features.n_fft=1024$"):
        train_in_process(tmp_path / "run", *TINY, "features.n_fft=512", f"init_from={checkpoint}",
                         f"paths.cache_dir={shared_cache}")
    assert not (tmp_path / "run" / "tensorboard").exists(), "refused before the trainer was built"


def test_a_refused_init_from_names_the_overrides_of_the_input_alone_and_they_are_accepted(tiny_run):
    """Another fold, seed or batch size is this run's own choice: the fix names only what the weights need."""
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    choices = ("fold=2", "seed=7", "data.batch_size=4")
    fix_pattern = r"the checkpoint's settings, as overrides: features.hop_length=\d+ features.n_mels=\d+$"
    with pytest.raises(CheckpointError, match=r"2 differ: features.hop_length: .*; features.n_mels: .*; " + fix_pattern) as refused:
        started_network(checkpoint, saved_classes(checkpoint), *choices, "features.n_mels=32", "features.hop_length=300")
    fix = str(refused.value).rpartition("as overrides: ")[2].split()
    trained = network_weights(checkpoint)
    started = started_network(checkpoint, saved_classes(checkpoint), *choices,
                              "features.n_mels=32", "features.hop_length=300", *fix)
    assert all(torch.equal(started[k], trained[k]) for k in trained)


def test_a_missing_init_from_checkpoint_is_one_line_naming_the_key(tmp_path, shared_cache):
    with pytest.raises(CheckpointError, match=rf"^init_from={tmp_path / 'none.ckpt'}: no such checkpoint file$"):
        train_in_process(tmp_path / "run", *TINY, f"init_from={tmp_path / 'none.ckpt'}", f"paths.cache_dir={shared_cache}")


def test_a_run_fine_tunes_a_checkpoint_on_a_folder_of_other_classes(tiny_run, tmp_path, shared_cache):
    for c, name in enumerate(["birds", "rain"]):
        for i in range(5):
            write_tone(tmp_path / "sounds" / name / f"{i}.wav", 8.0, freq=300.0 + 200 * c + 10 * i)
    metrics = train_in_process(tmp_path / "run", *TINY, "data=folder", f"data.root={tmp_path / 'sounds'}",
                               f"init_from={tiny_run / 'checkpoints' / 'last.ckpt'}", f"paths.cache_dir={shared_cache}")
    assert metrics["status"] == "completed" and metrics["steps"] == 8 and metrics["val_tracks"] == 2
    tab = experiment_settings(compose_config(*TINY, f"init_from={tiny_run / 'checkpoints' / 'last.ckpt'}"))
    assert tab["init_from"] == str(tiny_run / "checkpoints" / "last.ckpt")  # HPARAMS tells fine-tuned runs apart


def test_a_fresh_run_in_a_used_folder_sets_the_earlier_runs_outputs_aside_and_loses_none(tmp_path, shared_cache):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "history.csv").write_text("epoch,val/track_acc\n0,0.9\n")  # a network's, trained here before
    (run / "track_scores.csv").write_text("track,label\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"an interrupted run's weights")
    write_record(run, "interrupted", fold=1, resume="python -m genre_vit.train ckpt_path=last")
    train_in_process(run, *TINY, "experiment=baseline_logreg", "ckpt_path=last", f"paths.cache_dir={shared_cache}")
    earlier = run / "earlier_runs" / "1"
    assert (earlier / "checkpoints" / "last.ckpt").read_bytes() == b"an interrupted run's weights"
    assert read_record(earlier)["status"] == "interrupted" and (earlier / "history.csv").exists()
    assert not (run / "history.csv").exists() and not (run / "checkpoints").exists()  # nothing was resumed
    assert read_record(run)["status"] == "completed"

    train_in_process(run, *TINY, "experiment=baseline_logreg", f"paths.cache_dir={shared_cache}")  # and again
    assert read_record(run / "earlier_runs" / "2")["status"] == "completed"
    assert (run / "earlier_runs" / "2" / "tensorboard").is_dir() and (run / "tensorboard").is_dir()
    summarize(tmp_path)
    assert [row["dir"] for row in csv.DictReader((tmp_path / "summary.csv").open())] == ["run"]  # not the earlier ones


def test_a_network_run_set_aside_goes_on_only_in_a_folder_of_its_own(tmp_path, shared_cache):
    run = tmp_path / "run"
    for _ in range(2):
        train_in_process(run, *TINY, f"paths.cache_dir={shared_cache}")
    earlier = run / "earlier_runs" / "1"
    assert read_record(earlier)["status"] == read_record(run)["status"] == "completed"
    events = [sorted(p.name for p in (folder / "tensorboard").glob("events.*")) for folder in (run, earlier)]
    assert events[0] and events[1] and not set(events[0]) & set(events[1])  # each run's curves apart
    with pytest.raises(CheckpointError, match=r"belongs to a run that a fresh run set aside in .*: resumed there, it would"):
        train_in_process(run, *TINY, f"paths.cache_dir={shared_cache}", f"ckpt_path={earlier / 'checkpoints' / 'last.ckpt'}")
    assert not (run / "earlier_runs" / "2").exists()


def test_a_fold_all_job_that_completes_drops_the_failure_an_earlier_try_recorded(tmp_path, shared_cache):
    job = tmp_path / "job"
    job.mkdir()
    write_record(job, "failed", fold="all", error="DataError: data.root='/music' is not a directory")
    train_in_process(job, *TINY, "experiment=baseline_logreg", "fold=all", "data.num_folds=2",
                     f"paths.cache_dir={shared_cache}")
    assert (job / "cross_validation.json").exists() and read_record(job) is None
    summarize(tmp_path)
    assert "did not complete" not in (tmp_path / "summary.md").read_text()
