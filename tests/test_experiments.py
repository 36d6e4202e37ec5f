"""Presets compose to what they promise."""
import dataclasses

from genre_vit.recipe import Recipe
from tests.conftest import compose_config


def test_paper_preset_is_the_original_report():
    cfg = compose_config("experiment=paper")
    assert cfg.features._target_.endswith("StftFeatures") and cfg.features.n_fft == 256
    assert (cfg.features.segment_frames, list(cfg.features.image_size)) == (512, [128, 32])
    assert list(cfg.model.patch_size) == [16, 4] and (cfg.model.embed_dim, cfg.model.depth, cfg.model.num_heads) == (128, 8, 4)
    assert cfg.model.pool == "mean" and cfg.trainer.max_epochs == 30 and cfg.data.num_folds == 5
    assert cfg.optim.scheduler is None and cfg.augment.freq_mask == 0 and cfg.augment.mixup_alpha == 0
    assert not cfg.model.stem_channels and cfg.model.drop_path == 0 and cfg.model.head_hidden == 128
    assert not cfg.data.random_crops and cfg.data.batch_size == 64 and cfg.trainer.max_steps == -1
    assert not cfg.features.end_window  # the report's windows, every 256 frames from the start


def test_v1_defaults_are_the_defaults_before_the_small_data_recipe():
    cfg = compose_config("experiment=v1_defaults")
    paper = compose_config("experiment=paper")
    assert cfg.features == paper.features and cfg.model == paper.model and cfg.data == paper.data
    assert cfg.trainer.max_epochs == 12 and cfg.trainer.max_steps == -1
    assert cfg.optim.lr == 5e-4 and cfg.optim.label_smoothing == 0.1 and cfg.optim.scheduler is not None


def test_mel_recipe_keeps_full_resolution_and_the_token_count():
    cfg = compose_config("experiment=mel_specaugment")
    assert cfg.features._target_.endswith("MelFeatures") and cfg.features.image_size is None
    assert (cfg.features.n_mels // cfg.model.patch_size[0]) * (cfg.features.segment_frames // cfg.model.patch_size[1]) == 64
    assert cfg.augment.freq_mask > 0 and cfg.optim.scheduler is not None


def test_short_events_preset_is_the_default_recipe_on_short_windows_of_sound():
    cfg, default = compose_config("experiment=short_events"), compose_config()
    assert (cfg.features.segment_frames, cfg.features.segment_step, cfg.data.batch_size) == (64, 32, 64)
    assert cfg.features.sound_within_db == 20 and default.features.sound_within_db is None
    assert cfg.model == default.model and cfg.optim == default.optim and cfg.trainer == default.trainer
    # the same pixels per step as the default's 32 windows of 128 frames
    assert cfg.data.batch_size * cfg.features.segment_frames == default.data.batch_size * default.features.segment_frames


def test_esc50_trains_on_the_short_events_windows_unless_told_otherwise():
    esc50 = ("data=esc50", "data.root=/tmp/nowhere")
    cfg, short_events = compose_config(*esc50), compose_config(*esc50, "experiment=short_events")
    assert all(cfg[key] == short_events[key] for key in cfg if key != "hydra")  # the same run, whichever is named
    assert (cfg.features.segment_frames, cfg.features.sound_within_db, cfg.data.batch_size) == (64, 20, 64)
    assert compose_config(*esc50, "features=mel").features == compose_config().features
    assert compose_config(*esc50, "experiment=paper").features == compose_config("experiment=paper").features
    # the classical baseline reads the same windows as the fused default's reference
    assert compose_config(*esc50, "experiment=baseline_logreg").features == cfg.features
    assert compose_config("data=folder", "data.root=/tmp/nowhere").features == compose_config().features


def test_a_refused_resume_names_the_overrides_that_restore_the_checkpoints_settings():
    esc50 = ("data=esc50", "data.root=/tmp/nowhere")
    before = Recipe.from_config(compose_config(*esc50, "features=mel", "data.batch_size=32"), ["dog", "rain"])  # 3 s windows
    now = Recipe.from_config(compose_config(*esc50), ["dog", "rain"])
    overrides = before.restoring_overrides(now)
    assert overrides == ["data.batch_size=32", "features.segment_frames=128", "features.segment_step=64",
                         "features.sound_within_db=null"]
    assert Recipe.from_config(compose_config(*esc50, *overrides), ["dog", "rain"]) == before
    assert before.restoring_overrides(dataclasses.replace(now, class_names=["cat", "rain"])) is None  # no key fixes that


def test_a_checkpoint_from_before_the_end_window_resumes_with_the_override_it_names():
    cfg = compose_config()
    written_before = Recipe.from_config(cfg, ["dog", "rain"]).to_dict()
    del written_before["features"]["end_window"]  # as a checkpoint written before the setting existed
    saved = Recipe.from_checkpoint({"genre_vit_recipe": written_before}, "old.ckpt")
    assert saved.features["end_window"] is False  # what its windows were
    overrides = saved.restoring_overrides(Recipe.from_config(cfg, ["dog", "rain"]))
    assert overrides == ["features.end_window=false"]
    assert Recipe.from_config(compose_config(*overrides), ["dog", "rain"]) == saved
