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
from typing import Any, Mapping, Sequence, cast

import numpy as np

from kvasir_ml.evaluation.bootstrap import METRICS, RunScores, paired_bootstrap
from kvasir_ml.evaluation.verdict import MIN_SEEDS_FOR_VERDICT, half_splits

log = logging.getLogger(__name__)

BOOTSTRAP_NOTE = ("seed-aware interval: diff = difference (first - second) of the seed means on the full test "
                  "set; ci95 = diff -/+ t(0.975, df) * se with se^2 = seed variance of each side / its seeds "
                  "(retraining) + variance of a paired bootstrap over test images (each resample draws the test "
                  "images with replacement, scores every seed of both variants on it, averages over seeds and "
                  "takes the difference), df by Welch-Satterthwaite; ci95_images = 2.5th and 97.5th percentiles "
                  "of the bootstrap differences alone (models fixed); * = ci95 excludes 0 with at least "
                  f"{MIN_SEEDS_FOR_VERDICT} seeds a side")
AA_MAX_SPLITS = 10  # half-splits of one variant's seeds per A/A control (each unordered split once)
AA_RESAMPLES = 500  # bootstrap resamples per A/A comparison (the A/A only counts stars)


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
                   label_subsets: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, Any]]:
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
                                              cast(list[int], seeds_a) if known else None,  # known: no None
                                              cast(list[int], seeds_b) if known else None)
    return out


def aa_control(scores: dict[str, list[tuple[int | None, dict[str, np.ndarray], Sequence[float]]]],
               label_subsets: Mapping[str, Sequence[str]] | None = None, n_resamples: int = AA_RESAMPLES,
               seed: int = 0, max_splits: int = AA_MAX_SPLITS,
               min_seeds: int = MIN_SEEDS_FOR_VERDICT) -> dict[str, Any]:
    """The A/A control: each variant against ITSELF, one half of its seeds against the other half.

    Nothing differs between the halves but the training seed, so every ``*`` is a false one;
    the share of starred cells (pair x metric) estimates the comparison's false-``*`` rate.
    A variant takes part when it has at least ``2 * min_seeds`` runs (each half needs a verdict).

    Args:
        scores: as ``pair_intervals`` (``{variant: [(seed, predictions, thresholds)]}``).
        label_subsets: as ``pair_intervals``.
        n_resamples, seed: bootstrap settings of each A/A comparison.
        max_splits: half-splits per variant.
        min_seeds: seeds a side for a verdict.

    Returns:
        ``{"cells", "starred", "rate" (None without cells), "seeds_per_side", "variants": {variant:
        {"splits", "cells", "starred", "starred_cells": ["<metric> seeds [..] vs [..]"]}}, "note"}``.
    """
    out: dict[str, Any] = {"cells": 0, "starred": 0, "rate": None, "seeds_per_side": None, "variants": {}}
    for variant, runs in scores.items():
        if len(runs) < 2 * min_seeds:
            continue
        names = [str(n) for n in runs[0][1]["label_names"]]
        subsets = {k: [names.index(lbl) for lbl in v if lbl in names] for k, v in (label_subsets or {}).items()}
        entry: dict[str, Any] = {"splits": 0, "cells": 0, "starred": 0, "starred_cells": []}
        for first, second in half_splits(len(runs), max_splits):
            side_a, side_b = [runs[i] for i in first], [runs[i] for i in second]
            res = paired_bootstrap([run_scores(p, t) for _, p, t in side_a], [run_scores(p, t) for _, p, t in side_b],
                                   METRICS, n_resamples, seed, subsets or None, min_seeds=min_seeds)
            entry["splits"] += 1
            for metric, r in res.items():
                if r.get("ci95") is None:
                    continue
                entry["cells"] += 1
                if r.get("star"):
                    entry["starred"] += 1
                    entry["starred_cells"].append(f"{metric} seeds {[s for s, _, _ in side_a]} vs "
                                                  f"{[s for s, _, _ in side_b]}")
        out["variants"][variant] = entry
        out["cells"] += entry["cells"]
        out["starred"] += entry["starred"]
        out["seeds_per_side"] = len(runs) // 2 if out["seeds_per_side"] is None else min(out["seeds_per_side"],
                                                                                          len(runs) // 2)
    out["rate"] = out["starred"] / out["cells"] if out["cells"] else None
    out["note"] = ("A/A control: each variant's seeds split into two halves, half against half with the same "
                   "machinery; every * is false. " + (f"{out['starred']} of {out['cells']} cells starred."
                                                      if out["cells"] else
                                                      f"Not measured: needs >= {2 * min_seeds} seeds of one variant."))
    return out
