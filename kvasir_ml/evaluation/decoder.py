"""Label scores -> source-class distribution, fitted on validation; the top-1 ceiling.

Why fitted: the label-set likelihood (``classification.label_scores_to_class_proba``)
multiplies independent per-label probabilities, so it counts every label on which two
classes differ as separate evidence. Even with perfectly calibrated label scores it is
biased: a frame that is 70 % dyed-lifted-polyps / 30 % dyed-resection-margins has label
scores polyp 0.7, lifted 0.7, resection-margin 0.3, and the likelihood turns the three
differing labels into (0.7/0.3)^3 : 1, i.e. 0.927/0.073; a 0.4/0.3/0.3 mix of
dyed-lifted-polyps / polyps / ulcerative-colitis puts polyps on top.

``ClassDecoder`` is a multinomial logistic regression (scikit-learn, L2, ``C = DECODER_C``)
from the calibrated label LOGITS of the labels some class uses to the source class, fitted
on the val images that have a class. Two additions keep it sensible on small val splits:

* class prior: val rows are weighted so the classes weigh as in train + val together (a
  val split of a few hundred images has noisy class shares);
* one prototype row per class (its label set as scores of 0.95 / 0.05, weight 1): every
  class is known to the decoder even when val has none of its images, and a frame that
  shows exactly one label set leans towards its classes.

Classes with identical label sets (HyperKvasir's esophagitis grades, ulcerative-colitis
grades, barretts vs short-segment) cannot be told apart from label scores at all: the
best a multi-label model can do is the most frequent class of each group, so its top-1 is
capped at ``top1_ceiling`` (the sum over groups of the largest class count, over n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

DECODER_C = 1.0  # inverse L2 strength (sklearn); the features are logits of order +-10
FEATURE_EPS = 1e-6  # scores clipped to [eps, 1 - eps]: features within +-13.8
PROTOTYPE_SCORE = 0.95


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, FEATURE_EPS, 1.0 - FEATURE_EPS)
    return np.log(p) - np.log1p(-p)


@dataclass
class ClassDecoder:
    """A fitted multinomial logistic regression; ``coef`` (K, F) over ``feature_labels``."""

    class_names: list[str]
    feature_labels: list[str]
    coef: np.ndarray
    intercept: np.ndarray
    C: float = DECODER_C
    n_images: int = 0
    fitted_on: str = "val"

    def class_proba(self, label_scores: Any, label_names: Sequence[str]) -> np.ndarray:
        """(N, K) class probabilities of (N, L) calibrated label scores named ``label_names``."""
        cols = [list(label_names).index(n) for n in self.feature_labels]
        x = _logit(np.asarray(label_scores, dtype=np.float64)[:, cols])
        z = x @ self.coef.T + self.intercept[None, :]
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_state(self) -> dict[str, Any]:
        """Plain lists and numbers (a checkpoint loads it with ``weights_only=True``)."""
        return {"method": "multinomial-logistic-regression", "class_names": list(self.class_names),
                "feature_labels": list(self.feature_labels), "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(), "C": float(self.C), "n_images": int(self.n_images),
                "fitted_on": self.fitted_on, "features": "calibrated label logits"}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ClassDecoder":
        return cls(list(state["class_names"]), list(state["feature_labels"]),
                   np.asarray(state["coef"], dtype=np.float64), np.asarray(state["intercept"], dtype=np.float64),
                   float(state.get("C", DECODER_C)), int(state.get("n_images", 0)), str(state.get("fitted_on", "val")))


def fit_decoder(label_scores: Any, y_class: Any, class_label_matrix: Any, label_names: Sequence[str],
                class_names: Sequence[str], class_counts: Any | None = None, C: float = DECODER_C) -> ClassDecoder:
    """Fit the decoder on VALIDATION data.

    Args:
        label_scores: (N, L) calibrated label scores of the val images.
        y_class: (N,) source-class indices (-1 = none: left out).
        class_label_matrix: (K, L) 0/1 label sets.
        label_names, class_names: the L labels and K classes.
        class_counts: (K,) class counts whose shares the val rows are weighted to (train +
            val); ``None`` keeps val's own shares.
        C: inverse L2 regularisation strength.

    Returns:
        The fitted ``ClassDecoder`` (``n_images`` = val images used).
    """
    from sklearn.linear_model import LogisticRegression

    matrix = np.asarray(class_label_matrix, dtype=np.float64)
    used = np.asarray(matrix.any(axis=0))
    features = [n for n, u in zip(label_names, used) if u]
    y: np.ndarray = np.asarray(y_class).reshape(-1).astype(np.int64)
    keep = y >= 0
    x = _logit(np.asarray(label_scores, dtype=np.float64)[keep][:, used])
    y = y[keep]
    k = len(class_names)
    val_counts = np.bincount(y, minlength=k).astype(np.float64)
    weights = np.ones(len(y))
    if class_counts is not None and len(y):
        prior = np.asarray(class_counts, dtype=np.float64)
        prior = prior / prior.sum()
        factor = np.divide(prior * len(y), val_counts, out=np.zeros(k), where=val_counts > 0)
        weights = factor[y]
    proto = _logit(np.where(matrix[:, used] > 0, PROTOTYPE_SCORE, 1.0 - PROTOTYPE_SCORE))
    x_all = np.vstack([x, proto])
    y_all = np.concatenate([y, np.arange(k)])
    w_all = np.concatenate([weights, np.ones(k)])
    lr = LogisticRegression(C=C, max_iter=2000).fit(x_all, y_all, sample_weight=w_all)
    coef = np.zeros((k, len(features)))
    intercept = np.zeros(k)
    if k == 2:  # sklearn's binary form: one row for class 1; as a softmax, +-half of it
        coef[1], intercept[1] = lr.coef_[0] / 2, lr.intercept_[0] / 2
        coef[0], intercept[0] = -coef[1], -intercept[1]
    else:
        coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    return ClassDecoder(list(class_names), features, coef, intercept, C, int(len(y)))


def identical_label_set_groups(class_label_matrix: Any, class_names: Sequence[str]) -> list[list[str]]:
    """Groups (>= 2 classes) whose label sets are identical, in class order."""
    matrix = np.asarray(class_label_matrix)
    groups: dict[bytes, list[str]] = {}
    for row, name in zip(matrix, class_names):
        groups.setdefault((row > 0).tobytes(), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def top1_ceiling(class_label_matrix: Any, class_names: Sequence[str], y_class: Any) -> dict[str, Any]:
    """The highest top-1 any decoder of label scores can reach on these images.

    Classes with identical label sets give identical targets, so at best each group's most
    frequent class is always chosen: ceiling = sum over label-set groups (singletons
    included) of the largest class count, over the images with a class.

    Returns:
        ``top1_ceiling_multilabel`` (None without images) and ``top1_ceiling_groups``
        [{classes, counts, best}] for the groups of >= 2 classes.
    """
    y: np.ndarray = np.asarray(y_class).reshape(-1)
    y = y[y >= 0].astype(np.int64)
    counts = np.bincount(y, minlength=len(class_names))
    matrix = np.asarray(class_label_matrix)
    best: dict[bytes, int] = {}
    for row, c in zip(matrix, counts):
        key = (row > 0).tobytes()
        best[key] = max(best.get(key, 0), int(c))
    index = {n: i for i, n in enumerate(class_names)}
    groups = [{"classes": g, "counts": [int(counts[index[n]]) for n in g],
               "best": max(int(counts[index[n]]) for n in g)} for g in identical_label_set_groups(matrix, class_names)]
    return {"top1_ceiling_multilabel": float(sum(best.values()) / len(y)) if len(y) else None,
            "top1_ceiling_groups": groups}
