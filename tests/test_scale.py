"""Scale-out paths that run on this machine: DDP over 2 CPU processes, the benchmark in quick mode."""
import json
import statistics
import subprocess
import sys

import pytest

from tests.conftest import run_entry_point, run_if, run_module, train_in_process, write_tone


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gathers_metrics_into_one_run(tmp_path, shared_cache):
    result = run_module("genre_vit.train", "trainer=ddp_cpu", "debug=fast", f"paths.output_root={tmp_path}",
                        f"paths.cache_dir={shared_cache}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.parent.name for p in tmp_path.rglob("metrics.json")] == ["run"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_tracks"] == 6 and metrics["val_tracks_scored"] == 6  # both halves were gathered
    assert (tmp_path / "run" / "train_ddp_process_1.log").exists()
    assert "MEMBER: 1/2" in result.stdout + result.stderr  # Lightning's line for rank 0 of 2


def test_the_loader_wait_counts_the_batches_built_in_the_timed_steps_only():
    from types import SimpleNamespace

    from genre_vit.bench import StepClock

    dataset = SimpleNamespace(fetch_seconds=30.0, fetches=3)  # 3 warmup batches, 10 s each
    clock, trainer = StepClock(warmup=3, dataset=dataset), SimpleNamespace(global_step=3)
    clock.on_train_batch_start(trainer, None, None, 0)
    dataset.fetch_seconds, dataset.fetches = 32.0, 5  # 2 batches in the timed window, 1 s each
    assert clock.seconds_per_batch_built() == 1.0


BENCH_KEYS = {"image_shape", "batch_size", "train_segments_per_s", "lightning_over_raw", "model_gflops_per_segment",
              "lightning_over_raw_per_turn", "peak_gflops", "mfu", "dataloader_wait_fraction", "feature_audio_seconds_per_s",
              "predict_tracks_per_s", "peak_rss_mb"}


def test_bench_counts_every_matmul_of_the_default_model_attention_included():
    from hydra import compose, initialize_config_dir

    from genre_vit import CONFIG_DIR
    from genre_vit.bench import NUM_CLASSES, flops_per_segment

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=v1_defaults"])
    tokens, dim, depth, head_hidden = 64, 128, 8, 128  # 128x32 image, 16x4 patches
    per_block = 2 * tokens * 12 * dim * dim + 2 * 2 * tokens * tokens * dim  # qkv, proj, mlp; QK^T and AV
    head = 2 * (dim * head_hidden + head_hidden * NUM_CLASSES)
    patch_embed = 2 * tokens * 16 * 4 * dim
    # backward costs twice the forward, except the patch embedding's (no gradient for the input)
    assert flops_per_segment(cfg, (128, 32)) == 3 * (depth * per_block + head) + 2 * patch_embed


@pytest.mark.slow
def test_bench_quick_prints_one_json_object_with_every_key(tmp_path):
    result = run_entry_point("genre_vit.bench", "bench.quick=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert {"machine", "threads", "quick", "dense_kernel_gflops", "peak_gflops", "default", "paper"} <= set(report)
    assert {"cpu", "cores", "cpu_capability", "torch", "python"} == set(report["machine"])
    assert report["peak_gflops"] == max(report["dense_kernel_gflops"].values()) > 0
    for name in ("default", "paper"):
        assert set(report[name]) == BENCH_KEYS
        assert set(report[name]["train_segments_per_s"]) == {"lightning", "raw"}
        assert report[name]["lightning_over_raw"] == statistics.median(report[name]["lightning_over_raw_per_turn"])
        assert report[name]["model_gflops_per_segment"] > 0.1 and 0 < report[name]["dataloader_wait_fraction"] < 1


@pytest.mark.slow
def test_multirun_through_the_submitit_local_launcher(tmp_path, shared_cache):
    """The cluster path (hydra/launcher=slurm) minus Slurm: submitit runs each job as its own process."""
    result = run_entry_point("genre_vit.train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                             "debug=fast", "fold=0,1", f"paths.output_root={tmp_path}", f"paths.cache_dir={shared_cache}",
                             f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    folds = sorted(json.loads(p.read_text())["fold"] for p in (tmp_path / "sweep").glob("*/metrics.json"))
    assert folds == [0, 1]
    assert (tmp_path / "sweep" / "summary.md").exists()
    assert list((tmp_path / "sweep" / ".submitit").iterdir())


@run_if(cuda=True)
@pytest.mark.gpu
def test_one_gpu_with_bf16_trains_and_scores_every_validation_track(tmp_path, shared_cache):
    metrics = train_in_process(tmp_path / "run", "trainer=gpu", "debug=fast", f"paths.cache_dir={shared_cache}")
    assert metrics["status"] == "completed" and metrics["val_tracks_scored"] == metrics["val_tracks"]


def test_predict_imports_neither_the_trainer_nor_matplotlib(tiny_run, tmp_path):
    write_tone(tmp_path / "one.wav", 8.0)
    child = f"""
import sys
sys.argv = ["predict", "ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}", "input={tmp_path / 'one.wav'}",
            "output={tmp_path / 'out.csv'}", "hydra.run.dir={tmp_path / 'predict'}"]
import genre_vit.predict
genre_vit.predict.main()
print("HEAVY", sorted(m for m in sys.modules if m.startswith(("lightning.pytorch.trainer", "matplotlib"))))
"""
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAVY []" in result.stdout and (tmp_path / "out.csv").read_text().count("one.wav") == 1
