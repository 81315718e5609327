"""Test-time augmentation: the model's mean probabilities over the 8 dihedral views.

Endoscopy frames have no "up", and training augments with flips and any-angle rotation, so
the four 90-degree rotations of the main image, each with and without a horizontal flip,
are views the model should score alike. Averaging their probabilities (not their logits:
the mean of calibrated probabilities stays a probability) is the TTA the report shows as
its own row; it never replaces the untouched numbers. Its calibration, class decoder and
thresholds are fitted on the TTA outputs of val, not reused from the single view. The
inset crop of the branch model is not turned: the panel's drawing has a fixed orientation
(as in training).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from kvasir_ml.train.loop import _autocast, model_inputs, probabilities

TTA_NAME = "dihedral-8 (rot90 x {0,1,2,3} x hflip {no,yes}), mean of probabilities"


def dihedral_views(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8 views of a (B, C, H, W) batch: rotations by k * 90 degrees, each also mirrored."""
    views = []
    for k in range(4):
        rotated = torch.rot90(image, k, dims=(2, 3))
        views += [rotated, rotated.flip(3)]
    return views


@torch.no_grad()
def evaluate_tta(model: nn.Module, loader: Iterable, device: torch.device, task: str, amp: bool = True,
                 channels_last: bool = False) -> np.ndarray:
    """Mean probabilities over ``dihedral_views`` for every image of ``loader`` (loader order).

    Returns:
        (N, K) float64: sigmoid label scores (multilabel) or softmax class probabilities
        (singlelabel), averaged over the 8 views.
    """
    model.eval()
    outs = []
    for batch in loader:
        inputs: dict[str, Any] = model_inputs(batch, device, channels_last)
        total: torch.Tensor | None = None
        for view in dihedral_views(inputs["image"]):
            if channels_last:
                view = view.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                logits = model(**{**inputs, "image": view}).float()
            probs = probabilities(logits, task)
            total = probs if total is None else total + probs
        assert total is not None  # dihedral_views yields 8 views
        outs.append(total / 8.0)
    return torch.cat(outs).double().numpy() if outs else np.zeros((0, 0))
