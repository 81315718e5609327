"""Seed-aware verdicts: is a difference between two trained variants larger than retraining noise?

A difference between two model variants moves for two reasons: the test images (another
test set of the same size would give another number) and the training runs (another seed
gives another model). The paired bootstrap over test images (``evaluation.bootstrap``)
holds the trained models fixed, so it sees only the first; in an A/A comparison (one
config against itself, other seeds) its intervals exclude zero far more often than 5 %.

This module adds the second source. For one metric, with per-seed values ``a_i`` (i = 1..n_a)
and ``b_j`` on the full test set and the image-bootstrap distribution of the seed-mean
difference:

    diff     = mean(a) - mean(b)
    se^2     = s_a^2 / n_a + s_b^2 / n_b        (retraining: sample variances over seeds)
             + var_images                         (test images: variance of the bootstrap differences)
    df       = Welch-Satterthwaite over the two seed terms (the image term counts as known)
    ci95     = diff -/+ t_{0.975, df} * se

The seed variances are measured on the one test set, so they carry part of the image-by-
model interaction that ``var_images`` also carries: the interval is slightly conservative,
never anti-conservative. Why not a two-level bootstrap that also resamples seeds: with the
2-6 seeds a CPU or a GPU budget affords, a bootstrap over seeds has only a handful of
distinct means, underestimates their variance by (n-1)/n and has no small-sample
correction; the t quantile with Satterthwaite's df is the textbook answer for few runs
(see docs/statistics.md).

A ``*`` needs ``MIN_SEEDS_FOR_VERDICT`` seeds on each side: with fewer, the seed variance
itself is too uncertain and the verdict is "too few seeds for a verdict", whatever the
interval. ``seeds_needed`` is the number of seeds per side that would detect a stated
effect (``DEFAULT_EFFECT`` = 0.02) with 80 % power at the observed seed and image variance.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

MIN_SEEDS_FOR_VERDICT = 3
DEFAULT_EFFECT = 0.02
ALPHA = 0.05
POWER = 0.8
MAX_SEEDS_SEARCHED = 1000

FIRST_BETTER, SECOND_BETTER = "first better", "second better"
NO_DIFFERENCE = "no difference detected"
UNDERPOWERED = "inconclusive: too few seeds to detect the stated effect"
TOO_FEW_SEEDS = "too few seeds for a verdict"
UNCONTROLLED = "uncontrolled design: no verdict"


def seeds_needed(seed_var: float, image_var: float, effect: float = DEFAULT_EFFECT, alpha: float = ALPHA,
                 power: float = POWER) -> int | None:
    """Seeds per side for a two-sided test at ``alpha`` to detect ``effect`` with ``power``.

    Smallest n >= 2 with ``(t_{1-alpha/2, df} + t_{power, df}) * sqrt(2 seed_var / n + image_var) <= effect``,
    df = 2n - 2; ``None`` when even ``MAX_SEEDS_SEARCHED`` seeds do not reach it (the test set's
    own image noise is larger than the effect: more test images are needed, not more seeds).
    """
    if effect <= 0:
        raise ValueError(f"seeds_needed: effect must be > 0, got {effect}")
    if (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * math.sqrt(image_var) > effect:
        return None  # not even infinitely many seeds
    n, quantiles = _power_quantiles(alpha, power)
    ok = np.flatnonzero(quantiles * np.sqrt(2 * seed_var / n + image_var) <= effect)
    return int(n[ok[0]]) if ok.size else None


@functools.lru_cache(maxsize=8)
def _power_quantiles(alpha: float, power: float) -> tuple[np.ndarray, np.ndarray]:
    """(n = 2..MAX_SEEDS_SEARCHED, t_{1-alpha/2, 2n-2} + t_{power, 2n-2})."""
    n = np.arange(2, MAX_SEEDS_SEARCHED + 1)
    df = 2 * n - 2
    return n, stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)


def seed_aware(values_a: Sequence[float], values_b: Sequence[float], image_diffs: np.ndarray,
               effect: float = DEFAULT_EFFECT, min_seeds: int = MIN_SEEDS_FOR_VERDICT) -> dict[str, Any]:
    """The seed-aware interval and verdict of ``mean(a) - mean(b)`` (see the module docstring).

    Args:
        values_a, values_b: the metric of each seed of each side on the full test set.
        image_diffs: the image-bootstrap differences of the seed means (finite values only).
        effect: the effect size the power statement is about.
        min_seeds: seeds per side below which no verdict is given.

    Returns:
        ``{"diff", "ci95" (None with < 2 seeds on a side), "se", "df", "seed_sd": [a, b],
        "image_sd", "n_seeds": [n_a, n_b], "effect", "seeds_needed", "star", "verdict"}``.
    """
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    n_a, n_b = a.size, b.size
    image_var = float(np.var(image_diffs, ddof=1)) if np.size(image_diffs) > 1 else 0.0
    out: dict[str, Any] = {"diff": float(a.mean() - b.mean()) if n_a and n_b else None, "ci95": None, "se": None,
                           "df": None, "seed_sd": [None, None], "image_sd": math.sqrt(image_var),
                           "n_seeds": [int(n_a), int(n_b)], "effect": effect, "seeds_needed": None,
                           "star": False, "verdict": TOO_FEW_SEEDS}
    if n_a < 2 or n_b < 2:
        return out
    var_a, var_b = float(a.var(ddof=1)), float(b.var(ddof=1))
    terms = (var_a / n_a, var_b / n_b)
    se = math.sqrt(sum(terms) + image_var)
    denom = terms[0] ** 2 / (n_a - 1) + terms[1] ** 2 / (n_b - 1)
    df = (se**4 / denom) if denom > 0 else math.inf
    half = float(stats.t.ppf(1 - ALPHA / 2, df) if math.isfinite(df) else stats.norm.ppf(1 - ALPHA / 2)) * se
    diff = out["diff"]
    pooled = ((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2)
    out.update(ci95=[diff - half, diff + half], se=se, df=df if math.isfinite(df) else None,
               seed_sd=[math.sqrt(var_a), math.sqrt(var_b)], seeds_needed=seeds_needed(pooled, image_var, effect))
    excludes_zero = se > 0 and (diff - half > 0 or diff + half < 0)
    if min(n_a, n_b) < min_seeds:
        out["verdict"] = TOO_FEW_SEEDS
    elif excludes_zero:
        out.update(star=True, verdict=FIRST_BETTER if diff > 0 else SECOND_BETTER)
    elif out["seeds_needed"] is not None and min(n_a, n_b) >= out["seeds_needed"]:
        out["verdict"] = NO_DIFFERENCE
    else:
        out["verdict"] = UNDERPOWERED
    return out


def half_splits(n_runs: int, max_splits: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Distinct ways to split ``n_runs`` runs into two halves of ``n_runs // 2`` (an odd one out is
    left out), each unordered split once, at most ``max_splits`` of them (deterministic order)."""
    k = n_runs // 2
    seen, out = set(), []
    for first in itertools.combinations(range(n_runs), k):
        rest = [i for i in range(n_runs) if i not in first]
        for second in itertools.combinations(rest, k):
            key = frozenset((first, second))
            if key in seen:
                continue
            seen.add(key)
            out.append((first, second))
            if len(out) >= max_splits:
                return out
    return out
