"""The small-data recipe: a budget in optimizer steps, random crops of whole spectrograms (pitch-
shifted and time-stretched on request), and the transformer levers (convolutional tokenizer,
overlapping patches, stochastic depth, EMA)."""
import math

import pytest
import torch
from hydra.utils import instantiate

from genre_vit.data.datamodule import CropBatchDataset, CropBatchSampler
from genre_vit.data.features import MelFeatures, PitchTimeWarp, Resize, StftFeatures, sounding_starts
from genre_vit.models.cnn import SpectrogramCNN
from genre_vit.models.vit import ConvTokenizer, DropPath, PatchEmbed, SpectrogramViT
from genre_vit.training import budget_in_epochs, budget_steps
from tests.conftest import TINY, compose_config, train_in_process


def test_crops_are_windows_of_the_right_track_drawn_anew_each_epoch_and_replayable():
    length = torch.tensor([300, 129, 1000])
    frames = torch.arange(4 * int(length.sum()), dtype=torch.float32).reshape(4, -1)
    begin = length.cumsum(0) - length
    data = CropBatchDataset(frames, begin, length, torch.tensor([7, 8, 9]), torch.tensor([0, 5, 6]), 128, Resize(None))
    sampler = CropBatchSampler(length, 128, batch_size=16, batches=5, seed=3)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler) == 5 and all(len(batch) == 16 for batch in epoch0)
    for batch in epoch0:
        x, labels, tracks = data[batch]
        assert x.shape == (16, 4, 128)
        for (k, start), window, label, track in zip(batch, x, labels, tracks):
            assert 0 <= start <= length[k] - 128 and (label, track) == ([7, 8, 9][k], [0, 5, 6][k])
            assert torch.equal(window, frames[:, begin[k] + start:begin[k] + start + 128])
    assert list(sampler) == epoch0  # the same (seed, epoch): the same crops, so a resume replays them
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    sampler.resume_at = (0, 2)  # a checkpoint taken after 2 batches of epoch 0
    assert list(sampler) == epoch0[2:]


def test_crop_draws_are_shared_out_between_processes_once_each():
    length = torch.tensor([500, 700])
    parts = [[tuple(d) for batch in CropBatchSampler(length, 100, 8, 3, seed=1, rank=r, world=2) for d in batch]
             for r in (0, 1)]
    generator = torch.Generator().manual_seed(1 * 100_003)  # what both processes draw: 3 batches x 8 x 2 processes
    k = torch.randint(2, (48,), generator=generator)
    start = (torch.rand(48, generator=generator) * (length[k] - 100 + 1)).long()
    assert len(parts[0]) == len(parts[1]) == 24
    assert sorted(parts[0] + parts[1]) == sorted(zip(k.tolist(), start.tolist()))


def padded_clip() -> torch.Tensor:
    """A 300-frame clip whose sound is frames 100-139, the rest the -100 dB floor."""
    clip = torch.full((4, 300), -100.0)
    clip[:, 100:140] = torch.linspace(-40, -20, 40)  # the loudest frame, -20 dB, is the last one
    return clip


def test_crops_of_padded_clips_can_skip_the_silence():
    """With features.sound_within_db every crop of 64 frames holds some of the sound, drawn among all such crops."""
    clip = padded_clip()
    starts = sounding_starts(clip, 64, within_db=30)
    assert starts.tolist() == list(range(100 - 63, 140))  # windows that overlap frames 100-139
    assert sounding_starts(clip, 64, within_db=10).tolist() == list(range(120 - 63, 140))  # frames within 10 dB: 120-139
    assert sounding_starts(torch.full((4, 300), -100.0), 64, 30).tolist() == list(range(237))  # all silent: every frame is the loudest
    length = torch.tensor([300, 500])
    sampler = CropBatchSampler(length, 64, batch_size=32, batches=20, seed=0, starts=[starts, torch.arange(437)])
    draws = torch.tensor([draw for batch in sampler for draw in batch])
    drawn = set(draws[draws[:, 0] == 0, 1].tolist())
    assert drawn <= set(starts.tolist()) and len(drawn) > 90  # about 320 draws spread over the 103 allowed starts
    assert draws[draws[:, 0] == 1, 1].max() > 400  # the other track: its whole range


def test_the_windows_scored_and_trained_on_are_those_that_hold_sound():
    """With features.sound_within_db a clip is cut into the windows (every segment_step frames)
    that hold sound, as its crops are: validation, test and predict never average the padding."""
    features = lambda **kw: StftFeatures(22050, 256, 256, "hann", 64, 32, None, **kw)
    clip = padded_clip()
    every, sounding = features().cut(clip), features(sound_within_db=30).cut(clip)
    assert len(every) == 8  # starts 0, 32, ..., 224
    assert torch.equal(sounding, every[[2, 3, 4]])  # starts 64, 96, 128 overlap frames 100-139
    assert torch.equal(features(sound_within_db=1).cut(clip), every[[3, 4]])  # within 1 dB of -20: frames 138-139
    tail = torch.full((4, 300), -100.0)
    tail[:, 290:] = -20.0  # sound only past the last whole window (frames 224-287)
    assert torch.equal(features(sound_within_db=30).cut(tail), features().cut(tail))  # no window holds sound: every one


def test_deformed_crop_draws_stay_inside_their_track_and_their_ranges():
    length = torch.tensor([300, 128, 1000])
    sampler = CropBatchSampler(length, 128, batch_size=64, batches=4, seed=3, time_stretch=1.25, pitch_shift=3)
    draws = torch.tensor([draw for batch in sampler for draw in batch])
    k, start, width, cents = draws.unbind(1)
    assert (width >= 102).all() and (width <= torch.clamp(length[k], max=160)).all()  # 128 / 1.25 .. 128 * 1.25
    assert (width < 128).any() and (width[k != 1] > 128).any() and (width[k == 1] <= 128).all()  # a 128-frame track: slower only
    assert (start >= 0).all() and (start + width <= length[k]).all()
    assert cents.abs().max() <= 300 and cents.unique().numel() > 100
    assert torch.equal(torch.tensor([d for batch in sampler for d in batch]), draws)  # replayable, as undeformed draws


@pytest.mark.parametrize("features", [
    MelFeatures(22050, 1024, 512, 128, 0.0, None, "hann", 8, 8, None),
    StftFeatures(22050, 1024, 512, "hann", 8, 8, None),
], ids=["mel", "stft"])
def test_a_pitch_shift_moves_a_tone_to_the_rows_of_the_shifted_tone(features):
    tone = lambda hz: features.spectrogram(torch.sin(2 * math.pi * hz * torch.arange(22050) / 22050))
    peak_row = lambda spectrogram: int(spectrogram.mean(dim=-1).argmax())
    low, fourth_up = tone(440.0), tone(440.0 * 2 ** (5 / 12))
    shifted = PitchTimeWarp(features.row_hz, 8)(low, torch.tensor([10]), torch.tensor([8]), torch.tensor([500]))[0]
    assert peak_row(low) < peak_row(shifted) and abs(peak_row(shifted) - peak_row(fourth_up)) <= 1


def test_a_time_stretch_reads_a_longer_or_shorter_span_into_the_window():
    frames = torch.arange(1000.0).expand(3, 1000)  # each column holds its index
    j = torch.arange(100.0)
    faster, slower = PitchTimeWarp(torch.tensor([100.0, 200.0, 300.0]), 100)(
        frames, torch.tensor([10, 10]), torch.tensor([200, 50]), torch.tensor([0, 0]))
    assert torch.allclose(faster, (10 + 2 * j + 0.5).expand(3, 100))          # 200 frames in 100 columns
    assert torch.allclose(slower, (10 + (j / 2 - 0.25).clamp(0, 49)).expand(3, 100))  # 50 frames in 100 columns


def test_undeformed_warped_crops_are_exactly_the_windows():
    length = torch.tensor([300, 129])
    frames = torch.randn(128, int(length.sum()))
    features = MelFeatures(22050, 1024, 512, 128, 0.0, None, "hann", 128, 64, None)
    data = CropBatchDataset(frames, length.cumsum(0) - length, length, torch.tensor([0, 1]), torch.tensor([0, 1]), 128,
                            Resize(None), PitchTimeWarp(features.row_hz, 128))
    draws = [[0, 0, 128, 0], [0, 172, 128, 0], [1, 1, 128, 0]]
    assert torch.equal(data[draws][0], torch.stack([frames[:, 0:128], frames[:, 172:300], frames[:, 301:429]]))


def test_the_pitch_tempo_preset_deforms_every_training_crop(tmp_path, shared_cache, monkeypatch):
    crops = []
    forward = PitchTimeWarp.forward
    monkeypatch.setattr(PitchTimeWarp, "forward", lambda self, *args: crops.append(forward(self, *args)) or crops[-1])
    record = train_in_process(tmp_path / "run", *TINY, "augment=pitch_tempo", f"paths.cache_dir={shared_cache}")
    assert record["status"] == "completed" and len(crops) >= record["steps"]


def test_overlapping_patches_give_the_ast_grid():
    embed = PatchEmbed([128, 128], [16, 16], 8, stride=[8, 8])
    assert embed.grid == (15, 15) and embed(torch.zeros(2, 128, 128)).shape == (2, 225, 8)
    with pytest.raises(ValueError, match=r"patch_size \[16, 16\] with stride \[10, 10\] does not tile img_size \[128, 128\]"):
        PatchEmbed([128, 128], [16, 16], 8, stride=[10, 10])


def test_the_convolutional_tokenizer_makes_one_token_per_position_of_its_maps():
    tokens = ConvTokenizer([128, 64], [1, 1], 32, None, [8, 16, 24])
    assert tokens.num_patches == 16 * 8 and tokens(torch.zeros(2, 128, 64)).shape == (2, 128, 32)
    with pytest.raises(ValueError, match=r"not divisible by \[8, 8\]"):
        ConvTokenizer([128, 60], [1, 1], 32, None, [8, 16, 24])


def test_the_tokenizer_can_be_exactly_the_cnns_feature_extractor():
    torch.manual_seed(0)
    cnn = SpectrogramCNN(img_size=[128, 64], num_classes=3, channels=[8, 16, 24], dropout=0.0, stem_patch=[2, 2])
    tokens = ConvTokenizer([128, 64], [1, 1], 32, None, [8, 16, 24], stem_patch=[2, 2])
    tokens.stem.load_state_dict(cnn.features.state_dict())  # the same modules, so the same weights fit
    x = torch.randn(2, 128, 64)
    maps = tokens.stem.eval()(x.unsqueeze(1))
    assert torch.allclose(maps, cnn.eval().forward_features(x), atol=1e-5) and maps.shape == (2, 24, 16, 8)
    assert tokens.num_patches == 16 * 8 and tokens(x).shape == (2, 128, 32)


def test_stochastic_depth_drops_whole_samples_in_training_only():
    drop, x = DropPath(0.5), torch.ones(1000, 4, 3)
    assert torch.equal(drop.eval()(x), x)
    kept = drop.train()(x)[:, 0, 0]
    assert set(kept.unique().tolist()) == {0.0, 2.0} and 400 < int((kept > 0).sum()) < 600
    net = SpectrogramViT(img_size=[32, 32], patch_size=[8, 8], num_classes=3, embed_dim=16, depth=3, num_heads=2,
                         mlp_ratio=2.0, dropout=0.0, head_hidden=0, pool="mean", drop_path=0.2)
    assert [b.drop_path.rate for b in net.blocks] == pytest.approx([0.0, 0.1, 0.2])


def test_the_budget_is_optimizer_steps_in_whole_epochs_and_grows_with_the_training_tracks_on_request(tmp_path, shared_cache):
    budget = ("trainer.max_epochs=null", "trainer.max_steps=9", "data.batches_per_epoch=3", f"paths.cache_dir={shared_cache}")
    few = train_in_process(tmp_path / "few", *TINY, *budget, "data.num_folds=3", "budget.steps_per_track=0")
    fixed = train_in_process(tmp_path / "fixed", *TINY, *budget, "data.random_crops=false", "data.batch_size=4",
                             "budget.steps_per_track=0")
    assert (few["steps"], few["epochs"]) == (9, 3)
    assert fixed["steps"] >= 9 and fixed["steps"] - 9 < fixed["steps"] / fixed["epochs"]  # rounded up to whole epochs
    grown = train_in_process(tmp_path / "grown", *TINY, *budget, "data.num_folds=3", "budget.steps_per_track=1.5",
                             "budget.max_steps=null")
    assert grown["train_tracks"] == few["train_tracks"] and grown["steps"] == 3 * math.ceil(1.5 * few["train_tracks"] / 3)
    accumulated = train_in_process(tmp_path / "accumulated", *TINY, *budget, "data.num_folds=3", "budget.steps_per_track=0",
                                   "+trainer.accumulate_grad_batches=3")
    assert (accumulated["steps"], accumulated["epochs"]) == (9, 9)  # an epoch of 3 batches is one optimizer step


def test_the_budget_counts_an_epoch_as_the_batches_lightning_limits_it_to():
    from types import SimpleNamespace

    three_batches = SimpleNamespace(prepare_data=lambda: None, setup=lambda stage: None, counts={"train_tracks": 10},
                                    train_dataloader=lambda: range(3))
    for limit, epochs in ((2, 5), (1.0, 3), (0.5, 9)):  # +trainer.limit_train_batches: 2 batches, all, half (1)
        trainer = SimpleNamespace(limit_train_batches=limit, accumulate_grad_batches=1)
        assert budget_in_epochs(trainer, three_batches, max_steps=9, max_epochs=None) == epochs


def test_the_budget_grows_with_the_training_tracks_from_its_floor_up_to_its_ceiling():
    assert budget_steps(600, 320) == 600  # steps_per_track=0: the same budget for any data set size
    assert budget_steps(600, 120, steps_per_track=5) == 600  # the largest sets the floor was measured on keep it
    assert budget_steps(600, 208, steps_per_track=5) == 1040
    assert budget_steps(600, 320, steps_per_track=5, cap=1200) == 1200
    assert budget_steps(600, 320, steps_per_track=5, cap=300) == 600  # a ceiling under the floor leaves the floor


def test_the_progress_bar_shows_the_step_against_the_budget(monkeypatch):
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import RichProgressBar

    from genre_vit.callbacks.progress import StepProgressBar

    monkeypatch.setattr(RichProgressBar, "get_metrics", lambda self, trainer, module: {"train/loss": 1.5})
    monkeypatch.setattr(RichProgressBar, "on_train_start", lambda self, trainer, module: None)
    bar = StepProgressBar()
    assert bar.get_metrics(SimpleNamespace(global_step=7), None)["step"] == "7"
    bar.on_train_start(SimpleNamespace(estimated_stepping_batches=600), None)
    assert bar.get_metrics(SimpleNamespace(global_step=120), None) == {"step": "120/600", "train/loss": 1.5}


def test_ema_checkpoints_hold_the_averaged_weights_that_predict_uses_with_batch_norm_recomputed(tmp_path,
                                                                                             shared_cache):
    from genre_vit.checkpoints import load_checkpoint

    metrics = train_in_process(tmp_path / "run", *TINY, "averaging=ema", f"paths.cache_dir={shared_cache}")
    checkpoint = load_checkpoint(metrics["best_checkpoint"])
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if k.startswith("model.net."))
    # the raw network's statistics ran over every epoch's 4 batches; the average's were recomputed on one pass
    counts = [k for k in averaged if k.endswith("num_batches_tracked")]
    assert counts and all(raw[k] == 4 * (metrics["best_epoch"] + 1) and averaged[k] == 4 for k in counts)


def test_with_an_ema_the_test_set_is_scored_with_the_averaged_weights_predict_uses(tmp_path, shared_cache):
    import lightning as L

    from genre_vit.checkpoints import load_checkpoint
    from genre_vit.recipe import Recipe

    overrides = (*TINY, "data.test_fraction=0.2", f"paths.cache_dir={shared_cache}")
    metrics = train_in_process(tmp_path / "run", *overrides, "averaging=ema")
    checkpoint = load_checkpoint(metrics["best_checkpoint"])
    cfg = compose_config(*overrides, f"paths.output_root={tmp_path}")
    recipe = Recipe.from_checkpoint(checkpoint, metrics["best_checkpoint"])
    averaged = recipe.build_classifier(cfg.module, recipe.build_network())
    averaged.load_state_dict(checkpoint["state_dict"])  # the weights predict loads
    tester = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    tested = tester.test(averaged, datamodule=instantiate(cfg.data, features=instantiate(cfg.features)), verbose=False)[0]
    assert metrics["test"]["test/loss"] == pytest.approx(tested["test/loss"], rel=1e-6)
    assert metrics["test"]["test/track_acc"] == tested["test/track_acc"]


def test_swa_averages_only_the_last_quarter_of_the_budget_and_checkpoints_hold_raw_weights_before(tmp_path,
                                                                                                shared_cache):
    from genre_vit.checkpoints import load_checkpoint

    # 3 epochs of 4 batches: 12 steps, averaged from step 9 on (start_fraction 0.75), so in the last epoch only
    metrics = train_in_process(tmp_path / "run", *TINY, "averaging=swa", "trainer.max_epochs=3",
                               "callbacks.model_checkpoint.save_top_k=-1", f"paths.cache_dir={shared_cache}")
    assert metrics["steps"] == 12
    checkpoints = tmp_path / "run" / "checkpoints"
    for epoch, averaged_steps in [(0, 0), (1, 0), (2, 3)]:
        checkpoint = load_checkpoint(checkpoints / f"epoch_{epoch:03d}.ckpt")
        assert int(checkpoint["averaging_state"]["n_averaged"]) == averaged_steps
        saved, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
        differ = any(not torch.equal(saved[k], raw[k]) for k in saved if k.startswith("model.net."))
        assert differ == bool(averaged_steps)  # before the average starts, the raw weights, not the initial ones


def test_batch_norm_statistics_are_recomputed_as_the_plain_mean_of_the_given_batches():
    from genre_vit.callbacks.averaging import recompute_batch_norm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5)).eval()
    model[1].running_mean.fill_(100.0)  # statistics that fit other weights
    batches = [(torch.randn(8, 1, 6, 6) + i, torch.zeros(8)) for i in range(4)]
    assert recompute_batch_norm(model, batches, count=3) == 3
    features = [model[0](x).detach() for x, _ in batches[:3]]
    expected = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, expected)
    assert model[1].num_batches_tracked == 3 and model[1].momentum == 0.1
    assert not any(m.training for m in model.modules())  # modes restored; dropout never ran in training mode
    assert recompute_batch_norm(torch.nn.Linear(2, 2), batches, count=3) == 0  # nothing to do without BatchNorm
