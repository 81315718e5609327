"""Losses: BCE (optional pos_weight) or asymmetric loss for multi-label, cross-entropy for single-label."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kvasir_ml.train.config import LossConfig


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
    """
    if task == "singlelabel":
        return SingleLabelCE(cfg.label_smoothing)
    if cfg.name == "asl":
        return AsymmetricLoss(cfg.asl_gamma_neg, cfg.asl_gamma_pos, cfg.asl_clip)
    pos_weight = None
    if cfg.pos_weight:
        if train_labels is None:
            raise ValueError("loss.pos_weight needs the train split's label matrix")
        pos_weight = pos_weight_from_labels(train_labels, cfg.pos_weight_max)
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
