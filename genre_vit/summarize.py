"""Summarise run directories: summary.csv (a row per job), summary.md (a row per setting, mean ±
std over folds of the last epoch's track accuracy, best first; several seeds of a setting share
its row; for runs with the classical reference, their accuracy again at other fusion strengths)
and the original report's pictures as PNG.

    python -m genre_vit.summarize outputs/multiruns/2026-11-23_10-00-00
    python -m genre_vit.summarize outputs/multiruns/2026-11-23_10-00-00 --rescore   # runs before track_scores.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from genre_vit.cli import override_value  # noqa: E402
from genre_vit.recipe import FEATURES_BEFORE_THEIR_KEYS  # noqa: E402
from genre_vit.runs import (  # noqa: E402
    HISTORY_FILE,
    NOT_RESULT_KEYS,
    REFERENCE_METRICS,
    SUMMARY_METRICS,
    flattened,
    hydra_record,
    key_ends_with,
    read_record,
    read_track_scores,
    records_below,
)

NOT_SETTINGS = ("fold", "ckpt_path", "seed")  # overrides that pick a fold, a checkpoint to resume or a repeat, not a setting
IGNORED_PREFIXES = ("paths.", "hydra.")
# composed-config sections that one setting's jobs may differ in: what picks a fold, a repeat or a
# checkpoint, where files go, what is logged (and, by NOT_RESULT_KEYS, how fast it runs)
NOT_SETTING_SECTIONS = (*NOT_SETTINGS, "paths", "logger", "callbacks", "print_config", "task_name", "optimized_metric")
SHOWN_DIFFERENCES = 4  # composed-config keys named in a setting split by its configs
LAST_METRICS = ("val/track_acc", *REFERENCE_METRICS, "val/acc", "train/acc")  # the final weights' scores: summary.csv's last/* columns
# summary.md's mean ± std columns and the job key each reads (val/track_acc: the best checkpoint's)
ROW_COLUMNS = {"last": "last/val/track_acc", "best_epoch": "val/track_acc", "train_acc": "last/train/acc",
               "network": "last/val/track_acc_network", "reference": "last/val/track_acc_reference"}
FUSION_STRENGTHS = (0.25, 0.5, 1.0, 2.0)  # reference.strength values each run is scored again at


def strength_key(strength: float) -> str:
    return f"last/val/track_acc_strength_{strength:g}"


STRENGTH_COLUMNS = {f"strength {s:g}": strength_key(s) for s in FUSION_STRENGTHS}


def strength_accuracies(run_dir: Path) -> dict[str, float]:
    """The final weights' track accuracy with the reference's vote at each of FUSION_STRENGTHS,
    from the run's track_scores.csv; {} for a run without one or without a reference."""
    scores = read_track_scores(run_dir)
    if scores is None or scores[2] is None:
        return {}
    labels, network, reference = scores
    return {strength_key(s): float(((network + s * reference).argmax(1) == labels).mean()) for s in FUSION_STRENGTHS}


def job_overrides(run_dir: Path, root: Path) -> list[str]:
    """The command-line overrides Hydra recorded for a run (`.hydra/overrides.yaml`), or for the
    job that holds it (a fold of `fold=all`), looking no higher than `root`."""
    path = hydra_record(run_dir, "overrides.yaml", root)
    overrides = (yaml.safe_load(path.read_text()) or []) if path else []
    return [o for o in overrides if not o.lstrip("+~").startswith(IGNORED_PREFIXES)]


def setting_of(overrides: list[str], common: set[str]) -> str:
    """The hyper-parameter setting a job belongs to: its overrides without the fold, the resumed
    checkpoint and those every job shares."""
    kept = [o for o in overrides if override_key(o) not in NOT_SETTINGS and o not in common]
    return " ".join(sorted(kept)) or "(common settings)"


def common_overrides(jobs: list[dict]) -> set[str]:
    sets = [set(j["overrides"]) for j in jobs]
    return set.intersection(*sets) if sets else set()


def collect_jobs(root: Path) -> list[dict]:
    """One record per run directory below `root` that holds a metrics.json or a .hydra folder."""
    run_dirs = sorted({p.parent for p in records_below(root)} | {p.parent.parent for p in root.rglob(".hydra/config.yaml")})
    jobs = []
    for run_dir in run_dirs:
        overrides = job_overrides(run_dir, root)
        if "fold=all" in overrides and read_record(run_dir) is None:
            continue  # a cross-validation job: its folds' runs below it are the jobs
        job = {"dir": str(run_dir.relative_to(root)) if run_dir != root else ".", "overrides": overrides}
        metrics = read_record(run_dir)
        if metrics is not None:
            resume = ""
            if metrics.get("status") == "interrupted":
                how = f"resume with: {metrics['resume']}" if metrics.get("resume") else "no checkpoint yet: run it again"
                resume = f"{metrics.get('signal')} in epoch {metrics.get('stopped_at', {}).get('epoch')}; {how}"
            job.update(status=metrics.get("status", "completed"), fold=metrics.get("fold"), error=metrics.get("error") or resume,
                       best_epoch=metrics.get("best_epoch"), epochs=metrics.get("epochs"),
                       steps=metrics.get("steps"), wall_time_s=metrics.get("wall_time_s"))
            job.update({m: metrics.get("best", {}).get(m) for m in SUMMARY_METRICS})
            job.update({f"last/{m}": metrics.get("final", {}).get(m) for m in LAST_METRICS})
            job.update({f"test/{k.split('/', 1)[1]}": v for k, v in metrics.get("test", {}).items() if k.startswith("test/")})
            job.update(strength_accuracies(run_dir))
        else:
            job.update(status="failed", error="no metrics.json: the job stopped before it finished")
        jobs.append(job)
    common = common_overrides(jobs)
    for job in jobs:
        job["setting"] = setting_of(job["overrides"], common)
        job["seed"] = seed_of(job["overrides"])
    split_by_config(jobs, {job["dir"]: composed_settings(root / job["dir"], root) for job in jobs})
    return jobs


def composed_settings(run_dir: Path, root: Path) -> dict[str, Any]:
    """The config Hydra composed for a run (`.hydra/config.yaml`, interpolations unresolved),
    flattened, without the sections and keys that do not change what it computes; {} if none."""
    path = hydra_record(run_dir, "config.yaml", root)
    config = (yaml.safe_load(path.read_text()) or {}) if path else {}
    if isinstance(config.get("features"), dict):  # a run from before a feature setting: what it did
        config["features"] = {**FEATURES_BEFORE_THEIR_KEYS, **config["features"]}
    return {key: value for key, value in flattened(config).items()
            if key.split(".", 1)[0] not in NOT_SETTING_SECTIONS and not key_ends_with(key, NOT_RESULT_KEYS)}


def split_by_config(jobs: list[dict], configs: dict[str, dict[str, Any]]) -> None:
    """Give jobs of one setting whose composed configs differ (conf/ edited between two sweeps,
    another version's defaults) settings of their own, named by the keys that differ:
    `data=esc50 [features.segment_frames=128]`. Jobs without a saved config stay as they are."""
    for setting, members in _by(jobs, "setting").items():
        variants: dict[str, list[dict]] = defaultdict(list)
        for job in members:
            if configs[job["dir"]]:
                variants[json.dumps(configs[job["dir"]], sort_keys=True, default=str)].append(job)
        if len(variants) < 2:
            continue
        variant_configs = [configs[group[0]["dir"]] for group in variants.values()]
        differing = sorted(key for key in set().union(*variant_configs)
                           if len({json.dumps(c.get(key, "(unset)"), default=str) for c in variant_configs}) > 1)
        labels = [" ".join(f"{key}={override_value(c[key]) if key in c else '(unset)'}" for key in differing[:SHOWN_DIFFERENCES])
                  + (" ..." if len(differing) > SHOWN_DIFFERENCES else "") for c in variant_configs]
        for number, (label, group) in enumerate(zip(labels, variants.values()), 1):
            unique = label if labels.count(label) == 1 else f"{label} #{number}"  # the named keys alike: numbered
            for job in group:
                job["setting"] = f"{setting} [{unique}]"


def override_key(override: str) -> str:
    """`+a.b=1`, `~a.b` -> `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def seed_of(overrides: list[str]) -> str:
    """The job's `seed=` override, or "" when it ran with the configured seed."""
    return next((o.split("=", 1)[1] for o in overrides if override_key(o) == "seed" and "=" in o), "")


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std; one value has no std (NaN)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _by(jobs: list[dict], key: str) -> dict:
    groups: dict = defaultdict(list)
    for job in jobs:
        groups[job[key]].append(job)
    return dict(sorted(groups.items(), key=lambda item: (item[0] is None, item[0])))


def fold_means(runs: list[dict], metric: str) -> list[float]:
    """`metric` of each fold, averaged over the fold's runs (its seeds), in fold order."""
    return [statistics.fmean(values) for members in _by(runs, "fold").values()
            if (values := [j[metric] for j in members if j.get(metric) is not None])]


def fold_cells(members: list[dict], done: list[dict]) -> list[float | None]:
    """The last track accuracy of each fold a setting's jobs ran, in fold order, averaged over its
    seeds; None for a fold whose runs all failed or were interrupted, so that the others keep
    their places. (A sweep of some folds only, e.g. `fold=0`, lists those.)"""
    means = dict(zip(_by(done, "fold"), fold_means(done, ROW_COLUMNS["last"])))
    if any(not isinstance(fold, int) for fold in means):  # records from before they named their fold
        return list(means.values())
    return [means.get(fold) for fold in sorted({j["fold"] for j in members if isinstance(j.get("fold"), int)})]


def group_settings(jobs: list[dict]) -> list[dict]:
    """One row per setting, best last-epoch track accuracy first. Means and stds are over folds,
    each fold averaged over its seeds; `per_seed` holds each seed's mean over its folds when a
    setting ran with several (the spread the seed alone causes)."""
    rows = []
    for setting, members in _by(jobs, "setting").items():
        done = [j for j in members if j["status"] == "completed" and j.get("last/val/track_acc") is not None]
        seeds = _by(done, "seed")
        per_fold = {column: fold_means(done, metric) for column, metric in {**ROW_COLUMNS, **STRENGTH_COLUMNS}.items()}
        row = {"setting": setting, "runs": len(done), "failed": len(members) - len(done), "per_fold": fold_cells(members, done),
               "rescored": sum(strength_key(FUSION_STRENGTHS[0]) in j for j in done),
               "per_seed": {seed: statistics.fmean(fold_means(runs, ROW_COLUMNS["last"])) for seed, runs in seeds.items()}
               if len(seeds) > 1 else {},
               **{column: _mean_std(values) if values else (math.nan, math.nan) for column, values in per_fold.items()}}
        rows.append(row)
    return sorted(rows, key=lambda r: -r["last"][0] if not math.isnan(r["last"][0]) else math.inf)


def write_csv(jobs: list[dict], path: Path) -> None:
    columns = ["dir", "setting", "overrides", "status", "fold", "seed", *SUMMARY_METRICS, *(f"last/{m}" for m in LAST_METRICS),
               *STRENGTH_COLUMNS.values(), "best_epoch", "epochs", "steps", "wall_time_s"]
    columns += sorted({k for j in jobs for k in j if k.startswith("test/")}) + ["error"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**job, "overrides": " ".join(job["overrides"])} for job in jobs)


def _percent(mean_std: tuple[float, float]) -> str:
    if math.isnan(mean_std[0]):
        return "-"
    return f"{100 * mean_std[0]:.1f}" + ("" if math.isnan(mean_std[1]) else f" ± {100 * mean_std[1]:.1f}")


def write_markdown(rows: list[dict], jobs: list[dict], path: Path) -> None:
    common = sorted(common_overrides(jobs))
    lines = [f"Overrides shared by every job: `{' '.join(common)}`" if common else "No override is shared by every job.", "",
             "| rank | setting | runs | track acc, last (mean ± std) | track acc, best epoch | per fold (last) | "
             "per seed (last) | train acc, last | network alone, last | reference alone, last | failed |",
             "|---:|---|---:|---|---|---|---|---|---|---|---:|"]
    for rank, row in enumerate(rows, 1):
        folds = " / ".join("-" if v is None else f"{100 * v:.0f}" for v in row["per_fold"]) or "-"
        seeds = ", ".join(f"{seed or 'configured'}: {100 * v:.1f}" for seed, v in row["per_seed"].items()) or "-"
        lines.append(f"| {rank} | `{row['setting']}` | {row['runs']} | {_percent(row['last'])} | "
                     f"{_percent(row['best_epoch'])} | {folds} | {seeds} | {_percent(row['train_acc'])} | "
                     f"{_percent(row['network'])} | {_percent(row['reference'])} | {row['failed']} |")
    lines += ["", "Percent. *last*: the final weights, no choice made on the validation fold (the honest number); "
              "*best epoch*: the best validation epoch's, chosen on the validation fold itself (optimistic). "
              "std: sample std over folds, each fold averaged over its seeds; *per fold*: the folds run, in "
              "order, `-` for one whose runs failed or were interrupted; *per seed*: each seed's mean over "
              "its folds; *train acc*: the last epoch's accuracy on the training batches; *network alone*, "
              "*reference alone*: the same runs' track accuracy of the network without the classical reference and "
              "of the reference alone (the default's track acc fuses the two; `-`: the runs have no reference)."]
    rescored = [row for row in rows if row["rescored"]]
    if rescored:
        lines += ["", "Fusion strength: each run's final weights scored again with the reference's vote at "
                  "`reference.strength` = s, from its track_scores.csv (the default strength is 0.5; 0 would be "
                  "the network alone, a large s the reference alone). *rescored*: the runs with that file, "
                  "which the s columns average (runs older than the file have none).", "",
                 "| setting | rescored | network alone | " + " | ".join(f"s = {s:g}" for s in FUSION_STRENGTHS)
                 + " | reference alone |",
                 "|---|---:|---|" + "---|" * len(FUSION_STRENGTHS) + "---|"]
        lines += [f"| `{row['setting']}` | {row['rescored']} of {row['runs']} | {_percent(row['network'])} | "
                  + " | ".join(_percent(row[c]) for c in STRENGTH_COLUMNS) + f" | {_percent(row['reference'])} |"
                  for row in rescored]
    failed = [j for j in jobs if j["status"] != "completed"]
    if failed:
        lines += ["", "Jobs that did not complete:", ""]
        lines += [f"- `{j['dir']}` ({j['status']}): {j['error']}" for j in failed]
    path.write_text("\n".join(lines) + "\n")


def read_history(run_dir: Path) -> list[dict]:
    path = run_dir / HISTORY_FILE
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def epoch_curve(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the rows that have `key`: validation every few epochs still draws a line."""
    rows = [row for row in history if key in row]
    return [row["epoch"] for row in rows], [row[key] for row in rows]


def plot_curves(root: Path, jobs: list[dict], path: Path) -> bool:
    """Loss and accuracy against epoch, train and validation, a line per fold (the report's Fig. 3-4)."""
    curves = [(j, read_history(root / j["dir"])) for j in jobs]
    curves = [(j, h) for j, h in curves if h]
    if not curves:
        return False
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for job, history in curves:
        label = f"fold {job.get('fold')}" + (f" {job['setting']}" if job["setting"] != "(common settings)" else "")
        for ax, train_key, val_key in ((loss_ax, "train/loss_epoch", "val/loss"), (acc_ax, "train/acc", "val/track_acc")):
            line, = ax.plot(*epoch_curve(history, val_key), label=f"{label} val")
            ax.plot(*epoch_curve(history, train_key), "--", color=line.get_color(), label=f"{label} train")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (train dashed, validation solid)")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="train segment acc (dashed), val track acc (solid)")
    acc_ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_settings(rows: list[dict], path: Path) -> None:
    """A bar per setting: the last epoch's mean val/track_acc with its std over folds."""
    rows = [r for r in rows if r["runs"]]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows) + 2), 4.5))
    spread = [0.0 if math.isnan(r["last"][1]) else r["last"][1] for r in rows]  # one fold: no bar
    ax.bar(range(len(rows)), [r["last"][0] for r in rows], yerr=spread, capsize=4)
    ax.set_xticks(range(len(rows)), [r["setting"].replace(" ", "\n") for r in rows], fontsize=7)
    ax.set(ylabel="val/track_acc, last epoch (mean ± std over folds)", ylim=(0, 1), title="settings, best first")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(root: str | Path) -> list[Path]:
    """Write summary.csv, summary.md, curves.png and settings.png into `root`; return the paths."""
    root = Path(root)
    jobs = collect_jobs(root)
    if not jobs:
        raise SystemExit(f"error: {root} holds no run directories (no metrics.json or .hydra/config.yaml below it)")
    rows = group_settings(jobs)
    written = [root / "summary.csv", root / "summary.md", root / "settings.png"]
    write_csv(jobs, written[0])
    write_markdown(rows, jobs, written[1])
    plot_settings(rows, written[2])
    if plot_curves(root, jobs, root / "curves.png"):
        written.append(root / "curves.png")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="a multirun directory, or any directory holding run directories")
    parser.add_argument("--rescore", action="store_true",
                        help="first write track_scores.csv for finished runs that have none (runs made before runs "
                             "wrote it), from each run's last checkpoint and its data, for the fusion strength table")
    args = parser.parse_args(argv)
    if args.rescore:
        from genre_vit.rescore import rescore  # torch, the data and the checkpoints: only when asked
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        for path in rescore(Path(args.dir)):
            print(path)
    for path in summarize(args.dir):
        print(path)


if __name__ == "__main__":
    main()
