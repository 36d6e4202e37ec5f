"""Neural networks that map spectrogram segments to genre logits."""
from __future__ import annotations

from collections.abc import Sequence

from hydra.utils import instantiate
from torch import nn


def build_network(model_cfg, img_size: Sequence[int], num_classes: int) -> nn.Module:
    """Instantiate the `model` config group; `compile: true` compiles it in place with torch.compile
    (nn.Module.compile keeps the state_dict keys, so checkpoints stay portable)."""
    settings = dict(model_cfg)
    compile_net = settings.pop("compile", False)
    net = instantiate(settings, img_size=list(img_size), num_classes=num_classes)
    if compile_net:
        net.compile()
    return net
