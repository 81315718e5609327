"""Classify image files with a trained checkpoint (the classifier half of ``kvasir-ml predict``).

The checkpoint carries everything: the resolved config (architecture, inset mode, image
size), label and class names, and what was fitted on validation: the temperature
calibration, the class decoder (multi-label model) and the thresholds
(``evaluation.posthoc``); scores here are the calibrated ones, as in the run's metrics.
Each image goes through the training path: decode (once), detect the inset on the original frame, make the
square input as the image cache does, mask/crop the inset, then the model (which
normalises itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from kvasir_ml.data.cache import square_from_rgb
from kvasir_ml.data.inset import InsetResult
from kvasir_ml.evaluation import posthoc
from kvasir_ml.models.classifier import KvasirClassifier
from kvasir_ml.taxonomy import load_taxonomy
from kvasir_ml.train.checkpoint import load_checkpoint
from kvasir_ml.train.config import ClassifierConfig
from kvasir_ml.train.data import inset_inputs
from kvasir_ml.train.loop import probabilities


def load_classifier(ckpt: str | Path, device: torch.device) -> tuple[KvasirClassifier, ClassifierConfig, dict[str, Any]]:
    """Model (eval mode, on ``device``), its config and the checkpoint dict, to which
    ``"posthoc"`` is added: the ``PostHoc`` (calibration, decoder, thresholds) it carries."""
    state = load_checkpoint(ckpt, map_location="cpu")
    cfg = ClassifierConfig.model_validate(state["config"])
    m = cfg.model
    n_out = len(state["label_names"]) if m.task == "multilabel" else len(state["class_names"])
    model = KvasirClassifier(m.arch, n_out, m.inset_mode, m.branch_features, m.dropout)
    model.load_state_dict(state["model"])
    state["posthoc"] = posthoc.from_checkpoint(state, m.task, n_out, where=str(ckpt))
    return model.to(device).eval(), cfg, state


def _class_label_matrix(cfg: ClassifierConfig, label_names: list[str]) -> np.ndarray:
    taxonomy = load_taxonomy()
    full = taxonomy.class_label_matrix(cfg.data.class_source)
    return full[:, [taxonomy.label_index(n) for n in label_names]]


def classifier_inputs(cfg: ClassifierConfig, rgb: np.ndarray, inset: InsetResult) -> dict[str, torch.Tensor]:
    """One decoded frame's model inputs (HxWx3 uint8, full size, and its measured inset).

    The square input is made by ``square_from_rgb``, as the training cache makes it, so the
    pixels match training; the inset is masked or cropped as in training. Pure CPU work: safe
    in a DataLoader worker (``predict_stream`` prepares frames there while the model runs).
    """
    small = square_from_rgb(rgb, cfg.data.image_size_px)
    return inset_inputs(small, (rgb.shape[1], rgb.shape[0]), inset.state, cfg.model.inset_mode,
                        cfg.model.branch_size_px)


def classify_arrays(loaded: tuple[KvasirClassifier, ClassifierConfig, dict[str, Any]], rgbs: Sequence[np.ndarray],
                    insets: Sequence[InsetResult], device: torch.device,
                    batch_size: int = 16) -> list[dict[str, Any]]:
    """The classifier on decoded frames (HxWx3 uint8, full size) and their measured insets."""
    cfg = loaded[1]
    return classify_inputs(loaded, [classifier_inputs(cfg, rgb, inset) for rgb, inset in zip(rgbs, insets)], device,
                           batch_size)


@torch.no_grad()
def classify_inputs(loaded: tuple[KvasirClassifier, ClassifierConfig, dict[str, Any]],
                    inputs: Sequence[dict[str, torch.Tensor]], device: torch.device,
                    batch_size: int = 16) -> list[dict[str, Any]]:
    """The classifier on prepared inputs (``classifier_inputs``): one entry per input, in order."""
    model, cfg, state = loaded
    label_names, class_names = list(state["label_names"]), list(state["class_names"])
    matrix = _class_label_matrix(cfg, label_names)
    post = state["posthoc"]
    thresholds = post.thresholds
    results: list[dict[str, Any]] = []
    for start in range(0, len(inputs), batch_size):
        items = inputs[start:start + batch_size]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        scores, proba = post.scores(probabilities(model(**batch).float(), cfg.model.task).numpy(), matrix,
                                    label_names)
        for s, p in zip(scores, proba):
            k = int(p.argmax())
            results.append({
                "labels": {n: float(v) for n, v in zip(label_names, s)},
                "predicted_labels": [n for n, v, t in zip(label_names, s, thresholds) if v >= t],
                "thresholds": {n: float(t) for n, t in zip(label_names, thresholds)},  # for uncertainty ranking
                "source_class": {"name": class_names[k], "score": float(p[k])},
            })
    return results
