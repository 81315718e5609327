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

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from pydantic import ValidationError

from kvasir_ml.data.cache import square_from_rgb
from kvasir_ml.data.inset import InsetResult
from kvasir_ml.evaluation import posthoc
from kvasir_ml.models.classifier import KvasirClassifier
from kvasir_ml.taxonomy import Taxonomy, load_taxonomy
from kvasir_ml.train.checkpoint import CheckpointError, load_checkpoint
from kvasir_ml.train.config import ClassifierConfig
from kvasir_ml.train.data import inset_inputs
from kvasir_ml.train.loop import probabilities

log = logging.getLogger(__name__)


def load_classifier(ckpt: str | Path, device: torch.device) -> tuple[KvasirClassifier, ClassifierConfig, dict[str, Any]]:
    """Model (eval mode, on ``device``), its config and the checkpoint dict, to which are added
    ``"posthoc"`` (the ``PostHoc``: calibration, decoder, thresholds), ``"class_label_matrix"``
    (rows in the order of the model's class outputs, mapped by class name) and
    ``"proba_class_names"`` (the names of the class probabilities' columns).

    Raises:
        CheckpointError: naming the file and what does not fit: its config (another version),
            its taxonomy version, labels or classes unknown to the taxonomy, weights that do not
            fit the labels/classes it names.
    """
    state = load_checkpoint(ckpt, map_location="cpu")
    cfg = checkpoint_config(state, ckpt)
    taxonomy = load_taxonomy()
    check_taxonomy_version(state, ckpt, taxonomy)
    m = cfg.model
    label_names, class_names = list(state["label_names"]), list(state["class_names"])
    n_out = len(label_names) if m.task == "multilabel" else len(class_names)
    model = KvasirClassifier(m.arch, n_out, m.inset_mode, m.branch_features, m.dropout)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        what = f"{n_out} labels" if m.task == "multilabel" else f"{n_out} classes"
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln or "Missing" in ln
                       or "Unexpected" in ln), str(exc).splitlines()[0])[:300]
        raise CheckpointError(f"checkpoint {ckpt}: its weights do not fit the {what} it names "
                              f"({m.arch}, inset_mode={m.inset_mode}): {detail}") from None
    if len(state["thresholds"]) != len(label_names):
        raise CheckpointError(f"checkpoint {ckpt}: {len(state['thresholds'])} thresholds for {len(label_names)} labels")
    state["posthoc"] = posthoc.from_checkpoint(state, m.task, n_out, where=str(ckpt))
    state["class_label_matrix"] = _class_label_matrix(cfg, label_names, class_names, taxonomy, ckpt)
    decoder = state["posthoc"].decoder
    if decoder is not None and sorted(decoder.class_names) != sorted(class_names):
        raise CheckpointError(f"checkpoint {ckpt}: its class decoder's classes {decoder.class_names} are not its "
                              f"class_names {class_names}")
    state["proba_class_names"] = list(decoder.class_names) if decoder is not None else class_names
    return model.to(device).eval(), cfg, state


def checkpoint_config(state: dict[str, Any], ckpt: str | Path) -> ClassifierConfig:
    """The checkpoint's resolved config, validated; one that this version cannot read is named."""
    try:
        return ClassifierConfig.model_validate(state["config"])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise CheckpointError(f"checkpoint {ckpt}: its config does not fit this version of kvasir_ml "
                              f"({exc.error_count()} problem(s): {problems}); it was written by kvasir_ml "
                              f"{(state.get('versions') or {}).get('kvasir_ml', 'unknown')}") from None


def check_taxonomy_version(state: dict[str, Any], ckpt: str | Path, taxonomy: Taxonomy) -> None:
    """A checkpoint records the taxonomy version it was trained with: labels, classes and their
    label sets may mean other things under another version, so a mismatch is refused. Older
    checkpoints without the record load with a warning."""
    version = state.get("taxonomy_version")
    if version is None:
        log.warning("%s records no taxonomy version (trained before it was recorded); assuming %s's version %s",
                    ckpt, taxonomy.path, taxonomy.version)
    elif int(version) != taxonomy.version:
        raise CheckpointError(f"checkpoint {ckpt} was trained with taxonomy version {version}, but {taxonomy.path} "
                              f"is version {taxonomy.version}: its labels and classes may mean other things now; "
                              "retrain it, or predict with the taxonomy it was trained with")


def _class_label_matrix(cfg: ClassifierConfig, label_names: list[str], class_names: list[str],
                        taxonomy: Taxonomy, ckpt: str | Path) -> np.ndarray:
    """(K, L) label sets of the checkpoint's classes over its labels, both in the checkpoint's
    order (mapped by name: a taxonomy listing them in another order changes nothing)."""
    source = taxonomy.source(cfg.data.class_source)
    unknown = [n for n in class_names if n not in source.classes] + [n for n in label_names
                                                                     if n not in taxonomy.label_names]
    if unknown:
        raise CheckpointError(f"checkpoint {ckpt} names classes/labels that {taxonomy.path} "
                              f"({cfg.data.class_source}) does not have: {unknown[:8]}")
    full = taxonomy.class_label_matrix(cfg.data.class_source)
    rows = [list(source.classes).index(n) for n in class_names]
    return full[np.ix_(rows, [taxonomy.label_index(n) for n in label_names])]


def classifier_inputs(cfg: ClassifierConfig, rgb: np.ndarray, inset: InsetResult) -> dict[str, torch.Tensor]:
    """One decoded frame's model inputs (HxWx3 uint8, full size, and its measured inset).

    The square input is made by ``square_from_rgb``, as the training cache makes it, so the
    pixels match training; the inset is masked or cropped as in training. Pure CPU work: safe
    in a DataLoader worker (``inference.stream`` prepares frames there while the model runs).
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
    model = loaded[0]
    results: list[dict[str, Any]] = []
    for start in range(0, len(inputs), batch_size):
        results += classifier_entries(loaded, model(**collate_inputs(inputs[start:start + batch_size], device)))
    return results


def collate_inputs(items: Sequence[dict[str, torch.Tensor]], device: torch.device) -> dict[str, torch.Tensor]:
    """Prepared inputs (``classifier_inputs``) stacked into one batch on ``device``."""
    return {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}


def classifier_entries(loaded: tuple[KvasirClassifier, ClassifierConfig, dict[str, Any]],
                       outputs: torch.Tensor) -> list[dict[str, Any]]:
    """The entries of one batch from the model's raw outputs: calibrated scores per label, the
    labels at or above their thresholds, and the most likely class."""
    _, cfg, state = loaded
    label_names, class_names = list(state["label_names"]), state["proba_class_names"]
    post = state["posthoc"]
    scores, proba = post.scores(probabilities(outputs.float(), cfg.model.task).numpy(),
                                state["class_label_matrix"], label_names)
    thresholds = post.thresholds
    results = []
    for s, p in zip(scores, proba):
        k = int(p.argmax())
        results.append({
            "labels": {n: float(v) for n, v in zip(label_names, s)},
            "predicted_labels": [n for n, v, t in zip(label_names, s, thresholds) if v >= t],
            "thresholds": {n: float(t) for n, t in zip(label_names, thresholds)},  # for uncertainty ranking
            "source_class": {"name": class_names[k], "score": float(p[k])},
        })
    return results
