"""The paired bootstrap's weighted metrics equal scikit-learn on the resampled rows, and its
intervals behave: they hold zero for a model against itself, exclude it for a clearly better model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, matthews_corrcoef

from kvasir_ml.evaluation.bootstrap import RunScores, paired_bootstrap, resample_counts, weighted_metrics
from kvasir_ml.evaluation.classification import evaluate_classifier, label_scores_to_class_proba


def _run(rng: np.random.Generator, y_labels: np.ndarray, y_class: np.ndarray, matrix: np.ndarray,
         skill: float, ties: bool = False) -> RunScores:
    noise = rng.normal(size=y_labels.shape)
    scores = 1 / (1 + np.exp(-(skill * (2 * y_labels - 1) + noise)))
    if ties:  # coarse scores: many equal values, the case AP implementations get wrong
        scores = np.round(scores, 1)
    return RunScores(y_labels, scores, np.full(y_labels.shape[1], 0.5), y_class,
                     label_scores_to_class_proba(scores, matrix))


def _data(rng: np.random.Generator, n: int = 60):
    matrix = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    y_class = rng.integers(0, 4, n)
    y_labels = matrix[y_class].astype(np.int64)
    y_labels[rng.random(n) < 0.2, 1] = 1  # a label that co-occurs with any class
    return y_labels, y_class, matrix


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_equal_sklearn_on_resampled_rows(ties):
    rng = np.random.default_rng(0)
    y_labels, y_class, matrix = _data(rng)
    y_class[:3] = -1  # images without a class leave the single-label metrics only
    run = _run(rng, y_labels, y_class, matrix, skill=1.0, ties=ties)
    names = ["a", "b", "c", "d"]
    counts = resample_counts(len(y_class), 5, seed=1)
    counts = np.vstack([np.ones(len(y_class), dtype=np.int32), counts])  # row 0: the data itself
    got = weighted_metrics(counts, run, label_subsets={"bc": [1, 2]})
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(len(y_class)), row)
        ref = evaluate_classifier("multilabel", run.label_scores[idx], y_labels[idx], y_class[idx], matrix, names,
                                  ["A", "B", "C", "D"], thresholds=run.thresholds)
        for key in ("macro_ap", "micro_ap", "macro_f1", "subset_accuracy", "top1", "mcc"):
            assert got[key][b] == pytest.approx(ref[key], abs=1e-9), (key, b)
        bc = [average_precision_score(y_labels[idx, c], run.label_scores[idx, c]) for c in (1, 2)
              if y_labels[idx, c].any()]
        assert got["macro_ap[bc]"][b] == pytest.approx(np.mean(bc), abs=1e-9)
        keep = y_class[idx] >= 0
        assert got["mcc"][b] == pytest.approx(matthews_corrcoef(y_class[idx][keep],
                                                                 run.class_proba[idx][keep].argmax(1)), abs=1e-9)


def test_a_model_against_itself_has_zero_diff_and_a_better_one_a_positive_interval():
    rng = np.random.default_rng(3)
    y_labels, y_class, matrix = _data(rng, n=200)
    weak = [_run(rng, y_labels, y_class, matrix, skill=0.3) for _ in range(2)]
    strong = [_run(rng, y_labels, y_class, matrix, skill=2.5) for _ in range(2)]
    same = paired_bootstrap(weak, weak, n_resamples=300, seed=0)
    for key, res in same.items():
        assert res["diff"] == pytest.approx(0.0, abs=1e-12)
        assert res["ci95_images"] == pytest.approx([0.0, 0.0], abs=1e-12) and not res["star"]
    better = paired_bootstrap(strong, weak, n_resamples=300, seed=0)
    for key in ("macro_ap", "micro_ap", "macro_f1", "top1", "mcc"):
        lo, hi = better[key]["ci95_images"]
        assert 0 < lo <= better[key]["diff"] <= hi, key
        # two seeds a side: the seed-aware interval is wider than the image-only one, and no verdict
        slo, shi = better[key]["ci95"]
        assert shi - slo >= hi - lo and not better[key]["star"]
        assert better[key]["verdict"] == "too few seeds for a verdict"
    # reproducible: the same seed gives the same interval
    assert paired_bootstrap(strong, weak, n_resamples=300, seed=0)["macro_ap"] == better["macro_ap"]


def test_point_estimate_is_the_mean_over_seeds_of_the_full_test_metric():
    rng = np.random.default_rng(5)
    y_labels, y_class, matrix = _data(rng)
    runs_a = [_run(rng, y_labels, y_class, matrix, skill=1.0) for _ in range(3)]
    runs_b = [_run(rng, y_labels, y_class, matrix, skill=0.5)]
    res = paired_bootstrap(runs_a, runs_b, metrics=["macro_ap"], n_resamples=50)
    mean_a = np.mean([np.mean([average_precision_score(y_labels[:, c], r.label_scores[:, c]) for c in range(4)])
                      for r in runs_a])
    b = np.mean([average_precision_score(y_labels[:, c], runs_b[0].label_scores[:, c]) for c in range(4)])
    assert res["macro_ap"]["diff"] == pytest.approx(mean_a - b, abs=1e-12)
    with pytest.raises(ValueError, match="different numbers"):
        paired_bootstrap(runs_a, [_run(rng, y_labels[:10], y_class[:10], matrix, 1.0)], n_resamples=5)
    assert res["macro_ap"]["per_seed"] == {}  # no seeds given: nothing to pair


def test_per_seed_differences_pair_runs_by_seed_and_show_the_retraining_spread():
    rng = np.random.default_rng(7)
    y_labels, y_class, matrix = _data(rng, n=120)
    runs_a = [_run(rng, y_labels, y_class, matrix, skill=s) for s in (0.3, 2.0, 1.5)]  # seeds 0, 1, 2
    runs_b = [_run(rng, y_labels, y_class, matrix, skill=1.0) for _ in range(2)]  # seeds 1, 0 (no run of 2)
    res = paired_bootstrap(runs_a, runs_b, metrics=["macro_ap"], n_resamples=50,
                           seeds_a=[0, 1, 2], seeds_b=[1, 0])["macro_ap"]
    ap = lambda r: np.mean([average_precision_score(y_labels[:, c], r.label_scores[:, c]) for c in range(4)])  # noqa: E731
    assert set(res["per_seed"]) == {"0", "1"}  # seed 2 has no partner
    assert res["per_seed"]["0"] == pytest.approx(ap(runs_a[0]) - ap(runs_b[1]), abs=1e-12)
    assert res["per_seed"]["1"] == pytest.approx(ap(runs_a[1]) - ap(runs_b[0]), abs=1e-12)
    assert res["per_seed"]["0"] < 0 < res["per_seed"]["1"]  # the seeds disagree in sign
    with pytest.raises(ValueError, match="one seed per run"):
        paired_bootstrap(runs_a, runs_b, n_resamples=5, seeds_a=[0, 1], seeds_b=[1, 0])


def test_image_interval_covers_the_known_truth_95_percent_with_equal_tails():
    """Coverage on simulated test sets whose truth is known: two models that are each right on
    an image with probability 0.7 (true accuracy difference 0). Over 2000 test sets of 80 images
    the 95 % image interval must miss the truth about 2.5 % of the time on EACH side (SD of
    each rate ~0.35 %); a 5th-percentile lower bound would miss below ~5 % of the time."""
    rng = np.random.default_rng(0)

    def run(y: np.ndarray) -> RunScores:
        right = rng.random(y.shape[0]) < 0.7
        scores = np.where(right, y[:, 0], 1 - y[:, 0]).astype(float)[:, None]
        return RunScores(y, scores, np.array([0.5]), np.zeros(y.shape[0], dtype=np.int64), np.ones((y.shape[0], 1)))

    n_sets, truth = 2000, 0.0
    below = above = 0
    for i in range(n_sets):
        y = (rng.random((80, 1)) < 0.5).astype(np.int64)
        lo, hi = paired_bootstrap([run(y)], [run(y)], ["subset_accuracy"], 400, seed=i)["subset_accuracy"]["ci95_images"]
        below += truth < lo
        above += truth > hi
    assert 0.015 <= below / n_sets <= 0.0375 and 0.015 <= above / n_sets <= 0.0375, (below, above)
