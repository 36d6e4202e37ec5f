"""Checks on the composed config that must pass before any data or model work starts."""
from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import hydra.utils
from omegaconf import DictConfig, ListConfig, OmegaConf

from genre_vit.cli import override_value
from genre_vit.data.audio import SHORT_CLIP_POLICIES
from genre_vit.data.features import MASK_FILLS, NORMALIZATIONS, WINDOWS, SegmentFeatures
from genre_vit.data.sources import ESC_SUBSETS
from genre_vit.data.splits import SPLITS
from genre_vit.models.cnn import downsampling
from genre_vit.models.vit import check_patch_grid
from genre_vit.runs import BASELINE_METRICS, LOGGED_METRICS, REFERENCE_METRICS


class ConfigError(ValueError):
    """A setting that cannot work; the message names the key, its value and what is allowed."""


def _int(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f"integers >= {low}"


def _number(low: float, high: float | None = None, open_high: bool = True) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < low:
            return False
        return high is None or (v < high if open_high else v <= high)
    return ok, f"numbers in [{low}, {'inf' if high is None else high}{')' if open_high or high is None else ']'}"


def _one_of(*allowed: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in allowed), str(list(allowed))


def _optional(rule: tuple[Callable[[Any], bool], str]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


def _pair_of_ints(v: Any) -> bool:
    return isinstance(v, (list, tuple, ListConfig)) and len(v) == 2 and all(_int(1)[0](x) for x in v)


def _list_of_ints(non_empty: bool) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return isinstance(v, (list, ListConfig)) and (len(v) > 0 or not non_empty) and all(_int(1)[0](c) for c in v)
    return ok, f"a {'non-empty ' if non_empty else ''}list of integers >= 1"


def _budget(v: Any) -> bool:
    return v == -1 or _int(1)[0](v)


# key -> (test, allowed values). Keys absent from the composed config (e.g. features.n_mels with
# features=stft) are skipped.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _int(0),
    "optimized_metric": _optional(_one_of(*LOGGED_METRICS)),
    "data.split": _one_of(*SPLITS),
    "data.source.subset": _one_of(*ESC_SUBSETS),
    "data.source.tracks_per_genre": _int(1),
    "data.normalization": _one_of(*NORMALIZATIONS),
    "data.num_folds": _int(2),
    "data.split_seed": _int(0),
    "data.test_fraction": _number(0, 1),
    "data.sample_rate": _int(1),
    "data.clip_seconds": _optional(_number(1e-3)),
    "data.short_clips": _one_of(*SHORT_CLIP_POLICIES),
    "data.min_seconds": _number(0),
    "data.batch_size": _int(1),
    "data.eval_batch_size": _int(1),
    "data.feature_workers": _int(0),
    "data.random_crops": _one_of(True, False),
    "data.batches_per_epoch": _int(1),
    "features.n_fft": _int(2),
    "features.hop_length": _int(1),
    "features.n_mels": _int(1),
    "features.window": _one_of(*WINDOWS),
    "features.segment_frames": _int(1),
    "features.segment_step": _int(1),
    "features.image_size": ((lambda v: v is None or _pair_of_ints(v)), "null or two integers >= 1"),
    "features.top_db": _optional(_number(1e-6)),
    "features.sound_within_db": _optional(_number(1e-6)),
    "features.end_window": _one_of(True, False),
    "model.patch_size": (_pair_of_ints, "two integers >= 1"),
    "model.patch_stride": ((lambda v: v is None or _pair_of_ints(v)), "null (no overlap) or two integers >= 1"),
    "model.stem_channels": _list_of_ints(non_empty=False),
    "model.drop_path": _number(0, 1),
    "model.embed_dim": _int(1),
    "model.depth": _int(1),
    "model.num_heads": _int(1),
    "model.mlp_ratio": _number(1e-6),
    "model.dropout": _number(0, 1),
    "model.head_hidden": _int(0),
    "model.channels": _list_of_ints(non_empty=True),
    "model.stem_patch": ((lambda v: v is None or _pair_of_ints(v)), "null (no patch stem) or two integers >= 1"),
    "optim.lr": _number(1e-12),
    "optim.weight_decay": _number(0),
    "optim.label_smoothing": _number(0, 1),
    "optim.scheduler.warmup_fraction": _number(0, 1),
    "optim.scheduler.min_lr_ratio": _number(0, 1, open_high=False),
    "augment.freq_mask": _int(0),
    "augment.time_mask": _int(0),
    "augment.num_masks": _int(1),
    "augment.mask_fill": _one_of(*MASK_FILLS),
    "augment.mixup_alpha": _number(0),
    "augment.time_stretch": _number(1),
    "augment.pitch_shift": _number(0, 12, open_high=False),
    "reference.inverse_l2": _number(1e-12),
    "reference.inner_folds": _int(2),
    "reference.strength": _number(0),
    "callbacks.weight_averaging.decay": _number(0, 1),
    "callbacks.weight_averaging.start_fraction": _number(0, 1),
    "callbacks.weight_averaging.bn_batches": _int(1),
    "trainer.max_epochs": ((lambda v: v is None or _budget(v)), "null, -1 (no limit) or integers >= 1"),
    "trainer.max_steps": (_budget, "-1 (no limit) or integers >= 1"),
    "budget.steps_per_track": _number(0),
    "budget.max_steps": _optional(_int(1)),
}
_ABSENT = object()


def validate(cfg: DictConfig, overrides: Sequence[str] | None = None) -> None:
    """Raise ConfigError for the first invalid setting: required keys left unset, keys added
    (`+key=value`, from `overrides`, by default the command line's) that nothing reads, each key
    on its own (RULES), then the settings that must agree with each other."""
    check_required(cfg)
    check_added_keys(cfg, _command_line_overrides() if overrides is None else overrides)
    check_data_root(cfg)
    for key, (ok, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        plain = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
        if not ok(value):
            raise ConfigError(f"{key}={plain!r} is invalid: allowed {allowed}")
    num_folds, fold = cfg.data.num_folds, cfg.fold
    if fold != "all" and (not isinstance(fold, int) or not 0 <= fold < num_folds):
        raise ConfigError(f"fold={fold} is invalid: allowed 0..{num_folds - 1} (data.num_folds={num_folds}) or all")
    source = str(OmegaConf.select(cfg, "data.source._target_", default=""))
    reader, needs = SPLIT_SOURCES.get(cfg.data.split, ("", ""))
    if not source.endswith(reader):
        instead = "official" if source.endswith(SPLIT_SOURCES["official"][0]) else "kfold"  # ESC-50's folds keep takes apart
        raise ConfigError(f"data.split={cfg.data.split} needs {needs}; this data set has none: use data.split={instead}")
    if fold == "all" and cfg.data.split == "filtered":
        raise ConfigError("fold=all with data.split=filtered: GTZAN's filtered split is one fixed split, not folds "
                          "(every fold would train it again); use fold=0, or data.split=kfold for folds")
    if source.endswith("SyntheticGenres") and cfg.data.clip_seconds is None:
        raise ConfigError("data.clip_seconds=null: the synthetic set is generated with tracks of data.clip_seconds "
                          "seconds; set a length (30, as GTZAN's)")
    if cfg.features.get("sample_rate", cfg.data.sample_rate) != cfg.data.sample_rate:
        raise ConfigError(f"features.sample_rate={cfg.features.sample_rate} differs from data.sample_rate="
                          f"{cfg.data.sample_rate}, the rate the audio is decoded at: set data.sample_rate="
                          f"{cfg.features.sample_rate} instead (the features follow it)")
    check_optimized_metric(cfg)
    if cfg.data.split == "official" and cfg.data.test_fraction > 0:
        raise ConfigError(f"data.test_fraction={cfg.data.test_fraction} with data.split=official: the data set's own "
                          "folds are the split, and a hold-out across them would mix their recordings; set "
                          "data.test_fraction=0")
    trainer = cfg.trainer
    if trainer.get("max_steps", -1) == -1 and trainer.get("max_epochs") in (None, -1):
        raise ConfigError(f"trainer.max_steps={trainer.get('max_steps', -1)} and trainer.max_epochs="
                          f"{override_value(trainer.get('max_epochs'))} set no training budget: set trainer.max_steps (optimizer "
                          "steps) or trainer.max_epochs")
    augment = cfg.get("augment") or {}
    for key in ("time_stretch", "pitch_shift"):  # the datamodule reads data.*, which the augment group sets
        if key in cfg.data and not OmegaConf.is_interpolation(cfg.data, key) and cfg.data[key] != augment.get(key):
            raise ConfigError(f"data.{key}={cfg.data[key]} is set by the augment group (augment.{key}="
                              f"{augment.get(key)}), whose checks it skips: set augment.{key}={cfg.data[key]} instead")
    deforming = [f"augment.{k}={augment[k]}" for k, off in (("time_stretch", 1), ("pitch_shift", 0))
                 if augment.get(k, off) != off]
    if deforming and not cfg.data.get("random_crops", True):
        raise ConfigError(f"{deforming[0]} deforms random crops, but data.random_crops=false: set data.random_crops=true "
                          "or leave the deformations off")
    within_db = cfg.features.get("sound_within_db")
    if within_db is not None and deforming:
        raise ConfigError(f"features.sound_within_db={within_db} needs undeformed crops, but {deforming[0]}: "
                          "set features.sound_within_db=null or leave the deformations off")
    model = cfg.model
    if stray := [k for k in model if k not in ("_target_", "compile") and not _accepts(model._target_, k)]:
        network = str(model._target_).rsplit(".", 1)[-1]
        raise ConfigError(f"model.{stray[0]} is not a setting of {network}, the network this run builds: an experiment "
                          "preset's settings for another network? Use the preset with its own network, or model=... without it")
    pools = getattr(hydra.utils.get_class(model._target_), "POOLS", None) if "pool" in model else None
    if pools is not None and model.pool not in pools:  # each network names its own poolings
        raise ConfigError(f"model.pool={model.pool!r} is invalid: allowed {list(pools)}")
    if "embed_dim" in model and "mlp_ratio" in model and int(model.embed_dim * model.mlp_ratio) < 1:
        raise ConfigError(f"model.mlp_ratio={model.mlp_ratio} gives the blocks' MLPs no hidden unit at model.embed_dim="
                          f"{model.embed_dim}: allowed ratios with model.embed_dim x model.mlp_ratio >= 1")
    if "embed_dim" in model and "num_heads" in model and model.embed_dim % model.num_heads:
        raise ConfigError(f"model.embed_dim={model.embed_dim} is not divisible by model.num_heads={model.num_heads}: "
                          f"allowed num_heads for this embed_dim: {_divisors(model.embed_dim)}")


def check_optimized_metric(cfg: DictConfig) -> None:
    """`optimized_metric` must be one this run logs: the reference's scores need a reference, and
    the classical baseline logs track scores only."""
    metric = cfg.get("optimized_metric")
    if metric in REFERENCE_METRICS and not cfg.get("reference") and cfg.get("baseline") is None:
        raise ConfigError(f"optimized_metric={metric} is logged only with a reference, and reference=none: "
                          "use optimized_metric=val/track_acc_best")
    if metric is not None and cfg.get("baseline") is not None and metric not in BASELINE_METRICS:
        raise ConfigError(f"optimized_metric={metric} is not logged by the classical baseline: allowed {list(BASELINE_METRICS)}")
    if metric is not None and "loss" in metric and _sweeper_direction() == "maximize":
        raise ConfigError(f"optimized_metric={metric} with hydra.sweeper.direction=maximize: the search would look for "
                          "the largest loss; set hydra.sweeper.direction=minimize, or optimize an accuracy")


def _sweeper_direction() -> str | None:
    """The running sweeper's `direction` (Optuna's: maximize or minimize), None outside one."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().sweeper.get("direction")) if HydraConfig.initialized() else None


# data.split -> (the source class that reads it, what to name in the refusal); kfold fits any source
SPLIT_SOURCES = {"official": ("Esc50Source", "a data set that ships its folds (data=esc50)"),
                 "filtered": ("GtzanSource", "GTZAN (data=gtzan)")}
COLLECTIONS = ("callbacks", "logger")  # every entry is built: an added one is read
REQUIRED_HINTS = {"data.root": "data=folder, data=gtzan and data=esc50 read the audio under data.root=PATH "
                               "(PATH/<class>/<audio files>; for ESC-50, the release's folder)",
                  "ckpt": "ckpt=PATH names a checkpoint written by genre_vit.train",
                  "input": "input=PATH names an audio file or a folder of them"}


def check_required(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first required key left unset (`???`) and how to set it."""
    if missing := sorted(_missing_keys(cfg)):
        raise ConfigError(f"{missing[0]} is not set: {REQUIRED_HINTS.get(missing[0], 'set it on the command line')}")


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys left at `???` (Hydra's own `hydra` node aside)."""
    found = []
    for key in node.keys():
        name = f"{prefix}{key}"
        if name == "hydra":
            continue
        if OmegaConf.is_missing(node, key):
            found.append(name)
        elif OmegaConf.is_dict(node._get_node(key)):
            found += _missing_keys(node._get_node(key), f"{name}.")
    return found


def _command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def check_added_keys(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Refuse `+group.key=value` where nothing reads `key`: a node built with `_target_` reads the
    keys its callable takes; any other node only keys that some `${...}` of the config names.
    (`++` forces a key in, unchecked.) The message names the closest existing key."""
    text = OmegaConf.to_yaml(cfg)  # unresolved: the interpolations that read keys
    for override in overrides:
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key = override[1:].split("=", 1)[0]
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not parent_key or parent_key.split(".")[0] in COLLECTIONS or not isinstance(parent, DictConfig):
            continue  # a new top-level key, a new callback or logger: not ours to judge
        if "_target_" in parent:
            if _accepts(parent._target_, name):
                continue
        elif "${" + key + "}" in text:
            continue
        known = [k for k in parent.keys() if not str(k).startswith("_") and k != name]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {parent_key}.{close[0]}?" if close else f"known keys: {', '.join(known)}"
        raise ConfigError(f"{override} adds a key that nothing reads: {hint}")


def _accepts(target: str, name: str) -> bool:
    """Whether the callable `target` takes a keyword argument `name` (or any, with **kwargs)."""
    try:
        parameters = inspect.signature(hydra.utils.get_method(target)).parameters
    except Exception:  # noqa: BLE001 - a callable that cannot be inspected: let it through
        return True
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def check_data_root(cfg: DictConfig) -> None:
    """The synthetic set is generated under paths.cache_dir and reads no audio: a data.root
    pointed elsewhere is someone's own audio, which data=folder, data=gtzan or data=esc50 read."""
    data = cfg.data
    source = str(OmegaConf.select(data, "source._target_", default=""))
    if source.endswith("SyntheticGenres") and data.root != cfg.paths.cache_dir:
        raise ConfigError(f"data.root={data.root} is not read by data=synthetic (the generated set lives under "
                          f"paths.cache_dir={cfg.paths.cache_dir}): to train on your own audio add data=folder "
                          "(<root>/<class>/<audio files>), data=gtzan or data=esc50")


def validate_shapes(cfg: DictConfig) -> SegmentFeatures:
    """Build the `features` module (torchaudio's transforms: cheap, and no Lightning) and check the
    settings that must fit its segments (validate_image, validate_segment); return it."""
    features = hydra.utils.instantiate(cfg.features)
    validate_image(cfg, features.image_shape)
    validate_segment(cfg, features)
    return features


def validate_segment(cfg: DictConfig, features: SegmentFeatures) -> None:
    """A segment must fit in the decoded part of a clip (data.clip_seconds)."""
    clip = cfg.data.clip_seconds
    if clip is not None and features.segment_seconds > clip:
        most = int(clip * features.frame_rate)
        raise ConfigError(f"features.segment_frames={features.segment_frames} ({features.segment_seconds:.2f} s) is longer "
                          f"than data.clip_seconds={clip}: at most {most} frames, or a longer data.clip_seconds")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def validate_image(cfg: DictConfig, image_shape: Sequence[int]) -> None:
    """What must fit the features' (F, T) image: SpecAugment's mask widths, the CNN's downsampling,
    and a patch shape (for networks that have one), which must tile the image or the maps of the
    ViT's convolutional stem."""
    rows, cols = image_shape
    augment = cfg.get("augment") or {}
    for key, size, side in (("freq_mask", rows, "rows"), ("time_mask", cols, "columns")):
        if augment.get(key, 0) > size:  # torchaudio would mask most segments whole
            raise ConfigError(f"augment.{key}={augment[key]} is wider than the input image's {size} {side}: "
                              f"allowed up to {size}")
    stem_patch = list(cfg.model.stem_patch) if cfg.model.get("stem_patch") else None  # both networks' patch stem
    after_patch = f" after model.stem_patch={stem_patch}" if stem_patch else ""
    channels = cfg.model.get("channels")  # a CNN: a patch stem, then blocks that halve both sides
    if channels is not None:
        need = downsampling(list(channels), stem_patch)
        if rows < need[0] or cols < need[1]:
            raise ConfigError(f"model.channels={list(channels)}{after_patch} needs at least {list(need)} rows and columns; "
                              f"the features give {[rows, cols]}")
    patch = cfg.model.get("patch_size")
    if patch is None:
        return
    image = f"the input image {[rows, cols]}"
    stem = cfg.model.get("stem_channels") or []
    if stem_patch and not stem:
        raise ConfigError(f"model.stem_patch={stem_patch} replaces the first block of model.stem_channels, "
                          "which is empty: set both, or model.stem_patch=null")
    if stem:  # a patch stem divides both sides by its patch, each further block halves them
        scale = downsampling(list(stem), stem_patch)
        if rows % scale[0] or cols % scale[1]:
            raise ConfigError(f"model.stem_channels={list(stem)}{after_patch} divides {image} by {list(scale)}, so its "
                              f"sides must be multiples of {scale[0]} and {scale[1]}")
        rows, cols = rows // scale[0], cols // scale[1]
        image = f"the stem's {[rows, cols]} maps (of {image})"
    patch, stride = list(patch), cfg.model.get("patch_stride")
    if stride is not None and any(step > size for step, size in zip(stride, patch)):
        raise ConfigError(f"model.patch_stride={list(stride)} is larger than model.patch_size={patch}: the rows or "
                          "columns between patches would reach no token; allowed strides up to the patch size")
    try:
        check_patch_grid((rows, cols), patch, stride)  # the network's own rule, worded here
    except ValueError:
        if stride is None:
            raise ConfigError(f"model.patch_size={patch} does not tile {image}: allowed patch rows "
                              f"{_divisors(rows)} and patch columns {_divisors(cols)}") from None
        raise ConfigError(f"model.patch_size={patch} with model.patch_stride={list(stride)} does not tile {image}: "
                          "size minus patch must be a multiple of the stride on both sides") from None
