"""Classifier evaluation: one code path for the multi-label model and the single-label baseline.

Every model is scored on BOTH tasks through the same functions, so the comparison is
honest:

* the multi-label task (per-class AP, macro/micro AP, macro-F1 at per-class thresholds,
  subset accuracy, Hamming loss) on label scores; the single-label model's class
  probabilities are first mapped through the taxonomy (``class_proba_to_label_scores``);
* the single-label task (top-1, MCC, macro-F1, confusion matrix) on class probabilities;
  the multi-label model's label scores are first turned into a distribution over source
  classes (``label_scores_to_class_proba``).

Conventions (all functions):
* inputs are numpy arrays; outputs are plain JSON-able dicts (Python floats/ints/lists,
  ``None`` where a quantity is undefined, never NaN);
* a label is predicted present when ``score >= threshold`` (``apply_thresholds``);
* classes without a positive in the data given have no AP/recall/F1 (``None``) and are
  left out of every macro/micro average, but their false positives still count in subset
  accuracy and Hamming loss (a wrong label on an image is an error whatever the class);
* thresholds must be tuned on VALIDATION data and passed in when scoring test data; when
  ``evaluate_classifier`` has to tune them itself it says so (``thresholds_tuned_on``).

All metric values come from scikit-learn; this module only selects, aligns and maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    matthews_corrcoef,
    precision_recall_curve,
    precision_score,
    recall_score,
)

# Probabilities are clipped to [EPS, 1 - EPS] before taking logs, so a saturated sigmoid
# (exactly 0 or 1 in float32) cannot make a log-likelihood -inf.
EPS = 1e-6
DEFAULT_THRESHOLD = 0.5


class EvaluationError(ValueError):
    """Inputs to an evaluation function have the wrong shape, range or content."""


def _check_2d(name: str, arr: Any, n_cols: int | None = None, n_rows: int | None = None) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2:
        raise EvaluationError(f"{name}: expected a 2-D array, got shape {arr.shape}")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise EvaluationError(f"{name}: expected {n_cols} columns, got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise EvaluationError(f"{name}: expected {n_rows} rows, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise EvaluationError(f"{name}: contains NaN or inf")
    return arr


def _check_binary(name: str, y_true: Any, n_cols: int) -> np.ndarray:
    y = _check_2d(name, y_true, n_cols=n_cols)
    if not np.all((y == 0) | (y == 1)):
        raise EvaluationError(f"{name}: multi-label targets must be 0/1")
    return y.astype(np.int64)


def _opt(value: float | None) -> float | None:
    return None if value is None else float(value)


def apply_thresholds(y_score: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Binary (N, C) int predictions: label c is present when ``score >= thresholds[c]``."""
    return (np.asarray(y_score) >= np.asarray(thresholds)[None, :]).astype(np.int64)


def _best_f1_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Threshold maximising F1 for one class with at least one positive.

    Candidate cuts are the unique scores (``precision_recall_curve`` gives precision and
    recall for each ``score >= s``). The returned threshold is the midpoint between the
    best cut and the next lower unique score: it makes the same predictions on this data
    and sits in the gap rather than on a training point. Ties in F1 go to the lowest
    threshold (higher recall), so the result is deterministic.
    """
    precision, recall, cuts = precision_recall_curve(y_true, y_score)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))  # cuts ascend, so argmax's first hit is the lowest threshold
    hi = float(cuts[best])
    lower = y_score[y_score < hi]
    if lower.size == 0:
        return hi
    mid = (float(lower.max()) + hi) / 2.0
    # Adjacent floats can round the midpoint onto the lower score, which would flip it.
    return mid if mid > lower.max() else hi


def tune_thresholds(y_true: Any, y_score: Any, label_names: Sequence[str]) -> np.ndarray:
    """Per-class thresholds maximising F1 on the data given (use VALIDATION data).

    Args:
        y_true: (N, C) 0/1 targets.
        y_score: (N, C) label scores (probabilities).
        label_names: the C label names (checked against the shapes).

    Returns:
        (C,) float64 thresholds, to be used as ``score >= threshold``. Classes without a
        positive, and classes whose scores are all equal, get ``DEFAULT_THRESHOLD`` (0.5):
        there is nothing to rank. (Without that rule, a label the single-label baseline
        cannot express, scored 0 everywhere, would get threshold 0 and be predicted on
        every image, since "all positive" beats "none" on F1.) A pure function of the
        inputs.
    """
    n_labels = len(label_names)
    y_true = _check_binary("tune_thresholds y_true", y_true, n_labels)
    y_score = _check_2d("tune_thresholds y_score", y_score, n_cols=n_labels, n_rows=y_true.shape[0])
    thresholds = np.full(n_labels, DEFAULT_THRESHOLD, dtype=np.float64)
    for c in range(n_labels):
        if y_true[:, c].any() and np.ptp(y_score[:, c]) > 0:
            thresholds[c] = _best_f1_threshold(y_true[:, c], y_score[:, c])
    return thresholds


def _per_class(y_true: np.ndarray, y_score: np.ndarray, y_pred: np.ndarray, thresholds: np.ndarray,
               label_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(label_names):
        t, s, p = y_true[:, c], y_score[:, c], y_pred[:, c]
        support, n_pred = int(t.sum()), int(p.sum())
        has_pos = support > 0
        out[name] = {
            "ap": _opt(average_precision_score(t, s)) if has_pos else None,
            "f1": _opt(f1_score(t, p, zero_division=0)) if has_pos else None,
            # Precision is defined (and 0) for an absent class that is predicted anyway.
            "precision": _opt(precision_score(t, p, zero_division=0)) if n_pred else None,
            "recall": _opt(recall_score(t, p, zero_division=0)) if has_pos else None,
            "threshold": float(thresholds[c]),
            "support": support,
            "n_predicted": n_pred,
        }
    return out


def multilabel_metrics(y_true: Any, y_score: Any, thresholds: Any, label_names: Sequence[str]) -> dict[str, Any]:
    """Multi-label metrics (scikit-learn) at the given per-class thresholds.

    Args:
        y_true: (N, C) 0/1 targets.
        y_score: (N, C) label scores.
        thresholds: (C,) thresholds (tuned on validation data), used as ``score >= t``.
        label_names: the C label names.

    Returns:
        ``macro_ap`` (mean per-class AP over classes with >= 1 positive), ``micro_ap``
        (micro AP over those classes), ``macro_f1`` (over those classes),
        ``subset_accuracy`` and ``hamming_loss`` (over ALL classes), ``per_class``
        {name: {ap, f1, precision, recall, threshold, support, n_predicted}},
        ``labels_without_positives``, ``n_images``. Undefined values are ``None``.
    """
    n_labels = len(label_names)
    y_true = _check_binary("multilabel_metrics y_true", y_true, n_labels)
    y_score = _check_2d("multilabel_metrics y_score", y_score, n_cols=n_labels, n_rows=y_true.shape[0])
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.shape != (n_labels,):
        raise EvaluationError(f"multilabel_metrics thresholds: expected {n_labels} values, got {thresholds.shape}")
    if y_true.shape[0] == 0:
        raise EvaluationError("multilabel_metrics: no images to score")
    y_pred = apply_thresholds(y_score, thresholds)
    scored = y_true.sum(axis=0) > 0
    per_class = _per_class(y_true, y_score, y_pred, thresholds, label_names)
    if scored.any():
        macro_ap: float | None = float(np.mean([per_class[n]["ap"] for n, ok in zip(label_names, scored) if ok]))
        micro_ap: float | None = float(average_precision_score(y_true[:, scored], y_score[:, scored], average="micro"))
        macro_f1: float | None = float(f1_score(y_true[:, scored], y_pred[:, scored], average="macro", zero_division=0))
    else:
        macro_ap = micro_ap = macro_f1 = None
    return {
        "macro_ap": macro_ap,
        "micro_ap": micro_ap,
        "macro_f1": macro_f1,
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "per_class": per_class,
        "labels_without_positives": [n for n, ok in zip(label_names, scored) if not ok],
        "n_images": int(y_true.shape[0]),
    }


def singlelabel_metrics(y_true_idx: Any, proba: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Single-label metrics (scikit-learn) of the argmax class.

    Args:
        y_true_idx: (N,) true class indices in ``[0, K)``.
        proba: (N, K) class probabilities (or any scores: only the argmax is used;
            ties go to the lower index).
        class_names: the K class names.

    Returns:
        ``top1``, ``mcc``, ``singlelabel_macro_f1`` (macro over classes present in
        ``y_true_idx``), ``confusion`` (K x K ints, rows = true, columns = predicted),
        ``per_class_f1`` {name: f1, None for a class with no true image}, ``class_names``,
        ``n_images``. With no image at all the scores are ``None`` and the matrix zeros.
    """
    n_classes = len(class_names)
    y_true = np.asarray(y_true_idx).reshape(-1)
    proba = _check_2d("singlelabel_metrics proba", proba, n_cols=n_classes, n_rows=y_true.shape[0])
    if y_true.size and (not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0 or y_true.max() >= n_classes):
        raise EvaluationError(f"singlelabel_metrics y_true_idx: expected integer class indices in [0, {n_classes})")
    if y_true.size == 0:  # e.g. no test image has a class of this source
        return _empty_singlelabel(class_names)
    y_pred = proba.argmax(axis=1)
    all_idx = list(range(n_classes))
    present = sorted(set(y_true.tolist()))
    per_f1 = f1_score(y_true, y_pred, labels=all_idx, average=None, zero_division=0)
    return {
        "top1": float(accuracy_score(y_true, y_pred)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "singlelabel_macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=all_idx).astype(int).tolist(),
        "per_class_f1": {n: (float(per_f1[k]) if k in present else None) for k, n in enumerate(class_names)},
        "class_names": list(class_names),
        "n_images": int(y_true.shape[0]),
    }


def _empty_singlelabel(class_names: Sequence[str]) -> dict[str, Any]:
    k = len(class_names)
    return {"top1": None, "mcc": None, "singlelabel_macro_f1": None, "confusion": [[0] * k for _ in range(k)],
            "per_class_f1": {n: None for n in class_names}, "class_names": list(class_names), "n_images": 0}


def class_proba_to_label_scores(proba: Any, class_label_matrix: Any) -> np.ndarray:
    """Map a single-label model's class probabilities to label scores via the taxonomy.

    P(label) = sum of P(class) over the classes whose label set contains the label (the
    classes are mutually exclusive, so this is exact under the single-label model),
    clipped to [0, 1] against rounding.

    Args:
        proba: (N, K) class probabilities.
        class_label_matrix: (K, C) 0/1, row k = label set of class k.

    Returns:
        (N, C) label scores.
    """
    matrix = _check_2d("class_label_matrix", class_label_matrix)
    proba = _check_2d("class_proba_to_label_scores proba", proba, n_cols=matrix.shape[0])
    return np.clip(proba @ matrix, 0.0, 1.0)


def label_scores_to_class_proba(label_scores: Any, class_label_matrix: Any) -> np.ndarray:
    """Turn a multi-label model's label scores into a distribution over source classes.

    The FALLBACK decoding (checkpoints without a fitted decoder, and the calibration's
    "before" reference): trained runs decode with ``evaluation.decoder.ClassDecoder``,
    fitted on val, because this likelihood is biased on mixed frames even with perfectly
    calibrated scores (it counts each label on which two classes differ as independent
    evidence: a 70/30 two-class frame decodes as 0.927/0.073).

    Each class is scored by the log-likelihood of its exact label set under independent
    Bernoullis with the model's label probabilities: sum over labels of ``log p`` if the
    label is in the set, else ``log(1 - p)``; then a softmax over classes (a uniform class
    prior). Why not ``scores @ matrix``: a dot product rewards supersets (dyed-lifted-polyps
    would beat polyps whenever polyp is confident), whereas the likelihood also charges a
    class for labels it claims that the model says are absent, and for labels the model
    sees that the class lacks (esophagitis vs normal-z-line differ only in esophagitis).
    Only labels used by at least one class enter the sum: an unused label adds the same
    ``log(1 - p)`` to every class and would cancel in the softmax anyway, so leaving it out
    changes nothing but keeps its noise out of the numbers.

    The scores must be calibrated probabilities: the log-likelihood is a sum of label
    log-odds, so a per-label offset in the scores acts as a hidden class prior. BCE with
    ``pos_weight`` would add ``log(pos_weight)`` to every logit; the project's loss
    (``models.losses.CalibratedPosWeightBCE``) keeps that offset out of the model's output,
    so a frame that is truly 50/50 between two classes decodes as 50/50
    (``tests/evaluation/test_class_decoding.py``).

    Args:
        label_scores: (N, C) label probabilities.
        class_label_matrix: (K, C) 0/1, row k = label set of class k.

    Returns:
        (N, K) class probabilities (rows sum to 1).
    """
    matrix = _check_2d("class_label_matrix", class_label_matrix)
    scores = _check_2d("label_scores_to_class_proba label_scores", label_scores, n_cols=matrix.shape[1])
    used = matrix.any(axis=0)
    p = np.clip(scores[:, used], EPS, 1.0 - EPS)
    in_set = matrix[:, used]
    loglik = np.log(p) @ in_set.T + np.log1p(-p) @ (1.0 - in_set).T
    loglik -= loglik.max(axis=1, keepdims=True)
    proba = np.exp(loglik)
    return proba / proba.sum(axis=1, keepdims=True)


def _macro_ap_over(per_class: dict[str, dict[str, Any]], label_names: Sequence[str], mask: np.ndarray) -> float | None:
    aps = [per_class[n]["ap"] for n, on in zip(label_names, mask) if on and per_class[n]["ap"] is not None]
    return float(np.mean(aps)) if aps else None


def _class_indices(name: str, y_class: Any, n_rows: int) -> np.ndarray:
    y = np.asarray(y_class).reshape(-1)
    if y.shape[0] != n_rows:
        raise EvaluationError(f"{name}: expected {n_rows} class indices, got {y.shape[0]}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise EvaluationError(f"{name}: class indices must be integers")
    return y.astype(np.int64)


def evaluate_classifier(
    task: str,
    outputs: Any,
    y_labels: Any,
    y_class: Any,
    class_label_matrix: Any,
    label_names: Sequence[str],
    class_names: Sequence[str],
    thresholds: Any | None = None,
    class_proba: Any | None = None,
    class_proba_from: str = "given",
) -> dict[str, Any]:
    """Score one classifier on both the multi-label and the single-label task.

    Args:
        task: ``"multilabel"`` (outputs are (N, C) label probabilities) or
            ``"singlelabel"`` (outputs are (N, K) class probabilities).
        outputs: the model's probabilities, see ``task``.
        y_labels: (N, C) 0/1 label targets.
        y_class: (N,) source-class indices into ``class_names``; ``-1`` marks an image
            without a class of this source: it is left out of the single-label metrics
            only, and counted in ``singlelabel_n_excluded``.
        class_label_matrix: (K, C) 0/1 taxonomy matrix (``Taxonomy.class_label_matrix``).
        label_names: the C label names.
        class_names: the K source-class names.
        thresholds: (C,) per-class thresholds TUNED ON VALIDATION DATA. Callers scoring
            test data must pass them. ``None`` tunes them on the data given (fine for the
            val split itself) and records ``thresholds_tuned_on: "eval-data"``, which
            makes test F1/subset accuracy optimistic.
        class_proba: (N, K) a multi-label model's class distribution from a decoder fitted
            on val (``evaluation.decoder``); ``None`` decodes with the label-set likelihood.
        class_proba_from: recorded as ``class_proba_from`` when ``class_proba`` is given.

    Returns:
        One JSON-able dict with every key of ``multilabel_metrics`` and
        ``singlelabel_metrics`` (the latter's ``n_images`` as ``singlelabel_n_images``),
        plus ``task``, ``thresholds`` (list), ``thresholds_tuned_on``
        (``"given"`` | ``"eval-data"``), ``label_scores_from`` and ``class_proba_from``
        (how each task's inputs were obtained from this model's outputs), and
        ``macro_ap_source_labels``: macro AP over the labels that some source class maps
        to (the only labels the single-label baseline can express; ``macro_ap`` covers
        every label with a positive, so the baseline scores chance on the others).
    """
    matrix = _check_2d("class_label_matrix", class_label_matrix, n_cols=len(label_names), n_rows=len(class_names))
    y_labels = _check_binary("evaluate_classifier y_labels", y_labels, len(label_names))
    n_images = y_labels.shape[0]
    y_class = _class_indices("evaluate_classifier y_class", y_class, n_images)
    if task == "multilabel":
        label_scores = _check_2d("evaluate_classifier outputs", outputs, n_cols=len(label_names), n_rows=n_images)
        if class_proba is None:
            class_proba, class_proba_from = label_scores_to_class_proba(label_scores, matrix), "label-set-likelihood"
        class_proba = _check_2d("evaluate_classifier class_proba", class_proba, n_cols=len(class_names),
                                n_rows=n_images)
        sources = {"label_scores_from": "model", "class_proba_from": class_proba_from}
    elif task == "singlelabel":
        class_proba = _check_2d("evaluate_classifier outputs", outputs, n_cols=len(class_names), n_rows=n_images)
        label_scores = class_proba_to_label_scores(class_proba, matrix)
        sources = {"label_scores_from": "class-proba-through-taxonomy", "class_proba_from": "model"}
    else:
        raise EvaluationError(f"evaluate_classifier: unknown task {task!r}; expected 'multilabel' or 'singlelabel'")

    if thresholds is None:
        thresholds, tuned_on = tune_thresholds(y_labels, label_scores, label_names), "eval-data"
    else:
        tuned_on = "given"
    result: dict[str, Any] = {"task": task, **sources}
    result.update(multilabel_metrics(y_labels, label_scores, thresholds, label_names))
    result["macro_ap_source_labels"] = _macro_ap_over(result["per_class"], label_names, np.asarray(matrix.any(axis=0)))
    keep = y_class >= 0
    single = singlelabel_metrics(y_class[keep], class_proba[keep], class_names)
    single["singlelabel_n_images"] = single.pop("n_images")
    result.update(single)
    result["singlelabel_n_excluded"] = int((~keep).sum())
    result["thresholds"] = [float(t) for t in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
    result["thresholds_tuned_on"] = tuned_on
    return result
