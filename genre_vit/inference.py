"""A trained model as a function of audio files: checkpoint -> recipe -> the same features and
model -> genre probabilities. No trainer, no plotting: cheap to import."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from genre_vit.checkpoints import load_checkpoint
from genre_vit.recipe import Recipe

MODEL_PREFIX = "model."  # where GenreClassifier keeps the saved model in its state_dict


class Predictor:
    """A recipe and its trained weights: audio file -> (classes,) genre probabilities."""

    def __init__(self, recipe: Recipe, state_dict: dict[str, torch.Tensor]):
        self.recipe, self.class_names = recipe, recipe.class_names
        self.features, self.decoding = recipe.build_features(), recipe.build_decoding()
        self.model = recipe.build_model()
        self.model.load_state_dict({k[len(MODEL_PREFIX):]: v for k, v in state_dict.items() if k.startswith(MODEL_PREFIX)})
        self.model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Predictor:
        checkpoint = load_checkpoint(path, key="ckpt")  # data only: unpickling never runs code
        return cls(Recipe.from_checkpoint(checkpoint, path, key="ckpt"), checkpoint["state_dict"])

    @torch.no_grad()
    def probabilities(self, path: str | Path, clip_seconds: float | None, batch_size: int) -> torch.Tensor:
        """Softmax of the mean of the segments' logits, with the training's decoding (`clip_seconds`:
        score only the first seconds; None: all of it). Raises AudioError for unusable audio."""
        decoding = dataclasses.replace(self.decoding, clip_seconds=clip_seconds)
        segments = self.features(decoding.load(path, self.features.segment_seconds))
        logits = torch.cat([self.model(chunk) for chunk in segments.split(batch_size)])
        return logits.mean(dim=0).softmax(dim=0)
