"""GenreClassifier: the LightningModule around a spectrogram network (loss, metrics, optimizers)."""
from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from genre_vit.data.features import SpecAugment
from genre_vit.metrics import TrackVotes, track_scores

# What a run logs; `optimized_metric` must be one of these.
LOGGED_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "val/track_acc", "val/f1", "val/track_acc_best")


class GenreClassifier(L.LightningModule):
    """Classifies (B, F, T) log-spectrogram segments into genres.

    The per-frequency normalisation (mean, std over the training fold) lives in buffers, so it
    is saved with the checkpoint and applied identically in training, validation and predict.
    `augment` holds SpecAugment masking (`freq_mask`, `time_mask`, `num_masks`) and `mixup_alpha`
    (0 = off), applied to training batches only. `recipe` (set by the train entry) describes
    the features and network, and is saved in every checkpoint so that predict needs nothing
    else.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None,
        label_smoothing: float,
        class_names: list[str],
        augment: dict,
        seed: int,
    ):
        super().__init__()
        # logger=False: the train entry writes the full config and final metrics to HPARAMS once.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        rows = net.patch_embed.img_size[0]
        self.register_buffer("norm_mean", torch.zeros(rows, 1))
        self.register_buffer("norm_std", torch.ones(rows, 1))
        num_classes = len(class_names)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_tracks = TrackVotes()
        self.test_tracks = TrackVotes()
        self.val_track_acc_best = MaxMetric()
        self.val_track_acc_best.persistent(True)  # resumed runs keep their best so far
        self.spec_augment = SpecAugment(augment["freq_mask"], augment["time_mask"], augment["num_masks"])
        self.recipe: dict = {}
        self.last_val_confusion: torch.Tensor | None = None  # (true, predicted) track counts, for pictures

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-row statistics (F,) of the training segments."""
        self.norm_mean.copy_(mean.reshape(-1, 1))
        self.norm_std.copy_(std.reshape(-1, 1))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and getattr(datamodule, "norm_mean", None) is not None:
            self.set_normalization(datamodule.norm_mean, datamodule.norm_std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.norm_mean) / self.norm_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) dB segments -> (B, classes) logits."""
        return self.net(self.normalize(x))

    def on_train_batch_start(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        # Augmentation draws depend on (seed, step) only, not on what else drew random numbers
        # before (a resumed run's data loader does), so resuming reproduces them.
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_step)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        x = self.spec_augment(self.normalize(x))
        smoothing, alpha = self.hparams.label_smoothing, self.hparams.augment["mixup_alpha"]
        if alpha > 0:
            mix = float(torch.distributions.Beta(alpha, alpha).sample())
            partner = torch.randperm(x.shape[0], device=x.device)
            logits = self.net(mix * x + (1 - mix) * x[partner])
            loss = (mix * F.cross_entropy(logits, y, label_smoothing=smoothing)
                    + (1 - mix) * F.cross_entropy(logits, y[partner], label_smoothing=smoothing))
        else:
            logits = self.net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_start(self) -> None:
        self.val_track_acc_best.reset()  # forget the sanity check's numbers

    def _evaluation_step(self, stage: str, batch: tuple[torch.Tensor, ...]) -> None:
        x, y, tracks = batch
        logits = self(x)
        accuracy = getattr(self, f"{stage}_acc")
        accuracy(logits, y)
        getattr(self, f"{stage}_tracks").update(logits, y, tracks)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)

    def _log_track_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """Track-level accuracy (the number that matters) and macro-F1 of the epoch."""
        votes = getattr(self, f"{stage}_tracks")
        scores = track_scores(*votes.compute(), len(self.hparams.class_names))
        votes.reset()
        self.log(f"{stage}/track_acc", scores["acc"], prog_bar=True)
        self.log(f"{stage}/f1", scores["f1"])
        return scores

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        scores = self._log_track_metrics("val")
        self.last_val_confusion = scores["confusion"]
        if not self.trainer.sanity_checking:
            self.val_track_acc_best(scores["acc"])
            self.log("val/track_acc_best", self.val_track_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_track_metrics("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["genre_vit_recipe"] = self.recipe

    def build_optimizer(self, total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        """The configured optimizer (weight decay on matrices only) and per-step schedule."""
        weight_decay = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.0)
        optimizer = self.optimizer_factory(params=self.net.param_groups(weight_decay))
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total_steps) if self.scheduler_factory else None
        return optimizer, scheduler

    def configure_optimizers(self):
        optimizer, scheduler = self.build_optimizer(int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float,
                  min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_fraction` of the steps, then cosine decay to `min_lr_ratio` x lr."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
