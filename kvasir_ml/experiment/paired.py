"""Which variants are compared with which, and the paired-bootstrap intervals of those pairs.

Two families of pairs, never mixed:

* **task pairs** ``multilabel-<mode>-vs-singlelabel-<mode>``: the question the project
  exists for, asked within one inset mode (same input, same budget, same selection rule);
* **inset ablation** ``<task>-<mode>-vs-<task>-masked`` for ``mode`` in raw / branch: what
  the inset adds (raw: the shortcut; branch: the inset as an explicit feature), within one task.

Each pair gets ``{metric: {"diff", "ci95", ...}}`` from ``evaluation.bootstrap.paired_bootstrap``
over the test images, the seeds of each variant pooled (scored and averaged per resample).
TTA predictions, when the runs made them, give the same pairs again under ``*_tta`` keys.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from kvasir_ml.evaluation.bootstrap import METRICS, RunScores, paired_bootstrap

log = logging.getLogger(__name__)

BOOTSTRAP_NOTE = ("paired bootstrap over test images: each resample draws the test images with replacement, "
                  "scores every seed of both variants on it and averages over seeds, then takes the difference "
                  "(first - second); ci95 = 2.5th and 97.5th percentiles of those differences; diff = difference "
                  "of the seed means on the full test set")


def task_pairs(variants: Sequence[str]) -> list[tuple[str, str]]:
    """``(multilabel-<mode>, singlelabel-<mode>)`` for every inset mode both tasks were trained in."""
    return [(v, "singlelabel-" + v.split("-", 1)[1]) for v in variants
            if v.startswith("multilabel-") and "singlelabel-" + v.split("-", 1)[1] in variants]


def ablation_pairs(variants: Sequence[str]) -> list[tuple[str, str]]:
    """``(<task>-raw|branch, <task>-masked)`` for every task trained masked and in another mode."""
    pairs = []
    for task in ("multilabel", "singlelabel"):
        base = f"{task}-masked"
        if base in variants:
            pairs += [(f"{task}-{mode}", base) for mode in ("branch", "raw") if f"{task}-{mode}" in variants]
    return pairs


def run_scores(predictions: dict[str, np.ndarray], thresholds: Sequence[float]) -> RunScores:
    """A run's saved test predictions (``predictions_test*.npz``) plus its val-tuned thresholds."""
    return RunScores(np.asarray(predictions["y_labels"], dtype=np.int64),
                     np.asarray(predictions["label_scores"], dtype=np.float64),
                     np.asarray(thresholds, dtype=np.float64),
                     np.asarray(predictions["y_class"], dtype=np.int64),
                     np.asarray(predictions["class_proba"], dtype=np.float64))


def _same_images(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    if "file_names" in a and "file_names" in b:
        return list(a["file_names"]) == list(b["file_names"])
    return np.array_equal(a["y_labels"], b["y_labels"]) and np.array_equal(a["y_class"], b["y_class"])


def pair_intervals(scores: dict[str, list[tuple[int | None, dict[str, np.ndarray], Sequence[float]]]],
                   pairs: Sequence[tuple[str, str]], n_resamples: int, seed: int,
                   label_subsets: dict[str, Sequence[str]] | None = None) -> dict[str, dict[str, Any]]:
    """``{"<a>-vs-<b>": {metric: {"diff", "ci95", "a", "b", "n_valid"}}}`` for each pair.

    Args:
        scores: ``{variant: [(training seed, predictions npz dict, thresholds) per run]}``.
        pairs: ``(a, b)`` variant names; pairs with a variant lacking predictions are skipped.
        n_resamples, seed: bootstrap settings.
        label_subsets: ``{name: label names}``: adds ``macro_ap[<name>]``.

    Raises:
        ValueError: the runs of a pair were scored on different test images.
    """
    out: dict[str, dict[str, Any]] = {}
    for a, b in pairs:
        if not scores.get(a) or not scores.get(b):
            log.info("no saved test predictions for %s or %s: no paired interval", a, b)
            continue
        ref = scores[a][0][1]
        if not all(_same_images(ref, pred) for _, pred, _ in [*scores[a], *scores[b]]):
            raise ValueError(f"{a} vs {b}: the runs were scored on different test images; no paired comparison")
        names = [str(n) for n in ref["label_names"]]
        subsets = {k: [names.index(lbl) for lbl in v if lbl in names] for k, v in (label_subsets or {}).items()}
        seeds_a, seeds_b = [s for s, _, _ in scores[a]], [s for s, _, _ in scores[b]]
        known = None not in seeds_a + seeds_b and len(set(seeds_a)) == len(seeds_a) and len(set(seeds_b)) == len(seeds_b)
        out[f"{a}-vs-{b}"] = paired_bootstrap([run_scores(p, t) for _, p, t in scores[a]],
                                              [run_scores(p, t) for _, p, t in scores[b]], METRICS,
                                              n_resamples, seed, subsets or None,
                                              seeds_a if known else None, seeds_b if known else None)
    return out
