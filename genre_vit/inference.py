"""A trained model as a function of audio files: checkpoint -> recipe -> the same features and
model -> genre probabilities. No trainer, no plotting: cheap to import."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from hydra.errors import InstantiationException

from genre_vit.checkpoints import another_layout, load_checkpoint
from genre_vit.recipe import Recipe
from genre_vit.reference import fused_scores
from genre_vit.statistics import track_statistics

MODEL_PREFIX = "model."  # where GenreClassifier keeps the saved model in its state_dict
REFERENCE_PREFIX = "reference."  # ... and the fitted reference, when it has one


class Predictor:
    """A recipe and its trained weights: audio file -> (classes,) genre probabilities."""

    def __init__(self, recipe: Recipe, state_dict: dict[str, torch.Tensor]):
        self.recipe, self.class_names = recipe, recipe.class_names
        self.features, self.decoding = recipe.build_features(), recipe.build_decoding()
        self.model, self.reference = recipe.build_model(), recipe.build_reference()
        for module, prefix in ((self.model, MODEL_PREFIX), (self.reference, REFERENCE_PREFIX)):
            if module is not None:
                module.load_state_dict({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
                module.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Predictor:
        checkpoint = load_checkpoint(path, key="ckpt")  # data only: unpickling never runs code
        recipe = Recipe.from_checkpoint(checkpoint, path, key="ckpt")  # names only this package's modules
        try:
            return cls(recipe, checkpoint["state_dict"])
        except (InstantiationException, TypeError, RuntimeError) as err:  # another version's settings or layout
            raise another_layout("ckpt", path, err, ": predict with the version that trained it") from None

    @torch.no_grad()
    def track_scores(self, segments: torch.Tensor, batch_size: int) -> torch.Tensor:
        """(N, F, T) dB segments of one track -> (classes,) log-probabilities, as validation scores
        a track: from the mean of the segments' logits, plus the reference's vote when the
        checkpoint has one (genre_vit.reference.fused_scores)."""
        logits = torch.cat([self.model(chunk) for chunk in segments.split(batch_size)])
        statistics = None
        if self.reference is not None:
            statistics = track_statistics(segments, torch.zeros(len(segments), dtype=torch.long))[1]
        return fused_scores(logits.mean(dim=0, keepdim=True), self.reference, statistics)[0]

    def probabilities(self, path: str | Path, clip_seconds: float | None, batch_size: int) -> torch.Tensor:
        """The track's genre probabilities (softmax of track_scores), with the training's decoding
        (`clip_seconds`: score only the first seconds; None: all of it). Raises AudioError for
        unusable audio."""
        decoding = dataclasses.replace(self.decoding, clip_seconds=clip_seconds)
        return self.track_scores(self.features(decoding.load(path, self.features.segment_seconds)), batch_size).softmax(dim=0)
