"""What pos_weight does in ``CalibratedPosWeightBCE``: one gradient factor for positives and
negatives alike (a step-size knob), and the same minimiser as plain BCE."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from kvasir_ml.models.losses import CalibratedPosWeightBCE


def _grad(loss_fn, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    loss_fn(z, y).backward()
    return z.grad


def test_gradient_is_plain_bce_times_one_factor_for_both_targets():
    w = torch.tensor([4.0, 9.0])
    z = torch.linspace(-6, 6, 25).repeat(2, 1).T.contiguous()  # (25, 2): every logit for both labels
    for target in (0.0, 1.0):
        y = torch.full_like(z, target)
        weighted = _grad(CalibratedPosWeightBCE(w), z, y)
        plain = _grad(lambda a, b: F.binary_cross_entropy_with_logits(a, b), z, y)
        factor = w * (1 + torch.exp(z)) / (1 + w * torch.exp(z))
        assert torch.allclose(weighted, plain * factor, rtol=1e-4, atol=1e-7), target
    # the factor runs from w (low scores) to 1 (high scores): larger steps where the label scores low
    assert torch.allclose(factor[0], w, rtol=0.02) and torch.allclose(factor[-1], torch.ones(2), rtol=0.05)


def test_same_minimiser_as_plain_bce():
    y = torch.tensor([[1.0], [0.0], [0.0], [0.0]])  # P(y = 1) = 0.25
    for loss_fn in (CalibratedPosWeightBCE(torch.tensor([3.0])), torch.nn.BCEWithLogitsLoss()):
        z = torch.zeros(1, 1, requires_grad=True)
        opt = torch.optim.LBFGS([z], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = loss_fn(z.expand(4, 1), y)
            loss.backward()
            return loss

        opt.step(closure)
        assert abs(float(torch.sigmoid(z.detach())) - 0.25) < 1e-3
