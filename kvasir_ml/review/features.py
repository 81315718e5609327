"""The class view of label-error discovery: out-of-fold source-class probabilities from global
image descriptors.

A confusable class swap (esophagitis <-> normal-z-line) changes a frame's *source class*; its
label set changes in one label only. A small from-scratch CNN trained for a few CPU minutes does
not learn such pairs (its out-of-fold esophagitis probability is ~0.5 on every z-line frame, see
docs/review.md), so its multi-label view cannot rank those swaps. The class view trains, per
fold, a regularised multinomial logistic regression over the source classes on global colour,
gradient and ring descriptors of each image (the kind of global features the Kvasir dataset
paper's baselines used); the regularisation strength is chosen by cross-validation on the given
labels of the training folds (no knowledge of which labels are wrong). It takes seconds per
fold after one pass over the images, so it runs with its own (more) folds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from kvasir_ml.data.coco import CanonicalDataset

log = logging.getLogger(__name__)

FEATURE_SIDE_PX = 128  # images are resized to this square before the descriptors are taken
RINGS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.5))  # radius / half side
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)  # inverse regularisation strengths tried by the inner CV
CLASS_VIEW_FOLDS = 5


def image_features(path: str | Path, side_px: int = FEATURE_SIDE_PX) -> np.ndarray:
    """Global descriptors of one image (float vector, the same length for every image).

    Colour (RGB 4x4x4 joint histogram, HSV histograms, 3x3 grid means and spreads), gradient
    (orientation and magnitude histograms), concentric rings around the centre (colour mean and
    spread, gradient, red-minus-green statistics) and local colour spread at two scales.

    Raises:
        ValueError: the file cannot be read as an image (named).
    """
    from PIL import Image

    try:
        with Image.open(path) as src:
            im = src.convert("RGB").resize((side_px, side_px), Image.Resampling.BILINEAR)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the image for the class view ({e})") from e
    a = np.asarray(im, dtype=np.float32) / 255
    hsv = np.asarray(im.convert("HSV"), dtype=np.float32) / 255
    n = side_px * side_px
    q = np.clip((a * 4).astype(int), 0, 3)
    f = [np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / n]
    for ch, bins in ((0, 16), (1, 8), (2, 8)):
        f.append(np.histogram(hsv[..., ch], bins, (0, 1))[0] / n)
    gy, gx = np.gradient(a.mean(-1))
    mag, ang = np.hypot(gx, gy), np.arctan2(gy, gx)
    f += [np.histogram(ang, 8, (-np.pi, np.pi), weights=mag)[0] / n, np.histogram(mag, 8, (0, 0.3))[0] / n]
    yy, xx = np.mgrid[:side_px, :side_px]
    r = np.hypot(yy - side_px / 2, xx - side_px / 2) / (side_px / 2)
    for lo, hi in RINGS:
        m = (r >= lo) & (r < hi)
        red = (a[..., 0] - a[..., 1])[m]
        f += [a[m].mean(0), a[m].std(0), mag[m].mean(keepdims=True),
              np.array([red.mean(), red.std(), np.percentile(red, 90), np.percentile(red, 10)])]
    third = side_px // 3
    for gy_ in range(3):
        for gx_ in range(3):
            blk = a[gy_ * third:(gy_ + 1) * third, gx_ * third:(gx_ + 1) * third].reshape(-1, 3)
            f += [blk.mean(0), blk.std(0)]
    for s in (2, 4):
        cut = side_px // s * s
        f.append(a[:cut, :cut].reshape(side_px // s, s, side_px // s, s, 3).std((1, 3)).mean((0, 1)))
    return np.concatenate(f).astype(np.float64)


def _classifier(y_train: np.ndarray):
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if np.bincount(y_train).min() >= 3:  # the inner 3-fold CV needs 3 of every class
        model = LogisticRegressionCV(Cs=list(C_GRID), cv=3, max_iter=3000, scoring="neg_log_loss")
    else:
        model = LogisticRegression(C=0.1, max_iter=3000)
    return make_pipeline(StandardScaler(), model)


def oof_class_scores(ds: CanonicalDataset, root: str | Path, file_names: Sequence[str],
                     k: int = CLASS_VIEW_FOLDS, seed: int = 0) -> tuple[list[str], np.ndarray] | None:
    """Out-of-fold source-class probabilities ``(class_names, (N, C))`` in ``file_names`` order.

    Folds come from ``oof.make_folds`` (duplicates together, classes spread). Returns None when
    the class view does not apply: an image without a source class, or fewer than 2 classes.
    """
    import warnings

    from kvasir_ml.review.oof import make_folds

    by_file = ds.image_by_file
    given = [by_file[f].get("source_class") for f in file_names]
    classes = sorted({c for c in given if c})
    if any(c is None for c in given) or len(classes) < 2:
        log.info("class view skipped: %s", "images without a source class" if classes else "fewer than 2 classes")
        return None
    y = np.array([classes.index(c) for c in given])
    x = np.stack([image_features(Path(root) / f) for f in file_names])
    pos = {f: i for i, f in enumerate(file_names)}
    probs = np.zeros((len(file_names), len(classes)))
    for split in make_folds(ds.subset(list(file_names)), k, seed):
        train = [pos[f] for f in split.splits["train"] + split.splits["val"]]
        test = [pos[f] for f in split.splits["test"]]
        model = _classifier(y[train])
        with warnings.catch_warnings():  # convergence / small-class warnings on tiny sets
            warnings.simplefilter("ignore")
            model.fit(x[train], y[train])
        cols = [int(c) for c in model[-1].classes_]  # a class absent from the training folds gets 0
        probs[np.ix_(test, cols)] = model.predict_proba(x[test])
    return classes, probs
