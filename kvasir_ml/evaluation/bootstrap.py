"""Paired bootstrap over test images: how sure is "model A beats model B" on one test set?

The spread over training seeds says how much a model varies when retrained; it says
nothing about how much the numbers would move on another test set of the same size. The
paired bootstrap answers that: resample the test IMAGES with replacement, score both
models on the same resample (each model's seeds scored and averaged), take the
difference, repeat. The 2.5 and 97.5 percentiles of the differences are the 95% interval
over test images (``ci95_images``, percentile method). Pairing matters: both models see
the same hard images in a resample, so the interval is much narrower than one built from
two independent intervals. It holds the trained models fixed, so it cannot see retraining:
the headline interval and the ``*`` (``ci95``, ``star``, ``verdict``) add the seed-to-seed
variance (``evaluation.verdict``).

A resample is a vector of counts (how often each image was drawn), so every metric is
computed as a weighted metric with those counts as weights, vectorised over resamples.
With all counts 1 each function gives exactly what ``evaluation.classification`` (i.e.
scikit-learn) gives on the data; with the counts of a resample it gives what scikit-learn
gives on the resampled rows (``tests/evaluation/test_bootstrap.py``), including ties in
scores and the rule that labels without a positive in the resample leave the macro/micro
averages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from kvasir_ml.evaluation.verdict import DEFAULT_EFFECT, MIN_SEEDS_FOR_VERDICT, TOO_FEW_SEEDS, seed_aware

# Metrics the bootstrap knows (the comparison table's, plus macro AP over label subsets).
METRICS = ("macro_ap", "micro_ap", "macro_f1", "subset_accuracy", "top1", "mcc")
DEFAULT_RESAMPLES = 2000
# Resamples scored at once: bounds memory at ~chunk x images x labels floats for micro AP.
_CHUNK = 250


@dataclass
class RunScores:
    """One run's test predictions: what the bootstrap needs to rescore it on a resample.

    ``y_labels`` (N, L) 0/1, ``label_scores`` (N, L), ``thresholds`` (L,) (tuned on val),
    ``y_class`` (N,) source-class index (-1 = none), ``class_proba`` (N, K).
    """

    y_labels: np.ndarray
    label_scores: np.ndarray
    thresholds: np.ndarray
    y_class: np.ndarray
    class_proba: np.ndarray


def resample_counts(n_images: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, N) int32: how often each image is drawn in each of B resamples of size N."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_resamples).astype(np.int32)


def _ap_weighted(weights: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Average precision of one ranking under each row of ``weights`` (B, N); NaN without positives.

    Same definition as scikit-learn: sum over distinct score thresholds (high to low) of
    (recall step) x precision, equal scores forming one threshold.
    """
    order = np.argsort(-score, kind="stable")
    s, yy = score[order], y[order].astype(np.float64)
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each run of equal scores
    w = weights[:, order].astype(np.float64)
    tp = np.cumsum(w * yy, axis=1)[:, ends]
    seen = np.cumsum(w, axis=1)[:, ends]
    n_pos = tp[:, -1:]
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    recall = np.divide(tp, n_pos, out=np.zeros_like(tp), where=n_pos > 0)
    step = np.diff(recall, axis=1, prepend=0.0)
    ap = (step * precision).sum(axis=1)
    return np.where(n_pos[:, 0] > 0, ap, np.nan)


def macro_ap(weights: np.ndarray, y_labels: np.ndarray, scores: np.ndarray,
             labels: Sequence[int] | None = None) -> np.ndarray:
    """(B,) mean AP over the labels (all, or the given column indices) with a positive in the resample."""
    cols = range(y_labels.shape[1]) if labels is None else labels
    aps = [_ap_weighted(weights, y_labels[:, c], scores[:, c]) for c in cols]
    if not aps:
        return np.full(weights.shape[0], np.nan)
    aps_arr = np.stack(aps, axis=1)
    valid = ~np.isnan(aps_arr)
    n = valid.sum(axis=1)
    total = np.where(valid, aps_arr, 0.0).sum(axis=1)
    return np.divide(total, n, out=np.full(n.shape, np.nan), where=n > 0)


def micro_ap(weights: np.ndarray, y_labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(B,) AP of all (image, label) pairs pooled, over the labels with a positive in the resample."""
    pos = weights @ y_labels.astype(np.float64)  # (B, L) positives per label
    scored = (pos > 0).astype(np.float64)
    flat_w = (weights[:, :, None] * scored[:, None, :]).reshape(weights.shape[0], -1)
    return _ap_weighted(flat_w, y_labels.reshape(-1), scores.reshape(-1))


def macro_f1(weights: np.ndarray, y_labels: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B,) mean F1 at fixed predictions over the labels with a positive in the resample."""
    w = weights.astype(np.float64)
    y, p = y_labels.astype(np.float64), y_pred.astype(np.float64)
    tp, fp, fn = w @ (y * p), w @ ((1 - y) * p), w @ (y * (1 - p))
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    scored = (tp + fn) > 0
    n = scored.sum(axis=1)
    return np.divide((f1 * scored).sum(axis=1), n, out=np.full(n.shape, np.nan), where=n > 0)


def subset_accuracy(weights: np.ndarray, y_labels: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(B,) share of images whose predicted label set is exactly right."""
    exact = (y_labels == y_pred).all(axis=1).astype(np.float64)
    return (weights @ exact) / weights.sum(axis=1)


def top1_and_mcc(weights: np.ndarray, y_class: np.ndarray, class_proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B,) top-1 accuracy and multiclass MCC (scikit-learn's formula) of the argmax class,
    over images with a class (``y_class >= 0``)."""
    keep = y_class >= 0
    w = weights[:, keep].astype(np.float64)
    k = class_proba.shape[1]
    true = np.eye(k)[y_class[keep]]
    pred = np.eye(k)[class_proba[keep].argmax(axis=1)]
    correct = (true * pred).sum(axis=1)
    s = w.sum(axis=1)
    c = w @ correct
    t, p = w @ true, w @ pred
    top1 = np.divide(c, s, out=np.full(s.shape, np.nan), where=s > 0)
    cov_ytyp = c * s - (t * p).sum(axis=1)
    cov_ypyp = s**2 - (p * p).sum(axis=1)
    cov_ytyt = s**2 - (t * t).sum(axis=1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    mcc = np.divide(cov_ytyp, denom, out=np.zeros_like(denom), where=denom > 0)
    return top1, mcc


def weighted_metrics(weights: np.ndarray, run: RunScores, metrics: Sequence[str] = METRICS,
                     label_subsets: Mapping[str, Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """Every requested metric of one run under each row of ``weights`` (B, N).

    ``label_subsets`` adds ``macro_ap[<name>]``: macro AP over those label columns only.
    """
    out: dict[str, np.ndarray] = {}
    y_pred = (run.label_scores >= run.thresholds[None, :]).astype(np.int64)
    if "macro_ap" in metrics:
        out["macro_ap"] = macro_ap(weights, run.y_labels, run.label_scores)
    if "micro_ap" in metrics:
        out["micro_ap"] = micro_ap(weights, run.y_labels, run.label_scores)
    if "macro_f1" in metrics:
        out["macro_f1"] = macro_f1(weights, run.y_labels, y_pred)
    if "subset_accuracy" in metrics:
        out["subset_accuracy"] = subset_accuracy(weights, run.y_labels, y_pred)
    if "top1" in metrics or "mcc" in metrics:
        top1, mcc = top1_and_mcc(weights, run.y_class, run.class_proba)
        if "top1" in metrics:
            out["top1"] = top1
        if "mcc" in metrics:
            out["mcc"] = mcc
    for name, cols in (label_subsets or {}).items():
        out[f"macro_ap[{name}]"] = macro_ap(weights, run.y_labels, run.label_scores, list(cols))
    return out


def _mean(per_run: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.nanmean(np.stack([m[k] for m in per_run]), axis=0) for k in per_run[0]}


def _seed_mean(weights: np.ndarray, runs: Sequence[RunScores], metrics: Sequence[str],
               label_subsets: Mapping[str, Sequence[int]] | None) -> dict[str, np.ndarray]:
    return _mean([weighted_metrics(weights, r, metrics, label_subsets) for r in runs])


def paired_bootstrap(runs_a: Sequence[RunScores], runs_b: Sequence[RunScores], metrics: Sequence[str] = METRICS,
                     n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                     label_subsets: Mapping[str, Sequence[int]] | None = None,
                     seeds_a: Sequence[int] | None = None,
                     seeds_b: Sequence[int] | None = None, effect: float = DEFAULT_EFFECT,
                     min_seeds: int = MIN_SEEDS_FOR_VERDICT) -> dict[str, dict[str, object]]:
    """Difference A - B of each metric with a 95% paired-bootstrap interval over test images.

    Args:
        runs_a, runs_b: the seeds of each model, all on the SAME test images in the same order.
        metrics: names from ``METRICS``.
        n_resamples: bootstrap resamples (B).
        seed: resampling seed (the interval is reproducible).
        label_subsets: ``{name: label columns}``; adds ``macro_ap[<name>]``.
        seeds_a, seeds_b: the training seed of each run (same order as the runs); with them,
            ``per_seed`` pairs the runs of a seed both sides have.
        effect, min_seeds: the seed-aware verdict's settings (``evaluation.verdict.seed_aware``).

    Returns:
        ``{metric: {"diff": mean over A's seeds - mean over B's seeds on the full test set,
        "ci95": the SEED-AWARE 95% interval (retraining and test images; None with < 2 seeds a
        side), "ci95_images": [2.5th, 97.5th percentile of the resampled differences] (test
        images only, models fixed), "star", "verdict", "seeds_needed", "n_seeds", "seed_sd",
        "image_sd", "se", "df", "effect" (``seed_aware``), "a": A's value,
        "b": B's value, "n_valid": resamples where both were defined, "per_seed": {seed: A's run
        - B's run of that seed on the full test set} (how far retraining moves the difference,
        which the interval does not include; ``{}`` without seeds)}}``; ``None`` where undefined.

    Raises:
        ValueError: no runs on a side, runs on different numbers of images, or seeds that do
            not match the runs.
    """
    if not runs_a or not runs_b:
        raise ValueError("paired_bootstrap: each side needs at least one run")
    n = runs_a[0].y_labels.shape[0]
    if any(r.y_labels.shape[0] != n for r in [*runs_a, *runs_b]):
        raise ValueError("paired_bootstrap: runs are on different numbers of test images")
    if (seeds_a is None) != (seeds_b is None) or (seeds_a is not None and (
            len(seeds_a) != len(runs_a) or len(seeds_b or []) != len(runs_b))):
        raise ValueError("paired_bootstrap: give one seed per run on both sides, or none")
    full = np.ones((1, n), dtype=np.int32)
    full_a = [weighted_metrics(full, r, metrics, label_subsets) for r in runs_a]
    full_b = [weighted_metrics(full, r, metrics, label_subsets) for r in runs_b]
    point_a, point_b = _mean(full_a), _mean(full_b)
    same_seed = [(i, list(seeds_b or []).index(s)) for i, s in enumerate(seeds_a or []) if s in (seeds_b or [])]
    counts = resample_counts(n, n_resamples, seed)
    diffs: dict[str, list[np.ndarray]] = {k: [] for k in point_a}
    for start in range(0, n_resamples, _CHUNK):
        chunk = counts[start:start + _CHUNK]
        a = _seed_mean(chunk, runs_a, metrics, label_subsets)
        b = _seed_mean(chunk, runs_b, metrics, label_subsets)
        for k in diffs:
            diffs[k].append(a[k] - b[k])
    out: dict[str, dict[str, object]] = {}
    for k, parts in diffs.items():
        d = np.concatenate(parts)
        d = d[np.isfinite(d)]
        va, vb = float(point_a[k][0]), float(point_b[k][0])
        ok = np.isfinite(va) and np.isfinite(vb)
        per_seed = {str((seeds_a or [])[i]): float(full_a[i][k][0] - full_b[j][k][0]) for i, j in same_seed}
        runs_va = [float(m[k][0]) for m in full_a if np.isfinite(m[k][0])]
        runs_vb = [float(m[k][0]) for m in full_b if np.isfinite(m[k][0])]
        verdict = seed_aware(runs_va, runs_vb, d, effect, min_seeds)
        out[k] = {"diff": va - vb if ok else None,
                  "ci95": verdict.pop("ci95") if ok else None,
                  "ci95_images": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if d.size else None,
                  "a": va if np.isfinite(va) else None, "b": vb if np.isfinite(vb) else None,
                  "n_valid": int(d.size),
                  "per_seed": {s: (v if np.isfinite(v) else None) for s, v in per_seed.items()},
                  **{key: val for key, val in verdict.items() if key != "diff"}}
        if not ok:
            out[k].update(star=False, verdict=TOO_FEW_SEEDS)
    return out


def seed_differences(result: dict[str, Any] | None) -> list[float]:
    """The defined per-seed differences of one ``paired_bootstrap`` metric result."""
    return [v for v in ((result or {}).get("per_seed") or {}).values() if v is not None]
