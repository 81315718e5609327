"""Classifier metrics: agreement with direct scikit-learn calls, threshold tuning,
cross-evaluation through the taxonomy, and the combined report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    matthews_corrcoef,
)

from kvasir_ml.evaluation.classification import (
    EvaluationError,
    apply_thresholds,
    class_proba_to_label_scores,
    evaluate_classifier,
    label_scores_to_class_proba,
    multilabel_metrics,
    singlelabel_metrics,
    tune_thresholds,
)
from kvasir_ml.taxonomy import load_taxonomy

N_IMAGES, N_LABELS, N_CLASSES = 60, 6, 5
NAMES = [f"l{i}" for i in range(N_LABELS)]
CLASSES = [f"c{i}" for i in range(N_CLASSES)]


def _random_multilabel(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated random targets/scores; the last label never has a positive."""
    rng = np.random.default_rng(seed)
    y_true = (rng.random((N_IMAGES, N_LABELS)) < 0.3).astype(int)
    y_true[:, -1] = 0
    y_true[0, 0] = 1  # at least one positive elsewhere
    # rounding makes tied scores, which the threshold tuning must handle
    y_score = np.round(np.clip(0.4 * y_true + rng.random(y_true.shape) * 0.7, 0, 1), 2)
    return y_true, y_score


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_multilabel_metrics_equal_sklearn(seed):
    y_true, y_score = _random_multilabel(seed)
    thresholds = np.random.default_rng(seed + 100).uniform(0.2, 0.8, N_LABELS)
    m = multilabel_metrics(y_true, y_score, thresholds, NAMES)
    scored = y_true.sum(axis=0) > 0
    y_pred = (y_score >= thresholds).astype(int)
    aps = [average_precision_score(y_true[:, c], y_score[:, c]) for c in np.flatnonzero(scored)]
    assert m["macro_ap"] == pytest.approx(np.mean(aps))
    t, s, p = y_true[:, scored], y_score[:, scored], y_pred[:, scored]
    assert m["micro_ap"] == pytest.approx(average_precision_score(t, s, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y_true, y_pred))
    for c, name in enumerate(NAMES):
        pc = m["per_class"][name]
        assert pc["support"] == int(y_true[:, c].sum())
        assert pc["threshold"] == pytest.approx(thresholds[c])
        if scored[c]:
            assert pc["ap"] == pytest.approx(average_precision_score(y_true[:, c], y_score[:, c]))
            assert pc["f1"] == pytest.approx(f1_score(y_true[:, c], y_pred[:, c], zero_division=0))
        else:
            assert pc["ap"] is None and pc["f1"] is None and pc["recall"] is None
    assert m["labels_without_positives"] == [NAMES[-1]]
    assert m["n_images"] == N_IMAGES
    json.dumps(m, allow_nan=False)


def test_macro_ap_over_source_labels(taxonomy):
    matrix = taxonomy.class_label_matrix("kvasir-v2")
    labels, classes = taxonomy.label_names, list(taxonomy.source("kvasir-v2").classes)
    rng = np.random.default_rng(3)
    y_class = np.arange(40) % len(classes)
    y_labels = matrix[y_class].copy()
    y_labels[::4, labels.index("hemorrhoids")] = 1  # a finding no kvasir-v2 class maps to
    got = evaluate_classifier("multilabel", rng.random((40, len(labels))), y_labels, y_class, matrix, labels, classes)
    used = [n for n, on in zip(labels, matrix.any(axis=0)) if on]
    assert "hemorrhoids" not in used and 0.0 < got["per_class"]["hemorrhoids"]["ap"] <= 1.0  # scored, not dropped
    assert got["macro_ap_source_labels"] == pytest.approx(np.mean([got["per_class"][n]["ap"] for n in used]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_singlelabel_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, N_CLASSES - 1, N_IMAGES)  # the last class has no true image
    proba = rng.dirichlet(np.ones(N_CLASSES), N_IMAGES)
    proba[np.arange(N_IMAGES), y_true] += rng.random(N_IMAGES) * 0.5
    m = singlelabel_metrics(y_true, proba, CLASSES)
    y_pred = proba.argmax(axis=1)
    present = sorted(set(y_true.tolist()))
    assert m["top1"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y_true, y_pred))
    assert m["singlelabel_macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=range(N_CLASSES)).tolist()
    assert m["per_class_f1"][CLASSES[-1]] is None
    assert m["per_class_f1"][CLASSES[0]] == pytest.approx(
        f1_score(y_true, y_pred, labels=[0], average=None, zero_division=0)[0])
    json.dumps(m, allow_nan=False)


def test_perfect_scores():
    y_true, _ = _random_multilabel(0)
    m = multilabel_metrics(y_true, y_true.astype(float), np.full(N_LABELS, 0.5), NAMES)
    assert m["macro_ap"] == 1.0 and m["micro_ap"] == 1.0 and m["macro_f1"] == 1.0
    assert m["subset_accuracy"] == 1.0 and m["hamming_loss"] == 0.0
    y_idx = np.arange(N_IMAGES) % N_CLASSES
    s = singlelabel_metrics(y_idx, np.eye(N_CLASSES)[y_idx], CLASSES)
    assert s["top1"] == 1.0 and s["mcc"] == 1.0 and s["singlelabel_macro_f1"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_tuned_thresholds_reach_brute_force_max_f1(seed):
    y_true, y_score = _random_multilabel(seed)
    thresholds = tune_thresholds(y_true, y_score, NAMES)
    y_pred = apply_thresholds(y_score, thresholds)
    for c in range(N_LABELS):
        if not y_true[:, c].any() or np.ptp(y_score[:, c]) == 0:
            assert thresholds[c] == 0.5
            continue
        # every distinct cut "score >= t", plus predicting nothing
        candidates = np.concatenate([np.unique(y_score[:, c]), [np.inf]])
        best = max(_f1(y_true[:, c], y_score[:, c] >= t) for t in candidates)
        assert _f1(y_true[:, c], y_pred[:, c]) == pytest.approx(best)
        assert f1_score(y_true[:, c], y_pred[:, c]) == pytest.approx(best)


def _f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 by counting (the brute force must not share code with what it checks)."""
    tp = np.sum((y_true == 1) & y_pred)
    return 2 * tp / (y_true.sum() + y_pred.sum())


def test_constant_scores_keep_the_default_threshold():
    """A label the single-label baseline cannot express is scored 0 everywhere: it must
    not get threshold 0 (that would predict it on every image)."""
    y_true = np.array([[1, 1], [0, 1], [1, 0], [0, 0]])
    y_score = np.array([[0.0, 0.9], [0.0, 0.8], [0.0, 0.1], [0.0, 0.2]])
    thresholds = tune_thresholds(y_true, y_score, ["unexpressed", "ranked"])
    assert thresholds[0] == 0.5
    assert 0.2 < thresholds[1] <= 0.8


def test_tuned_thresholds_depend_only_on_data_given():
    y_true, y_score = _random_multilabel(7)
    first = tune_thresholds(y_true, y_score, NAMES)
    assert np.array_equal(first, tune_thresholds(y_true.copy(), y_score.copy(), NAMES))
    # row order is not information: shuffling the images changes nothing
    perm = np.random.default_rng(0).permutation(N_IMAGES)
    assert np.array_equal(first, tune_thresholds(y_true[perm], y_score[perm], NAMES))


def test_one_hot_class_maps_to_its_label_set(taxonomy):
    matrix = taxonomy.class_label_matrix("kvasir-v2")
    eye = np.eye(matrix.shape[0])
    assert np.array_equal(class_proba_to_label_scores(eye, matrix), matrix)
    soft = np.random.default_rng(0).dirichlet(np.ones(matrix.shape[0]), 10)
    scores = class_proba_to_label_scores(soft, matrix)
    assert scores.min() >= 0.0 and scores.max() <= 1.0


def test_label_set_maps_back_to_its_class(taxonomy):
    matrix = taxonomy.class_label_matrix("kvasir-v2")
    eps = 1e-3
    proba = label_scores_to_class_proba(np.clip(matrix, eps, 1 - eps), matrix)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(proba.argmax(axis=1), np.arange(matrix.shape[0]))
    # subsets and supersets are told apart: polyps (polyp) vs dyed-lifted-polyps (polyp, dyed, lifted)
    assert proba.max(axis=1).min() > 0.9


def test_evaluate_classifier_has_every_key_for_both_tasks(taxonomy):
    matrix = taxonomy.class_label_matrix("kvasir-v2")
    labels, classes = taxonomy.label_names, list(taxonomy.source("kvasir-v2").classes)
    rng = np.random.default_rng(0)
    y_class = rng.integers(0, len(classes), 40)
    y_class[:3] = -1  # images without a kvasir-v2 class: left out of single-label metrics only
    y_labels = matrix[np.maximum(y_class, 0)]
    outputs = {"multilabel": rng.random((40, len(labels))), "singlelabel": rng.dirichlet(np.ones(len(classes)), 40)}
    keys = {"macro_ap", "micro_ap", "macro_f1", "subset_accuracy", "hamming_loss", "per_class", "top1", "mcc",
            "singlelabel_macro_f1", "confusion", "per_class_f1", "thresholds", "thresholds_tuned_on"}
    for task, out in outputs.items():
        tuned = evaluate_classifier(task, out, y_labels, y_class, matrix, labels, classes)
        assert keys <= tuned.keys() and tuned["thresholds_tuned_on"] == "eval-data"
        assert tuned["singlelabel_n_images"] == 37 and tuned["singlelabel_n_excluded"] == 3
        given = evaluate_classifier(task, out, y_labels, y_class, matrix, labels, classes,
                                    thresholds=np.full(len(labels), 0.5))
        assert given["thresholds_tuned_on"] == "given" and given["thresholds"] == [0.5] * len(labels)
        json.dumps(given, allow_nan=False)


def test_single_label_model_goes_through_the_same_metrics(taxonomy):
    matrix = taxonomy.class_label_matrix("kvasir-v2")
    labels, classes = taxonomy.label_names, list(taxonomy.source("kvasir-v2").classes)
    y_class = np.arange(32) % len(classes)
    proba = np.random.default_rng(1).dirichlet(np.ones(len(classes)), 32)
    thresholds = np.full(len(labels), 0.3)
    got = evaluate_classifier("singlelabel", proba, matrix[y_class], y_class, matrix, labels, classes, thresholds)
    ml = multilabel_metrics(matrix[y_class], class_proba_to_label_scores(proba, matrix), thresholds, labels)
    sl = singlelabel_metrics(y_class, proba, classes)
    assert got["macro_ap"] == ml["macro_ap"] and got["per_class"] == ml["per_class"]
    assert got["top1"] == sl["top1"] and got["confusion"] == sl["confusion"]


def test_no_image_with_a_class_gives_empty_singlelabel_scores(taxonomy):
    matrix = taxonomy.class_label_matrix("kvasir-v2")
    labels, classes = taxonomy.label_names, list(taxonomy.source("kvasir-v2").classes)
    y_labels = matrix[[0, 6, 6]]
    got = evaluate_classifier("multilabel", y_labels * 0.8 + 0.1, y_labels, [-1, -1, -1], matrix, labels, classes)
    assert got["top1"] is None and got["mcc"] is None and got["singlelabel_n_excluded"] == 3
    assert got["macro_ap"] == 1.0


def test_bad_inputs_raise_with_a_clear_message():
    y_true, y_score = _random_multilabel(0)
    with pytest.raises(EvaluationError, match="columns"):
        multilabel_metrics(y_true, y_score[:, :-1], np.full(N_LABELS, 0.5), NAMES)
    with pytest.raises(EvaluationError, match="NaN"):
        tune_thresholds(y_true, np.full_like(y_score, np.nan), NAMES)
    with pytest.raises(EvaluationError, match="unknown task"):
        evaluate_classifier("detection", y_score, y_true, np.zeros(N_IMAGES, int), np.eye(N_LABELS)[:N_CLASSES],
                            NAMES, CLASSES)


def test_threshold_sits_in_the_middle_of_the_gap_below_the_best_cut():
    """Val scores 0.1 0.3 | 0.6 0.8 (negatives | positives): F1 is 1 for any threshold in
    (0.3, 0.6]; the tuned one is the gap's midpoint 0.45, not the cut 0.6 on a val point, so a
    new image scored 0.5, closer to the positives than the negatives' top, counts as positive."""
    y_true = np.array([[0], [0], [1], [1]])
    y_score = np.array([[0.1], [0.3], [0.6], [0.8]])
    (threshold,) = tune_thresholds(y_true, y_score, ["polyp"])
    assert threshold == pytest.approx(0.45)
    assert apply_thresholds(np.array([[0.5], [0.29]]), [threshold]).ravel().tolist() == [1, 0]
    # the lowest cut has no gap below it: the threshold is the cut itself (every image positive)
    (lowest,) = tune_thresholds(np.array([[1], [1], [1]]), np.array([[0.2], [0.5], [0.9]]), ["polyp"])
    assert lowest == pytest.approx(0.2)
