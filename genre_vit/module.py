"""GenreClassifier: the LightningModule around any spectrogram network (loss, metrics, optimizers)."""
from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from genre_vit.data.features import SpecAugment
from genre_vit.metrics import TrackVotes, track_scores
from genre_vit.models import normalized
from genre_vit.optim import param_groups
from genre_vit.recipe import CHECKPOINT_KEY, HELD_OUT_KEY
from genre_vit.reference import StatisticsReference, scored_tracks
from genre_vit.runs import TrackScores

# A training batch's augmentation draws use the seed seed * AUGMENT_SEED_STRIDE + augment_draw(...).
AUGMENT_SEED_STRIDE = 1_000_003


def augment_draw(step: int, micro_batch: int, accumulate: int, rank: int, world_size: int) -> int:
    """A number of its own for every (optimizer step, micro-batch, process); the step itself for
    one process without gradient accumulation."""
    return (step * accumulate + micro_batch) * world_size + rank


class GenreClassifier(L.LightningModule):
    """Classifies (B, F, T) log-spectrogram segments into genres with `net`, any nn.Module that
    maps (B, F, T) to (B, classes) logits.

    The module holds `model`: a per-frequency Normalization of the `input_rows` rows (statistics
    of the training fold, set at fit start from the datamodule) followed by `net`, so the
    normalisation is saved with the weights. `augment` holds SpecAugment masking (`freq_mask`,
    `time_mask`, `num_masks`, `mask_fill`) and `mixup_alpha` (0 = off), applied to training batches only.
    `recipe` (Recipe.to_dict(), see genre_vit.recipe) is saved in every checkpoint.

    With a `reference` (genre_vit.reference), fitted at fit start on the training fold's
    segments, a track's score is the network's log-probabilities plus the reference's vote:
    `{stage}/track_acc` scores that sum, `{stage}/track_acc_network` the network alone and
    `{stage}/track_acc_reference` the reference alone.
    """

    def __init__(
        self,
        net: nn.Module,
        input_rows: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None,
        label_smoothing: float,
        class_names: list[str],
        augment: dict,
        seed: int,
        reference: StatisticsReference | None = None,
    ):
        super().__init__()
        # logger=False: the train entry writes the full config and final metrics to HPARAMS once.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "reference"], logger=False)
        self.model = normalized(net, input_rows)
        self.reference = reference
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.recipe: dict = {}  # set by the train entry (not a constructor argument: Hydra would instantiate its targets)
        self.held_out: dict[str, list[str]] | None = None  # set by the train entry: the split's held-out tracks
        num_classes = len(class_names)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_tracks = TrackVotes(statistics=reference is not None)
        self.test_tracks = TrackVotes(statistics=reference is not None)
        self.val_track_acc_best = MaxMetric()
        self.val_track_acc_best.persistent(True)  # resumed runs keep their best so far
        self.spec_augment = SpecAugment(augment["freq_mask"], augment["time_mask"], augment["num_masks"],
                                        augment.get("mask_fill", "mean"))   # checkpoints before mask_fill: the mean
        self.last_val_confusion: torch.Tensor | None = None  # (true, predicted) track counts, for pictures
        self.last_val_scores: TrackScores | None = None  # each track's scores, for track_scores.csv

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and getattr(datamodule, "norm_mean", None) is not None:
            self.model.normalize.set(datamodule.norm_mean, datamodule.norm_std)
        if stage == "fit" and self.reference is not None and getattr(datamodule, "train_set", None) is not None:
            train = datamodule.train_set
            self.reference.fit(train.segments, train.labels, train.tracks, getattr(datamodule, "recordings", None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) dB segments -> (B, classes) logits."""
        return self.model(x)

    def on_train_batch_start(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        # Augmentation draws depend on (seed, step, micro-batch, process) only, not on what else
        # drew random numbers before (a resumed run's data loader does), so resuming reproduces
        # them. Each micro-batch of an accumulated step, and each DDP process, draws its own masks.
        seed = self.hparams.seed * AUGMENT_SEED_STRIDE + augment_draw(
            self.global_step, batch_idx % self.trainer.accumulate_grad_batches,
            self.trainer.accumulate_grad_batches, self.global_rank, self.trainer.world_size)
        if self.device.type == "cpu":
            # torch.manual_seed would also queue a seed for each other backend (CUDA, XPU, MTIA),
            # formatting the call stack for each: work per step, for generators a CPU run never uses
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        x = self.spec_augment(self.model.normalize(x))
        smoothing, alpha = self.hparams.label_smoothing, self.hparams.augment["mixup_alpha"]
        if alpha > 0:
            mix = float(torch.distributions.Beta(alpha, alpha).sample())
            partner = torch.randperm(x.shape[0], device=x.device)
            logits = self.model.net(mix * x + (1 - mix) * x[partner])
            loss = (mix * F.cross_entropy(logits, y, label_smoothing=smoothing)
                    + (1 - mix) * F.cross_entropy(logits, y[partner], label_smoothing=smoothing))
            y = y if mix >= 0.5 else y[partner]  # train/acc scores each mixed segment's larger part
        else:
            logits = self.model.net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        self.train_acc.update(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        if self.trainer.is_last_batch:
            # The epoch's accuracy (Lightning computes and resets the metric at the epoch's end),
            # registered once: every self.log call costs Lightning about 0.8 ms of a CPU step.
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluation_step(self, stage: str, batch: tuple[torch.Tensor, ...]) -> None:
        x, y, tracks = batch
        logits = self(x)
        accuracy = getattr(self, f"{stage}_acc")
        accuracy(logits, y)
        getattr(self, f"{stage}_tracks").update(logits, y, tracks, x if self.reference is not None else None)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, sync_dist=True)  # DDP: all shares
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)

    def _log_track_metrics(self, stage: str) -> tuple[dict[str, torch.Tensor], TrackScores]:
        """Track-level accuracy (the number that matters) and macro-F1 of the epoch; the tracks' scores."""
        votes = getattr(self, f"{stage}_tracks")
        tracks = scored_tracks(votes.compute(), self.reference)
        votes.reset()
        num_classes = len(self.hparams.class_names)
        scores = track_scores(tracks.predicted, tracks.labels, num_classes)
        if tracks.reference is not None:
            for part, part_scores in (("network", tracks.network), ("reference", tracks.reference)):
                self.log(f"{stage}/track_acc_{part}", track_scores(part_scores.argmax(-1), tracks.labels, num_classes)["acc"])
        self.log(f"{stage}/track_acc", scores["acc"], prog_bar=True)
        self.log(f"{stage}/f1", scores["f1"])
        return scores, tracks

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        scores, tracks = self._log_track_metrics("val")
        self.last_val_confusion = scores["confusion"]
        if not self.trainer.sanity_checking:
            self.last_val_scores = tracks
            self.val_track_acc_best(scores["acc"])
            self.log("val/track_acc_best", self.val_track_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_track_metrics("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.recipe
        if self.held_out is not None:
            checkpoint[HELD_OUT_KEY] = self.held_out

    def build_optimizer(self, total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        """The configured optimizer (its weight decay on matrices only) and per-step schedule."""
        optimizer = self.optimizer_factory(params=param_groups(self.model))
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total_steps) if self.scheduler_factory else None
        return optimizer, scheduler

    def configure_optimizers(self):
        optimizer, scheduler = self.build_optimizer(int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
