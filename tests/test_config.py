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
REQUIRED = {("data", "folder"): ["data.root=/tmp/nowhere"], ("data", "gtzan"): ["data.root=/tmp/nowhere"]}


@pytest.mark.parametrize("group,option", GROUP_OPTIONS)
def test_group_option_composes_and_passes_validation(group, option):
    cfg = compose_config(f"{group}={option}", *REQUIRED.get((group, option), []))
    assert cfg.fold == 0 and cfg.model._target_
    validate(cfg)


def test_defaults_are_the_original_design():
    cfg = compose_config()
    assert list(cfg.features.image_size) == [128, 32] and cfg.features.n_fft == 256
    assert cfg.features.segment_frames == 512
    assert list(cfg.model.patch_size) == [16, 4]
    assert (cfg.model.embed_dim, cfg.model.depth, cfg.model.num_heads, cfg.model.pool) == (128, 8, 4, "mean")
    assert cfg.data.num_folds == 5 and cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("features", ["stft", "mel"])
def test_features_and_model_instantiate_together(features):
    cfg = compose_config(f"features={features}")
    recipe = Recipe.from_config(cfg, [str(i) for i in range(10)])
    net = recipe.build_network()
    assert net.patch_embed.num_patches > 0 and net(recipe.build_features()(torch.randn(22050 * 8))).shape[1] == 10


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
