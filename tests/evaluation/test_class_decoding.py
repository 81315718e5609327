"""The multi-label model's class decoding must not inherit a prior from BCE's pos_weight.

A frame that is truly 50/50 between esophagitis ({esophagitis, z-line}) and normal-z-line
({z-line}) must decode as 50/50 whatever pos_weight the model was trained with. The test
fits the logits of such frames with the project's own loss (``build_loss``) and decodes
them with the project's own ``label_scores_to_class_proba``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kvasir_ml.evaluation.classification import label_scores_to_class_proba
from kvasir_ml.models.config import LossConfig
from kvasir_ml.models.losses import CalibratedPosWeightBCE, build_loss

# labels: esophagitis, z-line; classes: esophagitis = {esophagitis, z-line}, normal-z-line = {z-line}
MATRIX = np.array([[1, 0], [0, 1], [1, 1]], dtype=float)[[2, 1]]  # rows: esophagitis, normal-z-line


def _ambiguous_targets(n: int = 400) -> torch.Tensor:
    """Frames that show a z-line, half of them with esophagitis: P(esophagitis | frame) = 0.5."""
    y = torch.ones(n, 2)
    y[: n // 2, 0] = 0.0
    return y


def _fit_label_probabilities(loss_fn: nn.Module, y: torch.Tensor, steps: int = 300) -> np.ndarray:
    """The constant logits (one per label) that minimise ``loss_fn`` on ``y``: what any
    model outputs for inputs it cannot tell apart once trained to the optimum."""
    logits = torch.zeros(1, y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([logits], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(logits.expand(y.shape[0], -1), y)
        loss.backward()
        return loss

    opt.step(closure)
    return torch.sigmoid(logits.detach()).double().numpy()


def _labels_with_esophagitis_rate(rate: float, n: int = 1000) -> np.ndarray:
    """A train label matrix (esophagitis, z-line) whose esophagitis frequency sets pos_weight."""
    y = np.zeros((n, 2))
    y[: int(rate * n), 0] = 1
    y[: n // 2, 1] = 1
    return y


@pytest.mark.parametrize("esophagitis_rate", [0.5, 0.25, 0.1, 0.04])
def test_calibrated_fifty_fifty_decodes_as_fifty_fifty_whatever_the_pos_weight(esophagitis_rate):
    train_labels = _labels_with_esophagitis_rate(esophagitis_rate)
    loss_fn = build_loss(LossConfig(pos_weight=True, pos_weight_max=30.0), "multilabel", train_labels)
    assert isinstance(loss_fn, CalibratedPosWeightBCE)
    w = float(loss_fn.pos_weight[0])
    assert w == pytest.approx(min(30.0, (1 - esophagitis_rate) / esophagitis_rate), rel=1e-3)
    p = _fit_label_probabilities(loss_fn, _ambiguous_targets())
    assert p[0, 0] == pytest.approx(0.5, abs=0.01)  # the model's score is the true probability
    proba = label_scores_to_class_proba(p, MATRIX)
    assert proba[0] == pytest.approx([0.5, 0.5], abs=0.02)


@pytest.mark.parametrize("w", [3.0, 10.0])
def test_plain_pos_weighted_bce_would_bias_the_decoding(w):
    """What the fix removes: torch's pos-weighted BCE leaves sigmoid(z) = w/(1+w) on a 50/50
    frame, and the likelihood decoding turns that into a confident esophagitis call."""
    plain = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([w, 1.0]))
    p = _fit_label_probabilities(plain, _ambiguous_targets())
    assert p[0, 0] == pytest.approx(w / (1 + w), abs=0.01)
    proba = label_scores_to_class_proba(p, MATRIX)
    assert proba[0, 0] == pytest.approx(w / (1 + w), abs=0.02)
    calibrated = _fit_label_probabilities(CalibratedPosWeightBCE(torch.tensor([w, 1.0])), _ambiguous_targets())
    assert label_scores_to_class_proba(calibrated, MATRIX)[0] == pytest.approx([0.5, 0.5], abs=0.02)


def test_calibrated_loss_equals_plain_loss_with_shifted_logits():
    """Training is unchanged up to the parametrisation: same loss values, same gradients."""
    w = torch.tensor([1.0, 4.0, 9.0])
    z = torch.randn(5, 3, requires_grad=True)
    y = (torch.rand(5, 3) > 0.5).float()
    a = CalibratedPosWeightBCE(w)(z, y)
    z2 = (z.detach() + torch.log(w)).requires_grad_(True)
    b = nn.BCEWithLogitsLoss(pos_weight=w)(z2, y)
    assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-6)
    a.backward()
    b.backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-7)
