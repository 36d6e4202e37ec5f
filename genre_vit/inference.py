"""A trained model as a function of audio files: checkpoint -> recipe -> the same features and
model -> genre probabilities. No trainer, no plotting: cheap to import."""
from __future__ import annotations

from pathlib import Path

import torch

from genre_vit.checkpoints import load_checkpoint
from genre_vit.data.audio import AudioError, load_audio
from genre_vit.recipe import Recipe

MODEL_PREFIX = "model."  # where GenreClassifier keeps the saved model in its state_dict


class Predictor:
    """A recipe and its trained weights: audio file -> (classes,) genre probabilities."""

    def __init__(self, recipe: Recipe, state_dict: dict[str, torch.Tensor]):
        self.recipe, self.class_names = recipe, recipe.class_names
        self.features = recipe.build_features()
        self.model = recipe.build_model()
        self.model.load_state_dict({k[len(MODEL_PREFIX):]: v for k, v in state_dict.items() if k.startswith(MODEL_PREFIX)})
        self.model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Predictor:
        checkpoint = load_checkpoint(path, key="ckpt")  # data only: unpickling never runs code
        return cls(Recipe.from_checkpoint(checkpoint, path, key="ckpt"), checkpoint["state_dict"])

    @torch.no_grad()
    def probabilities(self, path: str | Path, clip_seconds: float | None, batch_size: int) -> torch.Tensor:
        """Softmax of the mean of the segments' logits. Raises AudioError for unusable audio."""
        wave = load_audio(path, self.recipe.sample_rate, clip_seconds, min_seconds=self.features.segment_seconds)
        segments = self.features(wave)
        if segments.shape[0] == 0:
            raise AudioError(f"shorter than one segment ({self.features.segment_seconds:.2f} s)")
        logits = torch.cat([self.model(chunk) for chunk in segments.split(batch_size)])
        return logits.mean(dim=0).softmax(dim=0)
