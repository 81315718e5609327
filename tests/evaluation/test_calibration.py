"""Temperature scaling, ECE and the post-hoc bundle (calibration + decoder + thresholds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from kvasir_ml.evaluation.calibration import Calibration, ece, ece_summary, fit_calibration, reliability_bins
from kvasir_ml.evaluation.classification import tune_thresholds
from kvasir_ml.evaluation.posthoc import PostHoc, fit_posthoc, from_checkpoint


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _overconfident_multilabel(n: int, n_labels: int, factor: float, seed: int):
    """Labels drawn from sigmoid(z); the 'model' reports sigmoid(factor * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, n_labels)) + rng.normal(-1.0, 0.5, size=n_labels)
    y = (rng.random((n, n_labels)) < _sigmoid(z)).astype(np.int64)
    return _sigmoid(factor * z), y, _sigmoid(z)


def test_ece_by_hand():
    # two bins used: [0.0, 1/15) holds 0.0 (outcome 0) and 0.05 (outcome 1); [14/15, 1] holds 0.95, 1.0
    p = np.array([0.0, 0.05, 0.95, 1.0])
    y = np.array([0, 1, 1, 1])
    # bin 0: mean score 0.025, frequency 0.5 -> gap 0.475, weight 2/4; bin 14: 0.975 vs 1 -> 0.025
    assert ece(y, p) == pytest.approx(0.5 * 0.475 + 0.5 * 0.025)
    bins = reliability_bins(y, p)
    assert bins["count"][0] == 2 and bins["count"][14] == 2 and sum(bins["count"]) == 4
    assert bins["mean_score"][1] is None and bins["frequency"][14] == pytest.approx(1.0)
    assert ece(np.zeros(0), np.zeros(0)) is None


def test_temperature_recovers_the_overconfidence_factor_and_keeps_ap():
    # 4000 images per label: the NLL's minimiser is within a few percent of the true factor
    scores, y, truth = _overconfident_multilabel(4000, 3, factor=3.0, seed=0)
    cal = fit_calibration("multilabel", scores, y_labels=y)
    assert cal.temperatures == pytest.approx([3.0, 3.0, 3.0], rel=0.12)
    after = cal.apply(scores)
    for c in range(3):  # monotone per label: AP unchanged
        assert average_precision_score(y[:, c], after[:, c]) == pytest.approx(average_precision_score(y[:, c],
                                                                                                    scores[:, c]))
    assert ece(y, after) < 0.5 * ece(y, scores)
    assert ece(y, after) == pytest.approx(ece(y, truth), abs=0.02)


def test_label_without_negatives_keeps_temperature_one():
    scores, y, _ = _overconfident_multilabel(500, 2, factor=2.0, seed=1)
    y[:, 1] = 1
    cal = fit_calibration("multilabel", scores, y_labels=y)
    assert cal.temperatures[1] == 1.0 and cal.temperatures[0] != 1.0


def test_singlelabel_temperature_on_softmax():
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 1.5, size=(5000, 4))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p_true])
    sharp = np.exp(2.5 * z) / np.exp(2.5 * z).sum(1, keepdims=True)
    y[:50] = -1  # images without a class are left out of the fit
    cal = fit_calibration("singlelabel", sharp, y_class=y)
    assert cal.temperatures[0] == pytest.approx(2.5, rel=0.1)
    assert np.allclose(cal.apply(sharp), p_true, atol=0.05)
    assert np.array_equal(cal.apply(sharp).argmax(1), sharp.argmax(1))  # top-1 unchanged


def test_ece_summary_macro_over_labels_with_a_positive():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.2], [0.1, 0.2], [0.8, 0.2]])
    out = ece_summary(y, s, ["a", "b"], y_class=np.array([0, -1, 1]), class_proba=np.array([[0.7, 0.3]] * 3))
    assert out["per_label"]["b"] == pytest.approx(0.2)  # reported, but not in the macro mean
    assert out["macro_ece"] == pytest.approx(out["per_label"]["a"])
    assert out["pooled_ece"] == pytest.approx(ece(y[:, 0], s[:, 0]))
    # images 0 and 2: top class 0 at 0.7; hits: yes, no -> frequency 0.5 vs 0.7
    assert out["class_top1_ece"] == pytest.approx(0.2)


def test_posthoc_thresholds_are_tuned_on_calibrated_val_scores_and_survive_a_safe_checkpoint(tmp_path):
    scores, y, _ = _overconfident_multilabel(600, 3, factor=3.0, seed=3)
    matrix = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    y_class = np.where(y.sum(1) == 1, y.argmax(1), -1)
    names, classes = ["a", "b", "c"], ["A", "B", "C"]
    post = fit_posthoc("multilabel", scores, y, y_class, matrix, names, classes, class_counts=[1, 1, 1])
    calibrated = post.calibration.apply(scores)
    assert np.allclose(post.thresholds, tune_thresholds(y, calibrated, names))
    assert not np.allclose(post.thresholds, tune_thresholds(y, scores, names))
    torch.save(post.to_state(), tmp_path / "p.pt")
    state = torch.load(tmp_path / "p.pt", weights_only=True)  # plain lists and numbers only
    again = from_checkpoint(state, "multilabel", 3)
    s1, p1 = post.scores(scores, matrix, names)
    s2, p2 = again.scores(scores, matrix, names)
    assert np.allclose(s1, s2) and np.allclose(p1, p2) and again.class_proba_from == "decoder-fitted-on-val"


def test_old_checkpoint_falls_back_with_a_warning(caplog):
    old = {"thresholds": [0.5, 0.5]}
    post = from_checkpoint(old, "multilabel", 2, where="old.pt")
    assert isinstance(post, PostHoc) and post.decoder is None and post.class_proba_from == "label-set-likelihood"
    assert np.array_equal(post.calibration.temperatures, [1.0, 1.0])
    assert "old.pt has no calibration" in caplog.text and "no class decoder" in caplog.text
    x = np.array([[0.3, 0.9]])
    assert np.allclose(post.scores(x, np.eye(2), ["a", "b"])[0], x)
    assert Calibration.identity("singlelabel", 5).temperatures.shape == (1,)


def test_a_perfectly_separated_label_gets_a_finite_temperature():
    """Platt's target smoothing: without it the NLL keeps falling as T -> 0 on separable val."""
    z = np.concatenate([np.linspace(-4, -0.5, 20), np.linspace(0.5, 4, 20)])
    y = (z > 0).astype(int)[:, None]
    cal = fit_calibration("multilabel", _sigmoid(z)[:, None], y_labels=y)
    assert 0.1 < cal.temperatures[0] < 1.0  # sharper, but not at the 0.05 bound
    p = cal.apply(_sigmoid(z)[:, None])
    assert p.max() < 1 - 1e-4 and p.min() > 1e-4
