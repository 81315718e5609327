"""Losses: BCE (optional pos_weight) or asymmetric loss for multi-label, cross-entropy for single-label.

What ``pos_weight`` does (``CalibratedPosWeightBCE``), said plainly: it does NOT rebalance
positives against negatives and does NOT make the scores calibrated. The loss is
``BCEWithLogits(z + log w, y, pos_weight=w)``; its gradient with respect to the logit z is
plain BCE's gradient times ``w (1 + e^z) / (1 + w e^z)`` — one factor, the same for a
positive and a negative at the same z (``tests/models/test_pos_weight.py``). So the
minimiser is plain BCE's (``sigmoid(z) = P(y = 1 | x)``) and pos_weight only rescales the
steps: by up to w where the model scores the label low (most frames of a rare label,
positives and negatives alike), by ~1 where it scores it high. It is a per-label,
learning-rate-like knob for rare labels, nothing more. (Torch's own pos-weighted BCE, by
contrast, would move the optimum to ``z = logit(q) + log(w)``: a hidden per-label prior
that biased the class decoding; that is why the ``log(w)`` offset sits inside the loss.)

Calibration comes from elsewhere: once a net overfits, every variant's scores are
over-confident (ECE ~0.1), so scores are calibrated after training by temperature scaling
fitted on validation (``evaluation.calibration``), and classes are decoded by a decoder
fitted on validation (``evaluation.decoder``).
"""


from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kvasir_ml.models.config import LossConfig


class AsymmetricLoss(nn.Module):
    """Asymmetric loss (Ridnik et al., ICCV 2021) for multi-label with many easy negatives.

    Negatives are down-weighted by ``(p_m)^gamma_neg`` where ``p_m = max(p - clip, 0)``: easy
    negatives (low p) contribute almost nothing and very low-probability ones are discarded
    outright, while positives keep a plain (``gamma_pos=0``) log loss.

    Returns the mean over elements, on the same scale as ``BCEWithLogitsLoss``.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = logits.float(), targets.float()
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p
        loss_pos = targets * torch.log(p.clamp(min=self.eps)) * (1 - p).pow(self.gamma_pos)
        loss_neg = (1 - targets) * torch.log((1 - p_neg).clamp(min=self.eps)) * p_neg.pow(self.gamma_neg)
        return -(loss_pos + loss_neg).mean()


def pos_weight_from_labels(y_labels: np.ndarray, max_weight: float) -> torch.Tensor:
    """Per-label ``negatives / positives`` on the train split, clipped to ``[1, max_weight]``.

    Labels absent from the train split get ``max_weight`` (they are rare by definition).
    """
    pos = y_labels.sum(axis=0).astype(np.float64)
    neg = len(y_labels) - pos
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1), max_weight)
    return torch.tensor(np.clip(ratio, 1.0, max_weight), dtype=torch.float32)


class CalibratedPosWeightBCE(nn.Module):
    """BCE with per-label ``pos_weight`` whose minimiser is plain BCE's.

    ``loss(z, y) = BCEWithLogits(z + log(pos_weight), y, pos_weight)`` (mean over elements).
    Its gradient is plain BCE's times ``w (1 + e^z) / (1 + w e^z)`` for positives and
    negatives alike, so it changes step sizes (up to ``w`` on low-scored elements), not
    the optimum: ``sigmoid(z) = P(y = 1 | x)``, and no prior that would bias the class
    decoding (see the module docstring). Calibration is post-hoc (``evaluation.calibration``).
    """

    pos_weight: torch.Tensor  # buffers (register_buffer)
    logit_offset: torch.Tensor

    def __init__(self, pos_weight: torch.Tensor):
        super().__init__()
        pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32)
        if (pos_weight <= 0).any():
            raise ValueError(f"pos_weight must be positive, got {pos_weight.tolist()}")
        self.register_buffer("pos_weight", pos_weight)
        self.register_buffer("logit_offset", torch.log(pos_weight))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float() + self.logit_offset, targets.float(),
                                                  pos_weight=self.pos_weight)


class SingleLabelCE(nn.Module):
    """Cross-entropy over source classes; images without a class (target -1) are ignored."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets.long(), ignore_index=-1, label_smoothing=self.label_smoothing)


def build_loss(cfg: LossConfig, task: str, train_labels: np.ndarray | None = None) -> nn.Module:
    """Loss module for a task.

    Args:
        cfg: loss section of the run config.
        task: ``multilabel`` (targets: (B, L) 0/1) or ``singlelabel`` (targets: (B,) class index, -1 = none).
        train_labels: (N, L) train-split label matrix, needed for ``pos_weight``.

    Returns:
        ``SingleLabelCE`` (singlelabel), ``AsymmetricLoss`` (``asl``; its scores are NOT
        calibrated probabilities: it down-weights negatives, which inflates every score,
        so the class decoding of an ASL model is biased towards classes with many labels),
        ``CalibratedPosWeightBCE`` (``bce`` with ``pos_weight``) or plain BCE.
    """
    if task == "singlelabel":
        return SingleLabelCE(cfg.label_smoothing)
    if cfg.name == "asl":
        return AsymmetricLoss(cfg.asl_gamma_neg, cfg.asl_gamma_pos, cfg.asl_clip)
    if not cfg.pos_weight:
        return nn.BCEWithLogitsLoss()
    if train_labels is None:
        raise ValueError("loss.pos_weight needs the train split's label matrix")
    return CalibratedPosWeightBCE(pos_weight_from_labels(train_labels, cfg.pos_weight_max))
