"""Benchmark: one JSON object on stdout, every ratio measured within this one run.

    python -m genre_vit.bench                      # full
    python -m genre_vit.bench bench.quick=true     # seconds; what the tests run

Per config (the default and `experiment=paper`): training throughput of the Lightning loop and
of a minimal hand-written loop on the same model, tensors, batch size, optimizer and threads;
counted FLOPs per segment, the measured fp32 peak (the faster of a matmul and a convolution)
and the resulting MFU; the share of step time spent fetching batches; feature extraction and
prediction throughput on 30 s tracks; and the peak RSS of a training run.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from genre_vit import CONFIG_DIR
from genre_vit.data.cache import FeatureCache, extract_spectrograms, file_stamps
from genre_vit.data.datamodule import CropBatchDataset, CropBatchSampler, EpochBatchSampler, SegmentBatchDataset
from genre_vit.data.features import PitchTimeWarp
from genre_vit.data.synthetic import SyntheticGenres
from genre_vit.inference import Predictor
from genre_vit.recipe import Recipe, build_features

NUM_CLASSES = 10
CLASS_NAMES = [str(i) for i in range(NUM_CLASSES)]


class Timed:
    """Dataset mixin that adds up the time spent building batches (the loader's share) and counts them."""

    fetch_seconds, fetches = 0.0, 0

    def __getitem__(self, index):
        start = time.perf_counter()
        batch = super().__getitem__(index)
        self.fetch_seconds += time.perf_counter() - start
        self.fetches += 1
        return batch


class TimedBatches(Timed, SegmentBatchDataset):
    """Fixed windows, timed."""


class TimedCrops(Timed, CropBatchDataset):
    """Random crops of whole spectrograms, timed."""


class StepClock(L.Callback):
    """Wall time from the start of the first timed step (after `warmup` steps) to the end of the
    last step, as the raw loop measures it, and the mean time `dataset` (Timed) took to build a
    batch in that window (the warmup's batches, built before it, left out)."""

    def __init__(self, warmup: int, dataset: Timed):
        self.warmup, self.dataset, self.start, self.end = warmup, dataset, None, None
        self.fetched_before: tuple[float, int] = (0.0, 0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()
            self.fetched_before = (self.dataset.fetch_seconds, self.dataset.fetches)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()

    def seconds_per_batch_built(self) -> float:
        seconds, count = self.dataset.fetch_seconds - self.fetched_before[0], self.dataset.fetches - self.fetched_before[1]
        return seconds / max(count, 1)


def _loader(cfg: DictConfig, image_shape: tuple[int, int], batch_size: int, batches: int) -> DataLoader:
    """`batches` training batches of dB-like noise, as the config's datamodule builds them: fixed
    windows, or random crops (data.random_crops, deformed as the augment group says) of 30 s
    spectrograms; its dataset is Timed."""
    generator = torch.Generator().manual_seed(0)
    if not cfg.data.random_crops:
        count = batch_size * batches
        x = torch.randn(count, *image_shape, generator=generator) * 10 - 40
        data = TimedBatches(x, torch.randint(0, NUM_CLASSES, (count,), generator=generator), torch.arange(count))
        return DataLoader(data, sampler=EpochBatchSampler(count, batch_size, shuffle=True, seed=0), batch_size=None)
    features, tracks = build_features(cfg.features), 2 * NUM_CLASSES
    length = torch.full((tracks,), int(30 * features.frame_rate))
    frames = torch.randn(features.num_bins, int(length.sum()), generator=generator) * 10 - 40
    labels = torch.arange(tracks) % NUM_CLASSES
    window, deform = features.segment_frames, (cfg.data.time_stretch, cfg.data.pitch_shift)
    sampler = CropBatchSampler(length, window, batch_size, batches, 0, 0, 1, *deform)
    warp = PitchTimeWarp(features.row_hz, window) if sampler.deforms else None
    data = TimedCrops(frames, length.cumsum(0) - length, length, labels, torch.arange(tracks), window, features.resize,
                      warp)
    return DataLoader(data, sampler=sampler, batch_size=None)


def _module(cfg: DictConfig) -> L.LightningModule:
    torch.manual_seed(0)
    recipe = Recipe.from_config(cfg, CLASS_NAMES)
    return recipe.build_classifier(cfg.module, recipe.build_network())  # predict's rate includes the reference's statistics


def raw_loop(cfg: DictConfig, image_shape, batch_size: int, steps: int, warmup: int) -> float:
    """Segments per second of a hand-written loop: the same module, optimizer and batches."""
    module = _module(cfg)
    optimizer, scheduler = module.build_optimizer(total_steps=steps + warmup)
    module.train()
    start = None
    for step, (x, y, _) in enumerate(_loader(cfg, image_shape, batch_size, steps + warmup)):
        if step == warmup:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)  # before the forward, as Lightning's loop does
        loss = F.cross_entropy(module(x), y, label_smoothing=module.hparams.label_smoothing)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return batch_size * steps / (time.perf_counter() - start)


def lightning_loop(cfg: DictConfig, image_shape, batch_size: int, steps: int, warmup: int) -> tuple[float, float]:
    """(segments per second, share of step time spent building batches) of Trainer.fit."""
    module = _module(cfg)
    loader = _loader(cfg, image_shape, batch_size, steps + warmup)
    clock = StepClock(warmup, loader.dataset)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps + warmup, logger=False, callbacks=[clock],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=loader)
    seconds = clock.end - clock.start
    return batch_size * steps / seconds, clock.seconds_per_batch_built() * steps / seconds


def flops_per_segment(cfg: DictConfig, image_shape) -> float:
    """Forward + backward FLOPs of one segment, counted by torch's FlopCounterMode.

    The count runs attention on the math backend: the CPU flash-attention kernel that training
    uses has no FLOP formula in the counter and would count as zero (8% of the default model)."""
    module = _module(cfg)
    x = torch.randn(4, *image_shape)
    with FlopCounterMode(display=False) as counter, sdpa_kernel([SDPBackend.MATH]):
        module(x).sum().backward()
    return counter.get_total_flops() / 4


def best_rate_gflops(kernel, flops: float, repeats: int) -> float:
    """Best rate of `kernel()` (which does `flops` floating-point operations) over `repeats` timed
    calls, after 3 untimed ones."""
    for _ in range(3):
        kernel()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        kernel()
        best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def peak_gflops(opts: DictConfig) -> dict[str, float]:
    """This process's best fp32 rates (same threads as training) on the two dense kernels a
    network's FLOPs go to: a square matmul (the BLAS library: MKL) and a wide 3x3 convolution,
    channels-last (oneDNN). They differ by machine: on AMD CPUs MKL's matmul reaches well under
    half the rate of oneDNN's convolution, so a matmul alone would understate the peak there."""
    n = opts.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    batch, channels, side = opts.conv_shape
    x = torch.randn(batch, channels, side, side).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * batch * side * side * channels * channels * 9
    return {"matmul": best_rate_gflops(lambda: a @ b, 2 * n**3, opts.peak_repeats),
            "conv": best_rate_gflops(lambda: F.conv2d(x, w, padding=1), conv_flops, opts.peak_repeats)}


def feature_and_predict_rates(cfg: DictConfig, tracks_per_genre: int, predict_tracks: int, work: Path,
                              module: L.LightningModule) -> dict[str, float]:
    """Audio seconds featurised per second (decode -> spectrogram -> cache) and tracks predicted per
    second, on synthetic 30 s tracks (generation excluded from both)."""
    source = SyntheticGenres(root=str(work), tracks_per_genre=tracks_per_genre, seed=7, sample_rate=cfg.data.sample_rate,
                             clip_seconds=30, workers=0)
    tracks = source.tracks()
    recipe = Recipe.from_config(cfg, CLASS_NAMES)
    features = recipe.build_features()
    start = time.perf_counter()
    table = extract_spectrograms(tracks.paths, features, recipe.build_decoding(), workers=os.cpu_count() or 1)
    FeatureCache(work / "cache").store("bench", file_stamps(tracks.paths), table)
    feature_rate = 30 * len(tracks) / (time.perf_counter() - start)

    predictor = Predictor(recipe, module.state_dict())
    paths = tracks.paths[:predict_tracks]
    start = time.perf_counter()
    for path in paths:
        predictor.probabilities(path, None, 256)
    return {"feature_audio_seconds_per_s": feature_rate, "predict_tracks_per_s": len(paths) / (time.perf_counter() - start)}


def peak_rss_mb(overrides: list[str], work: Path, cache_dir: Path) -> float:
    """Peak resident memory of `python -m genre_vit.train OVERRIDES`, as the run itself records it
    (`process_peak_rss_mb`). Not the child's rusage: Linux carries the parent's peak into a child
    at exec, so ru_maxrss would report this benchmark's own memory whenever that is larger."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "rss.log", "w") as output:
        child = subprocess.run([sys.executable, "-m", "genre_vit.train", *overrides, f"paths.output_root={work}",
                                f"paths.cache_dir={cache_dir}", f"hydra.run.dir={work}/rss", "print_config=false",
                                "callbacks.progress_bar=null"], stdout=output, stderr=subprocess.STDOUT)
    if child.returncode:
        raise RuntimeError(f"the training run for peak_rss_mb failed:\n{(work / 'rss.log').read_text()[-2000:]}")
    return json.loads((work / "rss" / "metrics.json").read_text())["process_peak_rss_mb"]


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_batch_size(cfg: DictConfig, opts: DictConfig) -> int:
    """The bench's batch size, else the config's."""
    return opts.batch_size or cfg.data.batch_size


def training_rates(configs: dict[str, DictConfig], shapes: dict[str, tuple[int, int]], opts: DictConfig
                   ) -> dict[str, dict]:
    """Per config, raw and Lightning throughput and batch-wait share in each of `opts.repeats`
    turns. All loops run once per turn, so that they see the same machine load and no config
    gains by going first; the raw loop goes first in even turns and second in odd ones, so that
    neither loop gains by its place either."""
    rates = {name: {"raw": [], "lightning": [], "wait": []} for name in configs}
    for turn in range(opts.repeats):
        for name, cfg in configs.items():
            args = cfg, shapes[name], bench_batch_size(cfg, opts), opts.train_steps, opts.warmup_steps
            if turn % 2 == 0:
                rates[name]["raw"].append(raw_loop(*args))
            rate, wait = lightning_loop(*args)
            rates[name]["lightning"].append(rate)
            rates[name]["wait"].append(wait)
            if turn % 2 == 1:
                rates[name]["raw"].append(raw_loop(*args))
    return rates


def bench_config(name: str, cfg: DictConfig, image_shape: tuple[int, int], rates: dict, opts: DictConfig, work: Path,
                 peak: float) -> dict:
    light, raw = max(rates["lightning"]), max(rates["raw"])
    ratios = [a / b for a, b in zip(rates["lightning"], rates["raw"])]
    flops = flops_per_segment(cfg, image_shape)
    result = {
        "image_shape": list(image_shape), "batch_size": bench_batch_size(cfg, opts),
        "train_segments_per_s": {"lightning": light, "raw": raw},
        # runs paired within a turn: one loop's lucky best moves no ratio; the turns show the noise
        "lightning_over_raw": statistics.median(ratios),
        "lightning_over_raw_per_turn": ratios,
        "model_gflops_per_segment": flops / 1e9,
        "peak_gflops": peak,
        "mfu": light * flops / 1e9 / peak,
        "dataloader_wait_fraction": min(rates["wait"]),
    }
    result.update(feature_and_predict_rates(cfg, opts.feature_tracks_per_genre, opts.predict_tracks, work / name,
                                            _module(cfg)))
    if opts.rss_overrides is not None:
        cache_dir = Path(opts.rss_cache_dir).resolve() if opts.rss_cache_dir else work / "rss-cache"
        result["peak_rss_mb"] = peak_rss_mb([*opts.rss_overrides, *opts.configs[name]], work / f"{name}-rss", cache_dir)
    return result


def run(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        bench_cfg = compose(config_name="bench", overrides=overrides)
        settings = bench_cfg.bench.quick_settings if bench_cfg.bench.quick else bench_cfg.bench.full_settings
        opts = OmegaConf.create({**OmegaConf.to_container(settings), "configs": OmegaConf.to_container(bench_cfg.bench.configs)})
        configs = {name: compose(config_name="train", overrides=list(extra))
                   for name, extra in bench_cfg.bench.configs.items()}
    if bench_cfg.bench.threads:
        torch.set_num_threads(bench_cfg.bench.threads)
    report = {
        # cpu_capability: the widest vector ISA torch's CPU kernels use here (AVX2, AVX512, ...);
        # the convolution peak, and so the default network's speed, depends on it
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(), "quick": bool(bench_cfg.bench.quick),
    }
    # One peak for every config, so that their MFUs compare: the faster of the two dense kernels.
    report["dense_kernel_gflops"] = peak_gflops(opts)
    peak = report["peak_gflops"] = max(report["dense_kernel_gflops"].values())
    shapes = {name: Recipe.from_config(cfg, CLASS_NAMES).image_shape for name, cfg in configs.items()}
    rates = training_rates(configs, shapes, opts)
    with tempfile.TemporaryDirectory(prefix="genre-vit-bench-") as tmp:
        for name, cfg in configs.items():
            report[name] = bench_config(name, cfg, shapes[name], rates[name], opts, Path(tmp), peak)
    return report


def main(argv: list[str] | None = None) -> None:
    import logging
    import warnings

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    report = run(sys.argv[1:] if argv is None else argv)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
