"""What a trained classifier carries besides its weights, all fitted on validation outputs:
temperature calibration, the class decoder (multi-label model) and per-label thresholds.

Order of fitting (``fit_posthoc``): temperatures on the raw val outputs; the decoder on the
calibrated val label scores; thresholds on the calibrated val label scores. Every place
that turns a model's outputs into scores (test metrics, saved predictions, ``kvasir-ml
predict``, the Label Studio backend) goes through ``PostHoc.scores``, so they all agree.

Checkpoints store it as ``thresholds`` (list, as before), ``calibration`` and ``decoder``
(plain lists and numbers; ``None`` for a single-label model's decoder). An old checkpoint
without them loads with ``T = 1`` and the label-set likelihood decoding, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from kvasir_ml.evaluation.calibration import Calibration, fit_calibration
from kvasir_ml.evaluation.classification import (
    class_proba_to_label_scores,
    label_scores_to_class_proba,
    tune_thresholds,
)
from kvasir_ml.evaluation.decoder import ClassDecoder, fit_decoder

log = logging.getLogger(__name__)

LIKELIHOOD = "label-set-likelihood"
DECODER = "decoder-fitted-on-val"


@dataclass
class PostHoc:
    task: str
    calibration: Calibration
    decoder: ClassDecoder | None
    thresholds: np.ndarray

    @property
    def class_proba_from(self) -> str:
        if self.task == "singlelabel":
            return "model"
        return DECODER if self.decoder is not None else LIKELIHOOD

    def scores(self, outputs: Any, class_label_matrix: Any, label_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated ``(label_scores (N, L), class_proba (N, K))`` of a model's raw probabilities."""
        calibrated = self.calibration.apply(outputs)
        if self.task == "singlelabel":
            return class_proba_to_label_scores(calibrated, class_label_matrix), calibrated
        if self.decoder is not None:
            return calibrated, self.decoder.class_proba(calibrated, label_names)
        return calibrated, label_scores_to_class_proba(calibrated, class_label_matrix)

    def to_state(self) -> dict[str, Any]:
        """Checkpoint entries (tensors-free: loads with ``weights_only=True``)."""
        return {"thresholds": [float(t) for t in self.thresholds], "calibration": self.calibration.to_state(),
                "decoder": self.decoder.to_state() if self.decoder is not None else None}

    def describe(self) -> dict[str, Any]:
        """For metrics.json: how the scores were produced."""
        return {"calibration": self.calibration.to_state(), "class_proba_from": self.class_proba_from,
                "decoder": ({k: v for k, v in self.decoder.to_state().items() if k not in ("coef", "intercept")}
                            if self.decoder is not None else None)}


def from_checkpoint(state: dict[str, Any], task: str, n_outputs: int, where: str = "checkpoint") -> PostHoc:
    """The ``PostHoc`` stored in a checkpoint dict; old checkpoints fall back (with a warning)
    to uncalibrated scores and, for a multi-label model, the label-set likelihood decoding."""
    thresholds = np.asarray(state["thresholds"], dtype=np.float64)
    if state.get("calibration"):
        calibration = Calibration.from_state(state["calibration"])
    else:
        log.warning("%s has no calibration (trained before calibration was added): its scores are used as they are",
                    where)
        calibration = Calibration.identity(task, n_outputs)
    decoder = None
    if task == "multilabel":
        if state.get("decoder"):
            decoder = ClassDecoder.from_state(state["decoder"])
        else:
            log.warning("%s has no class decoder: source classes come from the label-set likelihood, which is "
                        "biased on mixed frames (retrain to fit a decoder on val)", where)
    return PostHoc(task, calibration, decoder, thresholds)


def fit_posthoc(task: str, val_outputs: Any, y_labels: Any, y_class: Any, class_label_matrix: Any,
                label_names: Sequence[str], class_names: Sequence[str],
                class_counts: Any | None = None) -> PostHoc:
    """Fit calibration, decoder (multilabel) and thresholds on VALIDATION outputs.

    Args:
        task: ``multilabel`` | ``singlelabel``.
        val_outputs: the model's raw probabilities on val ((N, L) or (N, K)).
        y_labels: (N, L) 0/1 val label targets; y_class: (N,) val class indices (-1 = none).
        class_label_matrix: (K, L) taxonomy matrix over ``label_names``.
        class_counts: (K,) train + val class counts: the decoder's class prior.

    Returns:
        The fitted ``PostHoc``.
    """
    calibration = fit_calibration(task, val_outputs, y_labels, y_class)
    post = PostHoc(task, calibration, None, np.zeros(len(label_names)))
    scores, _ = post.scores(val_outputs, class_label_matrix, label_names)
    if task == "multilabel" and (np.asarray(y_class) >= 0).any() and len(class_names) > 1:
        post.decoder = fit_decoder(scores, y_class, class_label_matrix, label_names, class_names, class_counts)
    post.thresholds = tune_thresholds(y_labels, scores, label_names)
    return post
