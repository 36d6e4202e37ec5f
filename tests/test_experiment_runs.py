"""Experiment features through the real entry points: sweeps, summaries, seeds, resume, predict."""
import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from omegaconf import OmegaConf

from genre_vit.rescore import scored_as_here
from genre_vit.runs import TrackScores, write_track_scores
from genre_vit.summarize import main as summarize_main
from genre_vit.summarize import setting_of, split_by_config, summarize
from tests.conftest import (
    TINY,
    CodeRunningPayload,
    compose_config,
    run_entry_point,
    run_module,
    train_in_process,
    write_tone,
)


def train(tmp_path, shared_cache, *overrides, run_dir=None):
    return train_in_process(run_dir or tmp_path / "run", *TINY, f"paths.cache_dir={shared_cache}", *overrides)


def multirun(tmp_path, shared_cache, *overrides) -> list[dict]:
    """`python -m genre_vit.train -m OVERRIDES` into `tmp_path/sweep`; the rows of its summary.csv."""
    result = run_entry_point("genre_vit.train", "-m", *overrides, f"paths.output_root={tmp_path}",
                             f"paths.cache_dir={shared_cache}", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "sweep" / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, shared_cache):
    """A 2x2 multirun: two patch shapes (a list-valued key), two folds."""
    out = tmp_path_factory.mktemp("sweep")
    result = run_entry_point("genre_vit.train", "-m", "debug=fast", "model=vit", "model.patch_size=[16,4],[8,8]", "fold=0,1",
                             f"paths.output_root={out}", f"paths.cache_dir={shared_cache}", f"hydra.sweep.dir={out}/sweep", cwd=out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "sweep"


def test_multirun_writes_a_summary_row_per_job(sweep):
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["setting"], r["fold"]) for r in rows) == [
        ("model.patch_size=[16,4]", "0"), ("model.patch_size=[16,4]", "1"), ("model.patch_size=[8,8]", "0"),
        ("model.patch_size=[8,8]", "1")]
    assert all(r["status"] == "completed" and 0 <= float(r["val/track_acc"]) <= 1 for r in rows)


def test_multirun_jobs_share_one_feature_cache(sweep):
    logs = [(job / "train.log").read_text() for job in sorted(sweep.glob("*_*")) if job.is_dir()]
    entries = {re.search(r"Feature cache (?:hit|stored): (\S+)", log).group(1) for log in logs}
    assert len(logs) == 4 and len(entries) == 1
    assert all("Feature cache hit" in log for log in logs[1:])


def test_multirun_summary_ranks_settings_with_mean_and_std(sweep):
    lines = (sweep / "summary.md").read_text().splitlines()
    assert lines[0] == "Overrides shared by every job: `debug=fast model=vit`"
    settings = [line for line in lines if line.startswith(("| 1 ", "| 2 "))]
    assert len(settings) == 2 and all(" ± " in line and "| 2 |" in line for line in settings)
    means = [float(line.split("|")[4].split("±")[0]) for line in settings]
    assert means == sorted(means, reverse=True)


def test_multirun_draws_curves_and_settings_as_png(sweep):
    for name in ("curves.png", "settings.png"):
        assert (sweep / name).read_bytes().startswith(b"\x89PNG")


def test_summarize_remakes_the_files_for_an_existing_directory(sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    for name in ("summary.csv", "summary.md", "curves.png", "settings.png"):
        (copy / name).unlink()
    result = run_module("genre_vit.summarize", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (copy / "summary.md").read_text() == (sweep / "summary.md").read_text()
    assert (copy / "curves.png").exists()


def test_summarize_reports_a_job_that_did_not_finish(sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    next(copy.glob("*/metrics.json")).unlink()
    summarize(copy)
    assert "did not complete" in (copy / "summary.md").read_text()
    with open(copy / "summary.csv") as f:
        assert sum(r["status"] == "failed" for r in csv.DictReader(f)) == 1


def test_a_resumed_job_counts_in_its_setting_and_fold():
    assert setting_of(["experiment=paper", "fold=1", "ckpt_path=last"], common=set()) == "experiment=paper"


def write_job(root: Path, name: str, overrides: list[str], last: float, best: float, train_acc: float | None = 0.9,
              config: dict | None = None, **parts: float) -> None:
    """A finished job's folder as a multirun leaves it: its overrides, its composed `config` (if
    given) and its metrics.json; `parts`: the last epoch's `network` and `reference` track
    accuracies, for a job with the reference."""
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (root / name / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    final = {"val/track_acc": last, "val/acc": last, **({"train/acc": train_acc} if train_acc is not None else {}),
             **{f"val/track_acc_{part}": value for part, value in parts.items()}}
    fold = int(next(o for o in overrides if o.startswith("fold=")).split("=")[1])
    (root / name / "metrics.json").write_text(json.dumps({"status": "completed", "fold": fold, "final": final,
                                                          "best": {"val/track_acc": best, "val/acc": best}}))


def test_the_summary_ranks_by_the_last_epoch_and_shows_the_best_epoch_beside_it(tmp_path):
    write_job(tmp_path, "0", ["fold=0", "experiment=baseline_logreg"], last=0.6, best=0.6, train_acc=None)
    write_job(tmp_path, "1", ["fold=1", "experiment=baseline_logreg"], last=0.6, best=0.6, train_acc=None)
    write_job(tmp_path, "2", ["fold=0", "model=cnn"], last=0.5, best=0.9)  # best epoch above the baseline, last under it
    write_job(tmp_path, "3", ["fold=1", "model=cnn"], last=0.5, best=0.9)
    summarize(tmp_path)
    rows = [line.split(" | ") for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith(("| 1 ", "| 2 "))]
    assert [(r[1], r[3], r[4], r[5], r[7]) for r in rows] == [
        ("`experiment=baseline_logreg`", "60.0 ± 0.0", "60.0 ± 0.0", "60 / 60", "-"),
        ("`model=cnn`", "50.0 ± 0.0", "90.0 ± 0.0", "50 / 50", "90.0 ± 0.0")]


def test_a_fold_without_a_completed_run_shows_in_its_place(tmp_path):
    write_job(tmp_path, "0", ["fold=0"], last=0.5, best=0.5)
    write_job(tmp_path, "2", ["fold=2"], last=0.7, best=0.7)
    (tmp_path / "1" / ".hydra").mkdir(parents=True)  # fold 1 failed
    (tmp_path / "1" / "metrics.json").write_text(json.dumps({"status": "failed", "fold": 1, "error": "DataError: x"}))
    summarize(tmp_path)
    (row,) = [line.split(" | ") for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| 1 ")]
    assert (row[2], row[3], row[5], row[-1]) == ("2", "60.0 ± 14.1", "50 / - / 70", "1 |")


def test_an_override_with_a_space_stays_one_override(tmp_path):
    write_job(tmp_path, "0", ["fold=0", "data.root='/music/My Music'"], last=0.5, best=0.5)
    write_job(tmp_path, "1", ["fold=1", "data.root='/music/My Music'", "ckpt_path=/runs/My Runs/1/checkpoints/last.ckpt"],
              last=0.7, best=0.7)  # resumed: still the same setting
    write_job(tmp_path, "2", ["fold=0", "data.root='/music/Other Music'"], last=0.9, best=0.9)
    summarize(tmp_path)
    rows = [line.split(" | ") for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith(("| 1 ", "| 2 ", "| 3 "))]
    assert [(r[1], r[2]) for r in rows] == [("`data.root='/music/Other Music'`", "1"), ("`data.root='/music/My Music'`", "2")]
    with open(tmp_path / "summary.csv") as f:
        assert [r["overrides"] for r in csv.DictReader(f)][0] == "fold=0 data.root='/music/My Music'"


def test_jobs_of_one_command_line_with_other_composed_configs_are_other_settings(tmp_path):
    """Two sweeps of `data=esc50` under one folder, before and after its default windows changed."""
    before = {"fold": 0, "seed": 42, "paths": {"output_root": "a"}, "data": {"feature_workers": 1},
              "features": {"segment_frames": 128, "n_mels": 128}}
    after = {"fold": 1, "seed": 1, "paths": {"output_root": "b"}, "data": {"feature_workers": 2},  # how fast: no matter
             "features": {"segment_frames": 64, "n_mels": 128}}
    for name, config, fold, last in (("old0", before, 0, 0.5), ("old1", before, 1, 0.5),
                                     ("new0", after, 0, 0.7), ("new1", {**after, "fold": 0}, 1, 0.7)):
        write_job(tmp_path, name, ["data=esc50", f"fold={fold}"], last=last, best=last, config=config)
    write_job(tmp_path, "unknown", ["data=esc50", "fold=0"], last=0.6, best=0.6)  # no saved config: as before
    summarize(tmp_path)
    rows = [line.split(" | ") for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith(("| 1 ", "| 2 ", "| 3 "))]
    assert [(r[1], r[2], r[3]) for r in rows] == [("`(common settings) [features.segment_frames=64]`", "2", "70.0 ± 0.0"),
                                                  ("`(common settings)`", "1", "60.0"),  # one fold: no std
                                                  ("`(common settings) [features.segment_frames=128]`", "2", "50.0 ± 0.0")]


def test_a_config_from_before_a_feature_setting_reads_as_what_that_version_did(tmp_path):
    before = {"features": {"segment_frames": 128}}  # written before features.end_window existed
    for name, config, fold in (("old", before, 0), ("new", {"features": {"segment_frames": 128, "end_window": False}}, 1),
                               ("now0", {"features": {"segment_frames": 128, "end_window": True}}, 0),
                               ("now1", {"features": {"segment_frames": 128, "end_window": True}}, 1)):
        write_job(tmp_path, name, ["experiment=paper", f"fold={fold}"], last=0.5, best=0.5, config=config)
    summarize(tmp_path)
    rows = [line.split(" | ")[1] for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith(("| 1 ", "| 2 "))]
    assert sorted(rows) == ["`(common settings) [features.end_window=false]`", "`(common settings) [features.end_window=true]`"]


def test_two_esc50_sweeps_from_before_and_after_its_windows_changed_are_two_settings(tmp_path):
    def composed(*overrides: str) -> dict:
        config = OmegaConf.to_container(compose_config("data=esc50", *overrides), resolve=False)  # as Hydra saves it
        del config["hydra"]
        return config

    for fold in (0, 1):
        for name, before in (("old", ("features=mel", "data.batch_size=32")), ("new", ())):
            write_job(tmp_path, f"{name}{fold}", ["data=esc50", f"fold={fold}"], last=0.5, best=0.5,
                      config=composed(f"fold={fold}", f"seed={fold}", *before))
    summarize(tmp_path)
    settings = {line.split(" | ")[1] for line in (tmp_path / "summary.md").read_text().splitlines()
                if line.startswith(("| 1 ", "| 2 "))}
    assert settings == {"`(common settings) [data.batch_size=32 features.segment_frames=128 features.segment_step=64 "
                        "features.sound_within_db=null]`",
                        "`(common settings) [data.batch_size=64 features.segment_frames=64 features.segment_step=32 "
                        "features.sound_within_db=20]`"}


def test_configs_alike_in_the_keys_a_label_names_still_get_labels_of_their_own():
    configs = {"a": {f"k{i}": 0 for i in range(6)}, "b": {f"k{i}": 1 for i in range(6)},
               "c": {**{f"k{i}": 1 for i in range(5)}, "k5": 2}}   # c differs from b in the sixth key only
    jobs = [{"dir": name, "setting": "model=vit"} for name in configs]
    split_by_config(jobs, configs)
    assert [job["setting"] for job in jobs] == ["model=vit [k0=0 k1=0 k2=0 k3=0 ...]", "model=vit [k0=1 k1=1 k2=1 k3=1 ... #2]",
                                                "model=vit [k0=1 k1=1 k2=1 k3=1 ... #3]"]


def test_the_summary_shows_the_network_alone_and_the_reference_alone_beside_their_sum(tmp_path):
    write_job(tmp_path, "0", ["fold=0", "reference=logreg"], last=0.7, best=0.7, network=0.4, reference=0.6)
    write_job(tmp_path, "1", ["fold=1", "reference=logreg"], last=0.5, best=0.5, network=0.4, reference=0.8)
    write_job(tmp_path, "2", ["fold=0", "reference=none"], last=0.4, best=0.4)
    write_job(tmp_path, "3", ["fold=1", "reference=none"], last=0.4, best=0.4)
    summarize(tmp_path)
    lines = (tmp_path / "summary.md").read_text().splitlines()
    header = lines[2].split(" | ")
    rows = {r[1]: r for r in (line.split(" | ") for line in lines if line.startswith(("| 1 ", "| 2 ")))}
    network, reference = header.index("network alone, last"), header.index("reference alone, last")
    assert (rows["`reference=logreg`"][network], rows["`reference=logreg`"][reference]) == ("40.0 ± 0.0", "70.0 ± 14.1")
    assert (rows["`reference=none`"][network], rows["`reference=none`"][reference]) == ("-", "-")


def test_the_summary_scores_each_run_again_at_other_fusion_strengths(tmp_path):
    # tracks of classes a and b; the network is sure both are a (b - a = log 1/9 = -2.2), the reference
    # leans to the true classes (track b: b - a = log 4 = 1.4), so b wins from a strength of 2.2 / 1.4 = 1.6
    fused, network_only = tmp_path / "fused", tmp_path / "network_only"
    network, reference = np.log([[0.9, 0.1], [0.9, 0.1]]), np.log([[0.6, 0.4], [0.2, 0.8]])
    for fold in (0, 1):
        write_job(fused, str(fold), [f"fold={fold}"], last=0.5, best=0.5, network=0.5, reference=1.0)
        scores = TrackScores(torch.tensor([3, 7]), torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor(network),
                             torch.tensor(reference))
        write_track_scores(fused / str(fold), scores, paths=[f"t{i}.wav" for i in range(8)], classes=["a", "b"])
    write_job(network_only, "0", ["fold=0"], last=0.5, best=0.5)  # reference=none: the network's columns only
    write_track_scores(network_only / "0", scores._replace(reference=None), paths=[f"t{i}.wav" for i in range(8)],
                       classes=["a", "b"])
    summarize(fused)
    summarize(network_only)
    table = (fused / "summary.md").read_text().split("Fusion strength")[1].splitlines()
    assert table[2:5] == ["| setting | rescored | network alone | s = 0.25 | s = 0.5 | s = 1 | s = 2 | reference alone |",
                          "|---|---:|---|---|---|---|---|---|",
                          "| `(common settings)` | 2 of 2 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 100.0 ± 0.0 "
                          "| 100.0 ± 0.0 |"]
    with open(fused / "summary.csv") as f:
        assert [r["last/val/track_acc_strength_2"] for r in csv.DictReader(f)] == ["1.0", "1.0"]
    (fused / "1" / "track_scores.csv").unlink()  # a run from before the file: counted, not averaged
    summarize(fused)
    assert "| `(common settings)` | 1 of 2 | 50.0 ± 0.0 |" in (fused / "summary.md").read_text()
    assert (network_only / "0" / "track_scores.csv").read_text().splitlines()[:2] == [
        "path,class,predicted,network/a,network/b", "t3.wav,a,a,-0.105360516,-2.30258509"]
    assert "Fusion strength" not in (network_only / "summary.md").read_text()


def test_rescore_writes_the_track_scores_a_run_made_before_the_file_would_have_written(tiny_run, tmp_path, caplog):
    sweep = tmp_path / "sweep"
    old, broken, changed, drifted = (sweep / f"{job}_fold=1" for job in range(4))
    for run in (old, broken, changed, drifted):
        shutil.copytree(tiny_run, run)
        (run / "track_scores.csv").unlink()
    (broken / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    record = json.loads((changed / "metrics.json").read_text())
    logged = round(record["final"]["val/track_acc_network"] * 6)
    record["final"]["val/track_acc_network"] = (logged + 1) % 7 / 6  # as if the data had changed since
    (changed / "metrics.json").write_text(json.dumps(record))
    record = json.loads((drifted / "metrics.json").read_text())
    record["final"]["val/loss"] *= 1.001  # a file replaced in place: every accuracy the same, the loss not
    (drifted / "metrics.json").write_text(json.dumps(record))
    summarize_main([str(sweep), "--rescore"])
    with open(tiny_run / "track_scores.csv") as f, open(old / "track_scores.csv") as g:
        written, rescored = list(csv.reader(f)), list(csv.reader(g))
    assert [row[:3] for row in rescored] == [row[:3] for row in written]  # tracks, classes, predictions
    assert np.allclose(np.array([row[3:] for row in rescored[1:]], float), np.array([row[3:] for row in written[1:]], float),
                       atol=1e-5)
    # no file where it cannot be, or does not reproduce the record; one line names the run; the others go on
    assert not any((run / "track_scores.csv").exists() for run in (broken, changed, drifted))
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Cannot score")]
    assert any(w.startswith(f"Cannot score {broken} again: CheckpointError") for w in warnings)
    assert f"Cannot score {changed} again: RescoreError: val/track_acc_network: {logged} of 6 tracks right where the " \
           f"run logged {(logged + 1) % 7}" in "\n".join(warnings)
    assert any(w.startswith(f"Cannot score {drifted} again: RescoreError: val/loss: ") for w in warnings)
    assert "| 1 of 4 |" in (sweep / "summary.md").read_text()


def test_a_job_interrupted_before_its_first_checkpoint_is_listed_with_what_to_do(tmp_path):
    write_job(tmp_path, "0", ["fold=0"], last=0.5, best=0.5)
    (tmp_path / "1" / ".hydra").mkdir(parents=True)
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["fold=1"]))
    (tmp_path / "1" / "metrics.json").write_text(json.dumps({
        "status": "interrupted", "signal": "SIGINT", "fold": 1, "stopped_at": {"epoch": 0, "batch": 3},
        "checkpoint": None, "resume": None}))
    summarize(tmp_path)
    assert "(interrupted): SIGINT in epoch 0; no checkpoint yet: run it again" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("trainer,exact", [({"accelerator": "cpu", "devices": 1}, True),
                                           ({"accelerator": "gpu", "precision": "bf16-mixed"}, False),
                                           ({"accelerator": "cpu", "strategy": "ddp", "devices": 2}, False)])
def test_rescore_checks_the_loss_and_every_segment_only_of_runs_validated_as_it_validates(trainer, exact):
    assert scored_as_here(trainer) is exact  # bf16 turns near-tie segments; each DDP process logged its own loss


def test_seeds_of_a_setting_share_its_row_with_each_seeds_mean(tmp_path):
    for name, fold, seed, last in (("a", 0, 1, 0.4), ("b", 1, 1, 0.6), ("c", 0, 2, 0.6), ("d", 1, 2, 1.0)):
        write_job(tmp_path, name, [f"fold={fold}", f"seed={seed}", "model=cnn"], last=last, best=last)
    write_job(tmp_path, "e", ["fold=0", "model=vit"], last=0.2, best=0.2)
    write_job(tmp_path, "f", ["fold=1", "model=vit"], last=0.2, best=0.2)
    summarize(tmp_path)
    table = (tmp_path / "summary.md").read_text()
    # folds averaged over seeds (0.5 and 0.8), std over those two folds; each seed's mean over its folds
    assert "| 1 | `model=cnn` | 4 | 65.0 ± 21.2 | 65.0 ± 21.2 | 50 / 80 | 1: 50.0, 2: 80.0 |" in table
    assert "| 2 | `model=vit` | 2 | 20.0 ± 0.0 | 20.0 ± 0.0 | 20 / 20 | - |" in table
    with open(tmp_path / "summary.csv") as f:
        assert sorted(r["seed"] for r in csv.DictReader(f)) == ["", "", "1", "1", "2", "2"]


def test_same_seed_gives_the_same_metrics(tiny_run, tmp_path, shared_cache):
    again = train(tmp_path, shared_cache)
    first = json.loads((tiny_run / "metrics.json").read_text())
    assert again["final"] == first["final"] and again["best"] == first["best"]


def test_other_seed_gives_other_metrics(tiny_run, tmp_path, shared_cache):
    other = train(tmp_path, shared_cache, "seed=3")
    assert other["final"]["train/loss_epoch"] != json.loads((tiny_run / "metrics.json").read_text())["final"]["train/loss_epoch"]


def test_resume_from_last_ends_like_an_uninterrupted_run(tmp_path, shared_cache):
    # A constant learning rate: stopping at max_epochs=1 must not change the schedule itself.
    constant_lr = ("optim.scheduler=null", "augment=specaugment")
    uninterrupted = train(tmp_path, shared_cache, *constant_lr, run_dir=tmp_path / "whole")
    run_dir = tmp_path / "resumed"
    half = train(tmp_path, shared_cache, *constant_lr, "trainer.max_epochs=1", run_dir=run_dir)
    assert half["epochs"] == 1
    resumed = train(tmp_path, shared_cache, *constant_lr, "trainer.max_epochs=2", "ckpt_path=last", run_dir=run_dir)
    assert resumed["epochs"] == 2 and uninterrupted["epochs"] == 2
    for key in ("train/loss_epoch", "val/loss", "val/track_acc", "val/track_acc_best"):
        assert resumed["final"][key] == pytest.approx(uninterrupted["final"][key], abs=1e-6), key


def test_predict_needs_only_the_checkpoint_and_survives_a_corrupt_file(tiny_run, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    rate = 22050
    sf.write(songs / "a.wav", np.sin(np.arange(rate * 9) * 0.05) * 0.3, rate)
    (songs / "broken.wav").write_bytes(b"not audio" * 50)
    (songs / "phone.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (songs / "notes.txt").write_text("not a song")
    sf.write(songs / "b.flac", np.random.default_rng(0).standard_normal(rate * 12) * 0.1, rate)
    result = run_entry_point("genre_vit.predict", f"ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}", f"input={songs}",
                             f"output={tmp_path / 'predictions.csv'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "predictions.csv") as f:
        rows = {r["path"].rsplit("/", 1)[1]: r for r in csv.DictReader(f)}
    assert list(rows) == ["a.wav", "b.flac", "broken.wav", "phone.m4a"]  # a file that is not audio gets no row
    assert rows["broken.wav"]["error"].startswith("unreadable audio") and rows["broken.wav"]["genre"] == ""
    assert "ffmpeg -i phone.m4a phone.flac" in rows["phone.m4a"]["error"]
    for name in ("a.wav", "b.flac"):
        probs = [float(rows[name][f"top{r}_prob"]) for r in (1, 2, 3)]
        assert rows[name]["genre"] == rows[name]["top1"] and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
    assert "genre predictions" in result.stdout and "broken.wav" in result.stdout


def test_predict_scores_the_seconds_the_checkpoint_validated_on_unless_told_otherwise(tiny_run, tmp_path):
    """tiny_run validated the first 8 s of each track (debug=fast's data.clip_seconds)."""
    sf.write(tmp_path / "long.wav", np.random.default_rng(1).standard_normal(22050 * 20) * 0.1, 22050)
    probabilities = {}
    for seconds in ("training", "8", "null"):
        output = tmp_path / f"{seconds}.csv"
        result = run_entry_point("genre_vit.predict", f"ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}",
                                 f"input={tmp_path / 'long.wav'}", f"output={output}", f"clip_seconds={seconds}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        with open(output) as f:
            probabilities[seconds] = next(csv.DictReader(f))
    assert probabilities["training"] == probabilities["8"] != probabilities["null"]


@pytest.mark.parametrize("override,error", [
    ("output={tmp}", r"error: output='.*' cannot be written: Is a directory$"),
    ("top_k=0", r"error: top_k=0 is invalid: allowed integers >= 1$"),
    ("batch_size=0", r"error: batch_size=0 is invalid: allowed integers >= 1$"),
    ("clip_seconds=-3", r"error: clip_seconds=-3 is invalid: allowed training \(the checkpoint's\), null \(all\) or seconds > 0$"),
    ("clip_seconds=true", r"error: clip_seconds=True is invalid: allowed training"),
    ("clip_seconds=inf", r"error: clip_seconds=inf is invalid: allowed training"),
    ("clip_seconds=0.1", r"error: clip_seconds=0.1 is shorter than this checkpoint can score \(0.50 s at least, by its "
                         r"data.short_clips=repeat\): allowed training, null or seconds >= 0.50$"),
    ("input=", r"error: input is empty: set it to a path$"),  # e.g. input=$SONG, SONG unset: not the whole folder
])
def test_predict_settings_that_cannot_work_are_one_line_before_any_file_is_scored(tiny_run, tmp_path, override, error):
    write_tone(tmp_path / "song.wav", 9.0)
    result = run_entry_point("genre_vit.predict", f"ckpt={tiny_run / 'checkpoints' / 'last.ckpt'}", f"input={tmp_path}",
                             override.format(tmp=tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and re.match(error, result.stderr.strip().splitlines()[-1])


def test_predict_without_a_checkpoint_or_an_input_names_the_setting_it_needs(tmp_path):
    for given, missing in ((f"input={tmp_path}", "ckpt=PATH names a checkpoint"), ("ckpt=a.ckpt", "input=PATH names an audio")):
        result = run_entry_point("genre_vit.predict", given, cwd=tmp_path)
        assert result.returncode == 2 and missing in result.stderr.strip().splitlines()[-1], result.stderr[-2000:]


def test_sweep_preset_is_a_multirun_over_patch_embed_and_lr():
    cfg = compose_config("sweep=patch_embed_lr")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert set(cfg.hydra.sweeper.params) == {"model.patch_size", "model.embed_dim", "optim.lr", "fold"}


def test_a_failing_job_is_summarised_as_failed_and_the_others_still_run(tmp_path, shared_cache):
    rows = {r["setting"]: r for r in multirun(tmp_path, shared_cache, "debug=fast", "model=vit", "model.num_heads=3,2", "fold=0")}
    assert rows["model.num_heads=3"]["status"] == "failed"
    assert rows["model.num_heads=3"]["error"].startswith("ConfigError: model.embed_dim=32 is not divisible by model.num_heads=3")
    assert rows["model.num_heads=2"]["status"] == "completed"
    assert "did not complete" in (tmp_path / "sweep" / "summary.md").read_text()


def test_predict_refuses_a_checkpoint_that_would_run_code(tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {}, "genre_vit_recipe": {"payload": CodeRunningPayload(marker)}}, tmp_path / "evil.ckpt")
    (tmp_path / "songs").mkdir()
    result = run_entry_point("genre_vit.predict", f"ckpt={tmp_path / 'evil.ckpt'}", f"input={tmp_path / 'songs'}", cwd=tmp_path)
    assert result.returncode == 2 and not marker.exists()
    assert "refusing to load it" in result.stderr and "Traceback" not in result.stderr


def test_predict_builds_only_this_packages_modules_from_plain_settings_and_else_says_why_in_one_line(tiny_run, tmp_path):
    """A checkpoint's recipe is instantiated: a `_target_` in it could call anything (write a file)."""
    marker = tmp_path / "written-by-the-checkpoint"
    write = {"_target_": "pathlib.Path.write_text", "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "x"]}

    def edited(name, change):
        checkpoint = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
        change(checkpoint)
        torch.save(checkpoint, tmp_path / name)
        return tmp_path / name

    write_tone(tmp_path / "songs" / "song.wav", 4.0)
    refusals = {
        tmp_path / "songs" / "song.wav": r"is not a readable checkpoint \(training writes zip archives, and this file is none",
        edited("nested.ckpt", lambda c: c["genre_vit_recipe"]["features"].update(n_fft=write)):
            r"its recipe's features holds more than plain settings \(a nested _target_",
        edited("target.ckpt", lambda c: c["genre_vit_recipe"]["model"].update(write)):
            r"its recipe's model names 'pathlib.Path.write_text', not a class of genre_vit.models$",
        edited("layout.ckpt", lambda c: c["state_dict"].update({"model.net.renamed.weight": torch.zeros(1)})):
            r"does not load in this version of genre_vit, which builds its network otherwise \(RuntimeError: Error\(s\) in",
        edited("settings.ckpt", lambda c: c["genre_vit_recipe"]["model"].update(extra=1)):
            r"builds its network otherwise \(TypeError: .*unexpected keyword argument 'extra'\): predict with the version",
        edited("weights.ckpt", lambda c: c.pop("state_dict")): r"is not a checkpoint that training wrote \(it holds no state_dict\)$",
    }
    for ckpt, error in refusals.items():
        result = run_entry_point("genre_vit.predict", f"ckpt={ckpt}", f"input={tmp_path / 'songs'}", cwd=tmp_path)
        assert result.returncode == 2 and re.search(error, result.stderr.strip().splitlines()[-1]), (ckpt, result.stderr[-2000:])
    assert not marker.exists()


def test_an_optuna_search_that_would_maximise_a_loss_is_refused():
    from hydra.core.hydra_config import HydraConfig

    from genre_vit.config import ConfigError, validate

    earlier = HydraConfig.instance().cfg  # what other tests of this process set: restored below
    try:
        cfg = compose_config("hparams_search=optuna", "optimized_metric=val/loss")
        HydraConfig.instance().set_config(cfg)
        with pytest.raises(ConfigError, match=r"optimized_metric=val/loss with hydra.sweeper.direction=maximize: the "
                                              r"search would look for the largest loss; set hydra.sweeper.direction=minimize"):
            validate(cfg, overrides=[])
        minimizing = compose_config("hparams_search=optuna", "optimized_metric=val/loss", "hydra.sweeper.direction=minimize")
        HydraConfig.instance().set_config(minimizing)
        validate(minimizing, overrides=[])
    finally:
        HydraConfig.instance().cfg = earlier


def test_an_optuna_trial_that_fails_is_recorded_as_failed_and_the_search_goes_on(tmp_path):
    """Every trial here names a fold the split lacks: each fails alone, and only the end of the search says so."""
    result = run_entry_point("genre_vit.train", "hparams_search=optuna", "fold=7", "hydra.sweeper.n_trials=2",
                             "hydra.sweeper.sampler.n_startup_trials=1", f"paths.output_root={tmp_path}",
                             f"hydra.sweep.dir={tmp_path}/optuna", cwd=tmp_path)
    assert len(list((tmp_path / "optuna").glob("*/metrics.json"))) == 2  # both trials ran, each refused by its config
    assert result.stderr.count("error: fold=7") == 2
    assert result.stderr.strip().endswith("No trials are completed yet.")  # Optuna's word when every trial failed


def test_fold_all_trains_every_fold_and_optuna_maximises_their_mean(tmp_path, shared_cache):
    result = run_entry_point("genre_vit.train", "hparams_search=optuna", "fold=all", "data.num_folds=2", "debug=fast",
                             "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=1", f"paths.output_root={tmp_path}",
                             f"paths.cache_dir={shared_cache}", f"hydra.sweep.dir={tmp_path}/optuna", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    means = []
    for path in sorted((tmp_path / "optuna").glob("*/cross_validation.json")):
        cv = json.loads(path.read_text())
        folds = [json.loads((Path(run) / "metrics.json").read_text()) for run in cv["runs"]]
        assert [f["fold"] for f in folds] == [0, 1] and all(f["status"] == "completed" for f in folds)
        scores = [f["final"]["val/track_acc_best"] for f in folds]
        assert cv["val/track_acc_best"]["mean"] == pytest.approx(sum(scores) / 2)
        means.append(cv["val/track_acc_best"]["mean"])
    assert len(means) == 2
    best = yaml.safe_load((tmp_path / "optuna" / "optimization_results.yaml").read_text())
    searched = compose_config("hparams_search=optuna").hydra.sweeper.params
    assert set(best["best_params"]) == set(searched) and best["best_value"] == pytest.approx(max(means))
    with open(tmp_path / "optuna" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["fold"] for r in rows) == ["0", "0", "1", "1"] and {r["status"] for r in rows} == {"completed"}


def test_baselines_run_through_the_same_entry_and_rank_beside_the_vit(tmp_path, shared_cache):
    rows = multirun(tmp_path, shared_cache, "debug=fast", "experiment=baseline_logreg,mel_specaugment", "fold=0")
    assert sorted((r["setting"], r["fold"], r["status"]) for r in rows) == [
        ("experiment=baseline_logreg", "0", "completed"), ("experiment=mel_specaugment", "0", "completed")]
    ranked = (tmp_path / "sweep" / "summary.md").read_text()
    assert "`experiment=baseline_logreg`" in ranked and "`experiment=mel_specaugment`" in ranked


def test_the_cnn_trains_through_the_same_module(tmp_path, shared_cache):
    metrics = train(tmp_path, shared_cache, "model=cnn")
    assert metrics["status"] == "completed" and metrics["num_params"] == 6_074  # debug=fast's narrow blocks after the default 2x2 stem
