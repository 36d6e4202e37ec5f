"""Every config group composes, and the objects it describes can be built."""
from pathlib import Path

import pytest
import torch

from genre_vit import CONFIG_DIR
from genre_vit.config import validate
from genre_vit.recipe import Recipe
from tests.conftest import compose_config

GROUP_OPTIONS = sorted(
    (group.name, option.stem)
    for group in Path(CONFIG_DIR).iterdir() if group.is_dir()
    for option in group.glob("*.yaml")
)
REQUIRED = {("data", source): ["data.root=/tmp/nowhere"] for source in ("folder", "gtzan", "esc50")}


@pytest.mark.parametrize("group,option", GROUP_OPTIONS)
def test_group_option_composes_and_passes_validation(group, option):
    cfg = compose_config(f"{group}={option}", *REQUIRED.get((group, option), []))
    assert cfg.fold == 0 and cfg.model._target_
    validate(cfg)


def test_defaults_are_the_small_data_recipe():
    cfg = compose_config()
    assert cfg.features._target_.endswith("MelFeatures") and cfg.features.image_size is None
    assert (cfg.features.n_mels, cfg.features.segment_frames, cfg.features.segment_step) == (128, 128, 64)
    assert cfg.model._target_.endswith("SpectrogramCNN") and list(cfg.model.channels) == [32, 64, 128, 256]
    assert list(cfg.model.stem_patch) == [2, 2]
    assert cfg.data.random_crops and cfg.trainer.max_steps == 600 and cfg.trainer.max_epochs is None
    assert (cfg.budget.steps_per_track, cfg.budget.max_steps) == (5, 1200)  # 600 steps up to 120 training tracks
    assert cfg.data.num_folds == 5 and cfg.trainer.accelerator == "cpu" and not cfg.callbacks.weight_averaging


def test_the_transformer_is_the_compact_convolutional_tokenizer_one():
    cfg = compose_config("model=vit")
    assert list(cfg.model.stem_channels) == [16, 32, 64, 128] and list(cfg.model.patch_size) == [1, 1]
    assert (cfg.model.embed_dim, cfg.model.depth, cfg.model.num_heads, cfg.model.pool) == (128, 2, 4, "mean")
    assert cfg.model.drop_path == 0.1 and cfg.model.patch_stride is None


@pytest.mark.parametrize("features", ["stft", "mel"])
@pytest.mark.parametrize("model", ["cnn", "vit"])
def test_features_and_model_instantiate_together(features, model):
    cfg = compose_config(f"features={features}", f"model={model}")
    recipe = Recipe.from_config(cfg, [str(i) for i in range(10)])
    net = recipe.build_network()
    assert net(recipe.build_features()(torch.randn(22050 * 8))).shape[1] == 10


def test_data_root_override_reaches_the_source():
    cfg = compose_config("data=folder", "data.root=/music")
    assert cfg.data.source.root == "/music"


def test_slurm_launcher_composes_with_submitit():
    cfg = compose_config("hydra/launcher=slurm")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1


@pytest.mark.parametrize("trainer,expected", [("gpu", ("gpu", "bf16-mixed", "auto")), ("ddp", ("gpu", "bf16-mixed", "ddp")),
                                              ("ddp_cpu", ("cpu", None, "ddp"))])
def test_trainer_presets(trainer, expected):
    cfg = compose_config(f"trainer={trainer}")
    assert (cfg.trainer.accelerator, cfg.trainer.get("precision"), cfg.trainer.get("strategy", "auto")) == expected
