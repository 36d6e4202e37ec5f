"""The recipe: what a checkpoint carries so that predict, resume and the bench rebuild exactly the
pipeline that trained its weights. Built from the config once, saved in every checkpoint, read
back from it; the one place that builds features and networks."""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from genre_vit.checkpoints import CheckpointError
from genre_vit.cli import override_value
from genre_vit.data.audio import Decoding
from genre_vit.models import normalized
from genre_vit.reference import StatisticsReference
from genre_vit.runs import flattened

CHECKPOINT_KEY = "genre_vit_recipe"
HELD_OUT_KEY = "genre_vit_held_out"  # the split's validation and test tracks (GenreDataModule.held_out_tracks)
SPLIT_KEYS = ("split", "num_folds", "fold", "split_seed", "test_fraction")
# Where from_config reads each setting: the config section of each recipe section, and the keys it renames.
CONFIG_SECTIONS = {"decoding": "data", "split": "data", "features": "features", "model": "model", "reference": "reference"}
# Feature settings added since checkpoints began to carry their recipe: what the features of a
# checkpoint written before each did (so a resume names the difference and its fix).
FEATURES_BEFORE_THEIR_KEYS = {"end_window": False}
RENAMED_KEYS = {"split.fold": "fold", "batches.seed": "seed", "batches.batch_size": "data.batch_size"}
# The recipe sections that are built with Hydra's instantiate, and the package each one's class must come from.
BUILT_SECTIONS = {"features": "genre_vit.data.features.", "model": "genre_vit.models.", "reference": "genre_vit.reference."}


def every_key(key: str) -> bool:
    """The default of the key filters below: every setting counts."""
    return True


def build_features(settings: Mapping[str, Any]) -> nn.Module:
    """The SegmentFeatures module of a `features` config: (samples,) waveform -> (segments, F, T)."""
    return instantiate(settings)


@dataclass(frozen=True)
class Recipe:
    """Plain data (so checkpoints load with `weights_only=True`).

    decoding: how files become waveforms (the Decoding's fields); features: the `features`
    config (`_target_` included); model: the `model` config without `compile`; class_names: the
    classes the logits stand for; split: which tracks trained and which validated; batches: the
    seed and batch size that fix the batch order a mid-epoch resume replays; reference: the
    `reference` config (None: the network alone; checkpoints written before it existed have none).
    """

    decoding: dict
    features: dict
    model: dict
    class_names: list[str]
    split: dict
    batches: dict
    reference: dict | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig, class_names: list[str]) -> Recipe:
        model = OmegaConf.to_container(cfg.model, resolve=True)
        model.pop("compile", None)  # how the network runs, not what its weights mean
        return cls(decoding={f.name: cfg.data[f.name] for f in dataclasses.fields(Decoding)},
                   features=OmegaConf.to_container(cfg.features, resolve=True), model=model,
                   class_names=list(class_names), split={k: cfg.data[k] for k in SPLIT_KEYS},
                   batches={"seed": cfg.seed, "batch_size": cfg.data.batch_size},
                   reference=OmegaConf.to_container(cfg.reference, resolve=True) if cfg.get("reference") else None)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict, path: str | Path, key: str = "ckpt_path") -> Recipe:
        """The recipe saved in a loaded checkpoint; `key` names the setting that chose the file."""
        saved = checkpoint.get(CHECKPOINT_KEY)
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        if not isinstance(saved, dict) or not required <= set(saved) <= fields:
            raise CheckpointError(f"{key}={path} is not a genre_vit checkpoint of this version (it has no recipe)")
        for section, package in BUILT_SECTIONS.items():
            if problem := unbuildable(saved.get(section), package, optional=section == "reference"):
                raise CheckpointError(f"{key}={path} is not a genre_vit checkpoint this version can build: its recipe's "
                                      f"{section} {problem}")
        return cls(**{**saved, "features": {**FEATURES_BEFORE_THEIR_KEYS, **saved["features"]}})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def build_decoding(self) -> Decoding:
        return Decoding(**self.decoding)

    def build_features(self) -> nn.Module:
        return build_features(self.features)

    @cached_property
    def image_shape(self) -> tuple[int, int]:
        """(F, T) of one segment, as the network sees it."""
        return tuple(self.build_features().image_shape)

    def build_network(self, compile: bool = False) -> nn.Module:
        """The `model` network for this input shape and class count; `compile` compiles it in
        place (nn.Module.compile keeps the state_dict keys, so checkpoints stay portable)."""
        net = instantiate(self.model, img_size=list(self.image_shape), num_classes=len(self.class_names))
        if compile:
            net.compile()
        return net

    def build_model(self) -> nn.Sequential:
        """The saved model, normalisation then network, as the training module holds it."""
        return normalized(self.build_network(), self.image_shape[0])

    def build_reference(self) -> StatisticsReference | None:
        """The `reference` fused into the network's track scores (unfitted), or None."""
        if not self.reference:
            return None
        return instantiate(self.reference, rows=self.image_shape[0], num_classes=len(self.class_names))

    def build_classifier(self, settings: Mapping[str, Any], net: nn.Module) -> nn.Module:
        """The training module of a `module` config (GenreClassifier) around `net`, with this
        recipe's input rows, classes and (unfitted) reference."""
        return instantiate(settings, net=net, input_rows=self.image_shape[0], class_names=self.class_names,
                           reference=self.build_reference())

    def differences(self, other: Recipe, counts: Callable[[str], bool] = every_key) -> list[str]:
        """`key: checkpoint value != this run's value` for every setting where `other` (this
        run) differs from self (a checkpoint's recipe); `counts` picks the flattened keys that matter."""
        old, new = flattened(self.to_dict()), flattened(other.to_dict())
        return [f"{key}: checkpoint {old.get(key, '(unset)')!r} != this run {new.get(key, '(unset)')!r}"
                for key in _differing(old, new) if counts(key)]

    def restoring_overrides(self, other: Recipe, counts: Callable[[str], bool] = every_key) -> list[str] | None:
        """The command-line overrides that give `other` (this run) self's settings where they
        differ (among the keys `counts` picks), e.g. `features.segment_frames=128`; None if a
        difference has no one-key fix (other classes, a setting only one side has, another `_target_` class)."""
        old, new = flattened(self.to_dict()), flattened(other.to_dict())
        overrides = []
        for key in filter(counts, _differing(old, new)):
            target = config_key(key)
            if target is None or key not in old or key not in new or key.endswith("_target_"):
                return None
            overrides.append(f"{target}={override_value(old[key])}")
        return overrides


def unbuildable(settings: Any, package: str, optional: bool = False) -> str | None:
    """Why a checkpoint's recipe section may not be built, or None. Hydra's instantiate calls
    whatever a `_target_` names, at any depth, so a section must name a torch module class of
    `package` and hold plain settings only: a crafted checkpoint cannot make predict call anything else."""
    if settings is None and optional:
        return None
    if not isinstance(settings, dict) or not isinstance(target := settings.get("_target_"), str):
        return "names no class to build"
    if not target.startswith(package):
        return f"names {target!r}, not a class of {package.rstrip('.')}"
    module, _, name = target.rpartition(".")
    try:
        built = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return f"names {target!r}, which this version does not have"
    if not (isinstance(built, type) and issubclass(built, nn.Module)):
        return f"names {target!r}, which is not a network or feature module"
    if not _plain({k: v for k, v in settings.items() if k != "_target_"}):
        return "holds more than plain settings (a nested _target_, another of Hydra's _keys_ or a ${...})"
    return None


def _plain(value: Any) -> bool:
    """Numbers, strings, None, and lists and dicts of them, with no `_key_` or `${...}` that instantiate would act on."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and not k.startswith("_") and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(map(_plain, value))
    if isinstance(value, str):
        return "${" not in value  # an interpolation: instantiate would resolve it (a resolver may create folders)
    return value is None or isinstance(value, (bool, int, float))


def config_key(recipe_key: str) -> str | None:
    """The config key a flattened recipe key was read from (`split.fold` -> `fold`), or None (`class_names`)."""
    if recipe_key in RENAMED_KEYS:
        return RENAMED_KEYS[recipe_key]
    section, _, rest = recipe_key.partition(".")
    return f"{CONFIG_SECTIONS[section]}.{rest}" if rest and section in CONFIG_SECTIONS else None


def _differing(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
