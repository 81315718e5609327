"""Seed-aware verdicts: calibrated under the null on simulated data whose truth is known,
powered as ``seeds_needed`` promises, and silent with too few seeds."""

from __future__ import annotations

import numpy as np
import pytest

from kvasir_ml.evaluation.verdict import (
    FIRST_BETTER,
    NO_DIFFERENCE,
    SECOND_BETTER,
    TOO_FEW_SEEDS,
    UNDERPOWERED,
    half_splits,
    seed_aware,
    seeds_needed,
)


def _experiment(rng, true_diff: float, n: int, seed_sd: float, image_sd: float) -> dict:
    """One simulated comparison: the test set moves the difference by N(0, image_sd) (shared by
    both sides: the bootstrap sees it), each seed moves its run by N(0, seed_sd)."""
    test_set_offset = rng.normal(0.0, image_sd)
    a = 0.8 + true_diff + test_set_offset + rng.normal(0.0, seed_sd, n)
    b = 0.8 + rng.normal(0.0, seed_sd, n)
    image_diffs = (a.mean() - b.mean()) + rng.normal(0.0, image_sd, 400)
    return seed_aware(a, b, image_diffs)


@pytest.mark.parametrize("n, seed_sd, image_sd", [(3, 0.03, 0.0), (3, 0.02, 0.02), (6, 0.01, 0.005)])
def test_false_star_rate_under_the_null_is_about_five_percent(n, seed_sd, image_sd):
    rng = np.random.default_rng(n)
    stars = [_experiment(rng, 0.0, n, seed_sd, image_sd)["star"] for _ in range(3000)]
    rate = float(np.mean(stars))
    # a z interval (no small-sample correction) gives ~0.11 at 3 seeds; an image-only interval far more
    assert 0.02 <= rate <= 0.07, rate


def test_an_image_only_interval_would_fail_the_same_null():
    rng = np.random.default_rng(0)
    image_only = []
    for _ in range(1000):
        a, b = 0.8 + rng.normal(0, 0.03, 3), 0.8 + rng.normal(0, 0.03, 3)
        d = (a.mean() - b.mean()) + rng.normal(0, 0.005, 400)
        lo, hi = np.percentile(d, [2.5, 97.5])
        image_only.append(lo > 0 or hi < 0)
    assert np.mean(image_only) > 0.5  # why the bootstrap over images alone cannot give the verdict


def test_seeds_needed_delivers_the_promised_power():
    seed_sd, image_sd, effect = 0.01, 0.003, 0.02
    n = seeds_needed(seed_sd**2, image_sd**2, effect)
    assert n is not None and 3 <= n <= 10
    rng = np.random.default_rng(1)
    power = np.mean([_experiment(rng, effect, n, seed_sd, image_sd)["star"] for _ in range(2000)])
    assert power >= 0.75, (n, power)
    fewer = np.mean([_experiment(rng, effect, max(3, n - 2), seed_sd, image_sd)["star"] for _ in range(2000)])
    assert fewer < power
    assert seeds_needed(seed_sd**2, (effect / 2) ** 2, effect) is None  # image noise alone is too large
    with pytest.raises(ValueError):
        seeds_needed(1.0, 0.0, 0.0)


def test_verdicts():
    d = np.zeros(50)
    assert seed_aware([0.9, 0.91, 0.92], [0.5, 0.51, 0.52], d + 0.4)["verdict"] == FIRST_BETTER
    assert seed_aware([0.5, 0.51, 0.52], [0.9, 0.91, 0.92], d - 0.4)["verdict"] == SECOND_BETTER
    few = seed_aware([0.9, 0.91], [0.5, 0.51], d + 0.4)
    assert few["verdict"] == TOO_FEW_SEEDS and not few["star"] and few["ci95"][0] > 0
    one = seed_aware([0.9], [0.5, 0.51, 0.5], d)
    assert one["ci95"] is None and one["verdict"] == TOO_FEW_SEEDS
    flat = seed_aware([0.7, 0.7001, 0.6999] * 2, [0.7, 0.7002, 0.6998] * 2, d + np.linspace(-1e-4, 1e-4, 50))
    assert flat["verdict"] == NO_DIFFERENCE and flat["seeds_needed"] <= 6
    noisy = seed_aware([0.6, 0.8, 0.7], [0.75, 0.55, 0.7], d)
    assert noisy["verdict"] == UNDERPOWERED and noisy["seeds_needed"] > 3


def test_half_splits_are_disjoint_equal_and_distinct():
    splits = half_splits(6, 100)
    assert len(splits) == 10  # C(6,3) / 2
    seen = set()
    for first, second in splits:
        assert len(first) == len(second) == 3 and not set(first) & set(second)
        seen.add(frozenset((first, second)))
    assert len(seen) == 10
    assert len(half_splits(6, 4)) == 4
    assert all(len(f) == 2 for f, _ in half_splits(5, 100))
