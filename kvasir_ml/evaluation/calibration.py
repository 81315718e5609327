"""Post-hoc calibration: temperature scaling fitted on validation outputs, and ECE.

Why post-hoc: once a net overfits, its logits grow on training images and its scores
on new images are over-confident whatever the loss (BCE, pos-weighted BCE, cross-entropy).
Temperature scaling divides each logit by a constant ``T > 0`` fitted on VALIDATION
outputs by minimising the log loss:

* multi-label model: one temperature per label, ``sigmoid(z_c / T_c)`` (a label without
  both a positive and a negative on val keeps ``T = 1``: nothing to fit);
* single-label model: one temperature for the softmax, ``softmax(z / T)``, fitted on the
  val images that have a source class.

Targets are smoothed as in Platt (1999): a positive counts as ``(n+ + 1) / (n+ + 2)``, a
negative as ``1 / (n- + 2)`` (softmax: the true class ``1 - 1 / (n + 2)``, the rest spread
evenly). Without it a label that val separates perfectly (small val splits, easy labels)
drives ``T`` to its lower bound and the test scores to 0/1; with it the fit stays finite.

Dividing by a positive constant is monotone per label, so per-label AP (and macro AP) are
unchanged; thresholds must be re-tuned on the CALIBRATED val scores (``evaluation.posthoc``)
so decisions stay the same kind of F1-optimal cut. The models hand over probabilities
(float64), so the logits are recovered here: ``logit(p)`` for sigmoid scores, ``log(p)``
for softmax probabilities (``softmax(log p / T) == softmax(z / T)``: the row constant
cancels).

ECE (expected calibration error): 15 equal-width bins of the score on [0, 1]; per bin the
gap between the mean score and the observed frequency, weighted by the bin's share of
the scores. Reported per label, as the macro mean over labels with a positive (the labels
``macro_ap`` averages), pooled over all (image, label) pairs of those labels, and for the
class distribution's top class (confidence vs top-1 accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize_scalar

N_BINS = 15
LOGIT_EPS = 1e-12  # probabilities are clipped to [eps, 1 - eps] before taking logits
LOG_T_BOUNDS = (float(np.log(0.05)), float(np.log(50.0)))


def to_logits(task: str, outputs: Any) -> np.ndarray:
    """Logits of a model's probabilities: ``logit(p)`` (multilabel) or ``log(p)`` (singlelabel)."""
    p = np.clip(np.asarray(outputs, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p) if task == "multilabel" else np.log(p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_log_t(nll: Any) -> float:
    """The temperature minimising ``nll(log T)`` over ``T`` in [0.05, 50] (bounded Brent)."""
    res = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def _binary_nll(z: np.ndarray, y: np.ndarray, log_t: float) -> float:
    s = z / np.exp(log_t)
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def _softmax_nll(z: np.ndarray, soft: np.ndarray, log_t: float) -> float:
    """Cross-entropy of ``softmax(z / T)`` against (N, K) soft targets."""
    s = z / np.exp(log_t)
    m = s.max(axis=1)
    log_norm = m + np.log(np.exp(s - m[:, None]).sum(axis=1))
    return float(np.mean(log_norm - (soft * s).sum(axis=1)))


@dataclass
class Calibration:
    """Temperatures of one model: (L,) per label (multilabel) or (1,) (singlelabel)."""

    task: str
    temperatures: np.ndarray
    fitted_on: str = "val"
    n_images: int = 0
    notes: list[str] = field(default_factory=list)

    def apply(self, outputs: Any) -> np.ndarray:
        """Calibrated probabilities of the model's probabilities ``outputs`` (same shape)."""
        z = to_logits(self.task, outputs) / self.temperatures[None, :]
        return _sigmoid(z) if self.task == "multilabel" else _softmax(z)

    def to_state(self) -> dict[str, Any]:
        """Plain lists and numbers (a checkpoint loads it with ``weights_only=True``)."""
        return {"method": "temperature", "task": self.task, "temperatures": [float(t) for t in self.temperatures],
                "fitted_on": self.fitted_on, "n_images": int(self.n_images)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Calibration":
        return cls(str(state["task"]), np.asarray(state["temperatures"], dtype=np.float64),
                   str(state.get("fitted_on", "val")), int(state.get("n_images", 0)))

    @classmethod
    def identity(cls, task: str, n_outputs: int) -> "Calibration":
        """``T = 1``: the model's own scores (old checkpoints without a calibration)."""
        n = n_outputs if task == "multilabel" else 1
        return cls(task, np.ones(n), fitted_on="none (uncalibrated)")


def fit_calibration(task: str, outputs: Any, y_labels: Any = None, y_class: Any = None) -> Calibration:
    """Fit temperature scaling on VALIDATION outputs.

    Args:
        task: ``multilabel`` (outputs (N, L) sigmoid scores, targets ``y_labels`` (N, L) 0/1)
            or ``singlelabel`` (outputs (N, K) softmax probabilities, targets ``y_class``
            (N,), -1 = no class: left out).
        outputs: the model's probabilities on val.

    Returns:
        A ``Calibration``; temperatures of labels that cannot be fitted stay 1.
    """
    z = to_logits(task, outputs)
    if task == "multilabel":
        y = np.asarray(y_labels, dtype=np.float64)
        temps = np.ones(z.shape[1])
        for c in range(z.shape[1]):
            n_pos = y[:, c].sum()
            if 0 < n_pos < len(y):
                soft = np.where(y[:, c] > 0, (n_pos + 1) / (n_pos + 2), 1 / (len(y) - n_pos + 2))
                temps[c] = _fit_log_t(lambda lt: _binary_nll(z[:, c], soft, lt))
        return Calibration(task, temps, n_images=len(y))
    y_idx = np.asarray(y_class).reshape(-1).astype(np.int64)
    keep = y_idx >= 0
    if not keep.any():
        return Calibration.identity(task, z.shape[1])
    eps = 1.0 / (int(keep.sum()) + 2)
    soft = np.full((int(keep.sum()), z.shape[1]), eps / max(1, z.shape[1] - 1))
    soft[np.arange(len(soft)), y_idx[keep]] = 1.0 - eps
    t = _fit_log_t(lambda lt: _softmax_nll(z[keep], soft, lt))
    return Calibration(task, np.array([t]), n_images=int(keep.sum()))


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(y: Any, p: Any, n_bins: int = N_BINS) -> dict[str, list]:
    """Per equal-width bin: ``count``, ``mean_score`` and ``frequency`` (None for an empty bin)."""
    y, p = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    idx = _bin_index(p, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    conf = [float(s / n) if n else None for s, n in zip(sum_p, counts)]
    freq = [float(s / n) if n else None for s, n in zip(sum_y, counts)]
    return {"count": counts.astype(int).tolist(), "mean_score": conf, "frequency": freq}


def ece(y: Any, p: Any, n_bins: int = N_BINS) -> float | None:
    """Expected calibration error of scores ``p`` for 0/1 outcomes ``y`` (None when empty)."""
    y, p = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    if y.size == 0:
        return None
    idx = _bin_index(p, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    gap = np.abs(np.bincount(idx, weights=p, minlength=n_bins) - np.bincount(idx, weights=y, minlength=n_bins))
    return float(gap.sum() / counts.sum())


def ece_summary(y_labels: Any, label_scores: Any, label_names: Sequence[str], y_class: Any = None,
                class_proba: Any = None, n_bins: int = N_BINS) -> dict[str, Any]:
    """ECE of label scores per label, macro (labels with a positive) and pooled; plus the
    top-class ECE of ``class_proba`` over images with a class (``y_class >= 0``)."""
    y = np.asarray(y_labels, dtype=np.float64)
    s = np.asarray(label_scores, dtype=np.float64)
    per = {n: ece(y[:, c], s[:, c], n_bins) for c, n in enumerate(label_names)}
    scored = y.sum(axis=0) > 0
    macro = [e for n, ok in zip(label_names, scored) if ok and (e := per[n]) is not None]
    out: dict[str, Any] = {
        "macro_ece": float(np.mean(macro)) if macro else None,
        "pooled_ece": ece(y[:, scored], s[:, scored], n_bins) if scored.any() else None,
        "per_label": per,
    }
    if class_proba is not None and y_class is not None:
        yc = np.asarray(y_class).reshape(-1)
        keep = yc >= 0
        proba = np.asarray(class_proba, dtype=np.float64)[keep]
        hit = proba.argmax(axis=1) == yc[keep] if keep.any() else np.zeros(0)
        out["class_top1_ece"] = ece(hit, proba.max(axis=1), n_bins) if keep.any() else None
    return out
